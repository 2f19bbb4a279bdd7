'use strict'
// One timeout rule in every host (issue 8, §4): an activation's deadline is `timeoutMs`
// after it starts running (after its `delayMs`), and a result is a timeout only if it settled
// after its deadline — whatever else held up the JS thread before the driver recorded it.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode } = require('./support/helpers')
const { exactText, loadScript } = require('./support/script')

const { Mesh, RawJson } = am
const tmpdir = tempDirs('deadline')
const VECTOR = path.resolve(__dirname, '..', '..', 'bindings-tests', 'vectors', 'parallel_deadlines')

/** Block the JS thread (a synchronous agent working). */
function blockFor(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** `n` microtask hops, then `fn`. */
function afterHops(n, fn) {
  let p = Promise.resolve()
  for (let i = 0; i < n; i++) p = p.then(() => undefined)
  p.then(fn)
}

const failures = (logPath) => am.readLogSync(logPath).filter((e) => e.type === 'agentFailed').map((e) => [e.node, e.data.error.kind])

describe('runSync: each deadline starts when its own agent starts', () => {
  test('three 60 ms agents of one step with timeoutMs 100 all complete', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('work', (act) => {
      blockFor(60)
      return act.node
    })
    const w = wf(['a', 'b', 'c'].map((id) => agentNode(id, 'work', { timeoutMs: 100 })))
    const r = mesh.runSync(w, { runId: 'three' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { a: 'a', b: 'b', c: 'c' })
    assert.deepEqual(failures(r.logPath), [])
  })

  test('an agent that overran its own deadline is still a timeout', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('quick', () => 'quick')
    mesh.agent('slow', () => {
      blockFor(80)
      return 'late'
    })
    const r = mesh.runSync(wf([agentNode('q', 'quick', { timeoutMs: 30 }), agentNode('s', 'slow', { timeoutMs: 30 })]), { runId: 'overran' })
    assert.equal(r.status, 'failed')
    assert.equal(r.error.code, 'TIMEOUT')
    assert.deepEqual(failures(r.logPath), [['s', 'timeout']])
  })

  test('the deadline starts after the retry delay', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('flaky', (act) => {
      if (act.attempt === 1) throw new am.ActivationError('Flaky', 'again')
      blockFor(30)
      return act.attempt
    })
    const r = mesh.runSync(wf([agentNode('f', 'flaky', { timeoutMs: 80, retry: { maxAttempts: 2, backoffMs: 80 } })]), { runId: 'delay' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { f: 2 })
  })
})

describe('run(): a result is a timeout only if it settled after its deadline', () => {
  test('a sync agent that returned at 60 ms (timeoutMs 100) while a sibling blocked the thread past 100 ms completes', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('sixty', () => {
      blockFor(60)
      return 'in time'
    })
    mesh.agent('hog', () => {
      blockFor(80)
      return 'hogged'
    })
    const w = wf([agentNode('a', 'sixty', { timeoutMs: 100 }), agentNode('b', 'hog', { timeoutMs: 1000 })])
    const r = await mesh.run(w, { runId: 'blocked-sync' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { a: 'in time', b: 'hogged' })
    assert.deepEqual(failures(r.logPath), [])
  })

  test('a Promise that settled at 60 ms (timeoutMs 100) while the thread was then blocked past 100 ms completes', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('sixty', async () => {
      await new Promise((resolve) => setTimeout(resolve, 60))
      // Two hops after this Promise settles, the thread is blocked for 60 ms: the driver gets
      // to the result only after the deadline passed, but the result settled before it.
      afterHops(2, () => blockFor(60))
      return 'in time'
    })
    const r = await mesh.run(wf([agentNode('a', 'sixty', { timeoutMs: 100 })]), { runId: 'blocked-async' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { a: 'in time' })
  })

  test('a result that settles after its deadline is a timeout, its value dropped', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('late', async () => {
      blockFor(60)
      return 'too late'
    })
    const r = await mesh.run(wf([agentNode('a', 'late', { timeoutMs: 20 })]), { runId: 'overdue' })
    assert.equal(r.status, 'failed')
    assert.equal(r.error.code, 'TIMEOUT')
    assert.ok(!am.canonicalLogSync(r.logPath).toString().includes('too late'))
  })

  test('an async agent started after a retry delay gets its whole timeout', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('flaky', async (act) => {
      if (act.attempt === 1) throw new am.ActivationError('Flaky', 'again')
      await new Promise((resolve) => setTimeout(resolve, 40))
      return act.attempt
    })
    const r = await mesh.run(wf([agentNode('f', 'flaky', { timeoutMs: 80, retry: { maxAttempts: 2, backoffMs: 60 } })]), { runId: 'delay' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { f: 2 })
  })
})

test('parallel_deadlines under runSync: 200 agents of 10 ms each, timeoutMs 1000, all complete; the vector byte for byte', () => {
  const script = loadScript(path.join(VECTOR, 'script.json'))
  const w = am.Workflow.fromFile(path.join(VECTOR, 'workflow.json'))
  const outputs = Object.fromEntries(Object.entries(script.agents).map(([name, [b]]) => [name, exactText(b.output)]))
  const mesh = new Mesh({ logDir: tmpdir(), fsync: 'never' })
  mesh.agent('work', () => {
    blockFor(10) // 200 of them: 2 s of work in one step, 10 ms per agent
    return new RawJson(outputs.work)
  })
  mesh.agent('join', () => new RawJson(outputs.join))
  const r = mesh.runSync(w, { seed: script.seed.text, runId: script.runId })
  assert.equal(r.status, 'completed')
  const actual = am.canonicalLogSync(r.logPath)
  assert.ok(actual.equals(fs.readFileSync(path.join(VECTOR, 'expected.jsonl'))), 'canonical log differs from the vector')
})
