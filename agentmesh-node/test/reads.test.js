'use strict'
// The read side added in issue 8: checkLog (verify without writing), readLog that streams (a
// reader thread hands over batches; flat memory), and history (the state at seq 1, after every
// step and at the end, in one pass).

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const { Mesh, LogCorruptError, AgentMeshIOError, NondeterminismError } = am
const tmpdir = tempDirs('reads')

/** A finished run looping `n` times over one agent (3 events per loop and more); its log. */
function loopLog(n, dir = tmpdir(), seed = 7) {
  const w = wf(
    [
      agentNode('work', 'count', { maxVisits: n }),
      { id: 'again', type: 'branch', after: ['work'], cases: [{ when: { path: '/visits/work', lt: n }, goto: 'work' }] },
    ],
    'loop',
    { maxSteps: 3 * n + 10 },
  )
  const mesh = new Mesh({ logDir: dir, fsync: 'never' }).agent('count', (act) => ({ visit: act.visit, text: 'é🦀'.repeat(act.visit % 3) }))
  const r = mesh.runSync(w, { runId: `loop-${n}`, seed })
  assert.equal(r.status, 'completed')
  return r.logPath
}

async function collect(iterable) {
  const out = []
  for await (const x of iterable) out.push(x)
  return out
}

describe('checkLog', () => {
  test('reports like verifyLog; a torn tail is reported (tornAt) and left as it is', async () => {
    const log = loopLog(3)
    assert.deepEqual(am.checkLogSync(log), am.verifyLogSync(log))
    const size = fs.statSync(log).size
    fs.appendFileSync(log, '{"seq":99,"ty')
    const before = fs.readFileSync(log)
    for (const report of [am.checkLogSync(log), await am.checkLog(log)]) {
      assert.equal(report.tornAt, size)
      assert.equal(report.repaired, null)
      assert.equal(report.bytes, size)
    }
    assert.ok(fs.readFileSync(log).equals(before), 'checkLog wrote to the log')
    assert.deepEqual(fs.readdirSync(path.dirname(log)), [path.basename(log)])
    // verifyLog repairs it.
    assert.equal(am.verifyLogSync(log).repaired.offset, size)
    assert.equal(fs.statSync(log).size, size)
  })

  test('damage before the tail is LogCorruptError; a missing file AgentMeshIOError', async () => {
    const log = loopLog(2)
    const text = fs.readFileSync(log, 'utf8')
    const at = text.indexOf('\n') + 5
    fs.writeFileSync(log, text.slice(0, at) + 'X' + text.slice(at + 1))
    assertError(thrown(() => am.checkLogSync(log)), LogCorruptError, 'LOG_CORRUPT')
    assertError(await rejected(am.checkLog(path.join(tmpdir(), 'none.jsonl'))), AgentMeshIOError, 'IO')
  })
})

describe('readLog streams', () => {
  test('a log of several batches: the same events as readLogSync, in order; a 64-bit seed exactly', async () => {
    const log = loopLog(2500, tmpdir(), 18446744073709551615n)
    const all = am.readLogSync(log)
    assert.ok(all.length > 8192, `${all.length} events`)
    const streamed = await collect(am.readLog(log))
    assert.deepEqual(streamed, all)
    assert.equal(streamed[0].type, 'runStarted')
    assert.equal(streamed[0].data.seed, 18446744073709551615n)
    assert.deepEqual(streamed.map((e) => e.seq), all.map((_, i) => i + 1))
  })

  test('stopping early closes the stream; reading again works', async () => {
    const log = loopLog(2000)
    let n = 0
    for await (const e of am.readLog(log)) {
      assert.equal(e.seq, ++n)
      if (n === 10) break
    }
    assert.equal((await collect(am.readLog(log))).length, am.readLogSync(log).length)
  })

  test('for…of instead of for await: a TypeError naming the way out, before the log is opened', async () => {
    const log = loopLog(2)
    for (const [fn, item] of [['readLog', 'event'], ['history', 'state']]) {
      const e = thrown(() => {
        for (const x of am[fn](log)) void x
      })
      assert.ok(e instanceof TypeError)
      assert.equal(e.message, `${fn}(path) is an async iterator: use \`for await (const ${item} of ${fn}(path))\`, or ${fn}Sync(path) for an array`)
      assert.ok(thrown(() => Array.from(am[fn](log))) instanceof TypeError)
      // The iterator was never opened: used the right way, it reads from the start.
      const it = am[fn](log)
      assert.ok(thrown(() => [...it]) instanceof TypeError)
      assert.equal((await collect(it)).length, (fn === 'readLog' ? am.readLogSync(log) : am.historySync(log)).length)
    }
  })

  test('errors reject: a missing file at the first next(), damage in the middle after the events before it', async () => {
    const missing = am.readLog(path.join(tmpdir(), 'missing.jsonl'))
    assertError(await rejected(missing.next()), AgentMeshIOError, 'IO')
    const log = loopLog(2000)
    const text = fs.readFileSync(log, 'utf8')
    const at = Math.floor(text.length * 0.8)
    fs.writeFileSync(log, text.slice(0, at) + (text[at] === 'x' ? 'y' : 'x') + text.slice(at + 1))
    let seen = 0
    const e = await rejected(
      (async () => {
        for await (const _ of am.readLog(log)) seen++
      })(),
    )
    assertError(e, LogCorruptError, 'LOG_CORRUPT')
    assert.ok(seen > 0)
  })
})

describe('history', () => {
  test('historySync and history: the state at seq 1, after every step and at the end, as stateAt gives it', async () => {
    const log = loopLog(4)
    const states = am.historySync(log)
    assert.deepEqual(await collect(am.history(log)), states)
    assert.equal(states[0].seq, 1)
    const last = am.readLogSync(log).at(-1).seq
    assert.equal(states.at(-1).seq, last)
    assert.equal(states.at(-1).status, 'completed')
    for (const s of states) assert.deepEqual(am.stateAtSync(log, s.seq), s)
    const steps = am.readLogSync(log).filter((e) => e.type === 'stepStarted').length
    assert.ok(states.length >= steps, `${states.length} states for ${steps} steps`)
  })

  test('a long history streams in batches; stopping early is fine', async () => {
    const log = loopLog(300)
    let n = 0
    for await (const s of am.history(log)) {
      assert.equal(typeof s.seq, 'number')
      if (++n === 100) break
    }
    assert.equal((await collect(am.history(log))).length, am.historySync(log).length)
  })

  test('a log that disagrees with its workflow rejects with NondeterminismError', async () => {
    const log = loopLog(2)
    const lines = fs.readFileSync(log, 'utf8').split('\n')
    // A second log whose recorded decisions differ from what its workflow decides.
    const i = lines.findIndex((l) => l.includes('"agentScheduled"'))
    assert.ok(i > 0)
    const other = path.join(path.dirname(log), 'bad.jsonl')
    fs.writeFileSync(other, lines.filter((_, k) => k !== i).join('\n'))
    const e = thrown(() => am.historySync(other))
    assert.ok(e instanceof LogCorruptError || e instanceof NondeterminismError, String(e))
    const e2 = await rejected(collect(am.history(other)))
    assert.equal(e2.code, e.code)
  })
})
