'use strict'
// Shared by the vector runner and the cross-replay tests: scripts (bindings-tests/README.md)
// parsed exactly, and the scripted agents built from them.
//
// Numbers: `JSON.parse` cannot carry `1.0`, `-0` or integers beyond 2^53 the way the core reads
// them, so script values are parsed exactly (numbers kept as their text) and handed to the
// core as `RawJson` — the path a JS host has for exact JSON.

const assert = require('node:assert/strict')
const fs = require('node:fs')

const am = require('../..')
const { normalizeJson } = require('../../native.js')

const PERTURB_BELOW_MS = 100

// exact JSON ------------------------------------------------------------------------------

/** A number as written in the script. */
class Num {
  constructor(text) {
    this.text = text
  }
}

/** Parse JSON keeping numbers as `Num` (the text is already normalized by the core). */
function parseExact(text) {
  let i = 0
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++
  }
  const value = () => {
    ws()
    const c = text[i]
    if (c === '{') {
      i++
      const obj = {}
      ws()
      if (text[i] === '}') return i++, obj
      for (;;) {
        ws()
        const key = string()
        ws()
        assert.equal(text[i++], ':')
        Object.defineProperty(obj, key, { value: value(), enumerable: true, writable: true, configurable: true })
        ws()
        if (text[i] === ',') { i++; continue }
        assert.equal(text[i++], '}')
        return obj
      }
    }
    if (c === '[') {
      i++
      const arr = []
      ws()
      if (text[i] === ']') return i++, arr
      for (;;) {
        arr.push(value())
        ws()
        if (text[i] === ',') { i++; continue }
        assert.equal(text[i++], ']')
        return arr
      }
    }
    if (c === '"') return string()
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) return (i += word.length), v
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64))
    assert.ok(m, `bad JSON at ${i}`)
    i += m[0].length
    return new Num(m[0])
  }
  const string = () => {
    const start = i
    assert.equal(text[i++], '"')
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1
    i++
    return JSON.parse(text.slice(start, i))
  }
  const v = value()
  ws()
  assert.equal(i, text.length)
  return v
}

/** JSON text of a value from parseExact. */
function exactText(v) {
  if (v instanceof Num) return v.text
  if (Array.isArray(v)) return `[${v.map(exactText).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${exactText(v[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** Plain JS value of a value from parseExact (numbers must be exact in JS). */
function plain(v) {
  if (v instanceof Num) {
    // A JS number reaches the core as an integer when it is a safe integer, else as a double:
    // exact when that is what the text means to the core too.
    const n = Number(v.text)
    const exact = /^-?\d+$/.test(v.text) ? Number.isSafeInteger(n) && v.text !== '-0' : !Number.isInteger(n)
    assert.ok(exact, `not exact in JS: ${v.text}`)
    return n
  }
  if (Array.isArray(v)) return v.map(plain)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
  return v
}

function loadScript(file) {
  const script = parseExact(normalizeJson(fs.readFileSync(file, 'utf8')))
  const known = new Set(['input', 'seed', 'runId', 'agents', 'approvals', 'retries', 'budget', 'prices', 'policy'])
  for (const k of Object.keys(script)) assert.ok(known.has(k), `${file}: unknown script field ${k}`)
  return script
}

function perturbed(script) {
  for (const behaviors of Object.values(script.agents || {})) {
    for (const b of behaviors) {
      const d = b.delayMs === undefined ? 0 : Number(b.delayMs.text)
      if (d >= 1 && d < PERTURB_BELOW_MS) b.delayMs = new Num(String(PERTURB_BELOW_MS - d))
    }
  }
  return script
}

// scripted agents -------------------------------------------------------------------------

/**
 * A script's `budget` as the run option: integers as bigints (exact at any size), anything
 * else as the plain value (the core refuses it, naming the field).
 */
function budgetOption(v) {
  if (v === undefined) return undefined
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Num) return plain(v)
  const out = {}
  for (const [k, x] of Object.entries(v)) out[k] = x instanceof Num && /^-?\d+$/.test(x.text) ? BigInt(x.text) : plain(x)
  return out
}

/** A script's `prices` as the mesh option: its exact JSON text. */
function pricesOption(v) {
  return v === undefined ? undefined : new am.RawJson(exactText(v))
}

/** A script's `policy` as the mesh option: the policy file's JSON as an object. */
function policyOption(v) {
  return v === undefined ? undefined : plain(v)
}

/**
 * Report a scripted call's result. A response the policy blocked comes back as the call's
 * error (recorded as a `PolicyDeniedError` failure): like any call error, it does not fail
 * the agent.
 */
function complete(act, ticket, c) {
  try {
    act.callComplete(ticket, callResult(c))
  } catch (e) {
    if (!(e instanceof am.PolicyDeniedError)) throw e
  }
}

/** A scripted call's request (exact) and the `ask` a budget reserves. */
function callSpec(c) {
  const spec = { kind: c.kind, name: c.name, request: new am.RawJson(c.request === undefined ? 'null' : exactText(c.request)) }
  if (c.ask !== undefined) spec.ask = plain(c.ask)
  return spec
}

/** What a scripted call reports: its response or error, with usage (exact). */
function callResult(c) {
  const result = {}
  if (c.error !== undefined) {
    const e = c.error
    result.error = { type: e.type, message: e.message, retryable: e.retryable === undefined ? true : e.retryable }
    if (e.status !== undefined) result.error.status = Number(e.status.text)
  } else {
    result.response = new am.RawJson(c.response === undefined ? 'null' : exactText(c.response))
  }
  if (c.usage !== undefined) result.usage = new am.RawJson(exactText(c.usage))
  return result
}

/**
 * A behaviour's calls, as the Rust reference makes them (agentmesh-core driver/scripted.rs):
 * in list order, each started then completed; with `callsBatch`, started in one batch and
 * completed in reverse order. A recorded ticket (after a resume) is not completed. A call a
 * budget refuses throws BudgetExceededError (a refused batch throws from callStartMany).
 */
function makeCalls(b, act) {
  if (b.callsBatch === true) {
    const tickets = act.callStartMany(b.calls.map(callSpec))
    for (let i = tickets.length - 1; i >= 0; i--) {
      if (tickets[i].live) complete(act, tickets[i], b.calls[i])
    }
    return
  }
  for (const c of b.calls) {
    const spec = callSpec(c)
    const t = act.callStart(c.kind, c.name, spec.request, { ask: spec.ask })
    if (t.live) complete(act, t, c)
  }
}

function scripted(script) {
  const agents = script.agents || {}
  return async (act) => {
    const candidates = [...(agents[act.node] || []), ...(agents[act.name] || [])]
    const chosen = candidates.find(
      (b) =>
        (b.visit === undefined || Number(b.visit.text) === act.visit) &&
        (b.attempt === undefined || Number(b.attempt.text) === act.attempt) &&
        (b.item === undefined || (act.item !== undefined && Number(b.item.text) === act.item.index)),
    )
    // A map item's default output names its index too (agentmesh-core driver/scripted.rs).
    const fallback = { node: act.node, visit: act.visit, attempt: act.attempt }
    if (act.item !== undefined) fallback.item = act.item.index
    if (chosen === undefined) return fallback
    if (chosen.delayMs !== undefined && Number(chosen.delayMs.text) > 0) {
      await new Promise((resolve) => setTimeout(resolve, Number(chosen.delayMs.text)))
    }
    if (chosen.cancel === true) act.cancelRun('cancelled by script')
    if (chosen.calls !== undefined) {
      try {
        makeCalls(chosen, act)
      } catch (e) {
        // A budget refused a call: stop calling; without refusedOutput the refusal fails the
        // agent (the core records it as BudgetExceededError whatever it is named here).
        if ((e instanceof am.BudgetExceededError || e instanceof am.PolicyDeniedError) && chosen.refusedOutput !== undefined) {
          return new am.RawJson(exactText(chosen.refusedOutput))
        }
        throw new am.ActivationError('ScriptCallRefused', String(e.message))
      }
    }
    if (chosen.error !== undefined) {
      const e = chosen.error
      const retryable = e.retryable === undefined ? true : e.retryable
      const usage = chosen.usage === undefined ? undefined : plain(chosen.usage)
      throw new am.ActivationError(e.type, e.message, { retryable, usage })
    }
    const output = 'output' in chosen ? new am.RawJson(exactText(chosen.output)) : fallback
    if (chosen.usage !== undefined) return new am.Output(output, { usage: plain(chosen.usage) })
    return output
  }
}

module.exports = { Num, parseExact, exactText, plain, loadScript, perturbed, scripted, budgetOption, pricesOption, policyOption }
