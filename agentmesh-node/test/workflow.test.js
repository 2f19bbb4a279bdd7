'use strict'
// Workflow and WorkflowBuilder (lib/workflow.js).

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const url = require('node:url')
const util = require('node:util')

const native = require('../native.js')
const { Workflow, WorkflowBuilder } = require('../lib/workflow')
const { AgentMeshIOError, InvalidArgumentError, InvalidWorkflowError } = require('../lib/errors')

const examples = path.resolve(__dirname, '..', '..', 'docs', 'examples')
const exampleFile = (name) => path.join(examples, name, 'workflow.json')
const exampleObject = (name) => JSON.parse(fs.readFileSync(exampleFile(name), 'utf-8'))

/** What `fn` threw (failing when it does not throw). */
function thrown(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  assert.fail('expected an error')
}

function assertInvalidWorkflow(e, message, details = {}) {
  assert.ok(e instanceof InvalidWorkflowError, `not an InvalidWorkflowError: ${e && e.stack}`)
  assert.equal(e.message, `[INVALID_WORKFLOW] ${message}`)
  assert.deepEqual(e.details, details)
}

function assertInvalidArgument(e, message) {
  assert.ok(e instanceof InvalidArgumentError, `not an InvalidArgumentError: ${e && e.stack}`)
  assert.equal(e.message, `[INVALID_ARGUMENT] ${message}`)
}

const MIXED = {
  name: 'mixed',
  nodes: [
    { id: 'b', type: 'agent', agent: 'zed' },
    { id: 'a', type: 'tool', tool: 'search', after: ['b'] },
    { id: 'c', type: 'agent', agent: 'alpha', after: ['b'] },
    { id: 'h', type: 'human', prompt: 'ok?', after: ['a', 'c'] },
  ],
}

describe('Workflow', () => {
  test('fromObject: name, hash, canonical JSON, node ids, agent and tool names', () => {
    const wf = Workflow.fromObject(MIXED)
    const nw = native.NativeWorkflow.fromJson(JSON.stringify(MIXED))
    assert.ok(wf instanceof Workflow)
    assert.equal(wf.name, 'mixed')
    assert.equal(wf.hash, nw.hash)
    assert.match(wf.hash, /^[0-9a-f]{64}$/)
    assert.equal(wf.toJson(), nw.toJson())
    assert.deepEqual(wf.nodeIds(), ['b', 'a', 'c', 'h'])
    assert.deepEqual(wf.agentNames(), ['alpha', 'zed'])
    assert.deepEqual(wf.toolNames(), ['search'])
    assert.deepEqual(wf.toObject(), MIXED)
    assert.equal(JSON.stringify(wf), JSON.stringify(wf.toObject()))
  })

  test('fromJson, fromFile (path or file: URL) and fromObject of the same document agree', () => {
    for (const name of ['review-loop', 'triage', 'retry-backoff', 'approval']) {
      const file = exampleFile(name)
      const hash = native.NativeWorkflow.fromFile(file).hash
      assert.equal(Workflow.fromFile(file).hash, hash)
      assert.equal(Workflow.fromFile(url.pathToFileURL(file)).hash, hash)
      assert.equal(Workflow.fromJson(fs.readFileSync(file, 'utf-8')).hash, hash)
      assert.equal(Workflow.fromObject(exampleObject(name)).hash, hash)
      // The canonical form round-trips.
      assert.equal(Workflow.fromObject(Workflow.fromFile(file).toObject()).hash, hash)
    }
  })

  test('invalid definitions throw InvalidWorkflowError with node and field', () => {
    const e = thrown(() => Workflow.fromObject({ name: 'w', nodes: [{ id: 'a', type: 'agent', agent: 'x', after: ['b'] }] }))
    assertInvalidWorkflow(e, "node 'a', field 'after[0]': unknown node 'b'", { node: 'a', field: 'after[0]' })
    assert.equal(e.node, 'a')
    assert.equal(e.field, 'after[0]')
    assert.ok(e.stack.split('\n')[1].includes('Workflow.fromJson'), e.stack)
    const doc = thrown(() => Workflow.fromJson('{"nodes": ['))
    assert.ok(doc instanceof InvalidWorkflowError)
    assert.deepEqual([doc.node, doc.field], [null, '(document)'])
  })

  test('fromJson needs a string, fromObject a plain object', () => {
    assertInvalidWorkflow(thrown(() => Workflow.fromJson(5)), 'workflow JSON must be a string, not number')
    assertInvalidWorkflow(thrown(() => Workflow.fromJson(Buffer.from('{}'))), 'workflow JSON must be a string, not Buffer')
    assertInvalidWorkflow(thrown(() => Workflow.fromJson()), 'workflow JSON must be a string, not undefined')
    assertInvalidWorkflow(thrown(() => Workflow.fromObject(null)), 'workflow must be a plain object, not null')
    assertInvalidWorkflow(thrown(() => Workflow.fromObject([MIXED])), 'workflow must be a plain object, not an array')
    assertInvalidWorkflow(thrown(() => Workflow.fromObject(JSON.stringify(MIXED))), 'workflow must be a plain object, not string')
    assertInvalidWorkflow(thrown(() => Workflow.fromObject(new Map())), 'workflow is not JSON data: Map at $ is not JSON data (only plain objects and arrays are)')
    class Spec {
      constructor() {
        Object.assign(this, MIXED)
      }
    }
    assertInvalidWorkflow(thrown(() => Workflow.fromObject(new Spec())), 'workflow is not JSON data: Spec at $ is not JSON data (only plain objects and arrays are)')
  })

  test('fromObject refuses what is not JSON data, naming the place (JSON.stringify would not)', () => {
    const node = (extra) => ({ name: 'w', nodes: [{ id: 'a', type: 'agent', agent: 'x', ...extra }] })
    const cyclic = node({})
    cyclic.nodes[0].self = cyclic.nodes
    const deep = node({})
    let at = deep
    for (let i = 0; i < 100; i++) at = at.x = {}
    const cases = [
      [{ ...MIXED, maxSteps: NaN }, 'NaN at $.maxSteps is not a JSON number'],
      [node({ timeoutMs: Infinity }), 'Infinity at $.nodes[0].timeoutMs is not a JSON number'],
      [node({ maxVisits: 10n }), 'BigInt at $.nodes[0].maxVisits is not JSON data (use a number or a string)'],
      [node({ agent: () => 'x' }), 'function at $.nodes[0].agent is not JSON data'],
      [node({ agent: Symbol('x') }), 'symbol at $.nodes[0].agent is not JSON data'],
      [node({ after: ['b', undefined] }), 'undefined at $.nodes[0].after[1] is not JSON data'],
      [node({ prompt: new Date(0) }), 'Date at $.nodes[0].prompt is not JSON data (only plain objects and arrays are)'],
      [node({ 'odd key': { toJSON: () => 1 } }), 'function at $.nodes[0]["odd key"].toJSON is not JSON data'],
      [node({ agent: 'x\uD800' }), 'string at $.nodes[0].agent contains a lone surrogate (not valid Unicode)'],
      [node({ ['k\uDC00']: 1 }), 'key at $.nodes[0]["k\\udc00"] contains a lone surrogate (not valid Unicode)'],
      [cyclic, 'cyclic reference at $.nodes[0].self (a value that contains itself is not JSON data)'],
      [deep, `nesting deeper than 100 arrays/objects at $${'.x'.repeat(100)}`],
    ]
    for (const [spec, why] of cases) assertInvalidWorkflow(thrown(() => Workflow.fromObject(spec)), `workflow is not JSON data: ${why}`)
  })

  test('fromJson: a lone surrogate in the text is InvalidWorkflowError naming where, as fromObject refuses it (defect 20)', () => {
    const text = '{"name": "w",\n "nodes": [{"id": "a\uD800", "type": "agent", "agent": "x"}]}'
    assertInvalidWorkflow(
      thrown(() => Workflow.fromJson(text)),
      "field '(document)': not valid JSON: a lone surrogate (not valid Unicode) at line 2 column 21 (index 34 of the text)",
      { node: null, field: '(document)' },
    )
    assertInvalidWorkflow(
      thrown(() => Workflow.fromJson('{"name": "w\uDC00", "nodes": []}')),
      "field '(document)': not valid JSON: a lone surrogate (not valid Unicode) at line 1 column 12 (index 11 of the text)",
      { node: null, field: '(document)' },
    )
    const e = thrown(() => Workflow.fromObject({ name: 'w', nodes: [{ id: 'a\uD800', type: 'agent', agent: 'x' }] }))
    assert.ok(e instanceof InvalidWorkflowError)
    assert.match(e.message, /lone surrogate/)
    // A real U+FFFD and surrogate pairs are text like any other.
    assert.deepEqual(Workflow.fromJson('{"name": "w\uFFFD \uD83D\uDE00", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}').name, 'w\uFFFD \uD83D\uDE00')
  })

  test('a branch operand nested 121 levels is InvalidWorkflowError at load (defect 17); one nested 94 runs and its log reads back', async () => {
    const nest = (n) => {
      let v = 1
      for (let i = 0; i < n; i++) v = [v]
      return v
    }
    const spec = (operand) => ({
      name: 'deep',
      maxSteps: 10,
      nodes: [
        { id: 'a', type: 'agent', agent: 'x' },
        { id: 'b', type: 'branch', after: ['a'], cases: [{ when: { path: '/outputs/a', eq: operand }, goto: 'a' }] },
      ],
    })
    for (const load of [(s) => Workflow.fromJson(JSON.stringify(s)), (s) => Workflow.fromObject(s)]) {
      const e = thrown(() => load(spec(nest(121))))
      assert.ok(e instanceof InvalidWorkflowError, String(e))
      assert.match(e.message, /deeper than/)
    }
    const am = require('..')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-deep-'))
    try {
      const w = Workflow.fromJson(JSON.stringify(spec(nest(94))))
      const r = new am.Mesh({ logDir: dir }).agent('x', () => 'not equal').runSync(w, { runId: 'deep' })
      assert.equal(r.status, 'completed')
      assert.equal(am.verifyLogSync(r.logPath).finished, 'runCompleted')
      assert.equal(am.replaySync(r.logPath).outcome.status, 'completed')
      assert.equal(am.recordedWorkflow(r.logPath).hash, w.hash)
      assert.ok(am.readLogSync(r.logPath).length > 0)
      assert.equal((await new am.Mesh({ logDir: dir }).agent('x', () => 1).resume(r.logPath)).status, 'completed')
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('fromObject accepts prototype-null objects, skips undefined properties, shares no state', () => {
    const bare = Object.create(null)
    Object.assign(bare, { name: 'mixed', nodes: MIXED.nodes, maxSteps: undefined })
    assert.equal(Workflow.fromObject(bare).hash, Workflow.fromObject(MIXED).hash)
    // A value seen twice (not a cycle) is fine.
    const shared = ['b']
    const twice = { name: 'w', nodes: [{ id: 'b', type: 'agent', agent: 'x' }, { id: 'c', type: 'agent', agent: 'x', after: shared }, { id: 'd', type: 'agent', agent: 'x', after: shared }] }
    assert.deepEqual(Workflow.fromObject(twice).nodeIds(), ['b', 'c', 'd'])
  })

  test('fromFile errors: missing file is AgentMeshIOError, bad path types are InvalidArgumentError', () => {
    const missing = path.join(os.tmpdir(), 'agentmesh-no-such-workflow.json')
    const e = thrown(() => Workflow.fromFile(missing))
    assert.ok(e instanceof AgentMeshIOError)
    assert.ok(e.message.startsWith(`[IO] `) && e.message.includes(missing), e.message)
    assertInvalidArgument(thrown(() => Workflow.fromFile(5)), 'path must be a string or a file: URL, not number')
    assertInvalidArgument(thrown(() => Workflow.fromFile(null)), 'path must be a string or a file: URL, not null')
    const httpErr = thrown(() => Workflow.fromFile(new URL('https://example.com/w.json')))
    assert.ok(httpErr instanceof InvalidArgumentError)
    assert.ok(httpErr.message.startsWith('[INVALID_ARGUMENT] path must be a file: URL, not https://example.com/w.json ('), httpErr.message)
  })

  test('wraps a NativeWorkflow: _native is internal and not enumerable', () => {
    const nw = native.NativeWorkflow.fromJson(JSON.stringify(MIXED))
    const wf = new Workflow(nw)
    assert.equal(wf._native, nw)
    assert.equal(wf.hash, nw.hash)
    assert.deepEqual(Object.keys(wf), [])
    assert.deepEqual({ ...wf }, {})
    assert.equal(Object.getOwnPropertyDescriptor(wf, '_native').writable, false)
    assertInvalidArgument(
      thrown(() => new Workflow(MIXED)),
      'new Workflow() takes a NativeWorkflow, not object: use Workflow.fromObject, fromJson, fromFile or builder',
    )
    assert.throws(() => new Workflow(), InvalidArgumentError)
  })

  test('inspect, toString and toStringTag', () => {
    const wf = Workflow.fromObject(MIXED)
    const short = wf.hash.slice(0, 12)
    assert.equal(util.inspect(wf), `Workflow { name: 'mixed', hash: '${short}' }`)
    assert.equal(String(wf), `Workflow(mixed, ${short})`)
    assert.equal(`${wf}`, `Workflow(mixed, ${short})`)
    assert.equal(Object.prototype.toString.call(wf), '[object Workflow]')
    assert.equal(util.inspect({ wf }), `{ wf: Workflow { name: 'mixed', hash: '${short}' } }`)
  })
})

describe('WorkflowBuilder', () => {
  const reviewCases = [
    { when: { path: '/outputs/review/score', gte: 0.8 }, goto: 'publish' },
    {
      when: { all: [{ path: '/visits/draft', lt: 3 }, { path: '/outputs/review/fixable', eq: true }] },
      goto: 'draft',
    },
  ]
  const built = {
    'review-loop': () =>
      Workflow.builder('review-loop')
        .maxSteps(20)
        .agent('draft', 'writer', { maxVisits: 3 })
        .agent('review', 'critic', { after: 'draft' })
        .branch('route', { after: ['review'], cases: reviewCases, default: 'escalate' })
        .agent('publish', 'publisher')
        .agent('escalate', 'editor')
        .build(),
    triage: () =>
      Workflow.builder('triage')
        .agent('classify', 'classifier')
        .branch('route', {
          after: 'classify',
          cases: [
            { when: { path: '/outputs/classify/category', in: ['bug', 'crash'] }, goto: 'engineer' },
            { when: { path: '/outputs/classify/category', matches: '^billing' }, goto: 'finance' },
          ],
          default: 'support',
        })
        .agent('engineer', 'engineer')
        .agent('finance', 'finance')
        .agent('support', 'support')
        .agent('reply', 'mailer', { after: ['engineer', 'finance', 'support'] })
        .build(),
    'retry-backoff': () =>
      Workflow.builder('retry-backoff')
        .tool('fetch', 'http_get', { timeoutMs: 200, retry: { maxAttempts: 4, backoffMs: 20, backoffMultiplier: 2 } })
        .agent('parse', 'parser', { after: 'fetch' })
        .build(),
    approval: () =>
      new WorkflowBuilder('approval')
        .agent('draft', 'writer')
        .human('approve', { prompt: 'Publish this draft?', after: 'draft' })
        .branch('decide', {
          after: 'approve',
          cases: [{ when: { path: '/outputs/approve/approved', eq: true }, goto: 'publish' }],
          default: 'archive',
        })
        .tool('publish', 'cms')
        .tool('archive', 'cms')
        .build(),
  }

  for (const [name, build] of Object.entries(built)) {
    test(`${name}: the builder gives docs/examples/${name}/workflow.json (same hash)`, () => {
      const wf = build()
      const expected = Workflow.fromObject(exampleObject(name))
      assert.ok(wf instanceof Workflow)
      assert.equal(wf.hash, expected.hash)
      assert.equal(wf.toJson(), expected.toJson())
      assert.deepEqual(wf.nodeIds(), expected.nodeIds())
    })
  }

  test('after: a lone id is [id], an empty list is omitted; methods chain on the same builder', () => {
    const b = Workflow.builder('w')
    assert.ok(b instanceof WorkflowBuilder)
    assert.equal(b.agent('plan', 'planner'), b)
    assert.equal(b.agent('write', 'writer', { after: 'plan' }), b)
    assert.equal(b.agent('solo', 'writer', { after: [] }), b)
    assert.equal(b.maxSteps(5), b)
    assert.deepEqual(b.build().toObject(), {
      name: 'w',
      maxSteps: 5,
      nodes: [
        { id: 'plan', type: 'agent', agent: 'planner' },
        { id: 'write', type: 'agent', agent: 'writer', after: ['plan'] },
        { id: 'solo', type: 'agent', agent: 'writer' },
      ],
    })
  })

  test('undefined and null options are omitted', () => {
    const a = Workflow.builder('w')
      .agent('a', 'x', { after: undefined, timeoutMs: undefined, retry: null, maxVisits: undefined })
      .human('h', { prompt: undefined, after: null })
      .branch('b', { after: 'a', cases: undefined, default: 'h' })
      .build()
    const b = Workflow.fromObject({
      name: 'w',
      nodes: [
        { id: 'a', type: 'agent', agent: 'x' },
        { id: 'h', type: 'human' },
        { id: 'b', type: 'branch', after: ['a'], default: 'h' },
      ],
    })
    assert.equal(a.hash, b.hash)
  })

  test('a builder builds again after more nodes; the earlier workflow is unchanged', () => {
    const b = Workflow.builder('w').agent('a', 'x')
    const first = b.build()
    b.agent('b', 'y', { after: 'a' })
    const second = b.build()
    assert.deepEqual(first.nodeIds(), ['a'])
    assert.deepEqual(second.nodeIds(), ['a', 'b'])
    assert.notEqual(first.hash, second.hash)
  })

  test('values are checked by the core when building: InvalidWorkflowError with node and field', () => {
    const cases = [
      [(b) => b.agent('a', 'x', { timeoutMs: 0 }), 'a', 'timeoutMs', '0 is out of range 1..=604800000'],
      [(b) => b.agent('a', 'x', { timeoutMs: 1.5 }), 'a', 'timeoutMs', 'invalid type: floating point `1.5`, expected u64'],
      [(b) => b.tool('a', 'x', { retry: { maxAttempts: 0 } }), 'a', 'retry.maxAttempts', '0 is out of range 1..=100'],
      [
        (b) => b.tool('a', 'x', { retry: { maxAttempt: 3 } }),
        'a',
        'retry.maxAttempt',
        'unknown field `maxAttempt`, expected one of `maxAttempts`, `backoffMs`, `backoffMultiplier`, `nonRetryable`, `retryProgrammingErrors`',
      ],
      [(b) => b.agent('a', 'x', { maxVisits: 0 }), 'a', 'maxVisits', '0 is out of range 1..=100000000'],
      [(b) => b.agent('a', 'x', { after: 'zz' }), 'a', 'after[0]', "unknown node 'zz'"],
      [(b) => b.agent('a', 'x').branch('r', { after: 'a' }), 'r', 'cases', 'a branch needs at least one case or a default'],
      [
        (b) => b.agent('a', 'x').branch('r', { after: 'a', cases: [{ when: { path: '/input', gt: {} }, goto: 'z' }] }).agent('z', 'y'),
        'r',
        'cases[0].when.gt',
        'must be a number or a string',
      ],
      [(b) => b.agent('a bad id', 'x'), 'a bad id', 'id', "may contain only ASCII letters, digits, '_', '-' and '.'"],
    ]
    for (const [add, node, field, why] of cases) {
      const e = thrown(() => add(Workflow.builder('w')).build())
      assertInvalidWorkflow(e, `node '${node}', field '${field}': ${why}`, { node, field })
    }
    const steps = thrown(() => Workflow.builder('w').agent('a', 'x').maxSteps(0).build())
    assertInvalidWorkflow(steps, "field 'maxSteps': 0 is out of range 1..=100000000", { node: null, field: 'maxSteps' })
    const empty = thrown(() => Workflow.builder('w').build())
    assertInvalidWorkflow(empty, "field 'nodes': a workflow needs at least one node", { node: null, field: 'nodes' })
  })

  test('map and reads: the builder writes the JSON the core accepts (same hash)', () => {
    const built = Workflow.builder('shapes')
      .agent('plan', 'planner')
      .map('research', {
        agent: 'researcher',
        over: '/outputs/plan/questions',
        after: 'plan',
        itemKey: '/id',
        maxItems: 100,
        concurrency: 4,
        onItemFailure: 'collect',
        retry: { maxAttempts: 2, backoffMs: 5 },
        timeoutMs: 1000,
        reads: '/input/topic',
      })
      .map('fetch', { tool: 'http', over: '/input/urls', maxVisits: 2 })
      .agent('write', 'writer', { after: ['research'], reads: ['/outputs/fetch', '/visits/plan'] })
      .tool('save', 'cms', { after: 'write', reads: ['/outputs/plan/title'] })
      .human('ok', { after: 'save', reads: [] })
      .build()
    const json = Workflow.fromObject({
      name: 'shapes',
      nodes: [
        { id: 'plan', type: 'agent', agent: 'planner' },
        {
          id: 'research',
          type: 'map',
          agent: 'researcher',
          after: ['plan'],
          timeoutMs: 1000,
          retry: { maxAttempts: 2, backoffMs: 5 },
          over: '/outputs/plan/questions',
          itemKey: '/id',
          maxItems: 100,
          concurrency: 4,
          onItemFailure: 'collect',
          reads: ['/input/topic'],
        },
        { id: 'fetch', type: 'map', tool: 'http', maxVisits: 2, over: '/input/urls' },
        { id: 'write', type: 'agent', agent: 'writer', after: ['research'], reads: ['/outputs/fetch', '/visits/plan'] },
        { id: 'save', type: 'tool', tool: 'cms', after: ['write'], reads: ['/outputs/plan/title'] },
        { id: 'ok', type: 'human', after: ['save'] },
      ],
    })
    assert.equal(built.hash, json.hash)
    assert.equal(built.toJson(), json.toJson())
    assert.deepEqual(built.agentNames(), ['planner', 'researcher', 'writer'])
    assert.deepEqual(built.toolNames(), ['cms', 'http'])
    // The options object given is not kept: changing it later changes nothing.
    const reads = ['/input/topic']
    const b = Workflow.builder('w').agent('a', 'x', { reads })
    reads.push('/input/other')
    assert.deepEqual(b.build().toObject().nodes[0].reads, ['/input/topic'])
  })

  test('map and reads values are checked by the core: InvalidWorkflowError with node and field', () => {
    const plan = (b) => b.agent('plan', 'p')
    const cases = [
      [(b) => b.map('m', { over: '/input' }), 'm', 'agent', 'map nodes need the agent (or tool) that runs each item'],
      [(b) => b.map('m', { agent: 'a', tool: 't', over: '/input' }), 'm', 'tool', 'a map runs an agent or a tool, not both'],
      [(b) => b.map('m', { agent: 'a' }), 'm', 'over', 'map nodes need the path of the array to map over (like /outputs/plan/items)'],
      [(b) => plan(b).map('m', { agent: 'a', over: '/outputs/plan/x' }), 'm', 'over', "'/outputs/plan/x' reads node 'plan', which this map does not run after: add it to 'after'"],
      [(b) => b.map('m', { agent: 'a', over: '/input', maxItems: 10001 }), 'm', 'maxItems', '10001 is out of range 1..=10000'],
      [(b) => b.map('m', { agent: 'a', over: '/input', concurrency: 0 }), 'm', 'concurrency', '0 is out of range 1..=10000'],
      [(b) => b.map('m', { agent: 'a', over: '/input', itemKey: 'id' }), 'm', 'itemKey', "'id' is not a JSON Pointer into an item (like /id)"],
      [(b) => b.agent('a', 'x', { reads: ['/input', '/input'] }), 'a', 'reads[1]', "'/input' is listed twice"],
      [(b) => b.tool('a', 'x', { reads: '/outputs/zz' }), 'a', 'reads[0]', "unknown node 'zz'"],
    ]
    for (const [add, node, field, why] of cases) {
      const e = thrown(() => add(Workflow.builder('w')).build())
      assert.ok(e instanceof InvalidWorkflowError, `not an InvalidWorkflowError: ${e && e.stack}`)
      assert.deepEqual(e.details, { node, field })
      assert.ok(e.message.startsWith(`[INVALID_WORKFLOW] node '${node}', field '${field}': `), e.message)
      assert.ok(e.message.includes(why), `${e.message} should say: ${why}`)
    }
    const skip = thrown(() => Workflow.builder('w').map('m', { agent: 'a', over: '/input', onItemFailure: 'skip' }).build())
    assert.ok(skip instanceof InvalidWorkflowError)
    assert.equal(skip.details.field, 'onItemFailure')
  })

  test('output: the builder writes the contract the core accepts on agent, tool, human and map nodes (same hash)', () => {
    const plan = { type: 'object', required: ['questions'], properties: { questions: { type: 'array', items: { type: 'string' } } } }
    const notes = { type: 'object', required: ['notes'] }
    const built = Workflow.builder('contracts')
      .agent('plan', 'planner', { retry: { maxAttempts: 3 }, output: { schema: plan, repair: true } })
      .map('research', { agent: 'researcher', over: '/outputs/plan/questions', after: 'plan', output: { schema: notes } })
      .tool('count', 'counter', { after: 'research', output: { schema: { type: 'integer' }, repair: false } })
      .human('ok', { after: 'count', prompt: 'Ship?', output: { schema: true } })
      .build()
    const json = Workflow.fromObject({
      name: 'contracts',
      nodes: [
        { id: 'plan', type: 'agent', agent: 'planner', retry: { maxAttempts: 3 }, output: { schema: plan, repair: true } },
        { id: 'research', type: 'map', agent: 'researcher', after: ['plan'], over: '/outputs/plan/questions', output: { schema: notes } },
        { id: 'count', type: 'tool', tool: 'counter', after: ['research'], output: { schema: { type: 'integer' } } },
        { id: 'ok', type: 'human', prompt: 'Ship?', after: ['count'], output: { schema: true } },
      ],
    })
    assert.equal(built.hash, json.hash)
    assert.equal(built.toJson(), json.toJson())
    // `repair: false` is the default: the canonical JSON leaves it out.
    assert.deepEqual(built.toObject().nodes[2].output, { schema: { type: 'integer' } })
    // The contract given is copied when the node is added: a later change to it changes nothing.
    const output = { schema: { type: 'string' } }
    const b = Workflow.builder('w').agent('a', 'x', { output })
    output.repair = true
    assert.deepEqual(b.build().toObject().nodes[0].output, { schema: { type: 'string' } })
  })

  test("the structured-output vector's workflow, built: the same hash as its JSON", () => {
    const file = path.resolve(__dirname, '..', '..', 'bindings-tests', 'vectors', 'structured_output_repair_reask', 'workflow.json')
    const doc = JSON.parse(fs.readFileSync(file, 'utf-8'))
    const [plan, research, write] = doc.nodes
    const built = Workflow.builder(doc.name)
      .agent(plan.id, plan.agent, { retry: plan.retry, output: plan.output })
      .map(research.id, { agent: research.agent, over: research.over, after: research.after, retry: research.retry, output: research.output })
      .agent(write.id, write.agent, { after: write.after, output: write.output })
      .build()
    assert.equal(built.hash, Workflow.fromFile(file).hash)
  })

  test('a bad output contract is InvalidWorkflowError naming the node and field, built or written', () => {
    const cases = [
      [{ schema: { type: 5 } }, 'output.schema', 'not a usable JSON Schema'],
      [{ schema: { $ref: 'https://example.com/s.json' } }, 'output.schema', 'not a usable JSON Schema'],
      // Backreferences need backtracking, which the linear-time pattern engine refuses.
      [{ schema: { type: 'string', pattern: '(a)\\1' } }, 'output.schema', 'not a usable JSON Schema'],
      [{ repair: true }, 'output', 'missing field `schema`'],
      [{ schema: {}, repiar: true }, 'output.repiar', 'unknown field `repiar`'],
      [{ schema: {}, repair: 'yes' }, 'output.repair', 'expected a boolean'],
      ['a schema', 'output', 'expected struct OutputSpec'],
    ]
    // Each kind of node that takes a contract: built, and written as JSON.
    const kinds = {
      agent: [(b, output) => b.agent('n', 'x', { output }), { type: 'agent', agent: 'x' }],
      tool: [(b, output) => b.tool('n', 'x', { output }), { type: 'tool', tool: 'x' }],
      human: [(b, output) => b.human('n', { output }), { type: 'human' }],
      map: [(b, output) => b.map('n', { agent: 'x', over: '/input', output }), { type: 'map', agent: 'x', over: '/input' }],
    }
    for (const [output, field, why] of cases) {
      for (const [kind, [add, node]] of Object.entries(kinds)) {
        const built = thrown(() => add(Workflow.builder('w'), output).build())
        const written = thrown(() => Workflow.fromJson(JSON.stringify({ name: 'w', nodes: [{ id: 'n', ...node, output }] })))
        for (const e of [built, written]) {
          assert.ok(e instanceof InvalidWorkflowError, `${kind}: not an InvalidWorkflowError: ${e && e.stack}`)
          assert.deepEqual(e.details, { node: 'n', field }, `${kind} ${JSON.stringify(output)}`)
          assert.ok(e.message.startsWith(`[INVALID_WORKFLOW] node 'n', field '${field}': `), e.message)
          assert.ok(e.message.includes(why), `${e.message} should say: ${why}`)
        }
      }
    }
  })

  test('unknown options and non-object options are InvalidArgumentError at once', () => {
    const b = Workflow.builder('w')
    assertInvalidArgument(thrown(() => b.agent('a', 'x', { timeout: 5 })), "agent node 'a': unknown option 'timeout' (expected after, timeoutMs, retry, maxVisits, reads, output)")
    assertInvalidArgument(thrown(() => b.tool('t', 'x', { prompt: 'p' })), "tool node 't': unknown option 'prompt' (expected after, timeoutMs, retry, maxVisits, reads, output)")
    assertInvalidArgument(thrown(() => b.human('h', { timeoutMs: 5 })), "human node 'h': unknown option 'timeoutMs' (expected prompt, after, maxVisits, reads, output)")
    assertInvalidArgument(thrown(() => b.branch('r', { goto: 'a' })), "branch node 'r': unknown option 'goto' (expected cases, default, after, maxVisits)")
    assertInvalidArgument(
      thrown(() => b.map('m', { agent: 'x', over: '/input', items: 5 })),
      "map node 'm': unknown option 'items' (expected over, agent, tool, itemKey, maxItems, concurrency, onItemFailure, after, retry, timeoutMs, maxVisits, reads, output)",
    )
    assertInvalidArgument(thrown(() => b.branch('r', { default: 'a', reads: ['/input'] })), "branch node 'r': unknown option 'reads' (expected cases, default, after, maxVisits)")
    assertInvalidArgument(thrown(() => b.map('m', '/input')), "map node 'm': options must be an object, not string")
    assertInvalidArgument(thrown(() => b.human('h', 'Publish?')), "human node 'h': options must be an object, not string")
    assertInvalidArgument(thrown(() => b.agent('a', 'x', ['b'])), "agent node 'a': options must be an object, not an array")
    // Nothing was added by the refused calls.
    assert.deepEqual(b.agent('a', 'x').build().nodeIds(), ['a'])
  })
})

// Workflow warnings (issue 9): hints about a valid workflow that probably does not do what its
// author meant, from the core (`Workflow::warnings`), on `workflow.warnings` and emitted once
// per process as an `AgentMeshWarning` when a workflow is loaded or built.
describe('workflow warnings', () => {
  const afterBranch = (name) => ({
    name,
    nodes: [
      { id: 'write', type: 'agent', agent: 'writer' },
      { id: 'gate', type: 'branch', after: ['write'], cases: [{ when: { path: '/outputs/write/text', exists: true }, goto: 'publish' }] },
      { id: 'publish', type: 'tool', tool: 'save', after: ['gate'] },
    ],
  })
  const HINT =
    "node 'publish': every 'after' entry is a branch (gate), and a branch has no output, so its activations receive no deps; add the nodes whose outputs it needs to 'after', or list them in 'reads'"

  /** The AgentMesh warnings `fn` emits (emitWarning delivers them on the next tick). */
  async function emitted(fn) {
    await new Promise((resolve) => setImmediate(resolve)) // earlier tests' warnings first
    const seen = []
    const listener = (w) => {
      if (w.name === 'AgentMeshWarning') seen.push(w.message)
    }
    process.on('warning', listener)
    try {
      fn()
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('warning', listener)
    }
    return seen
  }

  test('warnings: the core\'s hints, [] when there are none', () => {
    assert.deepEqual(Workflow.fromObject(afterBranch('hinted')).warnings, [HINT])
    assert.deepEqual(Workflow.fromObject({ ...afterBranch('fixed'), nodes: afterBranch('fixed').nodes.map((n) => (n.id === 'publish' ? { ...n, after: ['gate', 'write'] } : n)) }).warnings, [])
    assert.deepEqual(Workflow.fromFile(exampleFile('research')).warnings, [])
  })

  test('loading or building emits each warning once per process, naming the workflow', async () => {
    const spec = afterBranch('emitted')
    assert.deepEqual(await emitted(() => Workflow.fromObject(spec)), [`workflow 'emitted': ${HINT}`])
    // The same workflow again, by any constructor: already said.
    const again = await emitted(() => {
      Workflow.fromJson(JSON.stringify(spec))
      const b = Workflow.builder('emitted').agent('write', 'writer')
      b.branch('gate', { after: 'write', cases: spec.nodes[1].cases }).tool('publish', 'save', { after: 'gate' }).build()
    })
    assert.deepEqual(again, [])
    // Another workflow with the same mistake says it again.
    assert.deepEqual(await emitted(() => Workflow.builder('other').agent('write', 'writer')
      .branch('gate', { after: 'write', cases: spec.nodes[1].cases }).tool('publish', 'save', { after: 'gate' }).build()), [`workflow 'other': ${HINT}`])
  })

  test('a workflow read back from a log keeps its warnings but does not emit them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-warn-'))
    try {
      const { Mesh, recordedWorkflow } = require('..')
      const mesh = new Mesh({ logDir: dir }).agent('writer', () => ({ text: 't' })).tool('save', (act) => act.deps)
      let w
      assert.equal((await emitted(() => (w = Workflow.fromObject(afterBranch('recorded'))))).length, 1)
      const r = mesh.runSync(w, { runId: 'w' })
      assert.deepEqual(r.output, { publish: {} }) // what the warning is about: no deps
      let read
      assert.deepEqual(await emitted(() => (read = recordedWorkflow(r.logPath))), [])
      assert.deepEqual(read.warnings, [HINT])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('--disable-warning=AgentMeshWarning silences them', () => {
    const child = require('node:child_process')
    const script = `require(${JSON.stringify(path.join(__dirname, '..'))}).Workflow.fromObject(${JSON.stringify(afterBranch('quiet'))})`
    const loud = child.spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 })
    assert.equal(loud.status, 0, loud.stderr)
    assert.ok(loud.stderr.includes(`AgentMeshWarning: workflow 'quiet': ${HINT}`), loud.stderr)
    const quiet = child.spawnSync(process.execPath, ['--disable-warning=AgentMeshWarning', '-e', script], { encoding: 'utf8', timeout: 30000 })
    assert.equal(quiet.status, 0, quiet.stderr)
    assert.equal(quiet.stderr, '')
  })
})
