// Type fixture: the call API (lib/calls.d.ts) as agents use it; `npm run typecheck`.
import { Mesh, Output, ProviderError, type LlmReply, type CallTicket } from '../../index'

const mesh = new Mesh()
mesh.provider('local', { kind: 'openai', baseUrl: 'http://127.0.0.1:8080/v1' })
mesh.provider('chain', [{ kind: 'openai', baseUrl: 'http://a/v1' }, { kind: 'anthropic', baseUrl: 'http://b/v1' }])
mesh.provider('host', (request, ticket) => new Output({ text: request.messages.length + ticket.idempotencyKey }))
mesh.callTool('add', (args: { x: number; y: number }) => args.x + args.y, { description: 'adds' })
// @ts-expect-error a provider is a config, a list of them, or a function
mesh.provider('bad', 42)

mesh.agent('writer', async (act) => {
  const reply: LlmReply = await act.llm('local', { messages: [{ role: 'user', content: 'hi' }], maxTokens: 16 })
  const text: string = reply.text
  const stream = act.llmStream('local', { messages: [{ role: 'user', content: 'more' }] })
  for await (const chunk of stream) void chunk.text
  const whole: LlmReply = await stream.reply
  const sum: unknown = await act.tool('add', { x: 1, y: 2 })
  const t: CallTicket = act.callStart('tool', 'add', { x: 1, y: 2 })
  if (t.live) act.callComplete(t, { response: 3, usage: { inputTokens: 1 } })
  else void t.outcome?.response
  try {
    await act.llm('host', { messages: [] })
  } catch (e) {
    if (e instanceof ProviderError) void [e.status, e.retryable, e.errorType]
  }
  return { text, whole: whole.text, sum }
})
