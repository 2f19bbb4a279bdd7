'use strict'
// Policies from JavaScript (docs/policy.md): `new Policy(source)`, `redact`, `checkPolicy`,
// and the native policy a mesh hands to every run it starts, resumes, retries, forks and
// re-executes. Loading, judging and reports are the core's; reports come back as the core's
// JSON (camelCase), parsed here.

const native = require('../native.js')
const { InvalidArgumentError, call, callAsync } = require('./errors')
const { describe } = require('./values')

const NATIVE = Symbol('nativePolicy')

/** A policy, loaded all or nothing (PolicyInvalidError naming the rule, field, line, column). */
class Policy {
  /**
   * @param {string | object | Policy} source a policy file (JSON or YAML, read synchronously:
   * at most 1 MiB), a policy as an object, or a Policy.
   */
  constructor(source) {
    let handle
    if (source instanceof Policy) handle = source[NATIVE]
    else if (typeof source === 'string') handle = call(() => native.NativePolicy.fromPath(source))
    else if (source !== null && typeof source === 'object' && !Array.isArray(source)) {
      handle = call(() => native.NativePolicy.fromValue(source))
    } else {
      throw new InvalidArgumentError(`a policy is a file path or an object, not ${describe(source)}`)
    }
    Object.defineProperty(this, NATIVE, { value: handle, enumerable: false })
  }

  /** The policy's name. */
  get name() {
    return this[NATIVE].name
  }

  /** blake3 (hex) of its canonical form: what a run's log header records. */
  get hash() {
    return this[NATIVE].hash
  }

  /** The policy file format version. */
  get version() {
    return this[NATIVE].version
  }

  /** The rule ids, in order. */
  get ruleIds() {
    return this[NATIVE].ruleIds
  }

  /** The policy in canonical form (what `JSON.stringify(policy)` writes). */
  toJSON() {
    return JSON.parse(this[NATIVE].toJsonText())
  }
}

/** The native policy of `source` (a Policy, a path or an object), or null. */
function nativePolicy(source) {
  if (source === undefined || source === null) return null
  return new Policy(source)[NATIVE]
}

/**
 * `text` with every match of `policy`'s redact and block rules replaced by
 * `[REDACTED:<kind>]` (every built-in detector without a policy).
 * @returns {{text: string, spans: {start: number, end: number, kind: string, rule: string}[]}}
 * offsets in Unicode code points (index `Array.from(text)`), not UTF-16 units.
 */
function redact(text, policy) {
  if (typeof text !== 'string') throw new InvalidArgumentError(`redact takes a string, not ${describe(text)}`)
  const p = nativePolicy(policy)
  return JSON.parse(call(() => native.redactJson(text, p ?? undefined)))
}

function logList(logs) {
  const list = typeof logs === 'string' ? [logs] : logs
  if (!Array.isArray(list) || list.some((l) => typeof l !== 'string')) {
    throw new InvalidArgumentError('logs must be a path or an array of paths')
  }
  return list
}

/**
 * What `policy` would decide differently on the runs recorded in `logs` (a path or an array
 * of paths): the report `agentmesh policy check --json` prints. Read on libuv's thread pool.
 */
async function checkPolicy(policy, logs) {
  const p = nativePolicy(policy)
  if (p === null) throw new InvalidArgumentError('checkPolicy needs a policy')
  const list = logList(logs)
  return JSON.parse(await callAsync(native.checkPolicyJsonAsync, p, list))
}

/** `checkPolicy`, blocking. */
function checkPolicySync(policy, logs) {
  const p = nativePolicy(policy)
  if (p === null) throw new InvalidArgumentError('checkPolicy needs a policy')
  return JSON.parse(call(() => native.checkPolicyJson(p, logList(logs))))
}

module.exports = { Policy, nativePolicy, redact, checkPolicy, checkPolicySync }
