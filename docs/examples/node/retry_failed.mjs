// Retrying a failed or cancelled run: the `http` tool fails while the server is down, both
// attempts, and the run fails. Once the server is back, `mesh.retry(log)` — from any process,
// with a new Mesh — records `runReopened` and runs the failed node again with a fresh
// allowance of attempts; `plan` is not called again. A completed run is final: retry refuses
// it and writes nothing.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { AgentFailedError, Mesh, Workflow, readLogSync } from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'brief', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner' },
  { id: 'fetch', type: 'tool', tool: 'http', after: ['plan'], retry: { maxAttempts: 2, backoffMs: 10 } },
  { id: 'write', type: 'agent', agent: 'writer', after: ['fetch'] },
] })

const server = { up: false }
const calls = []
function makeMesh(logDir) {
  return new Mesh({ logDir })
    .agent('planner', (act) => {
      calls.push(`${act.node}#${act.attempt}`)
      return { query: 'outages' }
    })
    .tool('http', async (act) => {
      calls.push(`${act.node}#${act.attempt}`)
      if (!server.up) throw new Error('connection refused')
      return { status: 200 }
    })
    .agent('writer', (act) => {
      calls.push(`${act.node}#${act.attempt}`)
      return `brief from a ${act.deps.fetch.status}`
    })
}

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  let failed
  try {
    await makeMesh(logs).run(wf, { runId: 'brief-1' })
  } catch (e) {
    if (!(e instanceof AgentFailedError)) throw e
    failed = e.result // an agent's exception failed the run: the result is on the error
  }
  console.log(failed.status, failed.error.message)
  console.log('  called:', calls.splice(0).join(' '))

  server.up = true // the outage is over
  const done = await makeMesh(logs).retry(failed.logPath)
  console.log(done.status, done.output)
  console.log('  called:', calls.splice(0).join(' '))
  for (const e of readLogSync(done.logPath).filter((e) => e.seq > 10)) {
    const who = e.node === undefined || e.node === null ? '-' : `${e.node}#${e.attempt}`
    console.log(`${String(e.seq).padStart(3)}  ${e.type.padEnd(14)} ${who.padEnd(8)} ${JSON.stringify(e.data)}`)
  }

  try {
    await makeMesh(logs).retry(done.logPath)
  } catch (e) {
    console.log(`${e.name}: ${e.message}`)
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
