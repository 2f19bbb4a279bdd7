// Agents and tools: what an activation carries, what an agent may return, how it fails.
//
// A planner, then two searches in parallel (one tool serving two nodes; the web search fails
// once and is retried), then a writer that reports token usage. Prints the log's timeline.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import util from 'node:util'

import { ActivationError, Mesh, Output, RawJson, Workflow, readLog } from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'research', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner' },
  { id: 'web', type: 'tool', tool: 'search', after: ['plan'],
    retry: { maxAttempts: 3, backoffMs: 10 } },
  { id: 'papers', type: 'tool', tool: 'search', after: ['plan'] },
  { id: 'summary', type: 'agent', agent: 'writer', after: ['web', 'papers'] },
] })

const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-'))
try {
  const mesh = new Mesh({ logDir: logs })

  mesh.agent('planner', (act) => {
    console.log(`  ${act.node}: kind=${act.kind} name=${act.name} step=${act.step} ` +
      `attempt=${act.attempt} visit=${act.visit} seed=${typeof act.seed} input=${JSON.stringify(act.input)}`)
    return { query: act.input.topic }
  })

  mesh.tool('search', async (act) => {
    // `web` and `papers` share this tool; the activation says which node it serves.
    if (act.node === 'web' && act.attempt === 1) {
      throw new ActivationError('HttpError', '503 Service Unavailable') // retryable
    }
    if (act.node === 'papers') {
      // JSON text from elsewhere (an HTTP body, a cache) goes to the log as is.
      return new RawJson('{"hits": 3, "source": "arxiv"}')
    }
    return { hits: 12, query: act.deps.plan.query, delayMs: act.delayMs }
  })

  mesh.agent('writer', (act) => {
    const hits = act.deps.web.hits + act.deps.papers.hits
    return new Output(`${hits} hits`, { usage: { inputTokens: 120, outputTokens: 8 } })
  })

  const result = await mesh.run(wf, { input: { topic: 'solid-state batteries' }, seed: 1 })
  console.log(result.status, result.output)
  for await (const e of readLog(result.logPath)) {
    const { workflow, ...data } = e.data // skip runStarted's copy of the workflow
    console.log(`${String(e.seq).padStart(3)}  ${e.type.padEnd(15)} ${(e.node ?? '-').padEnd(8)} ` +
      `${String(e.attempt ?? '-').padEnd(2)} ${util.inspect(data, { breakLength: Infinity, depth: null })}`)
  }
} finally {
  fs.rmSync(logs, { recursive: true, force: true })
}
