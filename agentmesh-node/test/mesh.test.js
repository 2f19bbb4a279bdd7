'use strict'
// The Node driver (lib/mesh.js): `Mesh` with sync and async agents, run/runSync,
// resume/resumeSync, fork/forkSync, retries, timeouts, cancellation by AbortSignal and from
// inside an agent, human approvals, Output/RawJson, the activation as an agent sees it,
// registration and option errors. Mirrors agentmesh-py/tests/test_async.py and the driver
// parts of docs/python.md.

const { test, describe, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const {
  Mesh,
  Workflow,
  ActivationError,
  Output,
  RawJson,
  RunResult,
  AgentFailedError,
  AgentMeshIOError,
  InvalidArgumentError,
  LogCorruptError,
  NondeterminismError,
  UnknownAgentError,
} = am

// helpers ---------------------------------------------------------------------------------

const tmpdir = tempDirs('mesh')

const events = (p) => am.readLogSync(p)
const types = (p) => am.readLogSync(p).map((e) => e.type)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves with `value` when the activation's signal aborts (so no timer outlives a test). */
function untilAborted(act, value = 'late') {
  return new Promise((resolve) => {
    if (act.signal.aborted) resolve(value)
    else act.signal.addEventListener('abort', () => resolve(value), { once: true })
  })
}

/** The directory holds no file at all (a logDir that may or may not have been created). */
function assertNoFiles(dir) {
  const found = []
  const walk = (d) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(d, entry.name))
      else found.push(path.join(d, entry.name))
    }
  }
  walk(dir)
  assert.deepEqual(found, [])
}

/** Sleep the thread (a sync agent that blocks). */
function blockFor(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

// sync and async agents -------------------------------------------------------------------

describe('sync and async agents', () => {
  test('a sync and an async agent in one run, a step after them', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('plain', (act) => ({ plain: act.node }))
    mesh.agent('later', async (act) => {
      await sleep(5)
      return { later: act.node }
    })
    mesh.agent('join', (act) => act.deps)
    const w = wf([agentNode('p', 'plain'), agentNode('l', 'later'), agentNode('j', 'join', { after: ['p', 'l'] })])
    const r = await mesh.run(w, { runId: 'mixed' })
    assert.ok(r instanceof RunResult)
    assert.equal(r.status, 'completed')
    assert.equal(r.runId, 'mixed')
    assert.equal(r.logPath, path.join(dir, 'mixed.jsonl'))
    assert.deepEqual(r.output, { j: { l: { later: 'l' }, p: { plain: 'p' } } })
    assert.equal(r.error, null)
    assert.deepEqual(r.waiting, [])
    assert.deepEqual(types(r.logPath), [
      'runStarted', 'stepStarted', 'agentScheduled', 'agentScheduled', 'agentCompleted', 'agentCompleted',
      'stepStarted', 'agentScheduled', 'agentCompleted', 'runCompleted',
    ])
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runCompleted')
  })

  test('async agents of a step run concurrently', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    let active = 0
    let peak = 0
    mesh.agent('slow', async (act) => {
      active++
      peak = Math.max(peak, active)
      await sleep(100)
      active--
      return act.node
    })
    const w = wf([0, 1, 2, 3, 4].map((i) => agentNode(`s${i}`, 'slow')))
    const started = performance.now()
    const r = await mesh.run(w, { runId: 'conc' })
    const elapsed = performance.now() - started
    assert.ok(elapsed < 500, `5 agents of 100 ms took ${elapsed} ms: not concurrent`) // sequential: 500 ms
    assert.equal(peak, 5)
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { s0: 's0', s1: 's1', s2: 's2', s3: 's3', s4: 's4' })
    const steps = events(r.logPath).filter((e) => e.type === 'stepStarted')
    assert.deepEqual(steps.map((e) => e.data), [{ activations: 5, step: 1 }])
  })

  test('an agent returning a thenable that is not a Promise is awaited under run', async () => {
    const mesh = new Mesh()
    mesh.agent('thenable', (act) => ({ then: (resolve) => setImmediate(() => resolve({ via: act.node })) }))
    const r = await mesh.run(wf([agentNode('n', 'thenable')]), { runId: 'then' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { n: { via: 'n' } })
  })
})

// the same log from every driver ----------------------------------------------------------

const SHARED = [
  agentNode('a', 'worker'),
  agentNode('b', 'flaky', { retry: { maxAttempts: 2, backoffMs: 5 } }),
  { id: 'c', type: 'tool', tool: 'lookup' },
  agentNode('join', 'joiner', { after: ['a', 'b', 'c'], maxVisits: 3 }),
  {
    id: 'again', type: 'branch', after: ['join'],
    cases: [{ when: { path: '/visits/join', lt: 2 }, goto: 'join' }], default: 'end',
  },
  agentNode('end', 'worker'),
]
const SHARED_INPUT = { q: 'x', n: [1, -0.5] }

const sharedAgents = {
  worker: (act) => ({ node: act.node, seed: String(act.seed), input: act.input }),
  flaky: (act) => {
    if (act.attempt === 1) throw new ActivationError('Flaky', 'first try fails')
    return new Output(act.attempt, { usage: { inputTokens: 5, outputTokens: 1 } })
  },
  joiner: (act) => ({ deps: Object.keys(act.deps).sort(), visit: act.visit }),
}
const sharedTools = { lookup: () => [1, 2.5, 'x', null, true] }

/** A mesh with the shared agents; `delays` (ms by node) makes them async and out of order. */
function sharedMesh(options, delays, seen) {
  const mesh = new Mesh(options)
  const wrap = (fn) => {
    const traced = (act) => {
      if (seen) seen.push([act.node, act.visit, act.attempt, act.step])
      return fn(act)
    }
    if (delays === null) return traced
    return async (act) => {
      await sleep(delays[act.node] || 0)
      return traced(act)
    }
  }
  for (const [name, fn] of Object.entries(sharedAgents)) mesh.agent(name, wrap(fn))
  for (const [name, fn] of Object.entries(sharedTools)) mesh.tool(name, wrap(fn))
  return mesh
}

describe('the same canonical log from every driver', () => {
  const options = { input: SHARED_INPUT, seed: 99, runId: 'same' }

  test('runSync and run (async agents finishing in different orders, and plain agents)', async () => {
    const dir = tmpdir()
    const w = wf(SHARED, 'shared')
    const seen = []
    const sync = sharedMesh({ logDir: path.join(dir, 'sync') }, null, seen).runSync(w, options)
    assert.equal(sync.status, 'completed')
    assert.deepEqual(sync.output, { end: { node: 'end', seed: sync.output.end.seed, input: SHARED_INPUT } })
    // Visits, attempts and steps as the agents saw them: b's retry, join's second visit.
    assert.deepEqual(seen, [
      ['a', 1, 1, 1], ['b', 1, 1, 1], ['c', 1, 1, 1],
      ['b', 1, 2, 2],
      ['join', 1, 1, 3],
      ['join', 2, 1, 4],
      ['end', 1, 1, 5],
    ])
    const expected = am.canonicalLogSync(sync.logPath)
    const text = expected.toString('utf8')
    assert.ok(text.includes('"type":"agentFailed"') && text.includes('"loop":true'))
    assert.ok(text.includes('"usage":{"inputTokens":5,"outputTokens":1}'))
    const runs = [
      await sharedMesh({ logDir: path.join(dir, 'async1') }, { a: 30, c: 10 }).run(w, options),
      await sharedMesh({ logDir: path.join(dir, 'async2') }, { a: 5, b: 20, c: 30 }).run(w, options),
      await sharedMesh({ logDir: path.join(dir, 'plain') }, null).run(w, options),
    ]
    for (const r of runs) {
      assert.equal(r.status, 'completed')
      assert.deepEqual(r.output, sync.output)
      assert.ok(am.canonicalLogSync(r.logPath).equals(expected))
      assert.equal(r.fingerprint, sync.fingerprint)
    }
    assert.equal(sync.fingerprint, am.fingerprintSync(sync.logPath))
    assert.equal(sync.fingerprint, await am.fingerprint(sync.logPath))
  })

  test('in-memory runs give the canonical log and fingerprint of a file run', async () => {
    const w = wf(SHARED, 'shared')
    const file = sharedMesh({ logDir: tmpdir() }, null).runSync(w, options)
    const memSync = sharedMesh({}, null).runSync(w, options)
    const memAsync = await sharedMesh(undefined, { a: 10 }).run(w, options)
    for (const r of [memSync, memAsync]) {
      assert.equal(r.logPath, null)
      assert.equal(r.status, 'completed')
      assert.deepEqual(r.output, file.output)
      const canonical = r.canonical()
      assert.ok(Buffer.isBuffer(canonical))
      assert.ok(canonical.equals(am.canonicalLogSync(file.logPath)))
      assert.equal(r.fingerprint, file.fingerprint)
      assert.match(r.fingerprint, /^[0-9a-f]{64}$/)
    }
  })
})

// failures --------------------------------------------------------------------------------

describe('failures', () => {
  test('retries record every ActivationError exactly, with the backoff', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const attempts = []
    mesh.agent('flaky', async (act) => {
      attempts.push(act.attempt)
      await sleep(0)
      if (act.attempt === 1) throw new ActivationError('RateLimited', 'slow down: "429"', { retryable: true })
      if (act.attempt === 2) throw new ActivationError('Flaky', 'try 2 ✗')
      return 'ok'
    })
    const r = await mesh.run(wf([agentNode('f', 'flaky', { retry: { maxAttempts: 3, backoffMs: 5 } })]), { runId: 'retry' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { f: 'ok' })
    assert.deepEqual(attempts, [1, 2, 3])
    const log = events(r.logPath)
    assert.deepEqual(log.filter((e) => e.type === 'agentFailed').map((e) => [e.seq, e.attempt, e.data.error]), [
      [4, 1, { kind: 'error', type: 'RateLimited', message: 'slow down: "429"', retryable: true }],
      [7, 2, { kind: 'error', type: 'Flaky', message: 'try 2 ✗', retryable: true }],
    ])
    assert.deepEqual(log.filter((e) => e.type === 'agentScheduled').map((e) => e.data), [
      { agent: 'flaky' },
      { agent: 'flaky', delayMs: 5, retryOf: 4 },
      { agent: 'flaky', delayMs: 5, retryOf: 7 },
    ])
  })

  test('a non-retryable ActivationError fails the run on its first attempt', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    let denial
    mesh.agent('deny', async () => {
      denial = new ActivationError('Denied', 'policy says no', { retryable: false })
      throw denial
    })
    const e = await rejected(mesh.run(wf([agentNode('x', 'deny', { retry: { maxAttempts: 3 } })]), { runId: 'deny' }))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.equal(e.cause, denial)
    assert.ok(e.cause instanceof ActivationError && e.cause instanceof Error)
    assert.equal(e.cause.name, 'ActivationError')
    assert.equal(e.cause.type, 'Denied')
    assert.equal(e.cause.retryable, false)
    assert.equal(e.node, 'x')
    assert.deepEqual(e.details, { node: 'x' })
    assert.equal(e.message, "[AGENT_FAILED] node 'x' failed on attempt 1/3 (not retryable): Denied: policy says no")
    assert.deepEqual(e.result.error, {
      code: 'AGENT_FAILED',
      message: "node 'x' failed on attempt 1/3 (not retryable): Denied: policy says no",
      node: 'x',
    })
    const failed = events(e.result.logPath).filter((ev) => ev.type === 'agentFailed')
    assert.deepEqual(failed.map((ev) => ev.data.error), [
      { kind: 'error', type: 'Denied', message: 'policy says no', retryable: false },
    ])
  })

  test('ActivationError defaults: retryable, type as a string', () => {
    const e = new ActivationError(404, 'missing')
    assert.equal(e.type, '404')
    assert.equal(e.message, 'missing')
    assert.equal(e.retryable, true)
    assert.equal(new ActivationError('T', 'm', { retryable: 0 }).retryable, false)
  })

  test('an Error subclass is recorded as its class name and message; AgentFailedError carries it', async () => {
    class QuotaError extends Error {}
    const mesh = new Mesh({ logDir: tmpdir() })
    const raised = []
    mesh.agent('boom', async () => {
      await sleep(0)
      const err = new QuotaError('over quota')
      raised.push(err)
      throw err
    })
    mesh.agent('fine', () => 'fine')
    const e = await rejected(mesh.run(wf([agentNode('ok', 'fine'), agentNode('x', 'boom')]), { runId: 'boom' }))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.equal(e.name, 'AgentFailedError')
    assert.equal(e.cause, raised[0])
    assert.equal(e.node, 'x')
    assert.ok(e.result instanceof RunResult)
    assert.equal(e.result.status, 'failed')
    assert.equal(e.result.output, null)
    assert.deepEqual(e.result.error, {
      code: 'AGENT_FAILED',
      message: "node 'x' failed on attempt 1/1: QuotaError: over quota",
      node: 'x',
    })
    // `result` is not enumerable (it would swamp util.inspect).
    assert.equal(Object.keys(e).includes('result'), false)
    const log = events(e.result.logPath)
    assert.deepEqual(log.map((ev) => ev.type), [
      'runStarted', 'stepStarted', 'agentScheduled', 'agentScheduled', 'agentCompleted', 'agentFailed', 'runFailed',
    ])
    assert.equal(log[5].node, 'x')
    assert.deepEqual(log[5].data.error, { kind: 'error', type: 'QuotaError', message: 'over quota', retryable: true })
    assert.equal(am.verifyLogSync(e.result.logPath).finished, 'runFailed')
  })

  test('runSync throws AgentFailedError too, with the built-in class name', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const err = new URIError('bad uri')
    mesh.agent('t', () => {
      throw err
    })
    const e = thrown(() => mesh.runSync(wf([agentNode('x', 't', { retry: { maxAttempts: 2 } })]), { runId: 'sync-fail' }))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.equal(e.cause, err)
    assert.equal(e.result.status, 'failed')
    assert.deepEqual(e.result.error, {
      code: 'AGENT_FAILED',
      message: "node 'x' failed on attempt 2/2: URIError: bad uri",
      node: 'x',
    })
    const failed = events(e.result.logPath).filter((ev) => ev.type === 'agentFailed')
    assert.deepEqual(failed.map((ev) => [ev.attempt, ev.data.error.type, ev.data.error.message]), [
      [1, 'URIError', 'bad uri'],
      [2, 'URIError', 'bad uri'],
    ])
  })
})

// timeouts --------------------------------------------------------------------------------

describe('timeouts', () => {
  test('a never-settling Promise times out: run failed with TIMEOUT, act.signal aborted', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    let signal = null
    mesh.agent('never', (act) => {
      signal = act.signal
      return new Promise(() => {})
    })
    const started = performance.now()
    const r = await mesh.run(wf([agentNode('n', 'never', { timeoutMs: 50 })]), { runId: 'to' })
    assert.ok(performance.now() - started < 2000, 'did not hang')
    assert.equal(r.status, 'failed')
    assert.equal(r.output, null)
    assert.deepEqual(r.error, {
      code: 'TIMEOUT',
      message: "node 'n' failed on attempt 1/1: Timeout: no result within 50 ms",
      node: 'n',
    })
    assert.ok(signal instanceof AbortSignal)
    assert.equal(signal.aborted, true)
    assert.equal(signal.reason, 'timeout')
    const log = events(r.logPath)
    assert.deepEqual(log.map((e) => e.type), ['runStarted', 'stepStarted', 'agentScheduled', 'agentFailed', 'runFailed'])
    assert.deepEqual(log[2].data, { agent: 'never', timeoutMs: 50 })
    assert.equal(log[3].node, 'n')
    assert.deepEqual(log[3].data.error, { kind: 'timeout', type: 'Timeout', message: 'no result within 50 ms', retryable: true })
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runFailed')
  })

  test('a timed-out attempt is retried; its late result is dropped', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('slowOnce', async (act) => {
      if (act.attempt === 1) return untilAborted(act, 'late') // settles only once aborted
      return { attempt: act.attempt }
    })
    mesh.agent('quick', () => 'quick')
    const w = wf([agentNode('s', 'slowOnce', { timeoutMs: 50, retry: { maxAttempts: 2 } }), agentNode('q', 'quick')])
    const r = await mesh.run(w, { runId: 'retry-to' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { s: { attempt: 2 }, q: 'quick' })
    assert.deepEqual(
      events(r.logPath).filter((e) => e.type.startsWith('agent')).map((e) => [e.type, e.node]),
      [
        ['agentScheduled', 's'], ['agentScheduled', 'q'], ['agentFailed', 's'], ['agentCompleted', 'q'],
        ['agentScheduled', 's'], ['agentCompleted', 's'],
      ],
    )
    assert.ok(!am.canonicalLogSync(r.logPath).toString().includes('"late"'))
  })

  test('a sync agent overrunning its deadline under runSync is recorded as timed out', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('block', () => {
      blockFor(80)
      return 'too late'
    })
    const r = mesh.runSync(wf([agentNode('b', 'block', { timeoutMs: 20 })]), { runId: 'sync-to' })
    assert.equal(r.status, 'failed')
    assert.deepEqual(r.error, {
      code: 'TIMEOUT',
      message: "node 'b' failed on attempt 1/1: Timeout: no result within 20 ms",
      node: 'b',
    })
    const log = events(r.logPath)
    assert.deepEqual(log.map((e) => e.type), ['runStarted', 'stepStarted', 'agentScheduled', 'agentFailed', 'runFailed'])
    assert.equal(log[3].data.error.kind, 'timeout')
  })
})

// cancellation ----------------------------------------------------------------------------

describe('cancellation', () => {
  test('AbortController.abort(reason) while an agent is pending cancels the run', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const controller = new AbortController()
    let signal = null
    let settled = null
    mesh.agent('long', (act) => {
      signal = act.signal
      setTimeout(() => controller.abort('stop now'), 10)
      return untilAborted(act).then((v) => (settled = v))
    })
    mesh.agent('next', () => assert.fail('next must not run'))
    const w = wf([agentNode('l', 'long'), agentNode('n', 'next', { after: ['l'] })])
    const started = performance.now()
    const r = await mesh.run(w, { runId: 'abort', signal: controller.signal })
    assert.ok(performance.now() - started < 2000, 'did not hang')
    // The Promise resolves (it does not reject) with the cancelled run.
    assert.ok(r instanceof RunResult)
    assert.equal(r.status, 'cancelled')
    assert.equal(r.output, null)
    assert.deepEqual(r.error, { code: 'CANCELLED', message: 'stop now' })
    assert.equal(signal.aborted, true)
    assert.equal(signal.reason, 'stop now')
    await sleep(0)
    assert.equal(settled, 'late') // the agent saw the abort; its result is not recorded
    const log = events(r.logPath)
    assert.deepEqual(log.map((e) => e.type), [
      'runStarted', 'stepStarted', 'agentScheduled', 'activationCancelled', 'runCancelled',
    ])
    assert.equal(log[3].node, 'l')
    assert.deepEqual(log[3].data, { reason: 'stop now' })
    assert.deepEqual(log[4].data, { reason: 'stop now' })
    const report = am.verifyLogSync(r.logPath) // takes the writer lock: the run released the log
    assert.equal(report.finished, 'runCancelled')
    assert.equal(report.repaired, null)
  })

  test('abort() without a reason: the DOMException message is the reason; every activation is cancelled', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const controller = new AbortController()
    const signals = []
    mesh.agent('long', (act) => {
      signals.push(act.signal)
      if (signals.length === 2) setTimeout(() => controller.abort(), 5)
      return untilAborted(act)
    })
    const r = await mesh.run(wf([agentNode('l0', 'long'), agentNode('l1', 'long')]), { runId: 'abort2', signal: controller.signal })
    assert.equal(r.status, 'cancelled')
    assert.deepEqual(r.error, { code: 'CANCELLED', message: 'This operation was aborted' })
    assert.deepEqual(types(r.logPath), [
      'runStarted', 'stepStarted', 'agentScheduled', 'agentScheduled',
      'activationCancelled', 'activationCancelled', 'runCancelled',
    ])
    assert.deepEqual(signals.map((s) => [s.aborted, s.reason]), [
      [true, 'This operation was aborted'],
      [true, 'This operation was aborted'],
    ])
  })

  test('act.cancelRun(reason) from inside an async agent', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const ran = []
    let ownSignal = null
    let longSignal = null
    mesh.agent('quit', async (act) => {
      ownSignal = act.signal
      await sleep(5)
      act.cancelRun('enough')
      return 'never recorded'
    })
    mesh.agent('long', (act) => {
      longSignal = act.signal
      return untilAborted(act)
    })
    mesh.agent('next', (act) => ran.push(act.node))
    const w = wf([agentNode('q', 'quit'), agentNode('l', 'long'), agentNode('n', 'next', { after: ['q', 'l'] })])
    const r = await mesh.run(w, { runId: 'cancel-run' })
    assert.equal(r.status, 'cancelled')
    assert.deepEqual(r.error, { code: 'CANCELLED', message: 'enough' })
    assert.deepEqual(ran, [])
    assert.deepEqual([ownSignal.aborted, ownSignal.reason], [true, 'enough'])
    assert.deepEqual([longSignal.aborted, longSignal.reason], [true, 'enough'])
    const log = events(r.logPath)
    assert.deepEqual(log.slice(-3).map((e) => [e.type, e.node ?? null]), [
      ['activationCancelled', 'q'], ['activationCancelled', 'l'], ['runCancelled', null],
    ])
    assert.deepEqual(log.at(-1).data, { reason: 'enough' })
    assert.ok(!log.some((e) => e.type === 'agentCompleted'))
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runCancelled')
  })

  test('act.cancelRun from a lone async agent, and from a sync agent under runSync', async () => {
    for (const sync of [false, true]) {
      const mesh = new Mesh({ logDir: tmpdir() })
      mesh.agent('quit', (act) => {
        act.cancelRun('from inside')
        return 'never recorded'
      })
      mesh.agent('next', () => assert.fail('next must not run'))
      const w = wf([agentNode('q', 'quit'), agentNode('n', 'next', { after: ['q'] })])
      const r = sync ? mesh.runSync(w, { runId: 'c' }) : await mesh.run(w, { runId: 'c' })
      assert.equal(r.status, 'cancelled')
      assert.deepEqual(r.error, { code: 'CANCELLED', message: 'from inside' })
      assert.deepEqual(types(r.logPath).slice(-2), ['activationCancelled', 'runCancelled'])
    }
    // Without a reason: 'cancelled'.
    const mesh = new Mesh()
    mesh.agent('quit', (act) => act.cancelRun())
    const r = mesh.runSync(wf([agentNode('q', 'quit')]), { runId: 'c' })
    assert.deepEqual(r.error, { code: 'CANCELLED', message: 'cancelled' })
  })

  test('an already-aborted signal is an InvalidArgumentError and creates no log', async () => {
    const dir = tmpdir()
    const logDir = path.join(dir, 'logs')
    const mesh = new Mesh({ logDir })
    mesh.agent('a', () => assert.fail('no agent may run'))
    const e = await rejected(mesh.run(wf([agentNode('n', 'a')]), { runId: 'pre', signal: AbortSignal.abort('too early') }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.match(e.message, /aborted before the run started/)
    assertNoFiles(dir)
  })
})

// human approval --------------------------------------------------------------------------

const HUMAN = [
  agentNode('draft', 'writer'),
  { id: 'approve', type: 'human', prompt: 'ok?', after: ['draft'] },
  agentNode('publish', 'publisher', { after: ['approve'] }),
]

function humanMesh(logDir, calls) {
  const mesh = new Mesh({ logDir })
  mesh.agent('writer', async (act) => {
    calls.push(act.node)
    await sleep(0)
    return 'text'
  })
  mesh.agent('publisher', (act) => {
    calls.push(act.node)
    return { published: act.deps.approve, draft: act.input }
  })
  return mesh
}

describe('human approval and resume', () => {
  test('a run waits for a person; a new Mesh resumes it with the approval', async () => {
    const dir = tmpdir()
    const calls = []
    const r = await humanMesh(dir, calls).run(wf(HUMAN), { input: 'in', runId: 'h', seed: 3 })
    assert.equal(r.status, 'waiting')
    assert.equal(r.output, null)
    assert.equal(r.error, null)
    assert.deepEqual(calls, ['draft'])
    assert.equal(r.waiting.length, 1)
    const w = r.waiting[0]
    assert.deepEqual(
      [w.node, w.kind, w.name, w.prompt, w.attempt, w.visit, w.step, w.id, w.runId, w.input, w.deps],
      ['approve', 'human', 'approve', 'ok?', 1, 1, 2, 6, 'h', 'in', { draft: 'text' }],
    )
    assert.equal(typeof w.seed, 'bigint')
    assert.equal(am.verifyLogSync(r.logPath).finished, null)

    // Nothing approved: still waiting, nothing runs, nothing is written.
    const before = fs.readFileSync(r.logPath)
    const again = await humanMesh(dir, calls).resume(r.logPath)
    assert.equal(again.status, 'waiting')
    assert.deepEqual(again.waiting.map((a) => a.node), ['approve'])
    assert.deepEqual(calls, ['draft'])
    assert.ok(fs.readFileSync(r.logPath).equals(before))

    const done = await humanMesh(dir, calls).resume(r.logPath, { approvals: { approve: { ok: true } }, runId: 'h' })
    assert.equal(done.status, 'completed')
    assert.equal(done.runId, 'h')
    assert.equal(done.logPath, r.logPath)
    assert.deepEqual(done.output, { publish: { published: { ok: true }, draft: 'in' } })
    assert.deepEqual(calls, ['draft', 'publish'])
    const resolved = events(done.logPath).filter((e) => e.type === 'humanResolved')
    assert.deepEqual(resolved.map((e) => [e.seq, e.node, e.data]), [[7, 'approve', { output: { ok: true } }]])
    assert.equal(am.verifyLogSync(done.logPath).finished, 'runCompleted')
  })

  test('resume and resumeSync write the log runSync + resumeSync write', async () => {
    const dir = tmpdir()
    const calls = []
    const a = await humanMesh(path.join(dir, 'a'), calls).run(wf(HUMAN), { input: 'in', runId: 'h' })
    const doneA = await humanMesh(path.join(dir, 'a'), calls).resume(a.logPath, { approvals: { approve: 'yes' } })
    const sync = new Mesh({ logDir: path.join(dir, 's') })
    sync.agent('writer', () => 'text').agent('publisher', (act) => ({ published: act.deps.approve, draft: act.input }))
    const b = sync.runSync(wf(HUMAN), { input: 'in', runId: 'h' })
    const doneB = sync.resumeSync(b.logPath, { approvals: { approve: 'yes' } })
    assert.equal(doneB.status, 'completed')
    assert.ok(am.canonicalLogSync(doneA.logPath).equals(am.canonicalLogSync(doneB.logPath)))
  })

  test('resume with another runId: InvalidArgumentError, the file unchanged', async () => {
    const dir = tmpdir()
    const r = await humanMesh(dir, []).run(wf(HUMAN), { runId: 'alpha' })
    const before = fs.readFileSync(r.logPath)
    const calls = []
    const e = await rejected(humanMesh(dir, calls).resume(r.logPath, { approvals: { approve: true }, runId: 'beta' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(e.message.includes("holds run 'alpha', not 'beta'"), e.message)
    const e2 = thrown(() => humanMesh(dir, calls).resumeSync(r.logPath, { approvals: { approve: true }, runId: 'beta' }))
    assertError(e2, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.deepEqual(calls, [])
    assert.ok(fs.readFileSync(r.logPath).equals(before))
    assert.deepEqual(fs.readdirSync(dir), ['alpha.jsonl'])
  })

  test('resume with an unknown approval node: InvalidArgumentError, nothing recorded', async () => {
    const dir = tmpdir()
    const r = await humanMesh(dir, []).run(wf(HUMAN), { runId: 'h' })
    const before = fs.readFileSync(r.logPath)
    // The valid decision next to the typo is not recorded either.
    const e = await rejected(humanMesh(dir, []).resume(r.logPath, { approvals: { approve: true, typo: true } }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(e.message, "[INVALID_ARGUMENT] node 'typo' has no pending human activation (waiting: approve)")
    const e2 = await rejected(humanMesh(dir, []).resume(r.logPath, { approvals: [true] }))
    assertError(e2, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(fs.readFileSync(r.logPath).equals(before))
    // The log was released after each refusal: it can still be resumed.
    const done = await humanMesh(dir, []).resume(r.logPath, { approvals: { approve: true } })
    assert.equal(done.status, 'completed')
  })

  test('resume of a finished run calls no agent and writes nothing; approvals for it are refused', async () => {
    const dir = tmpdir()
    const r = await humanMesh(dir, []).run(wf(HUMAN), { runId: 'h' })
    const done = await humanMesh(dir, []).resume(r.logPath, { approvals: { approve: true } })
    const before = fs.readFileSync(done.logPath)
    const calls = []
    const again = await humanMesh(dir, calls).resume(done.logPath)
    assert.equal(again.status, 'completed')
    assert.deepEqual(again.output, done.output)
    assert.deepEqual(calls, [])
    assert.ok(fs.readFileSync(done.logPath).equals(before))
    const e = thrown(() => humanMesh(dir, calls).resumeSync(done.logPath, { approvals: { approve: false } }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    // The core says why: the run is finished.
    assert.equal(
      e.message,
      "[INVALID_ARGUMENT] node 'approve' has no pending human activation: the run is completed, so nothing waits for a person (waiting: none)",
    )
    assert.ok(fs.readFileSync(done.logPath).equals(before))
  })

  test('approvals for a human node the interrupted run has not reached: refused, naming what is unfinished', async () => {
    const dir = tmpdir()
    const stop = new AbortController()
    const mesh = new Mesh({ logDir: dir })
      .agent('writer', async (act) => {
        stop.abort('Ctrl-C')
        await new Promise((resolve) => act.signal.addEventListener('abort', resolve))
        return 'text'
      })
      .agent('publisher', () => 'published')
    const e = await rejected(mesh.run(wf(HUMAN), { runId: 'early', interrupt: stop.signal }))
    assert.equal(e.name, 'RunInterruptedError')
    const logPath = path.join(dir, 'early.jsonl')
    const before = fs.readFileSync(logPath)
    const refused = await rejected(humanMesh(dir, []).resume(logPath, { approvals: { approve: true } }))
    assertError(refused, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(
      refused.message,
      "[INVALID_ARGUMENT] node 'approve' has no pending human activation: the run has not reached it yet (unfinished: draft); resume the run without approvals, then approve it when it waits (waiting: none)",
    )
    assert.ok(fs.readFileSync(logPath).equals(before))
    // What the message says works.
    const calls = []
    const waiting = await humanMesh(dir, calls).resume(logPath)
    assert.equal(waiting.status, 'waiting')
    assert.deepEqual(calls, ['draft'])
    const done = await humanMesh(dir, calls).resume(logPath, { approvals: { approve: true } })
    assert.equal(done.status, 'completed')
  })

  test('resume of a missing file, of a file that is not a log, with agents missing', async () => {
    const dir = tmpdir()
    const e = await rejected(humanMesh(dir, []).resume(path.join(dir, 'missing.jsonl')))
    assertError(e, AgentMeshIOError, 'IO')
    const junk = path.join(dir, 'junk.jsonl')
    fs.writeFileSync(junk, '# not a log\n')
    const e2 = thrown(() => humanMesh(dir, []).resumeSync(junk))
    assertError(e2, LogCorruptError, 'LOG_CORRUPT')
    assert.equal(e2.offset, 0)
    assert.equal(fs.readFileSync(junk, 'utf8'), '# not a log\n')

    const r = await humanMesh(dir, []).run(wf(HUMAN), { runId: 'h' })
    const before = fs.readFileSync(r.logPath)
    const partial = new Mesh({ logDir: dir }).agent('writer', () => 'text')
    const e3 = await rejected(partial.resume(r.logPath, { approvals: { approve: true } }))
    assertError(e3, UnknownAgentError, 'UNKNOWN_AGENT')
    assert.ok(e3.message.includes("agent 'publisher'"), e3.message)
    assert.ok(fs.readFileSync(r.logPath).equals(before))
    assert.deepEqual(fs.readdirSync(dir).sort(), ['h.jsonl', 'junk.jsonl'])
  })

  test('resume with an already-aborted signal records nothing (as run refuses one)', async () => {
    const dir = tmpdir()
    const r = await humanMesh(dir, []).run(wf(HUMAN), { runId: 'h' })
    const before = fs.readFileSync(r.logPath)
    const e = await rejected(humanMesh(dir, []).resume(r.logPath, { approvals: { approve: true }, signal: AbortSignal.abort('stale') }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(fs.readFileSync(r.logPath).equals(before))
  })
})

// fork ------------------------------------------------------------------------------------

describe('fork', () => {
  const CHAIN = [agentNode('one', 'a'), agentNode('two', 'a', { after: ['one'] })]

  function chainMesh(logDir, calls) {
    const mesh = new Mesh({ logDir })
    mesh.agent('a', async (act) => {
      calls.push(act.node)
      return { n: act.node, deps: act.deps }
    })
    return mesh
  }

  test('fork at a step end with an override re-runs only later nodes', async () => {
    const dir = tmpdir()
    const calls = []
    const mesh = chainMesh(dir, calls)
    const r = await mesh.run(wf(CHAIN, 'chain'), { runId: 'base', seed: 5 })
    assert.deepEqual(r.output, { two: { n: 'two', deps: { one: { n: 'one', deps: {} } } } })
    assert.deepEqual(calls, ['one', 'two'])

    // Fork points: seq 1 and every step end (stepStarted seq + 2 × activations).
    const log = events(r.logPath)
    const stepEnds = [1, ...log.filter((e) => e.type === 'stepStarted').map((e) => e.seq + 2 * e.data.activations)]
    const forkPoints = []
    for (const e of log) if (am.stateAtSync(r.logPath, e.seq).forkPoint) forkPoints.push(e.seq)
    assert.deepEqual(forkPoints, [1, 4, 7])
    assert.deepEqual(stepEnds, [1, 4, 7])
    const state = await am.stateAt(r.logPath, 4)
    assert.deepEqual(state.completed, { one: { n: 'one', deps: {} } })

    const forked = await mesh.fork(r.logPath, 4, { overrides: { one: 'changed' }, runId: 'fork1' })
    assert.equal(forked.status, 'completed')
    assert.equal(forked.runId, 'fork1')
    assert.equal(forked.logPath, path.join(dir, 'fork1.jsonl'))
    assert.deepEqual(forked.output, { two: { n: 'two', deps: { one: 'changed' } } })
    assert.deepEqual(calls, ['one', 'two', 'two'])
    const header = am.readHeader(forked.logPath)
    assert.deepEqual(header.parent, { runId: 'base', seq: 4 })
    assert.equal(header.seed, 5n)
    const flog = events(forked.logPath)
    assert.deepEqual(flog.filter((e) => e.type === 'outputOverridden').map((e) => [e.seq, e.node, e.data]), [
      [5, 'one', { output: 'changed' }],
    ])
    assert.deepEqual(flog.slice(0, 4).map((e) => [e.type, e.runId]), log.slice(0, 4).map((e) => [e.type, 'fork1']))
    assert.equal(am.verifyLogSync(forked.logPath).finished, 'runCompleted')
    assert.equal((await am.replay(forked.logPath)).outcome.status, 'completed')

    // forkSync (sync agents) of the same point with the same override: the same events under
    // another run id.
    const syncMesh = new Mesh({ logDir: dir }).agent('a', (act) => ({ n: act.node, deps: act.deps }))
    const forked2 = syncMesh.forkSync(r.logPath, 4, { overrides: { one: 'changed' }, runId: 'fork2' })
    assert.deepEqual(forked2.output, forked.output)
    assert.deepEqual(events(forked2.logPath).map((e) => [e.type, e.data]), flog.map((e) => [e.type, e.data]))
  })

  test('fork under a fixed workflow: a failed run goes on from its last step end, only the failed node runs again', async () => {
    // The bug of the newcomer report: `publish` comes after a branch only, so it gets no
    // deps (the branch has no output) and its tool throws. The fix adds `plan` to `after`.
    const nodes = (after) => [
      agentNode('plan', 'planner'),
      { id: 'gate', type: 'branch', after: ['plan'], cases: [{ when: { path: '/outputs/plan/ok', eq: true }, goto: 'publish' }], default: 'publish' },
      { id: 'publish', type: 'tool', tool: 'save', after },
    ]
    const broken = wf(nodes(['gate']), 'publish')
    const fixed = wf(nodes(['gate', 'plan']), 'publish')
    const dir = tmpdir()
    const calls = []
    const mesh = new Mesh({ logDir: dir })
      .agent('planner', () => {
        calls.push('plan')
        return { ok: true, text: 'the brief' }
      })
      .tool('save', (act) => {
        calls.push('publish')
        return { saved: act.deps.plan.text }
      })
    const e = await rejected(mesh.run(broken, { runId: 'broken' }))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.ok(e.cause instanceof TypeError)
    assert.deepEqual(calls, ['plan', 'publish'])
    const log = e.result.logPath
    assert.equal(am.readHeader(log).meta.host, 'node')

    // The last step end before the failure: the state there has nothing failed.
    const last = am.readLogSync(log)
      .map((ev) => am.stateAtSync(log, ev.seq))
      .filter((st) => st.forkPoint && st.failed.length === 0)
      .at(-1).seq
    const forked = await mesh.fork(log, last, { workflow: fixed, runId: 'fixed' })
    assert.equal(forked.status, 'completed')
    assert.deepEqual(forked.output, { publish: { saved: 'the brief' } })
    assert.deepEqual(calls, ['plan', 'publish', 'publish'])
    const header = am.readHeader(forked.logPath)
    assert.deepEqual(header.parent, { runId: 'broken', seq: last })
    assert.equal(header.workflow.hash, fixed.hash)
    assert.equal(header.meta.host, 'node')
    assert.equal(am.recordedWorkflow(forked.logPath).hash, fixed.hash)
    assert.equal((await am.replay(forked.logPath)).outcome.status, 'completed')

    // A workflow under which the copied prefix decides differently is refused, before any file.
    const other = wf([agentNode('plan', 'writer'), ...nodes(['gate', 'plan']).slice(1)], 'publish')
    mesh.agent('writer', () => 'x')
    const e2 = await rejected(mesh.fork(log, last, { workflow: other, runId: 'other' }))
    assertError(e2, NondeterminismError, 'NONDETERMINISM')
    // Its agents are checked against the workflow it runs under.
    const e3 = thrown(() => new Mesh({ logDir: dir }).agent('planner', () => 1).forkSync(log, last, { workflow: fixed, runId: 'x' }))
    assertError(e3, UnknownAgentError, 'UNKNOWN_AGENT')
    const e4 = await rejected(mesh.fork(log, last, { workflow: fixed.toObject(), runId: 'x' }))
    assertError(e4, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.deepEqual(fs.readdirSync(dir).sort(), ['broken.jsonl', 'fixed.jsonl'])
  })

  test('fork at a seq that is not a step end: InvalidArgumentError naming the step ends, no file', async () => {
    const dir = tmpdir()
    const sync = new Mesh({ logDir: dir }).agent('a', (act) => act.node)
    const base = sync.runSync(wf(CHAIN, 'chain'), { runId: 'base' })
    const e = await rejected(sync.fork(base.logPath, 3, { overrides: {}, runId: 'fork3' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(e.message.includes('seq 3 is not a step end') && e.message.includes('1 and 4'), e.message)
    const e2 = thrown(() => sync.forkSync(base.logPath, 4, { overrides: { nobody: 1 }, runId: 'fork4' }))
    assertError(e2, InvalidArgumentError, 'INVALID_ARGUMENT')
    const e3 = thrown(() => new Mesh({ logDir: dir }).forkSync(base.logPath, 4, { runId: 'fork5' }))
    assertError(e3, UnknownAgentError, 'UNKNOWN_AGENT')
    assert.deepEqual(fs.readdirSync(dir), ['base.jsonl'])
  })
})

// values ----------------------------------------------------------------------------------

describe('values', () => {
  test('Output with usage is recorded with the output', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('counted', async () => new Output({ text: 'hi' }, { usage: { inputTokens: 12, outputTokens: 3 } }))
    mesh.agent('plain', () => new Output('no usage'))
    const r = await mesh.run(wf([agentNode('n', 'counted'), agentNode('p', 'plain')]), { runId: 'usage' })
    assert.deepEqual(r.output, { n: { text: 'hi' }, p: 'no usage' })
    const done = events(r.logPath).filter((e) => e.type === 'agentCompleted')
    assert.deepEqual(done.map((e) => [e.node, e.data]), [
      ['n', { output: { text: 'hi' }, usage: { inputTokens: 12, outputTokens: 3 } }],
      ['p', { output: 'no usage' }],
    ])
  })

  test('RawJson output is recorded exactly (-0, 1.0, integers beyond 2^53)', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const text = '{"z": -0, "f": 1.0, "big": 123456789012345678901234567890, "u": 18446744073709551615, "i": -9223372036854775808, "s": "\\u00e9"}'
    mesh.agent('raw', () => new RawJson(text))
    mesh.agent('rawAsync', async () => new Output(new RawJson('[1.0, -0]'), { usage: { inputTokens: 1, outputTokens: 2 } }))
    const r = await mesh.run(wf([agentNode('r', 'raw'), agentNode('q', 'rawAsync')]), { runId: 'raw' })
    assert.equal(r.status, 'completed')
    const canonical = am.canonicalLogSync(r.logPath).toString('utf8')
    assert.ok(
      canonical.includes(
        '"data":{"output":{"big":1.2345678901234568e+29,"f":1.0,"i":-9223372036854775808,"s":"é","u":18446744073709551615,"z":-0.0}}',
      ),
      canonical,
    )
    assert.ok(canonical.includes('"data":{"output":[1.0,-0.0],"usage":{"inputTokens":1,"outputTokens":2}}'), canonical)
    // Read back as JSON.parse reads the text.
    const done = events(r.logPath).find((e) => e.type === 'agentCompleted' && e.node === 'r')
    assert.deepEqual(done.data.output, { big: 1.2345678901234568e29, f: 1, i: -9223372036854775808, s: 'é', u: 18446744073709551615, z: -0 })
    const e = thrown(() => new RawJson({ a: 1 }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
  })

  test('a RawJson approval is recorded exactly', async () => {
    const dir = tmpdir()
    const r = await humanMesh(dir, []).run(wf(HUMAN), { runId: 'h' })
    const done = await humanMesh(dir, []).resume(r.logPath, { approvals: { approve: new RawJson('{"score": 1.0, "n": 18446744073709551615}') } })
    assert.equal(done.status, 'completed')
    assert.ok(am.canonicalLogSync(done.logPath).toString().includes('"type":"humanResolved","runId":"h"'))
    assert.ok(am.canonicalLogSync(done.logPath).toString().includes('"data":{"output":{"n":18446744073709551615,"score":1.0}}'))
  })

  test('a RawJson run input is recorded exactly', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', () => 1)
    const r = mesh.runSync(wf([agentNode('n', 'a')]), { runId: 'raw-in', input: new RawJson('{"f": 1.0, "z": -0, "u": 18446744073709551615}') })
    const canonical = am.canonicalLogSync(r.logPath).toString('utf8')
    assert.ok(canonical.includes('"input":{"f":1.0,"u":18446744073709551615,"z":-0.0}'), canonical.split('\n')[1])
  })

  test('the activation as an agent sees it', async () => {
    const dir = tmpdir()
    const seen = []
    const FIELDS = ['id', 'runId', 'node', 'kind', 'name', 'attempt', 'visit', 'delayMs', 'timeoutMs', 'prompt', 'seed', 'step', 'input', 'deps']
    const record = (act) => {
      assert.ok(act.signal instanceof AbortSignal)
      assert.equal(act.signal.aborted, false)
      assert.equal(typeof act.cancelRun, 'function')
      const fields = {}
      for (const k of FIELDS) if (act[k] !== undefined) fields[k] = act[k]
      seen.push(fields)
    }
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('inspect', (act) => {
      record(act)
      if (act.attempt === 1) throw new ActivationError('Again', 'retry me')
      return { a: act.attempt }
    })
    mesh.tool('lookup', async (act) => {
      record(act)
      return 'found'
    })
    const w = wf([
      agentNode('first', 'inspect', { timeoutMs: 1000, retry: { maxAttempts: 2, backoffMs: 7 } }),
      { id: 'look', type: 'tool', tool: 'lookup', after: ['first'] },
    ])
    const r = await mesh.run(w, { runId: 'fields', seed: 42, input: { q: 'x', n: [1, 2] } })
    assert.equal(r.status, 'completed')
    const seeds = seen.map((a) => a.seed)
    for (const s of seeds) assert.equal(typeof s, 'bigint')
    assert.deepEqual(seen.map(({ seed, ...rest }) => rest), [
      { id: 3, runId: 'fields', node: 'first', kind: 'agent', name: 'inspect', attempt: 1, visit: 1, delayMs: 0, timeoutMs: 1000, step: 1, input: { q: 'x', n: [1, 2] }, deps: {} },
      { id: 6, runId: 'fields', node: 'first', kind: 'agent', name: 'inspect', attempt: 2, visit: 1, delayMs: 7, timeoutMs: 1000, step: 2, input: { q: 'x', n: [1, 2] }, deps: {} },
      { id: 9, runId: 'fields', node: 'look', kind: 'tool', name: 'lookup', attempt: 1, visit: 1, delayMs: 0, step: 3, input: { q: 'x', n: [1, 2] }, deps: { first: { a: 2 } } },
    ])
    // Ids are the seqs of the scheduling events.
    const scheduled = events(r.logPath).filter((e) => e.type.endsWith('Scheduled')).map((e) => [e.seq, e.node, e.attempt])
    assert.deepEqual(scheduled, seen.map((a) => [a.id, a.node, a.attempt]))
    // Seeds are deterministic per activation: runSync with the same seed sees the same ones;
    // another run seed gives others.
    const again = []
    const syncMesh = new Mesh()
    syncMesh.agent('inspect', (act) => {
      again.push(act.seed)
      if (act.attempt === 1) throw new ActivationError('Again', 'retry me')
      return { a: act.attempt }
    })
    syncMesh.tool('lookup', (act) => {
      again.push(act.seed)
      return 'found'
    })
    syncMesh.runSync(w, { runId: 'fields', seed: 42, input: { q: 'x', n: [1, 2] } })
    assert.deepEqual(again, seeds)
    assert.notEqual(seeds[0], seeds[2])
    const other = []
    syncMesh.tool('lookup', (act) => other.push(act.seed) && 'found')
    syncMesh.agent('inspect', (act) => other.push(act.seed) && { a: 2 })
    syncMesh.runSync(w, { runId: 'fields', seed: 43n, input: { q: 'x', n: [1, 2] } })
    assert.notEqual(other[0], seeds[0])
  })

  test('the run seed: a number, a bigint or a decimal string, up to 2^64 - 1', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', () => 1)
    const w = wf([agentNode('n', 'a')])
    for (const [seed, want, id] of [[7, 7n, 's1'], [18446744073709551615n, 18446744073709551615n, 's2'], ['18446744073709551615', 18446744073709551615n, 's3']]) {
      const r = mesh.runSync(w, { seed, runId: id })
      assert.equal(am.readHeader(r.logPath).seed, want)
      assert.equal(events(r.logPath)[0].data.seed, want)
    }
  })
})

// registration and options ----------------------------------------------------------------

describe('registration and options', () => {
  test('an unregistered agent or tool is an UnknownAgentError naming it, before any file', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: path.join(dir, 'logs') })
    mesh.agent('planner', () => 1)
    const w = wf([agentNode('p', 'planner'), agentNode('w', 'writer'), { id: 's', type: 'tool', tool: 'search' }], 'needs')
    const e = await rejected(mesh.run(w, { runId: 'u' }))
    assertError(e, UnknownAgentError, 'UNKNOWN_AGENT')
    assert.equal(
      e.message,
      "[UNKNOWN_AGENT] workflow 'needs' uses agent 'writer', tool 'search', not registered with this mesh (registered agents: 'planner'; tools: none)",
    )
    const e2 = thrown(() => mesh.runSync(w, { runId: 'u' }))
    assertError(e2, UnknownAgentError, 'UNKNOWN_AGENT')
    // A tool is not an agent of the same name.
    mesh.agent('search', () => 1).agent('writer', () => 1)
    const e3 = thrown(() => mesh.runSync(w, { runId: 'u' }))
    assert.equal(
      e3.message,
      "[UNKNOWN_AGENT] workflow 'needs' uses tool 'search' (registered as an agent, not a tool), not registered with this mesh " +
        "(registered agents: 'planner', 'search', 'writer'; tools: none)",
    )
    assertNoFiles(dir)
  })

  test('UNKNOWN_AGENT names the nearest registered name (a typo)', async () => {
    const mesh = new Mesh().agent('planner', () => 1).agent('writer', () => 1).tool('save', () => 1)
    const typo = wf([agentNode('p', 'planer'), agentNode('w', 'Writer'), agentNode('x', 'unrelated'), { id: 's', type: 'tool', tool: 'sav' }], 'typos')
    const e = await rejected(mesh.run(typo))
    assertError(e, UnknownAgentError, 'UNKNOWN_AGENT')
    assert.equal(
      e.message,
      "[UNKNOWN_AGENT] workflow 'typos' uses agent 'Writer' (did you mean 'writer'?), agent 'planer' (did you mean 'planner'?), " +
        "agent 'unrelated', tool 'sav' (did you mean 'save'?), not registered with this mesh " +
        "(registered agents: 'planner', 'writer'; tools: 'save')",
    )
  })

  test('registering something that is not a function, or a name that is not a string', () => {
    const mesh = new Mesh()
    for (const bad of ['not a function', null, undefined, 5, {}]) {
      assertError(thrown(() => mesh.agent('x', bad)), InvalidArgumentError, 'INVALID_ARGUMENT')
      assertError(thrown(() => mesh.tool('x', bad)), InvalidArgumentError, 'INVALID_ARGUMENT')
    }
    assertError(thrown(() => mesh.agent(5, () => 1)), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => mesh.tool(Symbol('s'), () => 1)), InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(mesh.agent('ok', () => 1), mesh) // chains
    assert.equal(mesh.tool('ok', () => 1), mesh)
  })

  test('invalid run options are InvalidArgumentErrors before any file is created', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: path.join(dir, 'logs') })
    mesh.agent('a', () => assert.fail('no agent may run'))
    const w = wf([agentNode('n', 'a')])
    const bad = [
      { runid: 'typo' },
      { runId: 5 },
      { runId: '../escape' },
      { runId: '' },
      { tenant: 5 },
      { tenant: 'a\nb' },
      { seed: -1 },
      { seed: 1.5 },
      { seed: 2n ** 64n },
      { seed: 'x' },
      { input: { x: NaN } },
      { input: () => 1 },
      { input: new Map() },
      { signal: {} },
      { signal: 'yes' },
    ]
    for (const options of bad) {
      const e = await rejected(mesh.run(w, options))
      assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
      if (!('signal' in options)) assertError(thrown(() => mesh.runSync(w, options)), InvalidArgumentError, 'INVALID_ARGUMENT')
    }
    assert.match((await rejected(mesh.run(w, { runid: 'typo' }))).message, /unknown option 'runid'/)
    // runSync has no signal option.
    const e = thrown(() => mesh.runSync(w, { signal: new AbortController().signal }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.match(e.message, /unknown option 'signal'/)
    assertError(await rejected(mesh.run(w, 'options')), InvalidArgumentError, 'INVALID_ARGUMENT')
    for (const notWorkflow of [null, undefined, 'w', { name: 't', nodes: [] }]) {
      assertError(await rejected(mesh.run(notWorkflow)), InvalidArgumentError, 'INVALID_ARGUMENT')
    }
    // resume and fork options.
    assertError(await rejected(mesh.resume(path.join(dir, 'x.jsonl'), { approval: {} })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => mesh.resumeSync(path.join(dir, 'x.jsonl'), { signal: null })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(await rejected(mesh.fork(path.join(dir, 'x.jsonl'), 1, { override: {} })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => mesh.forkSync(path.join(dir, 'x.jsonl'), 1, { runId: 7 })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => mesh.resumeSync(42)), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertNoFiles(dir)
  })

  test('invalid Mesh options are InvalidArgumentErrors', () => {
    for (const options of [{ fsync: 'sometimes' }, { fsync: true }, { fsync: null }, { logdir: 'x' }, { logDir: 5 }, 'x']) {
      assertError(thrown(() => new Mesh(options)), InvalidArgumentError, 'INVALID_ARGUMENT')
    }
    assert.match(thrown(() => new Mesh({ fsync: 'sometimes' })).message, /fsync must be always, batch or never/)
    const m = new Mesh({ fsync: 'always', logDir: null })
    assert.equal(m.fsync, 'always')
    assert.equal(m.logDir, null)
    assert.equal(new Mesh().fsync, 'batch')
  })

  test('the same run id twice in one logDir is a RunExistsError; the log is kept', () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('a', (act) => act.input)
    const w = wf([agentNode('n', 'a')])
    const r = mesh.runSync(w, { runId: 'once', input: 1 })
    const before = fs.readFileSync(r.logPath)
    const e = thrown(() => mesh.runSync(w, { runId: 'once', input: 2 }))
    assertError(e, am.RunExistsError, 'RUN_EXISTS')
    assert.ok(fs.readFileSync(r.logPath).equals(before))
  })
})

test('run: a result that settles after its deadline (the agent blocked the thread) is a timeout, as with runSync', async () => {
  const w = Workflow.fromObject({ name: 'late', nodes: [{ id: 'slow', type: 'agent', agent: 'busy', timeoutMs: 30 }] })
  for (const sync of [false, true]) {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('busy', () => {
      const until = performance.now() + 80
      while (performance.now() < until) {
        // blocks the event loop past the deadline, then returns a result
      }
      return 'late'
    })
    const r = sync ? mesh.runSync(w, { runId: 'late' }) : await mesh.run(w, { runId: 'late' })
    assert.equal(r.status, 'failed', `sync=${sync}`)
    assert.equal(r.error.code, 'TIMEOUT')
    const events = am.readLogSync(r.logPath)
    assert.deepEqual(
      events.filter((e) => e.type === 'agentFailed').map((e) => e.data.error.kind),
      ['timeout'],
    )
    assert.ok(!events.some((e) => e.type === 'agentCompleted'))
  }
})
