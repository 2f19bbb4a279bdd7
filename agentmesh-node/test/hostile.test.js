'use strict'
// Hostile input to the Node binding's driver: every case ends in a typed error that names the
// node (or a recorded outcome), never a crash, a hang or a lost event. Mirrors
// agentmesh-py/tests/test_hostile.py.
//
// Process-level properties (a run that must not keep the process alive, values whose handling
// could leave an unhandled rejection) are checked in a child `node` process, so a regression
// shows up as a failed assertion here, not as a stuck or crashed test runner.

const { test, describe, after } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const {
  Mesh,
  Workflow,
  Output,
  RawJson,
  RunResult,
  AgentFailedError,
  InvalidArgumentError,
  InvalidOutputError,
  LogCorruptError,
  RunExistsError,
} = am

const PACKAGE = path.resolve(__dirname, '..')

// helpers ---------------------------------------------------------------------------------

const tmpdir = tempDirs('hostile')

const events = (p) => am.readLogSync(p)
const types = (p) => am.readLogSync(p).map((e) => e.type)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Arrays nested `n` deep: nested(1) is `[]`, nested(101) is 101 arrays. */
function nested(n) {
  let v = []
  for (let i = 1; i < n; i++) v = [v]
  return v
}

/** `unit` repeated to exactly `length` UTF-16 units. */
function repeat(unit, length) {
  return unit.repeat(Math.ceil(length / unit.length)).slice(0, length)
}

/** Collects unhandled rejections while `fn` runs (and a few turns of the loop after it). */
async function withoutUnhandledRejections(fn) {
  const seen = []
  const onUnhandled = (reason) => seen.push(reason)
  process.on('unhandledRejection', onUnhandled)
  try {
    const value = await fn()
    await sleep(20)
    await new Promise((resolve) => setImmediate(resolve))
    return value
  } finally {
    process.off('unhandledRejection', onUnhandled)
    assert.deepEqual(seen, [], 'unhandled rejections')
  }
}

/**
 * Run `body` (an async function body using `am`, `dir`, `wf`, `report(value)`) in a child node
 * process; returns what it reported, its exit status and whether it had to be killed.
 */
function inChild(body, limitMs = 10000) {
  const dir = tmpdir()
  const script = `
'use strict'
const am = require(${JSON.stringify(PACKAGE)})
const dir = ${JSON.stringify(dir)}
const wf = (nodes) => am.Workflow.fromObject({ name: 't', nodes })
const reports = []
const report = (v) => reports.push(v)
process.on('unhandledRejection', (e) => report({ unhandledRejection: String(e) }))
process.on('exit', () => process.stdout.write(JSON.stringify(reports)))
;(async () => {
${body}
})().catch((e) => report({ escaped: String(e) }))
`
  const started = performance.now()
  const r = childProcess.spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: limitMs })
  return {
    status: r.status,
    killed: r.signal !== null,
    ms: performance.now() - started,
    reports: r.stdout ? JSON.parse(r.stdout) : null,
    stderr: r.stderr,
  }
}

// outputs that are not JSON data ----------------------------------------------------------

class Widget {
  constructor() {
    this.size = 1
  }
}

function cyclic() {
  const v = { a: [1] }
  v.a.push(v)
  return v
}

const BAD_OUTPUTS = {
  function: [() => () => 1, 'function at $ is not JSON data'],
  symbol: [() => Symbol('s'), 'symbol at $ is not JSON data'],
  bigint: [() => ({ n: 10n }), 'BigInt at $.n is not JSON data (use a number or a string)'],
  cyclic: [cyclic, 'cyclic reference at $.a[1] (a value that contains itself is not JSON data)'],
  NaN: [() => NaN, 'NaN at $ is not a JSON number'],
  Infinity: [() => ({ x: [1, -Infinity] }), '-Infinity at $.x[1] is not a JSON number'],
  'undefined in an array': [() => [1, undefined], 'undefined at $[1] is not JSON data'],
  undefined: [() => undefined, 'undefined at $ is not JSON data'],
  Map: [() => new Map([['k', 1]]), 'Map at $ is not JSON data (only plain objects and arrays are)'],
  Date: [() => ({ when: new Date(0) }), 'Date at $.when is not JSON data (only plain objects and arrays are)'],
  'class instance': [() => new Widget(), 'Widget at $ is not JSON data (only plain objects and arrays are)'],
  '101 nested arrays': [() => nested(101), `nesting deeper than 100 arrays/objects at $${'[0]'.repeat(100)}`],
  'lone surrogate': [() => '\ud800', 'string at $ contains a lone surrogate (not valid Unicode)'],
  'RawJson that is not JSON': [() => new RawJson('{"a": '), 'output is not valid JSON: EOF while parsing a value at line 1 column 6'],
  'RawJson out of range': [() => new RawJson('1e400'), 'output is not valid JSON: number out of range'],
}

/** The failed run of an invalid output: the cause names the node, one non-retryable failure. */
function checkInvalidOutput(e, node, why, kind = 'agent') {
  assertError(e, AgentFailedError, 'AGENT_FAILED')
  const cause = e.cause
  assert.ok(cause instanceof InvalidOutputError, `cause: ${cause}`)
  assert.equal(cause.code, 'INVALID_OUTPUT')
  assert.equal(cause.node, node)
  assert.ok(cause.message.startsWith(`[INVALID_OUTPUT] node '${node}': `), cause.message)
  assert.ok(cause.message.includes(why), `${cause.message} lacks ${why}`)
  assert.equal(e.node, node)
  assert.ok(e.result instanceof RunResult)
  assert.equal(e.result.status, 'failed')
  assert.equal(e.result.error.code, 'AGENT_FAILED')
  assert.equal(e.result.error.node, node)
  assert.ok(e.result.error.message.includes('(not retryable): InvalidOutput: '), e.result.error.message)
  const log = events(e.result.logPath)
  const failed = log.filter((ev) => ev.type === `${kind}Failed`)
  assert.equal(failed.length, 1) // not retried, despite the retry policy
  assert.equal(failed[0].node, node)
  assert.deepEqual(failed[0].data.error, {
    kind: 'error',
    type: 'InvalidOutput',
    message: cause.message.slice('[INVALID_OUTPUT] '.length),
    retryable: false,
  })
  assert.equal(log.at(-1).type, 'runFailed')
  const report = am.verifyLogSync(e.result.logPath)
  assert.equal(report.finished, 'runFailed')
  assert.equal(report.events, log.length)
  assert.deepEqual(report.holes, [])
  return log
}

describe('outputs that are not JSON data', () => {
  for (const [name, [make, why]] of Object.entries(BAD_OUTPUTS)) {
    test(`${name}: runSync fails the node with InvalidOutput; the sibling is recorded`, () => {
      const mesh = new Mesh({ logDir: tmpdir() })
      mesh.agent('bad', () => make())
      mesh.agent('good', () => 'fine')
      const w = wf([agentNode('emit', 'bad', { retry: { maxAttempts: 3 } }), agentNode('other', 'good')])
      const e = thrown(() => mesh.runSync(w, { runId: 'bad' }))
      const log = checkInvalidOutput(e, 'emit', why)
      const done = log.filter((ev) => ev.type === 'agentCompleted')
      assert.deepEqual(done.map((ev) => [ev.node, ev.data.output]), [['other', 'fine']])
    })

    test(`${name}: from an async agent under run`, async () => {
      const mesh = new Mesh({ logDir: tmpdir() })
      mesh.agent('bad', async () => {
        await sleep(1)
        return make()
      })
      mesh.agent('good', async () => 'fine')
      const w = wf([agentNode('emit', 'bad', { retry: { maxAttempts: 3 } }), agentNode('other', 'good')])
      checkInvalidOutput(await rejected(mesh.run(w, { runId: 'bad' })), 'emit', why)
    })
  }

  test('100 nested arrays are the limit: accepted as output and input, read back', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('deep', () => nested(100))
    const r = mesh.runSync(wf([agentNode('d', 'deep')]), { input: nested(100), runId: 'deep' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { d: nested(100) })
    assert.deepEqual(events(r.logPath)[0].data.input, nested(100))
    assert.equal(am.replaySync(r.logPath).outcome.status, 'completed')
    const e = thrown(() => mesh.runSync(wf([agentNode('d', 'deep')]), { input: nested(101), runId: 'deeper' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(e.message.includes('nesting deeper than 100 arrays/objects'), e.message)
  })

  test('usage that is not {inputTokens, outputTokens} and a tool output name the node', () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('a', () => new Output(1, { usage: { inputTokens: -1 } }))
    const e = thrown(() => mesh.runSync(wf([agentNode('u', 'a', { retry: { maxAttempts: 2 } })]), { runId: 'usage' }))
    checkInvalidOutput(e, 'u', 'usage must be {"inputTokens": int, "outputTokens": int} (or the usage of an OpenAI or Anthropic response): invalid value: integer `-1`')
    mesh.tool('t', () => ({ k: new Set([1]) }))
    const e2 = thrown(() => mesh.runSync(wf([{ id: 'look', type: 'tool', tool: 't', retry: { maxAttempts: 2 } }]), { runId: 'tool' }))
    checkInvalidOutput(e2, 'look', 'Set at $.k is not JSON data', 'tool')
  })

  test('JS numbers that are not safe integers are recorded as doubles', () => {
    const mesh = new Mesh()
    mesh.agent('a', () => [2 ** 70, -(2 ** 64), 2 ** 53 + 2, 0.1 + 0.2, 1e21, 5e-324, -0, 1.0])
    const r = mesh.runSync(wf([agentNode('n', 'a')]), { runId: 'nums' })
    const line = r.canonical().toString('utf8').split('\n')[4]
    assert.ok(
      line.endsWith('"data":{"output":[1.1805916207174113e+21,-1.8446744073709552e+19,9007199254740994.0,0.30000000000000004,1e+21,5e-324,0,1]}}'),
      line,
    )
  })

  test('an output whose getter throws is a recorded failure, the sibling kept', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('bad', async () => ({
      get x() {
        throw new Error('getter exploded')
      },
    }))
    mesh.agent('good', () => 'fine')
    const e = await rejected(mesh.run(wf([agentNode('emit', 'bad', { retry: { maxAttempts: 2 } }), agentNode('other', 'good')]), { runId: 'getter' }))
    checkInvalidOutput(e, 'emit', 'getter exploded')
  })
})

// thrown values ---------------------------------------------------------------------------

const NON_ERRORS = [
  ["'boom'", 'boom', 'string: boom'],
  ['42', 42, 'number: 42'],
  ['undefined', undefined, 'undefined: undefined'],
  ['{a: 1}', { a: 1 }, 'object: [object Object]'],
  ['null', null, 'object: null'],
]

describe('agents that throw what is not an Error', () => {
  for (const [label, value, message] of NON_ERRORS) {
    for (const mode of ['runSync', 'run']) {
      test(`throw ${label} (${mode}): recorded as NonErrorThrown, the value is the cause`, async () => {
        const mesh = new Mesh({ logDir: tmpdir() })
        const attempts = []
        mesh.agent('thrower', mode === 'runSync'
          ? (act) => {
              attempts.push(act.attempt)
              throw value
            }
          : async (act) => {
              attempts.push(act.attempt)
              await sleep(0)
              throw value
            })
        const w = wf([agentNode('x', 'thrower', { retry: { maxAttempts: 2 } })])
        const e = mode === 'runSync' ? thrown(() => mesh.runSync(w, { runId: 'nonerr' })) : await rejected(mesh.run(w, { runId: 'nonerr' }))
        assertError(e, AgentFailedError, 'AGENT_FAILED')
        assert.ok(Object.hasOwn(e, 'cause'))
        assert.equal(e.cause, value)
        assert.equal(e.node, 'x')
        assert.deepEqual(attempts, [1, 2]) // retryable, like any exception
        assert.deepEqual(e.result.error, {
          code: 'AGENT_FAILED',
          message: `node 'x' failed on attempt 2/2: NonErrorThrown: ${message}`,
          node: 'x',
        })
        const failed = events(e.result.logPath).filter((ev) => ev.type === 'agentFailed')
        assert.deepEqual(failed.map((ev) => ev.data.error), [
          { kind: 'error', type: 'NonErrorThrown', message, retryable: true },
          { kind: 'error', type: 'NonErrorThrown', message, retryable: true },
        ])
        assert.equal(am.verifyLogSync(e.result.logPath).finished, 'runFailed')
      })
    }
  }

  test('an Error whose message getter throws is still recorded', async () => {
    for (const width of [1, 2]) {
      const mesh = new Mesh({ logDir: tmpdir() })
      let err
      mesh.agent('evil', async () => {
        err = new Error('hidden')
        Object.defineProperty(err, 'message', {
          get() {
            throw new Error('message getter exploded')
          },
        })
        throw err
      })
      mesh.agent('fine', () => 1)
      const nodes = [agentNode('x', 'evil'), agentNode('f', 'fine')].slice(0, width)
      const e = await rejected(mesh.run(wf(nodes), { runId: 'evil' }))
      assertError(e, AgentFailedError, 'AGENT_FAILED')
      assert.equal(e.cause, err)
      assert.equal(e.node, 'x')
      const failed = events(e.result.logPath).filter((ev) => ev.type === 'agentFailed')
      assert.deepEqual(failed.map((ev) => [ev.node, ev.data.error.type]), [['x', 'Error']])
      assert.equal(am.verifyLogSync(e.result.logPath).finished, 'runFailed')
    }
  })

  test('a thrown value the driver cannot inspect is recorded, without a hang or an unhandled rejection', () => {
    const child = inChild(`
      const makers = {
        constructorGetter: () => {
          const e = new Error('m')
          Object.defineProperty(e, 'constructor', { get() { throw new Error('constructor getter') } })
          return e
        },
        proxy: () => new Proxy({}, { getPrototypeOf() { throw new Error('trap') }, get() { throw new Error('trap') } }),
      }
      let i = 0
      for (const [name, make] of Object.entries(makers)) {
        for (const mode of ['lone', 'sibling', 'runSync']) {
          const value = make()
          const mesh = new am.Mesh({ logDir: dir })
          mesh.agent('bad', mode === 'runSync' ? () => { throw value } : async () => { throw value })
          mesh.agent('ok', () => 1)
          const nodes = [{ id: 'x', type: 'agent', agent: 'bad' }]
          if (mode === 'sibling') nodes.push({ id: 'y', type: 'agent', agent: 'ok' })
          const runId = 'r' + i++
          let outcome
          try {
            const p = mode === 'runSync' ? Promise.resolve(mesh.runSync(wf(nodes), { runId })) : mesh.run(wf(nodes), { runId })
            let timer
            const hang = new Promise((resolve) => { timer = setTimeout(() => resolve('hang'), 400) })
            const r = await Promise.race([p, hang])
            clearTimeout(timer)
            outcome = r === 'hang' ? 'hang' : 'resolved ' + r.status
          } catch (e) {
            outcome = e instanceof am.AgentFailedError && e.cause === value ? 'AgentFailedError' : 'raw ' + String(e)
          }
          let finished = null
          try { finished = am.verifyLogSync(dir + '/' + runId + '.jsonl').finished } catch (e) { finished = String(e) }
          report({ name, mode, outcome, finished })
        }
      }
    `)
    assert.equal(child.killed, false, 'the child process hung')
    assert.equal(child.status, 0, child.stderr)
    assert.deepEqual(child.reports, ['constructorGetter', 'proxy'].flatMap((name) =>
      ['lone', 'sibling', 'runSync'].map((mode) => ({ name, mode, outcome: 'AgentFailedError', finished: 'runFailed' }))))
  })
})

// Promises returned to the synchronous driver ---------------------------------------------

describe('a Promise returned to runSync', () => {
  for (const kind of ['agent', 'tool']) {
    test(`an async ${kind} under runSync: InvalidOutput pointing to run, no unhandled rejection`, async () => {
      await withoutUnhandledRejections(() => {
        const mesh = new Mesh({ logDir: tmpdir() })
        const needsALoop = async () => {
          await sleep(5)
          throw new Error('rejected after runSync returned')
        }
        let node
        if (kind === 'agent') {
          mesh.agent('a', needsALoop)
          node = agentNode('n', 'a', { retry: { maxAttempts: 3 } })
        } else {
          mesh.tool('a', needsALoop)
          node = { id: 'n', type: 'tool', tool: 'a', retry: { maxAttempts: 3 } }
        }
        const e = thrown(() => mesh.runSync(wf([node]), { runId: 'promise' }))
        assertError(e, AgentFailedError, 'AGENT_FAILED')
        assert.equal(e.node, 'n')
        assert.equal(e.result.status, 'failed')
        assert.deepEqual(e.result.error, {
          code: 'AGENT_FAILED',
          message: "node 'n' failed on attempt 1/3 (not retryable): InvalidOutput: node 'n': agent returned a Promise, not JSON data (async agents need mesh.run, not runSync)",
          node: 'n',
        })
        const failed = events(e.result.logPath).filter((ev) => ev.type === `${kind}Failed`)
        assert.deepEqual(failed.map((ev) => ev.data.error), [{
          kind: 'error',
          type: 'InvalidOutput',
          message: "node 'n': agent returned a Promise, not JSON data (async agents need mesh.run, not runSync)",
          retryable: false,
        }])
        assert.equal(am.verifyLogSync(e.result.logPath).finished, 'runFailed')
      })
    })
  }

  test('the cause is an InvalidOutputError naming the node (as for other invalid outputs, and in Python)', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', async () => 1)
    const e = thrown(() => mesh.runSync(wf([agentNode('n', 'a', { retry: { maxAttempts: 2 } })]), { runId: 'promise' }))
    checkInvalidOutput(e, 'n', 'mesh.run')
  })
})

// agents that never settle ----------------------------------------------------------------

describe('agents that never settle', () => {
  for (const width of [1, 2]) {
    test(`a never-settling Promise with timeoutMs times out promptly (${width === 1 ? 'alone' : 'with a sibling'})`, async () => {
      const mesh = new Mesh({ logDir: tmpdir() })
      mesh.agent('stuck', () => new Promise(() => {}))
      mesh.agent('quick', () => 'quick')
      const nodes = [agentNode('n', 'stuck', { timeoutMs: 100 }), agentNode('q', 'quick')].slice(0, width)
      const started = performance.now()
      const r = await mesh.run(wf(nodes), { runId: 'stuck' })
      assert.ok(performance.now() - started < 3000, 'did not hang')
      assert.equal(r.status, 'failed')
      assert.deepEqual(r.error, {
        code: 'TIMEOUT',
        message: "node 'n' failed on attempt 1/1: Timeout: no result within 100 ms",
        node: 'n',
      })
      const failed = events(r.logPath).filter((e) => e.type === 'agentFailed')
      assert.deepEqual(failed.map((e) => [e.node, e.data.error.kind]), [['n', 'timeout']])
      assert.equal(am.verifyLogSync(r.logPath).finished, 'runFailed')
      // The stuck Promise does not hold up the mesh's next run. (Nor does it keep this test
      // process alive: the file finishing proves it; the child-process test below checks it
      // explicitly.)
      const next = await mesh.run(wf([agentNode('q', 'quick')]), { runId: 'next' })
      assert.equal(next.status, 'completed')
    })
  }

  test('a process whose agent never settles exits on its own after the timeout', () => {
    const child = inChild(`
      const mesh = new am.Mesh({ logDir: dir })
      mesh.agent('stuck', () => new Promise(() => {}))
      const r = await mesh.run(wf([{ id: 'n', type: 'agent', agent: 'stuck', timeoutMs: 50 }]), { runId: 'exit' })
      report({ status: r.status, code: r.error.code })
    `)
    assert.equal(child.killed, false, 'the process was kept alive')
    assert.equal(child.status, 0, child.stderr)
    assert.deepEqual(child.reports, [{ status: 'failed', code: 'TIMEOUT' }])
  })
})

// re-entrancy and concurrency -------------------------------------------------------------

describe('re-entrancy and concurrency', () => {
  test('mesh.run from inside an async agent (another run id): both logs verify and replay', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    const inner = wf([agentNode('i1', 'leaf'), agentNode('i2', 'leaf')], 'inner')
    mesh.agent('leaf', async (act) => {
      await sleep(5)
      return { leaf: act.node, input: act.input }
    })
    mesh.agent('outer', async (act) => (await mesh.run(inner, { input: act.node, runId: `inner-${act.node}` })).output)
    const r = await mesh.run(wf([agentNode('o1', 'outer'), agentNode('o2', 'outer')], 'outer'), { runId: 'outer' })
    assert.equal(r.status, 'completed')
    for (const o of ['o1', 'o2']) {
      assert.deepEqual(r.output[o], { i1: { leaf: 'i1', input: o }, i2: { leaf: 'i2', input: o } })
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), ['inner-o1.jsonl', 'inner-o2.jsonl', 'outer.jsonl'])
    for (const name of fs.readdirSync(dir)) {
      assert.equal(am.verifyLogSync(path.join(dir, name)).finished, 'runCompleted')
      assert.equal((await am.replay(path.join(dir, name))).outcome.status, 'completed')
    }
  })

  test('runSync from inside a runSync agent', () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    const inner = wf([agentNode('i1', 'leaf'), agentNode('i2', 'leaf')], 'inner')
    mesh.agent('leaf', (act) => ({ leaf: act.node, input: act.input }))
    mesh.agent('outer', (act) => mesh.runSync(inner, { input: act.node, runId: `inner-${act.node}` }).output)
    const r = mesh.runSync(wf([agentNode('o1', 'outer'), agentNode('o2', 'outer')], 'outer'), { runId: 'outer' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output.o2, { i1: { leaf: 'i1', input: 'o2' }, i2: { leaf: 'i2', input: 'o2' } })
    assert.deepEqual(fs.readdirSync(dir).sort(), ['inner-o1.jsonl', 'inner-o2.jsonl', 'outer.jsonl'])
    for (const name of fs.readdirSync(dir)) {
      assert.equal(am.verifyLogSync(path.join(dir, name)).finished, 'runCompleted')
      assert.equal(am.replaySync(path.join(dir, name)).outcome.status, 'completed')
    }
  })

  const FAN = [
    agentNode('a', 'worker'),
    agentNode('b', 'worker'),
    agentNode('c', 'worker'),
    agentNode('join', 'joiner', { after: ['a', 'b', 'c'] }),
  ]

  function fanMesh(logDir) {
    const mesh = new Mesh({ logDir })
    mesh.agent('worker', async (act) => {
      // Different waits per node and per run, so the two runs' events interleave.
      await sleep(3 * ('abc'.indexOf(act.node) + 1) + 2 * act.input.who)
      return { node: act.node, input: act.input, seed: String(act.seed) }
    })
    mesh.agent('joiner', async (act) => {
      await sleep(1)
      return Object.fromEntries(Object.entries(act.deps).sort().map(([k, v]) => [k, v.input]))
    })
    return mesh
  }

  test('two runs interleaved on one event loop write the logs they write alone', async () => {
    const dir = tmpdir()
    const mesh = fanMesh(path.join(dir, 'live'))
    const results = await Promise.all([0, 1].map((k) => mesh.run(wf(FAN), { input: { who: k }, seed: k, runId: `run${k}` })))
    const reference = fanMesh(path.join(dir, 'alone'))
    for (const [k, r] of results.entries()) {
      assert.equal(r.status, 'completed')
      assert.deepEqual(r.output, { join: { a: { who: k }, b: { who: k }, c: { who: k } } })
      const log = events(r.logPath)
      assert.deepEqual([...new Set(log.map((e) => e.runId))], [`run${k}`])
      assert.equal(log.length, 12)
      const alone = await reference.run(wf(FAN), { input: { who: k }, seed: k, runId: `run${k}` })
      assert.ok(am.canonicalLogSync(r.logPath).equals(am.canonicalLogSync(alone.logPath)))
    }
  })

  for (const meshes of [1, 2]) {
    test(`the same run id twice at once in one logDir: exactly one RunExistsError (${meshes} mesh${meshes > 1 ? 'es' : ''})`, async () => {
      const dir = tmpdir()
      const pool = [0, 1].slice(0, meshes).map(() => {
        const m = new Mesh({ logDir: dir })
        m.agent('a', async (act) => {
          await sleep(20)
          return act.input
        })
        return m
      })
      const settled = await Promise.allSettled([0, 1].map((k) => pool[k % meshes].run(wf([agentNode('n', 'a')]), { input: k, runId: 'same' })))
      const done = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value)
      const refused = settled.filter((s) => s.status === 'rejected').map((s) => s.reason)
      assert.equal(done.length, 1)
      assert.equal(refused.length, 1)
      assertError(refused[0], RunExistsError, 'RUN_EXISTS')
      assert.ok(refused[0].message.includes('same.jsonl'), refused[0].message)
      assert.equal(done[0].status, 'completed')
      const log = events(path.join(dir, 'same.jsonl'))
      assert.equal(log.filter((e) => e.type === 'runStarted').length, 1)
      assert.equal(log[0].data.input, done[0].output.n)
      assert.equal(am.verifyLogSync(path.join(dir, 'same.jsonl')).finished, 'runCompleted')
      assert.deepEqual(fs.readdirSync(dir), ['same.jsonl'])
    })
  }

  test('an aborted run: runCancelled, the log verifies and is released; resume returns it as it is', async () => {
    const dir = tmpdir()
    const controller = new AbortController()
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('long', (act) => {
      setTimeout(() => controller.abort('shutting down'), 5)
      return new Promise((resolve) => act.signal.addEventListener('abort', () => resolve('late')))
    })
    mesh.agent('next', () => assert.fail('next must not run'))
    const w = wf([agentNode('l', 'long'), agentNode('l2', 'long'), agentNode('n', 'next', { after: ['l'] })])
    const r = await mesh.run(w, { runId: 'aborted', signal: controller.signal })
    assert.equal(r.status, 'cancelled')
    assert.deepEqual(r.error, { code: 'CANCELLED', message: 'shutting down' })
    assert.deepEqual(types(r.logPath), [
      'runStarted', 'stepStarted', 'agentScheduled', 'agentScheduled',
      'activationCancelled', 'activationCancelled', 'runCancelled',
    ])
    const report = am.verifyLogSync(r.logPath) // takes the writer lock: the log was released
    assert.equal(report.finished, 'runCancelled')
    assert.deepEqual(report.holes, [])
    assert.equal(report.repaired, null)
    assert.equal(am.replaySync(r.logPath).outcome.status, 'cancelled')
    const before = fs.readFileSync(r.logPath)
    const calls = []
    const again = new Mesh({ logDir: dir })
    again.agent('long', (act) => calls.push(act.node)).agent('next', (act) => calls.push(act.node))
    const resumed = await again.resume(r.logPath)
    assert.equal(resumed.status, 'cancelled')
    assert.deepEqual(resumed.error, { code: 'CANCELLED', message: 'shutting down' })
    assert.equal(resumed.output, null)
    assert.deepEqual(resumed.waiting, [])
    assert.deepEqual(calls, [])
    assert.ok(fs.readFileSync(r.logPath).equals(before))
  })

  test('resume of files that are not logs: LogCorruptError at offset 0, the file untouched', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir }).agent('a', () => 1)
    const contents = {
      'empty.jsonl': Buffer.alloc(0),
      'word.jsonl': Buffer.from('hello'),
      'text.jsonl': Buffer.from('# README\nsome text\n'),
      'json.jsonl': Buffer.from('{"not": "a log"}\n'),
      'fake.jsonl': Buffer.from('{"type":"runStarted","seq":1}\n'),
      'binary.jsonl': Buffer.from([0, 0xff, 0xfe]),
    }
    for (const [name, bytes] of Object.entries(contents)) {
      const p = path.join(dir, name)
      fs.writeFileSync(p, bytes)
      for (const attempt of [() => mesh.resumeSync(p), () => mesh.resumeSync(p, { runId: 'x' }), () => am.replaySync(p)]) {
        const e = thrown(attempt)
        assertError(e, LogCorruptError, 'LOG_CORRUPT')
        assert.equal(e.offset, 0)
      }
      const e = await rejected(mesh.resume(p))
      assertError(e, LogCorruptError, 'LOG_CORRUPT')
      assert.ok(fs.readFileSync(p).equals(bytes), name)
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), Object.keys(contents).sort())
  })
})

// large payloads --------------------------------------------------------------------------

describe('large payloads', () => {
  test('a 10 MB input and a 10 MB output reach the agents and the log intact', async () => {
    const MB10 = 10 * 1024 * 1024
    const bigInput = { doc: repeat('input é "quoted" \\ \n', MB10) }
    const bigOutput = repeat('日志 log\t\u0001🦀', MB10)
    const seen = {}
    const mesh = new Mesh({ logDir: tmpdir(), fsync: 'never' })
    mesh.agent('producer', async () => bigOutput)
    mesh.agent('consumer', (act) => {
      seen.dep = act.deps.produce === bigOutput
      seen.input = act.input.doc === bigInput.doc
      return { len: act.deps.produce.length, inputLen: act.input.doc.length }
    })
    const w = wf([agentNode('produce', 'producer'), agentNode('consume', 'consumer', { after: ['produce'] })])
    const r = await mesh.run(w, { input: bigInput, runId: 'big' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { consume: { len: MB10, inputLen: MB10 } })
    assert.deepEqual(seen, { dep: true, input: true })
    // The canonical log, parsed here (readLogSync gives the same events, slower on 30 MB).
    const [header, ...log] = am.canonicalLogSync(r.logPath).toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
    assert.equal(header.runId, 'big')
    assert.deepEqual(log.map((e) => e.type), [
      'runStarted', 'stepStarted', 'agentScheduled', 'agentCompleted',
      'stepStarted', 'agentScheduled', 'agentCompleted', 'runCompleted',
    ])
    assert.ok(log[0].data.input.doc === bigInput.doc, 'input intact')
    assert.equal(log[3].node, 'produce')
    assert.ok(log[3].data.output === bigOutput, 'output intact')
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runCompleted')
  })

  test('a run output over 32 MiB fails the run with LIMIT_EXCEEDED', async () => {
    // Each output fits a record; together the terminal outputs exceed half the record limit.
    const part = 'y'.repeat(17 << 20)
    const mesh = new Mesh({ logDir: tmpdir(), fsync: 'never' })
    mesh.agent('p', async () => part)
    const r = await mesh.run(wf([agentNode('a', 'p'), agentNode('b', 'p')]), { runId: 'too-big' })
    assert.equal(r.status, 'failed')
    assert.equal(r.output, null)
    assert.equal(r.error.code, 'LIMIT_EXCEEDED')
    assert.equal(r.error.node, undefined)
    assert.ok(r.error.message.includes('terminal nodes a, b') && r.error.message.includes('33554432'), r.error.message)
    const lines = am.canonicalLogSync(r.logPath).toString('latin1').split('\n')
    assert.equal(lines.at(-1), '')
    assert.ok(lines.at(-3).includes('"type":"agentCompleted"') && lines.at(-4).includes('"type":"agentCompleted"'))
    assert.ok(lines.at(-2).startsWith('{"seq":7,"type":"runFailed"') && lines.at(-2).includes('LIMIT_EXCEEDED'), lines.at(-2))
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runFailed')
  })
})
