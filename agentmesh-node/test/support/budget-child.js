'use strict'
// A child process for test/budgets.test.js: starts a run whose budget reserves a call, then
// hangs with the call started and never answered, so the parent can SIGKILL it between the
// reservation and the settlement and resume the run in its own process.
//
// argv[2]: JSON {logDir, runId, marker, prices, workflow, ask}. The agent starts one LLM call
// with `ask`, writes `<live> <maxTokens>` to `marker` once `callStarted` is durable (fsync
// `always`), and never returns.

const fs = require('node:fs')
const am = require('../..')

const args = JSON.parse(process.argv[2])

async function main() {
  const mesh = new am.Mesh({ logDir: args.logDir, fsync: 'always', prices: args.prices })
  mesh.agent('worker', (act) => {
    const t = act.callStart('llm', 'llm', { n: 1 }, { ask: args.ask })
    fs.writeFileSync(args.marker, `${t.live} ${t.maxTokens}\n`)
    setInterval(() => {}, 1000) // keeps the process alive: the parent kills it here
    return new Promise(() => {}) // never answers
  })
  await mesh.run(am.Workflow.fromObject(args.workflow), { runId: args.runId })
  process.stderr.write('child: the run ended, it should have hung\n')
  process.exit(1)
}

main().catch((e) => {
  process.stderr.write(`child failed: ${e && e.stack}\n`)
  process.exit(1)
})
