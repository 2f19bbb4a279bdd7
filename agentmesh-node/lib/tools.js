'use strict'
// Call tools' registration (docs/tools.md, docs/typescript.md "Calls"): what `mesh.callTool`
// and `mesh.mcp` check and build.
//
// - A JavaScript tool with a schema, an allowlist or a rate limit gets a NativeToolRules
//   (src/tools.rs: the providers' ToolRules, built once, so a bad schema or rate limit is an
//   InvalidArgumentError at registration naming the tool). `act.tool` asks it to admit the
//   agent and the arguments before the call is started (lib/calls.js) and waits on a timer
//   for the rate limit's slot of a live call.
// - An MCP server is spawned natively on a thread of its own (NativeMcpServer.spawn); each
//   of its tools is a native executor, executed off the JS thread like a built-in provider,
//   with the server's input schema and the mcp() call's allowlist and rate limit.
//
// Types are checked here (a boolean is not a number of calls); numbers' ranges are checked
// once, in Rust, with the same wording for callTool and mcp.

const native = require('../native.js')
const { InvalidArgumentError, call, callAsync } = require('./errors')

function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return typeof v
}

/** `options` as an object with only `allowed` keys (`what` names the call in errors). */
function optionsOf(what, options, allowed) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError(`${what}: options must be an object, not ${describe(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) throw new InvalidArgumentError(`${what}: unknown option '${key}' (expected one of ${allowed.join(', ')})`)
  }
  return options
}

/** `agents`: `null` (any agent) or an array of agent names. */
function agentsOf(what, agents) {
  if (agents === undefined || agents === null) return null
  if (!Array.isArray(agents)) throw new InvalidArgumentError(`${what}: agents must be an array of agent names, not ${describe(agents)}`)
  agents.forEach((a, i) => {
    if (typeof a !== 'string') throw new InvalidArgumentError(`${what}: agents[${i}] must be an agent name (a string), not ${describe(a)}`)
  })
  return [...agents]
}

/** `rateLimit`: `[calls, perMs]` (numbers; Rust checks their range), or `[null, null]`. */
function rateOf(what, rateLimit) {
  if (rateLimit === undefined || rateLimit === null) return [null, null]
  if (typeof rateLimit !== 'object' || Array.isArray(rateLimit)) {
    throw new InvalidArgumentError(`${what}: rateLimit must be {calls, perMs}, not ${describe(rateLimit)}`)
  }
  for (const key of Object.keys(rateLimit)) {
    if (key !== 'calls' && key !== 'perMs') throw new InvalidArgumentError(`${what}: rateLimit has an unknown field '${key}' (expected calls, perMs)`)
  }
  for (const key of ['calls', 'perMs']) {
    if (typeof rateLimit[key] !== 'number') {
      throw new InvalidArgumentError(`${what}: rateLimit.${key} must be a number, not ${describe(rateLimit[key])}`)
    }
  }
  return [rateLimit.calls, rateLimit.perMs]
}

/** A number-of-milliseconds option, or `null` when absent. */
function msOf(what, key, v) {
  if (v === undefined || v === null) return null
  if (typeof v !== 'number') throw new InvalidArgumentError(`${what}: ${key} must be a number of milliseconds, not ${describe(v)}`)
  return v
}

/**
 * A JavaScript call tool's registry entry: `{fn, description, schema, rules}`; `rules` is a
 * NativeToolRules, or `null` when the tool has no schema, allowlist or rate limit.
 */
function hostTool(name, fn, options) {
  if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('tool name must be a non-empty string')
  if (typeof fn !== 'function') throw new InvalidArgumentError(`tool '${name}' must be a function`)
  const what = `tool '${name}'`
  const opts = optionsOf(what, options, ['description', 'schema', 'agents', 'rateLimit'])
  if (opts.description !== undefined && opts.description !== null && typeof opts.description !== 'string') {
    throw new InvalidArgumentError(`${what}: description must be a string, not ${describe(opts.description)}`)
  }
  const schema = opts.schema === undefined ? null : opts.schema
  const agents = agentsOf(what, opts.agents)
  const [calls, perMs] = rateOf(what, opts.rateLimit)
  const rules =
    schema === null && agents === null && calls === null
      ? null
      : call(() => new native.NativeToolRules(name, schema, agents, calls, perMs))
  return { fn, description: opts.description ?? null, schema, rules }
}

const MCP_OPTIONS = ['command', 'env', 'agents', 'rateLimit', 'initTimeoutMs', 'callTimeoutMs']

/**
 * Start an MCP server (`mesh.mcp(options)`): a Promise of the NativeMcpServer. Error messages
 * never hold the command's arguments or the environment's values.
 */
function spawnMcp(options) {
  const what = 'mcp'
  if (options === undefined || options === null) throw new InvalidArgumentError('mcp: needs {command: [program, ...args]}')
  const opts = optionsOf(what, options, MCP_OPTIONS)
  const command = opts.command
  if (!Array.isArray(command) || command.length === 0) {
    throw new InvalidArgumentError(`mcp: command must be a non-empty array of strings (program, then arguments), not ${describe(command)}`)
  }
  command.forEach((word, i) => {
    if (typeof word !== 'string') throw new InvalidArgumentError(`mcp: command[${i}] must be a string, not ${describe(word)}`)
  })
  if (command[0] === '') throw new InvalidArgumentError('mcp: command[0], the program, must not be empty')
  const keys = []
  const values = []
  if (opts.env !== undefined && opts.env !== null) {
    if (typeof opts.env !== 'object' || Array.isArray(opts.env)) {
      throw new InvalidArgumentError(`mcp: env must be an object of strings, not ${describe(opts.env)}`)
    }
    for (const [k, v] of Object.entries(opts.env)) {
      // The value is not quoted: it may be a secret.
      if (typeof v !== 'string') throw new InvalidArgumentError(`mcp: env.${k} must be a string, not ${describe(v)}`)
      keys.push(k)
      values.push(v)
    }
  }
  const agents = agentsOf(what, opts.agents)
  const [calls, perMs] = rateOf(what, opts.rateLimit)
  const initMs = msOf(what, 'initTimeoutMs', opts.initTimeoutMs)
  const callMs = msOf(what, 'callTimeoutMs', opts.callTimeoutMs)
  return callAsync(() => native.NativeMcpServer.spawn([...command], keys, values, agents, calls, perMs, initMs, callMs))
}

/** The registry entries of a started server's tools: `[name, entry]` in the server's order. */
function mcpTools(server) {
  return call(() => server.tools()).map((t) => [
    t.name,
    { executor: call(() => server.executor(t.name)), description: t.description, schema: t.schema, server },
  ])
}

/** Wait until `ms` milliseconds from now, on a timer (the event loop runs meanwhile). */
function sleep(ms) {
  if (!(ms > 0)) return Promise.resolve()
  const deadline = performance.now() + ms
  return new Promise((resolve) => {
    const wake = () => {
      const left = deadline - performance.now()
      // A timer may fire a little early (libuv's cached loop time): never start before the slot.
      if (left > 0) setTimeout(wake, Math.ceil(left))
      else resolve()
    }
    setTimeout(wake, Math.ceil(ms))
  })
}

module.exports = { hostTool, spawnMcp, mcpTools, sleep }
