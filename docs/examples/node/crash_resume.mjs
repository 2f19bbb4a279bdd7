// Resume after a crash: a child process runs a fan-out and is killed (SIGKILL) while one
// agent is still working. Resuming from the log runs only the work that was lost.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import {
  AgentMeshIOError, LogCorruptError, Mesh, Workflow, readLogSync, verifyLog,
} from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'fan-out', nodes: [
  { id: 'plan', type: 'agent', agent: 'worker' },
  { id: 'slow', type: 'agent', agent: 'worker', after: ['plan'] },
  { id: 'a', type: 'agent', agent: 'worker', after: ['plan'] },
  { id: 'b', type: 'agent', agent: 'worker', after: ['plan'] },
  { id: 'join', type: 'agent', agent: 'worker', after: ['a', 'b', 'slow'] },
] })
const calls = []

function makeMesh(logDir, hangOn = '') {
  const mesh = new Mesh({ logDir })
  mesh.agent('worker', async (act) => {
    calls.push(act.node)
    if (act.node === hangOn) await sleep(60_000) // still working when the process is killed
    const deps = Object.keys(act.deps).sort()
    return deps.length > 0 ? deps.join('+') : act.node
  })
  return mesh
}

if (process.argv[2] === '--child') {
  await makeMesh(process.argv[3], 'slow').run(wf, { runId: 'crashy' })
  throw new Error('unreachable: the parent kills this process')
}

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const log = path.join(logs, 'crashy.jsonl')
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', logs], { stdio: 'inherit' })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // Wait until a and b are committed to the log, then kill the child as a crash would.
  let done = []
  for (const deadline = Date.now() + 10_000; Date.now() < deadline && !(done.includes('a') && done.includes('b'));) {
    await sleep(10)
    try {
      done = readLogSync(log).filter((e) => e.type === 'agentCompleted').map((e) => e.node)
    } catch (e) {
      if (!(e instanceof AgentMeshIOError || e instanceof LogCorruptError)) throw e // not there yet
    }
  }
  child.kill('SIGKILL')
  await exited
  console.log('killed the child after it committed:', done)

  const report = await verifyLog(log)
  console.log(`log intact: last seq ${report.lastSeq}, holes ${JSON.stringify(report.holes)}, finished ${report.finished}`)

  const result = await makeMesh(logs).resume(log)
  console.log('agents called on resume:', calls)
  console.log(result.status, result.output)
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
