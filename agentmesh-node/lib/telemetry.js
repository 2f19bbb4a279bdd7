'use strict'
// Telemetry from JavaScript (docs/telemetry.md): `new Telemetry(options)` for the runs a mesh
// observes (`new Mesh({telemetry})`), and the exports of a log (`exportLog`, `exportOtlp`,
// `exportOtlpSync`). Spans and metrics are derived in Rust from the committed events, so they
// are the ones every host gives for the same log. Options are checked here (naming the
// option) and again by the addon, which refuses anything it does not know.

const native = require('../native.js')
const { InvalidArgumentError, call, callAsync } = require('./errors')
const { describe } = require('./values')
const { toPath } = require('./workflow')

const NATIVE = Symbol('nativeTelemetry')

const TELEMETRY_KEYS = ['otlp', 'headers', 'serviceName', 'sampleRatio', 'alwaysTrace', 'captureContent', 'flushTimeoutMs', 'metricLabels']
const SEND_KEYS = ['headers', 'serviceName', 'content']

const absent = (v) => v === undefined || v === null

function plainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** `options` with its keys checked against `allowed`; absent values left out. */
function checkKeys(options, allowed) {
  if (absent(options)) return {}
  if (!plainObject(options)) throw new InvalidArgumentError(`options must be an object, not ${describe(options)}`)
  const out = {}
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError(`unknown option '${key}' (expected one of ${allowed.join(', ')})`)
    }
    if (!absent(options[key])) out[key] = options[key]
  }
  return out
}

function checkString(opts, key) {
  if (key in opts && typeof opts[key] !== 'string') {
    throw new InvalidArgumentError(`${key} must be a string, not ${describe(opts[key])}`)
  }
}

function checkBoolean(opts, key) {
  if (key in opts && typeof opts[key] !== 'boolean') {
    throw new InvalidArgumentError(`${key} must be a boolean, not ${describe(opts[key])}`)
  }
}

function checkStrings(opts, key) {
  if (key in opts && (!Array.isArray(opts[key]) || opts[key].some((s) => typeof s !== 'string'))) {
    throw new InvalidArgumentError(`${key} must be an array of strings, not ${describe(opts[key])}`)
  }
}

function checkHeaders(opts) {
  if (!('headers' in opts)) return
  const h = opts.headers
  if (!plainObject(h) || Object.values(h).some((v) => typeof v !== 'string')) {
    throw new InvalidArgumentError(`headers must map header names to strings, not ${describe(h)}`)
  }
}

function checkTimeout(what, ms) {
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
    throw new InvalidArgumentError(`${what} must be an integer number of milliseconds from 0 to 2^53-1, not ${describe(ms)}`)
  }
  return ms
}

/** The options as the addon's JSON text (checked; the addon checks ranges and URLs too). */
function telemetryOptionsJson(options) {
  const opts = checkKeys(options, TELEMETRY_KEYS)
  checkString(opts, 'otlp')
  checkHeaders(opts)
  checkString(opts, 'serviceName')
  if ('sampleRatio' in opts) {
    const r = opts.sampleRatio
    if (typeof r !== 'number' || !(r >= 0 && r <= 1)) {
      throw new InvalidArgumentError(`sampleRatio must be a number from 0 to 1, not ${describe(r)}`)
    }
  }
  checkStrings(opts, 'alwaysTrace')
  checkBoolean(opts, 'captureContent')
  if ('flushTimeoutMs' in opts) checkTimeout('flushTimeoutMs', opts.flushTimeoutMs)
  // `metricLabels: null` (left out above) keeps the default labels; `[]` allows none.
  checkStrings(opts, 'metricLabels')
  return JSON.stringify(opts)
}

/**
 * Live telemetry for the runs a mesh observes (`new Mesh({telemetry})`): OpenTelemetry GenAI
 * spans exported over OTLP/HTTP as they end (when `otlp` is given), and metrics as Prometheus
 * text. Export never blocks or fails a run: a slow or down collector drops spans (counted in
 * `exportStats`).
 */
class Telemetry {
  /**
   * @param {{otlp?: string, headers?: Record<string, string>, serviceName?: string,
   *   sampleRatio?: number, alwaysTrace?: string[], captureContent?: boolean,
   *   flushTimeoutMs?: number, metricLabels?: string[] | null}} [options]
   * InvalidArgumentError naming the option when one is unknown or wrong.
   */
  constructor(options) {
    const text = telemetryOptionsJson(options)
    const inner = call(() => native.NativeTelemetry.fromOptionsJson(text))
    Object.defineProperty(this, NATIVE, { value: inner, enumerable: false })
    flushAtExit(inner, options?.flushTimeoutMs ?? 2000)
  }

  /** Telemetry configured by the standard `OTEL_*` variables. */
  static fromEnv() {
    const t = Object.create(Telemetry.prototype)
    const inner = call(() => native.NativeTelemetry.fromEnv())
    Object.defineProperty(t, NATIVE, { value: inner, enumerable: false })
    flushAtExit(inner, 2000)
    return t
  }

  /** The metrics so far, as Prometheus text (no run ids as labels). */
  metricsText() {
    return this[NATIVE].metricsText()
  }

  /** Send what is queued and wait for it, at most `timeoutMs` (blocking); whether it was all handled. */
  flush(timeoutMs = 2000) {
    checkTimeout('timeoutMs', timeoutMs)
    return call(() => this[NATIVE].flush(timeoutMs))
  }

  /** Flush (at most `timeoutMs`, blocking) and stop the exporter; whether the flush finished. */
  shutdown(timeoutMs = 2000) {
    checkTimeout('timeoutMs', timeoutMs)
    return call(() => this[NATIVE].shutdown(timeoutMs))
  }

  /**
   * Serve `GET /metrics` on `addr`, a loopback address (port 0 picks one), from a background
   * thread; the address it listens on (`'127.0.0.1:PORT'`).
   */
  serveMetrics(addr = '127.0.0.1:9464') {
    if (typeof addr !== 'string') throw new InvalidArgumentError(`addr must be a string like 127.0.0.1:9464, not ${describe(addr)}`)
    return call(() => this[NATIVE].serveMetrics(addr))
  }

  /** What the exporter did so far (`{exported, dropped, failedRequests}`), or null without `otlp`. */
  get exportStats() {
    return this[NATIVE].exportStats
  }
}

// The telemetry threads do not keep the process alive: at exit, every telemetry still alive
// is flushed (blocking, each within its flush timeout), so a short script's last spans are
// sent. Weak references: a telemetry the program dropped is collected as usual.
let atExit = null
function flushAtExit(inner, timeoutMs) {
  if (atExit === null) {
    atExit = []
    process.once('exit', () => {
      for (const [ref, ms] of atExit) ref.deref()?.flush(ms)
    })
  }
  atExit = atExit.filter(([ref]) => ref.deref() !== undefined)
  atExit.push([new WeakRef(inner), timeoutMs])
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error']
let logRoute = null

/**
 * Route AgentMesh's structured logs (each committed event of a run a Telemetry observes, as
 * a record `{level, message, target, run_id, trace_id, span_id, node, seq, event, ...}`) to
 * `logger`: a function called with each record, or an object with `debug`/`info`/`warn`/
 * `error` methods called as `logger.info(message, record)` (console, winston; for pino pass
 * `(r) => pino[r.level.toLowerCase()](r, r.message)`). Records are drained every `everyMs`
 * on the JS thread (the timer does not keep the process alive; the rest is drained at
 * exit). The first call decides `level` and `buffer` (lines kept; the oldest dropped);
 * later calls only change the logger.
 */
function routeLogs(logger, options) {
  const opts = checkKeys(options, ['level', 'buffer', 'everyMs'])
  const level = opts.level ?? 'info'
  if (!LOG_LEVELS.includes(level)) throw new InvalidArgumentError(`level must be one of ${LOG_LEVELS.join(', ')}, not ${describe(level)}`)
  const buffer = opts.buffer ?? 10000
  if (!Number.isSafeInteger(buffer) || buffer < 1 || buffer > 2 ** 32 - 1) throw new InvalidArgumentError(`buffer must be a positive integer, not ${describe(buffer)}`)
  const everyMs = opts.everyMs ?? 100
  if (!Number.isSafeInteger(everyMs) || everyMs < 1) throw new InvalidArgumentError(`everyMs must be a positive integer, not ${describe(everyMs)}`)
  const sink = loggerSink(logger)
  const logs = call(() => native.captureLogs(level, buffer))
  if (logRoute === null) {
    const drain = () => {
      for (;;) {
        const lines = logs.drain(512)
        for (const line of lines) {
          let record
          try {
            record = JSON.parse(line)
          } catch {
            continue
          }
          logRoute.sink(record)
        }
        if (lines.length < 512) return
      }
    }
    logRoute = { sink, timer: setInterval(drain, everyMs) }
    logRoute.timer.unref()
    process.once('exit', drain)
  } else {
    logRoute.sink = sink
  }
}

function loggerSink(logger) {
  if (typeof logger === 'function') return logger
  if (logger !== null && typeof logger === 'object' && LOG_LEVELS.every((m) => typeof logger[m] === 'function')) {
    return (record) => {
      const method = String(record.level ?? 'INFO').toLowerCase()
      logger[LOG_LEVELS.includes(method) ? method : 'info'](record.message ?? '', record)
    }
  }
  throw new InvalidArgumentError(`logger must be a function or have debug, info, warn and error methods, not ${describe(logger)}`)
}

/** The native telemetry of `telemetry` (a Telemetry), or null. */
function nativeTelemetry(telemetry) {
  if (absent(telemetry)) return null
  if (!(telemetry instanceof Telemetry)) {
    throw new InvalidArgumentError(`telemetry must be a Telemetry, not ${describe(telemetry)}`)
  }
  return telemetry[NATIVE]
}

/**
 * The log at `path` as `format`: `'chrome'` (Chrome/Perfetto trace JSON), `'html'` (a
 * self-contained timeline), `'mermaid'` (a flowchart) or `'spans'` (the derived spans, one
 * JSON object a line, OTLP field names). Read synchronously.
 */
function exportLog(path, format) {
  path = toPath(path)
  if (typeof format !== 'string') throw new InvalidArgumentError(`format must be a string (chrome, html, mermaid, spans), not ${describe(format)}`)
  return call(native.exportLog, path, format)
}

function sendArgs(path, endpoint, options) {
  path = toPath(path)
  if (typeof endpoint !== 'string') throw new InvalidArgumentError(`endpoint must be a collector URL, not ${describe(endpoint)}`)
  const opts = checkKeys(options, SEND_KEYS)
  checkHeaders(opts)
  checkString(opts, 'serviceName')
  checkBoolean(opts, 'content')
  return [path, endpoint, JSON.stringify(opts)]
}

/**
 * Send the finished spans of the log at `path` to the collector at `endpoint` (a base URL
 * such as `http://127.0.0.1:4318`, or a full traces URL) with their recorded times, off the
 * JS thread; resolves to the number of spans sent. `content: true` puts the recorded inputs
 * and outputs on the spans.
 */
async function exportOtlp(path, endpoint, options) {
  return await callAsync(native.exportOtlp, ...sendArgs(path, endpoint, options))
}

/** `exportOtlp`, blocking. */
function exportOtlpSync(path, endpoint, options) {
  return call(native.exportOtlpSync, ...sendArgs(path, endpoint, options))
}

module.exports = { Telemetry, nativeTelemetry, exportLog, exportOtlp, exportOtlpSync, routeLogs }
