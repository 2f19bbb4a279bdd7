import type { PathLike, Workflow } from './workflow'
import type { Activation as NativeActivation, RunError } from '../native'

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** Token usage of one activation. */
export interface Usage {
  inputTokens?: number
  outputTokens?: number
}

/** One unit of work handed to an agent or tool. */
export interface Activation extends NativeActivation {
  /** Aborted when the activation times out or the run is cancelled: pass it to `fetch` etc. */
  readonly signal: AbortSignal
  /** Cancel the run; takes effect before this activation's own result is recorded. */
  cancelRun(reason?: string): void
}

/** What an agent returns: JSON data, an `Output` (with usage) or `RawJson`. */
export type AgentResult = unknown

/** An agent or tool: sync or async. */
export type AgentFn = (activation: Activation) => AgentResult | Promise<AgentResult>

/** Throw from an agent to fail its activation with an exact type, message and retryable flag. */
export declare class ActivationError extends Error {
  constructor(type: string, message: string, options?: { retryable?: boolean })
  readonly type: string
  readonly retryable: boolean
}

/** An agent result with token usage. */
export declare class Output<T = unknown> {
  constructor(value: T, options?: { usage?: Usage | null })
  readonly value: T
  readonly usage: Usage | null
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
  readonly waiting: NativeActivation[]
  /** The log file (`null` for an in-memory run). */
  readonly logPath: string | null
  /** blake3 (hex) of the canonical log. */
  readonly fingerprint: string
  /** The canonical log bytes. */
  canonical(): Buffer
}

export interface MeshOptions {
  /** Directory of the log files (`<runId>.jsonl`); absent or null: in memory. */
  logDir?: string | null
  fsync?: 'always' | 'batch' | 'never'
}

export interface RunOptions {
  input?: unknown
  /** Run seed: a number up to 2^53 - 1, a bigint, or a decimal string (up to 2^64 - 1). */
  seed?: number | bigint | string
  runId?: string
  tenant?: string
  /** Aborting it cancels the run (`runCancelled` is recorded) and settles the Promise. */
  signal?: AbortSignal
}

export interface ResumeOptions {
  /** Decisions for waiting human nodes, by node id. */
  approvals?: Record<string, unknown>
  /** When given, the log must hold this run (`InvalidArgumentError` otherwise). */
  runId?: string
  signal?: AbortSignal
}

export interface ForkOptions {
  /** Node outputs replaced in the fork, by node id. */
  overrides?: Record<string, unknown>
  runId?: string
  signal?: AbortSignal
}

/** Registers agents and tools and drives runs. */
export declare class Mesh {
  constructor(options?: MeshOptions)
  readonly logDir: string | null
  readonly fsync: 'always' | 'batch' | 'never'
  agent(name: string, fn: AgentFn): this
  tool(name: string, fn: AgentFn): this
  /**
   * Start a run and drive it until it finishes or waits for a person. Rejects with
   * `AgentFailedError` (the thrown value as `cause`, the `RunResult` as `result`) when an
   * agent's exception failed the run; other failures are resolved with `status: 'failed'`.
   */
  run(workflow: Workflow, options?: RunOptions): Promise<RunResult>
  /** `run` without a Promise; agents must return values, not Promises. */
  runSync(workflow: Workflow, options?: Omit<RunOptions, 'signal'>): RunResult
  resume(logPath: PathLike, options?: ResumeOptions): Promise<RunResult>
  resumeSync(logPath: PathLike, options?: Omit<ResumeOptions, 'signal'>): RunResult
  fork(logPath: PathLike, seq: number, options?: ForkOptions): Promise<RunResult>
  forkSync(logPath: PathLike, seq: number, options?: Omit<ForkOptions, 'signal'>): RunResult
}
