'use strict'
// Node runner of the conformance vectors (bindings-tests/README.md, "Runner procedure"): each
// vector runs with real JS agents built from script.json (real throws, real timers, Promises
// settling out of order, cancellation from inside an agent, approvals on resume with a new
// Mesh, retries of a failed run with `mesh.retry`), and its canonical log must equal
// expected.jsonl byte for byte. This runner only
// compares; it never writes expected files.
// Exact numbers: see ./support/script.js.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const am = require('..')
const { budgetOption, exactText, loadScript, perturbed, plain, policyOption, pricesOption, scripted } = require('./support/script')

const VECTORS = path.resolve(__dirname, '..', '..', 'bindings-tests', 'vectors')
const NAMES = fs.readdirSync(VECTORS).filter((n) => fs.statSync(path.join(VECTORS, n)).isDirectory()).sort()

function newMesh(logDir, wf, script) {
  // The script's prices go to every run of the mesh: started, resumed and retried alike.
  const mesh = new am.Mesh({ logDir, fsync: 'never', prices: pricesOption(script.prices), policy: policyOption(script.policy) })
  const fn = scripted(script)
  for (const name of wf.agentNames()) mesh.agent(name, fn)
  for (const name of wf.toolNames()) mesh.tool(name, fn)
  return mesh
}

async function drive(start) {
  try {
    return await start()
  } catch (e) {
    // Scripted errors are ActivationErrors; the failed run comes back on the error.
    assert.ok(e instanceof am.AgentFailedError, String(e))
    assert.ok(e.cause instanceof am.ActivationError)
    assert.equal(e.result.status, 'failed')
    return e.result
  }
}

function firstDifference(expected, actual) {
  const exp = expected.toString('utf8').split('\n')
  const act = actual.toString('utf8').split('\n')
  for (let i = 0; i < Math.max(exp.length, act.length); i++) {
    if (exp[i] !== act[i]) {
      const e = exp[i] === undefined ? '<end of log>' : exp[i]
      const a = act[i] === undefined ? '<end of log>' : act[i]
      let col = 0
      while (col < Math.min(e.length, a.length) && e[col] === a[col]) col++
      const cut = (s) => s.slice(Math.max(0, col - 120), col + 120)
      return `line ${i + 1}, column ${col}:\n expected: ${cut(e)}\n   actual: ${cut(a)}`
    }
  }
  return 'logs differ'
}

async function runVector(name, perturb) {
  const dir = path.join(VECTORS, name)
  const wf = am.Workflow.fromFile(path.join(dir, 'workflow.json'))
  let script = loadScript(path.join(dir, 'script.json'))
  if (perturb) script = perturbed(script)
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-vec-'))
  try {
    let mesh = newMesh(logDir, wf, script)
    let result = await drive(() =>
      mesh.run(wf, {
        input: script.input === undefined ? null : plain(script.input),
        seed: script.seed === undefined ? 0 : script.seed.text,
        runId: script.runId,
        budget: budgetOption(script.budget),
      }),
    )
    const approvalsAll = script.approvals || {}
    const retries = script.retries === undefined ? 0 : Number(script.retries.text)
    let retried = 0
    for (;;) {
      const logPath = result.logPath
      if (result.status === 'waiting') {
        const approvals = {}
        for (const a of result.waiting) {
          if (a.node in approvalsAll) approvals[a.node] = new am.RawJson(exactText(approvalsAll[a.node]))
        }
        if (Object.keys(approvals).length === 0) break
        mesh = newMesh(logDir, wf, script) // as another process would resume the run
        result = await drive(() => mesh.resume(logPath, { approvals }))
      } else if ((result.status === 'failed' || result.status === 'cancelled') && retried < retries) {
        mesh = newMesh(logDir, wf, script)
        result = await drive(() => mesh.retry(logPath))
        retried++
      } else {
        break
      }
    }
    assert.equal(retried, retries, `${name}: the run was retried ${retried} of the script's ${retries} times`)
    const actual = am.canonicalLogSync(result.logPath)
    const expected = fs.readFileSync(path.join(dir, 'expected.jsonl'))
    if (!actual.equals(expected)) {
      assert.fail(`${name}${perturb ? ' (perturbed)' : ''}: ${firstDifference(expected, actual)}`)
    }
    const report = await am.verifyLog(result.logPath)
    assert.equal(report.repaired ?? null, null)
    assert.equal(report.events, actual.toString('utf8').split('\n').length - 2)
    const finished = ['completed', 'failed', 'cancelled'].includes(result.status)
    assert.equal(report.finished !== undefined && report.finished !== null, finished)
    const replayed = (await am.replay(result.logPath)).outcome
    assert.equal(replayed.status, result.status)
    assert.deepEqual(replayed.output ?? null, result.output)
    assert.deepEqual(replayed.error ?? null, result.error)
  } finally {
    fs.rmSync(logDir, { recursive: true, force: true })
  }
}

for (const name of NAMES) {
  test(`vector ${name}`, () => runVector(name, false))
  test(`vector ${name} (perturbed)`, () => runVector(name, true))
}

test('every vector is found', () => {
  assert.ok(NAMES.length >= 17)
  assert.ok(NAMES.includes('unicode_and_numbers'))
})
