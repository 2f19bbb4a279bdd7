import type { RunResult } from './mesh'
import type { Verdict } from '../native'

/** The stable code of every core error kind, in the core's order. */
export type AgentMeshErrorCode =
  | 'INVALID_WORKFLOW'
  | 'INVALID_ARGUMENT'
  | 'INVALID_OUTPUT'
  | 'INVALID_COMPLETION'
  | 'NONDETERMINISM'
  | 'LOG_CORRUPT'
  | 'LOG_TRUNCATED'
  | 'LOG_HEAD_MISMATCH'
  | 'RUN_EXISTS'
  | 'AGENT_FAILED'
  | 'TIMEOUT'
  | 'LIMIT_EXCEEDED'
  | 'CANCELLED'
  | 'UNKNOWN_AGENT'
  | 'PROVIDER_ERROR'
  | 'POLICY_DENIED'
  | 'POLICY_INVALID'
  | 'BUDGET_EXCEEDED'
  | 'IO'
  | 'INTERNAL'

/** Structured facts the core gives with an error (which ones depends on the code). */
export interface ErrorDetails {
  /** The node concerned (`null`: the workflow document as a whole). */
  node?: string | null
  /** The field concerned (`after[0]`, `retry.maxAttempts`, `data.agent`, ...). */
  field?: string
  /** The first divergent seq (`NONDETERMINISM`). */
  seq?: number
  /** What the log holds, as JSON text (`NONDETERMINISM`). */
  expected?: string
  /** What the workflow decides, as JSON text (`NONDETERMINISM`). */
  actual?: string
  /** Byte offset of the first damaged record (`LOG_CORRUPT`). */
  offset?: number
  /** What the log gives where it differs from its anchor (`LOG_TRUNCATED`, `LOG_HEAD_MISMATCH`). */
  found?: string
  /** The failed call's error type (`PROVIDER_ERROR`). */
  type?: string
  /** The HTTP status, when a service answered (`PROVIDER_ERROR`). */
  status?: number | null
  /** Whether trying again may help (`PROVIDER_ERROR`). */
  retryable?: boolean
  /** The budget that binds (`BUDGET_EXCEEDED`). */
  scope?: 'run' | 'node' | 'agent'
  /** The agent whose budget binds (`BUDGET_EXCEEDED`, scope `agent`). */
  agent?: string
  /** The dimension the call did not fit in (`BUDGET_EXCEEDED`). */
  dimension?: 'inputTokens' | 'outputTokens' | 'totalTokens' | 'microUsd' | 'calls'
  /** The budget's limit there (`BUDGET_EXCEEDED`). */
  limit?: number
  /** What the budget had spent or reserved when the call was refused (`BUDGET_EXCEEDED`). */
  spent?: number
  /** What the call needed there (`BUDGET_EXCEEDED`). */
  requested?: number
  /** What was left of the activation's lease there (`BUDGET_EXCEEDED`). */
  left?: number
}

/** Base class of every AgentMesh error. */
export declare class AgentMeshError extends Error {
  /**
   * `message` may carry the "[CODE] " prefix already; it is added once otherwise.
   * `details` defaults to `{}`.
   */
  constructor(message: string, details?: ErrorDetails | null, options?: ErrorOptions)
  /** The code of errors of this class. */
  static readonly code: AgentMeshErrorCode
  /** The stable code of the core (the same string as Rust's `err.code()`, Python's `exc.code`). */
  readonly code: AgentMeshErrorCode
  /** Structured facts; `{}` when the core gives none. */
  readonly details: ErrorDetails
}

/** The workflow definition is invalid; `node` and `field` say where. */
export declare class InvalidWorkflowError extends AgentMeshError {
  static readonly code: 'INVALID_WORKFLOW'
  readonly code: 'INVALID_WORKFLOW'
  /** The node (`null`: the document as a whole, or not known). */
  readonly node: string | null
  readonly field: string | null
}

/** An argument is invalid (its type, or a value the core refuses). */
export declare class InvalidArgumentError extends AgentMeshError {
  static readonly code: 'INVALID_ARGUMENT'
  readonly code: 'INVALID_ARGUMENT'
}

/** An activation result is not JSON data (or is too large). */
export declare class InvalidOutputError extends AgentMeshError {
  static readonly code: 'INVALID_OUTPUT'
  readonly code: 'INVALID_OUTPUT'
  readonly node: string | null
}

/** A completion for an unknown or already completed activation. */
export declare class InvalidCompletionError extends AgentMeshError {
  static readonly code: 'INVALID_COMPLETION'
  readonly code: 'INVALID_COMPLETION'
}

/** A re-driven run disagrees with its log at `seq`. */
export declare class NondeterminismError extends AgentMeshError {
  static readonly code: 'NONDETERMINISM'
  readonly code: 'NONDETERMINISM'
  readonly seq: number | null
  readonly node: string | null
  /** The first differing field (`type`, `data.agent`, `data.case`, ...). */
  readonly field: string | null
  /** What the log holds, as JSON text. */
  readonly expected: string | null
  /** What the workflow decides, as JSON text (`null` in the text when it decides nothing). */
  readonly actual: string | null
}

/** The log is damaged before its tail, empty, or not an AgentMesh log. */
export declare class LogCorruptError extends AgentMeshError {
  static readonly code: 'LOG_CORRUPT'
  readonly code: 'LOG_CORRUPT'
  /** Byte offset of the first damaged record. */
  readonly offset: number | null
}

/** The log holds fewer records than an anchor taken earlier. */
export declare class LogTruncatedError extends AgentMeshError {
  static readonly code: 'LOG_TRUNCATED'
  readonly code: 'LOG_TRUNCATED'
  /** What differs: `records` or `bytes`. */
  readonly field: string | null
  /** What the anchor says. */
  readonly expected: string | null
  /** What the log gives. */
  readonly found: string | null
}

/** The log's records do not hash to an anchor taken earlier (edited, chain recomputed). */
export declare class LogHeadMismatchError extends AgentMeshError {
  static readonly code: 'LOG_HEAD_MISMATCH'
  readonly code: 'LOG_HEAD_MISMATCH'
  /** What differs: `head`, `bytes`, `mac` or `runId`. */
  readonly field: string | null
  /** What the anchor says. */
  readonly expected: string | null
  /** What the log gives. */
  readonly found: string | null
}

/** The run's log file already exists. */
export declare class RunExistsError extends AgentMeshError {
  static readonly code: 'RUN_EXISTS'
  readonly code: 'RUN_EXISTS'
}

/**
 * The run failed because an activation failed. `Mesh` throws it when the failing activation
 * threw: the thrown value is `cause`, the run's `RunResult` is `result`.
 */
export declare class AgentFailedError extends AgentMeshError {
  constructor(message: string, details?: ErrorDetails | null, options?: ErrorOptions & { result?: RunResult | null })
  static readonly code: 'AGENT_FAILED'
  readonly code: 'AGENT_FAILED'
  readonly node: string | null
  /** The run's result (set by the driver; `null` otherwise). */
  result: RunResult | null
}

/** The run failed because an activation's final attempt timed out. */
export declare class AgentTimeoutError extends AgentMeshError {
  static readonly code: 'TIMEOUT'
  readonly code: 'TIMEOUT'
}

/** The run exceeded `maxSteps`, a node's `maxVisits`, or the output size limit. */
export declare class LimitExceededError extends AgentMeshError {
  static readonly code: 'LIMIT_EXCEEDED'
  readonly code: 'LIMIT_EXCEEDED'
}

/** The run was cancelled; the message is the reason. */
export declare class RunCancelledError extends AgentMeshError {
  static readonly code: 'CANCELLED'
  readonly code: 'CANCELLED'
}

/** The workflow names an agent or tool the mesh has no function for. */
export declare class UnknownAgentError extends AgentMeshError {
  static readonly code: 'UNKNOWN_AGENT'
  readonly code: 'UNKNOWN_AGENT'
}

/**
 * A call an agent made (an LLM request, a tool) failed: the service answered with an error,
 * could not be reached, or the host function threw. A resumed or re-executed run raises the
 * recorded failure again without calling anything.
 */
export declare class ProviderError extends AgentMeshError {
  static readonly code: 'PROVIDER_ERROR'
  readonly code: 'PROVIDER_ERROR'
  /** The HTTP status, when a service answered. */
  readonly status: number | null
  /** Whether trying again may help. */
  readonly retryable: boolean
  /** The error type (`RateLimited`, `Timeout`, `ProviderError`, a host exception class, ...). */
  readonly errorType: string | null
}

/**
 * A call the mesh's rules do not allow: the agent is not on the tool's allowlist (`agents` of
 * `mesh.callTool` or `mesh.mcp`). Nothing was recorded and the tool was not called.
 */
export declare class PolicyDeniedError extends AgentMeshError {
  static readonly code: 'POLICY_DENIED'
  readonly code: 'POLICY_DENIED'
  /** The id of the policy rule that refused (`tools` for the allowlist), or `null`. */
  readonly rule: string | null
  /** The policy's verdict, or `null` (a tool's registration allowlist, a blocked response). */
  readonly verdict: Verdict | null
}

/**
 * A policy could not be loaded: nothing of it applies. `rule`, `field`, `line` and `column`
 * say where (`null` when not known).
 */
export declare class PolicyInvalidError extends AgentMeshError {
  static readonly code: 'POLICY_INVALID'
  readonly code: 'POLICY_INVALID'
  readonly rule: string | null
  readonly field: string | null
  readonly line: number | null
  readonly column: number | null
}

/**
 * A budget refused a call before anything was sent (a `callDenied` record), or the run failed
 * on that refusal; `details` holds `scope`, `dimension`, `limit`, `spent`, `requested` and
 * `left` (and `node`, `agent` when set), which the getters read (`null` when absent).
 */
export declare class BudgetExceededError extends AgentMeshError {
  static readonly code: 'BUDGET_EXCEEDED'
  readonly code: 'BUDGET_EXCEEDED'
  /** The budget that binds. */
  readonly scope: 'run' | 'node' | 'agent' | null
  /** The dimension the call did not fit in. */
  readonly dimension: 'inputTokens' | 'outputTokens' | 'totalTokens' | 'microUsd' | 'calls' | null
  /** The budget's limit there. */
  readonly limit: number | null
  /** What the budget had spent or reserved when the call was refused. */
  readonly spent: number | null
  /** What the call needed there (at its smallest allowed `maxTokens`). */
  readonly requested: number | null
  /** What was left of the activation's lease there. */
  readonly left: number | null
  /** The node whose call was refused (and the budget's, for scope `node`). */
  readonly node: string | null
  /** The agent whose budget binds (scope `agent`). */
  readonly agent: string | null
}

/** An operating-system error (a file that cannot be read or written, a locked log). */
export declare class AgentMeshIOError extends AgentMeshError {
  static readonly code: 'IO'
  readonly code: 'IO'
}

/** A bug in AgentMesh. Please report it. */
export declare class InternalError extends AgentMeshError {
  static readonly code: 'INTERNAL'
  readonly code: 'INTERNAL'
}

/**
 * The driver stopped driving a run before it finished, without writing anything final (an
 * `interrupt` signal was aborted, or an event stream was closed): the run stays resumable,
 * as after a crash. Not an `AgentMeshError` (no core code); `cause` is the signal's reason.
 */
export declare class RunInterruptedError extends Error {
  constructor(where: { runId: string; logPath: string | null; reason: string }, options?: { cause?: unknown })
  /** The run that was interrupted. */
  readonly runId: string
  /** Its log file; `null` for an in-memory run (which cannot be resumed). */
  readonly logPath: string | null
  /** Why: the interrupt signal's reason as text, or what closed the event stream. */
  readonly reason: string
}

/** The class of each code. */
export interface ErrorClasses {
  INVALID_WORKFLOW: typeof InvalidWorkflowError
  INVALID_ARGUMENT: typeof InvalidArgumentError
  INVALID_OUTPUT: typeof InvalidOutputError
  INVALID_COMPLETION: typeof InvalidCompletionError
  NONDETERMINISM: typeof NondeterminismError
  LOG_CORRUPT: typeof LogCorruptError
  LOG_TRUNCATED: typeof LogTruncatedError
  LOG_HEAD_MISMATCH: typeof LogHeadMismatchError
  RUN_EXISTS: typeof RunExistsError
  AGENT_FAILED: typeof AgentFailedError
  TIMEOUT: typeof AgentTimeoutError
  LIMIT_EXCEEDED: typeof LimitExceededError
  CANCELLED: typeof RunCancelledError
  UNKNOWN_AGENT: typeof UnknownAgentError
  PROVIDER_ERROR: typeof ProviderError
  POLICY_DENIED: typeof PolicyDeniedError
  POLICY_INVALID: typeof PolicyInvalidError
  BUDGET_EXCEEDED: typeof BudgetExceededError
  IO: typeof AgentMeshIOError
  INTERNAL: typeof InternalError
}

/** Any AgentMesh error, discriminated by `code` (`switch (e.code)` narrows). */
export type AnyAgentMeshError = InstanceType<ErrorClasses[AgentMeshErrorCode]>

/** Every stable error code of the core, in the core's order. */
export declare const ERROR_CODES: readonly AgentMeshErrorCode[]

/** The class for a stable code (`InternalError` for an unknown one). */
export declare function errorClass<C extends AgentMeshErrorCode>(code: C): ErrorClasses[C]
export declare function errorClass(code: string): typeof AgentMeshError

// fromNative, call and callAsync (lib/errors.js) are internal to the package (used by the driver
// and the log functions) and deliberately not declared here: the entry point re-exports this file.
