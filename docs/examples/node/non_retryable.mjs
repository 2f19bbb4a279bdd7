// Errors that are never retried: a bug right after a paid LLM call (here a TypeError reading a
// field the response does not have) fails the node at once under `maxAttempts: 3` — retrying
// it would pay for the same call three times and fail the same way. `nonRetryable` adds your
// own types; `retryProgrammingErrors: true` opts out of the defaults. Once the bug is fixed,
// `retry` gives the node a fresh allowance.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { ActivationError, AgentFailedError, Mesh, Workflow, readLogSync } from '../../../agentmesh-node/index.js'

const workflow = (retry) => Workflow.fromObject({ name: 'answer', nodes: [{ id: 'answer', type: 'agent', agent: 'llm', retry }] })

let paidCalls = 0
const callModel = async () => {
  paidCalls += 1
  return { choices: [{ message: { content: '42' } }] }
}
const buggy = async () => {
  const r = await callModel()
  return r.choices[0].messages.content // `messages`: a typo, so a TypeError
}
const fixed = async () => (await callModel()).choices[0].message.content

/** Run `agent` under `retry`; print how many paid calls the run made and what it recorded. */
async function attempt(label, agent, retry, logs) {
  paidCalls = 0
  const mesh = new Mesh({ logDir: logs }).agent('llm', agent)
  try {
    await mesh.run(workflow(retry), { runId: label.replace(' ', '-') })
  } catch (e) {
    if (!(e instanceof AgentFailedError)) throw e
    const failures = readLogSync(e.result.logPath).filter((ev) => ev.type === 'agentFailed')
    const recorded = failures.map((ev) => `${ev.data.error.type} (retryable: ${ev.data.error.retryable})`)
    console.log(`${label}: ${paidCalls} paid call(s); ${recorded.join(', ')}`)
    return e.result
  }
}

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const failed = await attempt('default', buggy, { maxAttempts: 3 }, logs)
  console.log(`  ${failed.error.message}`)
  await attempt('opted out', buggy, { maxAttempts: 3, retryProgrammingErrors: true }, logs)
  // A type of your own (an SDK's AuthenticationError, say): listed, so never retried.
  const auth = async () => {
    paidCalls += 1
    throw new ActivationError('AuthenticationError', 'invalid API key')
  }
  await attempt('listed', auth, { maxAttempts: 3, nonRetryable: ['AuthenticationError'] }, logs)

  // The bug is fixed: the failed run goes on, with a fresh allowance for `answer`.
  paidCalls = 0
  const done = await new Mesh({ logDir: logs }).agent('llm', fixed).retry(failed.logPath)
  console.log(`retried: ${done.status} ${JSON.stringify(done.output)} after ${paidCalls} more paid call(s)`)
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
