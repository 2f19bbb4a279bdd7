// Telemetry: a run observed live (metrics, and spans when a collector is configured), then
// the same run's log exported as a Mermaid DAG, a Chrome trace and an HTML timeline.
//
// Set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4318) to send the spans to a
// collector; without it nothing leaves the process.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ActivationError, Mesh, Output, Telemetry, Workflow, exportLog } from '../../../agentmesh-node/index.js'

const telemetry = Telemetry.fromEnv()
const wf = Workflow.fromObject({
  name: 'telemetry-demo',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'planner' },
    { id: 'a', type: 'agent', agent: 'researcher', after: ['plan'] },
    { id: 'b', type: 'agent', agent: 'researcher', after: ['plan'], retry: { maxAttempts: 2, backoffMs: 0 } },
    { id: 'write', type: 'agent', agent: 'writer', after: ['a', 'b'] },
  ],
})

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-telemetry-'))
try {
  const mesh = new Mesh({ logDir: logs, telemetry })
  mesh.provider('local', () => new Output({ text: 'notes', finishReason: 'stop' }, { usage: { inputTokens: 20, outputTokens: 5 } }))
  mesh.agent('planner', () => ({ plan: ['a', 'b'] }))
  mesh.agent('researcher', async (act) => {
    // Retried: a second span, linked to the failed one.
    if (act.node === 'b' && act.attempt === 1) throw new ActivationError('ConnectionError', 'flaky upstream')
    const reply = await act.llm('local', { model: 'smollm2', messages: [{ role: 'user', content: act.node }] })
    return { notes: reply.text }
  })
  mesh.agent('writer', () => ({ text: 'done' }))
  const result = await mesh.run(wf)
  console.log('run:', result.status)

  for (const line of telemetry.metricsText().split('\n')) {
    if (line.startsWith('agentmesh_runs_total') || line.startsWith('agentmesh_retries_total')) console.log('metric:', line)
  }
  console.log(exportLog(result.logPath, 'mermaid').split('\n')[1])
  const spans = exportLog(result.logPath, 'spans').trim().split('\n').map((l) => JSON.parse(l))
  console.log('spans:', [...new Set(spans.map((s) => s.name))].sort().join(', '))
  console.log('chrome trace events:', JSON.parse(exportLog(result.logPath, 'chrome')).traceEvents.length > 0)
  console.log('html timeline bytes > 0:', exportLog(result.logPath, 'html').length > 0)
  if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) {
    telemetry.flush(5000)
    console.log('exported:', telemetry.exportStats)
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
