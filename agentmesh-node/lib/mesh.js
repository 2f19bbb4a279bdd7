'use strict'
// The Node host driver: `Mesh` runs workflows with JavaScript agents.
//
// It follows the Rust and Python drivers (agentmesh-core/src/driver/mod.rs,
// agentmesh-py/python/agentmesh/_driver.py): poll the run, start a step's activations
// together, complete them as they settle (the core writes each completion at the seq reserved
// for it, so settle order never changes the canonical log), enforce `timeoutMs`, honour
// cancellation, and return when only human decisions are outstanding. Everything runs on the
// JS thread: agents are called directly and the core is called synchronously between awaits
// (no thread hop, no ThreadsafeFunction).

const native = require('../native.js')
const {
  AgentFailedError,
  AgentMeshError,
  InternalError,
  InvalidArgumentError,
  InvalidOutputError,
  UnknownAgentError,
  call,
  fromNative,
} = require('./errors')
const { Workflow, toPath } = require('./workflow')

const FINISHED = new Set(['completed', 'failed', 'cancelled'])

/** Throw from an agent to fail its activation with an exact type, message and retryable flag. */
class ActivationError extends Error {
  constructor(type, message, options = {}) {
    super(message)
    this.name = 'ActivationError'
    this.type = String(type)
    this.retryable = options.retryable === undefined ? true : Boolean(options.retryable)
  }
}

/** An agent result with token usage (`{inputTokens, outputTokens}`). */
class Output {
  constructor(value, options = {}) {
    this.value = value
    this.usage = options.usage === undefined ? null : options.usage
  }
}

/** JSON text handed to the core as written (still parsed and validated there). */
class RawJson {
  constructor(text) {
    if (typeof text !== 'string') throw new InvalidArgumentError(`RawJson needs a string, not ${typeof text}`)
    this.text = text
  }
}

/**
 * One unit of work handed to an agent or tool: the core's fields, plus `signal` (aborted when
 * the activation times out or the run is cancelled) and `cancelRun(reason)`. The signal's
 * AbortController is created only when an agent reads `signal` (it costs more than the rest
 * of a step's bookkeeping).
 */
class Activation {
  constructor(a, drive) {
    this.id = a.id
    this.runId = a.runId
    this.node = a.node
    this.kind = a.kind
    this.name = a.name
    this.attempt = a.attempt
    this.visit = a.visit
    this.delayMs = a.delayMs
    this.timeoutMs = a.timeoutMs
    this.prompt = a.prompt
    this.seed = a.seed
    this.step = a.step
    this.input = a.input
    this.deps = a.deps
    Object.defineProperty(this, '_drive', { value: drive, writable: true })
    Object.defineProperty(this, '_controller', { value: null, writable: true })
    Object.defineProperty(this, '_abortReason', { value: undefined, writable: true })
  }

  get signal() {
    if (this._controller === null) {
      this._controller = new AbortController()
      if (this._abortReason !== undefined) this._controller.abort(this._abortReason)
    }
    return this._controller.signal
  }

  cancelRun(reason = 'cancelled') {
    if (this._drive === null) throw new InvalidArgumentError('this activation is not being driven by a Mesh')
    this._drive.cancelRun(reason)
  }

  _abort(reason) {
    if (this._abortReason !== undefined) return
    this._abortReason = reason
    if (this._controller !== null) this._controller.abort(reason)
  }
}

/** Where a driven run stopped: `completed`, `failed`, `cancelled` or `waiting`. */
class RunResult {
  constructor(fields, run) {
    this.runId = fields.runId
    this.status = fields.status
    this.output = fields.output
    this.error = fields.error
    this.waiting = fields.waiting
    this.logPath = fields.logPath
    // In-memory runs keep their events here; file runs are released (the log is the truth).
    Object.defineProperty(this, '_run', { value: run, enumerable: false })
  }

  /** blake3 (hex) of the canonical log. */
  get fingerprint() {
    return this.logPath !== null ? call(native.fingerprint, this.logPath) : call(() => this._run.fingerprint())
  }

  /** The canonical log bytes. */
  canonical() {
    return this.logPath !== null ? call(native.canonicalLog, this.logPath) : call(() => this._run.canonical())
  }
}

// A settled activation: {ok: true, output, usage, durUs} | {ok: false, type, message,
// retryable, durUs, thrown}.

function micros(started) {
  return Math.round((performance.now() - started) * 1000)
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function'
}

function settledOk(value, durUs) {
  if (value instanceof Output) return { ok: true, output: value.value, usage: value.usage, durUs }
  return { ok: true, output: value, usage: null, durUs }
}

function describe(value) {
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

function settledErr(thrown, durUs) {
  try {
    return describeFailure(thrown, durUs)
  } catch {
    // The thrown value runs code when inspected (a Proxy, a throwing getter) and that failed:
    // still a failure of this activation, never a lost one.
    return { ok: false, type: 'NonErrorThrown', message: 'a value that could not be inspected', retryable: true, durUs, thrown }
  }
}

function describeFailure(thrown, durUs) {
  if (thrown instanceof InvalidOutputError) {
    return { ok: false, type: 'InvalidOutput', message: thrown.message.replace(/^\[INVALID_OUTPUT\] /, ''), retryable: false, durUs, thrown }
  }
  if (thrown instanceof ActivationError) {
    return { ok: false, type: thrown.type, message: thrown.message, retryable: thrown.retryable, durUs, thrown }
  }
  if (thrown instanceof Error) {
    let message
    try {
      message = String(thrown.message)
    } catch {
      message = describe(thrown)
    }
    const type = (thrown.constructor && thrown.constructor.name) || thrown.name || 'Error'
    return { ok: false, type, message, retryable: true, durUs, thrown }
  }
  // `throw 'text'`, `throw {code: 1}`, `throw undefined`: recorded, never lost.
  return { ok: false, type: 'NonErrorThrown', message: `${typeof thrown}: ${describe(thrown)}`, retryable: true, durUs, thrown }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

function abortReason(signal) {
  const r = signal.reason
  if (r instanceof Error) return r.message || r.name
  return r === undefined ? 'aborted' : describe(r)
}

function checkOptions(opts, allowed) {
  if (opts === undefined || opts === null) return {}
  if (typeof opts !== 'object') throw new InvalidArgumentError(`options must be an object, not ${typeof opts}`)
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError(`unknown option '${key}' (expected one of ${allowed.join(', ')})`)
    }
  }
  for (const key of ['runId', 'tenant']) {
    if (opts[key] !== undefined && opts[key] !== null && typeof opts[key] !== 'string') {
      throw new InvalidArgumentError(`${key} must be a string, not ${typeof opts[key]}`)
    }
  }
  const signal = opts.signal
  if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError('signal must be an AbortSignal')
  }
  // Refused before any log is touched (no approvals recorded, no run created).
  if (signal && signal.aborted) throw new InvalidArgumentError('the signal was aborted before the run started')
  return opts
}

/** Per-run driving state shared by the async and sync drivers. */
class Drive {
  constructor(mesh, run, signal) {
    this.mesh = mesh
    this.run = run
    this.signal = signal || null
    this.inFlight = new Map() // id → {node, deadline, timeoutMs, act}
    this.thrown = new Map() // node → the value its agent threw (for AgentFailedError.cause)
    this.cancelReason = null
    this.wake = null
    // One closure per run, shared by its activations as `act.cancelRun`.
    this.cancelRun = (reason = 'cancelled') => {
      if (this.cancelReason === null) this.cancelReason = String(reason)
      this.notify()
    }
  }

  notify() {
    const wake = this.wake
    if (wake !== null) {
      this.wake = null
      wake()
    }
  }

  pendingCancel() {
    if (this.cancelReason !== null) return this.cancelReason
    if (this.signal !== null && this.signal.aborted) return abortReason(this.signal)
    return null
  }

  /** Apply a pending cancel and schedule what is ready: null when driving is over. */
  advance() {
    const reason = this.pendingCancel()
    if (reason !== null) {
      call(() => this.run.cancel(reason))
      for (const f of this.inFlight.values()) f.act._abort(reason)
      this.inFlight.clear()
      return null
    }
    const work = []
    const acts = call(() => this.run.poll())
    for (const raw of acts) {
      if (raw.kind === 'human') continue
      const fn = (raw.kind === 'tool' ? this.mesh._tools : this.mesh._agents).get(raw.name)
      const act = new Activation(raw, this)
      const deadline = act.timeoutMs === undefined ? null : performance.now() + act.delayMs + act.timeoutMs
      this.inFlight.set(act.id, { node: act.node, deadline, timeoutMs: act.timeoutMs, act })
      work.push([fn, act])
    }
    if (this.inFlight.size === 0) {
      const status = call(() => this.run.status())
      if (status === 'waiting' || FINISHED.has(status)) return null
      throw new InternalError(`[INTERNAL] run is ${status} with no work outstanding`)
    }
    return work
  }

  /** Milliseconds until the next deadline, or null. */
  waitMs() {
    let next = null
    for (const f of this.inFlight.values()) {
      if (f.deadline !== null && (next === null || f.deadline < next)) next = f.deadline
    }
    return next === null ? null : Math.max(0, next - performance.now())
  }

  /** Record a timeout for every activation past its deadline. */
  expire() {
    if (this.waitMs() === null) return
    const now = performance.now()
    const expired = [...this.inFlight.entries()].filter(([, f]) => f.deadline !== null && f.deadline <= now)
    expired.sort((a, b) => a[0] - b[0])
    for (const [id, f] of expired) {
      this.inFlight.delete(id)
      this.thrown.delete(f.node)
      f.act._abort('timeout')
      call(() => this.run.completeErr(id, 'timeout', 'Timeout', `no result within ${f.timeoutMs} ms`, true))
    }
  }

  /** A settled activation: recorded unless it timed out or the run is being cancelled. */
  done(id, settled) {
    const f = this.inFlight.get(id)
    if (f === undefined || this.pendingCancel() !== null) return
    this.inFlight.delete(id)
    const run = this.run
    if (settled.ok) {
      try {
        if (settled.output instanceof RawJson) {
          run.completeOkJson(id, settled.output.text, settled.usage, settled.durUs)
        } else {
          run.completeOk(id, settled.output, settled.usage, settled.durUs)
        }
        this.thrown.delete(f.node)
        return
      } catch (e) {
        const err = fromNative(e)
        // The driver's own trouble (the log's disk, a closed run) stops driving.
        if (err instanceof AgentMeshError && err.code !== 'INVALID_OUTPUT') throw err
        // An output the log cannot hold (not JSON data, too large), or one whose reading ran
        // user code that threw (a getter, a Proxy): the activation fails, naming the node.
        const invalid =
          err instanceof InvalidOutputError
            ? err
            : new InvalidOutputError(`node '${f.node}': output could not be read: ${describe(err)}`, { node: f.node }, { cause: err })
        settled = { ok: false, type: 'InvalidOutput', message: invalid.message.replace(/^\[INVALID_OUTPUT\] /, ''), retryable: false, durUs: settled.durUs, thrown: invalid }
      }
    }
    call(() => run.completeErr(id, 'error', settled.type, settled.message, settled.retryable, settled.durUs))
    this.thrown.set(f.node, settled.thrown)
  }

  /** Driving stopped with `e` (an exception of the driver or the host): cancel the run so
   * its log ends with `runCancelled` when a signal asked for it; release the log either way. */
  abort() {
    try {
      this.run.close()
    } catch {
      // closing a run that failed half-way must not hide the original error
    }
  }
}

async function perform(fn, act) {
  if (act.delayMs > 0) await sleep(act.delayMs)
  const started = performance.now()
  try {
    return settledOk(await fn(act), micros(started))
  } catch (e) {
    return settledErr(e, micros(started))
  }
}

function performSync(fn, act) {
  if (act.delayMs > 0) sleepSync(act.delayMs)
  const started = performance.now()
  try {
    const value = fn(act)
    if (isThenable(value)) {
      // Never awaited: settle it quietly so it cannot become an unhandled rejection.
      Promise.resolve(value).catch(() => {})
      throw new InvalidOutputError(
        `node '${act.node}': agent returned a Promise, not JSON data (async agents need mesh.run, not runSync)`,
        { node: act.node },
      )
    }
    return settledOk(value, micros(started))
  } catch (e) {
    return settledErr(e, micros(started))
  }
}

class Mesh {
  /**
   * @param {{logDir?: string | null, fsync?: 'always' | 'batch' | 'never'}} [options]
   */
  constructor(options = {}) {
    const opts = checkOptions(options, ['logDir', 'fsync'])
    const fsync = opts.fsync === undefined ? 'batch' : opts.fsync
    if (!['always', 'batch', 'never'].includes(fsync)) {
      throw new InvalidArgumentError(`fsync must be always, batch or never, not ${describe(fsync)}`)
    }
    if (opts.logDir !== undefined && opts.logDir !== null && typeof opts.logDir !== 'string') {
      throw new InvalidArgumentError('logDir must be a string')
    }
    this.logDir = opts.logDir === undefined ? null : opts.logDir
    this.fsync = fsync
    this._agents = new Map()
    this._tools = new Map()
  }

  /** Register an agent: `fn(activation)` returns (or resolves to) JSON data. */
  agent(name, fn) {
    this._register(this._agents, 'agent', name, fn)
    return this
  }

  /** Register a tool (same contract as an agent). */
  tool(name, fn) {
    this._register(this._tools, 'tool', name, fn)
    return this
  }

  _register(registry, what, name, fn) {
    if (typeof name !== 'string') throw new InvalidArgumentError(`${what} name must be a string`)
    if (typeof fn !== 'function') throw new InvalidArgumentError(`${what} '${name}' must be a function`)
    registry.set(name, fn)
  }

  _checkRegistered(nativeWorkflow) {
    const missing = nativeWorkflow.agentNames().filter((n) => !this._agents.has(n)).map((n) => `agent '${n}'`)
    missing.push(...nativeWorkflow.toolNames().filter((n) => !this._tools.has(n)).map((n) => `tool '${n}'`))
    if (missing.length > 0) {
      throw new UnknownAgentError(
        `[UNKNOWN_AGENT] workflow '${nativeWorkflow.name}' uses ${missing.join(', ')}, not registered with this mesh`,
      )
    }
  }

  // runs ---------------------------------------------------------------------------------

  /** Start a run and drive it until it finishes or waits for a person. */
  async run(workflow, options) {
    const opts = checkOptions(options, ['input', 'seed', 'runId', 'tenant', 'signal'])
    return this._drive(this._start(workflow, opts), opts.signal)
  }

  /** `run` without a Promise: agents must return values, not Promises. */
  runSync(workflow, options) {
    const opts = checkOptions(options, ['input', 'seed', 'runId', 'tenant'])
    return this._driveSync(this._start(workflow, opts))
  }

  /** Reopen a run from its log, resolve waiting human nodes with `approvals` and drive it on. */
  async resume(logPath, options) {
    const opts = checkOptions(options, ['approvals', 'runId', 'signal'])
    return this._drive(this._reopen(logPath, opts), opts.signal)
  }

  resumeSync(logPath, options) {
    const opts = checkOptions(options, ['approvals', 'runId'])
    return this._driveSync(this._reopen(logPath, opts))
  }

  /** Fork the run in `logPath` at step end `seq` with node outputs replaced; drive the fork. */
  async fork(logPath, seq, options) {
    const opts = checkOptions(options, ['overrides', 'runId', 'signal'])
    return this._drive(this._fork(logPath, seq, opts), opts.signal)
  }

  forkSync(logPath, seq, options) {
    const opts = checkOptions(options, ['overrides', 'runId'])
    return this._driveSync(this._fork(logPath, seq, opts))
  }

  // opening runs -------------------------------------------------------------------------

  _start(workflow, opts) {
    if (!(workflow instanceof Workflow)) {
      throw new InvalidArgumentError(`workflow must be a Workflow, not ${describe(workflow)}`)
    }
    this._checkRegistered(workflow._native)
    const raw = opts.input instanceof RawJson
    const input = raw || opts.input === undefined ? null : opts.input
    return call(() =>
      // The addon's optional fields take `undefined`, not `null`.
      native.NativeRun.start(workflow._native, input, {
        inputJson: raw ? opts.input.text : undefined,
        seed: opts.seed ?? undefined,
        runId: opts.runId ?? undefined,
        logDir: this.logDir ?? undefined,
        fsync: this.fsync,
        tenant: opts.tenant ?? undefined,
      }),
    )
  }

  _reopen(logPath, opts) {
    logPath = toPath(logPath, 'logPath')
    if (opts.runId !== undefined && opts.runId !== null) {
      const header = call(native.readHeader, logPath)
      if (header.runId !== opts.runId) {
        throw new InvalidArgumentError(`[INVALID_ARGUMENT] ${logPath} holds run '${header.runId}', not '${opts.runId}'`)
      }
    }
    // Registration first: resume may append decisions a crash lost.
    this._checkRegistered(call(native.recordedWorkflow, logPath))
    const approvals = opts.approvals === undefined || opts.approvals === null ? {} : opts.approvals
    if (typeof approvals !== 'object' || Array.isArray(approvals)) {
      throw new InvalidArgumentError('approvals must map node id → decision')
    }
    const run = call(() => native.NativeRun.resume(logPath, this.fsync))
    try {
      const waiting = run.outstanding().filter((a) => a.kind === 'human')
      // Check every node before recording any, so a typo changes nothing.
      const resolved = Object.entries(approvals).map(([node, value]) => {
        const act = waiting.find((a) => a.node === node)
        if (act === undefined) {
          const names = waiting.map((a) => a.node).join(', ') || 'none'
          throw new InvalidArgumentError(`[INVALID_ARGUMENT] node '${node}' has no pending human activation (waiting: ${names})`)
        }
        return [act.id, value]
      })
      for (const [id, value] of resolved) {
        if (value instanceof RawJson) call(() => run.completeOkJson(id, value.text))
        else call(() => run.completeOk(id, value))
      }
    } catch (e) {
      run.close()
      throw e
    }
    return run
  }

  _fork(logPath, seq, opts) {
    logPath = toPath(logPath, 'logPath')
    this._checkRegistered(call(native.recordedWorkflow, logPath))
    return call(() =>
      native.NativeRun.fork(logPath, seq, opts.overrides ?? null, opts.runId ?? undefined, this.logDir ?? undefined, this.fsync),
    )
  }

  // driving ------------------------------------------------------------------------------

  async _drive(run, signal) {
    const drive = new Drive(this, run, signal)
    const settledQueue = []
    const onAbort = () => drive.notify()
    if (drive.signal !== null) drive.signal.addEventListener('abort', onAbort)
    // Without a signal only the agents can cancel, so a lone activation without a deadline
    // is awaited right here instead of through the queue.
    const direct = drive.signal === null
    let timer = null
    try {
      for (;;) {
        const work = drive.advance()
        if (work === null) break
        if (direct && work.length === 1 && drive.inFlight.size === 1 && work[0][1].timeoutMs === undefined) {
          const [fn, act] = work[0]
          drive.done(act.id, await perform(fn, act))
          continue
        }
        for (const [fn, act] of work) {
          perform(fn, act)
            .catch((e) => settledErr(e, 0)) // perform() itself never rejects; belt and braces
            .then((settled) => {
              settledQueue.push([act.id, settled])
              drive.notify()
            })
        }
        if (settledQueue.length === 0 && drive.pendingCancel() === null) {
          const waitMs = drive.waitMs()
          await new Promise((resolve) => {
            drive.wake = resolve
            if (waitMs !== null) timer = setTimeout(resolve, waitMs)
          })
          drive.wake = null
          if (timer !== null) {
            clearTimeout(timer)
            timer = null
          }
        }
        // Deadlines first: a result that settled after its deadline (an agent that blocked
        // the thread past it) is a timeout, as in runSync and the other hosts. Then every
        // result already settled; advance() then schedules what is ready.
        drive.expire()
        while (settledQueue.length > 0) {
          const [id, settled] = settledQueue.shift()
          drive.done(id, settled)
        }
      }
    } catch (e) {
      drive.abort()
      throw e
    } finally {
      if (timer !== null) clearTimeout(timer)
      if (drive.signal !== null) drive.signal.removeEventListener('abort', onAbort)
    }
    return this._result(run, drive.thrown)
  }

  _driveSync(run) {
    const drive = new Drive(this, run, null)
    try {
      for (;;) {
        const work = drive.advance()
        if (work === null) break
        for (const [fn, act] of work) {
          const settled = performSync(fn, act)
          const f = drive.inFlight.get(act.id)
          // A synchronous agent cannot be interrupted: one that overran its deadline is
          // recorded as timed out and its result dropped.
          if (f !== undefined && f.deadline !== null && performance.now() > f.deadline) continue
          drive.done(act.id, settled)
        }
        drive.expire()
      }
    } catch (e) {
      drive.abort()
      throw e
    }
    return this._result(run, drive.thrown)
  }

  _result(run, thrown) {
    const outcome = call(() => run.outcome())
    const runId = call(() => run.runId())
    const waiting = call(() => run.outstanding()).filter((a) => a.kind === 'human')
    const logPath = call(() => run.logPath())
    if (logPath !== null) run.close() // release the writer lock: the log is what resume reads
    const result = new RunResult(
      {
        runId,
        status: outcome.status,
        output: outcome.output === undefined ? null : outcome.output,
        error: outcome.error === undefined ? null : outcome.error,
        waiting,
        logPath,
      },
      logPath === null ? run : null,
    )
    const err = result.error
    if (result.status === 'failed' && err !== null && err.code === 'AGENT_FAILED' && thrown.has(err.node)) {
      const e = new AgentFailedError(`[AGENT_FAILED] ${err.message}`, { node: err.node }, { cause: thrown.get(err.node) })
      e.result = result
      throw e
    }
    return result
  }
}

module.exports = { Activation, ActivationError, Mesh, Output, RawJson, RunResult }
