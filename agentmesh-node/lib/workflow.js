'use strict'
// `Workflow`: a workflow definition the core has parsed and validated, and `WorkflowBuilder`
// to write one in code. Parallel to Python's agentmesh._workflow.

const url = require('node:url')
const util = require('node:util')

const native = require('../native.js')
const { InvalidArgumentError, InvalidWorkflowError, call } = require('./errors')

/** How a value reads in an error message: `null`, `an array`, `Map`, `number`, ... */
function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value)
    if (proto === null || proto === Object.prototype) return 'object'
    const name = typeof proto.constructor === 'function' ? proto.constructor.name : ''
    return name || 'object'
  }
  return typeof value
}

/** A path argument (a string or a `file:` URL) as the string the addon takes. */
function toPath(value, what = 'path') {
  if (typeof value === 'string') return value
  if (value instanceof URL) {
    try {
      return url.fileURLToPath(value)
    } catch (e) {
      throw new InvalidArgumentError(`${what} must be a file: URL, not ${value.href} (${e.message})`)
    }
  }
  throw new InvalidArgumentError(`${what} must be a string or a file: URL, not ${describe(value)}`)
}

// JSON data, by the same rules the addon applies to outputs (README "Values"): null, booleans,
// finite numbers, strings without lone surrogates, arrays and plain objects (prototype
// Object.prototype or null), undefined properties omitted, no toJSON, at most 100 deep.

const MAX_DEPTH = 100
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

function pathKey(path, key) {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
}

/** Why `value` is not JSON data, or null when it is. */
function notJsonData(value, path, depth, ancestors) {
  switch (typeof value) {
    case 'boolean':
      return null
    case 'string':
      return LONE_SURROGATE.test(value) ? `string at ${path} contains a lone surrogate (not valid Unicode)` : null
    case 'number':
      return Number.isFinite(value) ? null : `${value} at ${path} is not a JSON number`
    case 'bigint':
      return `BigInt at ${path} is not JSON data (use a number or a string)`
    case 'undefined':
    case 'symbol':
    case 'function':
      return `${typeof value} at ${path} is not JSON data`
    default:
      break
  }
  if (value === null) return null
  if (ancestors.has(value)) return `cyclic reference at ${path} (a value that contains itself is not JSON data)`
  if (depth >= MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH} arrays/objects at ${path}`
  ancestors.add(value)
  try {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const why = notJsonData(value[i], `${path}[${i}]`, depth + 1, ancestors)
        if (why !== null) return why
      }
      return null
    }
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) {
      return `${describe(value)} at ${path} is not JSON data (only plain objects and arrays are)`
    }
    for (const key of Object.keys(value)) {
      const at = pathKey(path, key)
      if (LONE_SURROGATE.test(key)) return `key at ${at} contains a lone surrogate (not valid Unicode)`
      const item = value[key]
      if (item === undefined) continue
      const why = notJsonData(item, at, depth + 1, ancestors)
      if (why !== null) return why
    }
    return null
  } finally {
    ancestors.delete(value)
  }
}

// Warnings already emitted in this process (workflow hash + text): a service that loads the
// same workflow per request warns once, as Node does for deprecations.
const WARNED = new Set()

/**
 * Emit the workflow's warnings (`process.emitWarning`, type `AgentMeshWarning`), each once per
 * process; `node --disable-warning=AgentMeshWarning` silences them. Returns the workflow.
 */
function announce(workflow) {
  for (const text of workflow.warnings) {
    const key = `${workflow.hash}\n${text}`
    if (WARNED.has(key)) continue
    WARNED.add(key)
    process.emitWarning(`workflow '${workflow.name}': ${text}`, { type: 'AgentMeshWarning' })
  }
  return workflow
}

/**
 * A workflow the core has parsed and validated. Make one with `Workflow.fromObject`,
 * `fromJson`, `fromFile` or `Workflow.builder(name)...build()`; invalid definitions throw
 * `InvalidWorkflowError` naming the node and field.
 */
class Workflow {
  /** Wraps a `NativeWorkflow` (use the static constructors). */
  constructor(nativeWorkflow) {
    if (!(nativeWorkflow instanceof native.NativeWorkflow)) {
      throw new InvalidArgumentError(
        `new Workflow() takes a NativeWorkflow, not ${describe(nativeWorkflow)}: use Workflow.fromObject, fromJson, fromFile or builder`,
      )
    }
    // Internal (the driver and the log functions pass it to the addon); not enumerable.
    Object.defineProperty(this, '_native', { value: nativeWorkflow, enumerable: false })
  }

  /** Parse and validate workflow JSON text. */
  static fromJson(text) {
    if (typeof text !== 'string') throw new InvalidWorkflowError(`workflow JSON must be a string, not ${describe(text)}`)
    return announce(new Workflow(call(() => native.NativeWorkflow.fromJson(text))))
  }

  /** Validate a workflow given as a plain object (JSON data, as in the workflow JSON). */
  static fromObject(obj) {
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      throw new InvalidWorkflowError(`workflow must be a plain object, not ${describe(obj)}`)
    }
    const why = notJsonData(obj, '$', 0, new Set())
    if (why !== null) throw new InvalidWorkflowError(`workflow is not JSON data: ${why}`)
    return Workflow.fromJson(JSON.stringify(obj))
  }

  /** Read, parse and validate a workflow file. */
  static fromFile(path) {
    const file = toPath(path)
    return announce(new Workflow(call(() => native.NativeWorkflow.fromFile(file))))
  }

  /** Build a workflow in code: `Workflow.builder('w').agent('a', 'writer').build()`. */
  static builder(name) {
    return new WorkflowBuilder(name)
  }

  /** The workflow's name. */
  get name() {
    return this._native.name
  }

  /** blake3 (hex) of the canonical workflow JSON, as recorded in log headers. */
  get hash() {
    return this._native.hash
  }

  /** The canonical workflow JSON text. */
  toJson() {
    return this._native.toJson()
  }

  /** The canonical workflow as a plain object. */
  toObject() {
    return JSON.parse(this._native.toJson())
  }

  /** `JSON.stringify(workflow)` writes the canonical definition. */
  toJSON() {
    return this.toObject()
  }

  /** Node ids in declaration order. */
  nodeIds() {
    return this._native.nodeIds()
  }

  /** Agent names the workflow uses, sorted. */
  agentNames() {
    return this._native.agentNames()
  }

  /** Tool names the workflow uses, sorted. */
  toolNames() {
    return this._native.toolNames()
  }

  /**
   * Hints about a valid workflow that probably does not do what its author meant (a node
   * whose every `after` entry is a branch receives no deps); they never change a run. Loading
   * or building a workflow emits each as an `AgentMeshWarning`.
   */
  get warnings() {
    return this._native.warnings()
  }

  toString() {
    return `Workflow(${this.name}, ${this.hash.slice(0, 12)})`
  }

  [util.inspect.custom](depth, options, inspect = util.inspect) {
    return `Workflow ${inspect({ name: this.name, hash: this.hash.slice(0, 12) }, options)}`
  }
}

Object.defineProperty(Workflow.prototype, Symbol.toStringTag, { value: 'Workflow', configurable: true })

/** The options object of a builder method, with only `allowed` keys. */
function options(opts, allowed, where) {
  if (opts === undefined || opts === null) return {}
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw new InvalidArgumentError(`${where}: options must be an object, not ${describe(opts)}`)
  }
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError(`${where}: unknown option '${key}' (expected ${allowed.join(', ')})`)
    }
  }
  return opts
}

const given = (v) => v !== undefined && v !== null

/** `after` or `reads` for the node: a lone string as a list of one; none or `[]` left out. */
function list(value) {
  if (typeof value === 'string') return [value] // a lone id or path, not its characters
  if (!given(value) || (Array.isArray(value) && value.length === 0)) return undefined
  return Array.isArray(value) ? [...value] : value
}

/**
 * The node's `output` contract: an object is copied (a later change to the caller's does not
 * change the node); anything else goes to the core as given, which names the field.
 */
function contract(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  return { ...value }
}

const WORK_OPTIONS = ['after', 'timeoutMs', 'retry', 'maxVisits', 'reads', 'output']
const MAP_OPTIONS = ['over', 'agent', 'tool', 'itemKey', 'maxItems', 'concurrency', 'onItemFailure', 'after', 'retry', 'timeoutMs', 'maxVisits', 'reads', 'output']

/**
 * Adds nodes in declaration order; `build()` validates like JSON input. Each method returns
 * the builder. Options mirror the JSON fields (`after`, `timeoutMs`, `retry`, `maxVisits`,
 * `reads`, `output`, and a map's own); the core checks their values when the workflow is built.
 */
class WorkflowBuilder {
  constructor(name) {
    this._spec = { name, nodes: [] }
  }

  _node(node, opts) {
    const after = list(opts.after)
    if (after !== undefined) node.after = after
    if (given(opts.maxVisits)) node.maxVisits = opts.maxVisits
    const reads = list(opts.reads)
    if (reads !== undefined) node.reads = reads
    if (given(opts.output)) node.output = contract(opts.output)
    this._spec.nodes.push(node)
    return this
  }

  /** The fields every node that runs an agent or a tool shares. */
  _host(node, o) {
    if (given(o.timeoutMs)) node.timeoutMs = o.timeoutMs
    if (given(o.retry)) node.retry = o.retry
    return this._node(node, o)
  }

  _work(kind, id, name, opts) {
    const o = options(opts, WORK_OPTIONS, `${kind} node '${id}'`)
    return this._host({ id, type: kind, [kind]: name }, o)
  }

  /**
   * An agent node run by the agent registered as `agent`. `output` (`{schema, repair}`) is the
   * contract every output must meet: one that does not match fails the attempt with the
   * retryable `OutputSchemaError` naming the path (the retry's `act.lastFailure`); with
   * `repair: true` a text output is first parsed as almost-JSON and that JSON recorded.
   */
  agent(id, agent, opts) {
    return this._work('agent', id, agent, opts)
  }

  /** A tool node run by the tool registered as `tool` (`reads` and `output` as for agents). */
  tool(id, tool, opts) {
    return this._work('tool', id, tool, opts)
  }

  /**
   * A human-approval node: the run waits until `Mesh.resume` gets its decision (`output`: the
   * contract the decision must meet; one that does not match is refused and the run waits on).
   */
  human(id, opts) {
    const o = options(opts, ['prompt', 'after', 'maxVisits', 'reads', 'output'], `human node '${id}'`)
    const node = { id, type: 'human' }
    if (given(o.prompt)) node.prompt = o.prompt
    return this._node(node, o)
  }

  /**
   * A map node: one activation of `agent` (or one call of `tool`: give exactly one) per item
   * of the array at `over` (a path like `/outputs/plan/items`), all in one step; its output is
   * the array of the item outputs, in item order. `itemKey` (a JSON Pointer into each item)
   * names items by key, `maxItems` bounds the array, `concurrency` how many items run at once,
   * `onItemFailure` (`fail` or `collect`) what an item failing for good does; `retry`,
   * `timeoutMs` and `output` apply to each item (an item whose output does not match is
   * re-asked alone).
   */
  map(id, opts) {
    const o = options(opts, MAP_OPTIONS, `map node '${id}'`)
    const node = { id, type: 'map' }
    if (given(o.agent)) node.agent = o.agent
    if (given(o.tool)) node.tool = o.tool
    if (given(o.over)) node.over = o.over
    if (given(o.itemKey)) node.itemKey = o.itemKey
    if (given(o.maxItems)) node.maxItems = o.maxItems
    if (given(o.concurrency)) node.concurrency = o.concurrency
    if (given(o.onItemFailure)) node.onItemFailure = o.onItemFailure
    return this._host(node, o)
  }

  /**
   * A branch: `cases` (`{when, goto}`, conditions as in the workflow JSON) are tried in order,
   * `default` is the target when none holds.
   */
  branch(id, opts) {
    const o = options(opts, ['cases', 'default', 'after', 'maxVisits'], `branch node '${id}'`)
    const node = { id, type: 'branch' }
    if (given(o.cases) && !(Array.isArray(o.cases) && o.cases.length === 0)) {
      node.cases = Array.isArray(o.cases) ? [...o.cases] : o.cases
    }
    if (given(o.default)) node.default = o.default
    return this._node(node, o)
  }

  /** Bound the number of supersteps of a run. */
  maxSteps(n) {
    this._spec.maxSteps = n
    return this
  }

  /** Validate and compile; `InvalidWorkflowError` names the node and field. */
  build() {
    return Workflow.fromObject(this._spec)
  }
}

module.exports = { Workflow, WorkflowBuilder, toPath, describe }
