'use strict'
// A host that a test stops with a real SIGINT (interrupt.test.js).
//
//   node sigint-child.js MODE LOG_DIR
//
// It runs `WORKFLOW` with `agents()`: `fast` finishes at once, `slow` prints `started <node>`
// on stdout once the driver has recorded what finished before it, then waits until its
// activation is aborted. MODE says what SIGINT does:
// - `default`: nothing is installed: Node's default action ends the process;
// - `interrupt`: a handler aborts the `interrupt` signal passed to the run (resumable stop);
//   the child prints the RunInterruptedError as JSON and exits 130;
// - `cancel`: a handler aborts the `signal` passed to the run (final cancel); the child
//   prints the RunResult's status and error.

const { Mesh, Workflow, RunInterruptedError } = require('../..')

const WORKFLOW = {
  name: 'sigint',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'fast' },
    { id: 'quick', type: 'agent', agent: 'fast', after: ['plan'] },
    { id: 'long', type: 'agent', agent: 'slow', after: ['plan'] },
    { id: 'write', type: 'agent', agent: 'fast', after: ['quick', 'long'] },
  ],
}
const INPUT = { topic: 'ctrl-c' }
const SEED = 9

/** The agents; `calls` collects the node of every call, `onSlow(act)` may print. */
function agents(mesh, calls, onSlow) {
  mesh.agent('fast', (act) => {
    calls.push(act.node)
    return { node: act.node, deps: Object.keys(act.deps).sort() }
  })
  mesh.agent('slow', async (act) => {
    calls.push(act.node)
    // Let the driver record what settled with this step first (it does, before it waits).
    await new Promise((resolve) => setImmediate(resolve))
    if (onSlow) {
      const keepWaiting = onSlow(act)
      if (keepWaiting) {
        await new Promise((resolve, reject) => {
          // A model call that takes long; the timer only bounds a child nobody stopped.
          const timer = setTimeout(resolve, 60_000)
          act.signal.addEventListener('abort', () => {
            clearTimeout(timer)
            reject(act.signal.reason)
          }, { once: true })
        })
      }
    }
    return { node: act.node, slow: true }
  })
  return mesh
}

async function main() {
  const [mode, logDir] = process.argv.slice(2)
  const mesh = agents(new Mesh({ logDir }), [], (act) => {
    process.stdout.write(`started ${act.node}\n`)
    return true
  })
  const wf = Workflow.fromObject(WORKFLOW)
  const options = { input: INPUT, seed: SEED }
  if (mode === 'interrupt') {
    const stop = new AbortController()
    process.once('SIGINT', () => stop.abort('SIGINT'))
    options.interrupt = stop.signal
  } else if (mode === 'cancel') {
    const cancel = new AbortController()
    process.once('SIGINT', () => cancel.abort('SIGINT'))
    options.signal = cancel.signal
  } else if (mode !== 'default') {
    throw new Error(`unknown mode ${mode}`)
  }
  try {
    const r = await mesh.run(wf, options)
    process.stdout.write(`${JSON.stringify({ status: r.status, error: r.error })}\n`)
  } catch (e) {
    if (!(e instanceof RunInterruptedError)) throw e
    process.stdout.write(`${JSON.stringify({ name: e.name, runId: e.runId, logPath: e.logPath, reason: e.reason, message: e.message })}\n`)
    process.exitCode = 130
  }
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e && e.stack}\n`)
    process.exit(1)
  })
}

module.exports = { WORKFLOW, INPUT, SEED, agents }
