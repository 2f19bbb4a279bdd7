'use strict'
// Node binding benchmark: AgentMesh per-step and per-run cost next to the plain-Node floor.
//
//   npm install ./agentmesh-node              # release build of the addon
//   node benches/node/bench.js                # the table (about 15 s)
//   node benches/node/bench.js --quick        # few repetitions: a smoke test, not a figure
//   node benches/node/bench.js --json         # one JSON object per line
//   node benches/node/bench.js --only readlog # readLog of a ~136 MB log: events/s, peak RSS
//
// The floor is what a plain Node loop pays for the same work, in the same process: call the
// same no-op functions, JSON.stringify each result, append it to a file, one fsync at the end
// (per run for the small runs). Best of N repetitions after a warm-up; the median is printed
// next to it. A script, not a test: nothing asserts on time.

const childProcess = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const am = require(process.env.AGENTMESH_PACKAGE || path.resolve(__dirname, '..', '..', 'agentmesh-node'))

const noop = () => null
const noopAsync = async () => null
const small = (act) => ({ ok: true, visit: act.visit })
const smallAsync = async (act) => ({ ok: true, visit: act.visit })

function chain(n) {
  const b = am.Workflow.builder(`chain-${n}`)
  for (let i = 0; i < n; i++) b.agent(`n${i}`, 'noop', { after: i ? [`n${i - 1}`] : [] })
  return b.build()
}

function fanout(width) {
  const b = am.Workflow.builder(`fanout-${width}`)
  const ids = []
  for (let i = 0; i < width; i++) {
    b.agent(`w${i}`, 'noop')
    ids.push(`w${i}`)
  }
  return b.agent('join', 'noop', { after: ids }).build()
}

async function timed(fn, reps) {
  await fn()
  const times = []
  for (let i = 0; i < reps; i++) {
    const t = process.hrtime.bigint()
    await fn()
    times.push(Number(process.hrtime.bigint() - t) / 1e3) // µs
  }
  times.sort((a, b) => a - b)
  return [times[0], times[Math.floor(times.length / 2)]]
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-bench-'))
let dirs = 0
function fresh() {
  const d = path.join(root, String(++dirs))
  fs.mkdirSync(d)
  return d
}

function floorCalls(fn, count, file) {
  const fd = fs.openSync(file, 'a')
  const act = { visit: 1 }
  for (let i = 0; i < count; i++) fs.writeSync(fd, `${JSON.stringify(fn(act))}\n`)
  fs.fsyncSync(fd)
  fs.closeSync(fd)
}

function row(workload, host, log, per, [best, median], floor) {
  return {
    language: 'node',
    workload,
    host,
    log,
    per,
    best_us: +best.toFixed(2),
    median_us: +median.toFixed(2),
    floor_us: +floor.toFixed(2),
    x_floor: host === 'floor' ? null : +(best / floor).toFixed(2),
  }
}

/** One run per call on one long-lived Mesh; `kind`: sync (runSync, plain agents) or async. */
function runner(mode, kind, wf, fn) {
  const mesh = new am.Mesh({ logDir: mode === 'file' ? fresh() : null })
  mesh.agent('noop', fn)
  let n = 0
  return async () => {
    const runId = `r${++n}`
    const r = kind === 'async' ? await mesh.run(wf, { runId }) : mesh.runSync(wf, { runId })
    if (r.status !== 'completed') throw new Error(`run ${runId}: ${r.status}`)
  }
}

async function benchChain(reps, n) {
  const wf = chain(n)
  const rows = []
  const floor = await timed(() => floorCalls(noop, n, path.join(fresh(), 'floor.jsonl')), reps)
  const perStep = (t) => t.map((x) => x / n)
  rows.push(row('chain_1000', 'floor', 'file', 'step', perStep(floor), floor[0] / n))
  for (const mode of ['memory', 'file']) {
    for (const kind of ['sync', 'async']) {
      const t = await timed(runner(mode, kind, wf, kind === 'async' ? noopAsync : noop), reps)
      rows.push(row('chain_1000', kind, mode, 'step', perStep(t), floor[0] / n))
    }
  }
  return rows
}

async function benchFanout(reps, width) {
  const wf = fanout(width)
  const rows = []
  const floor = await timed(() => floorCalls(noop, width + 1, path.join(fresh(), 'floor.jsonl')), reps)
  rows.push(row('fanout_100_join', 'floor', 'file', 'run', floor, floor[0]))
  for (const mode of ['memory', 'file']) {
    for (const kind of ['sync', 'async']) {
      const t = await timed(runner(mode, kind, wf, kind === 'async' ? noopAsync : noop), reps)
      rows.push(row('fanout_100_join', kind, mode, 'run', t, floor[0]))
    }
  }
  return rows
}

async function benchSmallRuns(reps, runs) {
  const wf = chain(5)
  const rows = []
  const perRun = (t) => t.map((x) => x / runs)
  const floor = await timed(() => {
    const d = fresh()
    for (let i = 0; i < runs; i++) floorCalls(small, 5, path.join(d, `r${i}.jsonl`))
  }, reps)
  rows.push(row('small_runs_1000x5', 'floor', 'file', 'run', perRun(floor), floor[0] / runs))
  for (const mode of ['memory', 'file']) {
    for (const kind of ['sync', 'async']) {
      const one = runner(mode, kind, wf, kind === 'async' ? smallAsync : small)
      const t = await timed(async () => {
        for (let i = 0; i < runs; i++) await one()
      }, reps)
      rows.push(row('small_runs_1000x5', kind, mode, 'run', perRun(t), floor[0] / runs))
    }
  }
  return rows
}

/** A finished run looping `visits` times, each output ~`bytes` of text; its log path. */
function bigLog(visits, bytes) {
  const wf = am.Workflow.fromObject({
    name: 'big',
    maxSteps: 3 * visits + 10,
    nodes: [
      { id: 'work', type: 'agent', agent: 'w', maxVisits: visits },
      { id: 'again', type: 'branch', after: ['work'], cases: [{ when: { path: '/visits/work', lt: visits }, goto: 'work' }] },
    ],
  })
  const text = 'x'.repeat(bytes)
  const mesh = new am.Mesh({ logDir: fresh(), fsync: 'never' }).agent('w', (act) => ({ visit: act.visit, text }))
  return mesh.runSync(wf, { runId: 'big' }).logPath
}

/** Read `log` in a child process with `how` (stream or array): events, seconds, peak RSS. */
function readInChild(log, how) {
  const pkg = process.env.AGENTMESH_PACKAGE || path.resolve(__dirname, '..', '..', 'agentmesh-node')
  const script = `
    const am = require(${JSON.stringify(pkg)})
    const log = ${JSON.stringify(log)}
    ;(async () => {
      const base = process.resourceUsage().maxRSS
      const t = process.hrtime.bigint()
      let events = 0
      if (${JSON.stringify(how)} === 'stream') for await (const e of am.readLog(log)) events++
      else events = am.readLogSync(log).length
      const seconds = Number(process.hrtime.bigint() - t) / 1e9
      process.stdout.write(JSON.stringify({ events, seconds, baseKb: base, peakKb: process.resourceUsage().maxRSS }))
    })()
  `
  const r = childProcess.spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`reader child failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

async function benchReadLog(quick) {
  const log = bigLog(quick ? 3000 : 115000, 300)
  const mb = fs.statSync(log).size / 1e6
  const rows = []
  for (const how of ['stream', 'array']) {
    if (quick && how === 'array') continue
    const r = readInChild(log, how)
    rows.push({
      language: 'node',
      workload: `readLog_${mb.toFixed(0)}MB`,
      host: how === 'stream' ? 'readLog' : 'readLogSync',
      log: 'file',
      events: r.events,
      events_per_s: Math.round(r.events / r.seconds),
      peak_rss_mb: +(r.peakKb / 1024).toFixed(1),
      base_rss_mb: +(r.baseKb / 1024).toFixed(1),
    })
  }
  return rows
}

async function main() {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null
  const rows = []
  try {
    if (!only || only === 'chain') rows.push(...(await benchChain(quick ? 3 : 15, 1000)))
    if (!only || only === 'fanout') rows.push(...(await benchFanout(quick ? 3 : 30, 100)))
    if (!only || only === 'small') rows.push(...(await benchSmallRuns(quick ? 1 : 5, quick ? 100 : 1000)))
    if (only === 'readlog') {
      const read = await benchReadLog(quick)
      if (args.includes('--json')) for (const r of read) console.log(JSON.stringify(r))
      else {
        console.log(`node ${process.version}; one read each, in a child process`)
        for (const r of read) {
          console.log(`${r.workload.padEnd(16)}${r.host.padEnd(13)}${String(r.events).padStart(9)} events ${String(r.events_per_s).padStart(9)} events/s  peak RSS ${r.peak_rss_mb} MB (at start ${r.base_rss_mb} MB)`)
        }
      }
      return
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
  if (args.includes('--json')) {
    for (const r of rows) console.log(JSON.stringify(r))
    return
  }
  console.log(`node ${process.version}; best (median) of N`)
  console.log(`${'workload'.padEnd(20)}${'host'.padEnd(7)}${'log'.padEnd(8)}${'per'.padEnd(5)}${'best µs'.padStart(12)}${'median µs'.padStart(12)}${'floor µs'.padStart(11)}${'× floor'.padStart(9)}`)
  for (const r of rows) {
    console.log(
      `${r.workload.padEnd(20)}${r.host.padEnd(7)}${r.log.padEnd(8)}${r.per.padEnd(5)}` +
        `${r.best_us.toFixed(2).padStart(12)}${r.median_us.toFixed(2).padStart(12)}${r.floor_us.toFixed(2).padStart(11)}` +
        `${(r.x_floor === null ? '' : r.x_floor.toFixed(2)).padStart(9)}`,
    )
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
