// How the driver runs agents: all on the JavaScript thread. The activations of a step start
// together and interleave at their awaits; `runSync` calls synchronous agents one by one.
import { isMainThread } from 'node:worker_threads'

import { AgentFailedError, Mesh, Workflow } from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'fan-out', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner' },
  { id: 'web', type: 'tool', tool: 'fetch', after: ['plan'] },
  { id: 'papers', type: 'tool', tool: 'fetch', after: ['plan'] },
  { id: 'experts', type: 'tool', tool: 'fetch', after: ['plan'] },
  { id: 'join', type: 'agent', agent: 'joiner', after: ['web', 'papers', 'experts'] },
] })

const trace = []
let started = 0
let allStarted
const allThree = new Promise((resolve) => { allStarted = resolve })

const mesh = new Mesh()
mesh.agent('planner', (act) => {
  trace.push(`step ${act.step}  ${act.node.padEnd(8)} main thread: ${isMainThread}`)
  return { sources: 3 }
})
mesh.tool('fetch', async (act) => {
  trace.push(`step ${act.step}  ${act.node.padEnd(8)} started`)
  if (++started === 3) allStarted()
  await allThree // settles only once all three fetches are running: they overlap
  await new Promise((resolve) => setTimeout(resolve, act.node === 'web' ? 20 : 5))
  trace.push(`step ${act.step}  ${act.node.padEnd(8)} finished`)
  return { source: act.node }
})
mesh.agent('joiner', (act) => Object.keys(act.deps).sort().join('+'))

const result = await mesh.run(wf)
for (const line of trace) console.log(line)
console.log(result.status, result.output, result.fingerprint.slice(0, 16))

// runSync drives the same run without a Promise: synchronous agents only, one after another.
const sync = new Mesh()
sync.agent('planner', () => ({ sources: 3 }))
sync.tool('fetch', (act) => ({ source: act.node }))
sync.agent('joiner', (act) => Object.keys(act.deps).sort().join('+'))
const same = sync.runSync(wf)
console.log('runSync:', same.status, same.output, same.fingerprint.slice(0, 16))

// An async agent under runSync: its Promise is not JSON data, so the run fails.
sync.tool('fetch', async (act) => ({ source: act.node }))
try {
  sync.runSync(wf)
} catch (e) {
  if (!(e instanceof AgentFailedError)) throw e
  console.log('runSync with an async agent:', e.cause.message)
}
