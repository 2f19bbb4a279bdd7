import type { JsonValue, UsageInput, Usage } from './mesh'

/** A message of an LLM request. */
export interface LlmMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string
  content: string | null | JsonValue
  [key: string]: unknown
}

/**
 * The canonical LLM request (docs/providers.md): what is recorded, and sent. Built-in providers
 * validate and normalise it before it is recorded.
 */
export interface LlmRequest {
  model?: string
  messages: LlmMessage[]
  maxTokens?: number
  temperature?: number
  seed?: number
  stop?: string[]
  tools?: JsonValue[]
  toolChoice?: JsonValue
  responseFormat?: JsonValue
  [key: string]: unknown
}

/** Why a call failed, as the log records it. */
export interface CallErrorInfo {
  /** Error type (`ProviderError`, `RateLimited`, `Timeout`, a host exception class, ...). */
  type: string
  message: string
  /** Whether a retry may help (default `true`). */
  retryable?: boolean
  /** HTTP status, when a service answered. */
  status?: number
}

/** A call's recorded outcome. */
export interface CallOutcome {
  /** The response (`null` when the call failed). */
  response: unknown
  usage: Usage | null
  /** The failure (`null` when the call succeeded). */
  error: Required<Pick<CallErrorInfo, 'type' | 'message' | 'retryable'>> & { status?: number } | null
}

/** A started call (`act.callStart`). */
export declare class CallTicket {
  private constructor()
  readonly activation: number
  /** The call's number in its activation (1, 2, … in the order calls start). */
  readonly call: number
  /** The seq the call's records sit under (the activation's completion seq). */
  readonly seq: number
  /** The same for a call re-issued after a crash: pass it to services that honour one. */
  readonly idempotencyKey: string
  /** Make the call, then report it with `act.callComplete`; otherwise the log holds it. */
  readonly live: boolean
  /** The `maxTokens` the budget allows: send it instead of the request's (`null`: not clamped). */
  readonly maxTokens: number | null
  /**
   * The request as the run's policy redacted it (docs/policy.md): send this one, never the
   * original (`null`: the policy left it as it was).
   */
  readonly request: unknown
  /** The policy judges the response: stream nothing before `callComplete` returns it. */
  readonly holdResponse: boolean
  /** `!live`. */
  readonly recorded: boolean
  /** The recorded outcome; `null` for a live ticket. */
  readonly outcome: CallOutcome | null
  /** The id the `i`-th tool call of an LLM response gets (`call_<seq>_<call>_<i>`). */
  toolCallId(i: number): string
}

/** An LLM call's response as an agent sees it. */
export declare class LlmReply {
  private constructor()
  /** The canonical response (`text`, `toolCalls`, `finishReason`). */
  readonly response: any
  readonly usage: Usage | null
  /** Whether the log answered it (after a resume, in re-execute replay): nothing was sent. */
  readonly recorded: boolean
  /** `response.text`, `''` when none. */
  readonly text: string
  /** `response.toolCalls`, `[]` when none. */
  readonly toolCalls: Array<{ id: string; name: string; arguments: unknown }>
  readonly finishReason: string | null
}

/** A streamed chunk: a `{text}` delta, or a tool-call delta as the provider gives it. */
export type LlmChunk = { text?: string; toolCall?: { index: number; name?: string; arguments?: string }; toolCalls?: unknown[] }

/**
 * `act.llmStream(...)`: the response's chunks as an async iterator (a response the log
 * answers, or a host provider's, arrives as one chunk), and the final reply. The loop throws
 * the call's ProviderError after the chunks received before it.
 */
export declare class LlmStream implements AsyncIterableIterator<LlmChunk> {
  private constructor()
  /** The final reply, once the call ended (rejects with the call's error). */
  readonly reply: Promise<LlmReply>
  [Symbol.asyncIterator](): LlmStream
  next(): Promise<IteratorResult<LlmChunk>>
  /** Stop reading chunks; the call runs to its end and is recorded. */
  return(value?: unknown): Promise<IteratorResult<LlmChunk>>
}

/** What `act.callComplete` records: the response or the error, with usage. */
export interface CallResult {
  response?: unknown
  error?: CallErrorInfo
  usage?: UsageInput | null
  durationUs?: number
}

/**
 * What a host-made call may cost, estimated before it is sent: a budget reserves the prompt
 * plus `maxTokens` of completion, priced, and may clamp `maxTokens` down to `minTokens`.
 * Token counts are integers from 0 to 2^53-1.
 */
export interface CallAsk {
  /** The price table's provider id for the model. */
  provider: string
  model: string
  /** Estimated prompt tokens. */
  inputTokens: number
  /** The request's `maxTokens` (absent: a limited budget clamps it to what fits). */
  maxTokens?: number | null
  /** The smallest `maxTokens` the call accepts when a budget clamps it. */
  minTokens?: number | null
}

/** A call to start (`act.callStartMany`). */
export interface CallSpec {
  kind: 'llm' | 'tool'
  name: string
  request: unknown
  /** What it may cost, for a budget to reserve. */
  ask?: CallAsk | null
}

/** The call methods an activation has (`Activation` extends this). */
export interface ActivationCalls {
  /**
   * Send `request` to the provider registered as `provider` (`mesh.provider`). Recorded before
   * the Promise resolves; after a resume a call the log answered is not sent again. Rejects
   * with `ProviderError` (the call failed: recorded), `UnknownAgentError`, `NondeterminismError`
   * (the request differs from the recorded one), `InvalidCompletionError` (the agent returned).
   * Not for `runSync` agents (they cannot await): use `callStart`/`callComplete` there.
   */
  llm(provider: string, request: LlmRequest): Promise<LlmReply>
  /** `llm`, streamed. */
  llmStream(provider: string, request: LlmRequest): LlmStream
  /** Call the tool registered with `mesh.callTool`: its result (JSON data), recorded. */
  tool(name: string, args: unknown): Promise<any>
  /**
   * Start a call (low level). `request` may be `RawJson`; `options.ask` is what it may cost,
   * for a budget to reserve (bad: `InvalidArgumentError` naming `ask.<field>`). A call the
   * budget refuses throws `BudgetExceededError` (its `callDenied` is recorded).
   */
  callStart(kind: 'llm' | 'tool', name: string, request: unknown, options?: { ask?: CallAsk | null } | null): CallTicket
  /**
   * Start calls made concurrently, numbered in list order, in one commit. When a budget
   * refuses one, the batch is recorded and this throws `BudgetExceededError`.
   */
  callStartMany(calls: CallSpec[]): CallTicket[]
  /**
   * Report a live ticket's result (durable when this returns). Returns the response as recorded (a policy may have redacted it; `null` for an error);
   * throws `PolicyDeniedError` when the policy blocked the response.
   */
  callComplete(ticket: CallTicket | number, result: CallResult): unknown
}

/** A built-in provider's configuration (docs/providers.md, `ProviderConfig`). */
export interface ProviderConfig {
  kind: 'openai' | 'anthropic'
  baseUrl?: string
  model?: string
  /** The environment variable holding the API key (the key itself is never logged). */
  apiKeyEnv?: string
  name?: string
  maxRetries?: number
  maxConcurrency?: number
  [key: string]: unknown
}

/**
 * A host provider: gets the request as recorded and the ticket (`idempotencyKey`,
 * `toolCallId`); returns the response (`{text, toolCalls?, finishReason?}`), or
 * `new Output(response, {usage})`. A throw is recorded as the call's failure
 * (`{type: <class name>, message, retryable: true}`; an `ActivationError` sets them).
 */
export type HostProvider = (request: LlmRequest, ticket: CallTicket) => unknown
/** A call tool: gets the arguments and the ticket, returns (or resolves to) the result. */
export type CallToolFn = (args: any, ticket: CallTicket) => unknown

/** At most `calls` live calls of a tool start in any window of `perMs` milliseconds. */
export interface RateLimit {
  /** An integer from 1 to 2^32-1. */
  calls: number
  /** A positive finite number of milliseconds. */
  perMs: number
}

/** Who may call a tool, and how often. */
export interface ToolAccessOptions {
  /** The agents (or tool nodes) that may call it, by registered name; `null`: any. */
  agents?: readonly string[] | null
  rateLimit?: RateLimit | null
}

/** `mesh.callTool` options. */
export interface CallToolOptions extends ToolAccessOptions {
  description?: string | null
  /** The JSON Schema its arguments must match (checked before the call is recorded). */
  schema?: unknown
}

/** `mesh.mcp` options. */
export interface McpServerOptions extends ToolAccessOptions {
  /** The server program, then its arguments (start the program itself, not `npx`). */
  command: readonly string[]
  /** Variables added to the server's minimal environment (values never appear in messages). */
  env?: Record<string, string> | null
  /** From spawn to the `initialize` answer (default 30 000). */
  initTimeoutMs?: number | null
  /** Every later request, each tool call included (default 60 000). */
  callTimeoutMs?: number | null
}

/** A registered call tool as `mesh.callTools()` lists it. */
export interface CallToolInfo {
  description: string | null
  /** The JSON Schema of its arguments; `null` when it has none. */
  schema: unknown
}
