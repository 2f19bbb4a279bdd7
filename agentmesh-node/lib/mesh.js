'use strict'
// The Node host driver: `Mesh` runs workflows with JavaScript agents.
//
// It follows the Rust and Python drivers (agentmesh-core/src/driver/mod.rs,
// agentmesh-py/python/agentmesh/_driver.py): poll the run, start a step's activations
// together, record their results as they settle (the core writes each completion at the seq
// reserved for it, so settle order never changes the canonical log), enforce `timeoutMs`,
// honour cancellation, and return when only human decisions are outstanding. Everything runs
// on the JS thread: agents are called directly and the core is called synchronously between
// awaits (no thread hop, no ThreadsafeFunction).
//
// Three rules every host shares:
// - A result is converted to a native completion (NativeCompletion) the moment the driver
//   has it — a synchronous agent's value before any microtask can run, a Promise's in its
//   settlement callback — so nothing done to the JavaScript value later is logged.
// - An activation's deadline is `timeoutMs` after it starts running (after `delayMs`); a
//   result counts as a timeout only if it settled after its deadline, whenever the driver
//   gets to it. The timeout failure itself is written by the core (NativeCompletion.timedOut).
// - Results that settled together are recorded with one NativeRun.completeAll: one write,
//   one fsync in fsync `always` mode (group commit).
//
// Two ways to stop: cancelling (`signal`, act.cancelRun) is final — the core records it.
// Interrupting (`interrupt`, a throwing onEvent, an event stream closed early) writes nothing:
// the driver stops, abandons what is in flight and releases the log, which is then exactly
// what a crash would have left, so `resume` continues the run.

const util = require('node:util')

const native = require('../native.js')
const {
  AgentFailedError,
  AgentMeshError,
  InternalError,
  InvalidArgumentError,
  InvalidOutputError,
  RunInterruptedError,
  call,
  callAsync,
  fromNative,
} = require('./errors')
const { hostTool, mcpTools, spawnMcp } = require('./tools')
const { Workflow, toPath } = require('./workflow')
const { ActivationError, Output, RawJson, describe, describeFailure } = require('./values')
const { CallPort, LlmStream, providerError } = require('./calls')
const { budgetText, costOf, priceTable } = require('./budgets')
const { nativePolicy } = require('./policy')
const { nativeTelemetry } = require('./telemetry')

const { NativeCompletion } = native
const FINISHED = new Set(['completed', 'failed', 'cancelled'])

const UNREAD = Symbol('unread')
const FIELDS = ['id', 'runId', 'node', 'kind', 'name', 'attempt', 'visit', 'delayMs', 'timeoutMs', 'prompt', 'seed', 'step', 'input', 'deps', 'item', 'reads', 'lastFailure']

// NativeRun.poll() and outstanding() return one string (src/activation.rs): a JSON header line
// of records [id, node, kind, name, attempt, visit, delayMs, timeoutMs, step, seed, prompt,
// depsEnd], then the activations' texts, back to back (depsEnd: where each one ends). A map
// item's record, or one with reads, has four more entries [itemIndex, itemKey, valueEnd,
// readsEnd]: its item value text and its reads text follow its deps text. A retry's record
// has those and a seventeenth, the failure it retries ({kind, type, message, retryable}). A
// sub-workflow node's record has those (lastFailure null without one) and an eighteenth,
// inputEnd: its own input's text (its workflow node's input, not the run's) follows.
const DEPS = 11
const ITEM_INDEX = 12
const ITEM_KEY = 13
const ITEM_VALUE = 14
const READS = 15
const LAST_FAILURE = 16
const INPUT = 17

/** The records of a poll text, each record's text ends replaced by the texts. */
function parsePoll(text) {
  const nl = text.indexOf('\n')
  const records = JSON.parse(text.slice(0, nl))
  let start = nl + 1
  for (const record of records) {
    let end = nl + 1 + record[DEPS]
    record[DEPS] = text.slice(start, end)
    start = end
    if (record.length > READS) {
      end = nl + 1 + record[ITEM_VALUE]
      record[ITEM_VALUE] = text.slice(start, end)
      start = end
      end = nl + 1 + record[READS]
      record[READS] = text.slice(start, end)
      start = end
    }
    if (record.length > INPUT) {
      end = nl + 1 + record[INPUT]
      record[INPUT] = text.slice(start, end)
      start = end
    }
  }
  return records
}

/** A record's map item, `{index, key?, value}` (the value parsed now), or undefined. */
function itemOf(record) {
  if (record.length <= READS || record[ITEM_INDEX] === null) return undefined
  const item = { index: record[ITEM_INDEX] }
  if (record[ITEM_KEY] !== null) item.key = record[ITEM_KEY]
  item.value = JSON.parse(record[ITEM_VALUE])
  return item
}

/** A record's reads (path → value; `{}` without reads). */
function readsOf(record) {
  return record.length > READS && record[READS] !== '' ? JSON.parse(record[READS]) : {}
}

/**
 * One unit of work handed to an agent or tool: the core's fields, plus `signal` (aborted when
 * the activation times out or the run is cancelled) and `cancelRun(reason)`. `input`, `deps`,
 * `item` and `reads` arrive as the core's JSON text and become values only when an agent reads
 * them (once; what the addon would have built: `JSON.parse` of the core's text); `lastFailure`
 * (a retry's) comes parsed with the poll's header. The signal's AbortController is created
 * only when an agent reads `signal`.
 */
class Activation {
  // [id, node, kind, name, attempt, visit, delayMs, timeoutMs, step, seed, prompt, deps],
  // and [itemIndex, itemKey, itemValue, reads] after them for a map item, with reads or for a
  // retry, and [lastFailure] after those for a retry
  #record
  #deps = UNREAD
  #item = UNREAD
  #reads = UNREAD
  #input = UNREAD
  #seed = null
  #run // {runId, inputJson} of the run
  #drive
  #controller = null
  #abortReason = undefined
  #calls = null // CallPort, on the first call
  #ended = false // the agent returned before making any call

  constructor(record, run, drive) {
    this.#record = record
    this.#run = run
    this.#drive = drive
  }

  get id() {
    return this.#record[0]
  }

  get runId() {
    return this.#run.runId
  }

  get node() {
    return this.#record[1]
  }

  get kind() {
    return this.#record[2]
  }

  get name() {
    return this.#record[3]
  }

  get attempt() {
    return this.#record[4]
  }

  get visit() {
    return this.#record[5]
  }

  get delayMs() {
    return this.#record[6]
  }

  get timeoutMs() {
    return this.#record[7] ?? undefined
  }

  get prompt() {
    return this.#record[10] ?? undefined
  }

  get seed() {
    if (this.#seed === null) this.#seed = BigInt(this.#record[9])
    return this.#seed
  }

  get step() {
    return this.#record[8]
  }

  get input() {
    if (this.#input === UNREAD) {
      // A sub-workflow's node has its own input; every other activation the run's.
      const own = this.#record.length > INPUT ? this.#record[INPUT] : null
      this.#input = JSON.parse(own ?? this.#run.inputJson)
    }
    return this.#input
  }

  get deps() {
    if (this.#deps === UNREAD) this.#deps = JSON.parse(this.#record[DEPS])
    return this.#deps
  }

  get item() {
    if (this.#item === UNREAD) this.#item = itemOf(this.#record)
    return this.#item
  }

  get reads() {
    if (this.#reads === UNREAD) this.#reads = readsOf(this.#record)
    return this.#reads
  }

  get lastFailure() {
    return (this.#record.length > LAST_FAILURE ? this.#record[LAST_FAILURE] : null) ?? undefined
  }

  get signal() {
    if (this.#controller === null) {
      this.#controller = new AbortController()
      if (this.#abortReason !== undefined) this.#controller.abort(this.#abortReason)
    }
    return this.#controller.signal
  }

  cancelRun(reason = 'cancelled') {
    if (this.#drive === null) throw new InvalidArgumentError('this activation is not being driven by a Mesh')
    this.#drive.cancelRun(reason)
  }

  // calls (lib/calls.js) ------------------------------------------------------------------

  #port() {
    if (this.#calls === null) {
      this.#calls = new CallPort(this.#drive, this.id, this.name)
      this.#calls.closed = this.#ended
    }
    return this.#calls
  }

  /**
   * Send `request` (`{model, messages, maxTokens, temperature, ...}`) to the provider
   * registered as `provider` (`mesh.provider`): a Promise of its LlmReply, recorded before it
   * resolves; after a resume a call the log answered is not sent again.
   */
  llm(provider, request) {
    return this.#port().llm(provider, request, null)
  }

  /** `llm`, streamed: an async iterator of chunks, with the final LlmReply as `reply`. */
  llmStream(provider, request) {
    return new LlmStream((sink) => this.#port().llm(provider, request, sink))
  }

  /** Call the tool registered with `mesh.callTool(name, ...)`: a Promise of its result. */
  tool(name, args) {
    return this.#port().tool(name, args)
  }

  /**
   * Start a call (low level): its CallTicket; `callStarted` is durable when this returns.
   * `options.ask` (`{provider, model, inputTokens, maxTokens?, minTokens?}`) is what the call
   * may cost, for a budget to reserve; a refused call throws BudgetExceededError (recorded).
   */
  callStart(kind, name, request, options) {
    return this.#port().startMany([{ kind, name, request, ask: callOptions(options).ask }])[0]
  }

  /** Start calls made concurrently, numbered in list order, in one commit. */
  callStartMany(calls) {
    return this.#port().startMany(calls)
  }

  /**
   * Report a live ticket's result: `{response}` or `{error: {type, message, retryable, status}}`,
   * with `usage`. Returns the response as recorded (the run's policy may have redacted it;
   * `null` for an error), and throws PolicyDeniedError when the policy blocked it (recorded
   * as the call's failure first).
   */
  callComplete(ticket, result) {
    const recorded = this.#port().complete(ticket, result)
    const e = recorded.error
    if (e !== undefined && e.type === 'PolicyDeniedError' && !(result && result.error)) throw providerError(e)
    return e === undefined ? recorded.response : null
  }

  /** The agent returned: its calls are closed (the driver calls this as its result settles). */
  _end() {
    if (this.#calls !== null) this.#calls.end()
    else this.#ended = true
  }

  /** The fields as a plain object (`JSON.stringify` support; `seed` as a decimal string). */
  toJSON() {
    const out = {}
    for (const k of FIELDS) {
      const v = this[k]
      if (v !== undefined) out[k] = typeof v === 'bigint' ? v.toString() : v
    }
    return out
  }

  [util.inspect.custom](depth, options, inspect = util.inspect) {
    const fields = {}
    for (const k of FIELDS) if (this[k] !== undefined) fields[k] = this[k]
    return `Activation ${inspect(fields, { ...options, depth: options.depth === null ? null : options.depth - 1 })}`
  }

  _abort(reason) {
    if (this.#abortReason !== undefined) return
    this.#abortReason = reason
    if (this.#controller !== null) this.#controller.abort(reason)
  }
}

/** `act.callStart`'s options: `{ask}`. */
function callOptions(options) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object') throw new InvalidArgumentError(`callStart options must be an object {ask}, not ${describe(options)}`)
  for (const key of Object.keys(options)) {
    if (key !== 'ask') throw new InvalidArgumentError(`unknown callStart option '${key}' (expected ask)`)
  }
  return options
}

/** The activations of a poll text. */
function activations(text, run, drive) {
  return parsePoll(text).map((record) => new Activation(record, run, drive))
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

  /**
   * What the run spent: token usage by run, node, agent, tool and model, computed from the
   * log on each read (a fork's copied events are `inherited`, never in `total`).
   */
  get usage() {
    return this.logPath !== null ? call(native.usageReport, this.logPath) : call(() => this._run.usage())
  }

  /**
   * What the run's calls cost, from `usage`: `{microUsd, calls, denied, byNode, byAgent,
   * byModel}`, the `by…` values in micro-USD (keys without a price left out; `microUsd` is
   * `null` when the run does not account for spend: no budget and no prices).
   */
  get cost() {
    return costOf(this.usage)
  }

  /** The canonical log bytes. */
  canonical() {
    return this.logPath !== null ? call(native.canonicalLog, this.logPath) : call(() => this._run.canonical())
  }
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function'
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
  for (const key of ['signal', 'interrupt']) {
    const signal = opts[key]
    if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) {
      throw new InvalidArgumentError(`${key} must be an AbortSignal`)
    }
    // Refused before any log is touched (no approvals recorded, no run created).
    if (signal && signal.aborted) {
      throw new InvalidArgumentError(key === 'signal' ? 'the signal was aborted before the run started' : 'the interrupt signal was aborted before the run started')
    }
  }
  for (const key of ['onEvent', 'onBudgetWarning']) {
    if (opts[key] !== undefined && opts[key] !== null && typeof opts[key] !== 'function') {
      throw new InvalidArgumentError(`${key} must be a function, not ${describe(opts[key])}`)
    }
  }
  return opts
}

// The option keys of each method (`…Sync` forms: no signals; streams: no onEvent).
const RUN_KEYS = ['input', 'seed', 'runId', 'tenant', 'budget', 'signal', 'interrupt', 'onEvent', 'onBudgetWarning']
const RESUME_KEYS = ['approvals', 'runId', 'signal', 'interrupt', 'onEvent', 'onBudgetWarning']
const RETRY_KEYS = ['runId', 'signal', 'interrupt', 'onEvent', 'onBudgetWarning']
const FORK_KEYS = ['overrides', 'runId', 'workflow', 'signal', 'interrupt', 'onEvent', 'onBudgetWarning']
const ASYNC_ONLY = new Set(['signal', 'interrupt'])
const syncKeys = (keys) => keys.filter((k) => !ASYNC_ONLY.has(k))
const streamKeys = (keys) => keys.filter((k) => k !== 'onEvent')

// Results → native completions ----------------------------------------------------------------
//
// Each returns {completion, cause}: `cause` is what a failed run reports as the cause of its
// AgentFailedError (the thrown value, or the exception that made a result unreadable), or
// NO_CAUSE (`throw null` and `throw undefined` are causes too).

const NO_CAUSE = Symbol('no cause')

// Recorded completions are empty and are refilled (the factories' last argument, `into`)
// instead of making a new native object per result: that costs about 1 µs of wrapping and GC
// finalization, a large part of a step.
const POOL = []
const POOL_MAX = 1024

function recycle(completions) {
  for (const c of completions) if (POOL.length < POOL_MAX) POOL.push(c)
}

/** `make()`, or the InvalidOutput failure when reading the result ran code that threw. */
function converted(flight, make, durUs, cause) {
  try {
    return { completion: make(), cause }
  } catch (e) {
    const err = fromNative(e)
    // The driver's own trouble (a bad argument to the addon) stops driving.
    if (err instanceof AgentMeshError && err !== e) throw err
    // A getter or Proxy trap of the result threw: the activation fails, naming the node.
    return { completion: NativeCompletion.unreadable(flight.id, flight.node, `output could not be read: ${describe(e)}`, durUs, POOL.pop()), cause: e }
  }
}

function succeeded(flight, value, durUs) {
  return converted(
    flight,
    () => {
      let usage = null
      if (value instanceof Output) {
        usage = value.usage
        value = value.value
      }
      return value instanceof RawJson
        ? NativeCompletion.okJson(flight.id, flight.node, value.text, usage, durUs, POOL.pop())
        : NativeCompletion.ok(flight.id, flight.node, value, usage, durUs, POOL.pop())
    },
    durUs,
    NO_CAUSE,
  )
}

function failed(flight, thrown, durUs) {
  return converted(
    flight,
    () => {
      let f
      try {
        f = describeFailure(thrown)
      } catch {
        // The thrown value runs code when inspected (a Proxy, a throwing getter) and that
        // failed: still a failure of this activation, never a lost one.
        f = { type: 'NonErrorThrown', message: 'a value that could not be inspected', retryable: true, usage: null }
      }
      return NativeCompletion.err(flight.id, flight.node, f.type, f.message, f.retryable, f.usage, durUs, POOL.pop())
    },
    durUs,
    thrown,
  )
}

/**
 * Run `fn(act)`; `drive.settle(flight, snapshot, at)` gets its converted result: at once for a
 * plain value or a throw, in the settlement callback for a Promise. `sync` (runSync): a
 * Promise is an invalid output, settled at once.
 */
function invoke(fn, flight, started, sync, drive) {
  let value
  let thenable
  try {
    value = fn(flight.act)
    thenable = isThenable(value)
  } catch (e) {
    const at = performance.now()
    return drive.settle(flight, failed(flight, e, micros(started, at)), at)
  }
  if (!thenable) {
    const at = performance.now()
    return drive.settle(flight, succeeded(flight, value, micros(started, at)), at)
  }
  if (sync) {
    // Never awaited: settle it quietly so it cannot become an unhandled rejection.
    Promise.resolve(value).catch(() => {})
    const at = performance.now()
    const reason = 'agent returned a Promise, not JSON data (async agents need mesh.run, not runSync)'
    return drive.settle(flight, { completion: NativeCompletion.unreadable(flight.id, flight.node, reason, micros(started, at), POOL.pop()), cause: NO_CAUSE }, at)
  }
  Promise.resolve(value).then(
    (v) => {
      const at = performance.now()
      drive.settle(flight, succeeded(flight, v, micros(started, at)), at)
    },
    (e) => {
      const at = performance.now()
      drive.settle(flight, failed(flight, e, micros(started, at)), at)
    },
  )
}

function micros(started, at) {
  return Math.round((at - started) * 1000)
}

// Driving ------------------------------------------------------------------------------------

/** One activation being worked on: what the agent sees, what the driver needs, its deadline. */
/**
 * Where the driver keeps what a failure threw (AgentFailedError.cause): by node, and by item
 * for a map's items (several fail side by side; the run error names the one that failed it).
 */
function causeKey(node, item) {
  return item === null ? node : `${node}\n${item}`
}

class Flight {
  constructor(record, act) {
    this.act = act
    this.id = record[0]
    this.node = record[1]
    this.causeKey = causeKey(record[1], record.length > READS ? record[ITEM_INDEX] : null)
    this.delayMs = record[6]
    this.timeoutMs = record[7] ?? undefined
    /** performance.now() at which it times out; null until it starts, or without timeoutMs. */
    this.deadline = null
  }
}

/** Per-run driving state shared by the async and sync drivers. */
class Drive {
  constructor(mesh, run, signal, onEvent, onBudgetWarning) {
    this.mesh = mesh
    this.run = run
    // The run's call protocol, for the activations' calls (lib/calls.js).
    this.calls = call(() => run.calls())
    this.signal = signal || null
    // Called with each committed event, and with each committed budgetWarning (the run was
    // opened with `watch`).
    this.onEvent = onEvent || null
    this.onBudgetWarning = onBudgetWarning || null
    this.inFlight = new Set() // Flight
    this.timers = new Set() // retry delays not yet over
    // The RunInterruptedError once an interruption was asked for; `idle` while the driver
    // waits (then an interruption releases the log at once); `over` once driving ended.
    this.interruption = null
    this.idle = false
    this.over = false
    this.logPath = call(() => run.logPath())
    this.settled = [] // {flight, completion, cause, at}
    this.thrown = new Map() // causeKey → what its last failure threw (AgentFailedError.cause)
    this.cancelReason = null
    this.wake = null
    // What every activation of the run shares (its input as JSON text, read at the first poll).
    this.shared = { runId: call(() => run.runId()), inputJson: null }
    // The next poll text, when record() got it with its commit.
    this.polled = null
    // runSync: results are collected, not awaited.
    this.sync = false
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

  /** Stop driving without writing anything final (see the top of this file). */
  interrupt(reason, cause) {
    if (this.interruption !== null || this.over) return
    this.interruption = new RunInterruptedError({ runId: this.shared.runId, logPath: this.logPath, reason }, { cause })
    // Waiting: nothing of the driver is on the stack, so the log is released now (a `break`
    // out of a stream leaves it resumable at once). Otherwise the loop does it next.
    if (this.idle) this.abort(this.interruption)
    this.notify()
  }

  checkInterrupted() {
    if (this.interruption !== null) throw this.interruption
  }

  /**
   * Hand the events committed since the last call to `onEvent`, in commit order, and each
   * budgetWarning among them to `onBudgetWarning` (after `onEvent` had it).
   */
  publish() {
    const { onEvent, onBudgetWarning } = this
    if (onEvent === null && onBudgetWarning === null) return
    for (const event of call(() => this.run.takeCommitted())) {
      if (onEvent !== null) onEvent(event)
      if (onBudgetWarning !== null && event.type === 'budgetWarning') onBudgetWarning(event)
    }
    // onEvent may have interrupted the run (through the interrupt signal).
    this.checkInterrupted()
  }

  pendingCancel() {
    if (this.cancelReason !== null) return this.cancelReason
    if (this.signal !== null && this.signal.aborted) return abortReason(this.signal)
    return null
  }

  /** Apply a pending cancel and schedule what is ready: null when driving is over. */
  advance() {
    this.checkInterrupted()
    const reason = this.pendingCancel()
    if (reason !== null) {
      call(() => this.run.cancel(reason))
      for (const f of this.inFlight) f.act._abort(reason)
      this.inFlight.clear()
      this.publish()
      return null
    }
    const work = []
    // record() polled already, in the same call as its commit.
    const text = this.polled !== null ? this.polled : call(() => this.run.poll())
    this.polled = null
    const records = parsePoll(text)
    if (records.length > 0 && this.shared.inputJson === null) this.shared.inputJson = this.run.inputJson()
    const { _agents: agents, _tools: tools } = this.mesh
    for (const record of records) {
      const kind = record[2]
      if (kind === 'human') continue
      const fn = (kind === 'tool' ? tools : agents).get(record[3])
      const flight = new Flight(record, new Activation(record, this.shared, this))
      this.inFlight.add(flight)
      work.push([fn, flight])
    }
    if (this.inFlight.size === 0) {
      const status = call(() => this.run.status())
      if (status === 'waiting' || FINISHED.has(status)) return null
      throw new InternalError(`[INTERNAL] run is ${status} with no work outstanding`)
    }
    return work
  }

  /** The activation starts running now: its deadline starts now. Returns performance.now(). */
  begin(flight) {
    const started = performance.now()
    if (flight.timeoutMs !== undefined) flight.deadline = started + flight.timeoutMs
    return started
  }

  /** Start `fn` on `flight` (after its retry delay): results join `settled`. */
  start(fn, flight) {
    const delayMs = flight.delayMs
    const go = () => {
      if (!this.inFlight.has(flight)) return // cancelled during the delay
      const started = this.begin(flight)
      invoke(fn, flight, started, false, this)
    }
    if (delayMs > 0) {
      const timer = setTimeout(() => {
        this.timers.delete(timer)
        go()
        this.notify() // a new deadline to wait for
      }, delayMs)
      this.timers.add(timer)
    } else {
      go()
    }
  }

  settle(flight, snap, at) {
    flight.act._end()
    // runSync: an agent that cancels the run: its own result and later ones are not recorded.
    if (this.sync && this.pendingCancel() !== null) return
    this.settled.push({ flight, completion: snap.completion, cause: snap.cause, at })
    this.notify()
  }

  /** Milliseconds until the next deadline, or null. */
  waitMs() {
    let next = null
    for (const f of this.inFlight) {
      if (f.deadline !== null && (next === null || f.deadline < next)) next = f.deadline
    }
    return next === null ? null : Math.max(0, Math.ceil(next - performance.now()))
  }

  /** Wait until something settles, a deadline passes, or a cancel is asked for. */
  sleep() {
    const waitMs = this.waitMs()
    return new Promise((resolve) => {
      let timer = null
      this.wake = () => {
        if (timer !== null) clearTimeout(timer)
        resolve()
      }
      if (waitMs !== null) timer = setTimeout(() => this.notify(), waitMs)
    })
  }

  /**
   * Record every settled result and every deadline that passed, in one commit. A result that
   * settled after its deadline is a timeout; one for an activation already recorded as timed
   * out is dropped.
   */
  record() {
    const now = performance.now()
    const batch = []
    const flights = []
    const causes = []
    const timeout = (f) => {
      f.act._abort('timeout')
      batch.push(NativeCompletion.timedOut(f.id, f.node, POOL.pop()))
      flights.push(f)
      causes.push(NO_CAUSE)
    }
    const dropped = []
    for (const s of this.settled) {
      const f = s.flight
      if (!this.inFlight.delete(f)) {
        dropped.push(s.completion) // late: its activation timed out already
        continue
      }
      if (f.deadline !== null && s.at > f.deadline) {
        dropped.push(s.completion)
        timeout(f)
      } else {
        batch.push(s.completion)
        flights.push(f)
        causes.push(s.cause)
      }
    }
    this.settled.length = 0
    for (const f of this.inFlight) {
      if (f.deadline !== null && f.deadline <= now) {
        this.inFlight.delete(f)
        timeout(f)
      }
    }
    recycle(dropped)
    if (batch.length === 0) return
    // One call: the commit, then the poll advance() would make.
    const got = call(() => this.run.completeAll(batch, true))
    recycle(batch)
    let notes = null
    if (typeof got === 'string') {
      this.polled = got
    } else {
      notes = got[0]
      this.polled = got[1]
    }
    this.publish()
    for (let i = 0; i < batch.length; i++) {
      const note = notes === null ? null : notes[i]
      if (note === null && causes[i] === NO_CAUSE) {
        // Nothing thrown this time (a result, a timeout, or an output its node's schema
        // refused): an earlier attempt's throw is not the cause of this one's failure.
        if (this.thrown.size !== 0) this.thrown.delete(flights[i].causeKey)
        continue
      }
      const key = flights[i].causeKey
      if (note === null) {
        this.thrown.set(key, causes[i])
        continue
      }
      const err = fromNative(note)
      // The driver only completes what it polled: a refused completion is its own bug.
      if (!(err instanceof InvalidOutputError)) throw err
      this.thrown.set(key, causes[i] === NO_CAUSE ? err : new InvalidOutputError(err.message, err.details, { cause: causes[i] }))
    }
  }

  /**
   * Driving stopped with an exception (an interruption among them): abandon what is in flight
   * (agents see their `act.signal` aborted with `reason`; a retry waiting for its delay does
   * not start) and release the log. Closing a half-failed run must not hide the original
   * error. Idempotent.
   */
  abort(reason) {
    for (const f of this.inFlight) f.act._abort(reason)
    this.inFlight.clear()
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    try {
      this.run.close()
    } catch {
      // keep the original error
    }
  }
}

/** Whether a run is opened for watching: an `onEvent` or `onBudgetWarning` is given. */
function watching(opts) {
  const given = (f) => f !== undefined && f !== null
  return given(opts.onEvent) || given(opts.onBudgetWarning)
}

/** Release a run the driver could not start driving (keeping the original error). */
function closeQuietly(run) {
  try {
    run.close()
  } catch {
    // the original error matters
  }
}

const ENDED = Symbol('ended')

/**
 * A run's committed events as an async iterator (`mesh.stream`, `streamResume`,
 * `streamFork`), with the run's outcome as `result`. The driver never waits for the consumer:
 * each commit's events are queued here as they are committed (already durable in the log) and
 * handed out in commit order. The loop ends after the last event; it throws what `mesh.run`
 * would reject with (an AgentFailedError, a RunInterruptedError, an IO error) once the events
 * before it were taken. Leaving the loop early (`break`, `return`, an exception in its body)
 * interrupts the run: nothing final is written, the log is released at once, and `result`
 * rejects with RunInterruptedError. One consumer: iterating it twice gives the events once.
 */
class RunStream {
  #queue = []
  #head = 0
  #waiters = [] // {resolve, reject} of next() calls made while the queue was empty
  #end = null // ENDED, or the error driving ended with, once it ended
  #closed = false // the consumer stopped, or took the end
  #drive = null

  /** @param {(onEvent: Function, attach: Function) => Promise<RunResult>} drive */
  constructor(drive) {
    const driving = drive(
      (event) => this.#push(event),
      (d) => {
        this.#drive = d
      },
    )
    /** The run's RunResult: resolves or rejects as `mesh.run` would. */
    this.result = driving.then(
      (result) => {
        this.#finish(ENDED)
        return result
      },
      (e) => {
        this.#finish(e)
        throw e
      },
    )
    // Marked as handled: the loop reports the error too, and a consumer that only loops must
    // not get an unhandled rejection. Awaiting `result` still rejects.
    this.result.catch(() => {})
  }

  #push(event) {
    if (this.#closed) return
    const waiter = this.#waiters.shift()
    if (waiter !== undefined) waiter.resolve({ value: event, done: false })
    else this.#queue.push(event)
  }

  #finish(end) {
    this.#end = end
    this.#drive = null
    // Waiters exist only while the queue is empty: the first one gets the end.
    for (const waiter of this.#waiters.splice(0)) this.#settle(waiter)
  }

  /** Hand the end to a waiter (or return it): done, or the error, once. */
  #settle(waiter) {
    if (this.#closed || this.#end === ENDED) {
      this.#closed = true
      waiter.resolve({ value: undefined, done: true })
      return
    }
    const error = this.#end
    this.#closed = true
    waiter.reject(error)
  }

  [Symbol.asyncIterator]() {
    return this
  }

  [Symbol.iterator]() {
    throw new TypeError('mesh.stream() is an async iterator: use `for await (const event of mesh.stream(...))`')
  }

  next() {
    if (this.#head < this.#queue.length) {
      const value = this.#queue[this.#head]
      this.#queue[this.#head++] = undefined
      if (this.#head === this.#queue.length) {
        this.#queue = []
        this.#head = 0
      }
      return Promise.resolve({ value, done: false })
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject }
      if (this.#closed || this.#end !== null) this.#settle(waiter)
      else this.#waiters.push(waiter)
    })
  }

  /** Stop consuming: a run still being driven is interrupted (resumable, log released). */
  return(value) {
    if (!this.#closed) {
      this.#closed = true
      this.#queue = []
      this.#head = 0
      if (this.#drive !== null) this.#drive.interrupt('the event stream was closed before the run ended')
      for (const waiter of this.#waiters.splice(0)) waiter.resolve({ value: undefined, done: true })
    }
    return Promise.resolve({ value, done: true })
  }
}

class Mesh {
  /**
   * @param {{logDir?: string | null, fsync?: 'always' | 'batch' | 'never', prices?: object | RawJson | null, policy?: string | object | Policy | null, telemetry?: Telemetry | null}} [options]
   * `prices`: a price table (docs/budgets.md, `{version: 1, models: [...]}`) looked at before
   * the bundled one by every run this mesh starts, resumes, retries and forks; checked here
   * (InvalidArgumentError naming the field). `policy` (docs/policy.md): a Policy, a path or an
   * object that judges every run this mesh starts, resumes, retries, forks and re-executes
   * (PolicyInvalidError when it is not valid). `telemetry` (docs/telemetry.md): a Telemetry
   * that observes every run this mesh starts, resumes, retries and forks (InvalidArgumentError
   * for anything else).
   */
  constructor(options = {}) {
    const opts = checkOptions(options, ['logDir', 'fsync', 'prices', 'policy', 'telemetry'])
    const fsync = opts.fsync === undefined ? 'batch' : opts.fsync
    if (!['always', 'batch', 'never'].includes(fsync)) {
      throw new InvalidArgumentError(`fsync must be always, batch or never, not ${describe(fsync)}`)
    }
    if (opts.logDir !== undefined && opts.logDir !== null && typeof opts.logDir !== 'string') {
      throw new InvalidArgumentError('logDir must be a string')
    }
    this.logDir = opts.logDir === undefined ? null : opts.logDir
    this.fsync = fsync
    // The addon's NativePriceTable, or null.
    Object.defineProperty(this, '_prices', { value: priceTable(opts.prices), enumerable: false })
    // The addon's NativePolicy, or null.
    Object.defineProperty(this, '_policy', { value: nativePolicy(opts.policy), enumerable: false })
    // The addon's NativeTelemetry, or null.
    Object.defineProperty(this, '_telemetry', { value: nativeTelemetry(opts.telemetry), enumerable: false })
    this._agents = new Map()
    this._tools = new Map()
    this._providers = new Map() // name → {executor} (built in) or {fn} (host)
    this._callTools = new Map() // name → {fn, description, schema, rules} (host) or {executor, description, schema, server} (MCP)
    this._mcpServers = new Set() // NativeMcpServer (lib/tools.js)
  }

  /**
   * Register the LLM provider agents call as `name` (`act.llm(name, request)`): a
   * configuration object (`{kind: 'openai' | 'anthropic', baseUrl, model, apiKeyEnv, ...}`,
   * executed by the Rust providers off the JS thread), a list of them (a fallback chain), or
   * a host function `(request, ticket) => response | Output | Promise` (an `Output` carries
   * usage: `new Output(response, {usage})`).
   */
  provider(name, config) {
    if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('provider name must be a non-empty string')
    if (typeof config === 'function') {
      this._providers.set(name, { fn: config })
    } else if (config !== null && typeof config === 'object') {
      this._providers.set(name, { executor: call(() => native.NativeExecutor.fromConfig(name, config)) })
    } else {
      throw new InvalidArgumentError(`provider '${name}' needs a configuration object, a list of them, or a function, not ${describe(config)}`)
    }
    return this
  }

  /**
   * Register a tool agents call as `name` (`act.tool(name, args)`): `fn(args, ticket)` returns
   * (or resolves to) the result, JSON data. Options: `description`; `schema`, the JSON Schema
   * its arguments must match (checked before the call is recorded); `agents`, the agents that
   * may call it (`null`: any; another agent's call is PolicyDeniedError, nothing recorded);
   * `rateLimit: {calls, perMs}`, at most `calls` live calls starting in any `perMs` window
   * (a call over it waits on a timer; calls the log answers never wait). A tool registered
   * again under the same name replaces the earlier one. Throws InvalidArgumentError naming
   * the tool and the field.
   */
  callTool(name, fn, options) {
    this._callTools.set(name, hostTool(name, fn, options))
    return this
  }

  /**
   * Start an MCP server (`{command: [program, ...args], env, agents, rateLimit,
   * initTimeoutMs, callTimeoutMs}`) off the JS thread and register each of its tools under
   * its MCP name, executed natively with the server's input schema enforced; `agents` and
   * `rateLimit` apply to each of them as for `callTool`. Resolves to the names registered.
   * Rejects with ProviderError (`McpSpawnFailed`, `McpServerExited`, ...), AgentTimeoutError
   * (no answer within `initTimeoutMs`) or InvalidArgumentError (also when a tool's name is
   * already registered: nothing is registered and the server is closed). The server runs until
   * `mesh.close()` or until the mesh is garbage collected.
   */
  async mcp(options) {
    const server = await spawnMcp(options)
    const tools = mcpTools(server)
    const names = tools.map(([name]) => name)
    // An MCP server never silently shadows a tool the mesh has (or its own twin).
    const taken = [...new Set(names.filter((n) => this._callTools.has(n)))].sort()
    const twice = [...new Set(names.filter((n, i) => names.indexOf(n) !== i))].sort()
    if (taken.length > 0 || twice.length > 0) {
      await callAsync(() => server.close())
      const quoted = (list) => list.map((n) => `'${n}'`).join(', ')
      const why = taken.length > 0
        ? `names tools already registered with this mesh (${quoted(taken)})`
        : `lists tools twice (${quoted(twice)})`
      throw new InvalidArgumentError(`MCP server \`${server.program}\` ${why}: nothing was registered and the server was closed`)
    }
    this._mcpServers.add(server)
    for (const [name, entry] of tools) this._callTools.set(name, entry)
    return names
  }

  /**
   * End the MCP servers this mesh started (`mesh.mcp`) and unregister their tools. Resolves
   * once their processes exited (a call still in flight keeps its server until it returns).
   * The mesh stays usable; `mesh.mcp` may start servers again.
   */
  async close() {
    const servers = [...this._mcpServers]
    this._mcpServers.clear()
    for (const [name, entry] of this._callTools) {
      if (entry.server !== undefined && servers.includes(entry.server)) this._callTools.delete(name)
    }
    await Promise.all(servers.map((s) => callAsync(() => s.close())))
  }

  /**
   * The call tools registered (`callTool`, `mcp`), to offer them to an LLM call: name →
   * `{description, schema}` (`schema`: the JSON Schema of the arguments, `null` when none).
   */
  callTools() {
    const out = {}
    for (const [name, t] of this._callTools) out[name] = { description: t.description, schema: t.schema }
    return out
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
    // The core's check: what is missing, the likely reason (a typo, the other kind) and
    // what is registered, worded alike in every host.
    call(() => nativeWorkflow.checkRegistered([...this._agents.keys()], [...this._tools.keys()]))
  }

  // runs ---------------------------------------------------------------------------------

  /** Start a run and drive it until it finishes or waits for a person. */
  async run(workflow, options) {
    const opts = checkOptions(options, RUN_KEYS)
    return this._drive(this._start(workflow, opts, watching(opts)), opts)
  }

  /** `run` without a Promise: agents must return values, not Promises. */
  runSync(workflow, options) {
    const opts = checkOptions(options, syncKeys(RUN_KEYS))
    return this._driveSync(this._start(workflow, opts, watching(opts)), opts)
  }

  /** Reopen a run from its log, resolve waiting human nodes with `approvals` and drive it on. */
  async resume(logPath, options) {
    const opts = checkOptions(options, RESUME_KEYS)
    return this._drive(this._reopen(logPath, opts, watching(opts)), opts)
  }

  resumeSync(logPath, options) {
    const opts = checkOptions(options, syncKeys(RESUME_KEYS))
    return this._driveSync(this._reopen(logPath, opts, watching(opts)), opts)
  }

  /**
   * Reopen a failed or cancelled run from its log and drive it on: `runReopened` is recorded
   * and the nodes that failed (or were cancelled) run again with a fresh allowance of
   * attempts; finished work is kept.
   */
  async retry(logPath, options) {
    const opts = checkOptions(options, RETRY_KEYS)
    return this._drive(this._retry(logPath, opts, watching(opts)), opts)
  }

  retrySync(logPath, options) {
    const opts = checkOptions(options, syncKeys(RETRY_KEYS))
    return this._driveSync(this._retry(logPath, opts, watching(opts)), opts)
  }

  /**
   * Re-execute the run recorded in `logPath`: this mesh's agents run again in memory, every
   * call they make is answered from the log (nothing is sent, nothing written), and each
   * completion is compared with the recorded one. Resolves with what was checked
   * (`{ runId, activations, calls, events }`); rejects with `NondeterminismError` at the first
   * difference (a changed prompt, model or tool argument at its call; a call the log does not
   * have; a changed output). Async only: agents call through `act.llm` / `act.tool`, which
   * need the Promise-based driver.
   */
  async reexecute(logPath) {
    const run = this._reexecute(logPath)
    try {
      await this._drive(run, {})
    } catch (e) {
      // A run an agent failed is compared like any other; other errors are the answer.
      if (!(e instanceof AgentFailedError)) throw e
    }
    return call(() => run.reexecReport())
  }

  _reexecute(logPath) {
    logPath = toPath(logPath, 'logPath')
    this._checkRegistered(call(native.recordedWorkflow, logPath))
    return call(() => native.NativeRun.reexecute(logPath, this._policy ?? undefined))
  }

  /**
   * Fork the run in `logPath` at step end `seq` with node outputs replaced (and under a
   * changed workflow, when given); drive the fork.
   */
  async fork(logPath, seq, options) {
    const opts = checkOptions(options, FORK_KEYS)
    return this._drive(this._fork(logPath, seq, opts, watching(opts)), opts)
  }

  forkSync(logPath, seq, options) {
    const opts = checkOptions(options, syncKeys(FORK_KEYS))
    return this._driveSync(this._fork(logPath, seq, opts, watching(opts)), opts)
  }

  // event streams ----------------------------------------------------------------------------

  /**
   * `run` as an async iterator of its committed events; the RunResult is `stream.result`.
   * Opening errors (UNKNOWN_AGENT, RUN_EXISTS, options) are thrown here.
   */
  stream(workflow, options) {
    const opts = checkOptions(options, streamKeys(RUN_KEYS))
    const run = this._start(workflow, opts, true)
    return new RunStream((onEvent, attach) => this._drive(run, { ...opts, onEvent }, attach))
  }

  /** `resume` as an async iterator of the events it commits. */
  streamResume(logPath, options) {
    const opts = checkOptions(options, streamKeys(RESUME_KEYS))
    const run = this._reopen(logPath, opts, true)
    return new RunStream((onEvent, attach) => this._drive(run, { ...opts, onEvent }, attach))
  }

  /** `retry` as an async iterator of the events it appends (`runReopened` first). */
  streamRetry(logPath, options) {
    const opts = checkOptions(options, streamKeys(RETRY_KEYS))
    const run = this._retry(logPath, opts, true)
    return new RunStream((onEvent, attach) => this._drive(run, { ...opts, onEvent }, attach))
  }

  /** `fork` as an async iterator of the fork's events (the copied prefix first). */
  streamFork(logPath, seq, options) {
    const opts = checkOptions(options, streamKeys(FORK_KEYS))
    const run = this._fork(logPath, seq, opts, true)
    return new RunStream((onEvent, attach) => this._drive(run, { ...opts, onEvent }, attach))
  }

  // opening runs -------------------------------------------------------------------------

  _start(workflow, opts, watch) {
    if (!(workflow instanceof Workflow)) {
      throw new InvalidArgumentError(`workflow must be a Workflow, not ${describe(workflow)}`)
    }
    this._checkRegistered(workflow._native)
    const raw = opts.input instanceof RawJson
    const input = raw || opts.input === undefined ? null : opts.input
    const budgetJson = budgetText(opts.budget)
    return call(() =>
      // The addon's optional fields take `undefined`, not `null`.
      native.NativeRun.start(
        workflow._native,
        input,
        {
          inputJson: raw ? opts.input.text : undefined,
          seed: opts.seed ?? undefined,
          runId: opts.runId ?? undefined,
          logDir: this.logDir ?? undefined,
          fsync: this.fsync,
          tenant: opts.tenant ?? undefined,
          watch,
          budgetJson,
        },
        this._prices ?? undefined,
        this._policy ?? undefined,
        this._telemetry ?? undefined,
      ),
    )
  }

  _reopen(logPath, opts, watch) {
    logPath = toPath(logPath, 'logPath')
    const approvals = opts.approvals === undefined || opts.approvals === null ? {} : opts.approvals
    if (typeof approvals !== 'object' || Array.isArray(approvals)) {
      throw new InvalidArgumentError('approvals must map node id → decision')
    }
    // Registration first: resume may append decisions a crash lost.
    this._checkRegistered(call(native.recordedWorkflow, logPath))
    // The core checks the run id and every approval before it records any.
    const values = Object.create(null)
    const texts = Object.create(null)
    for (const [node, value] of Object.entries(approvals)) {
      if (value instanceof RawJson) texts[node] = value.text
      else values[node] = value
    }
    return call(() =>
      native.NativeRun.resume(logPath, { fsync: this.fsync, runId: opts.runId ?? undefined, approvalsJson: texts, watch }, values, this._prices ?? undefined, this._policy ?? undefined, this._telemetry ?? undefined),
    )
  }

  _retry(logPath, opts, watch) {
    logPath = toPath(logPath, 'logPath')
    // Registration first: the failed nodes run again at once. The core refuses a run that is
    // not failed or cancelled before it writes anything.
    this._checkRegistered(call(native.recordedWorkflow, logPath))
    return call(() => native.NativeRun.retry(logPath, { fsync: this.fsync, runId: opts.runId ?? undefined, watch }, this._prices ?? undefined, this._policy ?? undefined, this._telemetry ?? undefined))
  }

  _fork(logPath, seq, opts, watch) {
    logPath = toPath(logPath, 'logPath')
    const workflow = opts.workflow === undefined || opts.workflow === null ? null : opts.workflow
    if (workflow !== null && !(workflow instanceof Workflow)) {
      throw new InvalidArgumentError(`workflow must be a Workflow, not ${describe(workflow)}`)
    }
    // The fork runs under the changed workflow when one is given: its agents must be here.
    this._checkRegistered(workflow !== null ? workflow._native : call(native.recordedWorkflow, logPath))
    return call(() =>
      native.NativeRun.fork(
        logPath,
        seq,
        opts.overrides ?? null,
        opts.runId ?? undefined,
        this.logDir ?? undefined,
        this.fsync,
        workflow !== null ? workflow._native : undefined,
        watch,
        this._prices ?? undefined,
        this._policy ?? undefined,
        this._telemetry ?? undefined,
      ),
    )
  }

  // driving ------------------------------------------------------------------------------

  /**
   * Drive `run` to its end (or until it waits for a person). `opts`: `signal` (cancel),
   * `interrupt` (stop resumably), `onEvent`; `attach(drive)` lets an event stream interrupt.
   */
  async _drive(run, opts, attach) {
    let drive
    try {
      drive = new Drive(this, run, opts.signal, opts.onEvent, opts.onBudgetWarning)
    } catch (e) {
      closeQuietly(run)
      throw e
    }
    const onAbort = () => drive.notify()
    const interrupt = opts.interrupt || null
    const onInterrupt = () => drive.interrupt(abortReason(interrupt), interrupt.reason)
    if (drive.signal !== null) drive.signal.addEventListener('abort', onAbort)
    if (interrupt !== null) interrupt.addEventListener('abort', onInterrupt)
    if (attach !== undefined) attach(drive)
    try {
      drive.publish() // what opening the run committed
      for (;;) {
        const work = drive.advance()
        if (work === null) break
        // Synchronous agents settle during start(): their results are recorded without a wait.
        for (const [fn, flight] of work) drive.start(fn, flight)
        drive.checkInterrupted()
        if (drive.settled.length === 0 && drive.pendingCancel() === null) {
          drive.idle = true
          try {
            await drive.sleep()
          } finally {
            drive.idle = false
          }
          drive.checkInterrupted()
        }
        // A cancel takes effect before results not yet recorded (advance() applies it).
        if (drive.pendingCancel() === null) drive.record()
        else drive.settled.length = 0
      }
      drive.over = true
    } catch (e) {
      drive.over = true
      drive.abort(e)
      throw e
    } finally {
      drive.wake = null
      if (drive.signal !== null) drive.signal.removeEventListener('abort', onAbort)
      if (interrupt !== null) interrupt.removeEventListener('abort', onInterrupt)
    }
    return this._result(run, drive.thrown)
  }

  _driveSync(run, opts) {
    let drive
    try {
      drive = new Drive(this, run, null, opts.onEvent, opts.onBudgetWarning)
    } catch (e) {
      closeQuietly(run)
      throw e
    }
    drive.sync = true
    try {
      drive.publish()
      for (;;) {
        const work = drive.advance()
        if (work === null) break
        for (const [fn, flight] of work) {
          if (flight.delayMs > 0) sleepSync(flight.delayMs)
          const started = drive.begin(flight)
          // A synchronous agent cannot be interrupted: one that overran its own deadline is
          // recorded as timed out (record() compares its settlement time with it).
          invoke(fn, flight, started, true, drive)
        }
        if (drive.settled.length === 0 && drive.pendingCancel() === null) {
          throw new InternalError('[INTERNAL] runSync: a step ended with no result to record')
        }
        drive.record()
      }
      drive.over = true
    } catch (e) {
      drive.over = true
      drive.abort(e)
      throw e
    }
    return this._result(run, drive.thrown)
  }

  _result(run, thrown) {
    const outcome = call(() => run.outcome())
    const runId = call(() => run.runId())
    const text = call(() => run.outstanding())
    const shared = { runId, inputJson: run.inputJson() }
    const waiting = activations(text, shared, null).filter((a) => a.kind === 'human')
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
    // As in Python: a run an agent failed rejects, also when it failed before this process
    // resumed its log (the cause is then unknown here).
    if (result.status === 'failed' && err !== null && err.code === 'AGENT_FAILED') {
      const key = causeKey(err.node, err.item ?? null)
      const cause = thrown.has(key) ? { cause: thrown.get(key) } : undefined
      const e = new AgentFailedError(`[AGENT_FAILED] ${err.message}`, { node: err.node }, cause)
      e.result = result
      throw e
    }
    return result
  }
}

module.exports = { Activation, ActivationError, Mesh, Output, RawJson, RunResult, RunStream }
