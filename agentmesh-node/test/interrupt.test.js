'use strict'
// Stopping a run so that it can be resumed: a real SIGINT sent to a child process (with
// Node's default action, and with a handler that aborts the `interrupt` signal), versus a
// SIGINT routed to the cancel `signal` (final), and the `interrupt` option in-process: nothing
// final is written, in-flight activations stay in flight, the log is released, and resuming
// gives the canonical log of a run that was never stopped.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const path = require('node:path')

const am = require('..')
const { tempDirs, wf, agentNode, rejected, thrown, assertError } = require('./support/helpers')
const { WORKFLOW, INPUT, SEED, agents } = require('./support/sigint-child')

const { Mesh, Workflow, RunInterruptedError, InvalidArgumentError, AgentMeshError } = am

const tmpdir = tempDirs('interrupt')
const CHILD = path.join(__dirname, 'support', 'sigint-child.js')
const FINAL = new Set(['runCompleted', 'runFailed', 'runCancelled'])
const types = (p) => am.readLogSync(p).map((e) => e.type)
/** The nodes whose activations are in flight at the end of the log (scheduled, no result). */
const inFlight = (p) => am.stateAtSync(p, am.verifyLogSync(p).lastSeq).pending.map((a) => a.node)

/** The fingerprint of the workflow run without any interruption (in a directory of its own). */
async function uninterrupted() {
  const mesh = agents(new Mesh({ logDir: tmpdir() }), [])
  const r = await mesh.run(Workflow.fromObject(WORKFLOW), { input: INPUT, seed: SEED })
  assert.equal(r.status, 'completed')
  return r
}

/**
 * Start the child in `mode`, wait until its slow agent started, send it a real SIGINT; resolves
 * with its exit code, signal and stdout lines.
 */
function interruptChild(mode, logDir) {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn(process.execPath, [CHILD, mode, logDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let sent = false
    // Bounds a child that never gets to its slow agent (a failure, not a measurement).
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (!sent && out.includes('started long\n')) {
        sent = true
        child.kill('SIGINT')
      }
    })
    child.stderr.on('data', (chunk) => {
      err += chunk
    })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(guard)
      resolve({ code, signal, sent, lines: out.split('\n').filter((l) => l !== ''), stderr: err })
    })
  })
}

/** Resume the child's log in this process: `calls` says which agents ran again. */
async function resumeHere(logPath) {
  const calls = []
  const mesh = agents(new Mesh({ logDir: path.dirname(logPath) }), calls)
  const r = await mesh.resume(logPath)
  return { r, calls }
}

describe('a real SIGINT', () => {
  test('the package installs no SIGINT handler: Node ends the process, the log is left resumable', async () => {
    // Loading the package and driving a run leaves SIGINT to Node (or to the application).
    assert.equal(process.listenerCount('SIGINT'), 0)
    const dir = tmpdir()
    const mesh = new Mesh({ logDir: dir }).agent('a', () => process.listenerCount('SIGINT'))
    const during = await mesh.run(wf([agentNode('one', 'a')]), { runId: 'listeners' })
    assert.deepEqual(during.output, { one: 0 })
    assert.equal(process.listenerCount('SIGINT'), 0)

    const logDir = tmpdir()
    const child = await interruptChild('default', logDir)
    assert.ok(child.sent, `the child never started its slow agent: ${child.stderr}`)
    assert.equal(child.signal, 'SIGINT', `the child exited ${child.code}: ${child.stderr}`)
    const base = await uninterrupted()
    const logPath = path.join(logDir, `${base.runId}.jsonl`)
    // Nothing final; the slow activation is still in flight.
    const seen = types(logPath)
    assert.ok(!seen.some((t) => FINAL.has(t)), seen.join(' '))
    assert.ok(!seen.includes('activationCancelled'))
    assert.equal(am.verifyLogSync(logPath).finished, null)
    assert.deepEqual(inFlight(logPath), ['long'])

    const { r, calls } = await resumeHere(logPath)
    assert.equal(r.status, 'completed')
    // Only the interrupted activation and what comes after it ran again.
    assert.deepEqual(calls, ['long', 'write'])
    assert.equal(r.fingerprint, base.fingerprint)
    assert.deepEqual(am.canonicalLogSync(logPath), base.canonical())
  })

  test('a handler aborting the interrupt signal: RunInterruptedError, nothing final, resumable', async () => {
    const logDir = tmpdir()
    const child = await interruptChild('interrupt', logDir)
    assert.ok(child.sent, `the child never started its slow agent: ${child.stderr}`)
    assert.equal(child.code, 130, child.stderr)
    const base = await uninterrupted()
    const logPath = path.join(logDir, `${base.runId}.jsonl`)
    const reported = JSON.parse(child.lines.at(-1))
    assert.deepEqual(
      { ...reported, message: undefined },
      { name: 'RunInterruptedError', runId: base.runId, logPath, reason: 'SIGINT', message: undefined },
    )
    assert.ok(reported.message.includes(`mesh.resume('${logPath}')`), reported.message)
    const seen = types(logPath)
    assert.ok(!seen.some((t) => FINAL.has(t) || t === 'activationCancelled'), seen.join(' '))
    assert.deepEqual(inFlight(logPath), ['long'])

    const { r, calls } = await resumeHere(logPath)
    assert.equal(r.status, 'completed')
    assert.deepEqual(calls, ['long', 'write'])
    assert.equal(r.fingerprint, base.fingerprint)
  })

  test('a handler aborting the cancel signal instead: runCancelled, final (the difference)', async () => {
    const logDir = tmpdir()
    const child = await interruptChild('cancel', logDir)
    assert.ok(child.sent, child.stderr)
    assert.equal(child.code, 0, child.stderr)
    assert.deepEqual(JSON.parse(child.lines.at(-1)), { status: 'cancelled', error: { code: 'CANCELLED', message: 'SIGINT' } })
    const base = await uninterrupted()
    const logPath = path.join(logDir, `${base.runId}.jsonl`)
    assert.deepEqual(types(logPath).slice(-2), ['activationCancelled', 'runCancelled'])
    const { r, calls } = await resumeHere(logPath)
    assert.equal(r.status, 'cancelled')
    assert.deepEqual(calls, [])
  })
})

describe('the interrupt option', () => {
  /** plan, then `a` and `b` in parallel; `b` waits for its signal; then `w`. */
  const PARALLEL = [
    agentNode('plan', 'fast'),
    agentNode('a', 'fast', { after: ['plan'] }),
    agentNode('b', 'waiter', { after: ['plan'] }),
    agentNode('w', 'fast', { after: ['a', 'b'] }),
  ]

  function meshFor(logDir, calls, onWait) {
    const mesh = new Mesh({ logDir })
    mesh.agent('fast', (act) => {
      calls.push(act.node)
      return act.node
    })
    mesh.agent('waiter', (act) => {
      calls.push(act.node)
      if (onWait === undefined) return act.node
      return new Promise((resolve) => {
        act.signal.addEventListener('abort', () => resolve(`aborted: ${act.signal.reason.name}`), { once: true })
        onWait(act)
      })
    })
    return mesh
  }

  test('aborting it stops driving: it rejects with RunInterruptedError, the log is released and resumable', async () => {
    const dir = tmpdir()
    const stop = new AbortController()
    let waiting = null
    const calls = []
    const mesh = meshFor(dir, calls, (act) => {
      waiting = act
      setImmediate(() => stop.abort('operator stopped the host'))
    })
    const e = await rejected(mesh.run(wf(PARALLEL, 'par'), { runId: 'int', interrupt: stop.signal }))
    assert.ok(e instanceof RunInterruptedError)
    assert.ok(!(e instanceof AgentMeshError))
    assert.equal(e.name, 'RunInterruptedError')
    assert.equal(e.runId, 'int')
    assert.equal(e.logPath, path.join(dir, 'int.jsonl'))
    assert.equal(e.reason, 'operator stopped the host')
    assert.equal(e.cause, 'operator stopped the host')
    assert.equal(
      e.message,
      `run 'int' was interrupted (operator stopped the host); nothing final was written: resume it with mesh.resume('${e.logPath}')`,
    )
    // The abandoned agent saw its signal aborted (with the interruption as the reason).
    assert.ok(waiting.signal.aborted)
    assert.ok(waiting.signal.reason instanceof RunInterruptedError)
    const seen = types(e.logPath)
    assert.ok(!seen.some((t) => FINAL.has(t) || t === 'activationCancelled'), seen.join(' '))
    assert.deepEqual(inFlight(e.logPath), ['b'])

    // Released: this process resumes it at once; only `b` and what follows run again.
    const again = []
    const r = await meshFor(dir, again).resume(e.logPath)
    assert.equal(r.status, 'completed')
    assert.deepEqual(again, ['b', 'w'])
    const base = await meshFor(tmpdir(), []).run(wf(PARALLEL, 'par'), { runId: 'int' })
    assert.equal(r.fingerprint, base.fingerprint)
  })

  test('resume and fork take it too; an in-memory run says it cannot be resumed', async () => {
    const dir = tmpdir()
    const human = [agentNode('plan', 'fast'), { id: 'ok', type: 'human', after: ['plan'] }, agentNode('b', 'waiter', { after: ['ok'] })]
    const calls = []
    const first = await meshFor(dir, calls).run(wf(human, 'h'), { runId: 'h' })
    assert.equal(first.status, 'waiting')
    const stop = new AbortController()
    const mesh = meshFor(dir, calls, () => stop.abort())
    const e = await rejected(mesh.resume(first.logPath, { approvals: { ok: true }, interrupt: stop.signal }))
    assert.ok(e instanceof RunInterruptedError)
    // A bare abort(): the reason is the DOMException's message.
    assert.equal(e.reason, 'This operation was aborted')
    assert.ok(types(first.logPath).includes('humanResolved'))
    assert.equal((await meshFor(dir, []).resume(first.logPath)).status, 'completed')

    const base = await meshFor(dir, []).run(wf(PARALLEL, 'par'), { runId: 'p' })
    const stop2 = new AbortController()
    const e2 = await rejected(meshFor(dir, [], () => stop2.abort('x')).fork(base.logPath, 1, { runId: 'f', interrupt: stop2.signal }))
    assert.ok(e2 instanceof RunInterruptedError)
    assert.equal(e2.logPath, path.join(dir, 'f.jsonl'))

    const stop3 = new AbortController()
    const e3 = await rejected(meshFor(null, [], () => stop3.abort('x')).run(wf(PARALLEL, 'par'), { interrupt: stop3.signal }))
    assert.ok(e3 instanceof RunInterruptedError)
    assert.equal(e3.logPath, null)
    assert.match(e3.message, /its log was in memory, so it cannot be resumed$/)
  })

  test('aborted after the run ended: nothing happens; an aborted or non-signal option is refused first', async () => {
    const dir = tmpdir()
    const stop = new AbortController()
    const r = await meshFor(dir, []).run(wf(PARALLEL, 'par'), { runId: 'done', interrupt: stop.signal })
    assert.equal(r.status, 'completed')
    stop.abort()
    assert.equal(am.verifyLogSync(r.logPath).finished, 'runCompleted')

    const e = await rejected(meshFor(dir, []).run(wf(PARALLEL, 'par'), { runId: 'x', interrupt: AbortSignal.abort() }))
    assertError(e, InvalidArgumentError, 'INVALID_ARGUMENT')
    assert.match(e.message, /interrupt signal was aborted before the run started/)
    const e2 = await rejected(meshFor(dir, []).run(wf(PARALLEL, 'par'), { runId: 'x', interrupt: 'SIGINT' }))
    assert.match(e2.message, /interrupt must be an AbortSignal/)
    // The …Sync forms take no signal.
    const e3 = thrown(() => meshFor(dir, []).runSync(wf(PARALLEL, 'par'), { runId: 'x', interrupt: new AbortController().signal }))
    assert.match(e3.message, /unknown option 'interrupt'/)
    assert.deepEqual(require('node:fs').readdirSync(dir), ['done.jsonl'])
  })

  test('an agent that aborts it during its own call: the driver stops before recording anything more', async () => {
    const dir = tmpdir()
    const stop = new AbortController()
    const mesh = new Mesh({ logDir: dir }).agent('fast', (act) => {
      if (act.node === 'a') stop.abort('from a')
      return act.node
    })
    const e = await rejected(mesh.run(wf([agentNode('a', 'fast'), agentNode('w', 'fast', { after: ['a'] })], 'self'), { interrupt: stop.signal }))
    assert.ok(e instanceof RunInterruptedError)
    // `a`'s own result is not recorded: it stays in flight, as after a crash.
    assert.deepEqual(types(e.logPath), ['runStarted', 'stepStarted', 'agentScheduled'])
    assert.equal((await mesh.resume(e.logPath)).status, 'completed')
  })
})
