// Stopping a run. Cancelling is final: from inside an agent (act.cancelRun) or from outside
// with an AbortSignal (an AbortController, AbortSignal.timeout) records runCancelled; agents
// see their act.signal aborted. Interrupting is not: Ctrl-C wired to the `interrupt` signal
// stops driving, writes nothing final, and the run is resumed later.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { Mesh, RunInterruptedError, Workflow, readLogSync } from '../../../agentmesh-node/index.js'

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
      // Interrupted, not cancelled: the reason is the RunInterruptedError.
      const reason = act.signal.reason
      aborted.push(`${act.node}: ${reason instanceof RunInterruptedError ? reason.name : reason}`)
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

  // 3. Ctrl-C: stop driving without a final event, so the run can be resumed.
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort('SIGINT'))
  setTimeout(() => process.kill(process.pid, 'SIGINT'), 50) // as if Ctrl-C were pressed
  try {
    await mesh.run(slow, { runId: 'slow-3', interrupt: stop.signal })
  } catch (e) {
    if (!(e instanceof RunInterruptedError)) throw e
    console.log('3.', e.message.replace(logs, '<logs>'))
    console.log('   the log ends with', lastEvents(e.logPath))
    // Later (here, or in another process): the interrupted activations run again.
    mesh.agent('waiter', (act) => `${act.node} done`)
    r = await mesh.resume(e.logPath)
    console.log('   resumed:', r.status, JSON.stringify(r.output))
  }

  // The driver does not wait for agents once it stops driving: they see it just after.
  await new Promise((resolve) => setImmediate(resolve))
  console.log('signals aborted:', aborted.join('; '))
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
