'use strict'
// Errors raised by AgentMesh: one class per stable code of the core, parallel to Python's
// agentmesh.errors (same class names where JavaScript allows, same codes, same details).
//
// The native addon throws plain `Error`s carrying `code`, `details` and the message
// "[CODE] message" (src/errors.rs); `fromNative` turns them into these classes, and `call` /
// `callAsync` wrap an addon call so that every error leaving the package is one of them.
// Those three are internal to the package (not in errors.d.ts, not exported by index.js).
// This module does not load the addon.

/** Facts the core gives with an error, as the native addon reports them. */
function copyDetails(details) {
  if (details === null || typeof details !== 'object' || Array.isArray(details)) return {}
  return { ...details }
}

/** Base class of every AgentMesh error. `code` is the core's stable code. */
class AgentMeshError extends Error {
  /**
   * @param {string} message "[CODE] message" or the bare message (the prefix is added once).
   * @param {object} [details] structured facts (`node`, `field`, `seq`, `offset`, ...).
   * @param {{cause?: unknown}} [options] standard `Error` options.
   */
  constructor(message, details, options) {
    const code = new.target.code
    let text = String(message)
    if (!text.startsWith(`[${code}] `)) text = `[${code}] ${text}`
    super(text, options)
    /** The stable error code (`INVALID_WORKFLOW`, ...). */
    this.code = code
    /** Structured facts (`node`, `field`, `seq`, `expected`, `actual`, `offset`); `{}` when none. */
    this.details = copyDetails(details)
  }
}

function detail(err, key) {
  const v = err.details[key]
  return v === undefined ? null : v
}

/** The workflow definition is invalid; `node` and `field` say where. */
class InvalidWorkflowError extends AgentMeshError {
  get node() {
    return detail(this, 'node')
  }

  get field() {
    return detail(this, 'field')
  }
}

/** An argument is invalid (its type, or a value the core refuses). */
class InvalidArgumentError extends AgentMeshError {}

/** An activation result is not JSON data (or is too large); `node` names the node. */
class InvalidOutputError extends AgentMeshError {
  get node() {
    return detail(this, 'node')
  }
}

/** A completion for an unknown or already completed activation. */
class InvalidCompletionError extends AgentMeshError {}

/** A re-driven run disagrees with its log at `seq`. */
class NondeterminismError extends AgentMeshError {
  get seq() {
    return detail(this, 'seq')
  }

  get node() {
    return detail(this, 'node')
  }

  get field() {
    return detail(this, 'field')
  }

  /** What the log holds, as JSON text. */
  get expected() {
    return detail(this, 'expected')
  }

  /** What the workflow decides, as JSON text. */
  get actual() {
    return detail(this, 'actual')
  }
}

/** The log is damaged before its tail, empty, or not an AgentMesh log. */
class LogCorruptError extends AgentMeshError {
  /** Byte offset of the first damaged record. */
  get offset() {
    return detail(this, 'offset')
  }
}

/** How a log differs from its anchor: `field`, what the anchor says, what the log gives. */
class AnchorMismatch extends AgentMeshError {
  /** What differs: `records`, `bytes`, `head`, `mac` or `runId`. */
  get field() {
    return detail(this, 'field')
  }

  /** What the anchor says. */
  get expected() {
    return detail(this, 'expected')
  }

  /** What the log gives. */
  get found() {
    return detail(this, 'found')
  }
}

/** The log holds fewer records than an anchor taken earlier. */
class LogTruncatedError extends AnchorMismatch {}

/** The log's records do not hash to an anchor taken earlier (edited, chain recomputed). */
class LogHeadMismatchError extends AnchorMismatch {}

/** The run's log file already exists. */
class RunExistsError extends AgentMeshError {}

/**
 * The run failed because an activation failed. Thrown by the `Mesh` driver when the failing
 * activation threw: the thrown value is `cause`, the run's `RunResult` is `result`.
 */
class AgentFailedError extends AgentMeshError {
  /**
   * @param {string} message
   * @param {object} [details]
   * @param {{cause?: unknown, result?: unknown}} [options]
   */
  constructor(message, details, options) {
    super(message, details, options)
    const result = options !== null && typeof options === 'object' && options.result !== undefined ? options.result : null
    // Not enumerable: a RunResult would swamp util.inspect's view of the error.
    Object.defineProperty(this, 'result', { value: result, writable: true, enumerable: false, configurable: true })
  }

  get node() {
    return detail(this, 'node')
  }
}

/** The run failed because an activation's final attempt timed out. */
class AgentTimeoutError extends AgentMeshError {}

/** The run exceeded `maxSteps`, a node's `maxVisits`, or the output size limit. */
class LimitExceededError extends AgentMeshError {}

/** The run was cancelled; the message is the reason. */
class RunCancelledError extends AgentMeshError {}

/** The workflow names an agent or tool the mesh has no function for. */
class UnknownAgentError extends AgentMeshError {}

/**
 * A call an agent made (an LLM request, a tool) failed: the service answered with an error,
 * could not be reached, or the host function threw. The log holds the failure (`callFailed`),
 * and a resumed or re-executed run raises the same error without calling anything.
 */
class ProviderError extends AgentMeshError {
  /** The HTTP status, when a service answered; `null` otherwise. */
  get status() {
    return detail(this, 'status')
  }

  /** Whether trying again may help. */
  get retryable() {
    return detail(this, 'retryable') === true
  }

  /** The error type (`RateLimited`, `Timeout`, `ProviderError`, a host exception class, ...). */
  get errorType() {
    return detail(this, 'type')
  }
}

/**
 * A rule refused something before it happened. The run's policy (docs/policy.md): a call whose
 * request a `block` rule matched, or a tool the allowlist does not give the agent (recorded as
 * `callDenied`, never sent or run), a response it blocked, or (for a run) an output, decision
 * or input it blocked. Or a tool's registration allowlist (`mesh.callTool(name, fn, {agents})`,
 * `mesh.mcp({agents})`): nothing was recorded and the tool was not called. `rule` and
 * `verdict` come from the policy's verdict (`null` otherwise); never the content.
 */
class PolicyDeniedError extends AgentMeshError {
  /** The id of the rule that refused (`tools` for the allowlist), or `null`. */
  get rule() {
    return detail(this, 'rule')
  }

  /** The verdict (`{rule, action, kind, path?, count, digest?, agent?}`), or `null`. */
  get verdict() {
    const d = this.details
    return d !== null && d !== undefined && typeof d === 'object' && 'action' in d ? d : null
  }
}

/**
 * A policy could not be loaded (`new Policy(...)`, `new Mesh({policy})`): nothing of it
 * applies. `rule`, `field`, `line` and `column` say where (`null` when not known).
 */
class PolicyInvalidError extends AgentMeshError {
  /** The rule's id, when the problem is in one (`tools` for the allowlist). */
  get rule() {
    return detail(this, 'rule')
  }

  /** The field, as a dotted path (`rules[2].regex`). */
  get field() {
    return detail(this, 'field')
  }

  /** The line in the file, from 1. */
  get line() {
    return detail(this, 'line')
  }

  /** The column in the file, from 1. */
  get column() {
    return detail(this, 'column')
  }
}

/**
 * A budget refused a call before anything was sent (a `callDenied` record), or the run failed
 * on that refusal. `details` names the budget: `scope` (`run`, `node`, `agent`), `dimension`,
 * `limit`, `spent`, `requested` and `left`, and `node` and `agent` when set; the getters read
 * them (`null` when absent).
 */
class BudgetExceededError extends AgentMeshError {
  /** The budget that binds: `run`, `node` or `agent`. */
  get scope() {
    return detail(this, 'scope')
  }

  /** The dimension the call did not fit in (`microUsd`, `calls`, `outputTokens`, ...). */
  get dimension() {
    return detail(this, 'dimension')
  }

  /** The budget's limit there. */
  get limit() {
    return detail(this, 'limit')
  }

  /** What the budget had spent or reserved when the call was refused. */
  get spent() {
    return detail(this, 'spent')
  }

  /** What the call needed there (at its smallest allowed `maxTokens`). */
  get requested() {
    return detail(this, 'requested')
  }

  /** What was left of the activation's lease there. */
  get left() {
    return detail(this, 'left')
  }

  /** The node whose call was refused (and the budget's, for scope `node`). */
  get node() {
    return detail(this, 'node')
  }

  /** The agent whose budget binds (scope `agent`). */
  get agent() {
    return detail(this, 'agent')
  }
}

/** An operating-system error (a file that cannot be read or written, a locked log). */
class AgentMeshIOError extends AgentMeshError {}

/** A bug in AgentMesh. Please report it. */
class InternalError extends AgentMeshError {}

/**
 * The driver stopped driving a run before it finished, without writing anything final: an
 * `interrupt` signal was aborted, or an event stream was closed (`break`). Activations in
 * flight stay in flight in the log, as after a crash, and the log is released, so
 * `mesh.resume(logPath)` continues the run. Not an `AgentMeshError`: no core error code
 * (the core never refused anything); `cause` is the interrupt signal's reason.
 */
class RunInterruptedError extends Error {
  /**
   * @param {{runId: string, logPath: string | null, reason: string}} where
   * @param {{cause?: unknown}} [options]
   */
  constructor(where, options) {
    const { runId, logPath, reason } = where
    super(
      logPath === null
        ? `run '${runId}' was interrupted (${reason}); its log was in memory, so it cannot be resumed`
        : `run '${runId}' was interrupted (${reason}); nothing final was written: resume it with mesh.resume('${logPath}')`,
      options,
    )
    /** The run that was interrupted. */
    this.runId = runId
    /** Its log file (`null` for an in-memory run, which cannot be resumed). */
    this.logPath = logPath
    /** Why: the interrupt signal's reason as text, or what closed the event stream. */
    this.reason = reason
  }
}
Object.defineProperty(RunInterruptedError.prototype, 'name', { value: 'RunInterruptedError', writable: true, enumerable: false, configurable: true })

// One class per code, in the core's order (ErrorKind::ALL; Python's errors._TABLE).
const TABLE = [
  [InvalidWorkflowError, 'INVALID_WORKFLOW'],
  [InvalidArgumentError, 'INVALID_ARGUMENT'],
  [InvalidOutputError, 'INVALID_OUTPUT'],
  [InvalidCompletionError, 'INVALID_COMPLETION'],
  [NondeterminismError, 'NONDETERMINISM'],
  [LogCorruptError, 'LOG_CORRUPT'],
  [LogTruncatedError, 'LOG_TRUNCATED'],
  [LogHeadMismatchError, 'LOG_HEAD_MISMATCH'],
  [RunExistsError, 'RUN_EXISTS'],
  [AgentFailedError, 'AGENT_FAILED'],
  [AgentTimeoutError, 'TIMEOUT'],
  [LimitExceededError, 'LIMIT_EXCEEDED'],
  [RunCancelledError, 'CANCELLED'],
  [UnknownAgentError, 'UNKNOWN_AGENT'],
  [ProviderError, 'PROVIDER_ERROR'],
  [PolicyDeniedError, 'POLICY_DENIED'],
  [PolicyInvalidError, 'POLICY_INVALID'],
  [BudgetExceededError, 'BUDGET_EXCEEDED'],
  [AgentMeshIOError, 'IO'],
  [InternalError, 'INTERNAL'],
]

function defineConstant(target, key, value) {
  Object.defineProperty(target, key, { value, writable: false, enumerable: false, configurable: false })
}

// Python's base class has code INTERNAL too (an error nobody classified).
defineConstant(AgentMeshError, 'code', 'INTERNAL')
for (const cls of [AgentMeshError, ...TABLE.map(([c]) => c)]) {
  // On the prototype, like the built-in errors: stacks read "InvalidWorkflowError: [...]".
  Object.defineProperty(cls.prototype, 'name', { value: cls.name, writable: true, enumerable: false, configurable: true })
}
for (const [cls, code] of TABLE) defineConstant(cls, 'code', code)

const BY_CODE = new Map(TABLE.map(([cls, code]) => [code, cls]))

/** Every stable error code of the core, in the core's order. */
const ERROR_CODES = Object.freeze(TABLE.map(([, code]) => code))

/** The class for a stable code (`InternalError` for an unknown one). */
function errorClass(code) {
  return BY_CODE.get(code) || InternalError
}

// napi-rs refuses an argument of the wrong type itself, with its own status as `code`
// (napi::Status): these are argument errors of the caller.
const NAPI_ARGUMENT_CODES = new Map([
  ['InvalidArg', 'invalid argument'],
  ['ObjectExpected', 'an object was expected'],
  ['StringExpected', 'a string was expected'],
  ['NameExpected', 'a string or symbol was expected'],
  ['FunctionExpected', 'a function was expected'],
  ['NumberExpected', 'a number was expected'],
  ['BooleanExpected', 'a boolean was expected'],
  ['ArrayExpected', 'an array was expected'],
  ['BigintExpected', 'a bigint was expected'],
  ['DateExpected', 'a Date was expected'],
  ['ArrayBufferExpected', 'an ArrayBuffer was expected'],
  ['DetachableArraybufferExpected', 'a detachable ArrayBuffer was expected'],
])

const CODED_MESSAGE = /^\[([A-Z][A-Z_]*)\] /

function isError(value) {
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]'
}

/** The stack frames ("\n    at ...") of an error's stack, or '' when it has none. */
function frames(err) {
  let stack
  try {
    stack = err.stack
  } catch {
    return ''
  }
  if (typeof stack !== 'string') return ''
  const i = stack.search(/\n\s+at /)
  return i < 0 ? '' : stack.slice(i)
}

function setStack(err, stack) {
  Object.defineProperty(err, 'stack', { value: stack, writable: true, enumerable: false, configurable: true })
}

function convert(err) {
  const code = err.code
  const message = typeof err.message === 'string' ? err.message : String(err.message)
  const cls = BY_CODE.get(code)
  if (cls !== undefined) {
    // A core error (src/errors.rs). The prefix check keeps an unrelated error that merely has
    // such a code (thrown by a getter the addon called) out of it.
    return message.startsWith(`[${code}] `) ? new cls(message, err.details) : null
  }
  const napi = NAPI_ARGUMENT_CODES.get(code)
  if (napi !== undefined) return new InvalidArgumentError(`${napi}: ${message} (napi ${code})`)
  const coded = CODED_MESSAGE.exec(message)
  if (coded !== null && (err.details !== undefined || code === 'GenericFailure')) {
    // A code this package does not know (a newer core): kept visible, classified INTERNAL as
    // Python does; or a core error napi could only report as GenericFailure.
    const known = BY_CODE.get(coded[1])
    if (known !== undefined) return new known(message, err.details)
    return new InternalError(`unknown error code ${coded[1]}: ${message.slice(coded[0].length)}`, err.details)
  }
  return null
}

/**
 * The AgentMesh error for an error thrown by the native addon: the class of its code, with the
 * same message, code and details, and the native call site's stack. napi-rs's own argument
 * errors (`InvalidArg`, `StringExpected`, ...) become `InvalidArgumentError`. Anything else —
 * an AgentMeshError already, an exception of the caller's own code passed through, a
 * non-Error — is returned unchanged.
 */
function fromNative(err) {
  if (err instanceof AgentMeshError || !isError(err)) return err
  let code
  try {
    code = err.code
  } catch {
    return err
  }
  if (typeof code !== 'string') return err
  const converted = convert(err)
  if (converted === null) return err
  const rest = frames(err)
  if (rest !== '') setStack(converted, `${converted.name}: ${converted.message}${rest}`)
  return converted
}

/** `fromNative(e)`, with the stack of the caller of `helper` (the native call site). */
function rethrown(e, helper) {
  const err = fromNative(e)
  if (err !== e) Error.captureStackTrace(err, helper)
  return err
}

/**
 * Call an addon function: `call(native.verifyLog, path)`. Methods, static ones included, need
 * their receiver: `call(() => run.poll())`, `call(() => native.NativeWorkflow.fromJson(text))`
 * (napi-rs refuses `call(native.NativeWorkflow.fromJson, text)`).
 */
function call(fn, ...args) {
  try {
    return fn(...args)
  } catch (e) {
    throw rethrown(e, call)
  }
}

/**
 * Call an addon function that returns a Promise (the `…Async` AsyncTask functions); rejects
 * with AgentMesh errors carrying the caller's (async) stack: a rejection made on the event
 * loop has no frames of its own.
 */
async function callAsync(fn, ...args) {
  let pending
  try {
    pending = fn(...args)
  } catch (e) {
    throw rethrown(e, callAsync)
  }
  try {
    return await pending
  } catch (e) {
    throw rethrown(e, callAsync)
  }
}

module.exports = {
  AgentMeshError,
  InvalidWorkflowError,
  InvalidArgumentError,
  InvalidOutputError,
  InvalidCompletionError,
  NondeterminismError,
  LogCorruptError,
  LogTruncatedError,
  LogHeadMismatchError,
  RunExistsError,
  AgentFailedError,
  AgentTimeoutError,
  LimitExceededError,
  RunCancelledError,
  UnknownAgentError,
  ProviderError,
  PolicyDeniedError,
  PolicyInvalidError,
  BudgetExceededError,
  AgentMeshIOError,
  InternalError,
  RunInterruptedError,
  ERROR_CODES,
  errorClass,
  fromNative,
  call,
  callAsync,
}
