// One workflow written four ways: a plain object, JSON text, a file, and the builder.
//
// Each is validated by the core; all four are the same workflow, so they have the same hash.
// An invalid definition throws InvalidWorkflowError naming the node and the field.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { InvalidWorkflowError, Workflow } from '../../../agentmesh-node/index.js'

const spec = {
  name: 'publish',
  maxSteps: 50,
  nodes: [
    { id: 'draft', type: 'agent', agent: 'writer' },
    { id: 'check', type: 'tool', tool: 'linter', after: ['draft'],
      timeoutMs: 5000, retry: { maxAttempts: 3, backoffMs: 100, backoffMultiplier: 2 } },
    { id: 'approve', type: 'human', prompt: 'Publish?', after: ['check'] },
    { id: 'route', type: 'branch', after: ['approve'],
      cases: [{ when: { path: '/outputs/approve/approved', eq: true }, goto: 'publish' }] },
    { id: 'publish', type: 'agent', agent: 'publisher' },
  ],
}

const fromObject = Workflow.fromObject(spec)
const fromJson = Workflow.fromJson(JSON.stringify(spec, null, 2))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
let fromFile
try {
  const file = path.join(tmp, 'publish.json')
  fs.writeFileSync(file, JSON.stringify(spec))
  fromFile = Workflow.fromFile(file)
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}

const built = Workflow.builder('publish')
  .agent('draft', 'writer')
  .tool('check', 'linter', { after: ['draft'], timeoutMs: 5000,
    retry: { maxAttempts: 3, backoffMs: 100, backoffMultiplier: 2 } })
  .human('approve', { prompt: 'Publish?', after: ['check'] })
  .branch('route', { after: ['approve'],
    cases: [{ when: { path: '/outputs/approve/approved', eq: true }, goto: 'publish' }] })
  .agent('publish', 'publisher')
  .maxSteps(50)
  .build()

console.log(built)
console.log('nodes:  ', built.nodeIds())
console.log('agents: ', built.agentNames(), 'tools:', built.toolNames())
const hashes = new Set([fromObject, fromJson, fromFile, built].map((w) => w.hash))
console.log('same hash, four ways:', hashes.size === 1)
console.log('canonical:', built.toJson().slice(0, 72), '...')

try {
  Workflow.fromObject({ name: 'w', nodes: [{ id: 'a', type: 'agent', agent: 'x', after: ['zz'] }] })
} catch (e) {
  if (!(e instanceof InvalidWorkflowError)) throw e
  console.log(e.code, e.node, e.field)
  console.log(e.message)
}
