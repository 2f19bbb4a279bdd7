// Determinism: agents that decide from act.input, act.deps and act.seed give the same canonical
// log however long each one takes and in whichever order they finish. Unseeded randomness (or
// the clock) in an output does not.
import { setTimeout as sleep } from 'node:timers/promises'

import { Mesh, Workflow } from '../../../agentmesh-node/index.js'

const samples = ['sample0', 'sample1', 'sample2', 'sample3']
const wf = Workflow.fromObject({ name: 'sampling', nodes: [
  ...samples.map((id) => ({ id, type: 'agent', agent: 'sampler' })),
  { id: 'pick', type: 'agent', agent: 'picker', after: samples },
] })

/** A small seeded generator (SplitMix64) over the activation's 64-bit seed: floats in [0, 1). */
function seededRandom(seed) {
  let s = BigInt.asUintN(64, seed)
  return () => {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n)
    let z = BigInt.asUintN(64, (s ^ (s >> 30n)) * 0xbf58476d1ce4e5b9n)
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn)
    return Number((z ^ (z >> 31n)) >> 11n) / 2 ** 53
  }
}

async function seeded(act) {
  await sleep(Math.random() * 20) // timing varies from run to run: that is fine
  const random = seededRandom(act.seed) // the activation's seed: same run seed, same choices
  return { temperature: Math.round((0.2 + 0.8 * random()) * 1000) / 1000, draw: Math.floor(random() * 100) }
}

function unseeded() {
  return { temperature: Math.round((0.2 + 0.8 * Math.random()) * 1000) / 1000 } // differs on every run
}

function pick(act) {
  return Object.keys(act.deps).reduce((a, b) => (act.deps[b].temperature > act.deps[a].temperature ? b : a))
}

async function run(sampler, seed = 7) {
  const mesh = new Mesh().agent('sampler', sampler).agent('picker', pick)
  const result = await mesh.run(wf, { input: { prompt: 'name a colour' }, seed })
  return result.fingerprint
}

const a = await run(seeded)
const b = await run(seeded)
console.log('seeded agents, two runs, same fingerprint:', a === b)
console.log('another run seed, same fingerprint:', a === (await run(seeded, 8)))
console.log('unseeded random outputs, same fingerprint:', (await run(unseeded)) === (await run(unseeded)))
