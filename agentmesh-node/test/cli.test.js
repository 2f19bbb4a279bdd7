'use strict'
// The `agentmesh` command from Node: the package's bin (bin/agentmesh.js) runs the Rust CLI
// linked into the addon, with the binary's output and exit codes; and the CLI never invents
// the work of a run this Node program hosts.
//
// The comparisons with the binary need it (`$AGENTMESH_CLI`, else
// <repo>/target/debug/agentmesh: `cargo build -p agentmesh-cli`); without it they skip, or
// fail when `$CI` is set.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const am = require('..')
const { tempDirs } = require('./support/helpers')

const REPO = path.resolve(__dirname, '..', '..')
const BIN = path.join(__dirname, '..', 'bin', 'agentmesh.js')
const CLI = process.env.AGENTMESH_CLI || path.join(REPO, 'target', 'debug', 'agentmesh')
const EXIT = { ok: 0, usage: 2, waiting: 3, io: 7, needsHost: 9 }

const tmpdir = tempDirs('cli')

function haveBinary(t) {
  try {
    fs.accessSync(CLI, fs.constants.X_OK)
    return true
  } catch {
    const why = `the agentmesh CLI is not at ${CLI}: run \`cargo build -p agentmesh-cli\` (or set AGENTMESH_CLI)`
    if (process.env.CI) assert.fail(why)
    t.skip(why)
    return false
  }
}

/** `node bin/agentmesh.js ARGS`. */
function bin(args) {
  return childProcess.spawnSync(process.execPath, [BIN, ...args.map(String)], { timeout: 60000 })
}

/** The Rust binary. */
function binary(args) {
  return childProcess.spawnSync(CLI, args.map(String), { timeout: 60000 })
}

/** Both ways: exit code, stdout and stderr identical. */
function same(args) {
  const ours = bin(args)
  const theirs = binary(args)
  assert.equal(ours.status, theirs.status, `exit of ${args.join(' ')}`)
  assert.ok(ours.stdout.equals(theirs.stdout), `stdout of ${args.join(' ')}:\n${ours.stdout}\n---\n${theirs.stdout}`)
  assert.ok(ours.stderr.equals(theirs.stderr), `stderr of ${args.join(' ')}:\n${ours.stderr}\n---\n${theirs.stderr}`)
  return ours
}

const GATE = {
  name: 'gate',
  nodes: [
    { id: 'write', type: 'agent', agent: 'writer' },
    { id: 'approve', type: 'human', prompt: 'Publish?', after: ['write'] },
    { id: 'publish', type: 'tool', tool: 'save', after: ['approve', 'write'] },
  ],
}

function gateMesh(logDir, calls) {
  return new am.Mesh({ logDir })
    .agent('writer', (act) => {
      calls.push(act.node)
      return { text: 'written in Node' }
    })
    .tool('save', (act) => {
      calls.push(act.node)
      return { saved: act.deps.write.text, approvedBy: act.deps.approve.by }
    })
}

const isPlaceholder = (o) =>
  o !== null && typeof o === 'object' && Object.keys(o).sort().join(',') === 'attempt,node,visit'

describe('bin/agentmesh.js is the binary', () => {
  test('version, help and usage errors', (t) => {
    if (!haveBinary(t)) return
    const version = same(['--version'])
    assert.equal(version.status, EXIT.ok)
    assert.match(version.stdout.toString(), /^agentmesh \d+\.\d+\.\d+\n$/)
    assert.match(same(['resume', '--help']).stdout.toString(), /9 {3}the run needs its host program/)
    const bad = same(['inspect', '--no-such-flag', 'x.jsonl'])
    assert.equal(bad.status, EXIT.usage)
    assert.match(bad.stderr.toString(), /--no-such-flag/)
    assert.equal(same(['verify', path.join(tmpdir(), 'missing.jsonl')]).status, EXIT.io)
  })

  test('commands on a Node log', async (t) => {
    if (!haveBinary(t)) return
    const dir = tmpdir()
    const r = await gateMesh(dir, []).run(am.Workflow.fromObject(GATE), { runId: 'same' })
    assert.equal(r.status, 'waiting')
    for (const args of [['verify', '--check', r.logPath], ['inspect', r.logPath], ['inspect', '--json', r.logPath],
      ['show', r.logPath, 'write', '--json'], ['runs', dir], ['canonical', r.logPath]]) {
      assert.equal(same(args).status, EXIT.ok, args.join(' '))
    }
    const report = JSON.parse(bin(['verify', '--check', '--json', r.logPath]).stdout)
    assert.deepEqual([report.status, report.waitingFor, report.host], ['waiting', ['approve'], 'node'])
  })

  test('package.json names the bin', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'))
    assert.equal(pkg.bin.agentmesh, 'bin/agentmesh.js')
    assert.ok(pkg.files.includes('bin/agentmesh.js'))
    assert.match(fs.readFileSync(BIN, 'utf8'), /^#!\/usr\/bin\/env node\n/)
  })

  test('Ctrl-C stops inspect --follow like it stops the binary', { skip: process.platform === 'win32' }, async () => {
    // A run whose process died mid-step never ends: only Ctrl-C stops following it.
    const dir = tmpdir()
    const crash = `
const am = require(${JSON.stringify(path.join(__dirname, '..'))})
new am.Mesh({ logDir: process.argv[1] }).agent('writer', () => process.exit(3)).tool('save', () => ({}))
  .run(am.Workflow.fromObject(${JSON.stringify(GATE)}), { runId: 'dead' })
`
    assert.equal(childProcess.spawnSync(process.execPath, ['-e', crash, dir]).status, 3)
    const log = path.join(dir, 'dead.jsonl')
    assert.equal(JSON.parse(bin(['verify', '--check', '--json', log]).stdout).status, 'crashed')
    const follow = childProcess.spawn(process.execPath, [BIN, 'inspect', '--follow', log])
    let out = ''
    const ended = new Promise((resolve) => follow.on('exit', (code, signal) => resolve({ code, signal })))
    await new Promise((resolve) => {
      follow.stdout.on('data', (chunk) => {
        out += chunk
        if (out.startsWith('run ')) resolve() // the timeline is out: it is following
      })
    })
    follow.kill('SIGINT')
    const { code, signal } = await ended
    assert.deepEqual([code, signal], [null, 'SIGINT'])
  })
})

describe('the CLI never invents a Node program\'s work', () => {
  for (const how of ['binary', 'bin']) {
    test(`a Node run approved from the CLI (${how}) is finished by Node`, async (t) => {
      if (how === 'binary' && !haveBinary(t)) return
      const run = how === 'binary' ? binary : bin
      const dir = tmpdir()
      const calls = []
      const r = await gateMesh(dir, calls).run(am.Workflow.fromObject(GATE), { runId: 'gate' })
      assert.equal(r.status, 'waiting')
      assert.equal(am.readHeader(r.logPath).meta.host, 'node')

      const out = run(['resume', r.logPath, '--approve', 'approve={"approved":true,"by":"ops"}'])
      const text = out.stdout.toString()
      assert.equal(out.status, EXIT.needsHost, text + out.stderr)
      assert.match(text, /^needs {8}publish: tool save$/m)
      assert.ok(text.includes('this run was started by a node program'), text)
      assert.ok(text.includes(`await mesh.resume(${JSON.stringify(r.logPath)})   (Node)`), text)
      const types = am.readLogSync(r.logPath).map((e) => e.type)
      assert.ok(types.includes('humanResolved') && types.includes('toolScheduled') && !types.includes('toolCompleted'), types.join(' '))

      // Node resumes: its own tool runs, with the approval the CLI recorded.
      const done = await gateMesh(dir, calls).resume(r.logPath)
      assert.equal(done.status, 'completed')
      assert.deepEqual(calls, ['write', 'publish'])
      assert.deepEqual(done.output, { publish: { saved: 'written in Node', approvedBy: 'ops' } })
      const outputs = am.readLogSync(r.logPath).filter((e) => 'output' in e.data).map((e) => e.data.output)
      assert.ok(!outputs.some(isPlaceholder), JSON.stringify(outputs))
      assert.equal((await am.replay(r.logPath)).outcome.status, 'completed')
    })
  }
})
