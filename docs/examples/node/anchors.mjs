// Anchors: keep the head of a log somewhere else, and a log cut short or rewritten is caught.
//
// The chain alone catches damage (a changed byte, a lost record in the middle) but not a log
// cut at a record boundary: what is left is a shorter valid chain. An anchor taken earlier
// (with a key, so that nobody without it can forge one) catches both that and a rewritten log
// whose chain was recomputed.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  Mesh, Workflow, anchor, verifyAnchor, checkLog, LogTruncatedError, LogHeadMismatchError,
} from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'ledger', nodes: [
  { id: 'charge', type: 'agent', agent: 'payments' },
  { id: 'receipt', type: 'agent', agent: 'mailer', after: ['charge'] },
] })

// The key material comes from outside the log's machine (a secret store, an environment
// variable); it is never logged nor shown in an error.
const key = process.env.AGENTMESH_ANCHOR_KEY || 'example key material, use 32+ random bytes'

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-anchors-'))
try {
  const mesh = new Mesh({ logDir: logs })
  mesh.agent('payments', () => ({ charged: 42 }))
  mesh.agent('mailer', () => ({ sent: true }))
  const r = await mesh.run(wf, { runId: 'order-17' })

  const a = await anchor(r.logPath, { key })
  console.log('anchor:', { ...a, head: `${a.head.slice(0, 12)}…`, mac: `${a.mac.slice(0, 12)}…` })
  const stored = JSON.stringify(a) // store it elsewhere: another machine, a database, a ticket

  console.log('intact:', (await verifyAnchor(r.logPath, stored, { key })).finished)

  // Someone cuts the last two records: the chain alone still verifies...
  const records = fs.readFileSync(r.logPath, 'utf8').split('\n').slice(0, -1)
  fs.writeFileSync(r.logPath, records.slice(0, -2).map((l) => `${l}\n`).join(''))
  const report = await checkLog(r.logPath) // read-only; verifyLog would also repair a torn tail
  console.log('checkLog after the cut:', report.events, 'events, torn at', report.tornAt)

  // ...the anchor does not.
  try {
    await verifyAnchor(r.logPath, stored, { key })
  } catch (e) {
    if (!(e instanceof LogTruncatedError)) throw e
    console.log(`${e.code}: field ${e.field}, expected ${e.expected}, found ${e.found}`)
  }

  // A forged anchor (the attacker rewrote the anchor store too: the cut log's own head with
  // the old MAC, since a new MAC needs the key) fails its MAC.
  const forged = { ...(await anchor(r.logPath)), mac: a.mac }
  try {
    await verifyAnchor(r.logPath, forged, { key })
  } catch (e) {
    if (!(e instanceof LogHeadMismatchError)) throw e
    console.log(`${e.code}: field ${e.field}`)
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
