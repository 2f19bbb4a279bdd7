// Working from a log: verify and read it, replay it (also against a changed workflow), the
// state at a seq, a fork with an output replaced, the canonical log and its fingerprint.
//
// Runs docs/examples/review-loop/workflow.json with JavaScript agents that return what that
// example's script.json returns, so the log is the one docs/replay.md works with.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {
  Mesh, NondeterminismError, Workflow, canonicalLog, fingerprint, readHeader, readLog, replay,
  stateAt, verifyLog,
} from '../../../agentmesh-node/index.js'

const wf = Workflow.fromFile(new URL('../review-loop/workflow.json', import.meta.url))

const DRAFTS = { 1: 'Supersteps are steps.',
  2: 'All ready nodes run together; the next step is decided when all finish.' }
const REVIEWS = { 1: { score: 0.4, fixable: true, note: 'too vague' },
  2: { score: 0.9, fixable: true } }

function makeMesh(logDir) {
  return new Mesh({ logDir })
    .agent('writer', (act) => ({ text: DRAFTS[act.visit] }))
    .agent('critic', (act) => REVIEWS[act.visit])
    .agent('publisher', () => ({ url: 'https://example.com/posts/supersteps' }))
    .agent('editor', () => ({ escalated: true }))
}

const input = { brief: 'Explain supersteps in one paragraph.' }
const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const mesh = makeMesh(logs)
  const r = await mesh.run(wf, { input, seed: 7, runId: 'review-1' })
  const log = r.logPath
  console.log(r.status, JSON.stringify(r.output))

  const report = await verifyLog(log) // hash chain and structure; repairs a torn tail
  console.log('verify:', report.events, 'events, finished with', report.finished)
  const decisions = []
  for await (const e of readLog(log)) {
    if (e.type === 'branchDecided') decisions.push([e.seq, e.data.goto])
  }
  console.log('branch decisions [seq, goto]:', JSON.stringify(decisions))

  // Replay: re-drive the log with its recorded workflow; no agent is called.
  const replayed = await replay(log)
  console.log('replay:', replayed.events, 'events re-driven, outcome', replayed.outcome.status)

  // Replay against a changed workflow: the first event it would have decided differently.
  const lenient = Workflow.fromJson(wf.toJson().replace('"gte":0.8', '"gte":0.3'))
  try {
    await replay(log, lenient)
  } catch (e) {
    if (!(e instanceof NondeterminismError)) throw e
    console.log(`lenient workflow: seq ${e.seq}, node ${e.node}, field ${e.field}, ` +
      `expected ${e.expected}, actual ${e.actual}`)
  }

  // Time travel: the state as of seq 7, the end of step 2.
  const state = await stateAt(log, 7)
  console.log('at seq 7:', state.status, 'step', state.step, 'forkPoint', state.forkPoint,
    'review', JSON.stringify(state.completed.review))

  // Fork at that step end: what if the reviewer had liked the first draft?
  const fork = await mesh.fork(log, 7, { overrides: { review: { score: 0.95, fixable: false } } })
  console.log('fork:', fork.status, JSON.stringify(fork.output), 'parent', readHeader(fork.logPath).parent)

  // The same run again, in another directory: the same canonical log, byte for byte.
  const again = await makeMesh(path.join(logs, 'again')).run(wf, { input, seed: 7, runId: 'review-1' })
  const same = (await canonicalLog(log)).equals(await canonicalLog(again.logPath))
  console.log('canonical logs identical:', same, '| fingerprint', await fingerprint(log))
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
