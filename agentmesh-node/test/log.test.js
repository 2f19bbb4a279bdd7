'use strict'
// The log functions (lib/log.js) on logs written by the Rust CLI (compared with what the CLI
// itself reports) and by runs driven natively by hand.
//
// Needs the CLI binary for the CLI comparisons: $AGENTMESH_CLI or target/debug/agentmesh
// (`cargo build -p agentmesh-cli`). Without it those tests skip, or fail when $CI is set.

const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const url = require('node:url')

const native = require('../native.js')
const { poll, outstanding, C } = require('./support/native')
const log = require('../lib/log')
const { Workflow } = require('../lib/workflow')
const {
  AgentMeshIOError,
  ERROR_CODES,
  InvalidArgumentError,
  LogCorruptError,
  NondeterminismError,
} = require('../lib/errors')

const repo = path.resolve(__dirname, '..', '..')
const example = (name, file) => path.join(repo, 'docs', 'examples', name, file)

const made = []
function tmpdir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-log-'))
  made.push(dir)
  return dir
}
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})

/** What `fn` threw (failing when it does not throw). */
function thrown(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  assert.fail('expected an error')
}

/** The error a Promise rejected with (failing when it resolves). */
async function rejection(promise) {
  try {
    await promise
  } catch (e) {
    return e
  }
  assert.fail('expected a rejection')
}

/** Collect an async iterable. */
async function collect(iterable) {
  const out = []
  for await (const item of iterable) out.push(item)
  return out
}

// The CLI ---------------------------------------------------------------------------------

const CLI = process.env.AGENTMESH_CLI || path.join(repo, 'target', 'debug', 'agentmesh')
const haveCli = (() => {
  try {
    fs.accessSync(CLI, fs.constants.X_OK)
    return fs.statSync(CLI).isFile()
  } catch {
    return false
  }
})()
const noCli = `the agentmesh CLI is not at ${CLI}: run \`cargo build -p agentmesh-cli\` (or set AGENTMESH_CLI)`

/** Run the CLI; asserts the exit code. Returns {stdout (Buffer), stderr (string)}. */
function agentmesh(args, expectCode = 0) {
  const proc = childProcess.spawnSync(CLI, args, { cwd: repo, timeout: 60_000 })
  if (proc.error) throw proc.error
  assert.equal(proc.status, expectCode, `agentmesh ${args.join(' ')}: exit ${proc.status}\n${proc.stdout}\n${proc.stderr}`)
  return { stdout: proc.stdout, stderr: proc.stderr.toString() }
}

/** The detail lines the CLI prints under an error (`  seq       3`): {seq: '3', ...}. */
function cliDetails(stderr) {
  return Object.fromEntries([...stderr.matchAll(/^ {2}(\w+) +(.*)$/gm)].map((m) => [m[1], m[2]]))
}

/** JSON from the CLI, with `seed` values (64-bit) as bigint like the addon gives them. */
function parseWithSeeds(text) {
  return JSON.parse(text.replace(/"seed":(\d+)/g, '"seed":"$1"'), (key, value) => (key === 'seed' ? BigInt(value) : value))
}

/** A copy of `file` with one byte of line `line` (0-based) changed; returns [path, offset]. */
function corruptCopy(file, line) {
  const bytes = fs.readFileSync(file)
  let offset = 0
  for (let i = 0; i < line; i++) offset = bytes.indexOf(0x0a, offset) + 1
  const at = offset + 10
  bytes[at] = bytes[at] === 0x58 ? 0x59 : 0x58
  const copy = path.join(tmpdir(), 'corrupt.jsonl')
  fs.writeFileSync(copy, bytes)
  return [copy, offset]
}

// Natively driven runs ----------------------------------------------------------------------

const CHAIN = {
  name: 'chain',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'planner' },
    { id: 'write', type: 'agent', agent: 'writer', after: ['plan'] },
  ],
}

/** A finished run of `workflow` driven by hand (outputs `{node, visit}`); its log path. */
function driven(workflow, input = null, dir = tmpdir()) {
  const wf = native.NativeWorkflow.fromJson(JSON.stringify(workflow))
  const run = native.NativeRun.start(wf, input, { seed: 1, logDir: dir, fsync: 'never' })
  for (let acts = poll(run); acts.length > 0; acts = poll(run)) {
    run.completeAll(acts.map((act) => C.okJson(act, JSON.stringify({ node: act.node, visit: act.visit }))))
  }
  const file = run.logPath()
  run.close()
  return file
}

const ASYNC = {
  verifyLog: (p) => log.verifyLog(p),
  canonicalLog: (p) => log.canonicalLog(p),
  fingerprint: (p) => log.fingerprint(p),
  replay: (p) => log.replay(p),
  stateAt: (p) => log.stateAt(p, 1),
  readLog: (p) => collect(log.readLog(p)),
}
const SYNC = {
  verifyLogSync: (p) => log.verifyLogSync(p),
  canonicalLogSync: (p) => log.canonicalLogSync(p),
  fingerprintSync: (p) => log.fingerprintSync(p),
  replaySync: (p) => log.replaySync(p),
  stateAtSync: (p) => log.stateAtSync(p, 1),
  readLogSync: (p) => log.readLogSync(p),
  readHeader: (p) => log.readHeader(p),
  recordedWorkflow: (p) => log.recordedWorkflow(p),
}

describe('a log written by the CLI', { skip: !haveCli && !process.env.CI && noCli }, () => {
  const workflowFile = example('review-loop', 'workflow.json')
  let file
  let printedFingerprint

  before(() => {
    if (!haveCli) assert.fail(noCli)
    const dir = tmpdir()
    const { stdout } = agentmesh(['run', workflowFile, '--script', example('review-loop', 'script.json'), '--log-dir', dir, '--fsync', 'never'])
    file = path.join(dir, 'review-1.jsonl')
    printedFingerprint = stdout.toString().match(/^fingerprint +([0-9a-f]{64})$/m)[1]
  })

  test('verifyLog and verifyLogSync: the report `agentmesh verify --json` prints', async () => {
    const cli = JSON.parse(agentmesh(['verify', file, '--json']).stdout)
    const expected = {
      runId: 'review-1',
      workflow: 'review-loop',
      version: 6,
      events: 20,
      lastSeq: 20,
      holes: [],
      finished: 'runCompleted',
      bytes: fs.statSync(file).size,
      tornAt: null,
      repaired: null,
    }
    // The CLI adds what the run is and its host to the library's report.
    assert.deepEqual(cli, { ...expected, status: 'completed', summary: 'completed', inFlight: [], waitingFor: [], host: 'cli' })
    const pending = log.verifyLog(file)
    assert.ok(pending instanceof Promise)
    assert.deepEqual(await pending, expected)
    assert.deepEqual(log.verifyLogSync(file), expected)
  })

  test('anchor is `agentmesh anchor`, with and without a key', async () => {
    const key = 'node and the CLI share this key material'
    const keyFile = path.join(path.dirname(file), 'anchor.key')
    fs.writeFileSync(keyFile, `${key}\n`) // the CLI ignores one final newline
    assert.deepEqual(JSON.parse(agentmesh(['anchor', file]).stdout), await log.anchor(file))
    assert.deepEqual(JSON.parse(agentmesh(['anchor', file, '--key-file', keyFile]).stdout), log.anchorSync(file, { key }))
  })

  test('canonicalLog is `agentmesh canonical`, fingerprint the one `agentmesh run` printed', async () => {
    const cli = agentmesh(['canonical', file]).stdout
    const bytes = await log.canonicalLog(file)
    assert.ok(Buffer.isBuffer(bytes))
    assert.ok(bytes.equals(cli))
    assert.ok(log.canonicalLogSync(file).equals(cli))
    assert.equal(await log.fingerprint(file), printedFingerprint)
    assert.equal(log.fingerprintSync(file), printedFingerprint)
  })

  test('replay: equal against the recorded workflow and a compatible change', async () => {
    const report = {
      runId: 'review-1',
      events: 20,
      workflowChanged: false,
      outcome: { status: 'completed', output: { publish: { url: 'https://example.com/posts/supersteps' } } },
    }
    assert.deepEqual(await log.replay(file), report)
    assert.deepEqual(await log.replay(file, null), report)
    assert.deepEqual(await log.replay(file, Workflow.fromFile(workflowFile)), report)
    assert.deepEqual(log.replaySync(file), report)
    // `escalate` was skipped: renaming its agent changes the workflow, not the events.
    const compatible = Workflow.fromObject({
      ...JSON.parse(fs.readFileSync(workflowFile, 'utf-8')),
      nodes: Workflow.fromFile(workflowFile).toObject().nodes.map((n) => (n.id === 'escalate' ? { ...n, agent: 'chief' } : n)),
    })
    assert.deepEqual(await log.replay(file, compatible), { ...report, workflowChanged: true })
    assert.deepEqual(log.replaySync(file, compatible), { ...report, workflowChanged: true })
  })

  test('replay against a changed workflow: NondeterminismError with what `agentmesh replay` prints', async () => {
    const changedFile = path.join(tmpdir(), 'changed.json')
    fs.writeFileSync(changedFile, fs.readFileSync(workflowFile, 'utf-8').replace('"agent": "writer"', '"agent": "author"'))
    const { stderr } = agentmesh(['replay', file, '--workflow', changedFile], 6)
    const cli = cliDetails(stderr)
    assert.deepEqual(cli, { seq: '3', node: 'draft', field: 'data.agent', expected: '"writer"', actual: '"author"' })
    const changed = Workflow.fromFile(changedFile)
    for (const e of [await rejection(log.replay(file, changed)), thrown(() => log.replaySync(file, changed))]) {
      assert.ok(e instanceof NondeterminismError, e.stack)
      assert.equal(e.code, 'NONDETERMINISM')
      assert.equal(e.message, stderr.split('\n')[0])
      assert.deepEqual([e.seq, e.node, e.field, e.expected, e.actual], [Number(cli.seq), cli.node, cli.field, cli.expected, cli.actual])
      assert.deepEqual(e.details, { seq: 3, node: 'draft', field: 'data.agent', expected: '"writer"', actual: '"author"' })
    }
  })

  test('stateAt and stateAtSync: what `agentmesh inspect --at SEQ --json` prints, at every seq', async () => {
    for (let seq = 1; seq <= 20; seq++) {
      const cli = parseWithSeeds(agentmesh(['inspect', file, '--at', String(seq), '--json']).stdout.toString())
      assert.deepEqual(await log.stateAt(file, seq), cli, `seq ${seq}`)
      assert.deepEqual(log.stateAtSync(file, seq), cli, `seq ${seq}`)
    }
    const at3 = await log.stateAt(file, 3)
    assert.deepEqual(at3.pending.map((a) => [a.node, a.name, typeof a.seed]), [['draft', 'writer', 'bigint']])
    assert.equal((await log.stateAt(file, 1)).forkPoint, true)
  })

  test('readLog iterates every event of the canonical log; readLogSync returns them', async () => {
    const lines = agentmesh(['canonical', file]).stdout.toString().trimEnd().split('\n').slice(1).map(parseWithSeeds)
    const iterator = log.readLog(file)
    assert.equal(typeof iterator[Symbol.asyncIterator], 'function')
    const events = await collect(iterator)
    assert.equal(events.length, 20)
    assert.deepEqual(events, lines)
    assert.deepEqual(events.map((e) => e.seq), Array.from({ length: 20 }, (_, i) => i + 1))
    assert.deepEqual(
      events.map((e) => e.type),
      [
        'runStarted', 'stepStarted', 'agentScheduled', 'agentCompleted',
        'stepStarted', 'agentScheduled', 'agentCompleted', 'branchDecided',
        'stepStarted', 'agentScheduled', 'agentCompleted',
        'stepStarted', 'agentScheduled', 'agentCompleted', 'branchDecided', 'nodeSkipped',
        'stepStarted', 'agentScheduled', 'agentCompleted', 'runCompleted',
      ],
    )
    assert.equal(events[0].data.seed, 7n)
    assert.deepEqual(log.readLogSync(file), events)
  })

  test('readHeader and recordedWorkflow', () => {
    const header = log.readHeader(file)
    assert.equal(typeof header.meta.at, 'number')
    const wf = Workflow.fromFile(workflowFile)
    assert.deepEqual({ ...header, meta: undefined }, {
      format: 'agentmesh-log',
      version: 6,
      flags: [],
      runId: 'review-1',
      workflow: { name: 'review-loop', hash: wf.hash },
      seed: 7n,
      meta: undefined,
    })
    const recorded = log.recordedWorkflow(file)
    assert.ok(recorded instanceof Workflow)
    assert.equal(recorded.hash, wf.hash)
    assert.equal(recorded.toJson(), wf.toJson())
  })

  test('a damaged log: LogCorruptError with the offset `agentmesh verify` prints, from every function', async () => {
    const [copy, offset] = corruptCopy(file, 4) // the record of seq 4
    const { stderr } = agentmesh(['verify', copy], 5)
    assert.deepEqual(cliDetails(stderr), { offset: String(offset) })
    const check = (e, name) => {
      assert.ok(e instanceof LogCorruptError, `${name}: ${e && e.stack}`)
      assert.equal(e.offset, offset, name)
      assert.deepEqual(e.details, { offset }, name)
      assert.equal(e.message, stderr.split('\n')[0], name)
    }
    for (const [name, fn] of Object.entries(ASYNC)) check(await rejection(fn(copy)), name)
    for (const [name, fn] of Object.entries(SYNC)) {
      if (name === 'readHeader' || name === 'recordedWorkflow') continue // the header line is intact
      check(thrown(() => fn(copy)), name)
    }
    // recordedWorkflow reads the runStarted record.
    const [started, startedOffset] = corruptCopy(file, 1)
    const e = thrown(() => log.recordedWorkflow(started))
    assert.ok(e instanceof LogCorruptError, e.stack)
    assert.deepEqual(e.details, { offset: startedOffset })
    assert.equal(e.message, agentmesh(['verify', started], 5).stderr.split('\n')[0])
  })
})

describe('natively driven logs', () => {
  test('every function takes a file: URL as well as a string', async () => {
    const file = driven(CHAIN)
    const href = url.pathToFileURL(file)
    assert.deepEqual(await log.verifyLog(href), log.verifyLogSync(file))
    assert.ok((await log.canonicalLog(href)).equals(log.canonicalLogSync(file)))
    assert.equal(await log.fingerprint(href), log.fingerprintSync(file))
    assert.deepEqual(await log.replay(href), log.replaySync(file))
    assert.deepEqual(await log.stateAt(href, 4), log.stateAtSync(file, 4))
    assert.deepEqual(await collect(log.readLog(href)), log.readLogSync(file))
    assert.deepEqual(log.readHeader(href), log.readHeader(file))
    assert.equal(log.recordedWorkflow(href).hash, Workflow.fromObject(CHAIN).hash)
    assert.equal(log.readLogSync(href).length, 8)
  })

  test('async and sync forms agree with the addon', async () => {
    const file = driven(CHAIN, { topic: 'x' })
    assert.deepEqual(await log.verifyLog(file), native.verifyLog(file))
    assert.deepEqual(await log.replay(file), native.replay(file))
    assert.deepEqual(await log.stateAt(file, 4), native.stateAt(file, 4))
    assert.deepEqual(await collect(log.readLog(file)), native.readLog(file).events)
    assert.equal(await log.fingerprint(file), native.fingerprint(file))
    assert.deepEqual(log.readHeader(file), native.readHeader(file))
  })

  test('a torn tail is repaired by verifyLog', async () => {
    const file = driven(CHAIN)
    const size = fs.statSync(file).size
    fs.appendFileSync(file, '{"seq":9,"ty')
    const report = await log.verifyLog(file)
    assert.deepEqual(report.repaired, { offset: size, bytes: 12, brokenPath: `${file}.broken`, newlineRestored: false })
    assert.equal(fs.statSync(file).size, size)
  })

  test('missing files: AgentMeshIOError from every function', async () => {
    const missing = path.join(tmpdir(), 'missing.jsonl')
    const check = (e, name) => {
      assert.ok(e instanceof AgentMeshIOError, `${name}: ${e && e.stack}`)
      assert.equal(e.message, `[IO] opening ${missing}: No such file or directory (os error 2)`, name)
      assert.deepEqual(e.details, {})
    }
    for (const [name, fn] of Object.entries(ASYNC)) check(await rejection(fn(missing)), name)
    for (const [name, fn] of Object.entries(SYNC)) check(thrown(() => fn(missing)), name)
  })

  test('wrong arguments: InvalidArgumentError, as a rejection from the Promise forms', async () => {
    const file = driven(CHAIN)
    const badPath = '[INVALID_ARGUMENT] path must be a string or a file: URL, not number'
    for (const [name, fn] of Object.entries(ASYNC)) {
      let pending
      assert.doesNotThrow(() => {
        pending = fn(5)
      }, name)
      const e = await rejection(pending)
      assert.ok(e instanceof InvalidArgumentError, name)
      assert.equal(e.message, badPath, name)
    }
    for (const [name, fn] of Object.entries(SYNC)) assert.equal(thrown(() => fn(5)).message, badPath, name)

    const notWorkflow = '[INVALID_ARGUMENT] workflow must be a Workflow, not NativeWorkflow'
    const nw = native.NativeWorkflow.fromJson(JSON.stringify(CHAIN))
    assert.equal((await rejection(log.replay(file, nw))).message, notWorkflow)
    assert.equal(thrown(() => log.replaySync(file, nw)).message, notWorkflow)
    assert.equal(thrown(() => log.replaySync(file, CHAIN)).message, '[INVALID_ARGUMENT] workflow must be a Workflow, not object')

    const seqs = [
      ['4', 'seq must be an integer from 0 to 2^53-1, not string'],
      [4n, 'seq must be an integer from 0 to 2^53-1, not bigint'],
      [undefined, 'seq must be an integer from 0 to 2^53-1, not undefined'],
      [1.5, 'seq must be an integer from 0 to 2^53-1, not 1.5'],
      [-1, 'seq must be an integer from 0 to 2^53-1, not -1'],
    ]
    for (const [seq, message] of seqs) {
      const e = await rejection(log.stateAt(file, seq))
      assert.ok(e instanceof InvalidArgumentError)
      assert.equal(e.message, `[INVALID_ARGUMENT] ${message}`)
      assert.equal(thrown(() => log.stateAtSync(file, seq)).message, `[INVALID_ARGUMENT] ${message}`)
    }
    const beyond = await rejection(log.stateAt(file, 99))
    assert.ok(beyond instanceof InvalidArgumentError)
    assert.ok(beyond.message.startsWith('[INVALID_ARGUMENT] '), beyond.message)
  })

  test('readLog is lazy: nothing is read until iteration, errors reject the first next()', async () => {
    const missing = path.join(tmpdir(), 'missing.jsonl')
    const iterator = log.readLog(missing)
    const e = await rejection(iterator.next())
    assert.ok(e instanceof AgentMeshIOError)
    assert.deepEqual(await iterator.next(), { value: undefined, done: true })
    // Stopping early is fine.
    const file = driven(CHAIN)
    for await (const event of log.readLog(file)) {
      assert.equal(event.type, 'runStarted')
      break
    }
  })

  test('a NONDETERMINISM rejection carries its fields (natively driven log)', async () => {
    const file = driven(CHAIN)
    const changed = Workflow.fromObject({ ...CHAIN, nodes: [CHAIN.nodes[0], { ...CHAIN.nodes[1], agent: 'other' }] })
    const e = await rejection(log.replay(file, changed))
    assert.ok(e instanceof NondeterminismError)
    assert.deepEqual([e.seq, e.node, e.field, e.expected, e.actual], [6, 'write', 'data.agent', '"writer"', '"other"'])
  })

  test('a branch that decides otherwise: the message opens with the two decisions, then the field', async () => {
    // `driven` completes `a` with {node: 'a', visit: 1}: case 0 holds under the recorded workflow.
    const branchy = (node) => ({
      name: 'br',
      nodes: [
        { id: 'a', type: 'agent', agent: 'x' },
        { id: 'br', type: 'branch', after: ['a'], cases: [{ when: { path: '/outputs/a/node', eq: node }, goto: 'hi' }], default: 'lo' },
        { id: 'hi', type: 'agent', agent: 'x' },
        { id: 'lo', type: 'agent', agent: 'x' },
      ],
    })
    const file = driven(branchy('a'))
    const changed = Workflow.fromObject(branchy('b'))
    for (const e of [await rejection(log.replay(file, changed)), thrown(() => log.replaySync(file, changed))]) {
      assert.ok(e instanceof NondeterminismError)
      assert.equal(
        e.message,
        "[NONDETERMINISM] seq 5 (node 'br'): the log took case 0 → hi at branch 'br'; this workflow takes the default → lo at branch 'br'. First difference in 'data.case': expected 0, actual null",
      )
      assert.deepEqual(e.details, { seq: 5, node: 'br', field: 'data.case', expected: '0', actual: 'null' })
    }
  })

  test('errorCodes() is the core list, equal to ERROR_CODES', () => {
    assert.deepEqual(log.errorCodes(), [...ERROR_CODES])
    assert.notEqual(log.errorCodes(), log.errorCodes())
  })
})

describe('a map log', { skip: !haveCli && !process.env.CI && noCli }, () => {
  test('stateAt: pending map items carry their item and reads, as `agentmesh inspect --at SEQ --json` prints them', async () => {
    if (!haveCli) assert.fail(noCli)
    const wf = native.NativeWorkflow.fromJson(JSON.stringify({ name: 'map-state', nodes: [
      { id: 'plan', type: 'agent', agent: 'planner' },
      { id: 'research', type: 'map', agent: 'researcher', after: ['plan'], over: '/outputs/plan/qs', itemKey: '/id', concurrency: 2, reads: ['/input/topic', '/outputs/nope'] },
      { id: 'bare', type: 'map', tool: 'fetch', after: ['plan'], over: '/outputs/plan/qs' },
      { id: 'nope', type: 'agent', agent: 'n', after: ['research'] },
    ] }))
    const run = native.NativeRun.start(wf, { topic: 'é🦀' }, { seed: 5, logDir: tmpdir(), fsync: 'never' })
    const [plan] = poll(run)
    run.completeAll([C.ok(plan, { qs: [{ id: 'a', n: 1 }, { id: 7 }, { id: 'c🦀' }] })])
    // Two of research's three items handed out (its window), then bare's three.
    const acts = poll(run)
    assert.deepEqual(acts.map((a) => [a.node, a.item.index]), [['research', 0], ['research', 1], ['bare', 0], ['bare', 1], ['bare', 2]])
    run.completeAll([C.ok(acts[0], 'done'), C.ok(acts[3], 'fetched')])
    const file = run.logPath()
    run.close()
    const last = log.verifyLogSync(file).lastSeq
    const end = await log.stateAt(file, last)
    assert.deepEqual(
      end.pending.map((a) => [a.node, a.item, a.reads]),
      [
        ['research', { index: 1, key: '7', value: { id: 7 } }, { '/input/topic': 'é🦀' }],
        ['research', { index: 2, key: 'c🦀', value: { id: 'c🦀' } }, { '/input/topic': 'é🦀' }],
        ['bare', { index: 0, value: { id: 'a', n: 1 } }, undefined],
        ['bare', { index: 2, value: { id: 'c🦀' } }, undefined],
      ],
    )
    for (let seq = 1; seq <= last; seq++) {
      const cli = parseWithSeeds(agentmesh(['inspect', file, '--at', String(seq), '--json']).stdout.toString())
      assert.deepEqual(await log.stateAt(file, seq), cli, `seq ${seq}`)
      assert.deepEqual(log.stateAtSync(file, seq), cli, `seq ${seq}`)
    }
  })
})

describe('a log with retries', { skip: !haveCli && !process.env.CI && noCli }, () => {
  test('stateAt: a pending retry carries the failure it retries, as `agentmesh inspect --at SEQ --json` prints it', async () => {
    if (!haveCli) assert.fail(noCli)
    const wf = native.NativeWorkflow.fromJson(JSON.stringify({ name: 'retry-state', nodes: [
      { id: 'plan', type: 'agent', agent: 'planner', retry: { maxAttempts: 3 }, output: { schema: { type: 'object', required: ['qs'] } } },
      { id: 'research', type: 'map', agent: 'researcher', after: ['plan'], over: '/outputs/plan/qs', retry: { maxAttempts: 2 } },
    ] }))
    const run = native.NativeRun.start(wf, null, { seed: 5, logDir: tmpdir(), fsync: 'never' })
    let [plan] = poll(run)
    run.completeAll([C.err(plan, 'Flaky', 'try again', true)])
    ;[plan] = poll(run)
    run.completeAll([C.ok(plan, { questions: ['a'] })])
    ;[plan] = poll(run)
    run.completeAll([C.ok(plan, { qs: ['a', 'b'] })])
    const items = poll(run)
    // The step ends when both items are in: item 1's retry is scheduled, pending at the end.
    run.completeAll([C.err(items[1], 'Busy', 'later', true), C.ok(items[0], 'done')])
    const file = run.logPath()
    run.close()
    const last = log.verifyLogSync(file).lastSeq
    const end = await log.stateAt(file, last)
    assert.deepEqual(
      end.pending.map((a) => [a.node, a.attempt, a.item && a.item.index, a.lastFailure]),
      [['research', 2, 1, { kind: 'error', type: 'Busy', message: 'later', retryable: true }]],
    )
    for (let seq = 1; seq <= last; seq++) {
      const cli = parseWithSeeds(agentmesh(['inspect', file, '--at', String(seq), '--json']).stdout.toString())
      assert.deepEqual(await log.stateAt(file, seq), cli, `seq ${seq}`)
      assert.deepEqual(log.stateAtSync(file, seq), cli, `seq ${seq}`)
    }
    const types = []
    for (let seq = 1; seq <= last; seq++) {
      for (const a of log.stateAtSync(file, seq).pending) if (a.lastFailure !== undefined) types.push(a.lastFailure.type)
    }
    assert.deepEqual([...new Set(types)], ['Flaky', 'OutputSchemaError', 'Busy'])
  })
})

describe('a large log', () => {
  // ~50,000 events: a fan-out of 8 workers looped by a branch, driven natively.
  const WORKERS = Array.from({ length: 8 }, (_, i) => `w${i}`)
  const LOOPS = 2381 // 21 events a loop
  const SPIN = {
    name: 'spin',
    maxSteps: 100_000,
    nodes: [
      { id: 'fan', type: 'agent', agent: 'fan', maxVisits: 100_000 },
      ...WORKERS.map((id) => ({ id, type: 'agent', agent: 'worker', after: ['fan'], maxVisits: 100_000 })),
      { id: 'again', type: 'branch', after: WORKERS, maxVisits: 100_000, cases: [{ when: { path: '/visits/fan', lt: LOOPS }, goto: 'fan' }] },
    ],
  }
  let file

  before(() => {
    const wf = native.NativeWorkflow.fromJson(JSON.stringify(SPIN))
    const run = native.NativeRun.start(wf, null, { logDir: tmpdir(), fsync: 'never' })
    for (let acts = poll(run); acts.length > 0; acts = poll(run)) run.completeAll(acts.map((a) => C.okJson(a, '1')))
    assert.equal(run.status(), 'completed')
    file = run.logPath()
    run.close()
  })

  /** How many event-loop turns (setImmediate) ran while `start()`'s Promise was pending. */
  async function turnsWhilePending(start) {
    let settled = false
    let turns = 0
    const tick = () => {
      if (settled) return
      turns += 1
      setImmediate(tick)
    }
    const pending = start().finally(() => {
      settled = true
    })
    setImmediate(tick)
    const value = await pending
    return { value, turns }
  }

  test('verifyLog does not block the event loop while it reads', async () => {
    const { value, turns } = await turnsWhilePending(() => log.verifyLog(file))
    assert.equal(value.events, 1 + LOOPS * 21 + 1)
    assert.equal(value.finished, 'runCompleted')
    assert.ok(turns >= 1, `the event loop did not turn while verifyLog was pending (${turns})`)
  })

  test('neither does fingerprint', async () => {
    const { value, turns } = await turnsWhilePending(() => log.fingerprint(file))
    assert.match(value, /^[0-9a-f]{64}$/)
    assert.ok(turns >= 1, `the event loop did not turn while fingerprint was pending (${turns})`)
  })
})
