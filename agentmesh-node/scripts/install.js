#!/usr/bin/env node
// Builds the native addon from source and puts it where the loader (native.js) looks for it:
// `agentmesh.<platform>-<arch>[-<abi>].node` next to native.js.
//
// Zero npm dependencies on purpose: `npm install ./agentmesh-node` runs this `install` script
// before (and without) installing the package's devDependencies, so the napi CLI is not
// available here. It needs Rust (`cargo`) and the AgentMesh repository around this folder.
//
// Every build writes a stamp next to the addon (`<addon>.build.json`: profile, time). As npm's
// `install` script it reuses an addon only when its stamp says it is a build of the profile
// asked for (release unless AGENTMESH_BUILD_PROFILE=debug) made after the last change to the
// Rust sources; it says so, naming the build. Anything else — a debug addon left by a test
// build (scripts/ci-build.sh), an addon without a stamp, sources changed since (a pull) — is
// rebuilt, saying why. It does nothing when
// - npm runs in this folder itself (`npm install` while developing the package: build with
//   `npm run build:debug` instead), or
// - AGENTMESH_SKIP_BUILD=1.
// AGENTMESH_REBUILD=1 rebuilds in any case.
//
// npm shows an install script's output only with `--foreground-scripts`; otherwise the start
// and end of a build are also written to the terminal (/dev/tty), so that a build of about a
// minute is never silent.
//
// Run by hand: `node scripts/install.js [--profile debug|release] [--locked] [--force]`
// (`--force` ignores the guards; scripts/ci-build.sh uses `--profile debug --force`).
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

/** What built the addon: `{profile, builtAt}` (ms), or null (no stamp, or unreadable). */
function readStamp(addon) {
  try {
    const stamp = JSON.parse(fs.readFileSync(`${addon}.build.json`, 'utf-8'))
    return typeof stamp.profile === 'string' && typeof stamp.builtAt === 'number' ? stamp : null
  } catch {
    return null
  }
}

function writeStamp(addon, profile, builtAt) {
  fs.writeFileSync(`${addon}.build.json`, `${JSON.stringify({ profile, builtAt })}\n`)
}

/** The newest modification time (ms) of the Rust sources the addon is built from. */
function newestSource() {
  const repo = path.resolve(pkgDir, '..')
  let newest = 0
  const visit = (p) => {
    let st
    try {
      st = fs.statSync(p)
    } catch {
      return
    }
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p)) visit(path.join(p, name))
    } else if (/\.(rs|toml|lock)$/.test(p)) {
      newest = Math.max(newest, st.mtimeMs)
    }
  }
  for (const p of ['Cargo.toml', 'Cargo.lock', 'agentmesh-core', 'agentmesh-node/src', 'agentmesh-node/Cargo.toml', 'agentmesh-node/build.rs']) {
    visit(path.join(repo, p))
  }
  return newest
}

/** Where and when, for messages: `release build of 2026-12-01 10:22`. */
function describeBuild(stamp) {
  const at = new Date(stamp.builtAt).toISOString().slice(0, 16).replace('T', ' ')
  return `${stamp.profile} build of ${at} UTC`
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

/**
 * What the npm `install` hook does: `{skip: why}` (no build), `{reuse: why}` (the addon there
 * is the build asked for, current) or `{build: why}`.
 */
function decide(addon, profile) {
  if (process.env.AGENTMESH_SKIP_BUILD === '1') return { skip: 'AGENTMESH_SKIP_BUILD=1' }
  if (process.env.INIT_CWD && path.resolve(process.env.INIT_CWD) === pkgDir) {
    return { skip: 'npm runs in the package folder itself (build with `npm run build:debug`)' }
  }
  if (!fs.existsSync(addon)) return { build: 'no addon yet' }
  if (process.env.AGENTMESH_REBUILD === '1') return { build: 'AGENTMESH_REBUILD=1' }
  // A packed copy (npm pack) has its addon and no sources to build one from.
  if (!fs.existsSync(path.join(pkgDir, '..', 'Cargo.toml'))) return { reuse: `${path.basename(addon)} (no sources to build from here)` }
  const stamp = readStamp(addon)
  const name = path.basename(addon)
  if (stamp === null) return { build: `${name} has no build stamp (unknown build)` }
  if (stamp.profile !== profile) {
    const left = stamp.profile === 'debug' ? ', left by a test build (scripts/ci-build.sh)' : ''
    return { build: `${name} is a ${describeBuild(stamp)}${left}, not a ${profile} build` }
  }
  if (newestSource() > stamp.builtAt) return { build: `the Rust sources changed after the ${describeBuild(stamp)}` }
  return { reuse: `${name} is the ${describeBuild(stamp)}, newer than the sources (AGENTMESH_REBUILD=1 rebuilds it)` }
}

/**
 * Say `text` where the user sees it: stdout (shown by npm only with --foreground-scripts or on
 * failure), and the terminal too when npm hides the script's output.
 */
function say(text) {
  console.log(text)
  if (process.env.npm_lifecycle_event !== 'install' || process.env.npm_config_foreground_scripts === 'true') return
  try {
    const tty = fs.openSync('/dev/tty', 'w')
    try {
      fs.writeSync(tty, `${text}\n`)
    } finally {
      fs.closeSync(tty)
    }
  } catch {
    // no terminal (CI, Windows): npm's own log is all there is
  }
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
  let why = '--force'
  if (!opts.force) {
    const d = decide(addon, opts.profile)
    if (d.skip) {
      console.log(`agentmesh: not building the native addon: ${d.skip}`)
      return
    }
    if (d.reuse) {
      say(`agentmesh: using the native addon already built: ${d.reuse}`)
      return
    }
    why = d.build
  }
  const manifest = path.join(pkgDir, 'Cargo.toml')
  const metadata = JSON.parse(run('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest]))
  const args = ['build', '-p', crate, '--manifest-path', manifest]
  if (opts.profile === 'release') args.push('--release')
  if (opts.locked) args.push('--locked')
  say(
    `agentmesh: building the native addon from source (${why}): cargo ${args.join(' ')}\n` +
      `agentmesh: it takes a minute or two on 2 cores when ${metadata.target_directory} is cold, seconds when it is warm`,
  )
  const started = Date.now()
  process.stdout.write(run('cargo', args))
  const built = path.join(metadata.target_directory, opts.profile, libraryName())
  // Copy to a temporary name, then rename: a process loading the addon meanwhile never sees
  // a half-written file. The stamp records the build's start: a source saved during the
  // build is newer, so the next install rebuilds.
  const tmp = `${addon}.${process.pid}.tmp`
  fs.copyFileSync(built, tmp)
  fs.renameSync(tmp, addon)
  writeStamp(addon, opts.profile, started)
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  say(`agentmesh: built ${path.relative(process.cwd(), addon) || addon} (${opts.profile}, ${secs} s)`)
}

if (require.main === module) {
  try {
    main()
  } catch (e) {
    console.error(`agentmesh: ${e.message}`)
    process.exit(1)
  }
}

// For test/install.test.js.
module.exports = { decide, addonPath }
