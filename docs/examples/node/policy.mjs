// Policies: a YAML policy that redacts e-mail addresses, blocks US SSNs and gives only the
// researcher the `search` tool (docs/policy.md). The run input and an agent's output are
// redacted before the log or the next agent sees them; an LLM request carrying an SSN is never
// sent; a tool the agent's role lacks is never called; `redact` tries the policy on text; and
// `checkPolicy` tells what the policy would have decided on a run recorded without it.
//
// The provider is a host function standing in for a real LLM client: it receives the request
// as the policy left it.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {
  Mesh, Policy, PolicyDeniedError, Workflow, checkPolicy, redact,
} from '../../../agentmesh-node/index.js'

const POLICY = `version: 1
name: support
rules:
  - id: pii-email
    detect: email
    action: redact
  - id: no-ssn
    detect: ssn
    action: block
tools:
  roles:
    searcher: [search]
  agents:
    researcher: [searcher]
`

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-policy-'))
const file = path.join(dir, 'policy.yaml')
fs.writeFileSync(file, POLICY)
const policy = new Policy(file)
console.log('policy:    ', policy.name, policy.hash.slice(0, 12), policy.ruleIds)

const sent = []
const wf = Workflow.fromObject({ name: 'support', nodes: [
  { id: 'research', type: 'agent', agent: 'researcher' },
  { id: 'write', type: 'agent', agent: 'writer', after: ['research'] },
] })

function makeMesh(p) {
  const mesh = new Mesh({ logDir: dir, fsync: 'never', policy: p })
  mesh.provider('llm', (request) => {
    sent.push(request.messages[0].content)
    return { text: `noted: ${request.messages[0].content}`, finishReason: 'stop' }
  })
  mesh.callTool('search', () => ({ hits: 2 }))
  mesh.agent('researcher', async (act) => {
    try {
      await act.llm('llm', { messages: [{ role: 'user', content: "the customer's SSN is 219-09-9999" }] })
    } catch (e) {
      if (!(e instanceof PolicyDeniedError)) throw e
      console.log('blocked:   ', e.rule, '-', e.message)
    }
    const reply = await act.llm('llm', { messages: [{ role: 'user', content: `reply to ${act.input.from}` }] })
    const hits = await act.tool('search', { q: 'refunds' })
    return { reply: reply.text, hits, cc: 'ops@example.org' }
  })
  mesh.agent('writer', async (act) => {
    try {
      await act.tool('search', { q: 'anything' })
    } catch (e) {
      if (!(e instanceof PolicyDeniedError)) throw e
      console.log('denied:    ', e.rule, '-', e.message)
    }
    return { draft: `see ${act.deps.research.cc}` }
  })
  return mesh
}

const result = await makeMesh(policy).run(wf, { input: { from: 'ann@example.com' }, runId: 'support' })
console.log('status:    ', result.status)
console.log('output:    ', JSON.stringify(result.output))
console.log('sent:      ', sent)
const log = fs.readFileSync(result.logPath, 'utf8')
if (log.includes('ann@example.com') || log.includes('219-09-9999')) throw new Error('a raw value reached the log')
const denials = log.split('\n').filter((l) => l.includes('"type":"callDenied"'))
  .map((l) => JSON.parse(l).data.verdicts[0]).map((v) => [v.rule, v.agent ?? null])
console.log('denials:   ', JSON.stringify(denials))

console.log('redact:    ', JSON.stringify(redact('write to bob@example.org, ssn 219-09-9999', policy)))

// Yesterday's run, recorded without a policy: what would this one change?
sent.length = 0
const old = await makeMesh(undefined).run(wf, { input: { from: 'ann@example.com' }, runId: 'yesterday' })
const report = await checkPolicy(policy, [old.logPath])
for (const c of report.logs[0].changes) console.log('would:     ', c.seq, c.subject, c.detail)
fs.rmSync(dir, { recursive: true, force: true })
