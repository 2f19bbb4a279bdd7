// Type fixture for the budget API (lib/mesh.d.ts, lib/calls.d.ts, lib/errors.d.ts): prices,
// the run's budget, onBudgetWarning, asks, ticket.maxTokens, result.cost and the refusal.
import { BudgetExceededError, Mesh, RawJson, Workflow } from '../..'
import type { Budget, BudgetRefusal, CallAsk, CallTicket, LogEvent, PriceTable, RunCost, RunResult } from '../..'

const prices: PriceTable = {
  version: 1,
  models: [{ provider: 'local', model: 'm', match: { or: [{ equals: 'm' }, { startsWith: 'm-' }] }, prices: { input: 1000000, output: { base: 2, tiers: [{ above: 1000, price: 4 }] } } }],
}
const mesh = new Mesh({ prices })
new Mesh({ prices: new RawJson('{"version": 1, "models": []}') })
// @ts-expect-error a price table has version 1
new Mesh({ prices: { version: 2, models: [] } })

const ask: CallAsk = { provider: 'local', model: 'm', inputTokens: 40, maxTokens: 64, minTokens: 8 }
mesh.agent('writer', (act) => {
  const t: CallTicket = act.callStart('llm', 'local', { model: 'm' }, { ask })
  const max: number | null = t.maxTokens
  act.callStartMany([{ kind: 'llm', name: 'local', request: {}, ask }, { kind: 'tool', name: 't', request: 1 }])
  // @ts-expect-error inputTokens is required
  act.callStart('llm', 'local', {}, { ask: { provider: 'local', model: 'm' } })
  try {
    act.callStart('tool', 't', 1)
  } catch (e) {
    if (e instanceof BudgetExceededError) {
      const facts: [string | null, string | null, number | null, number | null, number | null, number | null] = [e.scope, e.dimension, e.limit, e.spent, e.requested, e.left]
      const who: [string | null, string | null] = [e.node, e.agent]
      return { facts, who, max }
    }
  }
  return max
})

async function main(): Promise<void> {
  const wf = Workflow.fromObject({ name: 'b', nodes: [{ id: 'a', type: 'agent', agent: 'writer' }] })
  const budget: Budget = { microUsd: 5000000, calls: 10n, inputTokens: 'unlimited' }
  const onBudgetWarning = (e: LogEvent): void => void e.data.threshold
  const r: RunResult = await mesh.run(wf, { budget, onBudgetWarning })
  mesh.runSync(wf, { budget: {}, onBudgetWarning: null })
  await mesh.resume('/tmp/b.jsonl', { onBudgetWarning })
  await mesh.retry('/tmp/b.jsonl', { onBudgetWarning })
  mesh.stream(wf, { budget, onBudgetWarning })
  // @ts-expect-error a limit is a number, a bigint or 'unlimited'
  mesh.runSync(wf, { budget: { calls: 'lots' } })
  // @ts-expect-error not a dimension
  mesh.runSync(wf, { budget: { tokens: 1 } })
  const cost: RunCost = r.cost
  const micro: number | null = cost.microUsd
  const byModel: Record<string, number> = cost.byModel
  const refusal: BudgetRefusal | undefined = r.error?.budget
  void [micro, byModel, refusal]
}
void main
