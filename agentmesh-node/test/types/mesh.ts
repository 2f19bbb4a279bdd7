// Type fixture for lib/mesh.d.ts: typical driver use compiles; misuse does not.
import { ActivationError, AgentFailedError, Mesh, Output, RawJson, RunInterruptedError, RunStream, Workflow } from '../..'
import type { Activation, DriveOptions, Failure, Item, EventCallback, EventMeta, LogEvent, RetryOptions, RunResult, Usage, UsageInput, UsageReport, UsageTotals } from '../..'

async function main(): Promise<void> {
  const wf = Workflow.builder('t').agent('a', 'writer').human('ok', { after: 'a' }).build()
  const mesh = new Mesh({ logDir: '/tmp/logs', fsync: 'batch' })
  mesh
    .agent('writer', async (act: Activation) => {
      const seed: bigint = act.seed
      const item: Item | undefined = act.item
      if (item !== undefined) {
        const at: number = item.index
        const key: string | undefined = item.key
        const value: unknown = item.value
        void [at, key, value]
      }
      const reads: Record<string, unknown> = act.reads
      void reads
      const failure: Failure | undefined = act.lastFailure
      if (failure !== undefined) {
        const kind: 'error' | 'timeout' = failure.kind
        const facts: [string, string, boolean] = [failure.type, failure.message, failure.retryable]
        void [kind, facts]
      }
      // @ts-expect-error lastFailure is read-only
      act.lastFailure = undefined
      // @ts-expect-error item is read-only
      act.item = undefined
      act.signal.addEventListener('abort', () => undefined)
      if (act.attempt > 3) act.cancelRun('enough')
      if (seed === 0n) throw new ActivationError('Flaky', 'try again', { retryable: true })
      if (seed === 1n) throw new ActivationError('Paid', 'failed', { usage: { inputTokens: 9, outputTokens: 0 } })
      const spent: { inputTokens?: number; outputTokens?: number } | null = new ActivationError('T', 'm').usage
      void spent
      // @ts-expect-error usage is an object of counts, not a list
      void new Output(1, { usage: [1, 2] })
      return new Output({ text: 'hi' }, { usage: { inputTokens: 3, outputTokens: 1 } })
    })
    .tool('search', () => new RawJson('{"hits":1.0}'))
  const controller = new AbortController()
  try {
    const r: RunResult = await mesh.run(wf, { input: { topic: 'x' }, seed: 7n, runId: 'r1', signal: controller.signal })
    const status: 'completed' | 'failed' | 'cancelled' | 'waiting' = r.status
    const fp: string = r.fingerprint
    if (r.logPath !== null && status === 'waiting') {
      await mesh.resume(r.logPath, { approvals: { ok: true }, runId: r.runId })
      mesh.forkSync(r.logPath, 4, { overrides: { a: 'other' } })
    }
    void fp
  } catch (e) {
    if (e instanceof AgentFailedError) {
      const node: string | null = e.node
      void node
    }
  }
  const sync: RunResult = mesh.runSync(wf, { seed: '18446744073709551615' })
  void sync
  // @ts-expect-error runSync takes no signal
  mesh.runSync(wf, { signal: controller.signal })
  // @ts-expect-error unknown option
  await mesh.run(wf, { timeout: 5 })
  // @ts-expect-error fork needs a seq
  await mesh.fork('/tmp/logs/r1.jsonl')

  // Watching, interrupting, forking under a changed workflow.
  const onEvent: EventCallback = (event: LogEvent) => {
    const meta: EventMeta | undefined = event.meta
    const at: number | undefined = meta?.at
    void at
  }
  const stop = new AbortController()
  const drive: DriveOptions = { signal: controller.signal, interrupt: stop.signal, onEvent }
  try {
    await mesh.run(wf, { ...drive, input: 1 })
  } catch (e) {
    if (e instanceof RunInterruptedError) {
      const where: string | null = e.logPath
      const why: string = e.reason
      if (where !== null) await mesh.resume(where, { onEvent: null })
      void why
    }
  }
  mesh.runSync(wf, { onEvent })
  await mesh.fork('/tmp/logs/r1.jsonl', 4, { workflow: wf, interrupt: stop.signal })
  const stream: RunStream = mesh.stream(wf, { seed: 1, interrupt: stop.signal })
  for await (const event of stream) {
    const seq: number = event.seq
    if (seq > 3) break
  }
  const done: RunResult = await stream.result
  void done
  for await (const event of mesh.streamFork('/tmp/logs/r1.jsonl', 4, { workflow: wf })) void event
  for await (const event of mesh.streamResume('/tmp/logs/r1.jsonl', { approvals: {} })) void event
  // @ts-expect-error a stream delivers the events itself
  mesh.stream(wf, { onEvent })
  // @ts-expect-error runSync cannot be interrupted
  mesh.runSync(wf, { interrupt: stop.signal })
  // @ts-expect-error onEvent is a function
  await mesh.run(wf, { onEvent: 'log' })

  // Retrying a failed or cancelled run; what a run spent.
  const retried: RunResult = await mesh.retry('/tmp/logs/r1.jsonl', { runId: 'r1', interrupt: stop.signal, onEvent })
  const retriedSync: RunResult = mesh.retrySync(new URL('file:///tmp/logs/r1.jsonl'))
  for await (const event of mesh.streamRetry('/tmp/logs/r1.jsonl')) void event
  const options: RetryOptions = { signal: controller.signal }
  const spent: UsageReport = retried.usage
  const total: UsageTotals = spent.total
  const cached: number = total.cachedInputTokens
  const byModel: UsageTotals | undefined = spent.byModel['gpt-4o-mini']
  const inherited: UsageTotals | undefined = spent.inherited
  void [retriedSync, options, cached, byModel, inherited]
  // @ts-expect-error a retried run takes no approvals: its human nodes ask again
  await mesh.retry('/tmp/logs/r1.jsonl', { approvals: {} })
  // @ts-expect-error retrySync cannot be interrupted
  mesh.retrySync('/tmp/logs/r1.jsonl', { interrupt: stop.signal })
  // @ts-expect-error the report is read-only data, not a number
  const tokens: number = retried.usage
  void tokens
  // Usage in the SDKs' shapes, or a whole response.
  const response = { id: 'chatcmpl-1', created: 1, model: 'gpt-4o-mini', usage: { prompt_tokens: 3, completion_tokens: 1 } }
  void new Output('hi', { usage: response })
  void new Output('hi', { usage: response.usage })
  void new ActivationError('ParseError', 'no JSON', { usage: { input_tokens: 9, output_tokens: 2, cache_read_input_tokens: 4 } })
  const own: Usage = { inputTokens: 3, outputTokens: 1, cachedInputTokens: 1, reasoningTokens: 0, model: 'm' }
  const given: UsageInput | null = new Output(1, { usage: own }).usage
  void given
}
void main
