'use strict'
// Structured outputs through the public API (docs/workflow.md, "Structured outputs"): a node's
// `output` contract (a JSON Schema, optionally with the repair of almost-JSON text), the retry
// that re-asks with `act.lastFailure`, map items re-asked one by one, the typed errors of a
// mismatch that fails the run and of a schema that cannot be used, and `result.error.item`
// naming the map item that failed the run.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const am = require('..')
const { tempDirs, rejected, thrown } = require('./support/helpers')
const { blake3Hex } = require('./support/blake3')

const { Mesh, Workflow, ActivationError, AgentFailedError, InvalidWorkflowError } = am
const tmpdir = tempDirs('structured')

const PLAN = {
  type: 'object',
  required: ['questions'],
  additionalProperties: false,
  properties: { questions: { type: 'array', minItems: 1, items: { type: 'string' } } },
}
const NOTES = { type: 'object', required: ['notes'], properties: { notes: { type: 'string' } } }

/** The events of a finished run's log, of one type or all. */
const events = (r, type) => am.readLogSync(r.logPath).filter((e) => type === undefined || e.type === type)

/** planner (with `plan` options) → writer, the writer returning what it got from the planner. */
function planWorkflow(plan, name = 'plan') {
  return Workflow.builder(name)
    .agent('plan', 'planner', plan)
    .agent('write', 'writer', { after: 'plan' })
    .build()
}

describe('an output contract re-asks', () => {
  for (const driver of ['run', 'runSync']) {
    test(`${driver}: a wrong type fails the attempt; the retry reads lastFailure naming the path and returns a valid output`, async () => {
      const asked = []
      const mesh = new Mesh({ logDir: tmpdir() })
        .agent('planner', (act) => {
          const failure = act.lastFailure
          asked.push([act.attempt, failure])
          if (failure === undefined) return { questions: ['What is a schema?', 7] } // a number at /questions/1
          assert.equal(failure.type, 'OutputSchemaError')
          assert.ok(failure.message.includes('/questions/1'), failure.message)
          return { questions: ['What is a schema?', 'Why seven?'] }
        })
        .agent('writer', (act) => act.deps.plan)
      const r = await mesh[driver](planWorkflow({ retry: { maxAttempts: 2 }, output: { schema: PLAN } }), { runId: 'reask' })
      assert.equal(r.status, 'completed')
      assert.deepEqual(r.output, { write: { questions: ['What is a schema?', 'Why seven?'] } })
      const failure = {
        kind: 'error',
        type: 'OutputSchemaError',
        message: 'the output does not match the node\'s schema at /questions/1: 7 is not of type "string"',
        retryable: true,
      }
      assert.deepEqual(asked, [[1, undefined], [2, failure]])
      // The log: the failure (what the retry was given), then the completion of the retry.
      const plan = events(r).filter((e) => e.node === 'plan' && (e.type === 'agentFailed' || e.type === 'agentCompleted'))
      assert.deepEqual(plan.map((e) => [e.type, e.attempt]), [['agentFailed', 1], ['agentCompleted', 2]])
      assert.deepEqual(plan[0].data.error, failure)
      assert.deepEqual(plan[1].data.output, { questions: ['What is a schema?', 'Why seven?'] })
      assert.equal(plan[1].data.repaired, undefined)
    })
  }

  test('a tool\'s output is checked like an agent\'s', async () => {
    const calls = []
    const mesh = new Mesh({ logDir: tmpdir() }).tool('lookup', (act) => {
      calls.push(act.attempt)
      return act.attempt === 1 ? 5 : 'five' // a number first, where text is expected
    })
    const wf = Workflow.builder('tool').tool('look', 'lookup', { retry: { maxAttempts: 2 }, output: { schema: { type: 'string' } } }).build()
    const r = await mesh.run(wf)
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { look: 'five' })
    assert.deepEqual(calls, [1, 2])
    assert.deepEqual(events(r, 'toolFailed').map((e) => e.data.error.type), ['OutputSchemaError'])
  })
})

describe('repair', () => {
  test('the blake3 helper is the core\'s (a workflow hash)', () => {
    const wf = planWorkflow({ output: { schema: PLAN, repair: true } })
    assert.equal(blake3Hex(wf.toJson()), wf.hash)
  })

  test('almost-JSON text (a code fence, single quotes, a trailing comma) is parsed: dependents get the object, the log the repair', async () => {
    const text = "```json\n{'questions': ['a', 'b',]}\n```"
    let got = null
    const mesh = new Mesh({ logDir: tmpdir() })
      .agent('planner', () => text)
      .agent('writer', (act) => {
        got = act.deps
        return act.deps.plan.questions.length
      })
    const r = await mesh.run(planWorkflow({ output: { schema: PLAN, repair: true } }))
    assert.equal(r.status, 'completed')
    assert.deepEqual(got, { plan: { questions: ['a', 'b'] } })
    assert.deepEqual(r.output, { write: 2 })
    const [completed] = events(r, 'agentCompleted').filter((e) => e.node === 'plan')
    assert.deepEqual(completed.data.output, { questions: ['a', 'b'] })
    assert.deepEqual(completed.data.repaired, {
      from: blake3Hex(text),
      to: blake3Hex('{"questions":["a","b"]}'),
      fixes: ['codeFence', 'singleQuotes', 'trailingCommas'],
    })
    assert.deepEqual(events(r, 'agentFailed'), [])
  })

  test('text the schema accepts as text is kept; without repair, JSON text is a mismatch', async () => {
    const mesh = new Mesh({ logDir: tmpdir() }).agent('planner', () => "{'questions': ['a']}").agent('writer', (act) => act.deps.plan)
    const kept = await mesh.run(planWorkflow({ output: { schema: { type: 'string' }, repair: true } }))
    assert.deepEqual(kept.output, { write: "{'questions': ['a']}" })
    assert.equal(events(kept, 'agentCompleted')[0].data.repaired, undefined)
    const e = await rejected(mesh.run(planWorkflow({ output: { schema: PLAN } })))
    assert.ok(e instanceof AgentFailedError, e.stack)
    assert.match(e.message, /OutputSchemaError: the output does not match the node's schema at the root: .* is not of type "object"/)
  })

  test('a person\'s decision given as almost-JSON text is repaired like an agent\'s', async () => {
    const decision = { type: 'object', required: ['approved'], properties: { approved: { type: 'boolean' } } }
    const wf = Workflow.builder('approve').human('ok', { prompt: 'Ship it?', output: { schema: decision, repair: true } }).build()
    const mesh = new Mesh({ logDir: tmpdir() })
    let r = await mesh.run(wf)
    assert.equal(r.status, 'waiting')
    assert.equal(r.waiting[0].lastFailure, undefined)
    r = await mesh.resume(r.logPath, { approvals: { ok: "{'approved': True}" } })
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { ok: { approved: true } })
    assert.deepEqual(events(r, 'humanResolved')[0].data.repaired.fixes, ['singleQuotes', 'pythonLiterals'])
  })
})

describe('a mismatch that fails the run', () => {
  test('without retries: AgentFailedError (AGENT_FAILED) naming OutputSchemaError and the path; nothing thrown, so no cause', async () => {
    const mesh = new Mesh({ logDir: tmpdir() }).agent('planner', () => ({ questions: ['a', 7] })).agent('writer', () => null)
    const wf = planWorkflow({ output: { schema: PLAN } })
    for (const e of [await rejected(mesh.run(wf, { runId: 'async' })), thrown(() => mesh.runSync(wf, { runId: 'sync' }))]) {
      assert.ok(e instanceof AgentFailedError, e.stack)
      assert.equal(e.code, 'AGENT_FAILED')
      assert.equal(e.node, 'plan')
      assert.equal(
        e.message,
        '[AGENT_FAILED] node \'plan\' failed on attempt 1/1: OutputSchemaError: the output does not match the node\'s schema at /questions/1: 7 is not of type "string"',
      )
      assert.equal('cause' in e, false)
      assert.equal(e.result.status, 'failed')
      assert.deepEqual([e.result.error.code, e.result.error.node, e.result.error.item], ['AGENT_FAILED', 'plan', undefined])
    }
  })

  test('an earlier attempt\'s throw is not the cause of a later attempt\'s mismatch', async () => {
    const mesh = new Mesh().agent('planner', (act) => {
      if (act.attempt === 1) throw new ActivationError('Flaky', 'try again')
      return { questions: [] } // minItems is 1
    })
    const wf = Workflow.builder('w').agent('plan', 'planner', { retry: { maxAttempts: 2 }, output: { schema: PLAN } }).build()
    const e = await rejected(mesh.run(wf))
    assert.ok(e instanceof AgentFailedError, e.stack)
    assert.match(e.message, /failed on attempt 2\/2: OutputSchemaError: the output does not match the node's schema at \/questions: /)
    assert.equal('cause' in e, false, `cause: ${e.cause}`)
  })

  test('a schema the core cannot use is InvalidWorkflowError naming the node and output.schema', () => {
    for (const load of [
      () => Workflow.builder('w').agent('plan', 'planner', { output: { schema: { type: 'nope' } } }).build(),
      () => Workflow.fromObject({ name: 'w', nodes: [{ id: 'plan', type: 'agent', agent: 'planner', output: { schema: { type: 'nope' } } }] }),
    ]) {
      const e = thrown(load)
      assert.ok(e instanceof InvalidWorkflowError, String(e))
      assert.equal(e.code, 'INVALID_WORKFLOW')
      assert.deepEqual([e.node, e.field], ['plan', 'output.schema'])
      assert.ok(e.message.startsWith("[INVALID_WORKFLOW] node 'plan', field 'output.schema': not a usable JSON Schema"), e.message)
    }
  })
})

describe('a map with an output contract', () => {
  /** planner → map(researcher, each item's output checked) → writer. */
  function researchWorkflow(map = {}) {
    return Workflow.builder('research')
      .agent('plan', 'planner')
      .map('research', { agent: 'researcher', over: '/outputs/plan/questions', after: 'plan', output: { schema: NOTES }, ...map })
      .agent('write', 'writer', { after: 'research' })
      .build()
  }

  function researchMesh(researcher) {
    return new Mesh({ logDir: tmpdir() })
      .agent('planner', () => ({ questions: ['q0', 'q1', 'q2'] }))
      .agent('researcher', researcher)
      .agent('writer', (act) => act.deps.research)
  }

  test('an item whose output misses a key is re-asked alone, with its failure; the others run once', async () => {
    const asked = []
    const mesh = researchMesh((act) => {
      asked.push([act.item.index, act.attempt, act.lastFailure])
      if (act.item.index === 1 && act.attempt === 1) return { note: 'typo in the key' }
      return { notes: `notes on ${act.item.value}` }
    })
    const r = await mesh.run(researchWorkflow({ retry: { maxAttempts: 2 } }))
    assert.equal(r.status, 'completed')
    assert.deepEqual(r.output, { write: ['q0', 'q1', 'q2'].map((q) => ({ notes: `notes on ${q}` })) })
    const failure = {
      kind: 'error',
      type: 'OutputSchemaError',
      message: 'the output does not match the node\'s schema at the root: "notes" is a required property',
      retryable: true,
    }
    assert.deepEqual(asked.sort((a, b) => a[0] - b[0] || a[1] - b[1]), [[0, 1, undefined], [1, 1, undefined], [1, 2, failure], [2, 1, undefined]])
    // The retry is item 1's alone: scheduled with its item, retrying its failure.
    const log = events(r)
    const failed = log.filter((e) => e.type === 'agentFailed')
    assert.deepEqual(failed.map((e) => [e.node, e.data.error]), [['research', failure]])
    const retried = log.filter((e) => e.type === 'agentScheduled' && e.data.retryOf !== undefined)
    assert.deepEqual(retried.map((e) => [e.node, e.attempt, e.data.item, e.data.retryOf]), [['research', 2, { index: 1 }, failed[0].seq]])
  })

  test('an item failing its contract for good fails the run: result.error.item names it', async () => {
    const mesh = researchMesh((act) => (act.item.index === 1 ? { notes: 7 } : { notes: 'fine' }))
    const e = await rejected(mesh.run(researchWorkflow()))
    assert.ok(e instanceof AgentFailedError, e.stack)
    assert.equal(e.node, 'research')
    assert.equal('cause' in e, false)
    const error = e.result.error
    assert.deepEqual([error.code, error.node, error.item], ['AGENT_FAILED', 'research', 1])
    assert.ok(error.message.includes('item 1') && error.message.includes('OutputSchemaError') && error.message.includes('at /notes'), error.message)
    // The same error when the log is read back.
    assert.deepEqual(am.replaySync(e.result.logPath).outcome.error, error)
  })

  test('result.error.item names a map item a throw failed the run with, too', async () => {
    const mesh = researchMesh((act) => {
      if (act.item.index === 2) throw new ActivationError('Broken', 'no notes', { retryable: false })
      return { notes: 'fine' }
    })
    const e = await rejected(mesh.run(researchWorkflow()))
    assert.ok(e instanceof AgentFailedError, e.stack)
    assert.deepEqual([e.result.error.node, e.result.error.item], ['research', 2])
    assert.ok(e.cause instanceof ActivationError)
    // A run a plain node failed names no item.
    const plain = await rejected(researchMesh(() => ({ notes: 'x' })).agent('planner', () => {
      throw new ActivationError('NoPlan', 'none', { retryable: false })
    }).run(researchWorkflow()))
    assert.deepEqual([plain.result.error.node, plain.result.error.item], ['plan', undefined])
  })

  test('collect keeps an item\'s schema error as its outcome', async () => {
    const mesh = researchMesh((act) => (act.item.index === 0 ? {} : { notes: act.item.value }))
    const r = await mesh.run(researchWorkflow({ onItemFailure: 'collect' }))
    assert.equal(r.status, 'completed')
    const [first, ...rest] = r.output.write
    assert.equal(first.ok, false)
    assert.equal(first.error.type, 'OutputSchemaError')
    assert.ok(first.error.message.includes('"notes" is a required property'), first.error.message)
    assert.deepEqual(rest, [{ ok: true, output: { notes: 'q1' } }, { ok: true, output: { notes: 'q2' } }])
  })
})

test("a person's decision the contract refuses is InvalidOutputError from resume; nothing is recorded, the run waits on", async () => {
  const decision = { type: 'object', required: ['approved'], properties: { approved: { type: 'boolean' } } }
  const wf = Workflow.builder('approve').human('ok', { prompt: 'Ship it?', output: { schema: decision } }).build()
  const mesh = new Mesh({ logDir: tmpdir() })
  const r = await mesh.run(wf, { runId: 'refused' })
  assert.equal(r.status, 'waiting')
  const before = fs.readFileSync(r.logPath)
  const e = await rejected(mesh.resume(r.logPath, { approvals: { ok: { approved: 'yes' } } }))
  assert.ok(e instanceof am.InvalidOutputError, e.stack)
  assert.ok(e.message.includes("node 'ok'") && e.message.includes('at /approved'), e.message)
  assert.deepEqual(fs.readFileSync(r.logPath), before)
  assert.throws(() => mesh.resumeSync(r.logPath, { approvals: { ok: {} } }), am.InvalidOutputError)
  assert.equal(am.stateAtSync(r.logPath, am.verifyLogSync(r.logPath).lastSeq).status, 'waiting')
  const done = await mesh.resume(r.logPath, { approvals: { ok: { approved: false } } })
  assert.deepEqual([done.status, done.output], ['completed', { ok: { approved: false } }])
})
