'use strict'
// Logs cross between the three hosts: a log written by Node replays and verifies in Python and
// in the Rust CLI; logs written by the CLI and by Python replay in Node; canonical bytes agree
// everywhere (a run Node retried included); a waiting run started by one host is resumed by another; Node's
// NondeterminismError reports what the CLI reports for a changed workflow.
//
// Needs the CLI (`$AGENTMESH_CLI`, else <repo>/target/debug/agentmesh: `cargo build -p
// agentmesh-cli`) and a Python with the binding (`$AGENTMESH_PYTHON`, else
// /tmp/pyenv/bin/python). Without one of them the tests that need it skip, or fail when `$CI`
// is set.

const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const am = require('..')
const { tempDirs, rejected } = require('./support/helpers')
const { exactText, loadScript: loadScriptFile, plain, scripted } = require('./support/script')

const REPO = path.resolve(__dirname, '..', '..')
const VECTORS = path.join(REPO, 'bindings-tests', 'vectors')

// Exit codes (docs/cli.md).
const EXIT_OK = 0
const EXIT_RUN_FAILED = 1
const EXIT_WAITING = 3
const EXIT_NONDETERMINISM = 6
// What `agentmesh verify --json` adds to the library's report.
const CLI_VERIFY_KEYS = ['status', 'summary', 'inFlight', 'waitingFor', 'host']

// the other hosts -------------------------------------------------------------------------

function executable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

const CLI = process.env.AGENTMESH_CLI || path.join(REPO, 'target', 'debug', 'agentmesh')
const PYTHON = process.env.AGENTMESH_PYTHON || '/tmp/pyenv/bin/python'
const MISSING = {
  cli: executable(CLI) ? null : `the agentmesh CLI is not at ${CLI}: run \`cargo build -p agentmesh-cli\` (or set AGENTMESH_CLI)`,
  python: executable(PYTHON) ? null : `no Python with the agentmesh binding at ${PYTHON} (set AGENTMESH_PYTHON)`,
}

/** Skip the test when a host is missing (fail when $CI is set). Returns false when skipped. */
function needs(t, ...hosts) {
  for (const host of hosts) {
    const why = MISSING[host]
    if (why === null) continue
    if (process.env.CI) assert.fail(why)
    t.skip(why)
    return false
  }
  return true
}

/** Run the CLI; asserts its exit code (unless `expect` is null). */
function cli(args, expect = EXIT_OK) {
  const r = childProcess.spawnSync(CLI, args.map(String), { cwd: REPO, timeout: 60000 })
  if (expect !== null) {
    assert.equal(
      r.status,
      expect,
      `agentmesh ${args.join(' ')}: exit ${r.status}, expected ${expect}\nstdout: ${String(r.stdout).slice(-2000)}\nstderr: ${r.stderr}`,
    )
  }
  return r
}

// Python: the agentmesh binding plus the scripted agents of the Python vector runner
// (bindings-tests/python/test_vectors.py), loaded under a name of its own.
const PY_PRELUDE = `
import importlib.util, json, os, sys
import agentmesh
REPO = ${JSON.stringify(REPO)}
VECTORS = os.path.join(REPO, "bindings-tests", "vectors")
def load_runner():
    spec = importlib.util.spec_from_file_location(
        "_agentmesh_vector_runner", os.path.join(REPO, "bindings-tests", "python", "test_vectors.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
def out(value):
    sys.stdout.write(json.dumps(value))
`

/** Run Python code (after the prelude) with `args` as sys.argv[1:]; returns its JSON output. */
function python(code, ...args) {
  const r = childProcess.spawnSync(PYTHON, ['-c', `${PY_PRELUDE}\n${code}`, ...args.map(String)], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 60000,
  })
  assert.equal(r.status, 0, `python exited ${r.status}\nstderr: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

const tmpdir = tempDirs('cross')

function loadScript(name) {
  return loadScriptFile(path.join(VECTORS, name, 'script.json'))
}

function vectorWorkflow(name) {
  return am.Workflow.fromFile(path.join(VECTORS, name, 'workflow.json'))
}

function scriptedMesh(logDir, wf, script) {
  const mesh = new am.Mesh({ logDir, fsync: 'never' })
  const fn = scripted(script)
  for (const name of wf.agentNames()) mesh.agent(name, fn)
  for (const name of wf.toolNames()) mesh.tool(name, fn)
  return mesh
}

/** Scripted errors fail runs: the failed run comes back on the AgentFailedError. */
async function drive(start) {
  try {
    return await start()
  } catch (e) {
    assert.ok(e instanceof am.AgentFailedError, String(e))
    return e.result
  }
}

function approvalsFor(script, waiting) {
  const all = script.approvals || {}
  const approvals = {}
  for (const a of waiting) if (a.node in all) approvals[a.node] = new am.RawJson(exactText(all[a.node]))
  return approvals
}

/**
 * Run a vector with Node agents: start it, then (each time with a new Mesh) resume it while
 * approvals apply and retry it while the script's `retries` allow.
 */
async function nodeRun(name, logDir, { resume = true } = {}) {
  const wf = vectorWorkflow(name)
  const script = loadScript(name)
  let result = await drive(() =>
    scriptedMesh(logDir, wf, script).run(wf, {
      input: script.input === undefined ? null : plain(script.input),
      seed: script.seed === undefined ? 0 : script.seed.text,
      runId: script.runId,
    }),
  )
  const retries = script.retries === undefined ? 0 : Number(script.retries.text)
  for (let retried = 0; resume;) {
    const logPath = result.logPath
    if (result.status === 'waiting') {
      const approvals = approvalsFor(script, result.waiting)
      if (Object.keys(approvals).length === 0) break
      result = await drive(() => scriptedMesh(logDir, wf, script).resume(logPath, { approvals }))
    } else if ((result.status === 'failed' || result.status === 'cancelled') && retried < retries) {
      result = await drive(() => scriptedMesh(logDir, wf, script).retry(logPath))
      retried++
    } else {
      break
    }
  }
  return result
}

function expected(name) {
  return fs.readFileSync(path.join(VECTORS, name, 'expected.jsonl'))
}

/** The outcome expected.jsonl ends with: {status, output?, error?}. */
function expectedOutcome(name) {
  const lines = expected(name).toString('utf8').trimEnd().split('\n')
  const last = JSON.parse(lines.at(-1))
  const status = { runCompleted: 'completed', runFailed: 'failed', runCancelled: 'cancelled' }[last.type]
  assert.ok(status, `${name} does not finish`)
  const outcome = { status }
  if (status === 'completed') outcome.output = last.data.output
  else if (status === 'failed') outcome.error = last.data.error
  else outcome.error = { code: 'CANCELLED', message: last.data.reason }
  return outcome
}

function onlyLog(dir) {
  const logs = fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl'))
  assert.equal(logs.length, 1, `logs in ${dir}: ${logs}`)
  return path.join(dir, logs[0])
}

// Vectors that finish without approvals, with the CLI's exit code; plus the two with human
// nodes, which the Node runner finishes by resuming.
const FINISHED = [
  ['chain', EXIT_OK],
  ['fan_out_join', EXIT_OK],
  ['branch', EXIT_OK],
  ['bounded_loop', EXIT_OK],
  ['retry_then_success', EXIT_OK],
  ['retries_exhausted', EXIT_RUN_FAILED],
  ['cancellation', EXIT_RUN_FAILED],
  ['large_payload', EXIT_OK],
]
const WITH_APPROVALS = ['human_wait_resume', 'unicode_and_numbers']
// Vectors the Node runner finishes by retrying a failed run (`retries` in the script).
const WITH_RETRIES = ['retry_after_failure']

// Node → Python, CLI ----------------------------------------------------------------------

describe('logs written by Node', () => {
  const logs = new Map() // vector → RunResult
  before(async () => {
    const dir = tmpdir()
    for (const name of [...FINISHED.map(([n]) => n), ...WITH_APPROVALS, ...WITH_RETRIES]) {
      const result = await nodeRun(name, path.join(dir, name))
      assert.ok(['completed', 'failed', 'cancelled'].includes(result.status), `${name}: ${result.status}`)
      assert.ok(am.canonicalLogSync(result.logPath).equals(expected(name)), `${name}: not the vector's log`)
      logs.set(name, result)
    }
  })

  test('replay in Python to the outcome Node recorded, with the same canonical bytes', (t) => {
    if (!needs(t, 'python')) return
    const names = [...logs.keys()]
    const report = python(
      `
import base64
result = {}
for name, path in zip(sys.argv[1::2], sys.argv[2::2]):
    outcome = agentmesh.replay(path)["outcome"]
    result[name] = {
        "status": outcome["status"],
        "error": outcome.get("error"),
        "output": json.dumps(outcome.get("output"), sort_keys=True),
        "canonical": base64.b64encode(agentmesh.canonical_log(path)).decode(),
        "fingerprint": agentmesh.fingerprint(path),
        "verify": agentmesh.verify_log(path)["finished"],
    }
out(result)
`,
      ...names.flatMap((n) => [n, logs.get(n).logPath]),
    )
    assert.deepEqual(Object.keys(report).sort(), names.slice().sort())
    for (const name of names) {
      const r = logs.get(name)
      const py = report[name]
      assert.equal(py.status, r.status, name)
      assert.deepEqual(py.error, r.error, name)
      // Outputs as JSON text (Python's exact numbers), compared after JSON.parse like Node's.
      assert.deepEqual(JSON.parse(py.output), r.output, name)
      assert.ok(Buffer.from(py.canonical, 'base64').equals(am.canonicalLogSync(r.logPath)), name)
      assert.equal(py.fingerprint, r.fingerprint, name)
      assert.equal(py.verify, { completed: 'runCompleted', failed: 'runFailed', cancelled: 'runCancelled' }[r.status])
    }
  })

  for (const name of [...FINISHED.map(([n]) => n), ...WITH_APPROVALS, ...WITH_RETRIES]) {
    test(`${name}: replays equal and verifies in the CLI, with the same canonical bytes`, (t) => {
      if (!needs(t, 'cli')) return
      const r = logs.get(name)
      const replay = cli(['replay', r.logPath]).stdout.toString('utf8')
      const lines = Object.fromEntries(
        replay.split('\n').filter((l) => l.trim() !== '').map((l) => {
          const m = /^(\S+)\s+(.*)$/.exec(l)
          return [m[1], m[2]]
        }),
      )
      assert.match(lines.replay, /^equal: \d+ events re-driven, no agent called$/)
      assert.equal(lines.run, r.runId)
      assert.equal(lines.status, r.status)
      if (r.status === 'completed') assert.deepEqual(JSON.parse(lines.output), r.output)
      else assert.equal(lines.error, `[${r.error.code}] ${r.error.message}`)
      const verify = JSON.parse(cli(['verify', r.logPath, '--json']).stdout)
      // The library's report, plus what the CLI adds: what the run is, and its host.
      const added = Object.fromEntries(CLI_VERIFY_KEYS.map((k) => [k, verify[k]]))
      for (const k of CLI_VERIFY_KEYS) delete verify[k]
      const finished = r.status === 'waiting' ? null : r.status
      if (finished) assert.deepEqual(added, { status: finished, summary: finished, inFlight: [], waitingFor: [], host: 'node' })
      else assert.equal(added.status, 'waiting')
      assert.deepEqual(verify, am.verifyLogSync(r.logPath))
      assert.equal(verify.repaired, null)
      assert.deepEqual(verify.holes, [])
      assert.ok(cli(['canonical', r.logPath]).stdout.equals(am.canonicalLogSync(r.logPath)))
    })
  }

  test('a Node fork of a Node log verifies and replays in the CLI', async (t) => {
    if (!needs(t, 'cli')) return
    const base = logs.get('chain')
    const mesh = new am.Mesh({ logDir: tmpdir() })
    mesh.agent('planner', () => assert.fail('the fork starts after plan'))
    mesh.agent('writer', (act) => ({ wrote: act.deps.plan }))
    mesh.agent('editor', (act) => ({ edited: act.deps.write }))
    const forked = await mesh.fork(base.logPath, 4, { overrides: { plan: 'replaced plan' }, runId: 'node-fork' })
    assert.equal(forked.status, 'completed')
    assert.deepEqual(forked.output, { edit: { edited: { wrote: 'replaced plan' } } })
    cli(['verify', forked.logPath])
    assert.match(cli(['replay', forked.logPath]).stdout.toString(), /^replay {7}equal/)
  })
})

// CLI and Python → Node -------------------------------------------------------------------

describe('logs written by the CLI and by Python, in Node', () => {
  for (const [name, code] of FINISHED) {
    test(`${name}: a CLI log replays in Node to the vector's outcome`, async (t) => {
      if (!needs(t, 'cli')) return
      const dir = tmpdir()
      const v = path.join(VECTORS, name)
      cli(['run', path.join(v, 'workflow.json'), '--script', path.join(v, 'script.json'), '--log-dir', dir, '--fsync', 'never'], code)
      const log = onlyLog(dir)
      const report = await am.replay(log)
      const want = expectedOutcome(name)
      assert.equal(report.outcome.status, want.status)
      assert.equal(report.workflowChanged, false)
      if (want.output !== undefined) assert.deepEqual(report.outcome.output, want.output)
      else assert.deepEqual(report.outcome.error, want.error)
      // Against the workflow file parsed by Node: the same events.
      const again = await am.replay(log, vectorWorkflow(name))
      assert.deepEqual(again.outcome, report.outcome)
      assert.equal(again.workflowChanged, false)
      assert.ok((await am.canonicalLog(log)).equals(expected(name)))
      assert.equal(await am.fingerprint(log), am.fingerprintSync(log))
      const verify = await am.verifyLog(log)
      assert.equal(verify.finished, { completed: 'runCompleted', failed: 'runFailed', cancelled: 'runCancelled' }[want.status])
      assert.equal(verify.repaired, null)
    })
  }

  test('Python logs replay in Node with the vectors\' canonical bytes', async (t) => {
    if (!needs(t, 'python')) return
    const dir = tmpdir()
    const names = FINISHED.map(([n]) => n)
    const written = python(
      `
runner = load_runner()
result = {}
for name in sys.argv[2:]:
    v = os.path.join(VECTORS, name)
    wf = agentmesh.Workflow.from_file(os.path.join(v, "workflow.json"))
    script = runner.load_script(__import__("pathlib").Path(v, "script.json"))
    mesh = runner.new_mesh(os.path.join(sys.argv[1], name), wf, script)
    r = runner.drive(lambda: mesh.run(wf, input=script.get("input"), seed=script.get("seed", 0), run_id=script.get("runId")))
    result[name] = {"path": r.log_path, "status": r.status}
out(result)
`,
      dir,
      ...names,
    )
    for (const name of names) {
      const { path: log, status } = written[name]
      assert.equal(status, expectedOutcome(name).status, name)
      const report = await am.replay(log)
      assert.equal(report.outcome.status, status, name)
      assert.ok(am.canonicalLogSync(log).equals(expected(name)), name)
      assert.equal(am.verifyLogSync(log).repaired, null)
    }
  })

  test('human_wait_resume relayed: started by the CLI, resumed by Node, finished by Python', async (t) => {
    if (!needs(t, 'cli', 'python')) return
    const name = 'human_wait_resume'
    const dir = tmpdir()
    const v = path.join(VECTORS, name)
    cli(['run', path.join(v, 'workflow.json'), '--script', path.join(v, 'script.json'), '--log-dir', dir, '--fsync', 'never'], EXIT_WAITING)
    const log = onlyLog(dir)
    const wf = vectorWorkflow(name)
    const script = loadScript(name)
    // Node resolves the first human node only.
    const r = await scriptedMesh(dir, wf, script).resume(log, { approvals: { approve: new am.RawJson(exactText(script.approvals.approve)) } })
    assert.equal(r.status, 'waiting')
    assert.deepEqual(r.waiting.map((a) => a.node), ['legal'])
    const done = python(
      `
runner = load_runner()
v = os.path.join(VECTORS, "${name}")
wf = agentmesh.Workflow.from_file(os.path.join(v, "workflow.json"))
script = runner.load_script(__import__("pathlib").Path(v, "script.json"))
r = runner.new_mesh(sys.argv[2], wf, script).resume(sys.argv[1], {"legal": script["approvals"]["legal"]})
out({"status": r.status, "waiting": [a.node for a in r.waiting]})
`,
      log,
      dir,
    )
    assert.deepEqual(done, { status: 'completed', waiting: [] })
    assert.ok(am.canonicalLogSync(log).equals(expected(name)))
    assert.equal((await am.replay(log)).outcome.status, 'completed')
    cli(['verify', log])
    cli(['replay', log])
  })
})

// waiting runs across hosts ---------------------------------------------------------------

const GATE = {
  name: 'gate',
  nodes: [
    { id: 'approve', type: 'human', prompt: 'Ship it?' },
    { id: 'ship', type: 'agent', agent: 'shipper', after: ['approve'] },
  ],
}
const DECISION = { ok: true, by: 'ana', score: 0.5 }

// The same agent in both languages: the decision, the input and the activation's seed.
const nodeShipper = (act) => ({ shipped: act.deps.approve, input: act.input, seed: String(act.seed), attempt: act.attempt })
const PY_SHIPPER = `lambda act: {"shipped": act.deps["approve"], "input": act.input, "seed": str(act.seed), "attempt": act.attempt}`

describe('a waiting run resumed by another host', () => {
  /** The all-Node log: run, then resume with the decision. */
  async function nodeOnly() {
    const dir = tmpdir()
    const mesh = new am.Mesh({ logDir: dir }).agent('shipper', nodeShipper)
    const r = await mesh.run(am.Workflow.fromObject(GATE), { input: { v: 1 }, seed: 77, runId: 'gate' })
    assert.equal(r.status, 'waiting')
    const done = await new am.Mesh({ logDir: dir }).agent('shipper', nodeShipper).resume(r.logPath, { approvals: { approve: DECISION } })
    assert.equal(done.status, 'completed')
    return am.canonicalLogSync(done.logPath)
  }

  test('started by Node, resumed by Python', async (t) => {
    if (!needs(t, 'python')) return
    const dir = tmpdir()
    const mesh = new am.Mesh({ logDir: dir }).agent('shipper', () => assert.fail('ship runs in Python'))
    const r = await mesh.run(am.Workflow.fromObject(GATE), { input: { v: 1 }, seed: 77, runId: 'gate' })
    assert.equal(r.status, 'waiting')
    assert.deepEqual(r.waiting.map((a) => [a.node, a.kind, a.prompt]), [['approve', 'human', 'Ship it?']])
    const py = python(
      `
mesh = agentmesh.Mesh(log_dir=sys.argv[2])
mesh.add_agent("shipper", ${PY_SHIPPER})
r = mesh.resume(sys.argv[1], json.loads(sys.argv[3]))
out({"status": r.status, "output": r.output})
`,
      r.logPath,
      dir,
      JSON.stringify({ approve: DECISION }),
    )
    assert.equal(py.status, 'completed')
    const seed = py.output.ship.seed
    assert.deepEqual(py.output, { ship: { shipped: DECISION, input: { v: 1 }, seed, attempt: 1 } })
    const log = am.readLogSync(r.logPath)
    assert.deepEqual(log.filter((e) => e.type === 'humanResolved').map((e) => [e.node, e.data.output]), [['approve', DECISION]])
    assert.equal((await am.replay(r.logPath)).outcome.status, 'completed')
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runCompleted')
    // Python's agent saw the seed Node's would have: the whole log is the all-Node one.
    assert.ok(am.canonicalLogSync(r.logPath).equals(await nodeOnly()))
  })

  test('started by Python, resumed by Node', async (t) => {
    if (!needs(t, 'python')) return
    const dir = tmpdir()
    const py = python(
      `
mesh = agentmesh.Mesh(log_dir=sys.argv[1])
mesh.add_agent("shipper", ${PY_SHIPPER})
r = mesh.run(agentmesh.Workflow.from_dict(json.loads(sys.argv[2])), input={"v": 1}, seed=77, run_id="gate")
out({"status": r.status, "log": r.log_path, "waiting": [a.node for a in r.waiting]})
`,
      dir,
      JSON.stringify(GATE),
    )
    assert.deepEqual([py.status, py.waiting], ['waiting', ['approve']])
    const mesh = new am.Mesh({ logDir: dir }).agent('shipper', nodeShipper)
    // A typo changes nothing in Python's log either.
    const before = fs.readFileSync(py.log)
    const e = await rejected(mesh.resume(py.log, { approvals: { aprove: DECISION } }))
    assert.ok(e instanceof am.InvalidArgumentError && e.code === 'INVALID_ARGUMENT')
    assert.ok(fs.readFileSync(py.log).equals(before))
    const done = await mesh.resume(py.log, { approvals: { approve: DECISION }, runId: 'gate' })
    assert.equal(done.status, 'completed')
    assert.deepEqual(done.output.ship.shipped, DECISION)
    assert.ok(am.canonicalLogSync(py.log).equals(await nodeOnly()))
    const back = python(`out(agentmesh.replay(sys.argv[1])["outcome"]["status"])`, py.log)
    assert.equal(back, 'completed')
  })
})

// nondeterminism --------------------------------------------------------------------------

const CHANGES = [
  ['chain', '"agent": "writer"', '"agent": "author"', 'data.agent'],
  ['bounded_loop', '"eq": false', '"eq": true', 'data.case'],
  ['fan_out_join', '"tool": "web_search"', '"tool": "web_fetch"', 'data.tool'],
  ['retry_then_success', '"backoffMs": 10', '"backoffMs": 15', 'data.delayMs'],
]

describe('a changed workflow: Node and the CLI report the same divergence', () => {
  for (const [name, from, to, field] of CHANGES) {
    test(`${name}: ${field}`, async (t) => {
      if (!needs(t, 'cli')) return
      const dir = tmpdir()
      const r = await nodeRun(name, path.join(dir, 'logs'))
      const text = fs.readFileSync(path.join(VECTORS, name, 'workflow.json'), 'utf8')
      assert.ok(text.includes(from))
      const changed = path.join(dir, 'changed.json')
      fs.writeFileSync(changed, text.replace(from, to))

      const e = await rejected(am.replay(r.logPath, am.Workflow.fromFile(changed)))
      assert.ok(e instanceof am.NondeterminismError && e instanceof am.AgentMeshError, String(e))
      assert.equal(e.code, 'NONDETERMINISM')
      assert.equal(e.field, field)

      const proc = cli(['replay', r.logPath, '--workflow', changed], EXIT_NONDETERMINISM)
      const lines = proc.stderr.toString('utf8').split('\n').filter((l) => l.trim() !== '')
      assert.ok(lines[0].startsWith('[NONDETERMINISM] seq '), lines[0])
      const detail = Object.fromEntries(lines.slice(1).map((l) => {
        const m = /^\s*(\S+)\s+(.*)$/.exec(l)
        return [m[1], m[2]]
      }))
      assert.deepEqual(
        [e.seq, e.node, e.field, e.expected, e.actual],
        [Number(detail.seq), detail.node, detail.field, detail.expected, detail.actual],
      )
      assert.equal(typeof e.seq, 'number')
      assert.equal(e.message, lines[0])
      assert.deepEqual(e.details, { seq: e.seq, node: e.node, field: e.field, expected: e.expected, actual: e.actual })
      // The sync form throws the same error.
      let sync = null
      try {
        am.replaySync(r.logPath, am.Workflow.fromFile(changed))
      } catch (err) {
        sync = err
      }
      assert.ok(sync instanceof am.NondeterminismError)
      assert.deepEqual([sync.message, sync.details], [e.message, e.details])
    })
  }
})
