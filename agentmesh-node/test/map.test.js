'use strict'
// Map nodes and `reads` through the public API (docs/workflow.md): one activation per item of
// an array, its `act.item`, outputs in item order whatever the finish order, the
// `concurrency` window, maps over tools, collected and failing items, bad arrays, `reads` of
// earlier values, and a crash in the middle of a map resumed without redoing finished items.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs, rejected } = require('./support/helpers')
const { register } = require('./support/map-child')

const { Mesh, Workflow, ActivationError, AgentFailedError } = am
const tmpdir = tempDirs('map')

/** A Promise and its resolve. */
function deferred() {
  let resolve
  const promise = new Promise((r) => {
    resolve = r
  })
  return { promise, resolve }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

/** planner → map(researcher over its questions) → writer, with `map` options added. */
function researchWorkflow(map = {}) {
  return Workflow.builder('research')
    .agent('plan', 'planner')
    .map('research', { agent: 'researcher', over: '/outputs/plan/questions', after: 'plan', itemKey: '/id', ...map })
    .agent('write', 'writer', { after: 'research' })
    .build()
}

const questions = (n) => Array.from({ length: n }, (_, i) => ({ id: `q${i}`, text: `question ${i}` }))

/** A mesh whose planner plans `input.n` questions and whose writer returns its deps. */
function researchMesh(researcher, logDir = tmpdir()) {
  return new Mesh({ logDir })
    .agent('planner', (act) => ({ questions: questions(act.input.n) }))
    .agent('researcher', researcher)
    .agent('writer', (act) => ({ research: act.deps.research }))
}

/** The events of a finished run's log. */
const events = (r) => am.readLogSync(r.logPath)

describe('map nodes', () => {
  test('planner → map → writer: N comes from the planner; outputs arrive in item order though items finish in reverse', async () => {
    const N = 5
    const seen = []
    const finished = []
    const done = new Map() // index → deferred, resolved when the item finished
    const gate = (i) => {
      if (!done.has(i)) done.set(i, deferred())
      return done.get(i)
    }
    // Item i finishes only after item i + 1 did: they finish N-1, ..., 1, 0.
    const mesh = researchMesh(async (act) => {
      const { node, kind, name, step, item, deps, reads } = act
      seen.push({ node, kind, name, step, item, deps, reads })
      if (item.index + 1 < act.deps.plan.questions.length) await gate(item.index + 1).promise
      finished.push(item.index)
      gate(item.index).resolve()
      return { key: item.key, answer: `answer to ${item.value.text}` }
    })
    const r = await mesh.run(researchWorkflow(), { input: { n: N }, runId: 'reverse', seed: 3 })
    assert.equal(r.status, 'completed')
    assert.deepEqual(finished, [4, 3, 2, 1, 0])
    // One activation per item, all in one step, each with its item.
    assert.equal(seen.length, N)
    assert.deepEqual(new Set(seen.map((a) => a.step)).size, 1)
    const plan = { questions: questions(N) }
    assert.deepEqual(
      seen.sort((a, b) => a.item.index - b.item.index),
      questions(N).map((q, i) => ({
        node: 'research',
        kind: 'agent',
        name: 'researcher',
        step: seen[0].step,
        item: { index: i, key: q.id, value: q },
        deps: { plan },
        reads: {},
      })),
    )
    const answers = questions(N).map((q) => ({ key: q.id, answer: `answer to ${q.text}` }))
    assert.deepEqual(r.output, { write: { research: answers } })
    // The log: each scheduled item names its index and key, then mapCompleted.
    const log = events(r)
    const scheduled = log.filter((e) => e.type === 'agentScheduled' && e.node === 'research')
    assert.deepEqual(scheduled.map((e) => e.data.item), questions(N).map((q, i) => ({ index: i, key: q.id })))
    const mapped = log.filter((e) => e.type === 'mapCompleted')
    assert.deepEqual(mapped.map((e) => [e.node, e.data]), [['research', { items: N }]])
    // Finish order never changes the canonical log: items finishing in order give the same one.
    const forward = researchMesh(async (act) => {
      await tick()
      return { key: act.item.key, answer: `answer to ${act.item.value.text}` }
    })
    const again = await forward.run(researchWorkflow(), { input: { n: N }, runId: 'reverse', seed: 3 })
    assert.equal(again.fingerprint, r.fingerprint)
  })

  test('items without itemKey have no key; any JSON value is an item; zero items run nothing', async () => {
    const items = [1, 'two', null, { a: [1, 2] }, [3], false]
    const seen = []
    const mesh = new Mesh()
      .agent('each', (act) => {
        seen.push(act.item)
        assert.equal('key' in act.item, false)
        assert.equal(act.item.key, undefined)
        // toJSON carries the item and the reads.
        assert.deepEqual(JSON.parse(JSON.stringify(act)).item, act.item)
        assert.deepEqual(JSON.parse(JSON.stringify(act)).reads, {})
        return { got: act.item.value }
      })
      .agent('after', (act) => act.deps.m)
    const wf = Workflow.builder('values').map('m', { agent: 'each', over: '/input/items' }).agent('end', 'after', { after: 'm' }).build()
    const r = await mesh.run(wf, { input: { items } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(seen, items.map((value, index) => ({ index, value })))
    assert.deepEqual(r.output, { end: items.map((got) => ({ got })) })
    // Zero items: the map completes at once with [], its agent never runs.
    seen.length = 0
    const empty = mesh.runSync(wf, { input: { items: [] } })
    assert.equal(empty.status, 'completed')
    assert.deepEqual(seen, [])
    assert.deepEqual(empty.output, { end: [] })
  })

  test('an activation that is not a map item has item undefined and reads {}', () => {
    let act
    const r = new Mesh().agent('a', (a) => ((act = a), 1)).runSync(Workflow.builder('w').agent('a', 'a').build())
    assert.equal(r.status, 'completed')
    assert.equal(act.item, undefined)
    assert.deepEqual(act.reads, {})
    assert.equal('item' in act.toJSON(), false)
  })

  test('concurrency: 2 never runs more than 2 items at once; without it all items run at once', async () => {
    for (const [concurrency, most] of [[2, 2], [undefined, 7]]) {
      let running = 0
      let peak = 0
      const ran = []
      const mesh = researchMesh(async (act) => {
        running++
        peak = Math.max(peak, running)
        ran.push(act.item.index)
        await tick()
        await tick()
        running--
        return act.item.index
      })
      const r = await mesh.run(researchWorkflow({ concurrency }), { input: { n: 7 } })
      assert.equal(r.status, 'completed')
      assert.equal(peak, most, `concurrency ${concurrency}`)
      assert.deepEqual([...ran].sort(), [0, 1, 2, 3, 4, 5, 6])
      assert.deepEqual(r.output.write.research, [0, 1, 2, 3, 4, 5, 6])
    }
  })

  test('runSync drives a map with a concurrency window to the end, outputs in item order', () => {
    const ran = []
    const mesh = researchMesh((act) => {
      ran.push(act.item.index)
      return act.item.key
    })
    const r = mesh.runSync(researchWorkflow({ concurrency: 2 }), { input: { n: 5 } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(ran, [0, 1, 2, 3, 4])
    assert.deepEqual(r.output.write.research, ['q0', 'q1', 'q2', 'q3', 'q4'])
  })

  test('a map over a tool: one call of the tool per item', async () => {
    const calls = []
    const mesh = new Mesh({ logDir: tmpdir() }).tool('fetch', async (act) => {
      calls.push([act.kind, act.name, act.node, act.item])
      await tick()
      return { page: act.item.value.url.toUpperCase() }
    })
    const wf = Workflow.builder('pages').map('pages', { tool: 'fetch', over: '/input/urls', itemKey: '/url' }).build()
    const urls = [{ url: 'a.example' }, { url: 'b.example' }]
    const r = await mesh.run(wf, { input: { urls } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(calls, [
      ['tool', 'fetch', 'pages', { index: 0, key: 'a.example', value: urls[0] }],
      ['tool', 'fetch', 'pages', { index: 1, key: 'b.example', value: urls[1] }],
    ])
    assert.deepEqual(r.output, { pages: [{ page: 'A.EXAMPLE' }, { page: 'B.EXAMPLE' }] })
    assert.deepEqual(events(r).filter((e) => e.type === 'toolScheduled').map((e) => e.data.item), [
      { index: 0, key: 'a.example' },
      { index: 1, key: 'b.example' },
    ])
  })

  test('onItemFailure collect: the map completes with {ok, output} / {ok, error} per item; a retried item keeps its item', async () => {
    const attempts = []
    const mesh = researchMesh((act) => {
      const i = act.item.index
      attempts.push([i, act.attempt, act.item.key])
      if (i === 1) throw new ActivationError('NotFound', `nothing for ${act.item.key}`, { retryable: false })
      if (i === 2 && act.attempt === 1) throw new ActivationError('Flaky', 'try again')
      if (i === 3) throw new RangeError('bad index')
      return `found ${act.item.key}`
    })
    const wf = researchWorkflow({ onItemFailure: 'collect', retry: { maxAttempts: 2 } })
    const r = await mesh.run(wf, { input: { n: 4 } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output.write.research, [
      { ok: true, output: 'found q0' },
      { ok: false, error: { type: 'NotFound', message: 'nothing for q1' } },
      { ok: true, output: 'found q2' },
      { ok: false, error: { type: 'RangeError', message: 'bad index' } },
    ])
    // Only item 2 ran again (NotFound is not retryable, RangeError a programming error).
    assert.deepEqual(attempts.sort(), [[0, 1, 'q0'], [1, 1, 'q1'], [2, 1, 'q2'], [2, 2, 'q2'], [3, 1, 'q3']])
    assert.deepEqual(events(r).filter((e) => e.type === 'mapCompleted').map((e) => e.data), [{ items: 4, failed: 2 }])
  })

  test('an item failing for good fails the run (AGENT_FAILED naming the node and item); the cause is that item\'s throw', async () => {
    const thrownBy = new Map()
    const mesh = researchMesh((act) => {
      const i = act.item.index
      if (i === 0) return 'fine'
      const e = new ActivationError('Broken', `item ${i} broke`, { retryable: false })
      thrownBy.set(i, e)
      throw e
    })
    let writerRan = false
    mesh.agent('writer', () => {
      writerRan = true
      return null
    })
    const e = await rejected(mesh.run(researchWorkflow(), { input: { n: 3 } }))
    assert.ok(e instanceof AgentFailedError, e.stack)
    assert.equal(e.node, 'research')
    assert.equal(e.result.status, 'failed')
    assert.equal(e.result.error.code, 'AGENT_FAILED')
    // Items 1 and 2 both failed in one commit: the first recorded fails the run.
    assert.match(e.message, /^\[AGENT_FAILED\] node 'research' item 1 \('q1'\) failed on attempt 1\/1: Broken: item 1 broke$/)
    assert.equal(e.cause, thrownBy.get(1))
    assert.equal(writerRan, false)
  })

  test('a bad array fails the run: INVALID_OUTPUT or LIMIT_EXCEEDED naming the map and the path', async () => {
    const cases = [
      [{ questions: 'not a list' }, {}, 'INVALID_OUTPUT', "map 'research': /outputs/plan/questions is a string, not an array"],
      [{ other: [] }, {}, 'INVALID_OUTPUT', "map 'research': /outputs/plan/questions is missing (no array to map over)"],
      [{ questions: [{ id: 'a' }, { id: 'a' }] }, {}, 'INVALID_OUTPUT', "map 'research': items 0 and 1 have the same key 'a'"],
      [{ questions: [{ id: 'a' }, { text: 'no id' }] }, {}, 'INVALID_OUTPUT', "map 'research': item 1 has nothing at its itemKey, not a string or an integer"],
      [{ questions: questions(3) }, { maxItems: 2 }, 'LIMIT_EXCEEDED', "map 'research': /outputs/plan/questions holds 3 items; maxItems is 2"],
    ]
    for (const [plan, map, code, message] of cases) {
      let researched = 0
      const mesh = researchMesh(() => researched++, null).agent('planner', () => plan)
      for (const r of [await mesh.run(researchWorkflow(map)), mesh.runSync(researchWorkflow(map))]) {
        assert.equal(r.status, 'failed', message)
        assert.equal(r.error.code, code, message)
        assert.equal(r.error.node, 'research', message)
        assert.ok(r.error.message.includes(message), `${r.error.message} should say: ${message}`)
      }
      assert.equal(researched, 0)
    }
  })
})

describe('reads', () => {
  test('an activation reads outputs of nodes it does not depend on, visit counts and the input', async () => {
    const seen = {}
    const mesh = new Mesh({ logDir: tmpdir() })
    for (const name of ['a', 'b', 'c', 'd']) {
      mesh.agent(name, (act) => {
        seen[name] = { deps: act.deps, reads: act.reads }
        return { from: name, notes: `${name} notes` }
      })
    }
    const wf = Workflow.builder('reads')
      .agent('a', 'a')
      .agent('b', 'b', { after: 'a' })
      .agent('c', 'c', { after: 'b', reads: ['/outputs/a/notes', '/outputs/a', '/visits/a', '/input/topic', '/input/missing', '/outputs/d'] })
      .agent('d', 'd', { after: 'c' })
      .human('ok', { after: 'd', reads: '/outputs/b/notes' })
      .build()
    const r = await mesh.run(wf, { input: { topic: 'rust' } })
    assert.equal(r.status, 'waiting')
    assert.deepEqual(seen.a, { deps: {}, reads: {} })
    // c depends on b only; reads bring a's output, a's visit count and the input. A path with
    // no value yet (d has not run, the input has no `missing`) is left out.
    assert.deepEqual(seen.c, {
      deps: { b: { from: 'b', notes: 'b notes' } },
      reads: { '/outputs/a/notes': 'a notes', '/outputs/a': { from: 'a', notes: 'a notes' }, '/visits/a': 1, '/input/topic': 'rust' },
    })
    // A human activation carries its reads too.
    assert.deepEqual(r.waiting.map((a) => [a.node, a.reads]), [['ok', { '/outputs/b/notes': 'b notes' }]])
    // The scheduled event records where each value came from (its seq); visit counts are not listed.
    const log = events(r)
    const completed = (node) => log.find((e) => e.type === 'agentCompleted' && e.node === node).seq
    const scheduledC = log.find((e) => e.type === 'agentScheduled' && e.node === 'c')
    assert.deepEqual(scheduledC.data.reads, { '/input/topic': 1, '/outputs/a': completed('a'), '/outputs/a/notes': completed('a') })
  })

  test('every item of a map gets the map\'s reads', () => {
    const reads = []
    const mesh = researchMesh((act) => {
      reads.push(act.reads)
      return act.item.index
    })
    const wf = researchWorkflow({ reads: ['/input/style'] })
    const r = mesh.runSync(wf, { input: { n: 3, style: 'terse' } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(reads, [{ '/input/style': 'terse' }, { '/input/style': 'terse' }, { '/input/style': 'terse' }])
  })
})

describe('a crash in the middle of a map', () => {
  const CHILD = path.join(__dirname, 'support', 'map-child.js')
  const lines = (file) => fs.readFileSync(file, 'utf-8').trimEnd().split('\n')

  /** Run the map in a child that exits inside item `exitAt`; the log path and what ran. */
  function crash(concurrency, exitAt) {
    const logDir = tmpdir()
    const counter = path.join(logDir, 'executions.txt')
    const wf = researchWorkflow({ concurrency })
    const args = { logDir, runId: `crash-${concurrency}`, workflow: wf.toJson(), input: { n: 5 }, counter, exitAt }
    const child = childProcess.spawnSync(process.execPath, [CHILD, JSON.stringify(args)], { encoding: 'utf-8', timeout: 60_000 })
    assert.equal(child.status, 9, `the child should exit inside item ${exitAt}: ${child.stdout}${child.stderr}`)
    return { wf, counter, logPath: path.join(logDir, `${args.runId}.jsonl`) }
  }

  /** Resume the crashed run here: items finished before the crash are not run again. */
  async function resumed({ wf, counter, logPath }) {
    assert.equal(am.recordedWorkflow(logPath).hash, wf.hash)
    const mesh = register(new Mesh({ logDir: path.dirname(logPath) }), counter, -1)
    const r = await mesh.resume(logPath)
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { write: { answers: questions(5).map((q) => `answer to ${q.text}`) } })
    // Every item completed exactly once in the log.
    const log = events(r)
    const scheduled = new Map(log.filter((e) => e.type === 'agentScheduled' && e.node === 'research').map((e) => [e.seq, e.data.item.index]))
    const completed = log.filter((e) => e.type === 'agentCompleted' && e.node === 'research').map((e) => scheduled.get(e.parentSeq))
    assert.deepEqual(completed.sort(), [0, 1, 2, 3, 4])
    return r
  }

  test('concurrency 1: items 0-2 finished, item 3 crashed; the resume runs items 3 and 4 only', async () => {
    const crashed = crash(1, 3)
    assert.deepEqual(lines(crashed.counter), ['plan', 'research 0', 'research 1', 'research 2', 'research 3'])
    // The log as the crash left it: every item was scheduled at the step's start (the window
    // only holds back handing them out); items 3 and 4 are pending, each with its item.
    const state = am.stateAtSync(crashed.logPath, am.verifyLogSync(crashed.logPath).lastSeq)
    assert.deepEqual(
      state.pending.map((a) => [a.node, a.item]),
      [3, 4].map((i) => ['research', { index: i, key: `q${i}`, value: { id: `q${i}`, text: `question ${i}` } }]),
    )
    await resumed(crashed)
    assert.deepEqual(lines(crashed.counter).slice(5), ['research 3', 'research 4', 'write'])
  })

  test('concurrency 2: items 0-1 finished, items 2-3 in flight at the crash; the resume runs 2, 3 and 4', async () => {
    const crashed = crash(2, 3)
    assert.deepEqual(lines(crashed.counter), ['plan', 'research 0', 'research 1', 'research 2', 'research 3'])
    await resumed(crashed)
    assert.deepEqual(lines(crashed.counter).slice(5), ['research 2', 'research 3', 'research 4', 'write'])
  })
})
