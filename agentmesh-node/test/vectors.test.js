'use strict'
// Node runner of the conformance vectors (bindings-tests/README.md, "Runner procedure"): each
// vector runs with real JS agents built from script.json (real throws, real timers, Promises
// settling out of order, cancellation from inside an agent, approvals on resume with a new
// Mesh), and its canonical log must equal expected.jsonl byte for byte. This runner only
// compares; it never writes expected files.
//
// Numbers: `JSON.parse` cannot carry `1.0`, `-0` or integers beyond 2^53 the way the core reads
// them, so script values are parsed exactly (numbers kept as their text) and handed to the
// core as `RawJson` — the path a JS host has for exact JSON.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const am = require('..')
const { normalizeJson } = require('../native.js')

const VECTORS = path.resolve(__dirname, '..', '..', 'bindings-tests', 'vectors')
const NAMES = fs.readdirSync(VECTORS).filter((n) => fs.statSync(path.join(VECTORS, n)).isDirectory()).sort()
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
  const known = new Set(['input', 'seed', 'runId', 'agents', 'approvals'])
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

function scripted(script) {
  const agents = script.agents || {}
  return async (act) => {
    const candidates = [...(agents[act.node] || []), ...(agents[act.name] || [])]
    const chosen = candidates.find(
      (b) =>
        (b.visit === undefined || Number(b.visit.text) === act.visit) &&
        (b.attempt === undefined || Number(b.attempt.text) === act.attempt),
    )
    const fallback = { node: act.node, visit: act.visit, attempt: act.attempt }
    if (chosen === undefined) return fallback
    if (chosen.delayMs !== undefined && Number(chosen.delayMs.text) > 0) {
      await new Promise((resolve) => setTimeout(resolve, Number(chosen.delayMs.text)))
    }
    if (chosen.cancel === true) act.cancelRun('cancelled by script')
    if (chosen.error !== undefined) {
      const e = chosen.error
      throw new am.ActivationError(e.type, e.message, { retryable: e.retryable === undefined ? true : e.retryable })
    }
    const output = 'output' in chosen ? new am.RawJson(exactText(chosen.output)) : fallback
    if (chosen.usage !== undefined) return new am.Output(output, { usage: plain(chosen.usage) })
    return output
  }
}

function newMesh(logDir, wf, script) {
  const mesh = new am.Mesh({ logDir, fsync: 'never' })
  const fn = scripted(script)
  for (const name of wf.agentNames()) mesh.agent(name, fn)
  for (const name of wf.toolNames()) mesh.tool(name, fn)
  return mesh
}

async function drive(start) {
  try {
    return await start()
  } catch (e) {
    // Scripted errors are ActivationErrors; the failed run comes back on the error.
    assert.ok(e instanceof am.AgentFailedError, String(e))
    assert.ok(e.cause instanceof am.ActivationError)
    assert.equal(e.result.status, 'failed')
    return e.result
  }
}

function firstDifference(expected, actual) {
  const exp = expected.toString('utf8').split('\n')
  const act = actual.toString('utf8').split('\n')
  for (let i = 0; i < Math.max(exp.length, act.length); i++) {
    if (exp[i] !== act[i]) {
      const e = exp[i] === undefined ? '<end of log>' : exp[i]
      const a = act[i] === undefined ? '<end of log>' : act[i]
      let col = 0
      while (col < Math.min(e.length, a.length) && e[col] === a[col]) col++
      const cut = (s) => s.slice(Math.max(0, col - 120), col + 120)
      return `line ${i + 1}, column ${col}:\n expected: ${cut(e)}\n   actual: ${cut(a)}`
    }
  }
  return 'logs differ'
}

async function runVector(name, perturb) {
  const dir = path.join(VECTORS, name)
  const wf = am.Workflow.fromFile(path.join(dir, 'workflow.json'))
  let script = loadScript(path.join(dir, 'script.json'))
  if (perturb) script = perturbed(script)
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-vec-'))
  try {
    let mesh = newMesh(logDir, wf, script)
    let result = await drive(() =>
      mesh.run(wf, {
        input: script.input === undefined ? null : plain(script.input),
        seed: script.seed === undefined ? 0 : script.seed.text,
        runId: script.runId,
      }),
    )
    const approvalsAll = script.approvals || {}
    while (result.status === 'waiting') {
      const approvals = {}
      for (const a of result.waiting) {
        if (a.node in approvalsAll) approvals[a.node] = new am.RawJson(exactText(approvalsAll[a.node]))
      }
      if (Object.keys(approvals).length === 0) break
      mesh = newMesh(logDir, wf, script) // as another process would resume the run
      const logPath = result.logPath
      result = await drive(() => mesh.resume(logPath, { approvals }))
    }
    const actual = am.canonicalLogSync(result.logPath)
    const expected = fs.readFileSync(path.join(dir, 'expected.jsonl'))
    if (!actual.equals(expected)) {
      assert.fail(`${name}${perturb ? ' (perturbed)' : ''}: ${firstDifference(expected, actual)}`)
    }
    const report = await am.verifyLog(result.logPath)
    assert.equal(report.repaired ?? null, null)
    assert.equal(report.events, actual.toString('utf8').split('\n').length - 2)
    const finished = ['completed', 'failed', 'cancelled'].includes(result.status)
    assert.equal(report.finished !== undefined && report.finished !== null, finished)
    const replayed = (await am.replay(result.logPath)).outcome
    assert.equal(replayed.status, result.status)
    assert.deepEqual(replayed.output ?? null, result.output)
    assert.deepEqual(replayed.error ?? null, result.error)
  } finally {
    fs.rmSync(logDir, { recursive: true, force: true })
  }
}

for (const name of NAMES) {
  test(`vector ${name}`, () => runVector(name, false))
  test(`vector ${name} (perturbed)`, () => runVector(name, true))
}

test('every vector is found', () => {
  assert.ok(NAMES.length >= 17)
  assert.ok(NAMES.includes('unicode_and_numbers'))
})
