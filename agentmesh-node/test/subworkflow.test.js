'use strict'
// Sub-workflows through the public API: a workflow node's child runs under prefixed node ids,
// sees the node's input as its input, waits for a person by the prefixed id, and hands its
// terminal outputs up as the node's output.

const { test } = require('node:test')
const assert = require('node:assert/strict')

const am = require('..')
const { tempDirs } = require('./support/helpers')

const { Mesh, Workflow, InvalidWorkflowError } = am
const tmpdir = tempDirs('subworkflow')

const CHILD = { name: 'review', nodes: [
  { id: 'draft', type: 'agent', agent: 'writer' },
  { id: 'approve', type: 'human', prompt: 'ok?', after: ['draft'] },
  { id: 'polish', type: 'agent', agent: 'writer', after: ['approve'] },
] }

const parent = () => Workflow.fromObject({ name: 'parent', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner' },
  { id: 'review', type: 'workflow', after: ['plan'], input: '/outputs/plan', workflow: CHILD },
  { id: 'send', type: 'agent', agent: 'sender', after: ['review'] },
] })

function makeMesh(logDir, seen) {
  return new Mesh({ logDir })
    .agent('planner', () => ({ topic: 'maps' }))
    .agent('writer', (act) => {
      seen.push([act.node, act.input])
      return { text: `${act.node} on ${act.input.topic}` }
    })
    .agent('sender', (act) => act.deps.review)
}

test('a child runs under prefixed ids, waits by its prefixed id and hands its output up', async () => {
  const dir = tmpdir()
  const seen = []
  const wf = parent()
  assert.deepEqual(wf.nodeIds(), ['plan', 'review/draft', 'review/approve', 'review/polish', 'review', 'send'])
  let r = await makeMesh(dir, seen).run(wf, { runId: 'p' })
  assert.equal(r.status, 'waiting')
  assert.deepEqual(r.waiting.map((a) => a.node), ['review/approve'])
  r = await makeMesh(dir, seen).resume(r.logPath, { approvals: { 'review/approve': { ok: true } } })
  assert.equal(r.status, 'completed')
  assert.deepEqual(r.output, { send: { polish: { text: 'review/polish on maps' } } })
  assert.deepEqual(seen, [['review/draft', { topic: 'maps' }], ['review/polish', { topic: 'maps' }]])
  const types = am.readLogSync(r.logPath).map((e) => `${e.type} ${e.node}`)
  assert.ok(types.includes('workflowStarted review') && types.includes('workflowCompleted review'), types.join('\n'))
  assert.equal(am.replaySync(r.logPath).outcome.status, 'completed')
})

test("a child's errors name the workflow node", () => {
  const bad = { name: 'c', nodes: [{ id: 's', type: 'tool', tool: 't', after: ['zz'] }] }
  assert.throws(
    () => Workflow.fromObject({ name: 'w', nodes: [{ id: 'w', type: 'workflow', workflow: bad }] }),
    (e) => e instanceof InvalidWorkflowError && e.node === 'w' && e.field === 'workflow' &&
      e.message.includes("in workflow 'c': node 's', field 'after[0]': unknown node 'zz'"),
  )
})
