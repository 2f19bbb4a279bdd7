// The package from ES modules: named imports, the namespace and the default export are the
// very objects `require` gives, and a run works from an ES module.
//
// Node's ESM loader finds the names of a CommonJS module with cjs-module-lexer, which reads
// `module.exports = { a, b: c }` only while the values are plain identifiers: it stops at the
// first `name: object.member` value. The static imports below are the names it finds today;
// one test imports every export by name.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'

import * as am from '../index.js'
import pkg, { Mesh, Workflow, WorkflowBuilder, ActivationError, Output, RawJson, RunResult } from '../index.js'

const require = createRequire(import.meta.url)
const cjs = require('../index.js')
const INDEX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'index.js')

const made = []
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})

test('named imports are the objects require() gives', () => {
  const named = { Mesh, Workflow, WorkflowBuilder, ActivationError, Output, RawJson, RunResult }
  for (const [name, value] of Object.entries(named)) {
    assert.equal(typeof value, 'function', name)
    assert.equal(value, cjs[name], name)
  }
})

test('the default export is module.exports; namespace members are require()\'s', () => {
  assert.equal(pkg, cjs)
  assert.equal(am.default, cjs)
  assert.equal(am.Mesh, cjs.Mesh)
  assert.equal(am.Workflow, cjs.Workflow)
  for (const name of Object.keys(am)) {
    if (name !== 'default') assert.equal(am[name], cjs[name], name)
  }
  // Every error class is reachable (through the default export) under its own name.
  for (const code of pkg.ERROR_CODES) {
    const cls = pkg.errorClass(code)
    assert.equal(pkg[cls.name], cls, code)
    assert.ok(new cls('x') instanceof pkg.AgentMeshError)
  }
})

test('every export is a named export: import { AgentMeshError, replay, ... } from the package', async () => {
  const names = Object.keys(cjs).sort()
  assert.ok(names.length >= 30, `only ${names.length} exports`)
  assert.deepEqual(Object.keys(am).filter((k) => k !== 'default').sort(), names)
  // A module importing every name statically links (a missing name is a SyntaxError).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-esm-'))
  made.push(dir)
  const file = path.join(dir, 'all.mjs')
  fs.writeFileSync(file, `import { ${names.join(', ')} } from ${JSON.stringify(pathToFileURL(INDEX).href)}\nexport default { ${names.join(', ')} }\n`)
  const all = (await import(pathToFileURL(file).href)).default
  for (const name of names) assert.equal(all[name], cjs[name], name)
})

test('a run driven from an ES module, errors checked across the two module systems', async () => {
  const mesh = new Mesh()
  mesh.agent('echo', async (act) => ({ echo: act.input }))
  const w = Workflow.fromObject({ name: 'esm', nodes: [{ id: 'e', type: 'agent', agent: 'echo' }] })
  const r = await mesh.run(w, { input: 'hi', runId: 'esm' })
  assert.ok(r instanceof cjs.RunResult)
  assert.equal(r.status, 'completed')
  assert.deepEqual(r.output, { e: { echo: 'hi' } })
  const sync = new cjs.Mesh().agent('echo', (act) => ({ echo: act.input })).runSync(w, { input: 'hi', runId: 'esm' })
  assert.ok(sync.canonical().equals(r.canonical()))
  assert.equal(sync.fingerprint, r.fingerprint)
  // An error thrown by the CommonJS side is an instance of the class seen from ESM.
  assert.throws(
    () => new cjs.Mesh({ fsync: 'sometimes' }),
    (e) => e instanceof pkg.InvalidArgumentError && e instanceof am.default.AgentMeshError && e.code === 'INVALID_ARGUMENT',
  )
  mesh.agent('echo', () => {
    throw new ActivationError('Nope', 'refused', { retryable: false })
  })
  await assert.rejects(
    mesh.run(w, { runId: 'esm2' }),
    (e) => e instanceof pkg.AgentFailedError && e.cause instanceof cjs.ActivationError && e.result.status === 'failed',
  )
})
