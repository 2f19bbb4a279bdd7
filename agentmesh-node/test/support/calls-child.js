'use strict'
// A child process for test/calls.test.js: runs (or resumes) a workflow whose agents make calls,
// so the parent can SIGKILL it mid-agent and resume the run in a new process.
//
// argv[2]: JSON {mode: 'run' | 'resume', logDir, logPath?, runId, counter, provider, calls}
// - provider 'host': a host provider that appends `<call> <idempotencyKey> <content>` to
//   `counter` for every invocation, and hangs (never answers) on the call numbered `hangAt`
//   after writing `inflight` there, so the parent kills the child mid-call.
// - provider {kind, baseUrl, ...}: a native provider (the parent's proxy in front of
//   llama-server); the workflow is two agents in a chain, one LLM call each.
// Prints `RESULT <json>` when the run ends.

const fs = require('node:fs')
const am = require('../..')

const args = JSON.parse(process.argv[2])

function request(content) {
  return { model: 'smollm2', messages: [{ role: 'user', content }], maxTokens: 16, temperature: 0 }
}

async function main() {
  const mesh = new am.Mesh({ logDir: args.logDir, fsync: 'always' })
  let wf
  if (args.provider === 'host') {
    wf = am.Workflow.fromObject({ name: 'calls-crash', nodes: [{ id: 'a', type: 'agent', agent: 'asker' }] })
    mesh.provider('p', (req, ticket) => {
      const content = req.messages[0].content
      fs.appendFileSync(args.counter, `${ticket.call} ${ticket.idempotencyKey} ${content}\n`)
      if (ticket.call === args.hangAt) {
        fs.appendFileSync(args.counter, 'inflight\n')
        setInterval(() => {}, 1000) // keeps the process alive: the parent kills it here
        return new Promise(() => {}) // never answers
      }
      return { text: `answer ${ticket.call}`, finishReason: 'stop' }
    })
    mesh.agent('asker', async (act) => {
      const texts = []
      for (let i = 1; i <= args.calls; i++) texts.push((await act.llm('p', request(`${args.prefix ?? 'q'}${i}`))).text)
      return { texts }
    })
  } else {
    wf = am.Workflow.fromObject({
      name: 'calls-llm-chain',
      nodes: [
        { id: 'first', type: 'agent', agent: 'writer' },
        { id: 'second', type: 'agent', agent: 'writer', after: ['first'] },
      ],
    })
    mesh.provider('local', args.provider)
    mesh.agent('writer', async (act) => {
      const prev = act.deps.first ? act.deps.first.text : 'Say hello.'
      const reply = await act.llm('local', request(`Continue: ${prev}`))
      return { text: reply.text, recorded: reply.recorded }
    })
  }
  const result =
    args.mode === 'run' ? await mesh.run(wf, { runId: args.runId }) : await mesh.resume(args.logPath)
  process.stdout.write(`RESULT ${JSON.stringify({ status: result.status, output: result.output, logPath: result.logPath })}\n`)
}

main().catch((e) => {
  process.stderr.write(`child failed: ${e && e.stack}\n`)
  process.exit(1)
})
