'use strict'
// Policies through the public API (docs/policy.md): `Policy` from files and objects,
// `PolicyInvalidError`; runs under `new Mesh({policy})` — what is redacted is recorded, sent and
// passed on redacted, what is blocked is never sent, never run and never in the log, and the
// agent gets `PolicyDeniedError`; host-made calls (`ticket.request`, `callComplete`'s recorded
// response); resume only under the run's policy; `redact` and `checkPolicy`.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const am = require('..')

const EMAIL = 'ann.smith@example.com'
const SSN = '219-09-9999'
const POLICY = {
  version: 1,
  name: 'node-test',
  rules: [
    { id: 'pii-email', detect: 'email', action: 'redact' },
    { id: 'no-ssn', detect: 'ssn', action: 'block' },
    { id: 'codename', keywords: ['project zeus'], action: 'warn' },
  ],
  tools: { roles: { searcher: ['search'] }, agents: { researcher: ['searcher'] } },
}
const YAML = `# the same policy, keys in another order
name: node-test
version: 1
tools:
  agents:
    researcher: [searcher]
  roles:
    searcher: [search]
rules:
  - {id: pii-email, action: redact, detect: email}
  - id: no-ssn
    detect: ssn
    action: block
  - {id: codename, keywords: [project zeus], action: warn}
`

function tmp() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-policy-'))
}

function wf(nodes) {
  return am.Workflow.fromObject({ name: 'p', nodes })
}

function events(logPath) {
  return am.readLogSync(logPath)
}

test('a policy from YAML and from an object hash alike; bad ones name the rule and position', () => {
  const dir = tmp()
  const file = path.join(dir, 'p.yaml')
  fs.writeFileSync(file, YAML)
  const a = new am.Policy(file)
  const b = new am.Policy(POLICY)
  assert.equal(a.hash, b.hash)
  assert.equal(new am.Policy(a).hash, a.hash)
  assert.deepEqual(a.ruleIds, ['pii-email', 'no-ssn', 'codename'])
  assert.equal(a.name, 'node-test')
  assert.equal(a.version, 1)
  assert.equal(new am.Policy(a.toJSON()).hash, a.hash)
  assert.equal(JSON.parse(JSON.stringify(a)).name, 'node-test')

  const bad = path.join(dir, 'bad.yaml')
  fs.writeFileSync(bad, 'version: 1\nname: x\nrules:\n  - id: r1\n    regex: "(?=a)b"\n    action: warn\n')
  assert.throws(() => new am.Policy(bad), (e) => {
    assert.ok(e instanceof am.PolicyInvalidError, String(e))
    assert.equal(e.code, 'POLICY_INVALID')
    assert.equal(e.rule, 'r1')
    assert.equal(e.field, 'rules[0].regex')
    assert.equal(e.line, 5)
    assert.match(e.message, /look-around/)
    return true
  })
  const dup = path.join(dir, 'dup.json')
  fs.writeFileSync(dup, '{"version": 1, "name": "a", "name": "b"}')
  assert.throws(() => new am.Policy(dup), (e) => e instanceof am.PolicyInvalidError && /duplicate key "name"/.test(e.message))
  assert.throws(() => new am.Policy({ version: 1, name: 'x', colour: 1 }), am.PolicyInvalidError)
  const link = path.join(dir, 'link.yaml')
  fs.symlinkSync(file, link)
  assert.throws(() => new am.Policy(link), (e) => e instanceof am.PolicyInvalidError && /symlink/.test(e.message))
  assert.throws(() => new am.Policy(42), am.InvalidArgumentError)
  assert.throws(() => new am.Mesh({ policy: { version: 2, name: 'x' } }), am.PolicyInvalidError)
})

test('inputs and outputs are recorded and passed on redacted; verdicts are in the records', async () => {
  const dir = tmp()
  const mesh = new am.Mesh({ logDir: dir, fsync: 'never', policy: POLICY })
  const seen = []
  mesh.agent('writer', (act) => {
    seen.push(act.input)
    return { text: `mail ${EMAIL} about project zeus` }
  })
  mesh.agent('reader', (act) => {
    seen.push(act.deps.a)
    return 'ok'
  })
  const r = await mesh.run(wf([
    { id: 'a', type: 'agent', agent: 'writer' },
    { id: 'b', type: 'agent', agent: 'reader', after: ['a'] },
  ]), { input: { from: EMAIL }, runId: 'redact' })
  assert.equal(r.status, 'completed')
  assert.deepEqual(seen, [{ from: '[REDACTED:email]' }, { text: 'mail [REDACTED:email] about project zeus' }])
  assert.ok(!fs.readFileSync(r.logPath, 'utf8').includes(EMAIL))
  assert.equal(am.readHeader(r.logPath).policy.hash, new am.Policy(POLICY).hash)
  const completed = events(r.logPath).find((e) => e.type === 'agentCompleted' && e.node === 'a')
  assert.deepEqual(completed.data.verdicts.map((v) => [v.rule, v.action]), [['pii-email', 'redact'], ['codename', 'warn']])
})

test('a blocked request is never sent; a redacted one is sent redacted; tools outside the role never run', async () => {
  const dir = tmp()
  const mesh = new am.Mesh({ logDir: dir, fsync: 'never', policy: POLICY })
  const sent = []
  const ran = []
  mesh.provider('p', (request) => {
    sent.push(request)
    return { text: 'ok', finishReason: 'stop' }
  })
  mesh.callTool('search', (args) => ran.push('search') && { hits: [args.q] })
  mesh.callTool('shell', () => ran.push('shell') && { out: 'root' })
  const errors = []
  mesh.agent('researcher', async (act) => {
    try {
      await act.llm('p', { messages: [{ role: 'user', content: `my ssn is ${SSN}` }] })
    } catch (e) {
      assert.ok(e instanceof am.PolicyDeniedError, String(e))
      assert.equal(e.rule, 'no-ssn')
      assert.equal(e.verdict.action, 'block')
      errors.push(e.message)
    }
    await act.llm('p', { messages: [{ role: 'user', content: `write to ${EMAIL}` }] })
    await act.tool('search', { q: 'x' })
    try {
      await act.tool('shell', { cmd: 'ls' })
    } catch (e) {
      assert.ok(e instanceof am.PolicyDeniedError)
      assert.equal(e.rule, 'tools')
      errors.push(e.message)
    }
    return 'done'
  })
  const r = await mesh.run(wf([{ id: 'a', type: 'agent', agent: 'researcher' }]), { runId: 'calls' })
  assert.equal(r.status, 'completed', JSON.stringify(r.error))
  assert.equal(sent.length, 1, 'the blocked request reached the provider')
  assert.equal(sent[0].messages[0].content, 'write to [REDACTED:email]')
  assert.deepEqual(ran, ['search'], 'a denied tool ran')
  assert.ok(errors.every((m) => !m.includes(SSN)))
  const denied = events(r.logPath).filter((e) => e.type === 'callDenied').map((e) => e.data)
  assert.equal(denied.length, 2)
  assert.equal(denied[0].request, undefined)
  assert.equal(denied[1].verdicts[0].rule, 'tools')
  assert.equal(denied[1].verdicts[0].agent, 'researcher')
  const text = fs.readFileSync(r.logPath, 'utf8')
  assert.ok(!text.includes(SSN) && !text.includes(EMAIL))
})

test('responses are redacted or blocked before the agent sees them; a judged stream arrives once', async () => {
  const mesh = new am.Mesh({ policy: POLICY })
  mesh.provider('p', (request) => ({ text: request.messages[0].content === 'leak' ? `ssn ${SSN}` : `to ${EMAIL}` }))
  mesh.agent('a', async (act) => {
    const stream = act.llmStream('p', { messages: [{ role: 'user', content: 'hi' }] })
    const chunks = []
    for await (const c of stream) chunks.push(c)
    const reply = await stream.reply
    assert.equal(reply.text, 'to [REDACTED:email]')
    assert.deepEqual(chunks, [{ text: 'to [REDACTED:email]' }])
    await assert.rejects(act.llm('p', { messages: [{ role: 'user', content: 'leak' }] }), (e) => e instanceof am.PolicyDeniedError && !e.message.includes(SSN))
    return 'ok'
  })
  const r = await mesh.run(wf([{ id: 'a', type: 'agent', agent: 'a' }]))
  assert.equal(r.status, 'completed', JSON.stringify(r.error))
})

test('host-made calls send ticket.request and get the recorded response back', async () => {
  const mesh = new am.Mesh({ policy: POLICY })
  mesh.agent('a', (act) => {
    const t = act.callStart('llm', 'mine', { messages: [{ role: 'user', content: `to ${EMAIL}` }] })
    assert.deepEqual(t.request, { messages: [{ role: 'user', content: 'to [REDACTED:email]' }] })
    assert.equal(t.holdResponse, true)
    const got = act.callComplete(t, { response: { text: `reply ${EMAIL}` } })
    assert.deepEqual(got, { text: 'reply [REDACTED:email]' })
    const u = act.callStart('llm', 'mine', { messages: [{ role: 'user', content: 'hi' }] })
    assert.throws(() => act.callComplete(u, { response: { text: SSN } }), am.PolicyDeniedError)
    assert.throws(() => act.callStart('llm', 'mine', { prompt: SSN }), (e) => e instanceof am.PolicyDeniedError && e.rule === 'no-ssn')
    return 'ok'
  })
  const r = await mesh.run(wf([{ id: 'a', type: 'agent', agent: 'a' }]))
  assert.equal(r.status, 'completed', JSON.stringify(r.error))
})

test('a blocked output fails the run with POLICY_DENIED and the verdict', async () => {
  const mesh = new am.Mesh({ policy: POLICY })
  mesh.agent('a', () => ({ note: `ssn ${SSN}` }))
  let r
  try {
    r = await mesh.run(wf([{ id: 'a', type: 'agent', agent: 'a' }]))
  } catch (e) {
    r = e.result
  }
  assert.equal(r.status, 'failed')
  assert.equal(r.error.code, 'POLICY_DENIED')
  assert.equal(r.error.verdict.rule, 'no-ssn')
  assert.ok(!JSON.stringify(r.error).includes(SSN))
})

test('a run goes on only under its own policy', async () => {
  const dir = tmp()
  const nodes = [{ id: 'ask', type: 'human' }, { id: 'b', type: 'agent', agent: 'echo', after: ['ask'] }]
  const make = (policy) => {
    const m = new am.Mesh({ logDir: dir, fsync: 'never', policy })
    m.agent('echo', (act) => act.deps.ask)
    return m
  }
  const first = await make(POLICY).run(wf(nodes), { runId: 'human' })
  assert.equal(first.status, 'waiting')
  const approvals = { ask: { by: EMAIL } }
  await assert.rejects(make(undefined).resume(first.logPath, { approvals }), (e) => e instanceof am.InvalidArgumentError && /was started under policy 'node-test'/.test(e.message))
  await assert.rejects(make({ version: 1, name: 'other' }).resume(first.logPath, { approvals }), /agentmesh policy check/)
  const done = await make(new am.Policy(POLICY)).resume(first.logPath, { approvals })
  assert.equal(done.status, 'completed')
  assert.deepEqual(done.output.b, { by: '[REDACTED:email]' })
  const report = await make(POLICY).reexecute(first.logPath)
  assert.equal(report.runId, 'human')
})

test('redact and checkPolicy', async () => {
  const r = am.redact(`😀 ${EMAIL}`)
  assert.deepEqual(r, { text: '😀 [REDACTED:email]', spans: [{ start: 2, end: 2 + EMAIL.length, kind: 'email', rule: 'email' }] })
  assert.equal(Array.from(`😀 ${EMAIL}`).slice(r.spans[0].start, r.spans[0].end).join(''), EMAIL)
  assert.equal(am.redact(`ssn ${SSN}`, POLICY).spans[0].rule, 'no-ssn')
  assert.throws(() => am.redact(3), am.InvalidArgumentError)

  const dir = tmp()
  const mesh = new am.Mesh({ logDir: dir, fsync: 'never' })
  mesh.agent('a', () => ({ to: EMAIL }))
  const plain = await mesh.run(wf([{ id: 'a', type: 'agent', agent: 'a' }]), { runId: 'plain' })
  const report = await am.checkPolicy(POLICY, [plain.logPath])
  assert.equal(report.policy.name, 'node-test')
  const change = report.logs[0].changes.find((c) => c.subject === 'output')
  assert.deepEqual([change.change, change.rule, change.path], ['nowRedact', 'pii-email', '/to'])
  assert.deepEqual(am.checkPolicySync(POLICY, plain.logPath), report)
  await assert.rejects(am.checkPolicy(POLICY, [path.join(dir, 'missing.jsonl')]), am.AgentMeshIOError)
})
