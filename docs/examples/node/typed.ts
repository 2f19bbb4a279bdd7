// TypeScript: the package's typings (index.d.ts) type workflows, agents, results and errors.
// Type-check and run it as CI does (see docs/typescript.md, "The example scripts").
import {
  AgentFailedError,
  AgentMeshError,
  Mesh,
  Output,
  Workflow,
  errorClass,
} from '../../../agentmesh-node/index.js'
import type {
  Activation,
  AgentFn,
  AnyAgentMeshError,
  RunResult,
  WorkflowDefinition,
} from '../../../agentmesh-node/index.js'

interface Plan {
  steps: number
  topic: string
}

const definition: WorkflowDefinition = {
  name: 'hello',
  nodes: [
    { id: 'plan', type: 'agent', agent: 'planner' },
    { id: 'write', type: 'agent', agent: 'writer', after: ['plan'], retry: { maxAttempts: 2 } },
  ],
}

// `act.input` and `act.deps` values are `unknown`: narrow them (or cast after validating).
const planner: AgentFn = (act: Activation): Plan => {
  const input = act.input as { topic: string }
  return { steps: 2, topic: input.topic }
}

const writer: AgentFn = async (act) => {
  const plan = act.deps.plan as Plan
  const seed: bigint = act.seed // 64 bits: a bigint, not a number
  return new Output(`${plan.steps} steps on ${plan.topic}`, { usage: { inputTokens: Number(seed % 100n), outputTokens: 3 } })
}

/** What went wrong, by code: `switch (e.code)` narrows to the error's class. */
function explain(e: AnyAgentMeshError): string {
  switch (e.code) {
    case 'INVALID_WORKFLOW':
      return `invalid workflow at node ${e.node ?? '-'}, field ${e.field ?? '-'}`
    case 'NONDETERMINISM':
      return `diverged at seq ${e.seq}`
    case 'AGENT_FAILED':
      return `agent of node ${e.node} failed: ${String(e.cause)}`
    default:
      return e.message
  }
}

async function main(): Promise<void> {
  const mesh = new Mesh().agent('planner', planner).agent('writer', writer)
  const result: RunResult = await mesh.run(Workflow.fromObject(definition), { input: { topic: 'rust' }, seed: 7 })
  console.log(result.status, result.output)

  try {
    Workflow.fromObject({ name: 'w', nodes: [{ id: 'a', type: 'agent', agent: 'x', after: ['zz'] }] })
  } catch (e) {
    if (e instanceof AgentMeshError) console.log(explain(e as AnyAgentMeshError))
  }

  mesh.agent('writer', () => {
    throw new Error('model overloaded')
  })
  try {
    await mesh.run(Workflow.fromObject(definition), { input: { topic: 'rust' } })
  } catch (e) {
    if (e instanceof AgentFailedError) console.log(explain(e), '| result:', e.result?.status)
  }
  console.log(errorClass('LOG_CORRUPT').name, errorClass('LOG_CORRUPT').code)
}

main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
