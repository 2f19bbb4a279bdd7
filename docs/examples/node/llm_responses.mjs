// Returning LLM responses: keep the text, the finish reason and the token usage; never the
// response's `id` or `created` time. The openai SDK's response is a plain object, so an agent
// may return it as it is — and then no two runs have the same log.
//
// `complete()` stands in for `client.chat.completions.create(...)`: it resolves to an object
// of the openai SDK's shape (no network here).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Mesh, Output, Workflow } from '../../../agentmesh-node/index.js'

let served = 0
async function complete({ model, messages }) {
  served += 1
  return {
    id: `chatcmpl-${served}`, // new for every call
    object: 'chat.completion',
    created: 1796000000 + served, // the server's clock
    model,
    system_fingerprint: `fp_${served}`,
    choices: [{
      index: 0,
      message: { role: 'assistant', content: `Three points about ${messages.at(-1).content}.`, refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    }],
    usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
  }
}

const wf = Workflow.fromObject({ name: 'summary', nodes: [{ id: 'summarize', type: 'agent', agent: 'llm' }] })
const ask = (act) => complete({ model: 'small-model', messages: [{ role: 'user', content: act.input.topic }] })

// Returned as it is: accepted (it is JSON data), ids and timestamps included.
const raw = (logDir) => new Mesh({ logDir }).agent('llm', ask)

// What the run depends on: the text and why it stopped. The response goes in as usage: the
// core takes its usage and model, never its id or created time.
const picked = (logDir) => new Mesh({ logDir }).agent('llm', async (act) => {
  const r = await ask(act)
  const choice = r.choices[0]
  return new Output({ text: choice.message.content, finishReason: choice.finish_reason }, { usage: r })
})

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  for (const [name, makeMesh] of [['raw response', raw], ['picked fields', picked]]) {
    const fingerprints = []
    for (const dir of ['first', 'second']) {
      const r = await makeMesh(path.join(logs, name, dir)).run(wf, { input: { topic: 'supersteps' }, runId: 'summary' })
      fingerprints.push(r.fingerprint)
      if (dir === 'first') console.log(`${name}: output ${JSON.stringify(r.output.summarize).slice(0, 72)}…`)
    }
    console.log(`  the same run twice: same fingerprint? ${fingerprints[0] === fingerprints[1]}`)
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
