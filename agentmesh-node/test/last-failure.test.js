'use strict'
// `act.lastFailure`: the failure an attempt retries, as the log records it — a throw, a
// timeout, the failure that failed a run being retried — and `undefined` on a first attempt,
// after a cancel and for a person.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')

const am = require('..')
const { tempDirs, rejected } = require('./support/helpers')

const { Mesh, Workflow, ActivationError, AgentFailedError } = am
const tmpdir = tempDirs('last-failure')

/** The failures a finished run's log records for agents. */
const recordedFailures = (r) => am.readLogSync(r.logPath).filter((e) => e.type === 'agentFailed').map((e) => e.data.error)

describe('act.lastFailure', () => {
  for (const driver of ['run', 'runSync']) {
    test(`${driver}: a retry gets the throw it retries, as the log records it`, async () => {
      const seen = []
      const mesh = new Mesh({ logDir: tmpdir() }).agent('a', (act) => {
        seen.push([act.attempt, act.lastFailure])
        if (act.attempt === 1) throw new ActivationError('RateLimited', 'slow down')
        if (act.attempt === 2) throw new Error('reset by peer')
        return 'ok'
      })
      const wf = Workflow.builder('flaky').agent('a', 'a', { retry: { maxAttempts: 3 } }).build()
      const r = await mesh[driver](wf, { runId: 'flaky' })
      assert.equal(r.status, 'completed')
      assert.deepEqual(r.output, { a: 'ok' })
      const first = { kind: 'error', type: 'RateLimited', message: 'slow down', retryable: true }
      const second = { kind: 'error', type: 'Error', message: 'reset by peer', retryable: true }
      assert.deepEqual(seen, [[1, undefined], [2, first], [3, second]])
      assert.deepEqual(recordedFailures(r), [first, second])
    })
  }

  test('read twice, it is the same object; toJSON and inspect show it', async () => {
    const seen = []
    const mesh = new Mesh().agent('a', (act) => {
      if (act.attempt === 1) throw new ActivationError('Flaky', 'again')
      seen.push([act.lastFailure === act.lastFailure, JSON.parse(JSON.stringify(act)).lastFailure, util.inspect(act)])
      return 1
    })
    await mesh.run(Workflow.builder('w').agent('a', 'a', { retry: { maxAttempts: 2 } }).build())
    const [[same, json, shown]] = seen
    assert.equal(same, true)
    assert.deepEqual(json, { kind: 'error', type: 'Flaky', message: 'again', retryable: true })
    assert.match(shown, /lastFailure: \{[^}]*type: 'Flaky'/)
  })

  test('a retry after a timeout gets the timeout failure', async () => {
    const seen = []
    const mesh = new Mesh().agent('a', async (act) => {
      seen.push([act.attempt, act.lastFailure])
      if (act.attempt === 1) {
        // Past its deadline: the driver records the timeout and aborts the signal.
        await new Promise((resolve) => act.signal.addEventListener('abort', resolve))
      }
      return act.attempt
    })
    const wf = Workflow.builder('slow').agent('a', 'a', { timeoutMs: 50, retry: { maxAttempts: 2 } }).build()
    const r = await mesh.run(wf)
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { a: 2 })
    assert.deepEqual(seen, [[1, undefined], [2, { kind: 'timeout', type: 'Timeout', message: 'no result within 50 ms', retryable: true }]])
  })

  test('retrying a failed run hands on the failure that failed it (not retryable)', async () => {
    const seen = []
    const mesh = new Mesh({ logDir: tmpdir() }).agent('a', (act) => {
      seen.push([act.attempt, act.lastFailure])
      if (seen.length === 1) throw new ActivationError('BadCredentials', 'key revoked', { retryable: false })
      return 'ok'
    })
    const wf = Workflow.builder('broken').agent('a', 'a', { retry: { maxAttempts: 3 } }).build()
    const e = await rejected(mesh.run(wf, { runId: 'broken' }))
    assert.ok(e instanceof AgentFailedError, e.stack)
    const r = await mesh.retry(e.result.logPath)
    assert.equal(r.status, 'completed')
    assert.deepEqual(seen, [[1, undefined], [2, { kind: 'error', type: 'BadCredentials', message: 'key revoked', retryable: false }]])
  })

  test('an activation a cancel closed runs again without a failure', async () => {
    const seen = []
    const mesh = new Mesh({ logDir: tmpdir() }).agent('a', (act) => {
      seen.push(act.lastFailure)
      if (seen.length === 1) act.cancelRun('operator')
      return 'ok'
    })
    let r = await mesh.run(Workflow.builder('cancel').agent('a', 'a').build(), { runId: 'cancel' })
    assert.equal(r.status, 'cancelled')
    r = await mesh.retry(r.logPath)
    assert.equal(r.status, 'completed')
    assert.deepEqual(seen, [undefined, undefined])
    assert.deepEqual(recordedFailures(r), [])
  })

  test('a human activation has none; a first attempt has none, also in toJSON', async () => {
    const mesh = new Mesh().agent('a', (act) => {
      assert.equal(act.lastFailure, undefined)
      assert.equal('lastFailure' in JSON.parse(JSON.stringify(act)), false)
      return 1
    })
    const r = await mesh.run(Workflow.builder('h').agent('a', 'a').human('ok', { after: 'a', prompt: 'Ship?' }).build())
    assert.equal(r.status, 'waiting')
    assert.deepEqual(r.waiting.map((a) => [a.node, a.lastFailure]), [['ok', undefined]])
  })
})
