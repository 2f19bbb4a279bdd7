// Watching a run while it runs: onEvent (a progress line per committed event), the same
// events as an async iterator (mesh.stream), and a loop left early, which interrupts the run
// resumably.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { Mesh, RunInterruptedError, Workflow, readLogSync } from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'research', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner' },
  { id: 'web', type: 'agent', agent: 'researcher', after: ['plan'] },
  { id: 'papers', type: 'agent', agent: 'researcher', after: ['plan'] },
  { id: 'write', type: 'agent', agent: 'writer', after: ['web', 'papers'] },
] })

function makeMesh(logDir) {
  return new Mesh({ logDir })
    .agent('planner', () => ({ questions: 2 }))
    // `web` takes longer than `papers`: its result (reserved at the lower seq) is committed
    // second.
    .agent('researcher', async (act) => {
      await sleep(act.node === 'web' ? 20 : 5, undefined, { signal: act.signal })
      return { notes: `${act.node} notes` }
    })
    .agent('writer', (act) => `${act.deps.web.notes} + ${act.deps.papers.notes}`)
}

/** One line per event, as a progress display would show it (`e.meta.at`: when, in ms). */
function line(e) {
  return `${String(e.seq).padStart(2)} ${e.type}${e.node ? ` ${e.node}` : ''}`
}

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  // 1. onEvent: called after each commit, in commit order (papers' result before web's).
  const seen = []
  const r = await makeMesh(logs).run(wf, { runId: 'watched', onEvent: (e) => seen.push(line(e)) })
  console.log(seen.join('\n'))
  console.log('1.', r.status, 'events seen:', seen.length, 'in the log:', readLogSync(r.logPath).length)

  // 2. The same events as an async iterator; the RunResult is stream.result.
  const stream = makeMesh(logs).stream(wf, { runId: 'streamed' })
  const types = []
  for await (const e of stream) types.push(e.type)
  console.log('2.', (await stream.result).status, types.slice(-3))

  // 3. Leaving the loop early interrupts the run: nothing final is written, the log is
  //    released, and resume finishes it later.
  const early = makeMesh(logs).stream(wf, { runId: 'left-early' })
  for await (const e of early) {
    if (e.type === 'agentCompleted' && e.node === 'papers') break
  }
  try {
    await early.result
  } catch (e) {
    if (!(e instanceof RunInterruptedError)) throw e
    console.log('3.', e.reason, '| the log ends with', readLogSync(e.logPath).at(-1).type)
    const done = await makeMesh(logs).resume(e.logPath)
    console.log('   resumed:', done.status, JSON.stringify(done.output))
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
