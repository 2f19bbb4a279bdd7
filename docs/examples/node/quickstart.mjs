import { Mesh, Workflow } from '../../../agentmesh-node/index.js'

const wf = Workflow.fromObject({ name: 'hello', nodes: [
  { id: 'plan', type: 'agent', agent: 'planner' },
  { id: 'write', type: 'agent', agent: 'writer', after: ['plan'] },
] })
const mesh = new Mesh() // logs in memory; new Mesh({ logDir: 'runs' }) writes runs/<run id>.jsonl

mesh.agent('planner', (act) => ({ steps: 2, topic: act.input.topic }))
mesh.agent('writer', (act) => `${act.deps.plan.steps} steps`)

const result = await mesh.run(wf, { input: { topic: 'rust' }, seed: 7 })
console.log(result.status, result.output)
console.log(result.runId, result.fingerprint)
