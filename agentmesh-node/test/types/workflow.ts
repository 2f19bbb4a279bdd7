// Type fixture (tsc only, never run): Workflow and WorkflowBuilder of lib/workflow.d.ts.
import { Workflow, WorkflowBuilder } from '../../lib/workflow'
import type { Condition, NodeDefinition, OutputSpec, WorkflowDefinition } from '../../lib/workflow'

const wf: Workflow = Workflow.fromObject({
  name: 'w',
  maxSteps: 10,
  nodes: [
    { id: 'a', type: 'agent', agent: 'writer', timeoutMs: 500, retry: { maxAttempts: 3, backoffMs: 20, backoffMultiplier: 2 } },
    { id: 't', type: 'tool', tool: 'search', after: ['a'] },
    { id: 'h', type: 'human', prompt: 'ok?', after: ['t'] },
    { id: 'r', type: 'branch', after: ['h'], cases: [{ when: { path: '/outputs/h/approved', eq: true }, goto: 'a' }], default: 'a', maxVisits: 3 },
  ],
})
export const fromFile: Workflow = Workflow.fromFile(new URL('file:///tmp/w.json'))
export const fromJson: Workflow = Workflow.fromJson('{"name": "w", "nodes": []}')
export const definition: WorkflowDefinition = wf.toObject()
export const nodes: NodeDefinition[] = definition.nodes
export const facts: [string, string, string, string[], string[], string[]] = [
  wf.name,
  wf.hash,
  wf.toJson(),
  wf.nodeIds(),
  wf.agentNames(),
  wf.toolNames(),
]
// @ts-expect-error name is read-only
wf.name = 'other'
// @ts-expect-error an agent node needs its agent
Workflow.fromObject({ name: 'w', nodes: [{ id: 'a', type: 'agent' }] })
// @ts-expect-error no such node type
Workflow.fromObject({ name: 'w', nodes: [{ id: 'a', type: 'robot', agent: 'x' }] })
// @ts-expect-error timeoutMs is not a human node field
Workflow.fromObject({ name: 'w', nodes: [{ id: 'h', type: 'human', timeoutMs: 5 }] })
// @ts-expect-error fromJson takes text
Workflow.fromJson({ name: 'w', nodes: [] })
// @ts-expect-error paths are strings or URLs
Workflow.fromFile(5)

const builder: WorkflowBuilder = Workflow.builder('w')
export const built: Workflow = builder
  .agent('a', 'writer', { after: 'b', timeoutMs: 5, retry: { maxAttempts: 2, backoffMs: 10 }, maxVisits: 2 })
  .tool('b', 'search', { after: ['c', 'd'] })
  .human('h', { prompt: 'ok?', after: 'a' })
  .branch('r', { after: 'h', cases: [{ when: { path: '/input/n', gte: 1 }, goto: 'a' }], default: 'h' })
  .maxSteps(3)
  .build()
export const direct: WorkflowBuilder = new WorkflowBuilder('w').agent('a', 'x')
// @ts-expect-error unknown option
Workflow.builder('w').agent('a', 'x', { timeout: 5 })
// @ts-expect-error retry needs maxAttempts
Workflow.builder('w').tool('t', 'x', { retry: { backoffMs: 5 } })
export const strict: Workflow = Workflow.builder('w')
  .agent('a', 'x', { retry: { maxAttempts: 3, nonRetryable: ['AuthenticationError'], retryProgrammingErrors: false } })
  .build()
export const hints: string[] = strict.warnings
// @ts-expect-error nonRetryable is a list of type names
Workflow.builder('w').agent('a', 'x', { retry: { maxAttempts: 3, nonRetryable: 'AuthenticationError' } })
// @ts-expect-error warnings are read, not set
strict.warnings = []
// @ts-expect-error the prompt is an option, not a positional string
Workflow.builder('w').human('h', 'ok?')
// @ts-expect-error a branch takes its cases as {when, goto}
Workflow.builder('w').branch('r', { cases: [[{ path: '/x', eq: 1 }, 'a']] })
// @ts-expect-error build() returns a Workflow, not a builder
export const notBuilder: WorkflowBuilder = Workflow.builder('w').agent('a', 'x').build()

export const conditions: Condition[] = [
  { path: '/outputs/review/score', gte: 0.8 },
  { path: '/outputs/classify/category', in: ['bug', 'crash'] },
  { path: '/outputs/classify/category', matches: '^billing' },
  { all: [{ path: '/visits/draft', lt: 3 }, { not: { path: '/outputs/x', exists: false } }] },
  { any: [{ path: '/input', contains: 'x' }, { path: '/input', ne: null }] },
]
// @ts-expect-error gt takes a number or a string
export const badGt: Condition = { path: '/x', gt: true }
// @ts-expect-error a test needs a path
export const noPath: Condition = { eq: 1 }

// map nodes and reads
export const mapped: Workflow = Workflow.builder('m')
  .agent('plan', 'planner')
  .map('research', {
    agent: 'researcher',
    over: '/outputs/plan/questions',
    after: 'plan',
    itemKey: '/id',
    maxItems: 100,
    concurrency: 4,
    onItemFailure: 'collect',
    retry: { maxAttempts: 2 },
    timeoutMs: 1000,
    reads: ['/input/topic'],
  })
  .map('fetch', { tool: 'http', over: '/input/urls' })
  .agent('write', 'writer', { after: ['research'], reads: '/outputs/fetch' })
  .human('ok', { after: 'write', reads: ['/outputs/write'] })
  .build()
export const mapDefinition: Workflow = Workflow.fromObject({
  name: 'm',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'planner' },
    { id: 'research', type: 'map', agent: 'researcher', over: '/outputs/plan/questions', after: ['plan'], onItemFailure: 'fail' },
    { id: 'write', type: 'agent', agent: 'writer', after: ['research'], reads: ['/outputs/plan'] },
  ],
})
// @ts-expect-error a map needs the array it maps over
Workflow.builder('w').map('m', { agent: 'x' })
// @ts-expect-error a map runs an agent or a tool, not both
Workflow.builder('w').map('m', { agent: 'x', tool: 'y', over: '/input' })
// @ts-expect-error a map runs an agent or a tool
Workflow.builder('w').map('m', { over: '/input' })
// @ts-expect-error onItemFailure is fail or collect
Workflow.builder('w').map('m', { agent: 'x', over: '/input', onItemFailure: 'skip' })
// @ts-expect-error a branch has no reads
Workflow.builder('w').branch('r', { default: 'a', reads: ['/input'] })
// @ts-expect-error a map node in JSON needs over
Workflow.fromObject({ name: 'w', nodes: [{ id: 'm', type: 'map', agent: 'x' }] })

// output contracts
const PLAN = { type: 'object', required: ['questions'], properties: { questions: { type: 'array' } } } as const
export const contract: OutputSpec = { schema: PLAN, repair: true }
export const contracted: Workflow = Workflow.builder('c')
  .agent('plan', 'planner', { retry: { maxAttempts: 3 }, output: contract })
  .map('research', { agent: 'researcher', over: '/outputs/plan/questions', after: 'plan', output: { schema: { type: 'object' } } })
  .tool('count', 'counter', { after: 'research', output: { schema: { type: 'integer' }, repair: false } })
  .human('ok', { after: 'count', output: { schema: true } })
  .build()
export const contractDefinition: Workflow = Workflow.fromObject({
  name: 'c',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'planner', output: { schema: PLAN, repair: true } },
    { id: 'research', type: 'map', agent: 'r', over: '/outputs/plan/questions', after: ['plan'], output: { schema: {} } },
    { id: 'ok', type: 'human', after: ['research'], output: { schema: false } },
  ],
})
// @ts-expect-error a contract needs its schema
Workflow.builder('w').agent('a', 'x', { output: { repair: true } })
// @ts-expect-error repair is a boolean
Workflow.builder('w').agent('a', 'x', { output: { schema: {}, repair: 'yes' } })
// @ts-expect-error a schema is an object or a boolean
Workflow.builder('w').tool('t', 'x', { output: { schema: 'string' } })
// @ts-expect-error a branch has no output contract
Workflow.builder('w').branch('r', { default: 'a', output: { schema: {} } })
// @ts-expect-error a branch node in JSON has no output contract
Workflow.fromObject({ name: 'w', nodes: [{ id: 'r', type: 'branch', output: { schema: {} } }] })
