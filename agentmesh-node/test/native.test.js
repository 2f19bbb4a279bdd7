'use strict'
// Tests of the native addon through its generated loader (`require('../native.js')` →
// agentmesh.<platform>.node). Build it first: `bash agentmesh-node/scripts/ci-build.sh`.
// Run: `node --test agentmesh-node/test/`.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const vm = require('node:vm')

const am = require('../native.js')
const { poll, outstanding, activations: poll_, C } = require('./support/native')
const { pythonView } = require('./support/helpers')

const { NativeCompletion } = am

const repo = path.resolve(__dirname, '..', '..')
const vectors = path.join(repo, 'bindings-tests', 'vectors')

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-node-'))
}

/** Run `fn` and return what it threw (failing when it does not throw). */
function thrown(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  assert.fail('expected an error')
}

/** Assert an AgentMesh error: a JS Error with `code`, "[CODE] message" and `details`. */
function assertError(e, code, message, details = {}) {
  assert.ok(e instanceof Error, `not an Error: ${e}`)
  assert.equal(e.code, code)
  assert.equal(e.message, `[${code}] ${message}`)
  assert.deepEqual(e.details, details)
}

const CHAIN = {
  name: 'chain',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'planner' },
    { id: 'write', type: 'agent', agent: 'writer', after: ['plan'] },
    { id: 'edit', type: 'agent', agent: 'editor', after: ['write'] },
  ],
}

function chainWorkflow() {
  return am.NativeWorkflow.fromJson(JSON.stringify(CHAIN))
}

const FIELDS = ['id', 'runId', 'node', 'kind', 'name', 'attempt', 'visit', 'delayMs', 'timeoutMs', 'prompt', 'seed', 'step', 'input', 'deps']

/** A native activation's fields (getters) as a plain object, without the undefined ones. */
function fields(act) {
  return Object.fromEntries(FIELDS.filter((k) => act[k] !== undefined).map((k) => [k, act[k]]))
}

/** Record one completion as the driver does; throws the error `completeAll` reports for it. */
function complete(run, completion) {
  const notes = run.completeAll([completion])
  if (notes !== null && notes[0] !== null) throw notes[0]
}

/** `complete` with `NativeCompletion.ok`. */
function completeOk(run, act, output, usage, durationUs) {
  complete(run, C.ok(act, output, usage, durationUs))
}

/** A one-node run whose single activation is outstanding. */
function oneAgent(opts = {}) {
  const wf = am.NativeWorkflow.fromJson(JSON.stringify({ name: 'one', nodes: [{ id: 'a', type: 'agent', agent: 'x' }] }))
  const run = am.NativeRun.start(wf, null, opts)
  const [act] = poll(run)
  return { run, act }
}

/** The canonical log of a one-node run completed with `output`, or the error thrown. */
function recorded(output) {
  const { run, act } = oneAgent()
  completeOk(run, act, output)
  const line = run.canonical().toString().split('\n').find((l) => l.includes('"agentCompleted"'))
  return line.slice(line.indexOf('"output":') + '"output":'.length, -'}}'.length)
}

describe('native loader', () => {
  test('exports exactly the native API', () => {
    assert.deepEqual(Object.keys(am).sort(), [
      'NativeCalls',
      'NativeCompletion',
      'NativeEventStream',
      'NativeExecutor',
      'NativeHistoryStream',
      'NativeLogBuffer',
      'NativeMcpServer',
      'NativePolicy',
      'NativePriceTable',
      'NativeRun',
      'NativeTelemetry',
      'NativeToolRules',
      'NativeWorkflow',
      '__napiBindingTarget',
      '__panicForTests',
      '__panicForTestsAsync',
      'anchor',
      'anchorAsync',
      'canonicalLog',
      'canonicalLogAsync',
      'captureLogs',
      'checkBudget',
      'checkLog',
      'checkLogAsync',
      'checkPolicyJson',
      'checkPolicyJsonAsync',
      'cliMain',
      'errorCodes',
      'exportLog',
      'exportOtlp',
      'exportOtlpSync',
      'fingerprint',
      'fingerprintAsync',
      'history',
      'normalizeJson',
      'providerError',
      'readHeader',
      'readLog',
      'recordedWorkflow',
      'redactJson',
      'replay',
      'replayAsync',
      'stateAt',
      'stateAtAsync',
      'usageReport',
      'usageReportAsync',
      'verifyAnchor',
      'verifyAnchorAsync',
      'verifyLog',
      'verifyLogAsync',
    ])
    assert.equal(am.__napiBindingTarget, 'native')
  })

  test('errorCodes() is the core ErrorKind::ALL and the Python _TABLE, in order', () => {
    const rust = fs.readFileSync(path.join(repo, 'agentmesh-core', 'src', 'error.rs'), 'utf-8')
    const all = rust.match(/pub const ALL: &'static \[ErrorKind\] = &\[([^\]]*)\]/)[1]
    const codeOf = Object.fromEntries([...rust.matchAll(/ErrorKind::(\w+) => "([A-Z_]+)"/g)].map((m) => [m[1], m[2]]))
    const rustCodes = [...all.matchAll(/ErrorKind::(\w+)/g)].map((m) => codeOf[m[1]])
    assert.equal(rustCodes.length, 20)
    assert.deepEqual(am.errorCodes(), rustCodes)

    const py = fs.readFileSync(path.join(repo, 'agentmesh-py', 'python', 'agentmesh', 'errors.py'), 'utf-8')
    const classCode = Object.fromEntries([...py.matchAll(/class (\w+)\(\w+\):(?:(?!\nclass )[\s\S])*?code = "([A-Z_]+)"/g)].map((m) => [m[1], m[2]]))
    const table = py.match(/for cls in \(([\s\S]*?)\)\n/)[1]
    const pyCodes = [...table.matchAll(/(\w+),/g)].map((m) => classCode[m[1]])
    assert.deepEqual(pythonView(am.errorCodes(), pyCodes), pyCodes)
  })
})

describe('the plain Node-API part (native-raw.d.ts)', () => {
  test('NativeCompletion and the per-step methods of NativeRun exist as typed', () => {
    const dts = fs.readFileSync(path.join(__dirname, '..', 'native-raw.d.ts'), 'utf-8')
    for (const name of ['ok', 'okJson', 'err', 'timedOut', 'unreadable']) {
      assert.equal(typeof am.NativeCompletion[name], 'function', name)
      assert.ok(dts.includes(`static ${name}(`), name)
    }
    for (const name of ['id', 'error']) {
      assert.equal(typeof Object.getOwnPropertyDescriptor(am.NativeCompletion.prototype, name).get, 'function', name)
      assert.ok(dts.includes(`readonly ${name}:`), name)
    }
    for (const name of ['poll', 'outstanding', 'completeAll']) {
      assert.equal(typeof am.NativeRun.prototype[name], 'function', name)
      assert.ok(dts.includes(`${name}(`), name)
    }
  })

  test('a poll record has the documented layout; deps texts end where the record says', () => {
    const wf = am.NativeWorkflow.fromJson(JSON.stringify({ name: 'r', nodes: [
      { id: 'a', type: 'agent', agent: 'x', timeoutMs: 5 },
      { id: 'b', type: 'agent', agent: 'y', after: ['a'] },
      { id: 'h', type: 'human', prompt: 'ok? 🦀', after: ['a'] },
    ] }))
    const run = am.NativeRun.start(wf, { in: 'é' }, { seed: '18446744073709551615' })
    let text = run.poll()
    const nl = text.indexOf('\n')
    assert.deepEqual(JSON.parse(text.slice(0, nl)).map((r) => r.slice(0, 9).concat([r[10], r[11]])), [[3, 'a', 'agent', 'x', 1, 1, 0, 5, 1, null, 2]])
    assert.equal(text.slice(nl + 1), '{}')
    assert.equal(run.inputJson(), '{"in":"é"}')
    const [a] = poll_(text, run)
    text = run.completeAll([C.ok(a, { v: '🦀', n: [1.5] })], true)
    const [b, h] = poll_(text, run)
    assert.deepEqual([b.node, b.deps, b.timeoutMs], ['b', { a: { n: [1.5], v: '🦀' } }, undefined])
    assert.deepEqual([h.node, h.kind, h.prompt, h.deps], ['h', 'human', 'ok? 🦀', { a: { n: [1.5], v: '🦀' } }])
  })

  test('a map item\'s record and one with reads carry four more entries; their texts follow the deps text', () => {
    const wf = am.NativeWorkflow.fromJson(JSON.stringify({ name: 'r', nodes: [
      { id: 'plan', type: 'agent', agent: 'p' },
      { id: 'm', type: 'map', agent: 'x', after: ['plan'], over: '/outputs/plan/qs', itemKey: '/id', reads: ['/input/t', '/outputs/nope'] },
      { id: 'bare', type: 'map', tool: 't', after: ['plan'], over: '/outputs/plan/qs' },
      { id: 'z', type: 'agent', agent: 'z', after: ['m'], reads: ['/outputs/plan/qs/0', '/visits/m'] },
      { id: 'nope', type: 'agent', agent: 'n', after: ['z'] },
    ] }))
    const run = am.NativeRun.start(wf, { t: 'é🦀' })
    let text = run.poll()
    // Nothing more for an activation without item or reads.
    assert.equal(JSON.parse(text.slice(0, text.indexOf('\n')))[0].length, 12)
    const [plan] = poll_(text, run)
    text = run.completeAll([C.ok(plan, { qs: [{ id: 'x🦀', v: 'é' }, { id: 7 }] })], true)
    const nl = text.indexOf('\n')
    const records = JSON.parse(text.slice(0, nl))
    // Each text, back to back after the newline; ends counted in UTF-16 code units.
    const deps = '{"plan":{"qs":[{"id":"x🦀","v":"é"},{"id":7}]}}'
    const first = '{"id":"x🦀","v":"é"}'
    const second = '{"id":7}'
    const reads = '{"/input/t":"é🦀"}'
    const texts = [deps, first, reads, deps, second, reads, deps, first, deps, second]
    assert.equal(text.slice(nl + 1), texts.join(''))
    const ends = []
    texts.reduce((at, t) => (ends.push(at + t.length), at + t.length), 0)
    assert.deepEqual(records.map((r) => [r[1], ...r.slice(11)]), [
      ['m', ends[0], 0, 'x🦀', ends[1], ends[2]],
      ['m', ends[3], 1, '7', ends[4], ends[5]],
      ['bare', ends[6], 0, null, ends[7], ends[7]],
      ['bare', ends[8], 1, null, ends[9], ends[9]],
    ])
    const items = poll_(text, run)
    assert.deepEqual(items.map((a) => [a.node, a.kind, a.name, a.item, a.reads]), [
      ['m', 'agent', 'x', { index: 0, key: 'x🦀', value: { id: 'x🦀', v: 'é' } }, { '/input/t': 'é🦀' }],
      ['m', 'agent', 'x', { index: 1, key: '7', value: { id: 7 } }, { '/input/t': 'é🦀' }],
      ['bare', 'tool', 't', { index: 0, value: { id: 'x🦀', v: 'é' } }, {}],
      ['bare', 'tool', 't', { index: 1, value: { id: 7 } }, {}],
    ])
    text = run.completeAll(items.map((a) => C.ok(a, a.item.index)), true)
    const [z] = poll_(text, run)
    assert.deepEqual(JSON.parse(text.slice(0, text.indexOf('\n')))[0].slice(11, 15), [11, null, null, 11])
    assert.deepEqual([z.node, z.item, z.deps, z.reads], ['z', undefined, { m: [0, 1] }, { '/outputs/plan/qs/0': { id: 'x🦀', v: 'é' }, '/visits/m': 1 }])
  })

  test("a retry's record carries the failure it retries as a seventeenth entry; its texts stay in place", () => {
    const wf = am.NativeWorkflow.fromJson(JSON.stringify({ name: 'r', nodes: [
      { id: 'a', type: 'agent', agent: 'x', retry: { maxAttempts: 3 }, output: { schema: { type: 'object', required: ['ok'] } } },
      { id: 'm', type: 'map', agent: 'y', after: ['a'], over: '/outputs/a/qs', retry: { maxAttempts: 2 }, reads: ['/input/t'] },
    ] }))
    const run = am.NativeRun.start(wf, { t: 'é🦀' })
    const header = (text) => JSON.parse(text.slice(0, text.indexOf('\n')))
    let text = run.poll()
    assert.equal(header(text)[0].length, 12)
    let [a] = poll_(text, run)
    assert.equal(a.lastFailure, undefined)
    // A thrown error, retried: no item, no reads, an empty deps text; then the failure.
    text = run.completeAll([C.err(a, 'Flaky', 'try again 🦀', true)], true)
    const failure = { kind: 'error', type: 'Flaky', message: 'try again 🦀', retryable: true }
    assert.deepEqual(header(text)[0].slice(11), [2, null, null, 2, 2, failure])
    assert.equal(text.slice(text.indexOf('\n') + 1), '{}')
    ;[a] = poll_(text, run)
    assert.deepEqual([a.attempt, a.lastFailure, a.item, a.reads, a.deps], [2, failure, undefined, {}, {}])
    // An output the schema refuses: the retry gets the OutputSchemaError naming the path.
    text = run.completeAll([C.ok(a, { qs: ['q'] })], true)
    ;[a] = poll_(text, run)
    assert.deepEqual(a.lastFailure, { kind: 'error', type: 'OutputSchemaError', message: 'the output does not match the node\'s schema at the root: "ok" is a required property', retryable: true })
    text = run.completeAll([C.ok(a, { ok: true, qs: ['q🦀', 'r'] })], true)
    let items = poll_(text, run)
    assert.deepEqual(items.map((i) => i.lastFailure), [undefined, undefined])
    // A map item's retry: its value and reads texts, then the failure in the header.
    text = run.completeAll([C.ok(items[0], 1), C.err(items[1], 'Busy', 'later', true)], true)
    const deps = '{"a":{"ok":true,"qs":["q🦀","r"]}}'
    const texts = [deps, '"r"', '{"/input/t":"é🦀"}']
    assert.equal(text.slice(text.indexOf('\n') + 1), texts.join(''))
    const ends = []
    texts.reduce((at, t) => (ends.push(at + t.length), at + t.length), 0)
    const busy = { kind: 'error', type: 'Busy', message: 'later', retryable: true }
    assert.deepEqual(header(text)[0].slice(11), [ends[0], 1, null, ends[1], ends[2], busy])
    items = poll_(text, run)
    assert.deepEqual(items.map((i) => [i.attempt, i.item, i.reads, i.lastFailure]), [[2, { index: 1, value: 'r' }, { '/input/t': 'é🦀' }, busy]])
  })

  test('NativeCompletion cannot be constructed or forged; a completion is recorded once, and can be refilled', () => {
    assertError(thrown(() => new am.NativeCompletion()), 'INVALID_ARGUMENT', 'this class is made by the addon (poll, NativeCompletion.ok, ...), not with new')
    const { run, act } = oneAgent()
    const forged = Object.create(am.NativeCompletion.prototype)
    assertError(thrown(() => run.completeAll([forged])), 'INVALID_ARGUMENT', 'expected a NativeCompletion')
    // Even another native object given NativeCompletion's prototype.
    const other = Object.setPrototypeOf(am.NativeRun.start(chainWorkflow()), am.NativeCompletion.prototype)
    assertError(thrown(() => run.completeAll([other])), 'INVALID_ARGUMENT', 'expected a NativeCompletion')
    assertError(thrown(() => forged.id), 'INVALID_ARGUMENT', 'expected a NativeCompletion')
    assertError(thrown(() => run.completeAll('x')), 'INVALID_ARGUMENT', 'completeAll takes an array of NativeCompletion')
    const c = C.ok(act, 1)
    assertError(thrown(() => run.completeAll([c, c])), 'INVALID_ARGUMENT', 'the same completion was given twice')
    assert.equal(run.completeAll([c]), null)
    assertError(thrown(() => run.completeAll([c])), 'INVALID_ARGUMENT', 'this completion was recorded already')
    // Refilled (`into`): the same object, a new completion.
    const again = oneAgent()
    assert.equal(C.ok(again.act, 'refilled', null, null, c), c)
    assert.equal(again.run.completeAll([c]), null)
    assert.deepEqual(again.run.outcome().output, { a: 'refilled' })
  })
})

describe('NativeWorkflow', () => {
  test('fromJson: name, hash, canonical JSON, node ids, agent and tool names', () => {
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({
        name: 'mixed',
        nodes: [
          { id: 'b', type: 'agent', agent: 'zed' },
          { id: 'a', type: 'tool', tool: 'search', after: ['b'] },
          { id: 'c', type: 'agent', agent: 'alpha', after: ['b'] },
          { id: 'h', type: 'human', prompt: 'ok?', after: ['a', 'c'] },
        ],
      }),
    )
    assert.equal(wf.name, 'mixed')
    assert.match(wf.hash, /^[0-9a-f]{64}$/)
    assert.deepEqual(wf.nodeIds(), ['b', 'a', 'c', 'h'])
    assert.deepEqual(wf.agentNames(), ['alpha', 'zed'])
    assert.deepEqual(wf.toolNames(), ['search'])
    // toJson is the canonical form: parsing it again gives the same hash.
    assert.equal(am.NativeWorkflow.fromJson(wf.toJson()).hash, wf.hash)
  })

  test('hash is the one the Rust runner recorded for the chain vector', () => {
    const wf = am.NativeWorkflow.fromFile(path.join(vectors, 'chain', 'workflow.json'))
    const header = JSON.parse(fs.readFileSync(path.join(vectors, 'chain', 'expected.jsonl'), 'utf-8').split('\n')[0])
    assert.equal(wf.hash, header.workflow.hash)
    assert.equal(wf.hash, chainWorkflow().hash)
  })

  test('invalid workflows throw INVALID_WORKFLOW with node and field', () => {
    const e = thrown(() =>
      am.NativeWorkflow.fromJson(JSON.stringify({ name: 'w', nodes: [{ id: 'a', type: 'agent', agent: 'x', after: ['b'] }] })),
    )
    assertError(e, 'INVALID_WORKFLOW', "node 'a', field 'after[0]': unknown node 'b'", { node: 'a', field: 'after[0]' })
    const e2 = thrown(() => am.NativeWorkflow.fromJson('{"nodes": []}'))
    assert.equal(e2.code, 'INVALID_WORKFLOW')
    assert.deepEqual(e2.details, { node: null, field: '(document)' })
  })

  test('fromFile of a missing file throws IO', () => {
    const e = thrown(() => am.NativeWorkflow.fromFile('/nonexistent/agentmesh/workflow.json'))
    assert.equal(e.code, 'IO')
    assert.match(e.message, /^\[IO\] .*\/nonexistent\/agentmesh\/workflow\.json/)
    assert.deepEqual(e.details, {})
  })
})

describe('NativeRun driven by hand', () => {
  test('chain with completeAll reproduces expected.jsonl byte for byte (memory and file)', () => {
    const expected = fs.readFileSync(path.join(vectors, 'chain', 'expected.jsonl'))
    const dir = tmpdir()
    for (const logDir of [undefined, dir]) {
      const run = am.NativeRun.start(chainWorkflow(), { topic: 'rust' }, { seed: 1, logDir, fsync: 'never' })
      assert.equal(run.runId(), 'run-0c075115801b8feb')
      assert.equal(run.status(), 'running')
      let [act] = poll(run)
      assert.deepEqual(Object.keys(fields(act)), ['id', 'node', 'kind', 'name', 'attempt', 'visit', 'delayMs', 'seed', 'step', 'input', 'deps'])
      assert.equal(act.timeoutMs, undefined)
      assert.equal(act.prompt, undefined)
      assert.equal(act.id, 3)
      assert.equal(act.node, 'plan')
      assert.equal(act.kind, 'agent')
      assert.equal(act.name, 'planner')
      assert.equal(typeof act.seed, 'bigint')
      assert.deepEqual(act.input, { topic: 'rust' })
      assert.deepEqual(act.deps, {})
      assert.deepEqual(poll(run), [], 'each activation is handed out once')
      assert.deepEqual(outstanding(run).map((a) => a.id), [3])
      completeOk(run, act, { steps: ['intro', 'body'] }, { inputTokens: 12, outputTokens: 30 }, 1500)
      ;[act] = poll(run)
      assert.equal(act.node, 'write')
      assert.equal(act.step, 2)
      assert.deepEqual(act.deps, { plan: { steps: ['intro', 'body'] } })
      completeOk(run, act, { node: 'write', visit: 1, attempt: 1 })
      ;[act] = poll(run)
      completeOk(run, act, 'edited draft')
      assert.equal(run.status(), 'completed')
      assert.deepEqual(run.outcome(), { status: 'completed', output: { edit: 'edited draft' } })
      assert.deepEqual(poll(run), [])
      const canonical = run.canonical()
      assert.ok(Buffer.isBuffer(canonical))
      assert.equal(canonical.toString(), expected.toString())
      assert.ok(canonical.equals(expected))
      if (logDir) {
        const log = path.join(dir, 'run-0c075115801b8feb.jsonl')
        assert.equal(run.logPath(), log)
        assert.ok(am.canonicalLog(log).equals(expected))
        assert.equal(am.fingerprint(log), run.fingerprint())
        assert.equal(fs.statSync(log).mode & 0o777, 0o600)
      } else {
        assert.equal(run.logPath(), null)
      }
      run.close()
    }
  })

  test('workflow(), runId, seeds: number, bigint and decimal string are the same seed', () => {
    const runs = [1, 1n, '1'].map((seed) => am.NativeRun.start(chainWorkflow(), { topic: 'rust' }, { seed }))
    const [a, b, c] = runs.map((r) => fields(poll(r)[0]))
    assert.equal(runs[0].runId(), 'run-0c075115801b8feb')
    assert.deepEqual(b, a)
    assert.deepEqual(c, a)
    assert.equal(runs[0].workflow().hash, chainWorkflow().hash)
  })

  test('a 64-bit seed crosses exactly; out-of-range seeds are INVALID_ARGUMENT', () => {
    const dir = tmpdir()
    const max = 2n ** 64n - 1n
    const run = am.NativeRun.start(chainWorkflow(), null, { seed: max, logDir: dir, runId: 'big-seed' })
    const header = am.readHeader(run.logPath())
    assert.equal(header.seed, max)
    assert.equal(poll(am.NativeRun.start(chainWorkflow(), null, { seed: '18446744073709551615', runId: 'big-seed' }))[0].seed, poll(run)[0].seed)
    const seedError = 'seed must be an integer from 0 to 2^64-1 (a number up to 2^53-1, a bigint or a decimal string)'
    for (const [seed, tail] of [
      [-1, ', not -1'],
      [2 ** 53, ', not 9007199254740992'],
      [1.5, ', not 1.5'],
      [2n ** 64n, '; this bigint is out of range'],
      [-1n, '; this bigint is out of range'],
      ['1e3', ', not "1e3"'],
      ['+1', ', not "+1"'],
      ['', ', not ""'],
    ]) {
      assertError(
        thrown(() => am.NativeRun.start(chainWorkflow(), null, { seed })),
        'INVALID_ARGUMENT',
        seedError + tail,
      )
    }
  })

  test('options: runId, tenant, fsync; bad values are INVALID_ARGUMENT; RUN_EXISTS', () => {
    const dir = tmpdir()
    const run = am.NativeRun.start(chainWorkflow(), null, { runId: 'r1', logDir: dir, tenant: 'acme', fsync: 'always' })
    assert.equal(run.runId(), 'r1')
    assert.equal(am.readHeader(path.join(dir, 'r1.jsonl')).tenant, 'acme')
    const e = thrown(() => am.NativeRun.start(chainWorkflow(), null, { runId: 'r1', logDir: dir }))
    assert.equal(e.code, 'RUN_EXISTS')
    assert.equal(thrown(() => am.NativeRun.start(chainWorkflow(), null, { fsync: 'sometimes' })).code, 'INVALID_ARGUMENT')
    assert.equal(thrown(() => am.NativeRun.start(chainWorkflow(), null, { runId: '../x' })).code, 'INVALID_ARGUMENT')
    assertError(
      thrown(() => am.NativeRun.start(chainWorkflow(), { f() {} })),
      'INVALID_ARGUMENT',
      'input is not JSON data: function at $.f is not JSON data',
    )
  })

  test('NativeCompletion.err and timedOut: retried, then the run fails with the core\'s timeout failure', () => {
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({ name: 'r', nodes: [{ id: 'a', type: 'tool', tool: 't', retry: { maxAttempts: 2, backoffMs: 10 }, timeoutMs: 50 }] }),
    )
    const run = am.NativeRun.start(wf)
    let [act] = poll(run)
    assert.equal(act.kind, 'tool')
    assert.equal(act.timeoutMs, 50)
    assert.equal(act.delayMs, 0)
    complete(run, C.err(act, 'HTTPError', '502', true, null, 7))
    ;[act] = poll(run)
    assert.equal(act.attempt, 2)
    assert.equal(act.delayMs, 10)
    const timeout = C.timedOut(act)
    assert.equal(timeout.id, act.id)
    assert.equal(timeout.error, null)
    complete(run, timeout)
    assert.equal(run.status(), 'failed')
    const outcome = run.outcome()
    assert.equal(outcome.status, 'failed')
    assert.equal(outcome.error.code, 'TIMEOUT')
    assert.equal(outcome.error.node, 'a')
    assert.equal(outcome.output, undefined)
    const text = run.canonical().toString()
    assert.ok(text.includes('"error":{"kind":"error","type":"HTTPError","message":"502","retryable":true}'), text)
    // The one timeout failure every host records, written by the core.
    assert.ok(text.includes('"error":{"kind":"timeout","type":"Timeout","message":"no result within 50 ms","retryable":true}'), text)
    const late = run.completeAll([C.err(act, 'E', 'm', true)])
    assert.equal(late.length, 1)
    assert.equal(late[0].code, 'INVALID_COMPLETION')
  })

  test('completeAll: one commit for many; null when all were recorded as given; each completion once', () => {
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({ name: 'w', nodes: ['a', 'b', 'c'].map((id) => ({ id, type: 'agent', agent: 'x' })) }),
    )
    const dir = tmpdir()
    const run = am.NativeRun.start(wf, null, { logDir: dir, runId: 'w', fsync: 'always' })
    const acts = poll(run)
    assert.equal(acts.length, 3)
    const completions = acts.map((a) => C.ok(a, a.node))
    const bytes = fs.statSync(run.logPath()).size
    assert.equal(run.completeAll(completions.slice().reverse()), null)
    assert.ok(fs.statSync(run.logPath()).size > bytes)
    assert.equal(run.status(), 'completed')
    assert.deepEqual(run.outcome().output, { a: 'a', b: 'b', c: 'c' })
    assertError(thrown(() => run.completeAll([completions[0]])), 'INVALID_ARGUMENT', 'this completion was recorded already')
    assert.deepEqual(run.completeAll([]), null)
  })

  test('completion ids: another run\'s activation, twice; durationUs must be a safe integer', () => {
    const { run, act } = oneAgent()
    const other = oneAgent({ runId: 'other' })
    const twin = C.ok(act, 2)
    assertError(thrown(() => C.ok(act, 1, null, -1)), 'INVALID_ARGUMENT', 'durationUs must be an integer from 0 to 2^53-1, not -1')
    assertError(thrown(() => C.err(act, 'E', 'm', true, null, 1.5)), 'INVALID_ARGUMENT', 'durationUs must be an integer from 0 to 2^53-1, not 1.5')
    completeOk(run, act, 1)
    const notes = run.completeAll([twin])
    assert.equal(notes[0].code, 'INVALID_COMPLETION')
    assert.equal(run.outcome().output.a, 1)
    // The id is what counts: the other run's activation 3 is this run's activation 3.
    assert.equal(other.act.id, act.id)
    completeOk(other.run, act, 'x')
    assert.equal(other.run.outcome().output.a, 'x')
  })

  test('NativeCompletion.okJson records the text as the core parses it', () => {
    const { run, act } = oneAgent()
    completeOk(run, act, 1, { outputTokens: 2 }) // the usage shape, then the exact text
    const exact = oneAgent()
    complete(exact.run, C.okJson(exact.act, '{"b": 18446744073709551615, "a": 1.0, "c": -0}', { outputTokens: 2 }))
    const line = exact.run.canonical().toString().split('\n')[4]
    assert.match(line, /"data":\{"output":\{"a":1\.0,"b":18446744073709551615,"c":-0\.0\},"usage":\{"inputTokens":0,"outputTokens":2\}\}/)
    const other = oneAgent()
    const bad = C.okJson(other.act, '{"a": ')
    assertError(bad.error, 'INVALID_OUTPUT', "node 'a': output is not valid JSON: EOF while parsing a value at line 1 column 6", { node: 'a' })
    assertError(thrown(() => complete(other.run, bad)), 'INVALID_OUTPUT', "node 'a': output is not valid JSON: EOF while parsing a value at line 1 column 6", { node: 'a' })
    assert.ok(other.run.canonical().toString().includes('"type":"InvalidOutput","message":"node \'a\': output is not valid JSON'))
  })

  test('usage goes through the core\'s strict parser: not {inputTokens, outputTokens} is INVALID_OUTPUT', () => {
    const { act } = oneAgent()
    const strict = 'usage must be {"inputTokens": int, "outputTokens": int} (or the usage of an OpenAI or Anthropic response): '
    for (const [usage, why] of [
      [{ inputTokens: 'x' }, 'invalid type: string "x", expected u64'],
      [{ tokens: 1 }, 'unknown field `tokens`, expected one of `inputTokens`, `outputTokens`, `cachedInputTokens`, `cacheWriteTokens`, `reasoningTokens`, `model`'],
      [[1, 2], 'invalid type: sequence, expected an object with inputTokens and outputTokens'],
      [{ inputTokens: 1.5 }, 'invalid type: floating point `1.5`, expected u64'],
      [{ inputTokens: -1 }, 'invalid value: integer `-1`, expected u64'],
    ]) {
      const e = C.ok(act, 1, usage).error
      assertError(e, 'INVALID_OUTPUT', `node 'a': ${strict}${why}`, { node: 'a' })
      assertError(C.err(act, 'E', 'm', true, usage).error, 'INVALID_OUTPUT', `node 'a': ${strict}${why}`, { node: 'a' })
    }
    assertError(C.ok(act, 1, { inputTokens: NaN }).error, 'INVALID_OUTPUT', "node 'a': usage is not JSON data: NaN at $.inputTokens is not a JSON number", { node: 'a' })
    for (const none of [null, undefined]) assert.equal(C.ok(act, 1, none).error, null)
  })

  test('usage on a failure is recorded with it (a failed paid attempt still spent tokens)', () => {
    const { run, act } = oneAgent()
    complete(run, C.err(act, 'RateLimited', 'slow down', false, { inputTokens: 5, outputTokens: 1 }, 9))
    assert.ok(
      run.canonical().toString().includes('"data":{"error":{"kind":"error","type":"RateLimited","message":"slow down","retryable":false},"usage":{"inputTokens":5,"outputTokens":1}}'),
    )
  })

  test('human activations carry the prompt; the run waits; resume from the file completes it', () => {
    const dir = tmpdir()
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({ name: 'h', nodes: [{ id: 'ok', type: 'human', prompt: 'Ship it?' }, { id: 'go', type: 'agent', agent: 'g', after: ['ok'] }] }),
    )
    const run = am.NativeRun.start(wf, null, { logDir: dir, runId: 'h' })
    const [act] = poll(run)
    assert.equal(act.kind, 'human')
    assert.equal(act.name, 'ok')
    assert.equal(act.prompt, 'Ship it?')
    assert.equal(run.status(), 'waiting')
    // The log is locked while the run is open.
    assert.equal(thrown(() => am.NativeRun.resume(run.logPath())).code, 'IO')
    // The run id and the approvals are checked by the core before anything is written.
    const before = fs.readFileSync(run.logPath())
    run.close()
    run.close() // idempotent
    assertError(thrown(() => run.status()), 'INVALID_ARGUMENT', 'the run is closed (its log was released)')
    const log = path.join(dir, 'h.jsonl')
    assertError(thrown(() => am.NativeRun.resume(log, { runId: 'other' })), 'INVALID_ARGUMENT', `${log} holds run 'h', not 'other'`)
    assertError(
      thrown(() => am.NativeRun.resume(log, { runId: 'h' }, { ok: true, go: 1 })),
      'INVALID_ARGUMENT',
      "node 'go' has no pending human activation (waiting: ok)",
    )
    assertError(thrown(() => am.NativeRun.resume(log, {}, { ok: () => 1 })), 'INVALID_ARGUMENT', 'approvals is not JSON data: function at $.ok is not JSON data')
    assertError(thrown(() => am.NativeRun.resume(log, {}, [1])), 'INVALID_ARGUMENT', 'approvals must map node id → decision, not [1]')
    assertError(
      thrown(() => am.NativeRun.resume(log, { approvalsJson: { ok: '{' } })),
      'INVALID_ARGUMENT',
      "the approval of 'ok' is not valid JSON: EOF while parsing an object at line 1 column 1",
    )
    assert.ok(fs.readFileSync(log).equals(before))
    const again = am.NativeRun.resume(log, { fsync: 'batch' })
    // A resumed run hands its outstanding activations out again.
    const [waiting] = poll(again)
    assert.deepEqual(fields(waiting), fields(act))
    assert.deepEqual(outstanding(again).map(fields), [fields(act)])
    again.close()
    // Approvals given to resume are recorded by it (JSON text exactly).
    const approved = am.NativeRun.resume(log, { runId: 'h', approvalsJson: { ok: '{"approved": true, "score": 1.0}' } })
    assert.deepEqual(outstanding(approved).map((a) => a.node), ['go'])
    const [next] = poll(approved)
    assert.deepEqual(next.deps, { ok: { approved: true, score: 1 } })
    assert.ok(approved.canonical().toString().includes('"output":{"approved":true,"score":1.0}'))
    completeOk(approved, next, 'shipped')
    const again2 = approved
    assert.deepEqual(again2.outcome(), { status: 'completed', output: { go: 'shipped' } })
  })

  test('cancel records the reason and returns false once finished', () => {
    const { run } = oneAgent()
    assert.equal(run.cancel('stop'), true)
    assert.equal(run.status(), 'cancelled')
    assert.deepEqual(run.outcome(), { status: 'cancelled', error: { code: 'CANCELLED', message: 'stop' } })
    assert.equal(run.cancel('again'), false)
    assert.match(run.canonical().toString(), /"type":"activationCancelled".*"reason":"stop"/)
  })

  test('a node id "__proto__" is an own key of deps, not the prototype', () => {
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({ name: 'p', nodes: [{ id: '__proto__', type: 'agent', agent: 'a' }, { id: 'b', type: 'agent', agent: 'b', after: ['__proto__'] }] }),
    )
    const run = am.NativeRun.start(wf)
    completeOk(run, poll(run)[0], { polluted: true })
    const [b] = poll(run)
    assert.deepEqual(Object.keys(b.deps), ['__proto__'])
    assert.equal(Object.getPrototypeOf(b.deps), Object.prototype)
    assert.equal(b.deps.polluted, undefined)
    assert.deepEqual(Object.getOwnPropertyDescriptor(b.deps, '__proto__').value, { polluted: true })
  })

  test('fork from a step end with an override; bad overrides are INVALID_ARGUMENT', () => {
    const dir = tmpdir()
    const run = am.NativeRun.start(chainWorkflow(), { topic: 'rust' }, { seed: 1, logDir: dir })
    for (let acts = poll(run); acts.length; acts = poll(run)) acts.forEach((a) => completeOk(run, a, `out ${a.node}`))
    const log = run.logPath()
    run.close()
    // seq 4 completes step 1 (plan): a fork point.
    const state = am.stateAt(log, 4)
    assert.equal(state.forkPoint, true)
    const fork = am.NativeRun.fork(log, 4, { plan: 'changed plan' }, 'fork1', dir, 'never')
    assert.equal(fork.runId(), 'fork1')
    const [write] = poll(fork)
    assert.deepEqual(write.deps, { plan: 'changed plan' })
    assert.deepEqual(am.readHeader(fork.logPath()).parent, { runId: 'run-0c075115801b8feb', seq: 4 })
    assertError(thrown(() => am.NativeRun.fork(log, 4, [1], 'fork2', dir)), 'INVALID_ARGUMENT', 'overrides must map node id → output, not [1]')
    assertError(
      thrown(() => am.NativeRun.fork(log, 4, { plan: Symbol('s') }, 'fork3', dir)),
      'INVALID_ARGUMENT',
      'overrides is not JSON data: symbol at $.plan is not JSON data',
    )
    assert.equal(thrown(() => am.NativeRun.fork(log, 3, null, 'fork4', dir)).code, 'INVALID_ARGUMENT')
  })
})

describe('JSON data from JavaScript', () => {
  const cases = [
    [undefined, 'undefined at $ is not JSON data'],
    [{ a: [1, 2, () => 1] }, 'function at $.a[2] is not JSON data'],
    [{ s: Symbol('x') }, 'symbol at $.s is not JSON data'],
    [{ n: 10n }, 'BigInt at $.n is not JSON data (use a number or a string)'],
    [[NaN], 'NaN at $[0] is not a JSON number'],
    [{ x: { y: Infinity } }, 'Infinity at $.x.y is not a JSON number'],
    [[-Infinity], '-Infinity at $[0] is not a JSON number'],
    [[1, undefined], 'undefined at $[1] is not JSON data'],
    // eslint-disable-next-line no-sparse-arrays
    [[1, , 3], 'hole at $[1] is not JSON data (a sparse array)'],
    [{ m: new Map() }, 'Map at $.m is not JSON data (only plain objects and arrays are)'],
    [[new Set([1])], 'Set at $[0] is not JSON data (only plain objects and arrays are)'],
    [{ when: new Date(0) }, 'Date at $.when is not JSON data (only plain objects and arrays are)'],
    [new (class Point {})(), 'Point at $ is not JSON data (only plain objects and arrays are)'],
    [{ bytes: new Uint8Array(2) }, 'Uint8Array at $.bytes is not JSON data (only plain objects and arrays are)'],
    [{ boxed: new Number(1) }, 'Number at $.boxed is not JSON data (only plain objects and arrays are)'],
    [{ 'a key': { 'é': [null, /re/] } }, 'RegExp at $["a key"]["é"][1] is not JSON data (only plain objects and arrays are)'],
    [vm.runInNewContext('({a: 1})'), 'Object at $ is not JSON data (only plain objects and arrays are)'],
    [{ s: 'ok \ud800' }, 'string at $.s contains a lone surrogate (not valid Unicode)'],
    [{ ['\udc00']: 1 }, 'key at $ contains a lone surrogate (not valid Unicode)'],
  ]
  for (const [value, why] of cases) {
    test(`refuses: ${why}`, () => {
      const { run, act } = oneAgent()
      const before = run.canonical()
      const refused = C.ok(act, value)
      assertError(refused.error, 'INVALID_OUTPUT', `node 'a': output is not JSON data: ${why}`, { node: 'a' })
      // Converting changed nothing: the same activation still completes.
      assert.ok(run.canonical().equals(before))
      assert.deepEqual(outstanding(run).map((a) => a.id), [act.id])
      // Recorded, it is the permanent InvalidOutput failure with that message.
      assertError(thrown(() => complete(run, refused)), 'INVALID_OUTPUT', `node 'a': output is not JSON data: ${why}`, { node: 'a' })
      assert.equal(run.status(), 'failed')
      assert.ok(run.canonical().toString().includes('"type":"InvalidOutput","message":"node \'a\': output is not JSON data: '))
    })
  }

  test('a cycle is reported where the value refers back to itself', () => {
    const a = { list: [1] }
    a.list.push({ back: a })
    const { act } = oneAgent()
    assertError(
      C.ok(act, a).error,
      'INVALID_OUTPUT',
      "node 'a': output is not JSON data: cyclic reference at $.list[1].back (a value that contains itself is not JSON data)",
      { node: 'a' },
    )
  })

  test('nesting: 100 arrays/objects (the core limit) are accepted, 101 are refused', () => {
    const nest = (n) => {
      let v = 1
      for (let i = 0; i < n; i++) v = [v]
      return v
    }
    const { run, act } = oneAgent()
    assertError(
      C.ok(act, nest(101)).error,
      'INVALID_OUTPUT',
      `node 'a': output is not JSON data: nesting deeper than 100 arrays/objects at $${'[0]'.repeat(100)}`,
      { node: 'a' },
    )
    completeOk(run, act, nest(100))
    assert.equal(run.status(), 'completed')
  })

  test('a throwing getter: its exception reaches the caller unchanged and nothing is recorded', () => {
    const { run, act } = oneAgent()
    const boom = new RangeError('from a getter')
    const value = {
      get bad() {
        throw boom
      },
    }
    assert.equal(thrown(() => C.ok(act, value)), boom)
    assert.equal(thrown(() => C.ok(act, 1, value)), boom)
    assert.deepEqual(outstanding(run).map((a) => a.id), [act.id])
    // The driver records such a result as unreadable: the InvalidOutput failure naming the node.
    const unreadable = C.unreadable(act, 'output could not be read: RangeError: from a getter', 5)
    assertError(unreadable.error, 'INVALID_OUTPUT', "node 'a': output could not be read: RangeError: from a getter", { node: 'a' })
    assert.equal(run.completeAll([unreadable])[0].code, 'INVALID_OUTPUT')
    assert.equal(run.status(), 'failed')
  })

  test('the value is converted when the completion is made: later changes are not recorded', () => {
    const { run, act } = oneAgent()
    const value = { n: 1, list: [1] }
    const completion = C.ok(act, value)
    value.n = 2
    value.list.push(2)
    complete(run, completion)
    assert.deepEqual(run.outcome().output, { a: { n: 1, list: [1] } })
  })

  test('a getter calling back into the run while the value is converted: the run is not borrowed', () => {
    const { run, act } = oneAgent()
    let status
    const completion = C.ok(act, {
      get x() {
        status = run.status()
        return 1
      },
    })
    assert.equal(status, 'running')
    complete(run, completion)
    assert.deepEqual(run.outcome().output, { a: { x: 1 } })
  })

  test('accepted: plain objects (also prototype null), undefined properties omitted, symbols and non-enumerables skipped', () => {
    const bare = Object.create(null)
    bare.z = 1
    const hidden = { shown: 1 }
    Object.defineProperty(hidden, 'hidden', { value: 2, enumerable: false })
    assert.equal(
      recorded({ b: undefined, a: [true, false, null, 'x'], bare, hidden, [Symbol('s')]: 1, get computed() { return 'got' } }),
      '{"a":[true,false,null,"x"],"bare":{"z":1},"computed":"got","hidden":{"shown":1}}',
    )
    assert.equal(recorded(JSON.parse('{"__proto__": {"x": 1}}')), '{"__proto__":{"x":1}}')
    assert.equal(recorded('plain string'), '"plain string"')
    assert.equal(recorded(null), 'null')
    assert.equal(recorded('e\u0301 🚀 "q" \\ \n'), '"e\u0301 🚀 \\"q\\" \\\\ \\n"')
  })

  test('numbers: safe integers are integers, every other number a double', () => {
    for (const [n, text] of [
      [0, '0'],
      [-0, '0'],
      [1.0, '1'],
      [-7, '-7'],
      [Number.MAX_SAFE_INTEGER, '9007199254740991'],
      [-Number.MAX_SAFE_INTEGER, '-9007199254740991'],
      [0.1, '0.1'],
      [-123.456, '-123.456'],
      [1.5e-7, '1.5e-7'],
      [Number.MIN_VALUE, '5e-324'],
      [2 ** 53, '9007199254740992.0'],
      [-(2 ** 63), '-9.223372036854776e+18'],
      [2 ** 64, '1.8446744073709552e+19'],
      [1e21, '1e+21'],
      [1e300, '1e+300'],
    ]) {
      assert.equal(recorded([n]), `[${text}]`, `${n}`)
      if (Number.isSafeInteger(n) || !Number.isInteger(n)) {
        // The same as handing the core JSON.stringify's text.
        const { run, act } = oneAgent()
        complete(run, C.okJson(act, JSON.stringify([n])))
        assert.ok(run.canonical().toString().includes(`"output":[${text}]`), `${n} as text`)
      }
    }
  })

  test('large values cross both ways intact (the handle scopes are renewed as they go)', () => {
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({ name: 'd', nodes: [{ id: 'a', type: 'agent', agent: 'a' }, { id: 'b', type: 'agent', agent: 'b', after: ['a'] }] }),
    )
    const run = am.NativeRun.start(wf)
    const big = {
      rows: Array.from({ length: 20000 }, (_, i) => ({ i, s: `row ${i}`, t: [i, { u: i % 7 === 0 }] })),
      wide: Object.fromEntries(Array.from({ length: 10000 }, (_, i) => [`k${i}`, i])),
    }
    completeOk(run, poll(run)[0], big)
    const [b] = poll(run)
    assert.deepEqual(b.deps.a, big)
  })

  test('output values come back as JSON.parse gives them (deps)', () => {
    const wf = am.NativeWorkflow.fromJson(
      JSON.stringify({ name: 'd', nodes: [{ id: 'a', type: 'agent', agent: 'a' }, { id: 'b', type: 'agent', agent: 'b', after: ['a'] }] }),
    )
    const run = am.NativeRun.start(wf, { big: 1 })
    const text = '{"n":[1,1.5,-0.0,18446744073709551615,-9223372036854775808],"s":"é\\u0000","o":{"":null,"k":[{}, []]}}'
    complete(run, C.okJson(poll(run)[0], text))
    const [b] = poll(run)
    assert.deepEqual(b.deps.a, JSON.parse(text))
    assert.ok(Object.is(b.deps.a.n[2], -0))
    assert.deepEqual(b.input, { big: 1 })
  })
})

describe('log functions', () => {
  /** A finished chain run in a file; returns its log path. */
  function chainLog(dir = tmpdir()) {
    const run = am.NativeRun.start(chainWorkflow(), { topic: 'rust' }, { seed: 1, logDir: dir, fsync: 'never' })
    for (let acts = poll(run); acts.length; acts = poll(run)) acts.forEach((a) => completeOk(run, a, { node: a.node }))
    const log = run.logPath()
    run.close()
    return log
  }

  test('verifyLog reports the run; a torn tail is cut and copied aside', () => {
    const log = chainLog()
    const size = fs.statSync(log).size
    const intact = am.verifyLog(log)
    assert.deepEqual(intact, {
      runId: 'run-0c075115801b8feb',
      workflow: 'chain',
      version: 6,
      events: 11,
      lastSeq: 11,
      holes: [],
      finished: 'runCompleted',
      bytes: size,
      tornAt: null,
      repaired: null,
    })
    fs.appendFileSync(log, '{"seq":12,"ty')
    const report = am.verifyLog(log)
    assert.deepEqual(report.repaired, { offset: size, bytes: 13, brokenPath: `${log}.broken`, newlineRestored: false })
    assert.equal(report.bytes, size)
    assert.equal(fs.readFileSync(`${log}.broken`, 'utf-8'), '{"seq":12,"ty')
    assert.equal(fs.statSync(log).size, size)
  })

  test('damage before the tail is LOG_CORRUPT with the offset', () => {
    const log = chainLog()
    const text = fs.readFileSync(log, 'utf-8')
    const offset = text.indexOf('\n') + 1 // the second line (seq 1)
    fs.writeFileSync(log, text.slice(0, offset + 5) + 'X' + text.slice(offset + 6))
    for (const fn of [am.verifyLog, am.canonicalLog, am.readLog, am.fingerprint, (p) => am.replay(p), (p) => am.stateAt(p, 1)]) {
      const e = thrown(() => fn(log))
      assert.equal(e.code, 'LOG_CORRUPT')
      assert.deepEqual(e.details, { offset })
      assert.ok(e.message.startsWith(`[LOG_CORRUPT] at byte ${offset}: `), e.message)
    }
  })

  test('missing files are IO errors', () => {
    for (const fn of [am.verifyLog, am.canonicalLog, am.readHeader, am.readLog, am.fingerprint, am.replay, am.recordedWorkflow, (p) => am.stateAt(p, 1)]) {
      const e = thrown(() => fn('/nonexistent/agentmesh.jsonl'))
      assert.equal(e.code, 'IO')
      assert.deepEqual(e.details, {})
    }
  })

  test('readHeader and readLog: typed header, canonical events, runStarted seed as bigint', () => {
    const log = chainLog()
    const header = am.readHeader(log)
    assert.equal(typeof header.meta.at, 'number')
    delete header.meta
    assert.deepEqual(header, {
      format: 'agentmesh-log',
      version: 6,
      flags: [],
      runId: 'run-0c075115801b8feb',
      workflow: { name: 'chain', hash: chainWorkflow().hash },
      seed: 1n,
    })
    const { header: h2, events } = am.readLog(log)
    assert.equal(h2.runId, header.runId)
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert.deepEqual(events[0].data.seed, 1n)
    assert.deepEqual(events[0].data.input, { topic: 'rust' })
    assert.deepEqual(events[3], {
      seq: 4,
      type: 'agentCompleted',
      runId: 'run-0c075115801b8feb',
      traceId: '7e3218de01be89b2a79a8ce9dabb8d8e',
      parentSeq: 3,
      node: 'plan',
      attempt: 1,
      data: { output: { node: 'plan' } },
    })
    assert.deepEqual(events[1], {
      seq: 2,
      type: 'stepStarted',
      runId: 'run-0c075115801b8feb',
      traceId: '7e3218de01be89b2a79a8ce9dabb8d8e',
      parentSeq: 1,
      data: { step: 1, activations: 1 },
    })
    // Each event is its canonical line (bigint seed aside).
    const lines = am.canonicalLog(log).toString().trimEnd().split('\n').slice(1)
    events.forEach((e, i) => {
      const line = JSON.parse(lines[i])
      if (e.type === 'runStarted') line.data.seed = BigInt(line.data.seed)
      assert.deepEqual(e, line)
    })
  })

  test('fingerprint, replay, recordedWorkflow, stateAt', () => {
    const log = chainLog()
    assert.match(am.fingerprint(log), /^[0-9a-f]{64}$/)
    assert.deepEqual(am.replay(log), {
      runId: 'run-0c075115801b8feb',
      events: 11,
      workflowChanged: false,
      outcome: { status: 'completed', output: { edit: { node: 'edit' } } },
    })
    assert.equal(am.replay(log, chainWorkflow()).workflowChanged, false)
    assert.equal(am.recordedWorkflow(log).hash, chainWorkflow().hash)
    const state = am.stateAt(log, 6)
    assert.equal(state.pending.length, 1)
    assert.equal(typeof state.pending[0].seed, 'bigint')
    assert.deepEqual({ ...state, pending: state.pending.map((a) => a.node) }, {
      seq: 6,
      status: 'running',
      step: 2,
      completed: { plan: { node: 'plan' } },
      skipped: [],
      failed: [],
      visits: { plan: 1, write: 1 },
      pending: ['write'],
      forkPoint: false,
    })
    assertError(thrown(() => am.stateAt(log, 1.5)), 'INVALID_ARGUMENT', 'seq must be an integer from 0 to 2^53-1, not 1.5')
    assert.equal(thrown(() => am.stateAt(log, 99)).code, 'INVALID_ARGUMENT')
  })

  test('replay against a changed workflow is NONDETERMINISM with the details', () => {
    const log = chainLog()
    const changed = am.NativeWorkflow.fromJson(JSON.stringify({ ...CHAIN, nodes: [CHAIN.nodes[0], { ...CHAIN.nodes[1], agent: 'other' }, CHAIN.nodes[2]] }))
    const e = thrown(() => am.replay(log, changed))
    assert.equal(e.code, 'NONDETERMINISM')
    assert.deepEqual(e.details, { seq: 6, node: 'write', field: 'data.agent', expected: '"writer"', actual: '"other"' })
    assert.ok(e.message.startsWith('[NONDETERMINISM] '))
  })

  test('normalizeJson writes what the core records', () => {
    assert.equal(am.normalizeJson('{"b": 1E3, "a": -0, "c": 18446744073709551616}'), '{"a":-0.0,"b":1000.0,"c":1.8446744073709552e+19}')
    assert.equal(thrown(() => am.normalizeJson('{')).code, 'INVALID_ARGUMENT')
  })

  test('async forms resolve to what the sync forms return, off the JS thread', async () => {
    const log = chainLog()
    const pending = am.verifyLogAsync(log)
    assert.ok(pending instanceof Promise)
    assert.deepEqual(await pending, am.verifyLog(log))
    assert.ok((await am.canonicalLogAsync(log)).equals(am.canonicalLog(log)))
    assert.deepEqual(await am.checkLogAsync(log), am.checkLog(log))
    assert.deepEqual(await am.anchorAsync(log, 'key material'), am.anchor(log, 'key material'))
    assert.equal(await am.fingerprintAsync(log), am.fingerprint(log))
    assert.deepEqual(await am.replayAsync(log), am.replay(log))
    assert.deepEqual(await am.replayAsync(log, chainWorkflow()), am.replay(log, chainWorkflow()))
    assert.deepEqual(await am.stateAtAsync(log, 4), am.stateAt(log, 4))
    // Many at once: each resolves with its own result.
    const results = await Promise.all(Array.from({ length: 16 }, () => am.fingerprintAsync(log)))
    assert.deepEqual(new Set(results), new Set([am.fingerprint(log)]))
  })

  test('async forms reject with the same coded errors', async () => {
    const missing = '/nonexistent/agentmesh.jsonl'
    const calls = [am.verifyLogAsync, am.checkLogAsync, am.anchorAsync, am.canonicalLogAsync, am.fingerprintAsync, am.replayAsync, (p) => am.stateAtAsync(p, 1)]
    for (const call of calls) {
      await assert.rejects(call(missing), (e) => e instanceof Error && e.code === 'IO' && e.message.startsWith('[IO] opening /nonexistent/agentmesh.jsonl'))
    }
    const log = chainLog()
    const changed = am.NativeWorkflow.fromJson(JSON.stringify({ ...CHAIN, nodes: [CHAIN.nodes[0], { ...CHAIN.nodes[1], agent: 'other' }, CHAIN.nodes[2]] }))
    await assert.rejects(am.replayAsync(log, changed), (e) => {
      assert.equal(e.code, 'NONDETERMINISM')
      assert.deepEqual(e.details, { seq: 6, node: 'write', field: 'data.agent', expected: '"writer"', actual: '"other"' })
      return true
    })
    await assert.rejects(am.stateAtAsync(log, -1), (e) => {
      assertError(e, 'INVALID_ARGUMENT', 'seq must be an integer from 0 to 2^53-1, not -1')
      return true
    })
  })
})

describe('panics', () => {
  test('a panic is an INTERNAL error, sync and async, and the process lives on', async () => {
    process.env.RUST_BACKTRACE = '0' // the panic hook still prints one line to stderr
    assertError(thrown(() => am.__panicForTests('boom')), 'INTERNAL', 'panic inside agentmesh: boom')
    await assert.rejects(am.__panicForTestsAsync('boom2'), (e) => {
      assertError(e, 'INTERNAL', 'panic inside agentmesh: boom2')
      return true
    })
    assert.equal(am.errorCodes().length, 20)
  })
})

// ---------------------------------------------------------------------------------------------
// The conformance vectors, driven by hand through poll/complete (no driver, no real time): each
// step's activations are completed in poll order and again in reverse order; both must give
// expected.jsonl byte for byte. This follows the runner procedure of bindings-tests/README.md
// with the script's timing turned into its outcome (a delay past `timeoutMs` is a timeout).
// A behaviour's calls are made through `run.calls()` as the Rust reference makes them (a call
// a budget refuses stops the calls: `refusedOutput`, or a failure). `unicode_and_numbers`
// needs the script's values as exact JSON text, which JSON.parse loses: the TypeScript runner
// covers it.
describe('conformance vectors by hand', () => {
  // calls_in_activations records `temperature: 0.0`, which JSON.parse turns into 0.
  const skip = new Set(['unicode_and_numbers', 'calls_in_activations'])
  const names = fs.readdirSync(vectors).filter((n) => fs.existsSync(path.join(vectors, n, 'expected.jsonl'))).sort()

  function behaviour(script, act) {
    const candidates = [...(script.agents?.[act.node] ?? []), ...(script.agents?.[act.name] ?? [])]
    return candidates.find(
      (b) =>
        (b.visit === undefined || b.visit === act.visit) &&
        (b.attempt === undefined || b.attempt === act.attempt) &&
        (b.item === undefined || (act.item !== undefined && b.item === act.item.index)),
    )
  }

  /** The default output of an unscripted activation (a map item's names its index). */
  function fallbackOf(act) {
    const out = { node: act.node, visit: act.visit, attempt: act.attempt }
    if (act.item !== undefined) out.item = act.item.index
    return out
  }

  /** Start `list` (scripted calls) in one batch; complete the live ones in `order`. */
  function startCalls(calls, act, list, order) {
    const tickets = calls.start(
      act.id,
      list.map((c) => c.kind),
      list.map((c) => c.name),
      list.map((c) => c.request ?? null),
      list.map(() => false),
      list.map((c) => c.ask ?? null),
    )
    for (const i of order(tickets.map((_, i) => i))) {
      const c = list[i]
      if (tickets[i].live) calls.complete(act.id, tickets[i].call, c.error ? undefined : c.response ?? null, undefined, c.usage, c.error, undefined)
    }
  }

  /** A behaviour's calls; `null`, or the BUDGET_EXCEEDED / POLICY_DENIED error that stopped them. */
  function makeCalls(run, act, b) {
    if (!b.calls) return null
    const calls = run.calls()
    try {
      if (b.callsBatch) startCalls(calls, act, b.calls, (ix) => ix.reverse())
      else for (const c of b.calls) startCalls(calls, act, [c], (ix) => ix)
    } catch (e) {
      if (e.code !== 'BUDGET_EXCEEDED' && e.code !== 'POLICY_DENIED') throw e
      return e
    }
    return null
  }

  /** The completion of `act` by the script, or null when the script cancels the run. */
  function perform(run, script, act) {
    const b = behaviour(script, act)
    const fallback = fallbackOf(act)
    if (!b) return C.ok(act, fallback)
    if (act.timeoutMs !== undefined && (b.delayMs ?? 0) > act.timeoutMs) return C.timedOut(act)
    if (b.cancel) return null
    const refused = makeCalls(run, act, b)
    if (refused !== null) {
      // The core records the failure as BudgetExceededError whatever it is named here.
      return b.refusedOutput === undefined ? C.err(act, 'ScriptCallRefused', refused.message, true) : C.ok(act, b.refusedOutput)
    }
    if (b.error) return C.err(act, b.error.type, b.error.message, b.error.retryable ?? true, b.usage)
    return C.ok(act, b.output === undefined ? fallback : b.output, b.usage)
  }

  /** Poll order: one completion per commit; reverse order: each step's results in one commit. */
  function drive(run, script, reverse) {
    for (;;) {
      const acts = poll(run).filter((a) => a.kind !== 'human')
      if (acts.length === 0) return
      if (reverse) acts.reverse()
      const batch = []
      for (const act of acts) {
        const completion = perform(run, script, act)
        if (completion === null) {
          if (batch.length > 0) assert.equal(run.completeAll(batch), null)
          run.cancel('cancelled by script')
          return
        }
        if (reverse) batch.push(completion)
        else complete(run, completion)
      }
      if (batch.length > 0) assert.equal(run.completeAll(batch), null)
    }
  }

  for (const name of names) {
    test(name, { skip: skip.has(name) && 'needs exact JSON text (TypeScript runner)' }, () => {
      const dir = path.join(vectors, name)
      const script = JSON.parse(fs.readFileSync(path.join(dir, 'script.json'), 'utf-8'))
      const expected = fs.readFileSync(path.join(dir, 'expected.jsonl'))
      const wf = am.NativeWorkflow.fromFile(path.join(dir, 'workflow.json'))
      for (const reverse of [false, true]) {
        const logDir = tmpdir()
        const prices = script.prices === undefined ? undefined : am.NativePriceTable.fromValue(script.prices)
        const policy = script.policy === undefined ? undefined : am.NativePolicy.fromValue(script.policy)
        const budgetJson = script.budget === undefined ? undefined : JSON.stringify(script.budget)
        let run = am.NativeRun.start(wf, script.input ?? null, { seed: script.seed ?? 0, runId: script.runId, logDir, fsync: 'never', budgetJson }, prices, policy)
        drive(run, script, reverse)
        let retried = 0
        for (;;) {
          const status = run.status()
          const log = run.logPath()
          if (status === 'waiting') {
            const answers = outstanding(run).filter((a) => a.kind === 'human' && script.approvals?.[a.node] !== undefined)
            if (answers.length === 0) break
            run.close()
            const approvals = Object.fromEntries(answers.map((a) => [a.node, script.approvals[a.node]]))
            run = am.NativeRun.resume(log, { fsync: 'never' }, approvals, prices, policy)
          } else if ((status === 'failed' || status === 'cancelled') && retried < (script.retries ?? 0)) {
            run.close()
            run = am.NativeRun.retry(log, { fsync: 'never' }, prices, policy)
            retried++
          } else {
            break
          }
          drive(run, script, reverse)
        }
        assert.equal(retried, script.retries ?? 0)
        const log = run.logPath()
        const outcome = run.outcome()
        run.close()
        const actual = am.canonicalLog(log)
        assert.equal(actual.toString(), expected.toString(), `${name} (${reverse ? 'reverse' : 'poll'} order)`)
        const report = am.verifyLog(log)
        assert.equal(report.repaired, null)
        assert.equal(report.events, expected.toString().trimEnd().split('\n').length - 1)
        assert.deepEqual(am.replay(log).outcome, outcome)
      }
    })
  }
})
