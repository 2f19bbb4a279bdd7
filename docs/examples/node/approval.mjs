// Human approval: the run stops "waiting" at a human node; another process resumes it with
// the decision. Run without arguments; it starts the second process itself.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { InvalidArgumentError, Mesh, Workflow, verifyLog } from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'approval', nodes: [
  { id: 'draft', type: 'agent', agent: 'writer' },
  { id: 'approve', type: 'human', prompt: 'Publish this draft?', after: ['draft'] },
  { id: 'decide', type: 'branch', after: ['approve'],
    cases: [{ when: { path: '/outputs/approve/approved', eq: true }, goto: 'publish' }],
    default: 'archive' },
  { id: 'publish', type: 'tool', tool: 'cms', after: ['approve'] },
  { id: 'archive', type: 'tool', tool: 'cms', after: ['approve'] },
] })

/** Every process that runs or resumes the workflow registers the same agents and tools. */
function makeMesh(logDir = null) {
  return new Mesh({ logDir })
    .agent('writer', (act) => ({ text: `Release notes for ${act.input.version}` }))
    .tool('cms', (act) => ({ done: act.node, by: act.deps.approve.by ?? null }))
}

if (process.argv[2] === '--approve') {
  // The second process: knows only the log path and the run id.
  const [logPath, runId] = process.argv.slice(3)
  const done = await makeMesh().resume(logPath, {
    approvals: { approve: { approved: true, by: 'dana' } },
    runId, // refuse a log of another run
  })
  console.log(`  second process: ${done.status} ${JSON.stringify(done.output)}`)
  process.exit(0)
}

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const first = await makeMesh(logs).run(wf, { input: { version: '0.1' }, runId: 'release-0.1' })
  console.log(first.status, first.waiting.map((a) => [a.node, a.prompt]))
  // first.logPath is on disk, the writer lock released: this process could exit here.

  try { // an approval must name a waiting human node; nothing is recorded otherwise
    await makeMesh().resume(first.logPath, { approvals: { aprove: true } })
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e
    console.log(e.message)
  }

  execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--approve', first.logPath, first.runId], { stdio: 'inherit' })
  console.log('finished:', (await verifyLog(first.logPath)).finished)
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
