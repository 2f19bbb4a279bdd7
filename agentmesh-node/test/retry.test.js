'use strict'
// Reopening failed and cancelled runs (`mesh.retry`, issue 9) and the errors a retry policy
// never retries (programming errors, `retry.nonRetryable`), through the public API. See
// docs/recovery.md; the cross-host proof is the `retry_after_failure` vector (vectors.test.js).

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const am = require('..')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const { Mesh, ActivationError, AgentFailedError, InvalidArgumentError, RunResult, UnknownAgentError } = am
const tmpdir = tempDirs('retry')

const events = (logPath) => am.readLogSync(logPath)
const types = (logPath) => events(logPath).map((e) => e.type)

// plan → fetch (a tool with 2 attempts) → write
const BRIEF = [
  agentNode('plan', 'planner'),
  { id: 'fetch', type: 'tool', tool: 'http', after: ['plan'], retry: { maxAttempts: 2 } },
  agentNode('write', 'writer', { after: ['fetch'] }),
]

/** A mesh whose `http` tool fails while `server.down`; `calls` records every call. */
function briefMesh(dir, server, calls) {
  return new Mesh({ logDir: dir })
    .agent('planner', (act) => {
      calls.push(`${act.node}#${act.attempt}`)
      return { q: 2 }
    })
    .tool('http', async (act) => {
      calls.push(`${act.node}#${act.attempt}`)
      if (server.down) throw new Error('connection refused')
      return { status: 200 }
    })
    .agent('writer', (act) => {
      calls.push(`${act.node}#${act.attempt}`)
      return { text: `got ${act.deps.fetch.status}` }
    })
}

/** The failed run: AgentFailedError with the RunResult on it. */
async function failedBrief(dir, calls) {
  const e = await rejected(briefMesh(dir, { down: true }, calls).run(wf(BRIEF, 'brief'), { runId: 'brief' }))
  assertError(e, AgentFailedError, 'AGENT_FAILED')
  assert.equal(e.result.status, 'failed')
  return e.result
}

describe('mesh.retry: a failed run', () => {
  test('only the failed node runs again, with a fresh allowance; runReopened is recorded; replay agrees', async () => {
    const dir = tmpdir()
    const calls = []
    const failed = await failedBrief(dir, calls)
    assert.deepEqual(calls, ['plan#1', 'fetch#1', 'fetch#2'])
    assert.equal(failed.error.message, "node 'fetch' failed on attempt 2/2: Error: connection refused")
    const failedSeq = events(failed.logPath).at(-1).seq

    calls.length = 0
    const done = await briefMesh(dir, { down: false }, calls).retry(failed.logPath) // the server is back
    assert.ok(done instanceof RunResult)
    assert.equal(done.status, 'completed')
    assert.equal(done.runId, 'brief')
    assert.equal(done.logPath, failed.logPath)
    assert.deepEqual(done.output, { write: { text: 'got 200' } })
    assert.deepEqual(calls, ['fetch#3', 'write#1']) // plan was not called again

    const log = events(done.logPath)
    const reopened = log.filter((e) => e.type === 'runReopened')
    assert.equal(reopened.length, 1)
    assert.equal(reopened[0].seq, failedSeq + 1)
    assert.equal(reopened[0].parentSeq, failedSeq) // caused by the runFailed
    assert.deepEqual(reopened[0].data, { reason: 'retry' })
    const again = log.find((e) => e.type === 'toolScheduled' && e.attempt === 3)
    const lastFailure = log.filter((e) => e.type === 'toolFailed').at(-1)
    assert.equal(again.data.retryOf, lastFailure.seq)
    assert.deepEqual(types(done.logPath).slice(log.indexOf(reopened[0])), [
      'runReopened', 'stepStarted', 'toolScheduled', 'toolCompleted', 'stepStarted', 'agentScheduled', 'agentCompleted', 'runCompleted',
    ])

    const replayed = am.replaySync(done.logPath)
    assert.deepEqual(replayed.outcome, { status: 'completed', output: done.output })
    assert.equal(replayed.events, log.length)
    const report = am.verifyLogSync(done.logPath)
    assert.equal(report.finished, 'runCompleted')
    assert.deepEqual(report.holes, [])
  })

  test('retry, retrySync and streamRetry write the same log; the stream and onEvent start at runReopened', async () => {
    const logs = {}
    const fingerprints = {}
    for (const how of ['retry', 'retrySync', 'streamRetry']) {
      const dir = tmpdir()
      const failed = await failedBrief(dir, [])
      const seen = []
      const mesh = briefMesh(dir, { down: false }, [])
      if (how === 'streamRetry') {
        const stream = mesh.streamRetry(failed.logPath)
        for await (const event of stream) seen.push(event)
        assert.equal((await stream.result).status, 'completed')
      } else {
        // retrySync takes synchronous agents only.
        if (how === 'retrySync') mesh.tool('http', () => ({ status: 200 }))
        const r = await mesh[how](failed.logPath, { onEvent: (e) => seen.push(e) })
        assert.equal(r.status, 'completed')
      }
      logs[how] = am.canonicalLogSync(failed.logPath)
      fingerprints[how] = am.fingerprintSync(failed.logPath)
      const tail = events(failed.logPath).filter((e) => e.seq >= seen[0].seq)
      assert.equal(seen[0].type, 'runReopened')
      assert.deepEqual(seen.map(({ meta, ...e }) => e), tail, how)
      assert.equal(typeof seen[0].meta.at, 'number')
    }
    assert.ok(logs.retry.equals(logs.retrySync))
    assert.ok(logs.retry.equals(logs.streamRetry))
    assert.equal(new Set(Object.values(fingerprints)).size, 1)
  })

  test('a retry that fails again throws AgentFailedError with its result; the next retry goes on', async () => {
    const dir = tmpdir()
    const calls = []
    const failed = await failedBrief(dir, calls)
    calls.length = 0
    const e = await rejected(briefMesh(dir, { down: true }, calls).retry(failed.logPath))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.equal(e.cause.message, 'connection refused')
    assert.equal(e.result.status, 'failed')
    // The attempt number goes on (3 and 4); the allowance is counted afresh.
    assert.equal(e.result.error.message, "node 'fetch' failed on attempt 4 (2/2 since the run was retried): Error: connection refused")
    assert.deepEqual(calls, ['fetch#3', 'fetch#4'])
    const done = await briefMesh(dir, { down: false }, calls).retry(failed.logPath)
    assert.equal(done.status, 'completed')
    assert.equal(types(done.logPath).filter((t) => t === 'runReopened').length, 2)
    assert.equal(am.replaySync(done.logPath).outcome.status, 'completed')
  })

  test('resume of the failed log rejects with AgentFailedError as run does (no cause: the agent ran elsewhere)', async () => {
    const dir = tmpdir()
    const calls = []
    const failed = await failedBrief(dir, calls)
    const before = fs.readFileSync(failed.logPath)
    calls.length = 0
    const e = await rejected(briefMesh(dir, { down: false }, calls).resume(failed.logPath))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.equal(e.cause, undefined)
    assert.equal(e.result.status, 'failed')
    assert.deepEqual(calls, [], 'resume runs nothing of a failed run: retry does')
    assert.ok(fs.readFileSync(failed.logPath).equals(before))
  })

  test('runId: the log must hold that run (nothing written otherwise)', async () => {
    const dir = tmpdir()
    const failed = await failedBrief(dir, [])
    const before = fs.readFileSync(failed.logPath)
    const e = await rejected(briefMesh(dir, { down: false }, []).retry(failed.logPath, { runId: 'other' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(e.message, `[INVALID_ARGUMENT] ${failed.logPath} holds run 'brief', not 'other'`)
    assert.ok(fs.readFileSync(failed.logPath).equals(before))
    const done = await briefMesh(dir, { down: false }, []).retry(failed.logPath, { runId: 'brief' })
    assert.equal(done.status, 'completed')
  })
})

describe('mesh.retry: a cancelled run', () => {
  test('the activations the cancel closed run again; finished work is kept', async () => {
    const dir = tmpdir()
    const calls = []
    const controller = new AbortController()
    const mesh = (hang) =>
      new Mesh({ logDir: dir })
        .agent('planner', (act) => {
          calls.push(act.node)
          return 'plan'
        })
        .agent('slow', async (act) => {
          calls.push(act.node)
          if (hang) {
            controller.abort('operator said stop')
            await new Promise((resolve) => act.signal.addEventListener('abort', resolve))
            return 'too late'
          }
          return `done ${act.deps.plan}`
        })
    const w = wf([agentNode('plan', 'planner'), agentNode('work', 'slow', { after: ['plan'] })], 'cancel')
    const cancelled = await mesh(true).run(w, { runId: 'c', signal: controller.signal })
    assert.equal(cancelled.status, 'cancelled')
    assert.deepEqual(cancelled.error, { code: 'CANCELLED', message: 'operator said stop' })
    assert.deepEqual(calls, ['plan', 'work'])
    // resume keeps a cancelled run final: nothing runs, nothing is written.
    const before = fs.readFileSync(cancelled.logPath)
    assert.equal((await mesh(false).resume(cancelled.logPath)).status, 'cancelled')
    assert.ok(fs.readFileSync(cancelled.logPath).equals(before))

    calls.length = 0
    const done = await mesh(false).retry(cancelled.logPath)
    assert.equal(done.status, 'completed')
    assert.deepEqual(done.output, { work: 'done plan' })
    assert.deepEqual(calls, ['work'])
    const t = types(done.logPath)
    assert.equal(t[t.indexOf('runCancelled') + 1], 'runReopened')
    assert.equal(am.replaySync(done.logPath).outcome.status, 'completed')
  })
})

describe('mesh.retry refuses what it cannot continue, writing nothing', () => {
  test('a completed run: InvalidArgumentError naming fork', async () => {
    const dir = tmpdir()
    const calls = []
    const done = await briefMesh(dir, { down: false }, calls).run(wf(BRIEF, 'brief'), { runId: 'ok' })
    assert.equal(done.status, 'completed')
    const before = fs.readFileSync(done.logPath)
    calls.length = 0
    for (const attempt of [
      () => thrown(() => briefMesh(dir, { down: false }, calls).retrySync(done.logPath)),
      () => rejected(briefMesh(dir, { down: false }, calls).retry(done.logPath)),
      () => thrown(() => briefMesh(dir, { down: false }, calls).streamRetry(done.logPath)),
    ]) {
      const e = await attempt()
      assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
      assert.equal(e.message, '[INVALID_ARGUMENT] the run completed, which is final: fork it to run part of it again (the last step end is seq 10)')
      assert.ok(fs.readFileSync(done.logPath).equals(before))
    }
    assert.deepEqual(calls, [])
  })

  test('a waiting run: resume it', () => {
    const dir = tmpdir()
    const r = new Mesh({ logDir: dir }).runSync(wf([{ id: 'approve', type: 'human' }], 'h'), { runId: 'h' })
    assert.equal(r.status, 'waiting')
    const before = fs.readFileSync(r.logPath)
    const e = thrown(() => new Mesh({ logDir: dir }).retrySync(r.logPath))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(e.message.startsWith('[INVALID_ARGUMENT] the run is waiting, not failed or cancelled: resume it instead'), e.message)
    assert.ok(fs.readFileSync(r.logPath).equals(before))
  })

  test('a run that failed on a limit: a retry would fail the same way', () => {
    const dir = tmpdir()
    const loop = wf(
      [agentNode('a', 'x'), { id: 'again', type: 'branch', after: ['a'], cases: [{ when: { path: '/outputs/a', exists: true }, goto: 'a' }] }],
      'loop',
      { maxSteps: 3 },
    )
    const mesh = new Mesh({ logDir: dir }).agent('x', () => 1)
    const r = mesh.runSync(loop, { runId: 'loop' })
    assert.equal(r.status, 'failed')
    assert.equal(r.error.code, 'LIMIT_EXCEEDED')
    const before = fs.readFileSync(r.logPath)
    const e = thrown(() => mesh.retrySync(r.logPath))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(e.message.includes('the run failed on a limit, not on a node (LIMIT_EXCEEDED: the run would start step 4 but maxSteps is 3)'), e.message)
    assert.ok(e.message.includes('fork it at an earlier step end with a changed workflow'), e.message)
    assert.ok(fs.readFileSync(r.logPath).equals(before))
  })

  test('agents missing, unknown options, an aborted signal, a missing log', async () => {
    const dir = tmpdir()
    const failed = await failedBrief(dir, [])
    const before = fs.readFileSync(failed.logPath)
    const e = thrown(() => new Mesh({ logDir: dir }).agent('planner', () => 1).retrySync(failed.logPath))
    assertError(e, UnknownAgentError, 'UNKNOWN_AGENT')
    assert.equal(
      e.message,
      "[UNKNOWN_AGENT] workflow 'brief' uses agent 'writer', tool 'http', not registered with this mesh (registered agents: 'planner'; tools: none)",
    )
    const mesh = briefMesh(dir, { down: false }, [])
    const unknown = thrown(() => mesh.retrySync(failed.logPath, { approvals: {} }))
    assertError(unknown, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(unknown.message, "[INVALID_ARGUMENT] unknown option 'approvals' (expected one of runId, onEvent, onBudgetWarning)")
    const signal = AbortSignal.abort()
    const aborted = await rejected(mesh.retry(failed.logPath, { interrupt: signal }))
    assertError(aborted, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.ok(fs.readFileSync(failed.logPath).equals(before))
    const missing = await rejected(mesh.retry(`${dir}/nope.jsonl`))
    assertError(missing, am.AgentMeshIOError, 'IO')
    // Still retryable after every refusal (each released the log).
    assert.equal((await mesh.retry(failed.logPath)).status, 'completed')
  })

  test('RUN_EXISTS for a failed run names retry', async () => {
    const dir = tmpdir()
    const failed = await failedBrief(dir, [])
    const e = thrown(() => briefMesh(dir, { down: false }, []).runSync(wf(BRIEF, 'brief'), { runId: 'brief' }))
    assertError(e, am.RunExistsError, 'RUN_EXISTS')
    assert.equal(
      e.message,
      `[RUN_EXISTS] ${failed.logPath} already exists and its run failed at node 'fetch' (AGENT_FAILED): retry it (\`agentmesh retry\`, \`retry\` in the libraries), or fork it at seq 4 (or an earlier step end)`,
    )
  })
})

// Non-retryable errors -------------------------------------------------------------------------

/** Fail node `x` with what `fail()` throws; returns the agentFailed events and the error. */
async function failWith(fail, retry, { async = false } = {}) {
  const dir = tmpdir()
  const attempts = []
  const mesh = new Mesh({ logDir: dir }).agent('a', async === true
    ? async (act) => {
      attempts.push(act.attempt)
      await null
      fail()
    }
    : (act) => {
      attempts.push(act.attempt)
      fail()
    })
  const w = wf([agentNode('x', 'a', { retry })])
  const e = async ? await rejected(mesh.run(w, { runId: 'x' })) : thrown(() => mesh.runSync(w, { runId: 'x' }))
  assertError(e, AgentFailedError, 'AGENT_FAILED')
  const failed = events(e.result.logPath).filter((ev) => ev.type === 'agentFailed')
  assert.deepEqual(failed.map((ev) => ev.attempt), attempts)
  return { failed, e, attempts, dir }
}

// What the engine itself throws, so the recorded type is what a real bug gives.
const PROGRAMMING_ERRORS = {
  TypeError: () => null.contents,
  ReferenceError: () => notDefinedAnywhere, // eslint-disable-line no-undef
  SyntaxError: () => JSON.parse('{'),
  RangeError: () => new Array(-1),
}

describe('errors a retry policy never retries', () => {
  for (const [type, fail] of Object.entries(PROGRAMMING_ERRORS)) {
    for (const async of [false, true]) {
      test(`a thrown ${type} (${async ? 'async' : 'sync'} agent) under maxAttempts 3 is attempted once`, async () => {
        const { failed, e, attempts } = await failWith(fail, { maxAttempts: 3 }, { async })
        assert.deepEqual(attempts, [1])
        assert.equal(failed[0].data.error.type, type) // the type the Node host records
        assert.equal(failed[0].data.error.retryable, false) // decided and recorded by the core
        assert.ok(e.cause instanceof globalThis[type])
        assert.ok(e.result.error.message.startsWith(`node 'x' failed on attempt 1/3 (not retryable): ${type}: `), e.result.error.message)
        assert.equal(am.replaySync(e.result.logPath).outcome.status, 'failed')
      })
    }
  }

  test('retryProgrammingErrors: true retries them', async () => {
    const { attempts, failed } = await failWith(PROGRAMMING_ERRORS.TypeError, { maxAttempts: 3, retryProgrammingErrors: true })
    assert.deepEqual(attempts, [1, 2, 3])
    assert.deepEqual(failed.map((ev) => [ev.data.error.type, ev.data.error.retryable]), [
      ['TypeError', true], ['TypeError', true], ['TypeError', true],
    ])
  })

  test('nonRetryable lists more types (matched by exact name); other errors are retried', async () => {
    class AuthenticationError extends Error {}
    const listed = await failWith(() => {
      throw new AuthenticationError('bad key')
    }, { maxAttempts: 3, nonRetryable: ['AuthenticationError'] })
    assert.deepEqual(listed.attempts, [1])
    assert.deepEqual(listed.failed[0].data.error, { kind: 'error', type: 'AuthenticationError', message: 'bad key', retryable: false })

    class RateLimitError extends Error {}
    const other = await failWith(() => {
      throw new RateLimitError('slow down')
    }, { maxAttempts: 3, nonRetryable: ['AuthenticationError'] })
    assert.deepEqual(other.attempts, [1, 2, 3])

    // A subclass with its own name is its own type: retried.
    class ParseTypeError extends TypeError {}
    const sub = await failWith(() => {
      throw new ParseTypeError('x')
    }, { maxAttempts: 2 })
    assert.deepEqual(sub.attempts, [1, 2])
  })

  test('an ActivationError cannot make a listed or programming-error type retryable', async () => {
    for (const [type, retry] of [['TypeError', { maxAttempts: 3 }], ['Quota', { maxAttempts: 3, nonRetryable: ['Quota'] }]]) {
      const { attempts, failed } = await failWith(() => {
        throw new ActivationError(type, 'no', { retryable: true })
      }, retry)
      assert.deepEqual(attempts, [1], type)
      assert.equal(failed[0].data.error.retryable, false)
    }
    // ...and retryable: false still stops a type that is not listed.
    const { attempts } = await failWith(() => {
      throw new ActivationError('Other', 'no', { retryable: false })
    }, { maxAttempts: 3 })
    assert.deepEqual(attempts, [1])
  })

  test('after the bug is fixed, retry gives the node a fresh allowance', async () => {
    const { e, dir } = await failWith(PROGRAMMING_ERRORS.TypeError, { maxAttempts: 3 })
    const fixed = new Mesh({ logDir: dir }).agent('a', (act) => `fixed on attempt ${act.attempt}`)
    const done = fixed.retrySync(e.result.logPath)
    assert.equal(done.status, 'completed')
    assert.deepEqual(done.output, { x: 'fixed on attempt 2' })
  })

  test('the builder passes nonRetryable and retryProgrammingErrors; the core checks them', () => {
    const retry = { maxAttempts: 3, backoffMs: 10, nonRetryable: ['AuthenticationError'], retryProgrammingErrors: true }
    const w = am.Workflow.builder('b').agent('a', 'x', { retry }).build()
    assert.deepEqual(w.toObject().nodes[0].retry, retry)
    const e = thrown(() => am.Workflow.builder('b').agent('a', 'x', { retry: { nonRetryable: 'AuthenticationError' } }).build())
    assertError(e, am.InvalidWorkflowError, 'INVALID_WORKFLOW')
    assert.equal(e.details.node, 'a')
    assert.ok(e.details.field.startsWith('retry'), e.details.field)
  })
})
