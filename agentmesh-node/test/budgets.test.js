'use strict'
// Budgets through the public API (docs/budgets.md): mesh prices, the run's `budget` option,
// `onBudgetWarning`, host-made calls that reserve (`ask`) and are clamped (`ticket.maxTokens`),
// refusals as BudgetExceededError, `result.cost`, a crash between reservation and settlement,
// and a budget against the real llama-server (AGENTMESH_LLAMA_SERVER; skipped without it
// unless CI is set, as in calls.test.js).

const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { BudgetExceededError, InvalidArgumentError, Mesh, RawJson, Workflow } = am
const { tempDirs, thrown, rejected, assertError } = require('./support/helpers')
const { skipWithoutServer, requireServerInCi, startLlamaServer, proxy } = require('./support/llama')
const { loadScript, plain, scripted, budgetOption, pricesOption } = require('./support/script')

const tmpdir = tempDirs('budgets')
const CHILD = path.join(__dirname, 'support', 'budget-child.js')
const VECTORS = path.resolve(__dirname, '..', '..', 'bindings-tests', 'vectors')

/** $1 per million prompt tokens and $2 per million completion tokens: 1 and 2 µUSD a token. */
const PRICES = {
  version: 1,
  source: 'test',
  models: [{ provider: 'test', model: 'm', match: { equals: 'm' }, prices: { input: 1000000, output: 2000000 } }],
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function workflow(extra, nodes) {
  return Workflow.fromObject({ name: 'budgets', nodes, ...extra })
}

const agent = (id, extra = {}) => ({ id, type: 'agent', agent: 'worker', ...extra })

/** The canonical events of a log, parsed. */
function events(result) {
  return result.canonical().toString().trim().split('\n').slice(1).map((l) => JSON.parse(l))
}

/** An LLM call a host makes itself: prompt `input` tokens, up to `maxTokens` of `output`. */
function ask(input, maxTokens, minTokens) {
  const a = { provider: 'test', model: 'm', inputTokens: input, maxTokens }
  if (minTokens !== undefined) a.minTokens = minTokens
  return a
}

/**
 * A "model" the agents call themselves (a host-made call): it answers `output` tokens or the
 * `maxTokens` it is sent, whichever is smaller, and counts what it was sent.
 */
function model(output) {
  const m = {
    sent: [],
    /** Start the call with its ask, send it, report it: the LLM reply's text. */
    call(act, input, maxTokens, minTokens) {
      const request = { model: 'm', prompt: input, maxTokens }
      const t = act.callStart('llm', 'model', request, { ask: ask(input, maxTokens, minTokens) })
      if (!t.live) return t.outcome.response.text
      const max = t.maxTokens ?? maxTokens
      m.sent.push({ node: act.node, maxTokens: t.maxTokens })
      const out = Math.min(output, max)
      act.callComplete(t, { response: { text: `${out} tokens`, finishReason: 'stop' }, usage: { inputTokens: input, outputTokens: out, model: 'm' } })
      return `${out} tokens`
    },
  }
  return m
}

/** The facts of a refusal, as an agent reads them from the error. */
function refusal(e) {
  assert.ok(e instanceof BudgetExceededError, String(e))
  return { scope: e.scope, dimension: e.dimension, limit: e.limit, spent: e.spent, requested: e.requested, left: e.left }
}

describe('a budget stops a run before the call that would pass it', () => {
  test('the refused call is recorded (callDenied), never sent; the run fails with BUDGET_EXCEEDED and the refusal', async () => {
    const m = model(50)
    const mesh = new Mesh({ logDir: tmpdir(), prices: PRICES })
    // Each call: 100 prompt tokens + up to 50 completion tokens = 100 + 100 µUSD worst case.
    mesh.agent('worker', (act) => [1, 2, 3].map(() => m.call(act, 100, 50)))
    const r = await mesh.run(workflow({}, [agent('a')]), { budget: { microUsd: 350 } })
    assert.equal(r.status, 'failed')
    assert.equal(m.sent.length, 1, 'the second call is never sent')
    assert.equal(r.error.code, 'BUDGET_EXCEEDED')
    assert.equal(r.error.node, 'a')
    const expected = { scope: 'run', node: 'a', dimension: 'microUsd', limit: 350, spent: 200, requested: 200, left: 150 }
    assert.deepEqual(r.error.budget, expected)
    assert.equal(r.error.message, "node 'a': budget exceeded: the run has 150 microUsd of its limit 350 (spent 200); the call needs 200")
    const log = events(r)
    const types = log.map((e) => e.type)
    const at = types.indexOf('callDenied')
    assert.deepEqual(types.slice(at - 2, at + 2), ['callStarted', 'callCompleted', 'callDenied', 'agentFailed'])
    assert.deepEqual(log[at].data.budget, expected)
    assert.equal(log[at].data.call, 2)
    assert.deepEqual(log[at + 1].data.error, {
      kind: 'error',
      type: 'BudgetExceededError',
      message: 'budget exceeded: the run has 150 microUsd of its limit 350 (spent 200); the call needs 200',
      retryable: false,
    })
    assert.equal(types.at(-1), 'runFailed')
    assert.deepEqual(log.at(-1).data.error.budget, expected)
    // The run option is recorded in runStarted: replay and resume use it.
    assert.deepEqual(log[0].data.budget.limits, { microUsd: 350 })
    assert.deepEqual(r.cost, { microUsd: 200, calls: 1, denied: 1, byNode: { a: 200 }, byAgent: { worker: 200 }, byModel: { m: 200 } })
  })

  test('act.llm with a host provider: a calls budget refuses the second call before the provider is called', async () => {
    const sent = []
    const mesh = new Mesh()
    mesh.provider('p', (req) => {
      sent.push(req.messages[0].content)
      return { text: 'ok', finishReason: 'stop' }
    })
    let caught = null
    mesh.agent('worker', async (act) => {
      await act.llm('p', { messages: [{ role: 'user', content: 'one' }] })
      try {
        await act.llm('p', { messages: [{ role: 'user', content: 'two' }] })
      } catch (e) {
        caught = e
        throw e
      }
      return 'unreachable'
    })
    const r = await mesh.run(workflow({ budget: { calls: 1 } }, [agent('a')]))
    assert.deepEqual(sent, ['one'])
    assertError(caught, BudgetExceededError, 'BUDGET_EXCEEDED')
    assert.deepEqual(refusal(caught), { scope: 'run', dimension: 'calls', limit: 1, spent: 1, requested: 1, left: 0 })
    assert.equal(caught.node, 'a')
    assert.equal(caught.agent, null)
    assert.equal(r.status, 'failed')
    assert.equal(r.error.code, 'BUDGET_EXCEEDED')
    assert.deepEqual(events(r).filter((e) => e.type.startsWith('call')).map((e) => e.type), ['callStarted', 'callCompleted', 'callDenied'])
  })

  test('a priced tool reserves its price per call: the second call does not fit and the tool never runs', async () => {
    let runs = 0
    const mesh = new Mesh({ prices: { version: 1, models: [], tools: [{ name: 'search', perCall: 7 }] } })
    mesh.callTool('search', () => { runs += 1; return { hits: 1 } })
    mesh.agent('worker', async (act) => {
      await act.tool('search', { q: 1 })
      try {
        await act.tool('search', { q: 2 })
      } catch (e) {
        assertError(e, BudgetExceededError, 'BUDGET_EXCEEDED')
        return { requested: e.requested, left: e.left }
      }
      return 'unreachable'
    })
    const r = await mesh.run(workflow({ budget: { microUsd: 10 } }, [agent('a')]))
    assert.equal(runs, 1)
    assert.deepEqual(r.output.a, { requested: 7, left: 3 })
    assert.equal(r.cost.microUsd, 7)
    assert.equal(r.cost.denied, 1)
  })

  test('a refused call in a batch: the batch is recorded with the refusal among it, callStartMany throws', async () => {
    const mesh = new Mesh()
    let caught = null
    mesh.agent('worker', (act) => {
      try {
        act.callStartMany([
          { kind: 'tool', name: 't', request: 1 },
          { kind: 'tool', name: 't', request: 2 },
        ])
      } catch (e) {
        caught = e
      }
      return 'caught'
    })
    const r = await mesh.run(workflow({}, [agent('a')]), { budget: { calls: 1 } })
    assertError(caught, BudgetExceededError, 'BUDGET_EXCEEDED')
    assert.deepEqual(refusal(caught), { scope: 'run', dimension: 'calls', limit: 1, spent: 1, requested: 1, left: 0 })
    // The agent caught the refusal: its run goes on; the first call stays started, unanswered.
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { a: 'caught' })
    const calls = events(r).filter((e) => e.type.startsWith('call'))
    assert.deepEqual(calls.map((e) => [e.type, e.data.call]), [['callStarted', 1], ['callDenied', 2]])
    assert.deepEqual([r.cost.calls, r.cost.denied], [1, 1])
  })
})

describe('a run within its budget', () => {
  test('completes and reports exact usage and cost from the price table', async () => {
    const m = model(10)
    const mesh = new Mesh({ logDir: tmpdir(), prices: PRICES })
    mesh.agent('worker', (act) => m.call(act, 30, 10))
    mesh.tool('count', () => ({ counted: true }))
    // Two steps of one LLM call each: 30 × 1 + 10 × 2 = 50 µUSD a call, 100 of 110.
    const wf = workflow({}, [agent('a'), agent('b', { after: ['a'] }), { id: 'c', type: 'tool', tool: 'count', after: ['b'] }])
    const r = await mesh.run(wf, { budget: { microUsd: 110, calls: 10 } })
    assert.equal(r.status, 'completed', JSON.stringify(r.error))
    assert.deepEqual(r.output, { c: { counted: true } })
    // The tool node spent nothing in a run that accounts: 0, not absent.
    assert.deepEqual(r.cost, { microUsd: 100, calls: 2, denied: 0, byNode: { a: 50, b: 50, c: 0 }, byAgent: { worker: 100 }, byModel: { m: 100 } })
    const u = r.usage
    assert.deepEqual(
      [u.total.inputTokens, u.total.outputTokens, u.total.calls, u.total.denied, u.total.microUsd],
      [60, 20, 2, undefined, 100],
    )
    assert.deepEqual([u.byNode.a.microUsd, u.byNode.b.microUsd], [50, 50])
    assert.deepEqual(u.lines.map((l) => [l.node, l.name, l.model, l.spent.microUsd]), [['a', 'worker', 'm', 50], ['b', 'worker', 'm', 50]])
    const charges = events(r).filter((e) => e.type === 'callCompleted').map((e) => e.data.charge)
    assert.deepEqual(charges, [
      { inputTokens: 30, outputTokens: 10, microUsd: 50, calls: 1 },
      { inputTokens: 30, outputTokens: 10, microUsd: 50, calls: 1 },
    ])
  })

  test('a call is clamped to what is left when its ask allows it: ticket.maxTokens', () => {
    const m = model(1000)
    const mesh = new Mesh({ prices: PRICES })
    mesh.agent('worker', (act) => m.call(act, 100, 1000, 10))
    // 100 µUSD for the prompt leaves 400 for 200 completion tokens.
    const r = mesh.runSync(workflow({}, [agent('a')]), { budget: { microUsd: 500 } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(m.sent, [{ node: 'a', maxTokens: 200 }])
    const started = events(r).find((e) => e.type === 'callStarted')
    assert.deepEqual(started.data.reserve, { inputTokens: 100, outputTokens: 200, microUsd: 500, calls: 1 })
    assert.equal(started.data.maxTokens, 200)
    assert.equal(r.cost.microUsd, 500)
  })

  test('an unclamped ticket has maxTokens null; a run that does not account has cost.microUsd null', () => {
    const tickets = []
    const mesh = new Mesh()
    mesh.agent('worker', (act) => {
      const t = act.callStart('tool', 't', { q: 1 })
      tickets.push(t.maxTokens)
      act.callComplete(t, { response: 'ok' })
      return 'done'
    })
    const r = mesh.runSync(workflow({}, [agent('a')]))
    assert.deepEqual(tickets, [null])
    assert.deepEqual(r.cost, { microUsd: null, calls: 1, denied: 0, byNode: {}, byAgent: {}, byModel: {} })
    assert.equal(events(r)[0].data.budget, undefined)
  })

  test('the run option replaces the workflow budget; {} accounts for spend and limits nothing', () => {
    const m = model(5)
    const mesh = new Mesh({ prices: PRICES })
    mesh.agent('worker', (act) => [1, 2, 3].map(() => m.call(act, 10, 5)))
    const wf = workflow({ budget: { calls: 1 } }, [agent('a')])
    assert.equal(mesh.runSync(wf).error.code, 'BUDGET_EXCEEDED')
    for (const budget of [{}, { calls: 'unlimited' }, { calls: 3n }]) {
      const r = mesh.runSync(wf, { budget })
      assert.equal(r.status, 'completed', String(budget.calls))
      const limits = budget.calls === 3n ? { calls: 3 } : {}
      assert.deepEqual(events(r)[0].data.budget.limits, limits)
      assert.equal(r.cost.microUsd, 3 * (10 + 10))
    }
  })

  test('the stream forms take the budget too', async () => {
    const m = model(5)
    const mesh = new Mesh({ prices: PRICES })
    mesh.agent('worker', (act) => [1, 2].map(() => m.call(act, 10, 5)))
    const stream = mesh.stream(workflow({}, [agent('a')]), { budget: { calls: 1 } })
    const seen = []
    for await (const e of stream) seen.push(e.type)
    assert.ok(seen.includes('callDenied'), seen.join(' '))
    assert.equal((await stream.result).error.code, 'BUDGET_EXCEEDED')
  })
})

describe('100 parallel agents and a budget for one call', () => {
  const WF = workflow({ budget: { calls: 1 } }, Array.from({ length: 100 }, (_, i) => agent(`a${String(i).padStart(3, '0')}`)))

  /** A run in which agent i waits `delay(i)` ms before its call. */
  async function race(delay) {
    const sent = []
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.callTool('search', (args) => {
      sent.push(args.q)
      return { hits: 1 }
    })
    mesh.agent('worker', async (act) => {
      await sleep(delay(Number(act.node.slice(1))))
      try {
        await act.tool('search', { q: act.node })
        return { won: true }
      } catch (e) {
        return { refused: refusal(e) }
      }
    })
    const r = await mesh.run(WF, { runId: 'race' })
    return { r, sent }
  }

  test('the first scheduled wins every time, 99 typed refusals, the same canonical log', async () => {
    const delays = [(i) => (100 - i) % 7, (i) => i % 5, () => 0, (i) => (i === 0 ? 30 : 0)]
    let first = null
    for (const delay of delays) {
      const { r, sent } = await race(delay)
      assert.equal(r.status, 'completed')
      assert.deepEqual(sent, ['a000'])
      assert.deepEqual(r.output.a000, { won: true })
      for (let i = 1; i < 100; i++) {
        assert.deepEqual(r.output[`a${String(i).padStart(3, '0')}`], {
          refused: { scope: 'run', dimension: 'calls', limit: 1, spent: 0, requested: 1, left: 0 },
        })
      }
      assert.deepEqual([r.cost.calls, r.cost.denied], [1, 99])
      const leases = events(r).filter((e) => e.type === 'agentScheduled').map((e) => e.data.lease.calls)
      assert.deepEqual(leases, [1, ...Array(99).fill(0)])
      const bytes = r.canonical()
      if (first === null) first = bytes
      else assert.ok(bytes.equals(first), 'the canonical log differs between runs')
    }
  })

  test('the budget_parallel_leases vector: the Rust bytes, run after run', async () => {
    const dir = path.join(VECTORS, 'budget_parallel_leases')
    const wf = Workflow.fromFile(path.join(dir, 'workflow.json'))
    const script = loadScript(path.join(dir, 'script.json'))
    const expected = fs.readFileSync(path.join(dir, 'expected.jsonl'))
    for (let i = 0; i < 3; i++) {
      const mesh = new Mesh({ logDir: tmpdir(), prices: pricesOption(script.prices) })
      const fn = scripted(script)
      for (const name of wf.agentNames()) mesh.agent(name, fn)
      const r = await mesh.run(wf, { input: plain(script.input), seed: script.seed.text, runId: script.runId, budget: budgetOption(script.budget) })
      assert.ok(r.canonical().equals(expected), `run ${i} differs from expected.jsonl`)
      assert.deepEqual(r.output, { report: { done: true } })
    }
  })
})

describe('onBudgetWarning', () => {
  // Two steps of 50 µUSD of a 100 µUSD budget warned at 50 % and 80 %.
  const WARNED = workflow({ budget: { microUsd: 100 }, budgetWarnings: [50, 80] }, [agent('a'), agent('b', { after: ['a'] })])

  function warnedMesh(logDir) {
    const m = model(10)
    const mesh = new Mesh({ logDir, prices: PRICES })
    mesh.agent('worker', (act) => m.call(act, 30, 10))
    return mesh
  }

  const summary = (e) => [e.type, e.data.scope, e.data.dimension, e.data.threshold, e.data.limit, e.data.spent]

  test('gets each committed warning in order, with or without onEvent, in every form', async () => {
    const expected = [
      ['budgetWarning', 'run', 'microUsd', 50, 100, 50],
      ['budgetWarning', 'run', 'microUsd', 80, 100, 100],
    ]
    const alone = []
    const r = await warnedMesh(tmpdir()).run(WARNED, { onBudgetWarning: (e) => alone.push(e) })
    assert.equal(r.status, 'completed')
    assert.deepEqual(alone.map(summary), expected)
    // The event objects are the committed events (with meta), at their seqs in the log.
    const logged = events(r).filter((e) => e.type === 'budgetWarning')
    assert.deepEqual(alone.map((e) => e.seq), logged.map((e) => e.seq))
    assert.equal(typeof alone[0].meta.at, 'number')

    const order = []
    const sync = []
    warnedMesh(null).runSync(WARNED, {
      onEvent: (e) => order.push(`event ${e.type}`),
      onBudgetWarning: (e) => {
        order.push(`warning ${e.data.threshold}`)
        sync.push(e)
      },
    })
    assert.deepEqual(sync.map(summary), expected)
    // Each warning reaches onEvent first, then onBudgetWarning.
    const warnings = order.flatMap((o, i) => (o.startsWith('warning') ? [[order[i - 1], o]] : []))
    assert.deepEqual(warnings, [['event budgetWarning', 'warning 50'], ['event budgetWarning', 'warning 80']])

    const streamed = []
    const stream = warnedMesh(null).stream(WARNED, { onBudgetWarning: (e) => streamed.push(e) })
    for await (const e of stream) assert.ok(e.type)
    assert.deepEqual(streamed.map(summary), expected)
  })

  test('a throwing onBudgetWarning stops driving as a throwing onEvent does; the run resumes', async () => {
    const dir = tmpdir()
    const boom = new Error('alerting is down')
    const e = await rejected(
      warnedMesh(dir).run(WARNED, {
        runId: 'warned',
        onBudgetWarning: () => {
          throw boom
        },
      }),
    )
    assert.equal(e, boom)
    const logPath = path.join(dir, 'warned.jsonl')
    const logged = am.readLogSync(logPath)
    // Driving stopped at the commit that held the warning: nothing final, no later step.
    assert.deepEqual(logged.filter((x) => x.type === 'budgetWarning').map((x) => x.data.threshold), [50])
    assert.ok(!logged.some((x) => ['runCompleted', 'runFailed', 'runCancelled'].includes(x.type)))
    assert.ok(!logged.some((x) => x.type.startsWith('agent') && x.node === 'b' && x.type !== 'agentScheduled'))
    const later = []
    const r = await warnedMesh(dir).resume(logPath, { onBudgetWarning: (w) => later.push(w.data.threshold) })
    assert.equal(r.status, 'completed')
    assert.deepEqual(later, [80])
    assert.equal(r.cost.microUsd, 100)
  })

  test('must be a function', () => {
    const e = thrown(() => warnedMesh(null).runSync(WARNED, { onBudgetWarning: 'log' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(e.message, '[INVALID_ARGUMENT] onBudgetWarning must be a function, not log')
  })
})

describe('bad budgets, asks and prices are InvalidArgumentError naming the field', () => {
  const ONE = workflow({}, [agent('a')])

  test('each bad budget value, in every run form, before anything is written', async () => {
    const cases = [
      [{ calls: NaN }, "run option 'budget.calls': a limit is a whole number, not NaN"],
      [{ calls: Infinity }, "run option 'budget.calls': a limit is a whole number, not Infinity"],
      [{ microUsd: -Infinity }, "run option 'budget.microUsd': a limit is a whole number, not -Infinity"],
      [{ calls: -1 }, "run option 'budget.calls': a limit is not negative, not -1"],
      [{ calls: -1n }, "run option 'budget.calls': a limit is not negative, not -1"],
      [{ microUsd: 1.5 }, "run option 'budget.microUsd': a limit is a whole number, not 1.5"],
      [{ calls: true }, 'run option \'budget.calls\': a limit is a whole number or "unlimited", not true'],
      [{ calls: 'lots' }, 'run option \'budget.calls\': a limit is a whole number or "unlimited", not the string "lots"'],
      [{ calls: null }, 'run option \'budget.calls\': a limit is a whole number or "unlimited", not null'],
      [{ calls: () => 1 }, 'run option \'budget.calls\': a limit is a whole number or "unlimited", not a function'],
      [{ calls: 2 ** 64 }, "run option 'budget.calls': 1.8446744073709552e+19 is more than a limit written as a float holds exactly (write an integer, at most 18446744073709551615)"],
      [{ calls: 2 ** 53 + 2 }, "run option 'budget.calls': 9007199254740994.0 is more than a limit written as a float holds exactly (write an integer, at most 18446744073709551615)"],
      [{ calls: 2n ** 64n }, "run option 'budget.calls': a limit is at most 18446744073709551615, not 18446744073709551616"],
      [{ tokens: 1 }, "run option 'budget.tokens': unknown budget dimension (known: inputTokens, outputTokens, totalTokens, microUsd, calls)"],
      // The first bad field in the core's (byte) order, whichever side words it.
      [{ microUsd: NaN, calls: -1 }, "run option 'budget.calls': a limit is not negative, not -1"],
      [{ zeta: 1, calls: NaN }, "run option 'budget.calls': a limit is a whole number, not NaN"],
      ['lots', 'run option \'budget\': a budget is an object of limits (inputTokens, outputTokens, totalTokens, microUsd, calls), not the string "lots"'],
      [[1], "run option 'budget': a budget is an object of limits (inputTokens, outputTokens, totalTokens, microUsd, calls), not an array"],
      [NaN, "run option 'budget': a budget is an object of limits (inputTokens, outputTokens, totalTokens, microUsd, calls), not NaN"],
      [new Map(), "run option 'budget': a budget is an object of limits (inputTokens, outputTokens, totalTokens, microUsd, calls), not [object Map]"],
    ]
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir, prices: PRICES })
    mesh.agent('worker', () => 'ran')
    for (const [budget, message] of cases) {
      for (const form of [
        () => mesh.runSync(ONE, { budget }),
        () => mesh.stream(ONE, { budget }),
      ]) {
        const e = thrown(form)
        assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
        assert.equal(e.message, `[INVALID_ARGUMENT] ${message}`, String(budget))
      }
      const e = await rejected(mesh.run(ONE, { budget }))
      assert.equal(e.message, `[INVALID_ARGUMENT] ${message}`)
    }
    assert.deepEqual(fs.readdirSync(dir), [], 'no log was created')
    // At the limits: exact.
    const r = mesh.runSync(ONE, { budget: { calls: 2n ** 64n - 1n, microUsd: 2 ** 53, inputTokens: 5.0 } })
    assert.deepEqual(events(r)[0].data.budget.limits, { inputTokens: 5, microUsd: 2 ** 53, calls: 18446744073709552000 })
    assert.ok(r.canonical().toString().includes('"calls":18446744073709551615'))
  })

  test('an unpriced model under a budget: InvalidArgumentError, nothing recorded', () => {
    let caught = null
    const mesh = new Mesh()
    mesh.agent('worker', (act) => {
      try {
        act.callStart('llm', 'llm', { q: 1 }, { ask: { provider: 'nobody', model: 'ghost', inputTokens: 1, maxTokens: 1 } })
      } catch (e) {
        caught = e
      }
      return 'done'
    })
    const r = mesh.runSync(ONE, { budget: { calls: 5 } })
    assertError(caught, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.match(caught.message, /no price for model 'ghost' of provider 'nobody'/)
    assert.equal(r.status, 'completed')
    assert.deepEqual(events(r).filter((e) => e.type.startsWith('call')), [])
  })

  test('each bad ask names its field; nothing is recorded', () => {
    const cases = [
      [{ model: 'm', inputTokens: 1 }, 'ask.provider must be a string, not undefined'],
      [{ provider: 1, model: 'm', inputTokens: 1 }, 'ask.provider must be a string, not 1'],
      [{ provider: 'test', inputTokens: 1 }, 'ask.model must be a string, not undefined'],
      [{ provider: 'test', model: 'm' }, 'ask.inputTokens is required (estimated prompt tokens, a non-negative integer)'],
      [{ provider: 'test', model: 'm', inputTokens: -1 }, 'ask.inputTokens must be an integer from 0 to 2^53-1, not -1'],
      [{ provider: 'test', model: 'm', inputTokens: 1.5 }, 'ask.inputTokens must be an integer from 0 to 2^53-1, not 1.5'],
      [{ provider: 'test', model: 'm', inputTokens: '5' }, 'ask.inputTokens must be an integer from 0 to 2^53-1, not "5"'],
      [{ provider: 'test', model: 'm', inputTokens: 1, maxTokens: NaN }, 'ask.maxTokens must be an integer from 0 to 2^53-1, not NaN'],
      [{ provider: 'test', model: 'm', inputTokens: 1, minTokens: 2 ** 53 }, 'ask.minTokens must be an integer from 0 to 2^53-1, not 9007199254740992'],
      [{ provider: 'test', model: 'm', inputTokens: 1, tokens: 5 }, 'ask.tokens is not a field of an ask (expected provider, model, inputTokens, maxTokens, minTokens)'],
      ['m', 'ask must be an object {provider, model, inputTokens, maxTokens?, minTokens?}, not m'],
    ]
    const seen = []
    const mesh = new Mesh({ prices: PRICES })
    mesh.agent('worker', (act) => {
      for (const [a] of cases) {
        for (const start of [
          () => act.callStart('llm', 'llm', {}, { ask: a }),
          () => act.callStartMany([{ kind: 'llm', name: 'llm', request: {}, ask: a }]),
        ]) {
          try {
            start()
            seen.push('started')
          } catch (e) {
            assert.ok(e instanceof InvalidArgumentError, String(e))
            seen.push(e.message)
          }
        }
      }
      try {
        act.callStart('llm', 'llm', {}, { asked: {} })
      } catch (e) {
        seen.push(e.message)
      }
      return 'done'
    })
    const r = mesh.runSync(ONE, { budget: {} })
    const want = cases.flatMap(([, m]) => [`[INVALID_ARGUMENT] ${m}`, `[INVALID_ARGUMENT] ${m}`])
    assert.deepEqual(seen, [...want, "[INVALID_ARGUMENT] unknown callStart option 'asked' (expected ask)"])
    assert.deepEqual(events(r).filter((e) => e.type.startsWith('call')), [])
  })

  test('a bad price table is refused when the mesh is built', () => {
    const bad = (prices) => {
      const e = thrown(() => new Mesh({ prices }))
      assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
      return e.message
    }
    const table = (price) => ({ version: 1, models: [{ provider: 'p', model: 'm', match: { equals: 'm' }, prices: { input: price, output: 1 } }] })
    assert.match(bad(table(-1)), /^\[INVALID_ARGUMENT\] price table: at models\[0\]\.prices\.input: /)
    assert.match(bad(table(1.5)), /^\[INVALID_ARGUMENT\] price table: at models\[0\]\.prices\.input: /)
    assert.match(bad({ ...table(1), version: 2 }), /^\[INVALID_ARGUMENT\] price table: version 2 is not 1/)
    assert.match(bad({ ...table(1), colour: 'red' }), /^\[INVALID_ARGUMENT\] price table: at colour: unknown field/)
    assert.match(bad(new RawJson('{"version": 1, "models": [')), /^\[INVALID_ARGUMENT\] price table: /)
    assert.match(bad(() => 1), /^\[INVALID_ARGUMENT\] prices is not JSON data/)
    // The exact text form is the same table.
    const raw = new Mesh({ prices: new RawJson(JSON.stringify(PRICES)) })
    raw.agent('worker', (act) => model(1).call(act, 1, 1))
    assert.equal(raw.runSync(ONE, { budget: {} }).cost.microUsd, 3)
  })
})

describe('resume: a crash between reservation and settlement', () => {
  // A calls budget of 2 and 100 completion tokens; each ask: 5 prompt tokens, up to 80 out.
  const WF = { name: 'crash', budget: { calls: 2, outputTokens: 100 }, nodes: [{ id: 'a', type: 'agent', agent: 'worker' }] }
  const ASK = { provider: 'test', model: 'm', inputTokens: 5, maxTokens: 80, minTokens: 1 }

  function spawnChild(args) {
    const child = childProcess.spawn(process.execPath, [CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, err })))
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000) // never hang the suite
    exited.then(() => clearTimeout(kill))
    return { child, exited }
  }

  async function markerOf(file, exited) {
    let gone = false
    exited.then(() => (gone = true))
    for (;;) {
      if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').endsWith('\n')) return fs.readFileSync(file, 'utf8').trim()
      if (gone) assert.fail(`the child exited before starting its call: ${(await exited).err}`)
      await sleep(10)
    }
  }

  test('the reservation is held after a SIGKILL; other prices are refused, nothing written', async () => {
    const dir = tmpdir()
    const marker = path.join(dir, 'marker')
    const { child, exited } = spawnChild({ logDir: dir, runId: 'crash', marker, prices: PRICES, workflow: WF, ask: ASK })
    assert.equal(await markerOf(marker, exited), 'true null', '80 of 100 fits: not clamped')
    child.kill('SIGKILL')
    assert.equal((await exited).signal, 'SIGKILL')
    const logPath = path.join(dir, 'crash.jsonl')
    const before = fs.readFileSync(logPath)
    const started = am.readLogSync(logPath).find((e) => e.type === 'callStarted')
    assert.deepEqual(started.data.reserve, { inputTokens: 5, outputTokens: 80, microUsd: 165, calls: 1 })

    // Resuming with other prices than the run was started with is refused before anything is written.
    const other = { ...PRICES, models: [{ ...PRICES.models[0], prices: { input: 1, output: 1 } }] }
    for (const prices of [undefined, other]) {
      const mesh = new Mesh({ logDir: dir, prices })
      mesh.agent('worker', () => 'never')
      const e = await rejected(mesh.resume(logPath))
      assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
      assert.match(e.message, /the run was started with price table [0-9a-f]+, not [0-9a-f]+ .*: pass the prices it was started with/)
      assert.ok(fs.readFileSync(logPath).equals(before), 'nothing written')
    }

    const seen = []
    const mesh = new Mesh({ logDir: dir, prices: PRICES })
    mesh.agent('worker', (act) => {
      // The call in flight goes out again under its number; its 80 tokens stay reserved, so a
      // second call asking for 80 is clamped to the 20 left.
      const again = act.callStart('llm', 'llm', { n: 1 }, { ask: ASK })
      const second = act.callStart('llm', 'llm', { n: 2 }, { ask: ASK })
      seen.push([again.call, again.live, again.maxTokens], [second.call, second.live, second.maxTokens])
      act.callComplete(again, { response: 'one', usage: { inputTokens: 5, outputTokens: 30, model: 'm' } })
      act.callComplete(second, { response: 'two', usage: { inputTokens: 5, outputTokens: 20, model: 'm' } })
      try {
        act.callStart('llm', 'llm', { n: 3 }, { ask: { ...ASK, maxTokens: 1 } })
      } catch (e) {
        return { third: refusal(e) }
      }
      return 'not refused'
    })
    const r = await mesh.resume(logPath)
    assert.deepEqual(seen, [[1, true, null], [2, true, 20]])
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output.a, { third: { scope: 'run', dimension: 'calls', limit: 2, spent: 2, requested: 1, left: 0 } })
    assert.deepEqual(r.cost, { microUsd: 10 + 100, calls: 2, denied: 1, byNode: { a: 110 }, byAgent: { worker: 110 }, byModel: { m: 110 } })
  })
})

// Against the real llama-server ----------------------------------------------------------------

requireServerInCi('budgets')

describe('a budget against the real llama-server', { skip: skipWithoutServer }, () => {
  let server = null
  let px = null

  before(async () => {
    server = await startLlamaServer()
    px = await proxy(server.port)
  })

  after(() => {
    if (px !== null) px.server.close()
    if (server !== null) server.stop()
  })

  // The user table prices the local model under the provider's registered name.
  const LOCAL = {
    version: 1,
    source: 'test',
    models: [{ provider: 'local', model: 'smollm2', match: { equals: 'smollm2' }, prices: { input: 1000000, output: 2000000 } }],
  }
  const request = { model: 'smollm2', messages: [{ role: 'user', content: 'Name a colour.' }], maxTokens: 16, temperature: 0 }

  function localMesh() {
    const mesh = new Mesh({ logDir: tmpdir(), prices: LOCAL })
    mesh.provider('local', { kind: 'openai', baseUrl: `http://127.0.0.1:${px.port}/v1`, maxRetries: 0 })
    mesh.agent('worker', async (act) => {
      try {
        const reply = await act.llm('local', request)
        return { text: reply.text, usage: reply.usage }
      } catch (e) {
        return { refused: refusal(e) }
      }
    })
    return mesh
  }

  test('too small for the worst case: refused before any request reaches the server', async () => {
    const before = px.state.count
    // The estimated prompt alone costs more than 40 µUSD (docs/budgets.md: the byte estimate
    // has 32 tokens of template preamble), plus 16 × 2 for maxTokens.
    const r = await localMesh().run(workflow({}, [agent('a')]), { budget: { microUsd: 40 } })
    assert.equal(px.state.count, before, 'no request was sent')
    const refused = r.output.a.refused
    assert.equal(refused.dimension, 'microUsd')
    assert.equal(refused.left, 40)
    assert.ok(refused.requested > 40 + 32, JSON.stringify(refused))
    assert.deepEqual(events(r).filter((e) => e.type.startsWith('call')).map((e) => e.type), ['callDenied'])
    // The agent caught the refusal and answered without the call.
    assert.equal(r.status, 'completed')
    assert.deepEqual([r.cost.microUsd, r.cost.calls, r.cost.denied], [0, 0, 1])
  })

  test("within budget: the call's charge is the server's reported usage, priced", async () => {
    const before = px.state.count
    const r = await localMesh().run(workflow({}, [agent('a')]), { budget: { microUsd: 1000000 } })
    assert.equal(r.status, 'completed', JSON.stringify(r.error))
    assert.equal(px.state.count, before + 1)
    const { usage } = r.output.a
    assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, JSON.stringify(usage))
    const [started] = events(r).filter((e) => e.type === 'callStarted')
    const [completed] = events(r).filter((e) => e.type === 'callCompleted')
    // The reservation is the estimate, never below what the server counted.
    assert.ok(started.data.reserve.inputTokens >= usage.inputTokens, JSON.stringify(started.data.reserve))
    assert.equal(started.data.reserve.outputTokens, 16)
    const microUsd = usage.inputTokens * 1 + usage.outputTokens * 2
    assert.deepEqual(completed.data.charge, { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, microUsd, calls: 1 })
    assert.deepEqual(r.cost, { microUsd, calls: 1, denied: 0, byNode: { a: microUsd }, byAgent: { worker: microUsd }, byModel: { smollm2: microUsd } })
  })
})
