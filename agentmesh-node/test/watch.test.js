'use strict'
// Watching a run while it runs: `onEvent` (run, resume, fork and their …Sync forms) and the
// event streams (`mesh.stream`, `streamResume`, `streamFork`). Every committed event arrives
// once, in commit order (the file's order), after its commit, as the object readLogSync gives
// plus the `meta` the log holds; a throwing callback or a stream left early stops driving
// like an interruption (nothing final, log released, resumable).

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode, rejected, thrown, assertError } = require('./support/helpers')

const { Mesh, RunStream, RunInterruptedError, AgentFailedError, InvalidArgumentError, UnknownAgentError } = am

const tmpdir = tempDirs('watch')
const FINAL = new Set(['runCompleted', 'runFailed', 'runCancelled'])

/** The log file's event records, in file order (commit order), as written. */
function fileRecords(logPath) {
  return fs.readFileSync(logPath, 'utf8').split('\n').filter((l) => l !== '').slice(1).map((l) => JSON.parse(l))
}

/** An event without its `meta`: the form readLogSync gives. */
function canonical(event) {
  const { meta, ...rest } = event
  return rest
}

/**
 * Delivered events against the finished log: in the file's order with the file's `meta`, and,
 * without `meta`, in seq order, exactly readLogSync's events (`from`: the first seq expected).
 */
function assertDelivered(events, logPath, from = 1) {
  const records = fileRecords(logPath).filter((r) => r.seq >= from)
  assert.deepEqual(events.map((e) => [e.seq, e.meta]), records.map((r) => [r.seq, r.meta]))
  const bySeq = [...events].sort((x, y) => x.seq - y.seq).map(canonical)
  assert.deepEqual(bySeq, am.readLogSync(logPath).filter((e) => e.seq >= from))
}

/** plan, then `slow` and `fast` in parallel (fast's result is committed first), then join. */
const PARALLEL = [
  agentNode('plan', 'a'),
  agentNode('slow', 'later', { after: ['plan'] }),
  agentNode('fast', 'a', { after: ['plan'] }),
  agentNode('join', 'a', { after: ['slow', 'fast'] }),
]

function parallelMesh(logDir, calls = []) {
  const mesh = new Mesh({ logDir })
  mesh.agent('a', (act) => {
    calls.push(act.node)
    return { node: act.node, deps: Object.keys(act.deps).sort() }
  })
  // Settles after `fast` (a later macrotask): its completion, reserved at a lower seq than
  // fast's, is committed after it.
  mesh.agent('later', (act) => {
    calls.push(act.node)
    return new Promise((resolve) => setImmediate(() => setImmediate(() => resolve(act.node))))
  })
  return mesh
}

describe('onEvent', () => {
  test('run: every committed event once, in commit order, after its commit, with meta', async () => {
    const dir = tmpdir()
    const seen = []
    const onDisk = []
    const r = await parallelMesh(dir).run(wf(PARALLEL, 'par'), {
      runId: 'watched',
      onEvent: (e) => {
        seen.push(e)
        // Called after the commit: the event is in the file already.
        onDisk.push(fileRecords(path.join(dir, 'watched.jsonl')).some((rec) => rec.seq === e.seq))
      },
    })
    assert.equal(r.status, 'completed')
    assert.ok(onDisk.every(Boolean))
    assertDelivered(seen, r.logPath)
    // Commit order is not seq order here (slow's completion has the lower seq, fast's is first).
    const seqs = seen.map((e) => e.seq)
    assert.notDeepEqual(seqs, [...seqs].sort((x, y) => x - y))
    // The objects readLogSync gives: `data.seed` of runStarted a bigint, `meta.at` a number,
    // completions' `meta.durUs`.
    assert.equal(seen[0].type, 'runStarted')
    assert.equal(typeof seen[0].data.seed, 'bigint')
    assert.equal(typeof seen[0].meta.at, 'number')
    assert.ok(seen.filter((e) => e.type === 'agentCompleted').every((e) => Number.isInteger(e.meta.durUs)))
    assert.equal(seen.at(-1).type, 'runCompleted')
  })

  test('resume: the events it appends; fork: every event of the fork, the copied prefix first', async () => {
    const dir = tmpdir()
    const human = [agentNode('plan', 'a'), { id: 'ok', type: 'human', after: ['plan'] }, agentNode('after', 'a', { after: ['ok'] })]
    const mesh = parallelMesh(dir)
    const waiting = await mesh.run(wf(human, 'h'), { runId: 'h' })
    assert.equal(waiting.status, 'waiting')
    const before = am.readLogSync(waiting.logPath).length
    const appended = []
    const done = await mesh.resume(waiting.logPath, { approvals: { ok: { yes: true } }, onEvent: (e) => appended.push(e) })
    assert.equal(done.status, 'completed')
    assert.equal(appended[0].type, 'humanResolved')
    assertDelivered(appended, done.logPath, before + 1)

    const forked = []
    const f = await mesh.fork(done.logPath, 4, { runId: 'f', overrides: { plan: 'other' }, onEvent: (e) => forked.push(e) })
    assert.equal(f.status, 'waiting')
    assertDelivered(forked, f.logPath)
    assert.equal(forked[0].runId, 'f')
  })

  test('the …Sync forms call it too', () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir }).agent('a', (act) => act.node)
    const seen = []
    const r = mesh.runSync(wf([agentNode('one', 'a'), agentNode('two', 'a', { after: ['one'] })], 'chain'), { onEvent: (e) => seen.push(e) })
    assert.equal(r.status, 'completed')
    assertDelivered(seen, r.logPath)
    const forked = []
    const f = mesh.forkSync(r.logPath, 4, { runId: 'fs', onEvent: (e) => forked.push(e) })
    assertDelivered(forked, f.logPath)
  })

  test('a throwing onEvent stops driving: its error propagates, nothing final is written, the run resumes', async () => {
    const dir = tmpdir()
    const boom = new Error('the dashboard is down')
    let aborted = null
    const mesh = parallelMesh(dir)
    mesh.agent('later', (act) =>
      new Promise((resolve) => {
        act.signal.addEventListener('abort', () => {
          aborted = act.signal.reason
          resolve('late')
        }, { once: true })
      }))
    const seen = []
    const e = await rejected(
      mesh.run(wf(PARALLEL, 'par'), {
        runId: 'boom',
        onEvent: (ev) => {
          seen.push(ev)
          if (ev.type === 'agentCompleted' && ev.node === 'fast') throw boom
        },
      }),
    )
    assert.equal(e, boom)
    assert.equal(aborted, boom) // the abandoned agent was told
    const logPath = path.join(dir, 'boom.jsonl')
    const types = am.readLogSync(logPath).map((x) => x.type)
    assert.ok(!types.some((t) => FINAL.has(t)), types.join(' '))
    // Nothing was committed after the event that threw.
    assert.equal(seen.at(-1).seq, fileRecords(logPath).at(-1).seq)

    const again = []
    const r = await parallelMesh(dir, again).resume(logPath)
    assert.equal(r.status, 'completed')
    assert.deepEqual(again, ['slow', 'join'])
    const base = await parallelMesh(tmpdir()).run(wf(PARALLEL, 'par'), { runId: 'boom' })
    assert.equal(r.fingerprint, base.fingerprint)
  })

  test('onEvent must be a function', async () => {
    const mesh = parallelMesh(tmpdir())
    const e = await rejected(mesh.run(wf(PARALLEL, 'par'), { onEvent: 'log' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(e.message, '[INVALID_ARGUMENT] onEvent must be a function, not log')
  })
})

describe('event streams', () => {
  test('for await over mesh.stream: the events onEvent gets; stream.result is the RunResult', async () => {
    const dir = tmpdir()
    const s = parallelMesh(dir).stream(wf(PARALLEL, 'par'), { runId: 's' })
    assert.ok(s instanceof RunStream)
    const seen = []
    for await (const e of s) seen.push(e)
    const r = await s.result
    assert.equal(r.status, 'completed')
    assert.equal(r.logPath, path.join(dir, 's.jsonl'))
    assertDelivered(seen, r.logPath)
    // Iterated once: a second loop gets nothing.
    for await (const e of s) assert.fail(`an event twice: ${e.seq}`)
    // for…of (not for await) is a clear TypeError.
    const e = thrown(() => {
      for (const x of parallelMesh(tmpdir()).stream(wf(PARALLEL, 'par'))) void x
    })
    assert.ok(e instanceof TypeError)
    assert.match(e.message, /mesh\.stream\(\) is an async iterator: use `for await/)
  })

  test('it buffers: the driver does not wait for the consumer, and no event is lost', async () => {
    const s = parallelMesh(tmpdir()).stream(wf(PARALLEL, 'par'), { runId: 'b' })
    const r = await s.result // finished before any event was taken
    const seen = []
    for await (const e of s) seen.push(e)
    assertDelivered(seen, r.logPath)
  })

  test('break out of the loop: the run is interrupted, the log released at once, resumable', async () => {
    const dir = tmpdir()
    const mesh = parallelMesh(dir)
    mesh.agent('later', (act) => new Promise((resolve) => act.signal.addEventListener('abort', () => resolve('late'), { once: true })))
    const s = mesh.stream(wf(PARALLEL, 'par'), { runId: 'brk' })
    let last = null
    for await (const e of s) {
      last = e
      if (e.type === 'agentCompleted' && e.node === 'fast') break
    }
    const logPath = path.join(dir, 'brk.jsonl')
    // Released before anything is awaited: another run could take the log now.
    const again = []
    const resumed = parallelMesh(dir, again).resume(logPath)
    const e = await rejected(s.result)
    assert.ok(e instanceof RunInterruptedError)
    assert.equal(e.reason, 'the event stream was closed before the run ended')
    assert.equal(e.logPath, logPath)
    const r = await resumed
    assert.equal(r.status, 'completed')
    assert.deepEqual(again, ['slow', 'join'])
    const stopped = am.readLogSync(logPath).filter((x) => x.seq <= last.seq).map((x) => x.type)
    assert.ok(!stopped.some((t) => FINAL.has(t)))
    const base = await parallelMesh(tmpdir()).run(wf(PARALLEL, 'par'), { runId: 'brk' })
    assert.equal(r.fingerprint, base.fingerprint)
  })

  test('return() called by hand releases the log before it returns', async () => {
    const dir = tmpdir()
    const mesh = parallelMesh(dir)
    mesh.agent('later', (act) => new Promise((resolve) => act.signal.addEventListener('abort', () => resolve('late'), { once: true })))
    const s = mesh.stream(wf(PARALLEL, 'par'), { runId: 'ret' })
    const it = s[Symbol.asyncIterator]()
    while ((await it.next()).value.type !== 'agentScheduled');
    await new Promise((resolve) => setImmediate(resolve)) // the driver waits for `later`
    const closing = it.return()
    // No await in between: the driver is not on the stack, so the log is free now.
    const resumed = parallelMesh(dir).resume(path.join(dir, 'ret.jsonl'))
    assert.deepEqual(await closing, { value: undefined, done: true })
    assert.deepEqual(await it.next(), { value: undefined, done: true })
    assert.ok((await rejected(s.result)) instanceof RunInterruptedError)
    assert.equal((await resumed).status, 'completed')
  })

  test('an exception in the loop body propagates and leaves the run resumable', async () => {
    const dir = tmpdir()
    const mesh = parallelMesh(dir)
    mesh.agent('later', (act) => new Promise((resolve) => act.signal.addEventListener('abort', () => resolve('late'), { once: true })))
    const s = mesh.stream(wf(PARALLEL, 'par'), { runId: 'thr' })
    const oops = new Error('consumer bug')
    const e = await rejected((async () => {
      for await (const ev of s) if (ev.type === 'agentScheduled') throw oops
    })())
    assert.equal(e, oops)
    assert.ok((await rejected(s.result)) instanceof RunInterruptedError)
    assert.equal((await parallelMesh(dir).resume(path.join(dir, 'thr.jsonl'))).status, 'completed')
  })

  test('a failed run: the loop gets every event, then throws what mesh.run rejects with', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir }).agent('a', () => {
      throw new RangeError('bad index')
    })
    const s = mesh.stream(wf([agentNode('one', 'a')], 'fails'), { runId: 'fl' })
    const seen = []
    const e = await rejected((async () => {
      for await (const ev of s) seen.push(ev)
    })())
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.ok(e.cause instanceof RangeError)
    assert.equal(seen.at(-1).type, 'runFailed')
    assertDelivered(seen, path.join(dir, 'fl.jsonl'))
    assert.equal(await rejected(s.result), e)
  })

  test('opening errors are thrown by stream() itself; onEvent is not an option of a stream', () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    const e = thrown(() => mesh.stream(wf([agentNode('one', 'planer')], 'typo')))
    assertError(e, UnknownAgentError, 'UNKNOWN_AGENT')
    const e2 = thrown(() => mesh.stream(wf([agentNode('one', 'a')]), { onEvent: () => {} }))
    assert.match(e2.message, /unknown option 'onEvent'/)
    assert.deepEqual(fs.readdirSync(dir), [])
  })

  test('streamResume and streamFork', async () => {
    const dir = tmpdir()
    const human = [agentNode('plan', 'a'), { id: 'ok', type: 'human', after: ['plan'] }, agentNode('after', 'a', { after: ['ok'] })]
    const mesh = parallelMesh(dir)
    const waiting = await mesh.run(wf(human, 'h'), { runId: 'h' })
    const before = am.readLogSync(waiting.logPath).length
    const s = mesh.streamResume(waiting.logPath, { approvals: { ok: true } })
    const appended = []
    for await (const e of s) appended.push(e)
    assert.equal((await s.result).status, 'completed')
    assertDelivered(appended, waiting.logPath, before + 1)

    const f = mesh.streamFork(waiting.logPath, 4, { runId: 'sf', overrides: { plan: 'x' } })
    const forked = []
    for await (const e of f) forked.push(e)
    const fr = await f.result
    assert.equal(fr.status, 'waiting')
    assertDelivered(forked, fr.logPath)
  })
})
