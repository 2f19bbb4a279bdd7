'use strict'
// A log deleted, renamed or replaced while its run writes it (issue 8, defect 19, and defect 4
// for what follows): the run must not report `completed` with its events in no log at that
// path. The driver rejects with AgentMeshIOError naming the path, and the native run refuses
// every later call with that error (it never runs ahead of its log).

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const native = require('../native.js')
const { poll, outstanding, C } = require('./support/native')
const { tempDirs, wf, agentNode, thrown, rejected, assertError } = require('./support/helpers')

const { Mesh, AgentMeshIOError } = am
const tmpdir = tempDirs('identity')

const TAMPER = {
  deletes: (log) => fs.unlinkSync(log),
  renames: (log) => fs.renameSync(log, `${log}.moved`),
  replaces: (log) => {
    fs.writeFileSync(`${log}.new`, 'not the log\n')
    fs.renameSync(`${log}.new`, log)
  },
}
const WHY = { deletes: 'was deleted or renamed', renames: 'was deleted or renamed', replaces: 'was replaced by another file' }

describe('an agent that tampers with its own log', () => {
  for (const [how, tamper] of Object.entries(TAMPER)) {
    for (const fsync of ['always', 'batch', 'never']) {
      for (const mode of ['run', 'runSync']) {
        test(`${mode}, fsync '${fsync}': an agent that ${how} the log: AgentMeshIOError naming the path, never completed`, async () => {
          const dir = tmpdir()
          const log = path.join(dir, 'r.jsonl')
          const calls = []
          const mesh = new Mesh({ logDir: dir, fsync })
          const agent = (act) => {
            calls.push(act.node)
            if (act.node === 'first') tamper(log)
            return act.node
          }
          mesh.agent('a', mode === 'run' ? async (act) => agent(act) : agent)
          const w = wf([agentNode('first', 'a'), agentNode('second', 'a', { after: ['first'] })])
          const e = mode === 'run' ? await rejected(mesh.run(w, { runId: 'r' })) : thrown(() => mesh.runSync(w, { runId: 'r' }))
          assertError(e, AgentMeshIOError, 'IO')
          assert.ok(e.message.includes(`the log ${log} ${WHY[how]} while the run was writing it`), e.message)
          // The file left at the path, if any, is not a completed run.
          if (how === 'replaces') assert.equal(fs.readFileSync(log, 'utf8'), 'not the log\n')
          else assert.equal(fs.existsSync(log), false)
        })
      }
    }
  }

  test('the native run then refuses every call with that error', () => {
    const dir = tmpdir()
    const w = native.NativeWorkflow.fromJson(JSON.stringify({ name: 't', nodes: [{ id: 'a', type: 'agent', agent: 'x' }] }))
    const run = native.NativeRun.start(w, null, { logDir: dir, runId: 'n', fsync: 'never' })
    const [act] = poll(run)
    fs.unlinkSync(run.logPath())
    const e = thrown(() => run.completeAll([C.ok(act, 1)]))
    assert.equal(e.code, 'IO')
    assert.match(e.message, /was deleted or renamed while the run was writing it/)
    for (const call of [() => run.status(), () => run.outcome(), () => poll(run), () => outstanding(run), () => run.cancel('x')]) {
      const again = thrown(call)
      assert.equal(again.code, 'IO')
      assert.ok(again.message.includes(`the log ${path.join(dir, 'n.jsonl')} was deleted or renamed`), again.message)
    }
    run.close()
  })
})
