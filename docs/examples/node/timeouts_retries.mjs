// Timeouts and retries: attempt 1 fails, attempt 2 overruns timeoutMs, attempt 3 succeeds.
// A node that runs out of attempts fails the run: the result has status "failed" and the code.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { ActivationError, Mesh, Workflow, readLogSync } from '../../../agentmesh-node/index.js'

const wf = Workflow.builder('fetch-report')
  .tool('fetch', 'http', { timeoutMs: 100, retry: { maxAttempts: 3, backoffMs: 20, backoffMultiplier: 2 } })
  .agent('parse', 'parser', { after: ['fetch'] })
  .build()

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const mesh = new Mesh({ logDir: logs })
  mesh.tool('http', async (act) => {
    if (act.attempt === 1) throw new ActivationError('HttpError', '503 Service Unavailable') // retryable
    if (act.attempt === 2) {
      // Overruns timeoutMs=100. The driver records a timeout at 100 ms and aborts act.signal;
      // passing the signal on (fetch, timers, SDKs) stops the work early.
      try {
        await sleep(1000, null, { signal: act.signal })
      } catch (e) {
        console.log(`  attempt 2: ${e.name}, signal.reason = ${act.signal.reason}`)
        throw e // dropped: the activation is already recorded as timed out
      }
    }
    return { status: 200, rows: 118 }
  })
  mesh.agent('parser', (act) => act.deps.fetch.rows)

  const result = await mesh.run(wf, { seed: 1 })
  console.log(result.status, result.output)
  for (const e of readLogSync(result.logPath)) {
    if (e.node === 'fetch') {
      console.log(`${String(e.seq).padStart(3)}  ${e.type.padEnd(15)} attempt ${e.attempt}  ${JSON.stringify(e.data)}`)
    }
  }

  // Every attempt times out: the run fails with TIMEOUT. mesh.run resolves with it (no
  // exception: no agent threw).
  mesh.tool('http', (act) => sleep(1000, { status: 200 }, { signal: act.signal }))
  const failed = await mesh.run(wf, { seed: 2 })
  console.log(failed.status, JSON.stringify(failed.error))
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
