'use strict'
// Calls inside activations through the public API (lib/calls.js, src/calls.rs): host providers
// and tools, answers recorded across a crash (a child process SIGKILLed mid-agent), changed
// requests (NONDETERMINISM), late calls, ProviderError, streaming, batches; built-in
// providers against a real llama-server (AGENTMESH_LLAMA_SERVER, AGENTMESH_LLM_MODEL from
// `eval "$(bash .ci/llama-server.sh)"`; skipped without them unless CI is set).

const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')

const am = require('..')
const { tempDirs, callRecords } = require('./support/helpers')
const { skipWithoutServer, requireServerInCi, startLlamaServer, proxy } = require('./support/llama')

const tmp = tempDirs('agentmesh-calls-')
const CHILD = path.join(__dirname, 'support', 'calls-child.js')

function one(agent = 'x') {
  return am.Workflow.fromObject({ name: 'one', nodes: [{ id: 'a', type: 'agent', agent }] })
}

function ask(content, extra = {}) {
  return { model: 'm', messages: [{ role: 'user', content }], ...extra }
}

/** Interrupt a run once `ready` resolves; the log stays resumable. */
async function interrupted(mesh, wf, ready, runId) {
  const stop = new AbortController()
  ready.then(() => stop.abort('test'))
  const e = await mesh.run(wf, { runId, interrupt: stop.signal }).then(
    () => assert.fail('the run was not interrupted'),
    (err) => err,
  )
  assert.ok(e instanceof am.RunInterruptedError, String(e))
  return e.logPath
}

function deferred() {
  let resolve
  const promise = new Promise((r) => (resolve = r))
  return { promise, resolve }
}

describe('host providers and tools', () => {
  test('llm, tool and usage: recorded before the agent continues, replies as documented', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    const seen = []
    mesh.provider('p', (req, ticket) => {
      seen.push([ticket.call, ticket.live, ticket.idempotencyKey.length])
      return new am.Output({ text: `hi ${req.messages[0].content}`, finishReason: 'stop' }, { usage: { inputTokens: 5, outputTokens: 2 } })
    })
    mesh.callTool('add', async ({ x, y }) => x + y, { description: 'adds', schema: { type: 'object' } })
    mesh.agent('x', async (act) => {
      const r = await act.llm('p', ask('yo'))
      assert.ok(r instanceof am.LlmReply)
      const sum = await act.tool('add', { x: 2, y: 3 })
      return { text: r.text, finish: r.finishReason, toolCalls: r.toolCalls, usage: r.usage, recorded: r.recorded, sum }
    })
    const res = await mesh.run(one())
    assert.deepEqual(res.output.a, { text: 'hi yo', finish: 'stop', toolCalls: [], usage: { inputTokens: 5, outputTokens: 2 }, recorded: false, sum: 5 })
    assert.deepEqual(seen, [[1, true, 32]])
    assert.deepEqual(mesh.callTools(), { add: { description: 'adds', schema: { type: 'object' } } })
    const recs = callRecords(res.logPath)
    assert.deepEqual(
      recs.map((e) => [e.seq, e.sub, e.type, e.data.call]),
      [
        [4, 1, 'callStarted', 1],
        [4, 2, 'callCompleted', 1],
        [4, 3, 'callStarted', 2],
        [4, 4, 'callCompleted', 2],
      ],
    )
    assert.deepEqual(recs[0].data, { call: 1, kind: 'llm', name: 'p', request: ask('yo') })
    assert.deepEqual(recs[1].data.usage, { inputTokens: 5, outputTokens: 2 })
    assert.deepEqual(recs[3].data, { call: 2, response: 5 })
  })

  test('a throwing host function is a recorded callFailed; the agent gets ProviderError', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    class QuotaError extends Error {}
    mesh.provider('p', () => {
      throw new QuotaError('out of quota')
    })
    mesh.callTool('t', () => {
      throw new am.ActivationError('ToolError', 'no results', { retryable: false })
    })
    mesh.agent('x', async (act) => {
      const out = {}
      for (const [k, f] of [['llm', () => act.llm('p', ask('q'))], ['tool', () => act.tool('t', {})]]) {
        try {
          await f()
        } catch (e) {
          assert.ok(e instanceof am.ProviderError, String(e))
          out[k] = { code: e.code, message: e.message, type: e.errorType, status: e.status, retryable: e.retryable, details: e.details }
        }
      }
      return out
    })
    const res = await mesh.run(one())
    assert.deepEqual(res.output.a.llm, {
      code: 'PROVIDER_ERROR',
      message: '[PROVIDER_ERROR] QuotaError: out of quota',
      type: 'QuotaError',
      status: null,
      retryable: true,
      details: { type: 'QuotaError', status: null, retryable: true },
    })
    assert.equal(res.output.a.tool.retryable, false)
    assert.equal(res.output.a.tool.type, 'ToolError')
    const failed = callRecords(res.logPath).filter((e) => e.type === 'callFailed')
    assert.deepEqual(
      failed.map((e) => e.data.error),
      [
        { type: 'QuotaError', message: 'out of quota', retryable: true },
        { type: 'ToolError', message: 'no results', retryable: false },
      ],
    )
  })

  test('unknown provider or tool: UnknownAgentError, nothing recorded', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.agent('x', async (act) => {
      const codes = []
      for (const f of [() => act.llm('nope', ask('q')), () => act.tool('nope', {})]) {
        await f().then(
          () => codes.push('resolved'),
          (e) => codes.push(e instanceof am.UnknownAgentError ? e.message : String(e)),
        )
      }
      return codes
    })
    const res = await mesh.run(one())
    assert.deepEqual(res.output.a, [
      "[UNKNOWN_AGENT] no provider registered as 'nope' with this mesh",
      "[UNKNOWN_AGENT] no tool registered as 'nope' with this mesh",
    ])
    assert.deepEqual(callRecords(res.logPath), [])
  })

  test('bad registrations are refused at once', () => {
    const mesh = new am.Mesh()
    assert.throws(() => mesh.provider('p', 42), am.InvalidArgumentError)
    assert.throws(() => mesh.provider('p', { kind: 'gemini', baseUrl: 'http://h' }), (e) => e instanceof am.InvalidArgumentError && /kind/.test(e.message))
    assert.throws(() => mesh.callTool('t', () => 1, { nope: 1 }), am.InvalidArgumentError)
  })

  test('callStartMany numbers a batch up front; results completed in reverse order land at their subs', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.agent('x', (act) => {
      const tickets = act.callStartMany([1, 2, 3].map((i) => ({ kind: 'tool', name: 'search', request: { q: i } })))
      assert.deepEqual(tickets.map((t) => [t.call, t.live, t.recorded]), [[1, true, false], [2, true, false], [3, true, false]])
      assert.equal(tickets[1].toolCallId(0), `call_${tickets[1].seq}_2_0`)
      for (const t of [...tickets].reverse()) act.callComplete(t, { response: { hits: [t.call] } })
      return 'ok'
    })
    const res = mesh.runSync(one())
    assert.deepEqual(
      callRecords(res.logPath).map((e) => [e.sub, e.type, e.data.call]),
      [
        [1, 'callStarted', 1],
        [2, 'callCompleted', 1],
        [3, 'callStarted', 2],
        [4, 'callCompleted', 2],
        [5, 'callStarted', 3],
        [6, 'callCompleted', 3],
      ],
    )
  })

  test('concurrent act.llm calls take numbers in program order, whatever order they answer in', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.provider('p', async (req) => {
      const n = Number(req.messages[0].content)
      await new Promise((r) => setTimeout(r, 40 - n * 10))
      return { text: String(n) }
    })
    mesh.agent('x', async (act) => (await Promise.all([1, 2, 3].map((i) => act.llm('p', ask(String(i)))))).map((r) => r.text))
    const res = await mesh.run(one())
    assert.deepEqual(res.output.a, ['1', '2', '3'])
    const started = callRecords(res.logPath).filter((e) => e.type === 'callStarted')
    assert.deepEqual(started.map((e) => [e.data.call, e.data.request.messages[0].content]), [[1, '1'], [2, '2'], [3, '3']])
  })
})

describe('late calls', () => {
  test('a call started after the agent returned is refused with InvalidCompletionError; nothing is logged', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    let invoked = 0
    mesh.provider('p', () => {
      invoked++
      return { text: 'x' }
    })
    const late = deferred()
    mesh.agent('x', (act) => {
      setTimeout(() => act.llm('p', ask('late')).then(() => late.resolve('resolved'), late.resolve), 20)
      return 'done'
    })
    const res = await mesh.run(one())
    const e = await late.promise
    assert.ok(e instanceof am.InvalidCompletionError, String(e))
    assert.match(e.message, /ended \(its agent returned\)/)
    assert.equal(invoked, 0)
    assert.deepEqual(callRecords(res.logPath), [])
  })

  test('an unawaited call finishing after the agent returned: its result is refused, never logged', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.provider('p', () => new Promise((r) => setTimeout(() => r({ text: 'slow' }), 50)))
    const outcome = deferred()
    mesh.agent('x', (act) => {
      act.llm('p', ask('unawaited')).then(() => outcome.resolve('resolved'), outcome.resolve)
      return 'done'
    })
    const res = await mesh.run(one())
    const e = await outcome.promise
    assert.ok(e instanceof am.InvalidCompletionError, String(e))
    // Started before the agent returned (so recorded as started), never completed.
    assert.deepEqual(callRecords(res.logPath).map((r) => r.type), ['callStarted'])
    assert.equal(am.verifyLogSync(res.logPath).finished, 'runCompleted')
  })
})

describe('recorded answers', () => {
  test('after an interruption: recorded calls are answered from the log, a stream as one chunk', async () => {
    const dir = tmp()
    const invoked = []
    const mesh = new am.Mesh({ logDir: dir })
    mesh.provider('p', (req) => {
      invoked.push(req.messages[0].content)
      return new am.Output({ text: `answer to ${req.messages[0].content}`, finishReason: 'stop' }, { usage: { inputTokens: 1, outputTokens: 3 } })
    })
    const made = deferred()
    mesh.agent('x', async (act) => {
      await act.llm('p', ask('one'))
      made.resolve()
      return new Promise(() => {}) // interrupted here
    })
    const logPath = await interrupted(mesh, one(), made.promise, 'rec-1')
    assert.deepEqual(invoked, ['one'])

    const again = new am.Mesh({ logDir: dir })
    again.provider('p', (req) => {
      invoked.push(req.messages[0].content)
      return { text: `live ${req.messages[0].content}` }
    })
    again.agent('x', async (act) => {
      const s = act.llmStream('p', ask('one'))
      const chunks = []
      for await (const c of s) chunks.push(c)
      const r = await s.reply
      const live = act.llmStream('p', ask('two'))
      const liveChunks = []
      for await (const c of live) liveChunks.push(c)
      return { chunks, recorded: r.recorded, usage: r.usage, text: r.text, liveChunks, liveRecorded: (await live.reply).recorded }
    })
    const res = await again.resume(logPath)
    assert.deepEqual(res.output.a, {
      chunks: [{ text: 'answer to one' }],
      recorded: true,
      usage: { inputTokens: 1, outputTokens: 3 },
      text: 'answer to one',
      liveChunks: [{ text: 'live two' }],
      liveRecorded: false,
    })
    assert.deepEqual(invoked, ['one', 'two'])
  })

  test('a changed request after a resume is NONDETERMINISM naming the field; a recorded error is ProviderError again', async () => {
    const dir = tmp()
    const mesh = new am.Mesh({ logDir: dir })
    mesh.provider('p', () => {
      throw new am.ActivationError('RateLimited', 'slow down')
    })
    const made = deferred()
    mesh.agent('x', async (act) => {
      await act.llm('p', ask('one')).catch(() => {})
      made.resolve()
      return new Promise(() => {})
    })
    const logPath = await interrupted(mesh, one(), made.promise, 'nd-1')

    const same = new am.Mesh({ logDir: dir })
    let invoked = 0
    same.provider('p', () => {
      invoked++
      return { text: 'never' }
    })
    same.agent('x', async (act) => {
      try {
        await act.llm('p', ask('one'))
        return 'resolved'
      } catch (e) {
        assert.ok(e instanceof am.ProviderError)
        return { message: e.message, type: e.errorType, retryable: e.retryable }
      }
    })
    // Fork-free check first: a changed request (resume of a copy of the log).
    const copy = path.join(tmp(), path.basename(logPath))
    fs.copyFileSync(logPath, copy)
    const changed = new am.Mesh({ logDir: path.dirname(copy) })
    changed.provider('p', () => ({ text: 'never' }))
    const seen = []
    changed.agent('x', async (act) => {
      try {
        await act.llm('p', ask('one', { temperature: 0.5 }))
        return 'resolved'
      } catch (e) {
        seen.push(e)
        throw e
      }
    })
    const failed = await changed.resume(copy).then(
      () => assert.fail('the changed agent must not complete'),
      (e) => e,
    )
    assert.ok(failed instanceof am.AgentFailedError, String(failed))
    assert.equal(seen.length, 1)
    assert.ok(seen[0] instanceof am.NondeterminismError, String(seen[0]))
    assert.match(seen[0].message, /request/)
    assert.ok(seen[0].field !== null && /request/.test(seen[0].field), `${seen[0].message} / field ${seen[0].field}`)
    assert.equal(failed.cause, seen[0])

    const res = await same.resume(logPath)
    assert.deepEqual(res.output.a, { message: '[PROVIDER_ERROR] RateLimited: slow down', type: 'RateLimited', retryable: true })
    assert.equal(invoked, 0)
  })
})

describe('a crash mid-agent (SIGKILL), resumed in a new process', () => {
  function spawnChild(args) {
    const child = childProcess.spawn(process.execPath, [CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out, err })))
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000) // never hang the suite
    done.then(() => clearTimeout(kill))
    return { child, done }
  }

  async function waitFor(pred, what) {
    for (let i = 0; i < 1500; i++) {
      if (pred()) return
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.fail(`timed out waiting for ${what}`)
  }

  test('no recorded call runs again; the in-flight one is re-issued with the same idempotency key', async () => {
    const logDir = tmp()
    const counter = path.join(tmp(), 'invocations.txt')
    fs.writeFileSync(counter, '')
    const read = () => fs.readFileSync(counter, 'utf8').split('\n').filter(Boolean)
    const first = spawnChild({ mode: 'run', logDir, runId: 'crash-1', counter, provider: 'host', calls: 4, hangAt: 3 })
    await waitFor(() => read().includes('inflight'), 'the third call')
    first.child.kill('SIGKILL')
    const killed = await first.done
    assert.equal(killed.signal, 'SIGKILL', killed.err)
    const before = read().filter((l) => l !== 'inflight')
    assert.deepEqual(before.map((l) => l.split(' ')[0]), ['1', '2', '3'])
    const logPath = path.join(logDir, 'crash-1.jsonl')
    assert.deepEqual(am.readLogSync(logPath).filter((e) => e.type.startsWith('call')).map((e) => e.type), ['callStarted', 'callCompleted', 'callStarted', 'callCompleted', 'callStarted'])

    fs.writeFileSync(counter, '')
    const second = spawnChild({ mode: 'resume', logDir, logPath, counter, provider: 'host', calls: 4, hangAt: -1 })
    const resumed = await second.done
    assert.equal(resumed.code, 0, resumed.err)
    const result = JSON.parse(resumed.out.split('RESULT ')[1])
    assert.equal(result.status, 'completed')
    assert.deepEqual(result.output.a.texts, ['answer 1', 'answer 2', 'answer 3', 'answer 4'])
    const after = read()
    // Calls 1 and 2 came from the log; 3 was re-issued under its key; 4 is new.
    assert.deepEqual(after.map((l) => l.split(' ')[0]), ['3', '4'])
    assert.equal(after[0], before[2], 'the in-flight call is re-issued with the same idempotency key and request')
    const calls = callRecords(logPath)
    assert.deepEqual(calls.map((e) => [e.sub, e.type]), [1, 2, 3, 4, 5, 6, 7, 8].map((s) => [s, s % 2 ? 'callStarted' : 'callCompleted']))
  })
})

// Built-in providers against the real llama-server ---------------------------------------------

requireServerInCi('calls')

describe('built-in providers against llama-server', { skip: skipWithoutServer }, () => {
  let server = null
  let port = 0

  before(async () => {
    server = await startLlamaServer()
    port = server.port
  })

  after(() => {
    if (server !== null) server.stop()
  })

  const request = (content) => ({ model: 'smollm2', messages: [{ role: 'user', content }], maxTokens: 16, temperature: 0 })

  for (const kind of ['openai', 'anthropic']) {
    test(`${kind}: act.llm and act.llmStream, recorded; the stream assembles to the reply`, async () => {
      const mesh = new am.Mesh({ logDir: tmp() })
      mesh.provider('local', { kind, baseUrl: `http://127.0.0.1:${port}/v1`, maxRetries: 0 })
      mesh.agent('x', async (act) => {
        const whole = await act.llm('local', request('Name a colour.'))
        const s = act.llmStream('local', request('Name a colour.'))
        const chunks = []
        for await (const c of s) chunks.push(c)
        const streamed = await s.reply
        return { whole: whole.response, wholeUsage: whole.usage, streamed: streamed.response, streamedUsage: streamed.usage, chunks }
      })
      const res = await mesh.run(one())
      const o = res.output.a
      assert.ok(o.whole.text.trim().length > 0, JSON.stringify(o))
      assert.ok(['stop', 'length'].includes(o.whole.finishReason))
      assert.ok(o.wholeUsage.outputTokens >= 1 && o.wholeUsage.outputTokens <= 16, JSON.stringify(o.wholeUsage))
      assert.ok(o.chunks.length > 1, `${o.chunks.length} chunks`)
      assert.equal(o.chunks.map((c) => c.text ?? '').join(''), o.streamed.text)
      assert.deepEqual(o.streamed, o.whole, 'temperature 0: the same answer streamed')
      assert.deepEqual(o.streamedUsage, o.wholeUsage)
      const recs = callRecords(res.logPath)
      assert.deepEqual(recs.map((e) => e.type), ['callStarted', 'callCompleted', 'callStarted', 'callCompleted'])
      // The request is recorded as the provider normalised it.
      assert.equal(recs[0].data.request.maxTokens, 16)
      assert.deepEqual(recs[1].data.response, o.whole)
    })
  }

  test('an HTTP error is a recorded callFailed; the agent gets ProviderError with status', async () => {
    const bad = http.createServer((req, res) => {
      req.resume()
      res.writeHead(429, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit' } }))
    })
    await new Promise((r) => bad.listen(0, '127.0.0.1', r))
    try {
      const mesh = new am.Mesh({ logDir: tmp() })
      mesh.provider('busy', { kind: 'openai', baseUrl: `http://127.0.0.1:${bad.address().port}/v1`, maxRetries: 0 })
      mesh.agent('x', async (act) => {
        try {
          await act.llm('busy', request('hi'))
          return 'resolved'
        } catch (e) {
          return { cls: e.constructor.name, status: e.status, retryable: e.retryable, type: e.errorType }
        }
      })
      const res = await mesh.run(one())
      assert.deepEqual(res.output.a, { cls: 'ProviderError', status: 429, retryable: true, type: res.output.a.type })
      const failed = callRecords(res.logPath).filter((e) => e.type === 'callFailed')
      assert.equal(failed.length, 1)
      assert.equal(failed[0].data.error.status, 429)
    } finally {
      bad.close()
    }
  })

  test('a two-agent workflow SIGKILLed mid-call and resumed: no recorded call re-sent, the log as an uninterrupted run', async () => {
    const px = await proxy(port)
    try {
      const provider = { kind: 'openai', baseUrl: `http://127.0.0.1:${px.port}/v1`, maxRetries: 0 }
      const run = (args) => {
        const child = childProcess.spawn(process.execPath, [CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] })
        let out = ''
        let err = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (err += d))
        const kill = setTimeout(() => child.kill('SIGKILL'), 120_000)
        const done = new Promise((resolve) => child.on('exit', (code, signal) => (clearTimeout(kill), resolve({ code, signal, out, err }))))
        return { child, done }
      }

      // Uninterrupted reference.
      const refDir = tmp()
      const ref = await run({ mode: 'run', logDir: refDir, runId: 'llm-chain', provider }).done
      assert.equal(ref.code, 0, ref.err)
      assert.equal(px.state.count, 2)

      // Killed while the second agent's request is held at the proxy.
      px.state.count = 0
      const dir = tmp()
      let victim = null
      const killed = deferred()
      px.state.onRequest = (n) => {
        if (n !== 2) return 'forward'
        victim.child.kill('SIGKILL')
        killed.resolve()
        return 'hold'
      }
      victim = run({ mode: 'run', logDir: dir, runId: 'llm-chain', provider })
      await killed.promise
      const dead = await victim.done
      assert.equal(dead.signal, 'SIGKILL')
      px.state.onRequest = null
      const logPath = path.join(dir, 'llm-chain.jsonl')
      assert.deepEqual(
        am.readLogSync(logPath).filter((e) => e.type.startsWith('call')).map((e) => [e.node, e.type]),
        [['first', 'callStarted'], ['first', 'callCompleted'], ['second', 'callStarted']],
      )

      px.state.count = 0
      const resumed = await run({ mode: 'resume', logDir: dir, logPath, provider }).done
      assert.equal(resumed.code, 0, resumed.err)
      assert.equal(px.state.count, 1, 'only the in-flight call is sent again')
      assert.ok(am.canonicalLogSync(logPath).equals(am.canonicalLogSync(path.join(refDir, 'llm-chain.jsonl'))), 'the resumed log equals the uninterrupted one')
    } finally {
      px.server.closeAllConnections()
      px.server.close()
    }
  })

  test('the same LLM workflow gives byte-identical canonical logs from Rust, Python and Node', async (t) => {
    const REPO = path.join(__dirname, '..', '..')
    const target = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target')
    const rust = path.join(target, 'debug', 'examples', 'llm_workflow')
    const python = process.env.AGENTMESH_PYTHON || '/tmp/pyenv/bin/python'
    for (const [what, file, how] of [
      ['the Rust side', rust, 'cargo test (or cargo build -p agentmesh-providers --example llm_workflow) builds it'],
      ['a Python with the binding', python, 'set AGENTMESH_PYTHON'],
    ]) {
      if (fs.existsSync(file)) continue
      if (process.env.CI) assert.fail(`${what} is missing at ${file}: ${how}`)
      t.skip(`${what} is missing at ${file}: ${how}`)
      return
    }
    // agentmesh-providers/examples/llm_workflow.rs is the Rust side; the agents below are
    // the same in Node and Python: 2 questions for research nodes, 1 for the others.
    const dir = tmp()
    const workflowPath = path.join(dir, 'workflow.json')
    fs.writeFileSync(workflowPath, JSON.stringify({ name: 'llm-x', nodes: [
      { id: 'plan', type: 'agent', agent: 'asker' },
      { id: 'research_a', type: 'agent', agent: 'asker', after: ['plan'] },
      { id: 'research_b', type: 'agent', agent: 'asker', after: ['plan'] },
      { id: 'write', type: 'agent', agent: 'asker', after: ['research_a', 'research_b'] },
    ] }))
    const baseUrl = `http://127.0.0.1:${port}/v1`
    const ask = (node, i) => ({ model: 'smollm2', messages: [{ role: 'user', content: `Say one word about ${node} number ${i}.` }], maxTokens: 8, temperature: 0, seed: 1 })
    const exec = (cmd, args) => new Promise((resolve) => {
      childProcess.execFile(cmd, args, { timeout: 300_000 }, (err, stdout, stderr) => resolve({ err, stderr }))
    })

    const nodeDir = path.join(dir, 'node')
    const mesh = new am.Mesh({ logDir: nodeDir })
    mesh.provider('local', { kind: 'openai', baseUrl, maxRetries: 0 })
    mesh.agent('asker', async (act) => {
      const answers = []
      for (let i = 0; i < (act.node.startsWith('research') ? 2 : 1); i++) answers.push((await act.llm('local', ask(act.node, i))).text)
      return answers
    })
    const res = await mesh.run(am.Workflow.fromJson(fs.readFileSync(workflowPath, 'utf8')), { runId: 'llm-x' })
    assert.equal(res.status, 'completed', JSON.stringify(res.error))

    const rustDir = path.join(dir, 'rust')
    const r = await exec(rust, [workflowPath, baseUrl, rustDir, 'llm-x'])
    assert.equal(r.err, null, r.stderr)

    const pyDir = path.join(dir, 'python')
    const script = `
import sys, agentmesh
workflow, base_url, log_dir = sys.argv[1:4]
mesh = agentmesh.Mesh(log_dir=log_dir)
mesh.provider("local", {"kind": "openai", "baseUrl": base_url, "maxRetries": 0})
@mesh.agent("asker")
def asker(act):
    n = 2 if act.node.startswith("research") else 1
    return [act.llm("local", {"model": "smollm2", "messages": [{"role": "user", "content": f"Say one word about {act.node} number {i}."}], "maxTokens": 8, "temperature": 0, "seed": 1}).text for i in range(n)]
r = mesh.run(agentmesh.Workflow.from_json(open(workflow).read()), run_id="llm-x")
assert r.status == "completed", r.error
`
    const p = await exec(python, ['-c', script, workflowPath, baseUrl, pyDir])
    assert.equal(p.err, null, p.stderr)

    const canonical = (d) => am.canonicalLogSync(path.join(d, 'llm-x.jsonl'))
    const fromNode = canonical(nodeDir)
    assert.equal(callRecords(path.join(nodeDir, 'llm-x.jsonl')).filter((e) => e.type === 'callCompleted').length, 6)
    assert.ok(canonical(rustDir).equals(fromNode), 'Rust and Node wrote the same canonical log')
    assert.ok(canonical(pyDir).equals(fromNode), 'Python and Node wrote the same canonical log')
  })
})

describe('re-execute replay', () => {
  function meshWith(prompt, counter, extraCall = false) {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.provider('p', (req) => {
      counter.n += 1
      return { text: `answer to ${req.messages[0].content}`, finishReason: 'stop' }
    })
    mesh.agent('x', async (act) => {
      const r = await act.llm('p', ask(prompt))
      if (extraCall) await act.llm('p', ask('more'))
      return { said: r.text }
    })
    return mesh
  }

  test('the agents run again against the recorded answers; a change is NondeterminismError at its call', async () => {
    const first = { n: 0 }
    const res = await meshWith('hello', first).run(one())
    assert.equal(first.n, 1)
    const again = { n: 0 }
    const report = await meshWith('hello', again).reexecute(res.logPath)
    assert.deepEqual(report, { runId: res.runId, activations: 1, calls: 1, events: report.events })
    assert.equal(again.n, 0, 'nothing is sent')
    const changed = await meshWith('hello there', again).reexecute(res.logPath).then(
      () => assert.fail('a changed prompt replayed equal'),
      (e) => e,
    )
    assert.ok(changed instanceof am.NondeterminismError, String(changed))
    assert.equal(changed.field, 'data.request.messages[0].content')
    assert.equal(changed.expected, '"hello"')
    const extra = await meshWith('hello', again, true).reexecute(res.logPath).then(
      () => assert.fail('an extra call replayed equal'),
      (e) => e,
    )
    assert.ok(extra instanceof am.NondeterminismError, String(extra))
    assert.equal(again.n, 0, 'a re-execution never calls')
  })
})
