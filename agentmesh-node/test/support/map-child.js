'use strict'
// A child process for test/map.test.js: runs a planner → map(researcher) → writer workflow and
// exits abruptly (process.exit, nothing closed) from inside one map item, so the parent can
// resume the log and check that the items finished before the crash are not run again.
//
// argv[2]: JSON {logDir, runId, workflow (JSON text), input, counter, exitAt}
// Every planner, researcher and writer execution appends a line to `counter` first
// (`plan`, `research <index>`, `write`); the researcher of item `exitAt` exits the process
// right after writing its line.

const fs = require('node:fs')
const am = require('../..')

/** The agents of the crash test, shared with the parent's resume. */
function register(mesh, counter, exitAt) {
  const note = (line) => fs.appendFileSync(counter, `${line}\n`)
  return mesh
    .agent('planner', (act) => {
      note('plan')
      return { questions: Array.from({ length: act.input.n }, (_, i) => ({ id: `q${i}`, text: `question ${i}` })) }
    })
    .agent('researcher', async (act) => {
      note(`research ${act.item.index}`)
      if (act.item.index === exitAt) process.exit(9)
      await new Promise((resolve) => setImmediate(resolve))
      return { key: act.item.key, answer: `answer to ${act.item.value.text}` }
    })
    .agent('writer', (act) => {
      note('write')
      return { answers: act.deps.research.map((r) => r.answer) }
    })
}

async function main() {
  const args = JSON.parse(process.argv[2])
  const mesh = register(new am.Mesh({ logDir: args.logDir, fsync: 'always' }), args.counter, args.exitAt)
  const r = await mesh.run(am.Workflow.fromJson(args.workflow), { input: args.input, runId: args.runId })
  process.stdout.write(`RESULT ${JSON.stringify({ status: r.status })}\n`)
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e.stack}\n`)
    process.exit(1)
  })
}

module.exports = { register }
