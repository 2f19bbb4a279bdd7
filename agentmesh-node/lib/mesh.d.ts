import type { PathLike, Workflow } from './workflow'
import type { PolicySource } from './policy'
import type { Telemetry } from './telemetry'
import type { Failure, LogEvent, RunError, UsageReport } from '../native'
import type { ActivationCalls, CallToolFn, CallToolInfo, CallToolOptions, HostProvider, McpServerOptions, ProviderConfig } from './calls'

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** Token usage of one attempt in AgentMesh's own shape (what the log records). */
export interface Usage {
  /** Prompt tokens, cached ones included. */
  inputTokens?: number
  /** Completion tokens, reasoning included. */
  outputTokens?: number
  /** Prompt tokens read from a prompt cache. */
  cachedInputTokens?: number
  /** Prompt tokens written to a prompt cache. */
  cacheWriteTokens?: number
  /** Reasoning tokens. */
  reasoningTokens?: number
  /** The model that spent them. */
  model?: string
}

/**
 * Usage as an agent may give it: AgentMesh's `Usage`, an OpenAI (chat or responses) or
 * Anthropic `usage` object, or a whole response (`{model, usage, ...}`: only those two are
 * read, never `id` or `created`). The core reads and checks it (docs/usage.md).
 */
export type UsageInput = Usage | { readonly [key: string]: unknown }

/** One item of a map node's array, as its activation sees it (`act.item`). */
export interface Item {
  /** Position in the array, from 0. */
  readonly index: number
  /** The value at the map's `itemKey`, as text (absent without an `itemKey`). */
  readonly key?: string
  /** The item. */
  readonly value: unknown
}

/**
 * One unit of work handed to an agent or tool. Its fields are read from the core when an
 * agent reads them (`input`, `deps`, `item` and `reads` are converted once, on first read).
 */
export interface Activation extends ActivationCalls {
  /** Activation id (the seq of its scheduling event). */
  readonly id: number
  readonly runId: string
  /** Node id. */
  readonly node: string
  readonly kind: 'agent' | 'tool' | 'human'
  /** Agent or tool name (the node id for a human activation). */
  readonly name: string
  /** Attempt within this visit, from 1. */
  readonly attempt: number
  /** Visit of the node, from 1 (more than 1 inside loops). */
  readonly visit: number
  /** Retry backoff the driver waited before starting the work. */
  readonly delayMs: number
  /**
   * Deadline of this attempt, counted from when it starts running (after `delayMs`):
   * a result that settles later is recorded as a timeout. `undefined` when none.
   */
  readonly timeoutMs: number | undefined
  /** Prompt of a human activation. */
  readonly prompt: string | undefined
  /** Deterministic per-activation seed derived from the run seed (full 64 bits). */
  readonly seed: bigint
  /** Superstep number. */
  readonly step: number
  /** The run input. */
  readonly input: unknown
  /** Outputs of the node's completed `after` dependencies, by node id. */
  readonly deps: Record<string, unknown>
  /** The item a map node's activation runs; `undefined` for any other activation. */
  readonly item: Item | undefined
  /**
   * The values of the node's `reads`, by path as written (a path with no value yet is left
   * out); `{}` without `reads`.
   */
  readonly reads: Record<string, unknown>
  /**
   * The failure this attempt retries, as the log records it: what to tell a model asked
   * again, such as an `OutputSchemaError` whose message names the path its output got wrong.
   * `undefined` on a first attempt and after a cancel.
   */
  readonly lastFailure: Failure | undefined
  /** Aborted when the activation times out or the run is cancelled: pass it to `fetch` etc. */
  readonly signal: AbortSignal
  /** Cancel the run; takes effect before this activation's own result is recorded. */
  cancelRun(reason?: string): void
  /** The fields as a plain object (`JSON.stringify` support; `seed` as a decimal string). */
  toJSON(): Record<string, unknown>
}

/** What an agent returns: JSON data, an `Output` (with usage) or `RawJson`. */
export type AgentResult = unknown

/** An agent or tool: sync or async. */
export type AgentFn = (activation: Activation) => AgentResult | Promise<AgentResult>

/**
 * Throw from an agent to fail its activation with an exact type, message and retryable flag,
 * and the tokens the failed attempt spent (`usage`, recorded with the failure).
 */
export declare class ActivationError extends Error {
  constructor(type: string, message: string, options?: { retryable?: boolean; usage?: UsageInput | null })
  readonly type: string
  readonly retryable: boolean
  /** Tokens the failed attempt spent, as given (`null`: not reported). */
  readonly usage: UsageInput | null
}

/** An agent result with token usage. */
export declare class Output<T = unknown> {
  constructor(value: T, options?: { usage?: UsageInput | null })
  readonly value: T
  readonly usage: UsageInput | null
}

/** JSON text handed to the core as written (still parsed and validated there). */
export declare class RawJson {
  constructor(text: string)
  readonly text: string
}

export type RunStatus = 'completed' | 'failed' | 'cancelled' | 'waiting'

/** Where a driven run stopped. */
export declare class RunResult {
  readonly runId: string
  readonly status: RunStatus
  /** Outputs of the terminal nodes, by node id (completed runs). */
  readonly output: Record<string, unknown> | null
  /** Why the run failed or was cancelled. */
  readonly error: RunError | null
  /** Human activations the run waits for. */
  readonly waiting: Activation[]
  /** The log file (`null` for an in-memory run). */
  readonly logPath: string | null
  /** blake3 (hex) of the canonical log. */
  readonly fingerprint: string
  /**
   * What the run spent: token usage in all and by node, agent, tool and model, computed from
   * the log on each read (a fork's copied events are `inherited`, never in `total`).
   */
  readonly usage: UsageReport
  /**
   * What the run's calls cost, computed from `usage`: `byNode`, `byAgent` and `byModel` in
   * micro-USD (keys without a price left out).
   */
  readonly cost: RunCost
  /** The canonical log bytes. */
  canonical(): Buffer
}

/** What a run's calls cost (`RunResult.cost`), the same shape as Python's `result.cost`. */
export interface RunCost {
  /** Micro-USD charged in all; `null` when the run does not account for spend (no budget, no prices). */
  microUsd: number | null
  /** Calls made inside activations. */
  calls: number
  /** Calls a budget refused before they were sent. */
  denied: number
  /** Micro-USD by node id. */
  byNode: Record<string, number>
  /** Micro-USD by agent name. */
  byAgent: Record<string, number>
  /** Micro-USD by model. */
  byModel: Record<string, number>
}

/** A price in micro-USD per million tokens: one rate, or rates by the size of the prompt. */
export type Price = number | { base: number; tiers: Array<{ above: number; price: number }> }

/** Which model names a price table entry is for. */
export type PriceMatch =
  | { equals: string }
  | { startsWith: string }
  | { endsWith: string }
  | { contains: string }
  | { regex: string }
  | { or: PriceMatch[] }
  | { and: PriceMatch[] }
  | { not: PriceMatch }

/** A user price table (docs/budgets.md, version 1), looked at before the bundled one. */
export interface PriceTable {
  version: 1
  unit?: string
  source?: string
  asOf?: string
  models: Array<{
    /** The provider id a call's `ask` names (`openai`, or the name a local server is priced under). */
    provider: string
    model: string
    match: PriceMatch
    prices: { input: Price; output: Price; cachedInput?: Price; cacheWrite?: Price; reasoning?: Price }
  }>
  /** Tools priced per call, in micro-USD (a tool left out costs nothing). */
  tools?: Array<{ name: string; perCall: number }>
}

/**
 * A run's limits (docs/budgets.md): a whole number (a bigint past 2^53) or `'unlimited'`
 * per dimension; a dimension left out is unlimited; `{}` accounts for spend, limiting nothing.
 */
export interface Budget {
  inputTokens?: number | bigint | 'unlimited'
  outputTokens?: number | bigint | 'unlimited'
  totalTokens?: number | bigint | 'unlimited'
  /** Micro-USD: `5000000` is $5. */
  microUsd?: number | bigint | 'unlimited'
  calls?: number | bigint | 'unlimited'
}

export interface MeshOptions {
  /** Directory of the log files (`<runId>.jsonl`); absent or null: in memory. */
  logDir?: string | null
  fsync?: 'always' | 'batch' | 'never'
  /**
   * Prices looked at before the bundled table by every run this mesh starts, resumes,
   * retries and forks (a run that accounts for spend resumes only with the prices it was
   * started with). Checked here: `InvalidArgumentError` naming the field.
   */
  prices?: PriceTable | RawJson | null
  /**
   * The policy that judges every run this mesh starts, resumes, retries, forks and re-executes
   * (docs/policy.md): a `Policy`, a policy file's path, or a policy object. Checked here:
   * `PolicyInvalidError`. A run goes on only under the policy it was started with.
   */
  policy?: PolicySource | null
  /**
   * Telemetry that observes every run this mesh starts, resumes, retries and forks
   * (docs/telemetry.md): spans exported as they end, metrics. Anything but a `Telemetry` is
   * `InvalidArgumentError`.
   */
  telemetry?: Telemetry | null
}

/**
 * Called with every event the run commits, in commit order, right after its commit: the
 * object `readLogSync` gives, with the `meta` the log holds. The driver waits for it (it is
 * called on the driving path); if it throws, driving stops as for `interrupt` and the Promise
 * rejects with what it threw.
 */
export type EventCallback = (event: LogEvent) => void

/**
 * Called with each committed `budgetWarning` event (as `onEvent` gets it: `data` has `scope`,
 * `dimension`, `threshold`, `limit`, `spent`), in commit order, after `onEvent` had it. A
 * throw is treated as a throwing `onEvent`.
 */
export type BudgetWarningCallback = (event: LogEvent) => void

/** How a run is driven: cancelled (final), interrupted (resumable), watched. */
export interface DriveOptions {
  /** Aborting it cancels the run (`runCancelled` is recorded, final) and settles the Promise. */
  signal?: AbortSignal
  /**
   * Aborting it stops driving without writing anything final (what a Ctrl-C handler wants):
   * in-flight activations stay in flight, the log is released, and the Promise rejects with
   * `RunInterruptedError`; `resume` continues the run.
   */
  interrupt?: AbortSignal
  /** Every committed event, in commit order (see `EventCallback`). */
  onEvent?: EventCallback | null
  /** Every committed budget warning, in commit order (see `BudgetWarningCallback`). */
  onBudgetWarning?: BudgetWarningCallback | null
}

export interface RunOptions extends DriveOptions {
  input?: unknown
  /** Run seed: a number up to 2^53 - 1, a bigint, or a decimal string (up to 2^64 - 1). */
  seed?: number | bigint | string
  runId?: string
  tenant?: string
  /**
   * The run's budget, replacing the workflow's (recorded in `runStarted`). A bad value is
   * `InvalidArgumentError` naming the field (`budget.calls`), before anything is written.
   */
  budget?: Budget | null
}

export interface ResumeOptions extends DriveOptions {
  /** Decisions for waiting human nodes, by node id. */
  approvals?: Record<string, unknown>
  /** When given, the log must hold this run (`InvalidArgumentError` otherwise). */
  runId?: string
}

export interface RetryOptions extends DriveOptions {
  /** When given, the log must hold this run (`InvalidArgumentError` otherwise). */
  runId?: string
}

export interface ForkOptions extends DriveOptions {
  /** Node outputs replaced in the fork, by node id. */
  overrides?: Record<string, unknown>
  runId?: string
  /**
   * Continue under this (changed) workflow: the parent's events up to `seq` must replay equal
   * under it (`NondeterminismError` otherwise), and the fork records it.
   */
  workflow?: Workflow | null
}

/**
 * A run's committed events as an async iterator (`for await (const event of stream)`), in
 * commit order, each as `onEvent` gets it. It buffers: the driver never waits for the
 * consumer. The loop ends after the last event, or throws what `mesh.run` would reject with;
 * leaving it early (`break`, an exception) interrupts the run (resumable, log released) and
 * `result` rejects with `RunInterruptedError`.
 */
export declare class RunStream implements AsyncIterableIterator<LogEvent> {
  /** The run's RunResult, as `mesh.run` resolves or rejects. */
  readonly result: Promise<RunResult>
  next(): Promise<IteratorResult<LogEvent, undefined>>
  /** Stop consuming; a run still being driven is interrupted. */
  return(value?: unknown): Promise<IteratorResult<LogEvent, undefined>>
  [Symbol.asyncIterator](): RunStream
}

/** Registers agents and tools and drives runs. */
export declare class Mesh {
  constructor(options?: MeshOptions)
  readonly logDir: string | null
  readonly fsync: 'always' | 'batch' | 'never'
  agent(name: string, fn: AgentFn): this
  tool(name: string, fn: AgentFn): this
  /**
   * Register the LLM provider agents call as `name`: a built-in one (`{kind: 'openai' |
   * 'anthropic', baseUrl, model, apiKeyEnv, ...}`, executed off the JS thread), a fallback
   * chain of them, or a host function. Throws `InvalidArgumentError` naming a bad field.
   */
  provider(name: string, config: ProviderConfig | ProviderConfig[] | HostProvider): this
  /**
   * Register a tool agents call with `act.tool(name, args)`. Its `schema` is checked, and
   * its `agents` allowlist enforced (`PolicyDeniedError`), before a call is recorded; a live
   * call over its `rateLimit` waits on a timer. Throws `InvalidArgumentError` naming the tool
   * and the field (a bad schema, rate limit or agent name).
   */
  callTool(name: string, fn: CallToolFn, options?: CallToolOptions): this
  /**
   * Start an MCP server off the JS thread and register each of its tools under its MCP name
   * (executed natively, the server's input schema enforced); resolves to the names
   * registered. Rejects with `ProviderError` (`errorType` `McpSpawnFailed`,
   * `McpServerExited`, ...), `AgentTimeoutError` or `InvalidArgumentError`.
   */
  mcp(options: McpServerOptions): Promise<string[]>
  /** End the MCP servers this mesh started and unregister their tools. */
  close(): Promise<void>
  /** The call tools registered (`callTool`, `mcp`): name → `{description, schema}`, to offer to an LLM. */
  callTools(): Record<string, CallToolInfo>
  /**
   * Start a run and drive it until it finishes or waits for a person. Rejects with
   * `AgentFailedError` (the thrown value as `cause`, the `RunResult` as `result`) when an
   * agent's exception failed the run; other failures are resolved with `status: 'failed'`.
   */
  run(workflow: Workflow, options?: RunOptions): Promise<RunResult>
  /** `run` without a Promise; agents must return values, not Promises. No signals: nothing
   * can abort while it blocks. */
  runSync(workflow: Workflow, options?: Omit<RunOptions, 'signal' | 'interrupt'>): RunResult
  resume(logPath: PathLike, options?: ResumeOptions): Promise<RunResult>
  resumeSync(logPath: PathLike, options?: Omit<ResumeOptions, 'signal' | 'interrupt'>): RunResult
  /**
   * Reopen a failed or cancelled run and drive it on: `runReopened` is recorded and the nodes
   * that failed (or were cancelled) run again with a fresh allowance of attempts; finished
   * work is kept. A run that is running, waiting, completed, or failed on a limit is refused
   * with `InvalidArgumentError` naming the way out, and nothing is written.
   */
  retry(logPath: PathLike, options?: RetryOptions): Promise<RunResult>
  retrySync(logPath: PathLike, options?: Omit<RetryOptions, 'signal' | 'interrupt'>): RunResult
  /**
   * Re-execute the run recorded in `logPath`: the agents run again, every call is answered
   * from the log (nothing is sent or written), and each completion is compared with the
   * recorded one. Rejects with `NondeterminismError` at the first difference.
   */
  reexecute(logPath: PathLike): Promise<ReexecReport>
  fork(logPath: PathLike, seq: number, options?: ForkOptions): Promise<RunResult>
  forkSync(logPath: PathLike, seq: number, options?: Omit<ForkOptions, 'signal' | 'interrupt'>): RunResult
  /**
   * `run`, as an async iterator of the run's committed events (it delivers them: no
   * `onEvent`); the RunResult is `stream.result`. Errors opening the run (`UnknownAgentError`, `RunExistsError`, options)
   * are thrown by `stream` itself.
   */
  stream(workflow: Workflow, options?: Omit<RunOptions, 'onEvent'>): RunStream
  /** `resume`, as an async iterator of the events it appends. */
  streamResume(logPath: PathLike, options?: Omit<ResumeOptions, 'onEvent'>): RunStream
  /** `retry`, as an async iterator of the events it appends (`runReopened` first). */
  streamRetry(logPath: PathLike, options?: Omit<RetryOptions, 'onEvent'>): RunStream
  /** `fork`, as an async iterator of the fork's events (the copied prefix first). */
  streamFork(logPath: PathLike, seq: number, options?: Omit<ForkOptions, 'onEvent'>): RunStream
}

/** What `Mesh.reexecute` checked. */
export interface ReexecReport {
  /** The recorded run id. */
  readonly runId: string
  /** Activations whose agents or tools ran again. */
  readonly activations: number
  /** Calls answered from the log. */
  readonly calls: number
  /** Events compared. */
  readonly events: number
}
