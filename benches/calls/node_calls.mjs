// Cost of one recorded call from Node, network excluded: an agent makes N calls to a host
// provider that answers at once (act.llm), and N low-level callStart/callComplete pairs.
// Prints µs per call (best and median of 5).   node benches/calls/node_calls.mjs
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
const am = createRequire(import.meta.url)('../../agentmesh-node')

const N = 2000
async function run(lowLevel, disk) {
  const dir = disk ? fs.mkdtempSync(path.join(os.tmpdir(), 'am-calls-')) : null
  const mesh = new am.Mesh(dir ? { logDir: dir } : {})
  mesh.provider('p', () => ({ text: 'hi', finishReason: 'stop' }))
  mesh.agent('a', async (act) => {
    for (let i = 0; i < N; i++) {
      const req = { model: 'm', messages: [{ role: 'user', content: 'hello' }], i }
      if (lowLevel) {
        const t = act.callStart('llm', 'p', req)
        act.callComplete(t, { response: { text: 'hi' } })
      } else {
        await act.llm('p', req)
      }
    }
    return 1
  })
  const wf = am.Workflow.fromObject({ name: 'calls', nodes: [{ id: 'n', type: 'agent', agent: 'a' }] })
  const t = process.hrtime.bigint()
  await mesh.run(wf)
  const us = Number(process.hrtime.bigint() - t) / 1000 / N
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
  return us
}
for (const [label, low, disk] of [['act.llm, host provider, memory', false, false], ['callStart + callComplete, memory', true, false], ['act.llm, host provider, file (batch)', false, true]]) {
  const times = []
  for (let i = 0; i < 5; i++) times.push(await run(low, disk))
  times.sort((a, b) => a - b)
  console.log(`${label}: best ${times[0].toFixed(2)} µs, median ${times[2].toFixed(2)} µs per call`)
}
