// Type fixture (tsc only, never run): tool access and MCP tools (lib/calls.d.ts, lib/mesh.d.ts).
import { Mesh, PolicyDeniedError, ProviderError, type CallToolInfo, type McpServerOptions } from '../../index'

const mesh = new Mesh()
mesh.callTool('search', (args: { q: string }) => [args.q], {
  description: 'web search',
  schema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
  agents: ['researcher'],
  rateLimit: { calls: 2, perMs: 1000 },
})
mesh.callTool('free', () => 1, { agents: null, rateLimit: null })
// @ts-expect-error agents are names
mesh.callTool('bad', () => 1, { agents: [1] })
// @ts-expect-error a rate limit is {calls, perMs}
mesh.callTool('bad', () => 1, { rateLimit: { calls: 1 } })
// @ts-expect-error no such option
mesh.callTool('bad', () => 1, { retries: 3 })

const options: McpServerOptions = {
  command: ['node', 'server-everything/dist/index.js', 'stdio'],
  env: { API_KEY: 'from-a-vault' },
  agents: ['researcher'],
  rateLimit: { calls: 5, perMs: 1000 },
  initTimeoutMs: 10_000,
  callTimeoutMs: 5_000,
}
// @ts-expect-error the command is a list of words
const notAList: McpServerOptions = { command: 'node server.js' }
void notAList

export async function setUp(): Promise<string[]> {
  const names: string[] = await mesh.mcp(options)
  const listed: Record<string, CallToolInfo> = mesh.callTools()
  const description: string | null = listed[names[0]].description
  void description
  mesh.agent('researcher', async (act) => {
    try {
      return await act.tool('echo', { message: 'hi' })
    } catch (e) {
      if (e instanceof PolicyDeniedError) {
        const code: 'POLICY_DENIED' = e.code
        return code
      }
      if (e instanceof ProviderError) return e.errorType
      throw e
    }
  })
  await mesh.close()
  return names
}
