'use strict'
// What the package's install script (scripts/install.js) does when npm runs it: it reuses an
// addon only when its build stamp says it is the build asked for and newer than the Rust
// sources, and otherwise says why it builds (a debug addon left by a test build among them).

const { test, describe, afterEach } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { tempDirs } = require('./support/helpers')
const { decide } = require('../scripts/install.js')

const tmpdir = tempDirs('install')
const ENV = ['AGENTMESH_SKIP_BUILD', 'AGENTMESH_REBUILD', 'INIT_CWD']
const saved = Object.fromEntries(ENV.map((k) => [k, process.env[k]]))

afterEach(() => {
  for (const k of ENV) {
    if (saved[k] === undefined) delete process.env[k]
    else process.env[k] = saved[k]
  }
})

/** An addon file in a fresh directory, with a stamp when `stamp` is given. */
function addon(stamp) {
  const file = path.join(tmpdir(), 'agentmesh.test.node')
  fs.writeFileSync(file, 'not really an addon')
  if (stamp !== undefined) fs.writeFileSync(`${file}.build.json`, JSON.stringify(stamp))
  return file
}

describe('scripts/install.js as the npm install hook', () => {
  for (const k of ENV) delete process.env[k]
  const later = Date.now() + 3_600_000 // newer than any source

  test('no addon, or one without a stamp: it builds', () => {
    assert.deepEqual(decide(path.join(tmpdir(), 'none.node'), 'release'), { build: 'no addon yet' })
    assert.deepEqual(decide(addon(), 'release'), { build: 'agentmesh.test.node has no build stamp (unknown build)' })
  })

  test('a debug addon left by a test build is never reused for a release install', () => {
    const d = decide(addon({ profile: 'debug', builtAt: later }), 'release')
    assert.match(d.build, /^agentmesh\.test\.node is a debug build of \d{4}-\d\d-\d\d \d\d:\d\d UTC, left by a test build \(scripts\/ci-build\.sh\), not a release build$/)
    // Asked for a debug build, it is the right one.
    assert.match(decide(addon({ profile: 'debug', builtAt: later }), 'debug').reuse, /is the debug build of .* newer than the sources/)
  })

  test('a release addon newer than the sources is reused (and says which); older ones are rebuilt', () => {
    const d = decide(addon({ profile: 'release', builtAt: later }), 'release')
    assert.match(d.reuse, /^agentmesh\.test\.node is the release build of .* UTC, newer than the sources \(AGENTMESH_REBUILD=1 rebuilds it\)$/)
    assert.match(decide(addon({ profile: 'release', builtAt: 0 }), 'release').build, /^the Rust sources changed after the release build of 1970-01-01 00:00 UTC$/)
  })

  test('AGENTMESH_REBUILD=1 rebuilds; AGENTMESH_SKIP_BUILD=1 and npm in the package folder skip', () => {
    const current = addon({ profile: 'release', builtAt: later })
    process.env.AGENTMESH_REBUILD = '1'
    assert.deepEqual(decide(current, 'release'), { build: 'AGENTMESH_REBUILD=1' })
    process.env.AGENTMESH_SKIP_BUILD = '1'
    assert.deepEqual(decide(current, 'release'), { skip: 'AGENTMESH_SKIP_BUILD=1' })
    delete process.env.AGENTMESH_SKIP_BUILD
    process.env.INIT_CWD = path.join(__dirname, '..')
    assert.match(decide(current, 'release').skip, /npm runs in the package folder itself/)
  })
})
