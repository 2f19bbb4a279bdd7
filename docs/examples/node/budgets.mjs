// Budgets: a run that may spend 600 micro-USD, agents whose LLM calls reserve their worst case
// before they are sent, refused calls the agents answer without, warnings as spend crosses
// 50 % and 80 %, and what the run cost (docs/budgets.md). `complete` stands in for a real LLM
// client so the script runs offline: the agents reserve with an `ask` (the estimated prompt and
// `maxTokens`), send the `maxTokens` the budget allows, and report the usage the client gave.
// With a provider the mesh calls itself (`mesh.provider(name, {kind, baseUrl})`, `act.llm`)
// the ask is made for you.
import assert from 'node:assert/strict'

import { BudgetExceededError, Mesh, Workflow } from '../../../agentmesh-node/index.js'

// Our prices for the local model: $1 per million prompt tokens, $2 per million completion
// tokens (1 and 2 micro-USD a token).
const prices = { version: 1, source: 'our contract', models: [
  { provider: 'local', model: 'small', match: { equals: 'small' }, prices: { input: 1000000, output: 2000000 } },
] }

// A stand-in LLM: a prompt of 50 tokens, `maxTokens` completion tokens.
const complete = (prompt, maxTokens) => ({ text: `about ${prompt}`, usage: { inputTokens: 50, outputTokens: maxTokens, model: 'small' } })

function researcher(act) {
  const request = { model: 'small', messages: [{ role: 'user', content: act.node }], maxTokens: 100 }
  let ticket
  try {
    // Worst case: 50 prompt tokens + 100 completion tokens = 250 µUSD.
    ticket = act.callStart('llm', 'local', request, { ask: { provider: 'local', model: 'small', inputTokens: 50, maxTokens: 100 } })
  } catch (e) {
    if (!(e instanceof BudgetExceededError)) throw e
    return { note: 'skipped', why: e.dimension, left: e.left } // refused before anything was sent
  }
  if (ticket.live) {
    const answer = complete(act.node, ticket.maxTokens ?? 100)
    act.callComplete(ticket, { response: { text: answer.text }, usage: answer.usage })
  }
  return { note: 'researched' }
}

const warnings = []
const onBudgetWarning = (e) => warnings.push(`${e.data.scope} ${e.data.dimension} at ${e.data.threshold} %`)
const mesh = new Mesh({ prices })
mesh.agent('researcher', researcher)

// Three activations of one step share 600 µUSD: 200 each, less than a call's worst case
// (250), so every call is refused — the leases are decided at scheduling, from data only.
const three = Workflow.fromObject({ name: 'budgeted-research', budgetWarnings: [50, 80],
  nodes: [0, 1, 2].map((i) => ({ id: `topic_${i}`, type: 'agent', agent: 'researcher' })) })
let r = await mesh.run(three, { budget: { microUsd: 600 }, onBudgetWarning })
console.log('outputs:', JSON.stringify(r.output))
assert.ok(Object.values(r.output).every((o) => o.note === 'skipped'))
console.log('cost:', JSON.stringify(r.cost))
assert.equal(r.cost.microUsd, 0)
assert.equal(r.cost.denied, 3)

// One agent alone gets the whole budget: its call fits and is charged what it reported.
const solo = Workflow.fromObject({ name: 'solo', budgetWarnings: [50, 80],
  nodes: [{ id: 'topic', type: 'agent', agent: 'researcher' }] })
r = await mesh.run(solo, { budget: { microUsd: 300 }, onBudgetWarning })
console.log('cost:', JSON.stringify(r.cost))
assert.equal(r.status, 'completed')
assert.equal(r.cost.microUsd, 250) // 50 × 1 + 100 × 2
console.log('warnings:', warnings)
assert.deepEqual(warnings, ['run microUsd at 50 %', 'run microUsd at 80 %'])
