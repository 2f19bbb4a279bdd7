// Cancelling a run: from inside an agent (act.cancelRun), from outside with an AbortSignal
// (an AbortController, AbortSignal.timeout), and Ctrl-C wired to a controller. Each records
// runCancelled in the log; agents see their act.signal aborted.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { Mesh, Workflow, readLogSync } from '../../../agentmesh-node/index.js'

const guarded = Workflow.fromObject({ name: 'guarded', nodes: [
  { id: 'check', type: 'agent', agent: 'guard' },
  { id: 'act', type: 'agent', agent: 'actor', after: ['check'] },
] })
const slow = Workflow.fromObject({ name: 'slow', nodes: [
  { id: 'a', type: 'agent', agent: 'waiter' },
  { id: 'b', type: 'agent', agent: 'waiter' },
] })

const lastEvents = (log) => readLogSync(log).map((e) => e.type).slice(-3)

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const mesh = new Mesh({ logDir: logs })
  mesh.agent('guard', (act) => {
    if (act.input.dangerous) act.cancelRun('guard refused the input') // before this result is recorded
    return 'checked'
  })
  mesh.agent('actor', () => 'done')
  const aborted = []
  mesh.agent('waiter', async (act) => {
    // A model call that takes a while; pass act.signal on so it stops when the run is cancelled.
    try {
      return await sleep(5000, act.node, { signal: act.signal })
    } catch (e) {
      aborted.push(`${act.node}: ${act.signal.reason}`)
      throw e
    }
  })

  // 1. From inside an agent.
  let r = await mesh.run(guarded, { input: { dangerous: true } })
  console.log('1.', r.status, JSON.stringify(r.error), lastEvents(r.logPath))

  // 2. From outside: abort the signal passed as {signal} (a UI, a supervisor, a deadline).
  const controller = new AbortController()
  setTimeout(() => controller.abort('operator pressed stop'), 50)
  r = await mesh.run(slow, { runId: 'slow-1', signal: controller.signal })
  console.log('2.', r.status, JSON.stringify(r.error))

  // A deadline for the whole run: AbortSignal.timeout.
  r = await mesh.run(slow, { runId: 'slow-2', signal: AbortSignal.timeout(50) })
  console.log('   deadline:', r.status, JSON.stringify(r.error))

  // 3. Ctrl-C: Node exits on SIGINT by default; route it to a controller instead.
  const ctrlC = new AbortController()
  process.once('SIGINT', () => ctrlC.abort('SIGINT'))
  setTimeout(() => process.kill(process.pid, 'SIGINT'), 50) // as if Ctrl-C were pressed
  r = await mesh.run(slow, { runId: 'slow-3', signal: ctrlC.signal })
  console.log('3.', r.status, lastEvents(r.logPath))

  // The driver does not wait for agents once the run is cancelled: they see it just after.
  await new Promise((resolve) => setImmediate(resolve))
  console.log('signals aborted:', aborted.join('; '))
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
