'use strict'
// Tool access and MCP tools through the public API (lib/tools.js, lib/calls.js, src/tools.rs):
// allowlists (PolicyDeniedError, nothing recorded, the tool not called), argument schemas,
// rate limits (live calls wait, calls the log answers do not), bad registrations; MCP servers
// spawned off the JS thread, their tools called from agents and recorded, their failures
// typed. The MCP tests use the real reference server (@modelcontextprotocol/server-everything)
// installed by .ci/run under AGENTMESH_MCP_SERVERS; without it they skip, unless CI is set.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const path = require('node:path')

const am = require('..')
const { tempDirs, thrown, callRecords } = require('./support/helpers')

const tmp = tempDirs('tools')

const SERVERS = process.env.AGENTMESH_MCP_SERVERS
const EVERYTHING = SERVERS && path.join(SERVERS, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js')
const noServers = !SERVERS

/** The server-everything command line (the server program itself, not a wrapper). */
function everything() {
  return [process.execPath, EVERYTHING, 'stdio']
}

/** A workflow of one agent node per agent name (`a0`, `a1`, ... in order, in parallel). */
function flow(...agents) {
  return am.Workflow.fromObject({ name: 'tools', nodes: agents.map((agent, i) => ({ id: `a${i}`, type: 'agent', agent })) })
}

/** What the Promise rejected with (fails when it resolves). */
async function rejection(promise) {
  return promise.then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e) => e,
  )
}

/** The error a call made inside an agent raised, as plain facts the run can record. */
async function failure(promise) {
  const e = await rejection(promise)
  return { cls: e.constructor.name, code: e.code, message: e.message, type: e.errorType ?? null }
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    if (e.code === 'ESRCH') return false
    throw e
  }
}

describe('host tools: allowlist, schema, rate limit', () => {
  test('an allowed agent calls the tool; another gets PolicyDeniedError, nothing recorded, the tool not called', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    const calls = []
    mesh.callTool(
      'search',
      (args) => {
        calls.push(args.q)
        return [`result for ${args.q}`]
      },
      { description: 'web search', agents: ['researcher'] },
    )
    mesh.agent('researcher', async (act) => act.tool('search', { q: 'logs' }))
    mesh.agent('writer', async (act) => failure(act.tool('search', { q: 'drafts' })))
    const res = await mesh.run(flow('researcher', 'writer'))
    assert.deepEqual(res.output.a0, ['result for logs'])
    assert.deepEqual(res.output.a1, {
      cls: 'PolicyDeniedError',
      code: 'POLICY_DENIED',
      message: "[POLICY_DENIED] agent 'writer' may not call tool 'search' (agents allowed: researcher); nothing was recorded",
      type: null,
    })
    assert.deepEqual(calls, ['logs'])
    const started = callRecords(res.logPath).filter((e) => e.type === 'callStarted')
    assert.deepEqual(
      started.map((e) => e.data.request),
      [{ q: 'logs' }],
    )
    // An empty allowlist: nobody may call it.
    const none = new am.Mesh().callTool('t', () => 1, { agents: [] })
    none.agent('x', (act) => failure(act.tool('t', {})))
    const r = await none.run(flow('x'))
    assert.equal(r.output.a0.message, "[POLICY_DENIED] agent 'x' may not call tool 't' (agents allowed: none); nothing was recorded")
    assert.ok(am.PolicyDeniedError.prototype instanceof am.AgentMeshError)
    assert.equal(am.PolicyDeniedError.code, 'POLICY_DENIED')
    assert.equal(am.errorClass('POLICY_DENIED'), am.PolicyDeniedError)
  })

  test('the allowlist is checked before the schema; both before anything is recorded', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.callTool('add', ({ x, y }) => x + y, {
      schema: { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'] },
      agents: ['calc'],
    })
    mesh.agent('other', (act) => failure(act.tool('add', { x: 'two' })))
    const res = await mesh.run(flow('other'))
    assert.equal(res.output.a0.code, 'POLICY_DENIED')
    assert.deepEqual(callRecords(res.logPath), [])
  })

  test('bad arguments: InvalidArgumentError naming the path; the function not called, nothing recorded', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    let invoked = 0
    const schema = {
      type: 'object',
      properties: { x: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } },
      required: ['x'],
      additionalProperties: false,
    }
    mesh.callTool(
      'add',
      (args) => {
        invoked++
        // A RawJson argument reaches the function as given (its text was checked).
        return (args instanceof am.RawJson ? JSON.parse(args.text).x : args.x) + 1
      },
      { schema },
    )
    mesh.agent('x', async (act) => {
      const out = []
      out.push(await failure(act.tool('add', { x: 'two' })))
      out.push(await failure(act.tool('add', { x: 1, tags: ['a', 3] })))
      out.push(await failure(act.tool('add', {})))
      out.push(await failure(act.tool('add', new am.RawJson('{"x": 1.5}'))))
      out.push(await failure(act.tool('add', 'not an object')))
      return { out, ok: await act.tool('add', { x: 41 }), raw: await act.tool('add', new am.RawJson('{"x": 1}')) }
    })
    const res = await mesh.run(flow('x'))
    const { out, ok, raw } = res.output.a0
    assert.deepEqual(
      out.map((f) => [f.cls, f.code]),
      Array(5).fill(['InvalidArgumentError', 'INVALID_ARGUMENT']),
    )
    assert.equal(out[0].message, `[INVALID_ARGUMENT] tool call 'add': arguments at /x: "two" is not of type "integer"`)
    assert.match(out[1].message, /^\[INVALID_ARGUMENT\] tool call 'add': arguments at \/tags\/1: 3 is not of type "string"$/)
    assert.match(out[2].message, /^\[INVALID_ARGUMENT\] tool call 'add': arguments at \/: "x" is a required property$/)
    assert.match(out[3].message, /arguments at \/x: 1\.5 is not of type "integer"/)
    assert.match(out[4].message, /arguments at \/: "not an object" is not of type "object"/)
    assert.deepEqual([ok, raw, invoked], [42, 2, 2])
    // Only the two good calls are in the log.
    assert.deepEqual(
      callRecords(res.logPath)
        .filter((e) => e.type === 'callStarted')
        .map((e) => e.data.call),
      [1, 2],
    )
  })

  test('rate limit: three live calls at 1 per 150 ms take at least two windows; calls the log answers never wait', async () => {
    const WINDOW = 150
    const dir = tmp()
    const starts = []
    const mesh = new am.Mesh({ logDir: dir })
    mesh.callTool(
      'ping',
      ({ n }) => {
        starts.push(performance.now())
        return n * 10
      },
      { rateLimit: { calls: 1, perMs: WINDOW } },
    )
    let before = 0
    let ticked = false
    const agent = async (act) => {
      before = performance.now()
      // The event loop keeps running while a call waits for its slot.
      let ticks = 0
      const timer = setInterval(() => ticks++, 10)
      const out = [await act.tool('ping', { n: 1 }), await act.tool('ping', { n: 2 }), await act.tool('ping', { n: 3 })]
      clearInterval(timer)
      ticked = ticks > 0
      return out
    }
    mesh.agent('x', agent)
    const res = await mesh.run(flow('x'))
    assert.deepEqual(res.output.a0, [10, 20, 30])
    assert.equal(starts.length, 3)
    assert.ok(starts[2] - before >= 2 * WINDOW, `the third call started ${starts[2] - before} ms after the first was made`)
    assert.ok(ticked, 'timers ran while the calls waited')

    // Re-executed with a limit of 1 call per 10 minutes: every call is answered from the log,
    // none reserves a slot, so none waits (a second reservation would wait 10 minutes).
    const replay = new am.Mesh({ logDir: dir })
    let invoked = 0
    replay.callTool(
      'ping',
      () => {
        invoked++
        return 0
      },
      { rateLimit: { calls: 1, perMs: 600_000 } },
    )
    replay.agent('x', agent)
    const report = await replay.reexecute(res.logPath)
    assert.equal(report.calls, 3)
    assert.equal(invoked, 0)
  })

  test('rate limit after a resume: the recorded calls do not wait, the live one takes the first slot', async () => {
    const dir = tmp()
    const mesh = new am.Mesh({ logDir: dir })
    mesh.callTool('ping', ({ n }) => n, { rateLimit: { calls: 1, perMs: 150 } })
    const stop = new AbortController()
    mesh.agent('x', async (act) => {
      await act.tool('ping', { n: 1 })
      await act.tool('ping', { n: 2 })
      stop.abort('test')
      return new Promise(() => {})
    })
    const e = await rejection(mesh.run(flow('x'), { runId: 'rl-resume', interrupt: stop.signal }))
    assert.ok(e instanceof am.RunInterruptedError, String(e))

    // 1 call per 10 minutes: the two recorded calls must not reserve, or the live third waits.
    const again = new am.Mesh({ logDir: dir })
    const live = []
    again.callTool(
      'ping',
      ({ n }) => {
        live.push(n)
        return n
      },
      { rateLimit: { calls: 1, perMs: 600_000 } },
    )
    again.agent('x', async (act) => [await act.tool('ping', { n: 1 }), await act.tool('ping', { n: 2 }), await act.tool('ping', { n: 3 })])
    const res = await again.resume(e.logPath)
    assert.deepEqual(res.output.a0, [1, 2, 3])
    assert.deepEqual(live, [3])
  })

  test('bad registrations are typed errors naming the tool and the field', () => {
    const mesh = new am.Mesh()
    const cases = [
      [{ agents: 'researcher' }, /tool 't': agents must be an array of agent names, not string/],
      [{ agents: [1] }, /tool 't': agents\[0\] must be an agent name \(a string\), not number/],
      [{ agents: ['a', null] }, /tool 't': agents\[1\] must be an agent name \(a string\), not null/],
      [{ rateLimit: { calls: 0, perMs: 100 } }, /tool 't': rateLimit\.calls must be an integer from 1 to 4294967295, not 0/],
      [{ rateLimit: { calls: 1.5, perMs: 100 } }, /tool 't': rateLimit\.calls must be an integer/],
      [{ rateLimit: { calls: -1, perMs: 100 } }, /tool 't': rateLimit\.calls must be an integer/],
      [{ rateLimit: { calls: NaN, perMs: 100 } }, /tool 't': rateLimit\.calls must be an integer.*not NaN/],
      [{ rateLimit: { calls: 2 ** 32, perMs: 100 } }, /tool 't': rateLimit\.calls must be an integer/],
      [{ rateLimit: { calls: 1, perMs: 0 } }, /tool 't': rateLimit\.perMs must be a positive finite number of milliseconds, not 0/],
      [{ rateLimit: { calls: 1, perMs: -5 } }, /tool 't': rateLimit\.perMs must be a positive/],
      [{ rateLimit: { calls: 1, perMs: NaN } }, /tool 't': rateLimit\.perMs must be a positive.*not NaN/],
      [{ rateLimit: { calls: 1, perMs: Infinity } }, /tool 't': rateLimit\.perMs must be a positive.*not inf/],
      [{ rateLimit: { calls: 1, perMs: 1e-12 } }, /tool 't': rateLimit\.perMs must be a positive/],
      [{ rateLimit: { calls: true, perMs: 100 } }, /tool 't': rateLimit\.calls must be a number, not boolean/],
      [{ rateLimit: { calls: '1', perMs: 100 } }, /tool 't': rateLimit\.calls must be a number, not string/],
      [{ rateLimit: { calls: 1, perMs: '100' } }, /tool 't': rateLimit\.perMs must be a number, not string/],
      [{ rateLimit: { calls: 1 } }, /tool 't': rateLimit\.perMs must be a number, not undefined/],
      [{ rateLimit: { calls: 1, perMs: 100, burst: 2 } }, /tool 't': rateLimit has an unknown field 'burst'/],
      [{ rateLimit: 5 }, /tool 't': rateLimit must be \{calls, perMs\}, not number/],
      [{ rateLimit: [1, 100] }, /tool 't': rateLimit must be \{calls, perMs\}, not an array/],
      [{ schema: { type: 'nope' } }, /tool 't': its argument schema is invalid/],
      [{ description: 3 }, /tool 't': description must be a string/],
      [{ nope: 1 }, /tool 't': unknown option 'nope'/],
      ['options', /tool 't': options must be an object/],
    ]
    for (const [options, pattern] of cases) {
      const e = thrown(() => mesh.callTool('t', () => 1, options))
      assert.ok(e instanceof am.InvalidArgumentError, `${JSON.stringify(options)}: ${e}`)
      assert.match(e.message, pattern, JSON.stringify(options))
    }
    assert.deepEqual(mesh.callTools(), {})
    // Good ones register; callTools lists them.
    mesh.callTool('t', () => 1, { agents: ['a'], rateLimit: { calls: 3, perMs: 0.5 }, schema: { type: 'object' }, description: 'd' })
    assert.deepEqual(mesh.callTools(), { t: { description: 'd', schema: { type: 'object' } } })
  })
})

if (noServers && process.env.CI) {
  test('the MCP reference servers are installed in CI', () => assert.fail('CI needs AGENTMESH_MCP_SERVERS (.ci/run installs them into target/mcp-servers)'))
}

describe('MCP tools (server-everything)', { skip: noServers && 'AGENTMESH_MCP_SERVERS not set' }, () => {
  test('discover the tools, call echo and get-sum from an agent; the log has the calls', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    mesh.callTool('local', () => 'here', { description: 'a host tool' })
    const names = await mesh.mcp({ command: everything() })
    assert.ok(names.includes('echo') && names.includes('get-sum'), String(names))
    const listed = mesh.callTools()
    assert.deepEqual(Object.keys(listed).sort(), ['local', ...names].sort())
    assert.equal(listed.echo.description, 'Echoes back the input string')
    assert.deepEqual(listed.echo.schema.required, ['message'])
    assert.equal(listed['get-sum'].schema.properties.a.type, 'number')
    mesh.agent('x', async (act) => ({
      echo: await act.tool('echo', { message: 'hi' }),
      sum: await act.tool('get-sum', { a: 2, b: 3 }),
      local: await act.tool('local', null),
    }))
    const res = await mesh.run(flow('x'))
    assert.deepEqual(res.output.a0, {
      echo: { content: [{ type: 'text', text: 'Echo: hi' }] },
      sum: { content: [{ type: 'text', text: 'The sum of 2 and 3 is 5.' }] },
      local: 'here',
    })
    const recs = callRecords(res.logPath)
    assert.deepEqual(
      recs.map((e) => [e.type, e.data.call]),
      [
        ['callStarted', 1],
        ['callCompleted', 1],
        ['callStarted', 2],
        ['callCompleted', 2],
        ['callStarted', 3],
        ['callCompleted', 3],
      ],
    )
    assert.deepEqual(recs[0].data, { call: 1, kind: 'tool', name: 'echo', request: { message: 'hi' } })
    assert.deepEqual(recs[1].data.response, { content: [{ type: 'text', text: 'Echo: hi' }] })
    assert.deepEqual(recs[2].data, { call: 2, kind: 'tool', name: 'get-sum', request: { a: 2, b: 3 } })

    // Re-executed against the log: the recorded answers, the same completions.
    const report = await mesh.reexecute(res.logPath)
    assert.equal(report.calls, 3)
    await mesh.close()
  })

  test('bad arguments: InvalidArgumentError naming the path, nothing recorded', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    await mesh.mcp({ command: everything() })
    mesh.agent('x', async (act) => [
      await failure(act.tool('get-sum', { a: 'seventeen', b: 1 })),
      await failure(act.tool('echo', {})),
      await failure(act.tool('echo', 'hi')),
    ])
    const res = await mesh.run(flow('x'))
    const [sum, echo, notObject] = res.output.a0
    assert.deepEqual(sum, {
      cls: 'InvalidArgumentError',
      code: 'INVALID_ARGUMENT',
      message: `[INVALID_ARGUMENT] tool call 'get-sum': arguments at /a: "seventeen" is not of type "number"`,
      type: null,
    })
    assert.equal(echo.message, `[INVALID_ARGUMENT] tool call 'echo': arguments at /: "message" is a required property`)
    assert.equal(notObject.code, 'INVALID_ARGUMENT')
    assert.match(notObject.message, /tool call 'echo': .*object/)
    assert.deepEqual(callRecords(res.logPath), [])
    await mesh.close()
  })

  test('a restriction registered with the server refuses another agent; its rate limit delays live calls', async () => {
    const WINDOW = 150
    const mesh = new am.Mesh({ logDir: tmp() })
    await mesh.mcp({ command: everything(), agents: ['calc'], rateLimit: { calls: 1, perMs: WINDOW } })
    let before = 0
    let after = 0
    mesh.agent('calc', async (act) => {
      before = performance.now()
      const out = []
      for (const [a, b] of [[1, 2], [3, 4], [5, 6]]) out.push((await act.tool('get-sum', { a, b })).content[0].text)
      after = performance.now()
      return out
    })
    mesh.agent('writer', (act) => failure(act.tool('echo', { message: 'hi' })))
    const res = await mesh.run(flow('calc', 'writer'))
    assert.deepEqual(res.output.a0, ['The sum of 1 and 2 is 3.', 'The sum of 3 and 4 is 7.', 'The sum of 5 and 6 is 11.'])
    assert.ok(after - before >= 2 * WINDOW, `three calls took ${after - before} ms`)
    assert.deepEqual(res.output.a1, {
      cls: 'PolicyDeniedError',
      code: 'POLICY_DENIED',
      message: "[POLICY_DENIED] agent 'writer' may not call tool 'echo' (agents allowed: calc); nothing was recorded",
      type: null,
    })
    const recs = callRecords(res.logPath)
    assert.equal(recs.length, 6)
    assert.ok(recs.every((e) => e.data.name === undefined || e.data.name === 'get-sum'))
    await mesh.close()
  })

  test('the server gets the env given and not the host environment; a slow call is a recorded Timeout', async () => {
    const mesh = new am.Mesh({ logDir: tmp() })
    process.env.AGENTMESH_TEST_HOST_ONLY = 'host-value'
    try {
      await mesh.mcp({ command: everything(), env: { AGENTMESH_TEST_GIVEN: 'given-value' }, callTimeoutMs: 300 })
    } finally {
      delete process.env.AGENTMESH_TEST_HOST_ONLY
    }
    mesh.agent('x', async (act) => ({
      env: (await act.tool('get-env', {})).content[0].text,
      slow: await failure(act.tool('trigger-long-running-operation', { duration: 5, steps: 5 })),
    }))
    const res = await mesh.run(flow('x'))
    assert.match(res.output.a0.env, /AGENTMESH_TEST_GIVEN.*given-value/)
    assert.doesNotMatch(res.output.a0.env, /AGENTMESH_TEST_HOST_ONLY/)
    assert.deepEqual([res.output.a0.slow.cls, res.output.a0.slow.type], ['ProviderError', 'Timeout'])
    const failed = callRecords(res.logPath).filter((e) => e.type === 'callFailed')
    assert.deepEqual(
      failed.map((e) => [e.data.call, e.data.error.type, e.data.error.retryable]),
      [[2, 'Timeout', true]],
    )
    await mesh.close()
  })

  test('close ends the server process and unregisters its tools; closing again is harmless', async () => {
    const mesh = new am.Mesh()
    mesh.callTool('local', () => 1)
    const names = await mesh.mcp({ command: everything() })
    const [server] = [...mesh._mcpServers]
    assert.ok(alive(server.pid))
    await mesh.close()
    assert.equal(alive(server.pid), false)
    assert.deepEqual(Object.keys(mesh.callTools()), ['local'])
    mesh.agent('x', (act) => failure(act.tool(names[0], {})))
    const res = await mesh.run(flow('x'))
    assert.equal(res.output.a0.cls, 'UnknownAgentError')
    await mesh.close()
  })

  test('a server naming a tool the mesh has registers nothing and is closed; the host tool stays', async () => {
    const mesh = new am.Mesh()
    mesh.callTool('echo', (args) => ({ mine: args }))
    await assert.rejects(mesh.mcp({ command: everything() }), (e) => {
      assert.ok(e instanceof am.InvalidArgumentError)
      assert.match(e.message, /^\[INVALID_ARGUMENT\] MCP server `[^`]+` names tools already registered with this mesh \('echo'\): nothing was registered and the server was closed$/)
      return true
    })
    assert.deepEqual(Object.keys(mesh.callTools()), ['echo'])
    assert.equal(mesh._mcpServers.size, 0)
    mesh.agent('x', (act) => act.tool('echo', { message: 'hi' }))
    const res = await mesh.run(flow('x'))
    assert.deepEqual(res.output.a0, { mine: { message: 'hi' } })
  })

  test('a mesh that is garbage collected ends its server', async () => {
    // In a child with --expose-gc, so the collection is forced and the test's own state is not.
    const script = `
      const am = require(${JSON.stringify(path.resolve(__dirname, '..'))})
      const pid = (async () => {
        const mesh = new am.Mesh()
        await mesh.mcp({ command: ${JSON.stringify(everything())} })
        return [...mesh._mcpServers][0].pid
      })()
      pid.then(async (pid) => {
        const alive = () => { try { process.kill(pid, 0); return true } catch { return false } }
        const was = alive()
        for (let i = 0; i < 100 && alive(); i++) {
          global.gc()
          await new Promise((r) => setTimeout(r, 50))
        }
        console.log(JSON.stringify({ was, now: alive() }))
      })`
    const out = childProcess.execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 30_000 })
    assert.deepEqual(JSON.parse(out.trim()), { was: true, now: false })
  })

  test('a server that cannot start, exits or does not answer is a typed error naming no secrets', async () => {
    const mesh = new am.Mesh()
    const secret = 'sk-do-not-print-4242'
    const missing = await rejection(mesh.mcp({ command: ['/nonexistent/agentmesh-mcp', `--token=${secret}`], env: { API_KEY: secret } }))
    assert.ok(missing instanceof am.ProviderError, String(missing))
    assert.equal(missing.errorType, 'McpSpawnFailed')
    assert.match(missing.message, /\/nonexistent\/agentmesh-mcp/)

    const exits = await rejection(mesh.mcp({ command: [process.execPath, '-e', 'process.exit(3)', secret], env: { API_KEY: secret } }))
    assert.ok(exits instanceof am.ProviderError, String(exits))
    assert.equal(exits.errorType, 'McpServerExited')
    assert.match(exits.message, /exit status: 3/)

    // Spawning waits off the JS thread: timers keep firing while the server does not answer.
    let ticks = 0
    const timer = setInterval(() => ticks++, 10)
    const silent = await rejection(mesh.mcp({ command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'], initTimeoutMs: 300, env: { API_KEY: secret } }))
    clearInterval(timer)
    assert.ok(silent instanceof am.AgentTimeoutError, String(silent))
    assert.equal(silent.code, 'TIMEOUT')
    assert.ok(ticks > 0)

    for (const e of [missing, exits, silent]) {
      assert.doesNotMatch(e.message, new RegExp(secret), e.message)
      assert.doesNotMatch(JSON.stringify(e.details), new RegExp(secret))
    }
    assert.deepEqual(mesh.callTools(), {})
  })

  test('bad mcp() input: InvalidArgumentError naming the field, values of env never quoted', async () => {
    const mesh = new am.Mesh()
    const cases = [
      [undefined, /mcp: needs \{command/],
      [{}, /mcp: command must be a non-empty array of strings/],
      [{ command: [] }, /mcp: command must be a non-empty array/],
      [{ command: 'node server.js' }, /mcp: command must be a non-empty array/],
      [{ command: ['node', 3] }, /mcp: command\[1\] must be a string, not number/],
      [{ command: [''] }, /mcp: command\[0\], the program, must not be empty/],
      [{ command: ['node'], env: { TOKEN: 42 } }, /mcp: env\.TOKEN must be a string, not number/],
      [{ command: ['node'], env: ['A=1'] }, /mcp: env must be an object of strings/],
      [{ command: ['node'], agents: [true] }, /mcp: agents\[0\] must be an agent name/],
      [{ command: ['node'], rateLimit: { calls: 0, perMs: 10 } }, /mcp: rateLimit\.calls must be an integer from 1/],
      [{ command: ['node'], rateLimit: { calls: 1, perMs: -1 } }, /mcp: rateLimit\.perMs must be a positive/],
      [{ command: ['node'], rateLimit: { calls: false, perMs: 1 } }, /mcp: rateLimit\.calls must be a number, not boolean/],
      [{ command: ['node'], initTimeoutMs: 0 }, /mcp: initTimeoutMs must be a positive finite number/],
      [{ command: ['node'], callTimeoutMs: NaN }, /mcp: callTimeoutMs must be a positive finite number/],
      [{ command: ['node'], callTimeoutMs: '5' }, /mcp: callTimeoutMs must be a number of milliseconds, not string/],
      [{ command: ['node'], cwd: '/' }, /mcp: unknown option 'cwd'/],
    ]
    for (const [options, pattern] of cases) {
      const e = await rejection(mesh.mcp(options))
      assert.ok(e instanceof am.InvalidArgumentError, `${JSON.stringify(options)}: ${e}`)
      assert.match(e.message, pattern, JSON.stringify(options))
    }
    // A malformed variable name is refused by the client before anything starts; the value is not quoted.
    const e = await rejection(mesh.mcp({ command: ['node'], env: { 'BAD=NAME': 'secret-value-1' } }))
    assert.ok(e instanceof am.InvalidArgumentError, String(e))
    assert.doesNotMatch(e.message, /secret-value-1/)
    assert.deepEqual(mesh.callTools(), {})
  })
})
