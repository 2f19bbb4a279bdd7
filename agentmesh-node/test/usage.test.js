'use strict'
// Token usage (issue 8, defects 15 and 23): a failed attempt that spent tokens records them
// (`new ActivationError(type, message, {usage})`), and every usage goes through the core's one
// strict parser: an object of non-negative integer `inputTokens`/`outputTokens` and nothing
// else. Anything else fails the activation with InvalidOutputError naming the node.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')

const am = require('..')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const { Mesh, Output, ActivationError, AgentFailedError, InvalidOutputError } = am
const tmpdir = tempDirs('usage')

const completions = (logPath) => am.readLogSync(logPath).filter((e) => e.type === 'agentCompleted' || e.type === 'agentFailed')

describe('usage on failures (defect 15)', () => {
  test('ActivationError keeps usage; null when not given', () => {
    const e = new ActivationError('RateLimited', 'slow down', { retryable: false, usage: { inputTokens: 7, outputTokens: 2 } })
    assert.deepEqual(e.usage, { inputTokens: 7, outputTokens: 2 })
    assert.equal(e.retryable, false)
    assert.equal(new ActivationError('T', 'm').usage, null)
  })

  for (const mode of ['run', 'runSync']) {
    test(`${mode}: the usage of a failed attempt is recorded with its failure`, async () => {
      const mesh = new Mesh({ logDir: tmpdir() })
      const agent = (act) => {
        if (act.attempt === 1) throw new ActivationError('RateLimited', 'slow down', { usage: { inputTokens: 7, outputTokens: 2 } })
        return new Output('ok', { usage: { inputTokens: 3 } })
      }
      mesh.agent('paid', mode === 'run' ? async (act) => agent(act) : agent)
      const w = wf([agentNode('p', 'paid', { retry: { maxAttempts: 2 } })])
      const r = mode === 'run' ? await mesh.run(w, { runId: 'paid' }) : mesh.runSync(w, { runId: 'paid' })
      assert.equal(r.status, 'completed')
      assert.deepEqual(
        completions(r.logPath).map((e) => [e.type, e.data]),
        [
          ['agentFailed', { error: { kind: 'error', type: 'RateLimited', message: 'slow down', retryable: true }, usage: { inputTokens: 7, outputTokens: 2 } }],
          ['agentCompleted', { output: 'ok', usage: { inputTokens: 3, outputTokens: 0 } }],
        ],
      )
    })
  }
})

describe('usage is an object of two counts (defect 23)', () => {
  const STRICT = 'usage must be {"inputTokens": int, "outputTokens": int}: '
  const BAD = [
    ['a list', [1, 2], 'invalid type: sequence, expected an object with inputTokens and outputTokens'],
    ['a float', { inputTokens: 1.5 }, 'invalid type: floating point `1.5`, expected u64'],
    ['a negative count', { outputTokens: -3 }, 'invalid value: integer `-3`, expected u64'],
    ['an unknown key', { inputTokens: 1, cost: 2 }, 'unknown field `cost`, expected `inputTokens` or `outputTokens`'],
    ['a number', 5, 'invalid type: integer `5`, expected an object with inputTokens and outputTokens'],
    ['a count as text', { inputTokens: '5' }, 'invalid type: string "5", expected u64'],
  ]

  /** The failed run: InvalidOutputError naming the node, one permanent InvalidOutput failure. */
  function check(e, why) {
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    assert.ok(e.cause instanceof InvalidOutputError, String(e.cause))
    assert.equal(e.cause.node, 'u')
    assert.equal(e.cause.message, `[INVALID_OUTPUT] node 'u': ${STRICT}${why}`)
    const [failed, ...rest] = completions(e.result.logPath)
    assert.deepEqual(rest, [])
    assert.deepEqual(failed.data.error, { kind: 'error', type: 'InvalidOutput', message: `node 'u': ${STRICT}${why}`, retryable: false })
    assert.equal(failed.data.usage, undefined)
  }

  for (const [label, usage, why] of BAD) {
    test(`Output with ${label} as usage is refused, naming the node`, async () => {
      const mesh = new Mesh({ logDir: tmpdir() })
      mesh.agent('a', () => new Output(1, { usage }))
      const w = wf([agentNode('u', 'a', { retry: { maxAttempts: 3 } })])
      check(thrown(() => mesh.runSync(w, { runId: 'sync' })), why)
      mesh.agent('a', async () => new Output(1, { usage }))
      check(await rejected(mesh.run(w, { runId: 'async' })), why)
    })

    test(`ActivationError with ${label} as usage is refused, naming the node`, async () => {
      const mesh = new Mesh({ logDir: tmpdir() })
      const boom = new ActivationError('Paid', 'failed', { usage })
      mesh.agent('a', () => {
        throw boom
      })
      const e = thrown(() => mesh.runSync(wf([agentNode('u', 'a', { retry: { maxAttempts: 3 } })]), { runId: 'err' }))
      check(e, why)
      // The agent's exception is kept as the cause of the InvalidOutputError.
      assert.equal(e.cause.cause, boom)
    })
  }

  test('null or absent usage records none; {} records zeros', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('none', () => new Output(1, { usage: null }))
    mesh.agent('zero', () => new Output(2, { usage: {} }))
    const r = mesh.runSync(wf([agentNode('n', 'none'), agentNode('z', 'zero')]), { runId: 'zeros' })
    assert.deepEqual(
      completions(r.logPath).map((e) => [e.node, e.data]),
      [['n', { output: 1 }], ['z', { output: 2, usage: { inputTokens: 0, outputTokens: 0 } }]],
    )
  })
})
