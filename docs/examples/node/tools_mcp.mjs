// Tools with access rules, and the tools of an MCP server, as recorded calls.
//
// A host tool with an argument schema, an allowlist and a rate limit; the reference MCP server
// `@modelcontextprotocol/server-everything` started with `mesh.mcp` (off the JS thread), its
// tools restricted to one agent. The researcher calls them, the writer is refused
// (PolicyDeniedError: nothing recorded), bad arguments are refused naming the path, and
// `mesh.callTools()` lists every tool for an LLM request's `tools`.
//
// Needs the MCP servers: `npm install --prefix target/mcp-servers
// @modelcontextprotocol/server-everything@2026.8.31` and AGENTMESH_MCP_SERVERS=target/mcp-servers
// (.ci/run does both). Without it the script says so and exits (with an error when CI is set).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {
  InvalidArgumentError, Mesh, PolicyDeniedError, Workflow, readLogSync,
} from '../../../agentmesh-node/index.js'

const servers = process.env.AGENTMESH_MCP_SERVERS
if (!servers) {
  console.log('tools_mcp.mjs: skipped, set AGENTMESH_MCP_SERVERS to a folder with @modelcontextprotocol/server-everything installed')
  process.exit(process.env.CI ? 1 : 0)
}
const entry = path.join(servers, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js')

const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-tools-'))
const mesh = new Mesh({ logDir })

// A host tool: its arguments are checked against the schema before the call is recorded; only
// the researcher may call it, at most 2 live calls per 100 ms (a call over that waits on a timer).
let lookups = 0
mesh.callTool('lookup', ({ term }) => {
  lookups++
  return { term, definition: `${term}: see the glossary` }
}, {
  description: 'Looks a term up in the glossary',
  schema: { type: 'object', properties: { term: { type: 'string' } }, required: ['term'], additionalProperties: false },
  agents: ['researcher'],
  rateLimit: { calls: 2, perMs: 100 },
})

// An MCP server: every tool it lists is registered under its own name, executed natively with
// its input schema enforced; `agents` and `rateLimit` apply to each of them.
const names = await mesh.mcp({ command: [process.execPath, entry, 'stdio'], agents: ['researcher'] })
console.log(`MCP tools: ${names.length}, among them ${names.filter((n) => n === 'echo' || n === 'get-sum').join(', ')}`)

// What an LLM call's `tools` would offer (docs/providers.md): name, description, parameters.
const offered = Object.entries(mesh.callTools())
  .filter(([name]) => ['lookup', 'get-sum'].includes(name))
  .map(([name, t]) => ({ name, description: t.description, parameters: t.schema }))
console.log('offered:', offered.map((t) => `${t.name} (${Object.keys(t.parameters.properties).join(', ')})`).join('; '))

mesh.agent('researcher', async (act) => {
  const sum = await act.tool('get-sum', { a: 2, b: 3 })
  const echo = await act.tool('echo', { message: 'durable agents' })
  const terms = [await act.tool('lookup', { term: 'log' }), await act.tool('lookup', { term: 'seq' }), await act.tool('lookup', { term: 'fork' })]
  let refused = null
  try {
    await act.tool('get-sum', { a: 'two', b: 3 })
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e
    refused = e.message
  }
  return { sum: sum.content[0].text, echo: echo.content[0].text, terms: terms.map((t) => t.term), refused }
})

mesh.agent('writer', async (act) => {
  try {
    await act.tool('echo', { message: 'may I?' })
    return 'allowed'
  } catch (e) {
    if (!(e instanceof PolicyDeniedError)) throw e
    return e.message
  }
})

const wf = Workflow.fromObject({
  name: 'tools-mcp',
  nodes: [
    { id: 'research', type: 'agent', agent: 'researcher' },
    { id: 'write', type: 'agent', agent: 'writer' },
  ],
})
const result = await mesh.run(wf)
console.log('researcher:', result.output.research)
console.log('writer:', result.output.write)

const calls = readLogSync(result.logPath).filter((e) => e.type === 'callStarted').map((e) => `${e.data.name}(${JSON.stringify(e.data.request)})`)
console.log('recorded calls:', calls.join(', '))
if (calls.length !== 5 || lookups !== 3) throw new Error('expected 5 recorded calls and 3 lookups')

// Re-executed against the log: every call answered from it, nothing is called again.
const report = await mesh.reexecute(result.logPath)
console.log(`re-executed: ${report.calls} calls answered from the log; lookups made: ${lookups}`)

// Ends the server process (it also ends when the mesh is garbage collected or the process exits).
await mesh.close()
fs.rmSync(logDir, { recursive: true, force: true })
