'use strict'
// Sparse arrays (issue 8, defect 16): `a = []; a.length = 2 ** 32 - 1` holds nothing, yet an
// addon that allocates by `length` asks for 128 GiB and aborts the process (SIGABRT, which no
// JavaScript can catch). Wherever JSON data enters the core — run input, agent output,
// approvals, fork overrides — such an array is refused with a typed error naming its path, in
// bounded memory: the length is checked against what a log record can hold before anything is
// allocated, and holes are not JSON data. The cases also run in a child process, so an abort
// would show as a killed child instead of taking the test runner down.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const { Mesh, AgentFailedError, InvalidArgumentError, InvalidOutputError } = am
const tmpdir = tempDirs('sparse')
const PACKAGE = path.resolve(__dirname, '..')

function huge() {
  const a = []
  a.length = 2 ** 32 - 1
  return a
}

const TOO_LONG = 'array at $.a has 4294967295 elements, more than a log record can hold (64 MiB)'

describe('an array of length 2**32 - 1 is refused, naming its path', () => {
  test('as run input: InvalidArgumentError, no log', () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('a', () => 1)
    const e = thrown(() => mesh.runSync(wf([agentNode('n', 'a')]), { input: { a: huge() }, runId: 'in' }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(e.message, `[INVALID_ARGUMENT] input is not JSON data: ${TOO_LONG}`)
  })

  test('as an agent output: the node fails with InvalidOutput', async () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    mesh.agent('a', () => ({ a: huge() }))
    for (const e of [thrown(() => mesh.runSync(wf([agentNode('n', 'a')]), { runId: 'sync' })), await rejected(mesh.run(wf([agentNode('n', 'a')]), { runId: 'async' }))]) {
      assertError(e, AgentFailedError, 'AGENT_FAILED')
      assert.ok(e.cause instanceof InvalidOutputError)
      assert.equal(e.cause.message, `[INVALID_OUTPUT] node 'n': output is not JSON data: ${TOO_LONG}`)
    }
  })

  test('as an approval and as a fork override: InvalidArgumentError, the log unchanged', async () => {
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir })
    mesh.agent('a', () => 1)
    const w = wf([agentNode('n', 'a'), { id: 'ok', type: 'human', after: ['n'] }])
    const r = mesh.runSync(w, { runId: 'h' })
    assert.equal(r.status, 'waiting')
    const e = thrown(() => mesh.resumeSync(r.logPath, { approvals: { ok: { a: huge() } } }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(e.message, `[INVALID_ARGUMENT] approvals is not JSON data: ${TOO_LONG.replace('$.a', '$.ok.a')}`)
    const f = await rejected(mesh.fork(r.logPath, 4, { overrides: { n: { a: huge() } } }))
    assertError(f, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.equal(f.message, `[INVALID_ARGUMENT] overrides is not JSON data: ${TOO_LONG.replace('$.a', '$.n.a')}`)
    assert.equal(mesh.resumeSync(r.logPath, { approvals: { ok: true } }).status, 'completed')
  })

  test('holes are not JSON data: a sparse array of any length is refused at its first hole', () => {
    const mesh = new Mesh({ logDir: tmpdir() })
    const sparse = [1]
    sparse.length = 1_000_000
    mesh.agent('a', () => ({ a: sparse }))
    const e = thrown(() => mesh.runSync(wf([agentNode('n', 'a')]), { runId: 'holes' }))
    assert.equal(e.cause.message, "[INVALID_OUTPUT] node 'n': output is not JSON data: hole at $.a[1] is not JSON data (a sparse array)")
    // An explicit undefined element is still reported as undefined.
    mesh.agent('a', () => ({ a: [1, undefined] }))
    const e2 = thrown(() => mesh.runSync(wf([agentNode('n', 'a')]), { runId: 'undef' }))
    assert.equal(e2.cause.message, "[INVALID_OUTPUT] node 'n': output is not JSON data: undefined at $.a[1] is not JSON data")
  })

  test('in a child process: every case is a typed error, the process exits normally', () => {
    const script = `
      const am = require(${JSON.stringify(PACKAGE)})
      const fs = require('node:fs')
      const dir = fs.mkdtempSync(require('node:path').join(require('node:os').tmpdir(), 'agentmesh-sparse-child-'))
      const huge = () => { const a = []; a.length = 2 ** 32 - 1; return a }
      const wf = am.Workflow.fromObject({ name: 't', nodes: [{ id: 'n', type: 'agent', agent: 'a' }, { id: 'ok', type: 'human', after: ['n'] }] })
      const seen = []
      const attempt = (what, fn) => { try { fn(); seen.push(what + ': no error') } catch (e) { seen.push(what + ': ' + e.code + ' ' + (e.cause ? e.cause.code : '')) } }
      const mesh = new am.Mesh({ logDir: dir }).agent('a', () => ({ a: huge() }))
      attempt('input', () => mesh.runSync(wf, { input: { a: huge() }, runId: 'i' }))
      attempt('output', () => mesh.runSync(wf, { runId: 'o' }))
      const ok = new am.Mesh({ logDir: dir }).agent('a', () => 1)
      const r = ok.runSync(wf, { runId: 'h' })
      attempt('approval', () => ok.resumeSync(r.logPath, { approvals: { ok: huge() } }))
      attempt('override', () => ok.forkSync(r.logPath, 4, { overrides: { n: huge() } }))
      fs.rmSync(dir, { recursive: true, force: true })
      process.stdout.write(JSON.stringify(seen))
    `
    const child = childProcess.spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 })
    assert.equal(child.signal, null, `the child was killed by ${child.signal}: ${child.stderr}`)
    assert.equal(child.status, 0, child.stderr)
    assert.deepEqual(JSON.parse(child.stdout), [
      'input: INVALID_ARGUMENT ',
      'output: AGENT_FAILED INVALID_OUTPUT',
      'approval: INVALID_ARGUMENT ',
      'override: INVALID_ARGUMENT ',
    ])
  })
})
