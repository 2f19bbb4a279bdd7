// Errors: every AgentMesh error is an AgentMeshError with a stable .code, and some carry facts
// (node, field, seq, offset). A failed run is a result, unless an agent's exception failed it.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {
  ActivationError, AgentFailedError, AgentMeshError, LogCorruptError, Mesh, Workflow, verifyLog,
} from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'pay', nodes: [
  { id: 'charge', type: 'tool', tool: 'payments', retry: { maxAttempts: 3 } },
] })

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const mesh = new Mesh({ logDir: logs })
  mesh.tool('payments', (act) => {
    if (act.input.card === 'expired') {
      throw new ActivationError('CardDeclined', 'card expired', { retryable: false })
    }
    return new Set([1, 2]) // a Set is not JSON data: InvalidOutput, not retryable
  })

  // An exception that fails the run: AgentFailedError, with the thrown value as `cause`.
  const paths = []
  for (const card of ['expired', 'odd']) {
    try {
      await mesh.run(wf, { input: { card } })
    } catch (e) {
      if (!(e instanceof AgentFailedError)) throw e
      console.log(`${e.name} node=${e.node}: ${e.message}`)
      console.log(`  cause ${e.cause.name}: ${e.cause.message}`)
      console.log(`  .result.status '${e.result.status}', .result.error.code '${e.result.error.code}'`)
      paths.push(e.result.logPath)
    }
  }

  // Errors of the call itself: nothing is run.
  const calls = [
    ['unknown agent', () => new Mesh().run(Workflow.fromObject(
      { name: 'w', nodes: [{ id: 'a', type: 'agent', agent: 'ghost' }] }))],
    ['same run twice', () => mesh.run(wf, { input: { card: 'expired' } })],
    ['input not JSON', () => mesh.run(wf, { input: { card: new Uint8Array([4, 2]) } })],
    ['wrong run id', () => mesh.resume(paths[0], { runId: 'someone-else' })],
    ['unknown option', () => mesh.run(wf, { inputs: {} })],
  ]
  for (const [what, call] of calls) {
    try {
      await call()
    } catch (e) {
      if (!(e instanceof AgentMeshError)) throw e
      console.log(`${what}: ${e.name} ${e.message.replaceAll(logs, '<logs>')}`)
    }
  }

  // A changed byte inside a log: LogCorruptError with the offset of the damaged record.
  const data = fs.readFileSync(paths[0])
  const fd = fs.openSync(paths[0], 'r+')
  fs.writeSync(fd, 'E', data.indexOf('"expired"') + 1) // inside runStarted, the second line
  fs.closeSync(fd)
  const secondLine = data.indexOf('\n') + 1
  try {
    await verifyLog(paths[0])
  } catch (e) {
    if (!(e instanceof LogCorruptError)) throw e
    console.log(`${e.name} offset=${e.offset}, where line 2 starts: ${e.offset === secondLine}`)
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
