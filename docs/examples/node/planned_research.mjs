// Planner -> map(researcher) -> writer: the planner decides how many researchers run.
//
// The planner answers as a model often does, with almost-JSON in a code fence; the node's
// output contract repairs it and checks it against a schema. One researcher runs per question,
// at most two at once. The run is killed (SIGKILL, in a child process) while one researcher
// hangs and three finished; resuming the log runs only the question without a recorded answer.
// The Python version, docs/examples/python/planned_research.py, prints the same lines.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import {
  AgentMeshIOError, LogCorruptError, Mesh, Workflow, fingerprintSync, readLogSync,
} from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'planned-research', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner', retry: { maxAttempts: 2 },
    output: { repair: true, schema: {
      type: 'object', required: ['questions'], additionalProperties: false,
      properties: { questions: { type: 'array', minItems: 1, maxItems: 8,
        items: { type: 'string', minLength: 1 } } } } } },
  { id: 'research', type: 'map', agent: 'researcher', after: ['plan'],
    over: '/outputs/plan/questions', concurrency: 2, retry: { maxAttempts: 3 } },
  { id: 'write', type: 'agent', agent: 'writer', after: ['research'], reads: ['/input/topic'] },
] })

const ANSWERS = {
  'What must survive a crash?': 'the log of every decision and result',
  'What may a replay never redo?': 'a call whose result is recorded',
  'Who pays for a retried call?': "the run's budget, once per attempt",
  'How many researchers run?': 'as many as the planner asks for',
}

function makeMesh(logDir, ran, hangOn = -1) {
  return new Mesh({ logDir })
    // What a model writes: prose, a code fence, single quotes, a trailing comma.
    .agent('planner', () => {
      const questions = Object.keys(ANSWERS).map((q) => `'${q}'`).join(', ')
      return `Here is my plan:\n\`\`\`json\n{'questions': [${questions},]}\n\`\`\``
    })
    .agent('researcher', async (act) => {
      fs.appendFileSync(ran, `${act.item.index}\n`)
      if (act.item.index === hangOn) await sleep(600_000) // still working when killed
      return { question: act.item.value, notes: ANSWERS[act.item.value] }
    })
    .agent('writer', (act) => {
      const lines = act.deps.research.map((r, i) => `${i + 1}. ${r.question} ${r.notes}.`)
      return `Brief on ${act.reads['/input/topic']}:\n${lines.join('\n')}`
    })
}

if (process.argv[2] === '--child') {
  await makeMesh(process.argv[3], process.argv[4], 2).run(wf, { runId: 'planned', input: { topic: 'durable agents' } })
  throw new Error('unreachable: the parent kills this process')
}

function answered(log) {
  const scheduled = new Map()
  const done = []
  for (const e of readLogSync(log)) {
    if (e.type === 'agentScheduled' && e.data.item !== undefined) scheduled.set(e.seq, e.data.item.index)
    if (e.type === 'agentCompleted' && scheduled.has(e.parentSeq)) done.push(scheduled.get(e.parentSeq))
  }
  return done.sort((a, b) => a - b)
}

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const log = path.join(logs, 'planned.jsonl')
  const ran = path.join(logs, 'ran.txt')
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', logs, ran], { stdio: 'inherit' })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let done = []
  // 0, 1, then 3 (2 hangs).
  for (const deadline = Date.now() + 20_000; Date.now() < deadline && done.length < 3;) {
    await sleep(10)
    try {
      done = answered(log)
    } catch (e) {
      if (!(e instanceof AgentMeshIOError || e instanceof LogCorruptError)) throw e // not there yet
    }
  }
  child.kill('SIGKILL')
  await exited
  const list = (xs) => `[${xs.join(', ')}]`
  console.log('killed the run after these items were answered:', list(done))
  const plan = readLogSync(log).find((e) => e.type === 'agentCompleted')
  console.log("the planner's text was repaired:", plan.data.repaired.fixes.join(', '))

  fs.writeFileSync(ran, '')
  const result = await makeMesh(logs, ran).resume(log)
  const again = fs.readFileSync(ran, 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b)
  console.log('items run again after the resume:', list(again.filter((i) => !done.includes(i))))
  console.log('items not run again:', list(done))
  console.log('status:', result.status)
  console.log(result.output.write)
  if (result.status !== 'completed' || again.some((i) => done.includes(i))) throw new Error('a finished item ran again')
  console.log('fingerprint of the resumed log:', fingerprintSync(log).slice(0, 16))
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
