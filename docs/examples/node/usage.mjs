// Token usage: give the SDK's usage as it comes — or the whole response (only its `usage` and
// `model` are read; never `id` or `created`) — on success and on failure, and read what the
// run spent from `result.usage` or `usageReport(log)`. A fork's report does not count the
// events it copied from its parent.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { ActivationError, Mesh, Output, Workflow, usageReport } from '../../../agentmesh-node/index.js'

// What the SDKs return (trimmed; no network here).
const openai = (content) => ({
  id: 'chatcmpl-9', object: 'chat.completion', created: 1796000000, model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 403, completion_tokens: 62, total_tokens: 465, prompt_tokens_details: { cached_tokens: 128 } },
})
const anthropic = {
  id: 'msg_01', type: 'message', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'looks right' }],
  stop_reason: 'end_turn', usage: { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 50 },
}

const wf = Workflow.fromObject({ name: 'review', nodes: [
  { id: 'draft', type: 'agent', agent: 'gpt', retry: { maxAttempts: 2 } },
  { id: 'check', type: 'agent', agent: 'claude', after: ['draft'] },
] })

function makeMesh(logDir) {
  return new Mesh({ logDir })
    .agent('gpt', (act) => {
      const r = openai('{"title": "Q3"')
      // A paid call whose answer did not parse: its usage is recorded with the failure.
      if (act.attempt === 1) throw new ActivationError('ParseError', 'truncated JSON', { usage: r })
      return new Output({ text: r.choices[0].message.content, finishReason: r.choices[0].finish_reason }, { usage: r })
    })
    .agent('claude', () => new Output(anthropic.content[0].text, { usage: anthropic }))
}

const show = (t) => `in ${t.inputTokens} (cached ${t.cachedInputTokens}), out ${t.outputTokens}, ${t.attempts} attempt${t.attempts === 1 ? '' : 's'}`

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const mesh = makeMesh(logs)
  const result = await mesh.run(wf, { runId: 'review-1' })
  const spent = result.usage
  console.log('total    ', show(spent.total))
  for (const [model, t] of Object.entries(spent.byModel)) console.log(`model ${model.padEnd(18)}`, show(t))
  for (const [node, t] of Object.entries(spent.byNode)) console.log(`node  ${node.padEnd(18)}`, show(t))
  const log = fs.readFileSync(result.logPath, 'utf8')
  console.log('the log holds ids or timestamps of the responses?', log.includes('chatcmpl-9') || log.includes('1796000000'))

  // Fork after `draft` (seq 7 ends its retry's step): only `check` runs, and only it counts.
  const fork = await mesh.fork(result.logPath, 7, { runId: 'review-fork' })
  const forked = await usageReport(fork.logPath)
  console.log('fork     ', show(forked.total))
  console.log('inherited', show(forked.inherited))
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
