'use strict'
// What an agent returns is recorded as it was when the driver got it (issue 8, defect 18):
// a synchronous agent's value is converted before any microtask can run (also under run()),
// a Promise's value in its settlement callback, so code that changes the value afterwards
// (a microtask the agent queued, a sibling holding a reference) changes nothing in the log.
// And results that settle together are recorded together: one NativeRun.completeAll per
// burst (one write, one fsync with fsync 'always').

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')

const am = require('..')
const native = require('../native.js')
const { poll, outstanding, C } = require('./support/native')
const { tempDirs, wf, agentNode } = require('./support/helpers')

const { Mesh } = am
const tmpdir = tempDirs('settle')

const outputs = (logPath) =>
  Object.fromEntries(am.readLogSync(logPath).filter((e) => e.type === 'agentCompleted').map((e) => [e.node, e.data.output]))

/** `n` microtask hops, then `fn`. */
function after(n, fn) {
  let p = Promise.resolve()
  for (let i = 0; i < n; i++) p = p.then(() => undefined)
  p.then(fn)
}

/** Count NativeRun.completeAll calls (and their sizes) while `fn` runs. */
async function countingCommits(fn) {
  const original = native.NativeRun.prototype.completeAll
  const sizes = []
  native.NativeRun.prototype.completeAll = function (completions, ...rest) {
    sizes.push(completions.length)
    return original.call(this, completions, ...rest)
  }
  try {
    return { result: await fn(), sizes }
  } finally {
    native.NativeRun.prototype.completeAll = original
  }
}

describe('results are snapshotted when they settle', () => {
  test('a sync agent under run(): a microtask it queued before returning does not change the log', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', () => {
      const out = { n: 1, list: ['kept'] }
      queueMicrotask(() => {
        out.n = 2
        out.list.push('added later')
      })
      return out
    })
    const r = await mesh.run(wf([agentNode('x', 'a')]), { runId: 'sync-microtask' })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { x: { n: 1, list: ['kept'] } })
    assert.deepEqual(outputs(r.logPath), { x: { n: 1, list: ['kept'] } })
  })

  test('an Output of a sync agent: value and usage as they were at return', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', () => {
      const usage = { inputTokens: 3, outputTokens: 4 }
      const o = new am.Output({ v: 'first' }, { usage })
      queueMicrotask(() => {
        o.value.v = 'changed'
        usage.inputTokens = 99
      })
      return o
    })
    const r = await mesh.run(wf([agentNode('x', 'a')]), { runId: 'sync-output' })
    const done = am.readLogSync(r.logPath).find((e) => e.type === 'agentCompleted')
    assert.deepEqual(done.data, { output: { v: 'first' }, usage: { inputTokens: 3, outputTokens: 4 } })
  })

  test('an async agent: changes made after its Promise settled are not recorded', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', async () => {
      const out = { n: 1 }
      // Three microtask hops after this Promise settles: long after the driver has its value
      // in hand, before it would have got round to a later commit.
      after(3, () => {
        out.n = 2
      })
      return out
    })
    mesh.agent('b', async () => 'b')
    for (const nodes of [[agentNode('x', 'a')], [agentNode('x', 'a'), agentNode('y', 'b')]]) {
      const r = await mesh.run(wf(nodes), { runId: `async-${nodes.length}` })
      assert.deepEqual(r.output.x, { n: 1 })
      assert.deepEqual(outputs(r.logPath).x, { n: 1 })
    }
  })

  test('a value shared by two agents and changed by the second is recorded as the first returned it', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const shared = { by: 'first' }
    mesh.agent('first', async () => shared)
    mesh.agent('second', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5))
      shared.by = 'second'
      return 'done'
    })
    const r = await mesh.run(wf([agentNode('a', 'first'), agentNode('b', 'second')]), { runId: 'shared' })
    assert.deepEqual(outputs(r.logPath), { a: { by: 'first' }, b: 'done' })
  })

  test('runSync: what a sync agent returned, even if a later sibling changes it', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const shared = { by: 'first' }
    mesh.agent('first', () => shared)
    mesh.agent('second', () => {
      shared.by = 'second'
      return 'done'
    })
    const r = mesh.runSync(wf([agentNode('a', 'first'), agentNode('b', 'second')]), { runId: 'shared-sync' })
    assert.deepEqual(outputs(r.logPath), { a: { by: 'first' }, b: 'done' })
  })
})

describe('a burst of results is one commit', () => {
  const fanOut = (n) => wf([...Array.from({ length: n }, (_, i) => agentNode(`w${i}`, 'work')), agentNode('join', 'work', { after: Array.from({ length: n }, (_, i) => `w${i}`) })])

  test('100 agents settling together under run(): one completeAll for the 100, one for the join', async () => {
    const mesh = new Mesh({ logDir: tmpdir(), fsync: 'always' })
    mesh.agent('work', async (act) => act.node)
    const { result, sizes } = await countingCommits(() => mesh.run(fanOut(100), { runId: 'burst' }))
    assert.equal(result.status, 'completed')
    assert.deepEqual(sizes, [100, 1])
  })

  test('runSync: one completeAll per step', async () => {
    const mesh = new Mesh({ logDir: tmpdir(), fsync: 'always' })
    mesh.agent('work', (act) => act.node)
    const { result, sizes } = await countingCommits(() => mesh.runSync(fanOut(100), { runId: 'burst-sync' }))
    assert.equal(result.status, 'completed')
    assert.deepEqual(sizes, [100, 1])
  })

  test("fsync 'always': a burst of 100 completions costs one fsync (group commit)", () => {
    const native100 = native.NativeWorkflow.fromJson(JSON.stringify({ name: 'f', nodes: Array.from({ length: 100 }, (_, i) => ({ id: `w${i}`, type: 'agent', agent: 'w' })) }))
    const run = native.NativeRun.start(native100, null, { logDir: tmpdir(), runId: 'fsyncs', fsync: 'always' })
    const acts = poll(run)
    assert.equal(acts.length, 100)
    const before = run.fsyncCount()
    assert.equal(run.completeAll(acts.map((a) => C.ok(a, a.node))), null)
    assert.equal(run.status(), 'completed')
    assert.equal(run.fsyncCount() - before, 1)
    run.close()
  })
})
