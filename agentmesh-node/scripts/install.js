#!/usr/bin/env node
// Builds the native addon from source and puts it where the loader (native.js) looks for it:
// `agentmesh.<platform>-<arch>[-<abi>].node` next to native.js.
//
// Zero npm dependencies on purpose: `npm install ./agentmesh-node` runs this `install` script
// before (and without) installing the package's devDependencies, so the napi CLI is not
// available here. It needs Rust (`cargo`) and the AgentMesh repository around this folder.
//
// As npm's `install` script it does nothing when
// - the addon is already there (set AGENTMESH_REBUILD=1 to rebuild it, e.g. after a pull), or
// - npm runs in this folder itself (`npm install` while developing the package: build with
//   `npm run build:debug` instead), or
// - AGENTMESH_SKIP_BUILD=1.
//
// Run by hand: `node scripts/install.js [--profile debug|release] [--locked] [--force]`
// (`--force` ignores the three guards; scripts/ci-build.sh uses `--profile debug --force`).
// AGENTMESH_BUILD_PROFILE=debug selects a debug build for `npm install` too.
'use strict'

const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const pkgDir = path.resolve(__dirname, '..')
const crate = 'agentmesh-node'

/** The `<platform>-<arch>[-<abi>]` part of the file name the generated loader requires. */
function platformArchAbi() {
  const { platform, arch } = process
  switch (platform) {
    case 'linux':
      return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
    case 'win32':
      return `win32-${arch}-msvc`
    case 'darwin':
    case 'freebsd':
      return `${platform}-${arch}`
    default:
      return `${platform}-${arch}`
  }
}

/** Same checks, in the same order, as the loader's `isMusl()`. */
function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf-8').includes('musl')
  } catch {
    // fall through to the process report
  }
  const report = process.report && process.report.getReport ? process.report.getReport() : null
  if (!report) return false
  if (report.header && report.header.glibcVersionRuntime) return false
  return Array.isArray(report.sharedObjects) && report.sharedObjects.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'))
}

/** What cargo names the cdylib on this platform. */
function libraryName() {
  const base = crate.replace(/-/g, '_')
  if (process.platform === 'win32') return `${base}.dll`
  if (process.platform === 'darwin') return `lib${base}.dylib`
  return `lib${base}.so`
}

function addonPath() {
  return path.join(pkgDir, `agentmesh.${platformArchAbi()}.node`)
}

function parseArgs(argv) {
  const opts = { profile: process.env.AGENTMESH_BUILD_PROFILE || 'release', locked: false, force: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--force') opts.force = true
    else if (a === '--locked') opts.locked = true
    else if (a === '--profile') opts.profile = argv[++i]
    else throw new Error(`unknown argument ${a}`)
  }
  if (opts.profile !== 'release' && opts.profile !== 'debug') {
    throw new Error(`--profile must be debug or release, not ${opts.profile}`)
  }
  return opts
}

/** Why the npm `install` hook should not build, or null. */
function skipReason(addon) {
  if (process.env.AGENTMESH_SKIP_BUILD === '1') return 'AGENTMESH_SKIP_BUILD=1'
  if (process.env.INIT_CWD && path.resolve(process.env.INIT_CWD) === pkgDir) {
    return 'npm runs in the package folder itself (build with `npm run build:debug`)'
  }
  if (fs.existsSync(addon) && process.env.AGENTMESH_REBUILD !== '1') {
    return `${path.basename(addon)} is already built (AGENTMESH_REBUILD=1 rebuilds it)`
  }
  return null
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: pkgDir, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf-8' })
  if (r.error && r.error.code === 'ENOENT') {
    throw new Error(`'${cmd}' was not found: building agentmesh needs Rust (https://rustup.rs)`)
  }
  if (r.error) throw r.error
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status})`)
  return r.stdout
}

function main() {
  const opts = parseArgs(process.argv.slice(2))
  const addon = addonPath()
  if (!opts.force) {
    const why = skipReason(addon)
    if (why) {
      console.log(`agentmesh: not building the native addon: ${why}`)
      return
    }
  }
  const manifest = path.join(pkgDir, 'Cargo.toml')
  const metadata = JSON.parse(run('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest]))
  const args = ['build', '-p', crate, '--manifest-path', manifest]
  if (opts.profile === 'release') args.push('--release')
  if (opts.locked) args.push('--locked')
  console.log(`agentmesh: cargo ${args.join(' ')}`)
  const started = Date.now()
  process.stdout.write(run('cargo', args))
  const built = path.join(metadata.target_directory, opts.profile, libraryName())
  // Copy to a temporary name, then rename: a process loading the addon meanwhile never sees
  // a half-written file.
  const tmp = `${addon}.${process.pid}.tmp`
  fs.copyFileSync(built, tmp)
  fs.renameSync(tmp, addon)
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`agentmesh: built ${path.relative(process.cwd(), addon) || addon} (${opts.profile}, ${secs} s)`)
}

try {
  main()
} catch (e) {
  console.error(`agentmesh: ${e.message}`)
  process.exit(1)
}
