'use strict'
// Token usage (issue 8, defects 15 and 23; issue 9): a failed attempt that spent tokens records
// them (`new ActivationError(type, message, {usage})`), and every usage goes through the core's
// one parser (docs/usage.md): AgentMesh's own shape (non-negative integer counts, nothing
// unknown) or an OpenAI / Anthropic usage or whole response. Anything else fails the activation
// with InvalidOutputError naming the node.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

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
  const STRICT = 'usage must be {"inputTokens": int, "outputTokens": int} (or the usage of an OpenAI or Anthropic response): '
  const BAD = [
    ['a list', [1, 2], 'invalid type: sequence, expected an object with inputTokens and outputTokens'],
    ['a float', { inputTokens: 1.5 }, 'invalid type: floating point `1.5`, expected u64'],
    ['a negative count', { outputTokens: -3 }, 'invalid value: integer `-3`, expected u64'],
    ['an unknown key', { inputTokens: 1, cost: 2 }, 'unknown field `cost`, expected one of `inputTokens`, `outputTokens`, `cachedInputTokens`, `cacheWriteTokens`, `reasoningTokens`, `model`'],
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

// The usage report (issue 9): usage in the shapes the SDKs return, read by the core in one
// place, and `result.usage` / `usageReport(log)`: the core's UsageReport, with the keys and
// key order of its serde JSON.

// What an OpenAI-compatible server returned (trimmed): only usage and model may reach the log.
const OPENAI_RESPONSE = {
  id: 'chatcmpl-9xYz',
  object: 'chat.completion',
  created: 1733000000,
  model: 'gpt-4o-mini',
  system_fingerprint: 'fp_0ba0d124f1',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
  usage: {
    prompt_tokens: 403,
    completion_tokens: 62,
    total_tokens: 465,
    prompt_tokens_details: { cached_tokens: 128 },
    completion_tokens_details: { reasoning_tokens: 10 },
  },
}
const ANTHROPIC_RESPONSE = {
  id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5',
  content: [{ type: 'text', text: 'hello' }],
  stop_reason: 'end_turn',
  usage: { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 50, cache_creation_input_tokens: 30 },
}
// OpenAI Responses API usage, on the retried attempt of `fix`.
const RESPONSES_USAGE = { input_tokens: 20, output_tokens: 5, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 3 } }

const totals = (inputTokens, outputTokens, cachedInputTokens, cacheWriteTokens, reasoningTokens, attempts, reported) => ({
  inputTokens, outputTokens, cachedInputTokens, cacheWriteTokens, reasoningTokens, attempts, reported,
})

function usageMesh(dir) {
  return new Mesh({ logDir: dir })
    .agent('llm', (act) => {
      if (act.node === 'ask') return new Output(OPENAI_RESPONSE.choices[0].message.content, { usage: OPENAI_RESPONSE })
      if (act.attempt === 1) throw new ActivationError('RateLimited', 'slow down', { usage: { inputTokens: 7, outputTokens: 0 } })
      return new Output('fixed', { usage: RESPONSES_USAGE })
    })
    .agent('claude', () => new Output('hello', { usage: ANTHROPIC_RESPONSE.usage }))
    .agent('claudeWhole', () => new Output('hello', { usage: ANTHROPIC_RESPONSE }))
    .tool('search', () => ['a result'])
}

const USAGE_WF = [
  agentNode('ask', 'llm'),
  agentNode('sonnet', 'claude'),
  agentNode('whole', 'claudeWhole'),
  { id: 'look', type: 'tool', tool: 'search' },
  agentNode('fix', 'llm', { after: ['ask'], retry: { maxAttempts: 2 } }),
]

// The report of USAGE_WF, in the order of the core's serde form.
const EXPECTED_REPORT = {
  runId: 'spent',
  total: totals(403 + 180 + 180 + 27, 62 + 20 + 20 + 5, 128 + 50 + 50, 60, 13, 6, 5),
  byNode: {
    ask: totals(403, 62, 128, 0, 10, 1, 1),
    fix: totals(27, 5, 0, 0, 3, 2, 2),
    look: totals(0, 0, 0, 0, 0, 1, 0),
    sonnet: totals(180, 20, 50, 30, 0, 1, 1),
    whole: totals(180, 20, 50, 30, 0, 1, 1),
  },
  byAgent: {
    claude: totals(180, 20, 50, 30, 0, 1, 1),
    claudeWhole: totals(180, 20, 50, 30, 0, 1, 1),
    llm: totals(430, 67, 128, 0, 13, 3, 3),
  },
  byTool: { search: totals(0, 0, 0, 0, 0, 1, 0) },
  byModel: {
    'claude-sonnet-4-5': totals(180, 20, 50, 30, 0, 1, 1),
    'gpt-4o-mini': totals(403, 62, 128, 0, 10, 1, 1),
  },
}

describe('usage in the shapes SDKs return, and the usage report', () => {
  test('OpenAI (a whole response, chat and responses usage) and Anthropic usage are recorded in one form, without ids or timestamps', () => {
    const r = usageMesh(tmpdir()).runSync(wf(USAGE_WF), { runId: 'spent' })
    assert.equal(r.status, 'completed')
    const usage = Object.fromEntries(completions(r.logPath).map((e) => [`${e.node}#${e.attempt}`, e.data.usage]))
    assert.deepEqual(usage, {
      'ask#1': { inputTokens: 403, outputTokens: 62, cachedInputTokens: 128, reasoningTokens: 10, model: 'gpt-4o-mini' },
      'sonnet#1': { inputTokens: 180, outputTokens: 20, cachedInputTokens: 50, cacheWriteTokens: 30 },
      'whole#1': { inputTokens: 180, outputTokens: 20, cachedInputTokens: 50, cacheWriteTokens: 30, model: 'claude-sonnet-4-5' },
      'fix#1': { inputTokens: 7, outputTokens: 0 },
      'fix#2': { inputTokens: 20, outputTokens: 5, reasoningTokens: 3 },
    })
    const text = fs.readFileSync(r.logPath, 'utf8')
    for (const leaked of ['chatcmpl-9xYz', '1733000000', 'fp_0ba0d124f1', 'msg_01XFDUDYJgAACzvnptvVoYEL', 'total_tokens', 'end_turn']) {
      assert.ok(!text.includes(leaked), `${leaked} reached the log`)
    }
  })

  test('result.usage is the core report, keys and key order as its serde JSON; usageReport(log) says the same', async () => {
    const r = usageMesh(tmpdir()).runSync(wf(USAGE_WF), { runId: 'spent' })
    assert.equal(JSON.stringify(r.usage), JSON.stringify(EXPECTED_REPORT))
    assert.equal('inherited' in r.usage, false) // not a fork
    assert.deepEqual(am.usageReportSync(r.logPath), r.usage)
    assert.deepEqual(await am.usageReport(r.logPath), r.usage)
    assert.deepEqual(await am.usageReport(new URL(`file://${r.logPath}`)), r.usage)
    // The report is computed from the log on each read: the same after the run is released.
    assert.notEqual(r.usage, r.usage)
    assert.deepEqual(r.usage, r.usage)
  })

  test('an in-memory run reports its usage too', async () => {
    const r = await usageMesh(null).run(wf(USAGE_WF), { runId: 'spent' })
    assert.equal(r.logPath, null)
    assert.equal(JSON.stringify(r.usage), JSON.stringify(EXPECTED_REPORT))
  })

  test('usage on a failure counts: a run that failed reports what its failed attempts spent', () => {
    const mesh = new Mesh({ logDir: tmpdir() }).agent('paid', () => {
      throw new ActivationError('ParseError', 'no JSON in the answer', { usage: OPENAI_RESPONSE })
    })
    const e = thrown(() => mesh.runSync(wf([agentNode('p', 'paid', { retry: { maxAttempts: 2 } })]), { runId: 'lost' }))
    assertError(e, AgentFailedError, 'AGENT_FAILED')
    const spent = totals(806, 124, 256, 0, 20, 2, 2)
    assert.deepEqual(e.result.usage.total, spent)
    assert.deepEqual(e.result.usage.byNode, { p: spent })
    assert.deepEqual(e.result.usage.byModel, { 'gpt-4o-mini': spent })
  })

  test("a fork's report does not count the events it copied from its parent (inherited)", async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
      .agent('first', () => new Output('a', { usage: { inputTokens: 10, outputTokens: 2 } }))
      .agent('second', (act) => new Output(`b after ${act.deps.a}`, { usage: { inputTokens: 5, outputTokens: 1, model: 'm' } }))
    const w = wf([agentNode('a', 'first'), agentNode('b', 'second', { after: ['a'] })])
    const parent = mesh.runSync(w, { runId: 'parent' })
    assert.deepEqual(parent.usage.total, totals(15, 3, 0, 0, 0, 2, 2))
    // seq 4: the end of the step that ran `a`; `b` runs again in the fork.
    const fork = await mesh.fork(parent.logPath, 4, { runId: 'child' })
    assert.equal(fork.status, 'completed')
    const report = fork.usage
    assert.equal(report.runId, 'child')
    assert.deepEqual(report.total, totals(5, 1, 0, 0, 0, 1, 1))
    assert.deepEqual(report.inherited, totals(10, 2, 0, 0, 0, 1, 1))
    assert.deepEqual(Object.keys(report.byNode), ['b'])
    assert.deepEqual(report.byModel, { m: totals(5, 1, 0, 0, 0, 1, 1) })
    assert.deepEqual(Object.keys(report), ['runId', 'total', 'byNode', 'byAgent', 'byTool', 'byModel', 'inherited'])
    // Summing the fork's log by hand would count `a` twice across the two runs.
    assert.ok(completions(fork.logPath).some((e) => e.node === 'a'))
    assert.deepEqual(am.usageReportSync(fork.logPath), report)
  })

  test('usageReport errors are typed', async () => {
    const missing = '/nonexistent/agentmesh-usage.jsonl'
    assertError(thrown(() => am.usageReportSync(missing)), am.AgentMeshIOError, 'IO')
    assertError(await rejected(am.usageReport(missing)), am.AgentMeshIOError, 'IO')
    assertError(thrown(() => am.usageReportSync(42)), am.InvalidArgumentError, 'INVALID_ARGUMENT')
    const dir = tmpdir()
    const notALog = `${dir}/not-a-log.jsonl`
    fs.writeFileSync(notALog, 'hello\n')
    assertError(await rejected(am.usageReport(notALog)), am.LogCorruptError, 'LOG_CORRUPT')
  })

  test('the CLI reports the same (`agentmesh usage LOG --json`)', (t) => {
    const cliPath = process.env.AGENTMESH_CLI || path.join(__dirname, '..', '..', 'target', 'debug', 'agentmesh')
    if (!fs.existsSync(cliPath) && !process.env.CI) {
      t.skip(`no CLI at ${cliPath} (set AGENTMESH_CLI; CI fails instead)`)
      return
    }
    const r = usageMesh(tmpdir()).runSync(wf(USAGE_WF), { runId: 'spent' })
    const out = childProcess.spawnSync(cliPath, ['usage', r.logPath, '--json'], { encoding: 'utf8', timeout: 30000 })
    assert.equal(out.status, 0, out.stderr)
    assert.equal(JSON.stringify(JSON.parse(out.stdout)), JSON.stringify(r.usage))
  })
})
