'use strict'
// Log files: verify (or check without writing), anchors, canonical form, fingerprint, replay,
// time travel, history, usage, reading. Parallel to Python's module functions
// (agentmesh.verify_log, ...). The whole-log reads return Promises computed on libuv's thread pool (the addon's
// `…Async` functions), so the event loop never waits for a log; each has a `…Sync` form.
// `readLog` and `history` stream: async iterators fed batch by batch by a reader thread, in
// flat memory. Every error is an AgentMesh error (errors.js).

const native = require('../native.js')
const { InvalidArgumentError, call, callAsync } = require('./errors')
const { Workflow, describe, toPath } = require('./workflow')

function nativeWorkflow(workflow) {
  if (workflow === undefined || workflow === null) return null
  if (workflow instanceof Workflow) return workflow._native
  throw new InvalidArgumentError(`workflow must be a Workflow, not ${describe(workflow)}`)
}

/** The key material of `{key}` options (a string or bytes; never shown in a message). */
function keyOption(options) {
  if (options === undefined || options === null) return null
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError(`options must be an object, not ${describe(options)}`)
  }
  for (const k of Object.keys(options)) {
    if (k !== 'key') throw new InvalidArgumentError(`unknown option '${k}' (expected key)`)
  }
  const key = options.key
  if (key === undefined || key === null) return null
  if (typeof key === 'string' || key instanceof Uint8Array) return key
  throw new InvalidArgumentError(`key must be a string, a Buffer or a Uint8Array, not ${describe(key)}`)
}

function checkAnchor(value) {
  if (typeof value === 'string' || (value !== null && typeof value === 'object' && !Array.isArray(value))) return value
  throw new InvalidArgumentError(`anchor must be an anchor object or its JSON text, not ${describe(value)}`)
}

function checkSeq(seq) {
  // Range and integrality are checked by the addon, with the same wording.
  if (typeof seq !== 'number') throw new InvalidArgumentError(`seq must be an integer from 0 to 2^53-1, not ${describe(seq)}`)
  return seq
}

// Promise forms ----------------------------------------------------------------------------

/** Verify a log (hash chain, header, events; a torn tail is cut off and copied aside). */
async function verifyLog(path) {
  return await callAsync(native.verifyLogAsync, toPath(path))
}

/** The canonical log bytes (header, then events by seq), identical across hosts. */
async function canonicalLog(path) {
  return await callAsync(native.canonicalLogAsync, toPath(path))
}

/** blake3 (hex) of the canonical log. */
async function fingerprint(path) {
  return await callAsync(native.fingerprintAsync, toPath(path))
}

/**
 * Re-drive a log without calling agents, against `workflow` or the recorded one. Rejects with
 * `NondeterminismError` at the first divergence.
 */
async function replay(path, workflow) {
  return await callAsync(native.replayAsync, toPath(path), nativeWorkflow(workflow))
}

/** The state of the run as of `seq` (`forkPoint` says whether a fork may start there). */
async function stateAt(path, seq) {
  return await callAsync(native.stateAtAsync, toPath(path), checkSeq(seq))
}

/**
 * What the run in a log spent: token usage by run, node, agent, tool and model (a fork's
 * events copied from its parent are `inherited`, never in `total`). Read-only.
 */
async function usageReport(path) {
  return await callAsync(native.usageReportAsync, toPath(path))
}

/** Verify a log without ever writing to it (a damaged tail is reported as `tornAt`). */
async function checkLog(path) {
  return await callAsync(native.checkLogAsync, toPath(path))
}

/** Take an anchor of a log: its head, to keep elsewhere; `{key}` makes it keyed (a MAC). */
async function anchor(path, options) {
  return await callAsync(native.anchorAsync, toPath(path), keyOption(options))
}

/** Check a log against an anchor taken earlier (an object or its JSON text). */
async function verifyAnchor(path, anchorValue, options) {
  return await callAsync(native.verifyAnchorAsync, toPath(path), checkAnchor(anchorValue), keyOption(options))
}

const noop = () => {}

/**
 * An async iterator over the items of a native stream's batches (`open(path)` → a stream whose
 * `next()` is a Promise of a batch or null, and `close()`): one batch read ahead of the
 * consumer, closed when iteration ends or stops (`break`, an exception). Written by hand, not
 * as an async generator: a generator costs several Promise hops per item, and logs have
 * millions of items. `unpack(batch)` gives a batch's items as an array.
 */
class Batches {
  constructor(name, item, open, path, unpack) {
    this.name = name
    this.item = item
    this.path = path
    this.open = open
    this.unpack = unpack
    this.stream = null
    this.pending = null
    this.items = []
    this.at = 0
    this.done = false
  }

  [Symbol.asyncIterator]() {
    return this
  }

  // `for (const e of readLog(p))` (Python's read_log is a plain iterator): say what to use
  // instead of JavaScript's "is not iterable".
  [Symbol.iterator]() {
    throw new TypeError(
      `${this.name}(path) is an async iterator: use \`for await (const ${this.item} of ${this.name}(path))\`, ` +
        `or ${this.name}Sync(path) for an array`,
    )
  }

  fetch() {
    const p = callAsync(() => this.stream.next())
    p.catch(noop) // an abandoned read-ahead must not become an unhandled rejection
    return p
  }

  next() {
    if (this.at < this.items.length) return Promise.resolve({ value: this.items[this.at++], done: false })
    return this.refill()
  }

  async refill() {
    for (;;) {
      if (this.done) return { value: undefined, done: true }
      try {
        if (this.stream === null) {
          this.stream = call(this.open, toPath(this.path))
          this.pending = this.fetch()
        }
        const batch = await this.pending
        if (batch === null) {
          this.finish()
          return { value: undefined, done: true }
        }
        this.pending = this.fetch()
        this.items = this.unpack(batch)
        this.at = 0
      } catch (e) {
        this.finish()
        throw e
      }
      if (this.items.length > 0) return { value: this.items[this.at++], done: false }
    }
  }

  finish() {
    this.done = true
    this.items = []
    if (this.stream !== null) this.stream.close()
  }

  async return(value) {
    this.finish()
    return { value, done: true }
  }
}

/** The events of a batch: the core's JSON text parsed; a 64-bit seed does not fit a JS
 * number, so `runStarted`'s comes as digits. */
function events(batch) {
  const list = JSON.parse(batch.events)
  if (batch.runStarted !== undefined && batch.runStarted !== null) list[batch.runStarted].data.seed = BigInt(batch.seed)
  return list
}

/**
 * The events of a log in seq order (canonical form: no `meta`, `prev`, `hash`), as an async
 * iterator: `for await (const event of readLog(path))`. Streams: a reader thread hands over
 * batches of events (the core's JSON text, parsed here), in flat memory; errors reject the
 * `next()` that reaches them (the first, for a log that cannot be opened).
 */
function readLog(path) {
  return new Batches('readLog', 'event', (p) => native.NativeEventStream.open(p), path, events)
}

/**
 * The run's state at seq 1, after every step, and at the end of the log, in one pass, as an
 * async iterator (streamed like `readLog`).
 */
function history(path) {
  return new Batches('history', 'state', (p) => native.NativeHistoryStream.open(p), path, (states) => states)
}

// Sync forms -------------------------------------------------------------------------------

function verifyLogSync(path) {
  return call(native.verifyLog, toPath(path))
}

function checkLogSync(path) {
  return call(native.checkLog, toPath(path))
}

function anchorSync(path, options) {
  return call(native.anchor, toPath(path), keyOption(options))
}

function verifyAnchorSync(path, anchorValue, options) {
  return call(native.verifyAnchor, toPath(path), checkAnchor(anchorValue), keyOption(options))
}

/** The history of a run, as an array. */
function historySync(path) {
  return call(native.history, toPath(path))
}

function canonicalLogSync(path) {
  return call(native.canonicalLog, toPath(path))
}

function fingerprintSync(path) {
  return call(native.fingerprint, toPath(path))
}

function replaySync(path, workflow) {
  return call(native.replay, toPath(path), nativeWorkflow(workflow))
}

function stateAtSync(path, seq) {
  return call(native.stateAt, toPath(path), checkSeq(seq))
}

function usageReportSync(path) {
  return call(native.usageReport, toPath(path))
}

/** The events of a log in seq order, as an array. */
function readLogSync(path) {
  return call(native.readLog, toPath(path)).events
}

/** The log header (reads only the first line). */
function readHeader(path) {
  return call(native.readHeader, toPath(path))
}

/** The workflow recorded in a log. */
function recordedWorkflow(path) {
  return new Workflow(call(native.recordedWorkflow, toPath(path)))
}

/** Every stable error code of the core, in the core's order. */
function errorCodes() {
  return call(native.errorCodes)
}

module.exports = {
  verifyLog,
  checkLog,
  anchor,
  verifyAnchor,
  history,
  checkLogSync,
  anchorSync,
  verifyAnchorSync,
  historySync,
  canonicalLog,
  fingerprint,
  replay,
  stateAt,
  readLog,
  verifyLogSync,
  canonicalLogSync,
  fingerprintSync,
  replaySync,
  stateAtSync,
  usageReport,
  usageReportSync,
  readLogSync,
  readHeader,
  recordedWorkflow,
  errorCodes,
}
