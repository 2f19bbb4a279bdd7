'use strict'
// Budgets from JavaScript (docs/budgets.md): the run's `budget` option, a mesh's price table,
// the `ask` of a host-made call, and a run's cost from its usage report.
//
// Limits are checked by the core (`Limits::from_option`), which names the field. JavaScript
// numbers are doubles, so the option is handed over as JSON text written the way the core
// reads a float: a safe integer as an integer, any other number as a float (`2**64` is
// `18446744073709552000.0`, refused as more than a float holds exactly); a bigint is exact
// (the way to write a limit past 2^53). NaN, the infinities and values no JSON holds are
// refused here in the core's words.

const native = require('../native.js')
const { InvalidArgumentError, call } = require('./errors')
const { RawJson, describe } = require('./values')

const U64_MAX = (1n << 64n) - 1n
const BUDGET_KINDS = 'inputTokens, outputTokens, totalTokens, microUsd, calls'

function isPlainObject(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** Keys in UTF-8 byte order: the order the core reads an object's fields in. */
function byteOrder(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/** A number as JSON text the core reads as JavaScript meant it (see the top of this file). */
function numberText(n) {
  if (Number.isSafeInteger(n)) return String(n === 0 ? 0 : n)
  const text = String(n)
  return /[.e]/.test(text) ? text : `${text}.0`
}

/**
 * A limit's JSON text, or `{why}` when the value is one only JavaScript has (the core never
 * sees it).
 */
function limitText(v) {
  switch (typeof v) {
    case 'bigint':
      return v > U64_MAX ? { why: `a limit is at most ${U64_MAX}, not ${v}` } : String(v)
    case 'number':
      return Number.isFinite(v) ? numberText(v) : { why: `a limit is a whole number, not ${v}` }
    case 'string':
    case 'boolean':
      return JSON.stringify(v)
    case 'object':
      if (v === null) return 'null'
      return Array.isArray(v) ? '[]' : '{}'
    default:
      return { why: `a limit is a whole number or "unlimited", not ${typeof v === 'function' ? 'a function' : describe(v)}` }
  }
}

/**
 * The run option `budget` as JSON text for the addon (`undefined` when none is given).
 * Throws InvalidArgumentError naming the field (`run option 'budget.calls': …`), in the
 * core's order of fields, before anything is written.
 */
function budgetText(budget) {
  if (budget === undefined || budget === null) return undefined
  if (!isPlainObject(budget)) {
    const kind = typeof budget
    if (kind === 'string' || kind === 'boolean' || (kind === 'number' && Number.isFinite(budget)) || Array.isArray(budget)) {
      // The core words it (`… not the string "lots"`).
      const text = Array.isArray(budget) ? '[]' : kind === 'number' ? numberText(budget) : JSON.stringify(budget)
      call(native.checkBudget, text)
    }
    throw new InvalidArgumentError(`run option 'budget': a budget is an object of limits (${BUDGET_KINDS}), not ${kind === 'object' ? describe(budget) : kind === 'function' ? 'a function' : describe(budget)}`)
  }
  const fields = []
  for (const key of Object.keys(budget).sort(byteOrder)) {
    const v = budget[key]
    if (v === undefined) continue // as JSON.stringify leaves it out
    const text = limitText(v)
    if (typeof text !== 'string') {
      // The fields before it, and its name, are the core's to refuse first.
      call(native.checkBudget, `{${[...fields, `${JSON.stringify(key)}:0`].join(',')}}`)
      throw new InvalidArgumentError(`run option 'budget.${key}': ${text.why}`)
    }
    fields.push(`${JSON.stringify(key)}:${text}`)
  }
  return `{${fields.join(',')}}`
}

/** The mesh option `prices` as the addon's table (`null` when none), checked now. */
function priceTable(prices) {
  if (prices === undefined || prices === null) return null
  if (prices instanceof RawJson) return call(() => native.NativePriceTable.fromJson(prices.text))
  return call(() => native.NativePriceTable.fromValue(prices))
}

const ASK_FIELDS = ['provider', 'model', 'inputTokens', 'maxTokens', 'minTokens']

/** A token count of an ask: a safe non-negative integer (the addon takes a JS number). */
function tokens(ask, field, required) {
  const v = ask[field]
  if (v === undefined || v === null) {
    if (required) throw new InvalidArgumentError(`ask.${field} is required (estimated prompt tokens, a non-negative integer)`)
    return undefined
  }
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v)
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new InvalidArgumentError(`ask.${field} must be an integer from 0 to 2^53-1, not ${typeof v === 'string' ? JSON.stringify(v) : describe(v)}`)
  }
  return v
}

/**
 * A call's `ask` (`{provider, model, inputTokens, maxTokens?, minTokens?}`) as the addon
 * takes it; `undefined` when none. Throws InvalidArgumentError naming `ask.<field>`.
 */
function askArg(ask) {
  if (ask === undefined || ask === null) return undefined
  if (!isPlainObject(ask)) throw new InvalidArgumentError(`ask must be an object {provider, model, inputTokens, maxTokens?, minTokens?}, not ${describe(ask)}`)
  for (const key of Object.keys(ask)) {
    if (!ASK_FIELDS.includes(key)) throw new InvalidArgumentError(`ask.${key} is not a field of an ask (expected ${ASK_FIELDS.join(', ')})`)
  }
  for (const field of ['provider', 'model']) {
    if (typeof ask[field] !== 'string') throw new InvalidArgumentError(`ask.${field} must be a string, not ${describe(ask[field])}`)
  }
  const out = { provider: ask.provider, model: ask.model, inputTokens: tokens(ask, 'inputTokens', true) }
  const max = tokens(ask, 'maxTokens', false)
  if (max !== undefined) out.maxTokens = max
  const min = tokens(ask, 'minTokens', false)
  if (min !== undefined) out.minTokens = min
  return out
}

/** `{key: microUsd}` of a usage breakdown, leaving out keys that carry no `microUsd`. */
function microUsdBy(by) {
  const out = {}
  for (const [key, totals] of Object.entries(by)) {
    if (totals.microUsd !== undefined && totals.microUsd !== null) {
      Object.defineProperty(out, key, { value: totals.microUsd, enumerable: true, writable: true, configurable: true })
    }
  }
  return out
}

/**
 * What a run's calls cost, from its usage report: `microUsd` (`null` when the run does not
 * account for spend), the calls made and refused, and micro-USD by node, agent and model.
 */
function costOf(usage) {
  const total = usage.total
  return {
    microUsd: total.microUsd === undefined ? null : total.microUsd,
    calls: total.calls === undefined ? 0 : total.calls,
    denied: total.denied === undefined ? 0 : total.denied,
    byNode: microUsdBy(usage.byNode),
    byAgent: microUsdBy(usage.byAgent),
    byModel: microUsdBy(usage.byModel),
  }
}

module.exports = { askArg, budgetText, costOf, priceTable }
