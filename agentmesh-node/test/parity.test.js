'use strict'
// docs/api-parity.md is the table of every public symbol in Rust, Python and Node. This test
// parses it and checks it against the three packages: every name listed exists, every public
// name is listed, Python and Node names are the same words (snake_case ↔ camelCase) unless a
// row says why not, and the error codes are one list in the three languages.
//
// Python is the interpreter in AGENTMESH_PYTHON, else /tmp/pyenv/bin/python, with the
// `agentmesh` package importable; without one the Python checks fail when CI is set and are
// skipped otherwise.

const { test, describe, before } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const url = require('node:url')

const agentmesh = require('..')

const PKG_DIR = path.resolve(__dirname, '..')
const ROOT = path.resolve(PKG_DIR, '..')
const DOC = path.join(ROOT, 'docs', 'api-parity.md')
const CORE_SRC = path.join(ROOT, 'agentmesh-core', 'src')
// The telemetry crate's API sits beside the core's in the table (its own crate: OTel deps).
const TELEMETRY_SRC = path.join(ROOT, 'agentmesh-telemetry', 'src')

// The table ----------------------------------------------------------------------------------

const HEADER = '| Concept | Rust | Python | Node | Notes |'
const NAME = /`([^`]+)`( \*\(type\)\*)?/g

/** A language cell: '—' or backticked names separated by commas. */
function parseCell(cell, where) {
  if (cell === '—') return []
  const names = [...cell.matchAll(NAME)].map((m) => ({ name: m[1], type: m[2] !== undefined }))
  const rest = cell.replace(NAME, '').replace(/,/g, '').trim()
  assert.equal(rest, '', `${where}: a cell holds '—' or backticked names separated by commas, not ${JSON.stringify(cell)}`)
  assert.ok(names.length > 0, `${where}: empty cell (write '—')`)
  return names
}

function parseTable(text) {
  const lines = text.split('\n')
  const start = lines.indexOf(HEADER)
  assert.ok(start >= 0, `${DOC} has no line ${HEADER}`)
  assert.match(lines[start + 1], /^\|(---\|){5}$/)
  const rows = []
  for (let i = start + 2; i < lines.length && lines[i].startsWith('|'); i++) {
    const where = `docs/api-parity.md:${i + 1}`
    const cells = lines[i].split('|').slice(1, -1).map((c) => c.trim())
    assert.equal(cells.length, 5, `${where}: 5 cells expected`)
    const [concept, rust, python, node, notes] = cells
    if (/^\*\*[^*]+\*\*$/.test(concept) && rust === '' && python === '' && node === '' && notes === '') {
      continue // a section heading
    }
    const row = {
      where,
      concept,
      rust: parseCell(rust, `${where} (Rust)`).map((n) => n.name),
      python: parseCell(python, `${where} (Python)`).map((n) => n.name),
      node: parseCell(node, `${where} (Node)`),
      exempt: /\*\*(Intentional|Open):\*\*/.test(notes),
    }
    for (const mark of notes.matchAll(/\*\*([^*]+):\*\*/g)) {
      assert.match(mark[1], /^(Intentional|Open|Open \((Rust|behaviour|location|Node)\))$/, `${where}: unknown mark **${mark[1]}:**`)
    }
    assert.ok(row.rust.length + row.python.length + row.node.length > 0, `${where}: no language has a name`)
    rows.push(row)
  }
  assert.ok(rows.length > 100, `only ${rows.length} rows parsed`)
  return rows
}

const rows = parseTable(fs.readFileSync(DOC, 'utf-8'))
const nodeNames = rows.flatMap((r) => r.node.map((n) => ({ ...n, where: r.where })))
const pythonNames = rows.flatMap((r) => r.python.map((name) => ({ name, where: r.where })))
const rustNames = rows.flatMap((r) => r.rust.map((name) => ({ name, where: r.where })))

// Node: the typings --------------------------------------------------------------------------

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '')
}

/** The text between the brace at `open` and its match. */
function braceBody(text, open) {
  let depth = 0
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++
    else if (text[i] === '}' && --depth === 0) return text.slice(open + 1, i)
  }
  throw new Error('unbalanced braces')
}

/** Names declared at the top level of a body (interface or class members). */
function topLevelMembers(body) {
  let flat = ''
  let depth = 0
  for (const ch of body) {
    if (ch === '{') depth++
    if (depth === 0) flat += ch
    if (ch === '}') depth--
  }
  const names = new Set()
  for (const m of flat.matchAll(/(?:^|[;\n])\s*(?:(?:readonly|static|declare|get|set)\s+)*([A-Za-z_$][\w$]*)\??\s*[:(<]/g)) {
    names.add(m[1])
  }
  names.delete('constructor')
  return names
}

const DTS = ['index.d.ts', 'native.d.ts', ...fs.readdirSync(path.join(PKG_DIR, 'lib')).filter((f) => f.endsWith('.d.ts')).map((f) => `lib/${f}`)]
const dtsText = Object.fromEntries(DTS.map((f) => [f, stripComments(fs.readFileSync(path.join(PKG_DIR, f), 'utf-8'))]))

/** Every name the package's typings export: index.d.ts, what it re-exports. */
function exportedTypeNames() {
  const names = new Set()
  const index = dtsText['index.d.ts']
  for (const m of index.matchAll(/export \* from '\.\/(lib\/\w+)'/g)) {
    for (const d of dtsText[`${m[1]}.d.ts`].matchAll(/^export (?:declare )?(?:class|interface|type|function|const|enum) ([A-Za-z_$][\w$]*)/gm)) {
      names.add(d[1])
    }
  }
  for (const m of index.matchAll(/export type \{([^}]*)\} from '\.\/native'/g)) {
    for (const n of m[1].split(',').map((s) => s.trim()).filter(Boolean)) names.add(n)
  }
  return names
}

/** The members of an interface or class declared in the typings (with what it extends). */
function declaredMembers(name, files = [...DTS.filter((f) => f.startsWith('lib/')), 'native.d.ts']) {
  for (const f of files) {
    const text = dtsText[f]
    const m = new RegExp(`(?:interface|class) ${name}\\b(?:<[^{]*?>)?([^{]*)\\{`).exec(text)
    if (m === null) continue
    const members = topLevelMembers(braceBody(text, m.index + m[0].length - 1))
    const ext = /extends ([\w$]+)/.exec(m[1])
    if (ext !== null) {
      // lib/mesh.d.ts: `Activation extends NativeActivation`, native.d.ts's `Activation`
      const parent = ext[1] === 'NativeActivation' ? declaredMembers('Activation', ['native.d.ts']) : declaredMembers(ext[1])
      for (const p of parent ?? []) members.add(p)
    }
    return members
  }
  return null
}

const typeNames = exportedTypeNames()
const runtimeNames = new Set(Object.keys(agentmesh))

// Node: runtime samples ----------------------------------------------------------------------

function nodeSamples() {
  const { Mesh, Workflow, Output, RawJson, ActivationError, ERROR_CODES, errorClass, AgentMeshError } = agentmesh
  const wf = Workflow.fromObject({ name: 'parity', nodes: [{ id: 'a', type: 'agent', agent: 'x' }] })
  const acts = []
  const mesh = new Mesh().agent('x', (act) => {
    acts.push(act)
    return 1
  })
  const result = mesh.runSync(wf)
  assert.equal(result.status, 'completed')
  const samples = {
    Mesh: mesh,
    RunResult: result,
    Activation: acts[0],
    Workflow: wf,
    WorkflowBuilder: Workflow.builder('b'),
    Output: new Output(1),
    RawJson: new RawJson('1'),
    ActivationError: new ActivationError('T', 'm'),
    AgentMeshError: new AgentMeshError('m'),
  }
  samples.RunInterruptedError = new agentmesh.RunInterruptedError({ runId: 'r', logPath: null, reason: 'x' })
  // Call values, as an agent gets them (their fields are own properties).
  samples.CallTicket = new agentmesh.CallTicket({ activation: 2, call: 1, seq: 3, idempotencyKey: 'k', live: true })
  samples.LlmReply = new agentmesh.LlmReply({ text: 't', finishReason: 'stop' }, null, false)
  samples.LlmStream = new agentmesh.LlmStream(() => Promise.resolve(samples.LlmReply))
  samples.RunStream = mesh.stream(wf) // driven to its end in memory
  samples.Policy = new agentmesh.Policy({ version: 1, name: 'parity' })
  samples.Telemetry = new agentmesh.Telemetry() // metrics only: nothing leaves the process
  for (const code of ERROR_CODES) {
    const cls = errorClass(code)
    samples[cls.name] = new cls('m', null, { cause: null }) // `cause` is an own property only when given
  }
  return samples
}

const samples = nodeSamples()

/** The class (constructor) of a sample. */
function sampleClass(name) {
  return name === 'Activation' ? samples.Activation.constructor : agentmesh[name]
}

function nodeNameExists({ name, type }) {
  const [head, member, ...more] = name.split('.')
  if (more.length > 0) return false
  if (type) {
    if (member === undefined) return typeNames.has(head)
    const members = declaredMembers(head)
    return members !== null && members.has(member)
  }
  if (member === undefined) return runtimeNames.has(head)
  const cls = sampleClass(head)
  if (typeof cls !== 'function') return false
  return member in cls || (samples[head] !== undefined && member in samples[head])
}

const ERROR_BUILTINS = new Set(['name', 'message', 'stack', 'cause'])
const STATIC_BUILTINS = new Set(['length', 'name', 'prototype'])

/** Public members of a sample: own and inherited (up to Object/Error), and static ones. */
function publicMembers(name) {
  const sample = samples[name]
  const cls = sampleClass(name)
  const isError = sample instanceof Error
  const out = new Set()
  for (let o = sample; o !== null && o !== Object.prototype && o !== Error.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Object.getOwnPropertyNames(o)) out.add(key)
  }
  for (let c = cls; c !== null && c !== Function.prototype && c !== Error; c = Object.getPrototypeOf(c)) {
    for (const key of Object.getOwnPropertyNames(c)) if (!STATIC_BUILTINS.has(key)) out.add(key)
  }
  return [...out].filter((k) => !k.startsWith('_') && k !== 'constructor' && !(isError && ERROR_BUILTINS.has(k)))
}

/** Sample classes this one inherits from (itself included). */
function nodeAncestors(name) {
  const cls = sampleClass(name)
  return Object.keys(samples).filter((other) => {
    const o = sampleClass(other)
    return o === cls || cls.prototype instanceof o
  })
}

// Python ---------------------------------------------------------------------------------------

const PYTHON_SCRIPT = String.raw`
import dataclasses, inspect, json, re, sys
import agentmesh
from agentmesh import errors

names = json.load(sys.stdin)
wf = agentmesh.Workflow.from_dict({"name": "parity", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]})
acts = []
mesh = agentmesh.Mesh()
mesh.add_agent("x", lambda act: acts.append(act) or 1)
result = mesh.run(wf)
assert result.status == "completed", result
samples = {
    "Mesh": mesh, "RunResult": result, "Activation": acts[0], "Workflow": wf,
    "WorkflowBuilder": agentmesh.Workflow.builder("b"), "CancelToken": agentmesh.CancelToken(),
    "Output": agentmesh.Output(1), "RawJson": agentmesh.RawJson("1"), "Retry": agentmesh.Retry(1),
    "ActivationError": agentmesh.ActivationError("T", "m"), "AgentMeshError": agentmesh.AgentMeshError("m"),
    "LlmReply": agentmesh.LlmReply(text="t", tool_calls=[], finish_reason=None, usage=None, response={}, recorded=False),
}
codes = agentmesh.error_codes()
classes = {}
for code in codes:
    cls = errors.error_class(code)
    classes[code] = cls.__name__
    samples[cls.__name__] = cls("m")

def attr_path(dotted):
    obj = agentmesh
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj

def exists(name):
    m = re.fullmatch(r"([\w.]+)\((\w+)=\)", name)
    if m:
        target = attr_path(m.group(1))
        return m.group(2) in inspect.signature(target).parameters
    try:
        attr_path(name)
        return True
    except AttributeError:
        pass
    head, _, rest = name.partition(".")
    if head in samples and rest and "." not in rest:
        return hasattr(samples[head], rest)
    return False

def checked(name):
    try:
        return exists(name)
    except Exception:
        return False

builtin = set(dir(Exception("x")))
members = {}
ancestors = {}
for name, sample in samples.items():
    members[name] = sorted(n for n in dir(sample)
                           if not n.startswith("_") and not (isinstance(sample, BaseException) and n in builtin))
    ancestors[name] = [other for other, s in samples.items() if isinstance(sample, type(s))]

def keyword_params(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if p.default is not inspect.Parameter.empty]

print(json.dumps({
    "exists": {n: checked(n) for n in names},
    "all": list(agentmesh.__all__),
    "members": members,
    "ancestors": ancestors,
    "params": {
        "Mesh": keyword_params(agentmesh.Mesh),
        "Mesh.run": keyword_params(agentmesh.Mesh.run),
        "Mesh.resume": keyword_params(agentmesh.Mesh.resume),
        "Mesh.fork": keyword_params(agentmesh.Mesh.fork),
    },
    "codes": codes,
    "classes": classes,
}))
`

/** The Python facts, or why they could not be had. */
function askPython() {
  const python = process.env.AGENTMESH_PYTHON || '/tmp/pyenv/bin/python'
  const r = childProcess.spawnSync(python, ['-c', PYTHON_SCRIPT], {
    cwd: ROOT,
    input: JSON.stringify(pythonNames.map((n) => n.name)),
    encoding: 'utf-8',
    timeout: 30_000,
  })
  if (r.error) return { error: `${python}: ${r.error.message}` }
  if (r.status !== 0) return { error: `${python} exited ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}` }
  return { facts: JSON.parse(r.stdout) }
}

let py = null

/** The Python facts; skips the test (fails it under CI) without a Python that has agentmesh. */
function pythonFacts(t) {
  if (py.facts) return py.facts
  if (process.env.CI) assert.fail(`Python checks need the agentmesh package: ${py.error}`)
  t.skip(`no Python with agentmesh (${py.error}); set AGENTMESH_PYTHON`)
  return null
}

// Rust -----------------------------------------------------------------------------------------

function rustFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? rustFiles(p) : e.name.endsWith('.rs') ? [p] : []
  })
}

const rustSrc = [...rustFiles(CORE_SRC), ...rustFiles(TELEMETRY_SRC)].map((f) => fs.readFileSync(f, 'utf-8')).join('\n')

/** The names of the crates' `pub use` lists (their lib.rs). */
function rustPubUse() {
  const lib = [CORE_SRC, TELEMETRY_SRC].map((d) => fs.readFileSync(path.join(d, 'lib.rs'), 'utf-8')).join('\n')
  const names = new Set()
  for (const m of lib.matchAll(/^pub use ([^;]+);/gm)) {
    const braces = /\{([^}]*)\}/.exec(m[1])
    const list = braces !== null ? braces[1].split(',') : [m[1].split('::').pop()]
    for (const n of list.map((s) => s.trim()).filter(Boolean)) names.add(n)
  }
  return names
}

const pubUse = rustPubUse()

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function rustNameExists(name) {
  const assoc = /^(\w+)::(\w+)$/.exec(name)
  const field = /^(\w+)\.(\w+)$/.exec(name)
  if (assoc !== null) {
    const y = escape(assoc[2])
    return pubUse.has(assoc[1]) &&
      (new RegExp(`pub (?:const )?(?:fn|const|static) ${y}\\b`).test(rustSrc) || new RegExp(`^\\s*${y}\\s*[,{(]`, 'm').test(rustSrc))
  }
  if (field !== null) return pubUse.has(field[1]) && new RegExp(`pub ${escape(field[2])}\\s*:`).test(rustSrc)
  return /^\w+$/.test(name) && pubUse.has(name)
}

/** The `pub fn`s of `impl T { … }` blocks and the `pub` fields of `pub struct T { … }`. */
function rustMembers(type) {
  const fns = new Set()
  const fields = new Set()
  // Lifetime or type parameters allowed: `impl<'a> Context<'a> {`.
  for (const m of rustSrc.matchAll(new RegExp(`^impl(?:<[^>]*>)? ${type}(?:<[^>]*>)? \\{`, 'gm'))) {
    const body = braceBody(rustSrc, m.index + m[0].length - 1)
    for (const f of body.matchAll(/^ {4}pub fn (\w+)/gm)) fns.add(f[1])
  }
  const s = new RegExp(`^pub struct ${type}(?:<[^>]*>)? \\{`, 'm').exec(rustSrc)
  if (s !== null) {
    for (const f of braceBody(rustSrc, s.index + s[0].length - 1).matchAll(/^ {4}pub (\w+):/gm)) fields.add(f[1])
  }
  return { fns, fields }
}

/** ErrorKind::ALL, as codes, in order. */
function rustErrorCodes() {
  const text = fs.readFileSync(path.join(CORE_SRC, 'error.rs'), 'utf-8')
  const all = /pub const ALL: &'static \[ErrorKind\] = &\[([^\]]*)\];/.exec(text)
  assert.ok(all, 'ErrorKind::ALL not found in error.rs')
  const codeOf = Object.fromEntries([...text.matchAll(/ErrorKind::(\w+) => "([A-Z_]+)"/g)].map((m) => [m[1], m[2]]))
  return [...all[1].matchAll(/ErrorKind::(\w+)/g)].map((m) => ({ variant: m[1], code: codeOf[m[1]] }))
}

// Names ----------------------------------------------------------------------------------------

/** The last identifier of a table name: `Mesh.run(seed=)` → `seed`, `Workflow.fromJson` → `fromJson`. */
function lastIdentifier(name) {
  const param = /\((\w+)=\)$/.exec(name)
  if (param !== null) return param[1]
  return name.split(/::|\./).pop()
}

function camel(snake) {
  return /^[a-z][a-z0-9]*(_[a-z0-9]+)+$/.test(snake) ? snake.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase()) : snake
}

function pythonKeys(row) {
  return new Set(row.python.map((n) => camel(lastIdentifier(n).replace(/_async$/, ''))))
}

function nodeKeys(row) {
  return new Set(row.node.map((n) => lastIdentifier(n.name).replace(/(?<=.)Sync$/, '')))
}

function sameWords(row) {
  const p = pythonKeys(row)
  const n = nodeKeys(row)
  return p.size === n.size && [...p].every((k) => n.has(k))
}

const listed = (names) => new Set(names.map((n) => n.name ?? n))

// Tests ----------------------------------------------------------------------------------------

describe('docs/api-parity.md', () => {
  before(() => {
    py = askPython()
  })

  test('names are listed once per language and section rows are not mistaken for names', () => {
    for (const [lang, names] of [['Rust', rustNames], ['Python', pythonNames], ['Node', nodeNames]]) {
      const seen = new Map()
      for (const { name, where } of names) {
        assert.ok(!seen.has(name), `${lang} name ${name} is listed twice (${seen.get(name)} and ${where})`)
        seen.set(name, where)
      }
    }
  })

  test('every Node name in the table exists in the package', () => {
    const missing = nodeNames.filter((n) => !nodeNameExists(n)).map((n) => `${n.where}: ${n.name}${n.type ? ' (type)' : ''}`)
    assert.deepEqual(missing, [])
  })

  test('every runtime export and exported type of the Node package is in the table', () => {
    const table = listed(nodeNames)
    assert.deepEqual([...runtimeNames].filter((n) => !table.has(n)), [], 'runtime exports missing from the table')
    const typeOnly = [...typeNames].filter((n) => !runtimeNames.has(n))
    assert.deepEqual(typeOnly.filter((n) => !table.has(n)), [], 'exported types missing from the table')
    // A name the table marks as a type must not be a runtime value (and vice versa).
    for (const n of nodeNames.filter((x) => !x.name.includes('.'))) {
      assert.equal(runtimeNames.has(n.name), !n.type, `${n.where}: ${n.name} is ${runtimeNames.has(n.name) ? 'a runtime export' : 'type-only'}`)
    }
  })

  test('the typings declare every runtime export, and nothing runtime that is not exported', () => {
    const declaredValues = new Set()
    for (const f of DTS.filter((d) => d.startsWith('lib/'))) {
      for (const m of dtsText[f].matchAll(/^export declare (?:class|function|const) ([\w$]+)/gm)) declaredValues.add(m[1])
    }
    assert.deepEqual([...runtimeNames].filter((n) => !typeNames.has(n)), [])
    assert.deepEqual([...declaredValues].filter((n) => !runtimeNames.has(n)), [])
  })

  test('every public member of the Node classes and option types is in the table', () => {
    const table = listed(nodeNames)
    const missing = []
    for (const cls of Object.keys(samples)) {
      for (const member of publicMembers(cls)) {
        if (!nodeAncestors(cls).some((a) => table.has(`${a}.${member}`))) missing.push(`${cls}.${member}`)
      }
    }
    for (const iface of ['MeshOptions', 'RunOptions', 'ResumeOptions', 'ForkOptions', 'WorkOptions', 'HumanOptions', 'BranchOptions', 'MapOptions', 'RetryPolicy']) {
      const members = declaredMembers(iface)
      assert.ok(members !== null && members.size > 0, `interface ${iface} not found in the typings`)
      for (const m of members) if (!table.has(`${iface}.${m}`)) missing.push(`${iface}.${m} (type)`)
    }
    assert.deepEqual(missing, [])
  })

  test('every runtime export is a named ESM export (import { … } from "agentmesh")', async () => {
    const esm = await import(url.pathToFileURL(path.join(PKG_DIR, 'index.js')).href)
    const named = new Set(Object.keys(esm).filter((k) => k !== 'default'))
    assert.deepEqual([...runtimeNames].filter((n) => !named.has(n)), [], 'exports ESM cannot import by name')
  })

  test('every Python name in the table exists in the agentmesh package', (t) => {
    const facts = pythonFacts(t)
    if (facts === null) return
    const missing = pythonNames.filter((n) => facts.exists[n.name] !== true).map((n) => `${n.where}: ${n.name}`)
    assert.deepEqual(missing, [])
  })

  test('every Python public name, class member and Mesh keyword argument is in the table', (t) => {
    const facts = pythonFacts(t)
    if (facts === null) return
    const table = listed(pythonNames)
    assert.deepEqual(facts.all.filter((n) => !table.has(n)), [], '__all__ names missing from the table')
    const missing = []
    for (const [cls, members] of Object.entries(facts.members)) {
      for (const m of members) {
        if (!facts.ancestors[cls].some((a) => table.has(`${a}.${m}`))) missing.push(`${cls}.${m}`)
      }
    }
    for (const [fn, params] of Object.entries(facts.params)) {
      for (const p of params) if (!table.has(`${fn}(${p}=)`)) missing.push(`${fn}(${p}=)`)
    }
    assert.deepEqual(missing, [])
  })

  test('Python and Node names in a row are the same words, unless the row says why not', () => {
    const both = rows.filter((r) => r.python.length > 0 && r.node.length > 0)
    const describeRow = (r) => `${r.where}: Python ${r.python.join(', ')} / Node ${r.node.map((n) => n.name).join(', ')}`
    const differ = both.filter((r) => !r.exempt && !sameWords(r)).map(describeRow)
    assert.deepEqual(differ, [], 'rows whose names differ without an **Intentional:** or **Open:** mark')
    const stale = both.filter((r) => r.exempt && sameWords(r)).map(describeRow)
    assert.deepEqual(stale, [], 'rows marked as differing whose names agree')
  })

  test('the same-words check catches a difference', () => {
    const row = { python: ['Workflow.from_dict', 'errors.error_class'], node: [{ name: 'Workflow.fromObject' }, { name: 'errorClass' }] }
    assert.deepEqual([...pythonKeys(row)], ['fromDict', 'errorClass'])
    assert.deepEqual([...nodeKeys(row)], ['fromObject', 'errorClass'])
    assert.equal(sameWords(row), false)
    assert.deepEqual([...pythonKeys({ python: ['Mesh.run', 'Mesh.run_async', 'Mesh.run(run_id=)'] })], ['run', 'runId'])
    assert.deepEqual([...nodeKeys({ node: [{ name: 'Mesh.run' }, { name: 'Mesh.runSync' }, { name: 'RunOptions.runId' }] })], ['run', 'runId'])
    assert.equal(sameWords({ python: ['Activation.delay_ms'], node: [{ name: 'Activation.delayMs' }] }), true)
    assert.equal(sameWords({ python: ['Activation.delay_ms'], node: [{ name: 'Activation.delay' }] }), false)
  })

  test('every Rust name in the table exists in agentmesh-core or agentmesh-telemetry', () => {
    const missing = rustNames.filter((n) => !rustNameExists(n.name)).map((n) => `${n.where}: ${n.name}`)
    assert.deepEqual(missing, [])
  })

  test("every name of the crate's pub use list and every pub member of the main types is in the table", () => {
    const heads = new Set(rustNames.map((n) => n.name.split(/::|\./)[0]))
    assert.deepEqual([...pubUse].filter((n) => !heads.has(n)), [], 'pub use names missing from the table')
    const table = listed(rustNames)
    const missing = []
    for (const type of ['Mesh', 'RunResult', 'Workflow', 'WorkflowBuilder', 'Activation', 'CancelHandle', 'Context',
      'RunOptions', 'NodeOptions', 'RetrySpec', 'AgentOutput', 'Failure']) {
      const { fns, fields } = rustMembers(type)
      assert.ok(fns.size + fields.size > 0, `no pub members found for ${type}`)
      for (const f of fns) if (!table.has(`${type}::${f}`)) missing.push(`${type}::${f}`)
      for (const f of fields) if (!table.has(`${type}.${f}`)) missing.push(`${type}.${f}`)
    }
    assert.deepEqual(missing, [])
  })

  test('the error codes are one list in Rust, Python and Node, with one row per code', (t) => {
    const rust = rustErrorCodes()
    const codes = rust.map((k) => k.code)
    assert.equal(codes.length, 20)
    assert.deepEqual([...agentmesh.ERROR_CODES], codes, 'Node ERROR_CODES')
    assert.deepEqual(agentmesh.errorCodes(), codes, 'Node errorCodes() (the addon)')

    const codeRows = rows.filter((r) => /^`[A-Z_]+`$/.test(r.concept))
    assert.deepEqual(codeRows.map((r) => r.concept.slice(1, -1)), codes, 'one row per code, in the core order')
    for (const [i, r] of codeRows.entries()) {
      assert.deepEqual(r.rust, [`ErrorKind::${rust[i].variant}`], `${r.where}: Rust`)
      assert.deepEqual(r.node.map((n) => n.name), [agentmesh.errorClass(codes[i]).name], `${r.where}: Node`)
    }

    const facts = pythonFacts(t)
    if (facts === null) return
    assert.deepEqual(facts.codes, codes, 'Python agentmesh.error_codes()')
    for (const [i, r] of codeRows.entries()) {
      assert.deepEqual(r.python, [facts.classes[codes[i]]], `${r.where}: Python`)
    }
  })
})
