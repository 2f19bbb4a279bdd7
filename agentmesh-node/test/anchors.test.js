'use strict'
// Anchors (issue 8, §3): the chain catches accidental damage, but a log cut at a record
// boundary is a valid shorter chain, and an editor who recomputes the chain after an edit
// leaves a valid chain too. An anchor taken earlier and kept elsewhere catches both; a keyed anchor
// (a MAC) also resists someone who can rewrite the anchor store but does not hold the key.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const crc32c = require('./support/crc32c')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const { Mesh, LogTruncatedError, LogHeadMismatchError, LogCorruptError, InvalidArgumentError } = am
const tmpdir = tempDirs('anchor')

/** A finished run of a 3-node chain with a human gate in a file; its log path. */
function finishedLog(dir = tmpdir(), runId = 'anchored') {
  const mesh = new Mesh({ logDir: dir })
  mesh.agent('a', (act) => ({ node: act.node, n: act.visit }))
  const r = mesh.runSync(wf([agentNode('x', 'a'), agentNode('y', 'a', { after: ['x'] }), agentNode('z', 'a', { after: ['y'] })]), { runId })
  assert.equal(r.status, 'completed')
  return r.logPath
}

const lines = (file) => fs.readFileSync(file, 'utf8').split('\n').slice(0, -1)

/**
 * Rewrite a format-2 log's chain from record `from` on, as an attacker would after editing it:
 * each record is `{…,"meta":{…},"crc":"<8 hex>"}`, the running CRC32C of every record body
 * so far, a body being the record without its `,"crc":"…"` part (closing brace kept).
 */
function reseal(records, from) {
  const out = records.slice()
  let crc = 0
  for (let i = 0; i < out.length; i++) {
    const m = /,"crc":"([0-9a-f]{8})"\}$/.exec(out[i])
    assert.ok(m, `record ${i} has no crc`)
    if (i < from) {
      crc = parseInt(m[1], 16)
      continue
    }
    const body = out[i].slice(0, m.index) + '}'
    crc = crc32c.append(crc, Buffer.from(body, 'utf8'))
    out[i] = `${body.slice(0, -1)},"crc":"${crc.toString(16).padStart(8, '0')}"}`
  }
  return out
}

const write = (file, records) => fs.writeFileSync(file, records.map((l) => `${l}\n`).join(''))

describe('anchors', () => {
  test('the re-sealing helper reproduces the core chain (so an edit it re-seals is a valid chain)', () => {
    const log = finishedLog()
    const records = lines(log)
    assert.deepEqual(reseal(records, 0), records)
  })

  test('anchor: run id, records, bytes, head; verifyAnchor of the same log passes (object or JSON text), sync and async', async () => {
    const log = finishedLog()
    const a = am.anchorSync(log)
    const report = am.checkLogSync(log)
    // The head covers the log up to the end of its last record, that record's newline excluded.
    assert.deepEqual(Object.keys(a), ['version', 'runId', 'records', 'bytes', 'head'])
    assert.deepEqual([a.version, a.runId, a.records, a.bytes], [1, 'anchored', report.events, fs.statSync(log).size - 1])
    assert.match(a.head, /^[0-9a-f]{64}$/)
    assert.deepEqual(await am.anchor(log), a)
    assert.deepEqual(am.verifyAnchorSync(log, a), report)
    assert.deepEqual(await am.verifyAnchor(log, JSON.stringify(a)), report)
  })

  test('records appended after the anchor are fine (a waiting run resumed)', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir }).agent('a', () => 1)
    const r = mesh.runSync(wf([agentNode('x', 'a'), { id: 'ok', type: 'human', after: ['x'] }, agentNode('y', 'a', { after: ['ok'] })]), { runId: 'grow' })
    assert.equal(r.status, 'waiting')
    const a = await am.anchor(r.logPath, { key: 'k'.repeat(32) })
    assert.equal((await mesh.resume(r.logPath, { approvals: { ok: true } })).status, 'completed')
    const report = await am.verifyAnchor(r.logPath, a, { key: 'k'.repeat(32) })
    assert.ok(report.events > a.records)
  })

  test('every truncation at a record boundary is detected: LogTruncatedError (or LogCorruptError without any event)', () => {
    const log = finishedLog()
    const records = lines(log)
    const a = am.anchorSync(log)
    for (let keep = records.length - 1; keep >= 1; keep--) {
      const cut = path.join(path.dirname(log), `cut-${keep}.jsonl`)
      write(cut, records.slice(0, keep))
      // The chain alone finds nothing wrong with a shorter log.
      if (keep > 1) assert.equal(am.checkLogSync(cut).events, keep - 1)
      const e = thrown(() => am.verifyAnchorSync(cut, a))
      if (keep === 1) {
        assertError(e, LogCorruptError, 'LOG_CORRUPT') // a header without an event
        continue
      }
      assertError(e, LogTruncatedError, 'LOG_TRUNCATED')
      assert.deepEqual([e.field, e.expected, e.found], ['records', String(a.records), String(keep - 1)])
    }
  })

  test('every edit with the chain recomputed is detected: LogHeadMismatchError', () => {
    const log = finishedLog()
    const records = lines(log)
    const a = am.anchorSync(log)
    for (let i = 1; i < records.length; i++) {
      const edited = records.slice()
      // Same length, another value: a digit of the record's timestamp.
      edited[i] = edited[i].replace(/"at":(\d)/, (_, d) => `"at":${(Number(d) + 1) % 10}`)
      assert.notEqual(edited[i], records[i])
      const forged = path.join(path.dirname(log), `forged-${i}.jsonl`)
      write(forged, reseal(edited, i))
      // The recomputed chain is valid: checkLog and verifyLog pass.
      assert.equal(am.checkLogSync(forged).events, a.records)
      const e = thrown(() => am.verifyAnchorSync(forged, a))
      assertError(e, LogHeadMismatchError, 'LOG_HEAD_MISMATCH')
      assert.equal(e.field, 'head')
      assert.equal(e.expected, a.head)
    }
    // An edit that changes what the run did (an output) is caught the same way.
    const j = records.findIndex((l) => l.includes('"agentCompleted"'))
    const edited = records.slice()
    edited[j] = edited[j].replace('"n":1', '"n":2')
    const forged = path.join(path.dirname(log), 'forged-output.jsonl')
    write(forged, reseal(edited, j))
    assert.equal(am.replaySync(forged).outcome.status, 'completed')
    assertError(thrown(() => am.verifyAnchorSync(forged, a)), LogHeadMismatchError, 'LOG_HEAD_MISMATCH')
  })

  test('another run\'s log is LogHeadMismatchError (runId)', async () => {
    const dir = tmpdir()
    const a = am.anchorSync(finishedLog(dir, 'one'))
    const e = await rejected(am.verifyAnchor(finishedLog(dir, 'two'), a))
    assertError(e, LogHeadMismatchError, 'LOG_HEAD_MISMATCH')
    assert.deepEqual([e.field, e.expected, e.found], ['runId', 'one', 'two'])
  })
})

describe('keyed anchors', () => {
  const KEY = 'correct horse battery staple, 32+ bytes of key'

  test('a key as a string, a Buffer or a Uint8Array of the same bytes makes the same MAC', async () => {
    const log = finishedLog()
    const a = am.anchorSync(log, { key: KEY })
    assert.match(a.mac, /^[0-9a-f]{64}$/)
    assert.deepEqual(await am.anchor(log, { key: Buffer.from(KEY) }), a)
    assert.deepEqual(am.anchorSync(log, { key: new Uint8Array(Buffer.from(KEY)) }), a)
    assert.notEqual(am.anchorSync(log, { key: `${KEY}!` }).mac, a.mac)
    assert.equal(am.anchorSync(log).mac, undefined)
  })

  test('a wrong key, no key, or an edited anchor fail; the key never appears in an error', async () => {
    const log = finishedLog()
    const a = am.anchorSync(log, { key: KEY })
    assert.equal(am.verifyAnchorSync(log, a, { key: KEY }).events, a.records)
    const wrong = thrown(() => am.verifyAnchorSync(log, a, { key: 'not the key, but long enough to be one' }))
    assertError(wrong, LogHeadMismatchError, 'LOG_HEAD_MISMATCH')
    assert.equal(wrong.field, 'mac')
    const none = await rejected(am.verifyAnchor(log, a))
    assertError(none, InvalidArgumentError, 'INVALID_ARGUMENT')
    // An anchor edited to match a truncated log, without the key to recompute its MAC.
    const cut = path.join(path.dirname(log), 'cut.jsonl')
    write(cut, lines(log).slice(0, -2))
    const short = am.anchorSync(cut)
    const forged = { ...a, records: short.records, bytes: short.bytes, head: short.head }
    assertError(thrown(() => am.verifyAnchorSync(cut, forged, { key: KEY })), LogHeadMismatchError, 'LOG_HEAD_MISMATCH')
    assertError(thrown(() => am.verifyAnchorSync(cut, a, { key: KEY })), LogTruncatedError, 'LOG_TRUNCATED')
    // An unkeyed anchor checked with a key.
    assertError(thrown(() => am.verifyAnchorSync(log, am.anchorSync(log), { key: KEY })), InvalidArgumentError, 'INVALID_ARGUMENT')
    for (const e of [wrong, none]) {
      assert.ok(!e.message.includes(KEY) && !JSON.stringify(e.details).includes(KEY) && !String(e.stack).includes(KEY), e.message)
    }
  })

  test('bad arguments are InvalidArgumentError: empty key, unknown option, key of another type, not an anchor', async () => {
    const log = finishedLog()
    const a = am.anchorSync(log)
    assertError(thrown(() => am.anchorSync(log, { key: '' })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => am.anchorSync(log, { secret: 'x' })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => am.anchorSync(log, { key: 42 })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => am.verifyAnchorSync(log, 5)), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => am.verifyAnchorSync(log, '{"version": 1}')), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(await rejected(am.verifyAnchor(log, { ...a, version: 9 })), InvalidArgumentError, 'INVALID_ARGUMENT')
    assertError(thrown(() => am.verifyAnchorSync(log, { ...a, extra: 1 })), InvalidArgumentError, 'INVALID_ARGUMENT')
  })
})
