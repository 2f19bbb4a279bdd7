// Calls inside activations: an agent asks an LLM provider and calls a tool through its
// activation, so each call is recorded as it happens. The provider here is a host function
// (no server needed); `mesh.provider('local', {kind: 'openai', baseUrl: ...})` would make the
// same calls over HTTP, off the JS thread. The run is interrupted after the first call and
// resumed: the recorded answer comes from the log, nothing is asked twice.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {
  Mesh, Output, ProviderError, RunInterruptedError, Workflow, readLogSync,
} from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'calls', nodes: [{ id: 'write', type: 'agent', agent: 'writer' }] })
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-calls-'))
const asked = []

function makeMesh(stopAfterFirst) {
  const mesh = new Mesh({ logDir })
  // A host provider: (request, ticket) → the response, or an Output with usage.
  mesh.provider('local', (request, ticket) => {
    const prompt = request.messages.at(-1).content
    asked.push(prompt)
    if (prompt.includes('fail')) throw new Error('the model is overloaded')
    return new Output({ text: `an answer to "${prompt}"`, finishReason: 'stop' }, {
      usage: { inputTokens: prompt.length, outputTokens: 5, model: 'demo' },
    })
  })
  mesh.callTool('wordCount', ({ text }) => text.split(/\s+/).length, {
    description: 'Counts the words of a text',
    schema: { type: 'object', properties: { text: { type: 'string' } } },
  })
  mesh.agent('writer', async (act) => {
    const ask = (content) => ({ model: 'demo', messages: [{ role: 'user', content }], maxTokens: 32, temperature: 0 })
    const outline = await act.llm('local', ask('Outline a post on durable agents'))
    if (stopAfterFirst) stopAfterFirst()
    // A streamed call: chunks as they arrive, the whole reply at the end.
    const stream = act.llmStream('local', ask(`Write it: ${outline.text}`))
    let streamed = ''
    for await (const chunk of stream) streamed += chunk.text ?? ''
    const post = await stream.reply
    const words = await act.tool('wordCount', { text: post.text })
    let failure = null
    try {
      await act.llm('local', ask('please fail'))
    } catch (e) {
      if (!(e instanceof ProviderError)) throw e
      failure = `${e.errorType}: retryable ${e.retryable}`
    }
    return { outlineRecorded: outline.recorded, streamed: streamed === post.text, words, failure }
  })
  return mesh
}

// First run: interrupted right after the first call was recorded (as a crash would leave it).
const interrupt = new AbortController()
let logPath
try {
  await makeMesh(() => interrupt.abort('demo')).run(wf, { runId: 'calls-demo', interrupt: interrupt.signal })
} catch (e) {
  if (!(e instanceof RunInterruptedError)) throw e
  logPath = e.logPath
}
console.log('asked before the interruption:', asked)

// Resumed: the outline comes from the log (recorded: true), the rest is asked now.
asked.length = 0
const result = await makeMesh(null).resume(logPath)
console.log('asked after resuming:', asked)
console.log('output:', result.output.write)
console.log('call records:', readLogSync(logPath).filter((e) => e.type.startsWith('call')).map((e) => `${e.seq}.${e.sub} ${e.type} #${e.data.call}`))
if (!result.output.write.outlineRecorded || asked.some((p) => p.startsWith('Outline'))) throw new Error('the recorded call was asked again')
fs.rmSync(logDir, { recursive: true, force: true })
