'use strict'
// The error classes (lib/errors.js): one per core code, in the core's order, named as in
// Python; fromNative/call/callAsync turning the addon's errors into them.

const { test, describe, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const native = require('../native.js')
const { poll, outstanding, C } = require('./support/native')
const { pythonView } = require('./support/helpers')
const errors = require('../lib/errors')

const {
  AgentMeshError,
  AgentFailedError,
  AgentMeshIOError,
  InternalError,
  InvalidArgumentError,
  InvalidCompletionError,
  InvalidOutputError,
  InvalidWorkflowError,
  LogCorruptError,
  NondeterminismError,
  RunExistsError,
  ERROR_CODES,
  errorClass,
  fromNative,
  call,
  callAsync,
} = errors

const repo = path.resolve(__dirname, '..', '..')

const made = []
function tmpdir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentmesh-errors-'))
  made.push(dir)
  return dir
}
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})

/** What `fn` threw (failing when it does not throw). */
function thrown(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  assert.fail('expected an error')
}

/** Python's classes in `_TABLE` order: [[className, code], ...]. */
function pythonTable() {
  const py = fs.readFileSync(path.join(repo, 'agentmesh-py', 'python', 'agentmesh', 'errors.py'), 'utf-8')
  const classCode = Object.fromEntries(
    [...py.matchAll(/class (\w+)\(\w+\):(?:(?!\nclass )[\s\S])*?code = "([A-Z_]+)"/g)].map((m) => [m[1], m[2]]),
  )
  const table = py.match(/for cls in \(([\s\S]*?)\)\n/)[1]
  return [...table.matchAll(/(\w+),/g)].map((m) => [m[1], classCode[m[1]]])
}

const ONE = JSON.stringify({ name: 'one', nodes: [{ id: 'a', type: 'agent', agent: 'x' }] })

describe('classes', () => {
  test('ERROR_CODES is the native errorCodes() and Python _TABLE, in order', () => {
    const table = pythonTable()
    const pyCodes = table.map(([, code]) => code)
    assert.equal(ERROR_CODES.length, 20)
    assert.deepEqual([...ERROR_CODES], native.errorCodes())
    assert.deepEqual(pythonView([...ERROR_CODES], pyCodes), pyCodes)
    assert.ok(Object.isFrozen(ERROR_CODES))
  })

  test('one class per code, named as in Python, exported under its name', () => {
    for (const [name, code] of pythonTable()) {
      const cls = errorClass(code)
      assert.equal(cls.name, name)
      assert.equal(errors[name], cls)
      assert.equal(cls.code, code)
      const e = new cls('something happened')
      assert.ok(e instanceof AgentMeshError && e instanceof Error)
      assert.equal(e.name, name)
      assert.equal(e.code, code)
      assert.equal(e.message, `[${code}] something happened`)
      assert.deepEqual(e.details, {})
      assert.equal(String(e), `${name}: [${code}] something happened`)
      assert.ok(e.stack.startsWith(`${name}: [${code}] something happened\n    at `), e.stack)
      assert.deepEqual(Object.keys(e), ['code', 'details'])
    }
    // The base class is INTERNAL, as in Python.
    assert.equal(AgentMeshError.code, 'INTERNAL')
    assert.equal(new AgentMeshError('x').message, '[INTERNAL] x')
    assert.equal(new AgentMeshError('x').name, 'AgentMeshError')
  })

  test('errorClass of an unknown code is InternalError', () => {
    assert.equal(errorClass('QUOTA_EXCEEDED'), InternalError)
    assert.equal(errorClass(''), InternalError)
    assert.equal(errorClass(undefined), InternalError)
    assert.equal(errorClass('toString'), InternalError)
  })

  test('the "[CODE] " prefix is added once; details are copied, {} when absent', () => {
    assert.equal(new InvalidArgumentError('[INVALID_ARGUMENT] bad seed').message, '[INVALID_ARGUMENT] bad seed')
    // Another code's prefix is part of the message.
    assert.equal(new InvalidArgumentError('[IO] x').message, '[INVALID_ARGUMENT] [IO] x')
    const details = { node: 'a', field: 'after[0]' }
    const e = new InvalidWorkflowError('bad', details)
    assert.deepEqual(e.details, details)
    assert.notEqual(e.details, details)
    for (const none of [undefined, null, 'text', 5, ['a']]) assert.deepEqual(new InvalidWorkflowError('bad', none).details, {})
  })

  test('detail getters, null when the core gave none', () => {
    const wf = new InvalidWorkflowError('x', { node: 'a', field: 'after[0]' })
    assert.deepEqual([wf.node, wf.field], ['a', 'after[0]'])
    const doc = new InvalidWorkflowError('x', { node: null, field: '(document)' })
    assert.deepEqual([doc.node, doc.field], [null, '(document)'])
    assert.deepEqual([new InvalidWorkflowError('x').node, new InvalidWorkflowError('x').field], [null, null])

    const nd = new NondeterminismError('x', { seq: 6, node: 'write', field: 'data.agent', expected: '"writer"', actual: '"other"' })
    assert.deepEqual([nd.seq, nd.node, nd.field, nd.expected, nd.actual], [6, 'write', 'data.agent', '"writer"', '"other"'])
    const bare = new NondeterminismError('x')
    assert.deepEqual([bare.seq, bare.node, bare.field, bare.expected, bare.actual], [null, null, null, null, null])

    assert.equal(new LogCorruptError('x', { offset: 1574 }).offset, 1574)
    assert.equal(new LogCorruptError('x').offset, null)
    assert.equal(new InvalidOutputError('x', { node: 'w' }).node, 'w')
    assert.equal(new AgentFailedError('x', { node: 'w' }).node, 'w')
  })

  test('AgentFailedError: cause and result, result writable and not enumerable', () => {
    const boom = new RangeError('boom')
    const e = new AgentFailedError('[AGENT_FAILED] node w failed', { node: 'w' }, { cause: boom })
    assert.equal(e.message, '[AGENT_FAILED] node w failed')
    assert.equal(e.cause, boom)
    assert.equal(e.result, null)
    const result = { status: 'failed' }
    e.result = result
    assert.equal(e.result, result)
    assert.deepEqual(Object.keys(e), ['code', 'details'])
    assert.equal(new AgentFailedError('x', null, { result }).result, result)
    assert.equal('cause' in new AgentFailedError('x'), false)
  })

  test('a subclass of a subclass keeps the code', () => {
    class MyError extends InvalidArgumentError {}
    const e = new MyError('mine')
    assert.equal(e.code, 'INVALID_ARGUMENT')
    assert.equal(e.message, '[INVALID_ARGUMENT] mine')
    assert.ok(e instanceof InvalidArgumentError)
  })
})

describe('fromNative', () => {
  /** Each native error kind the addon throws, with its class. */
  function nativeErrors() {
    const dir = tmpdir()
    const wf = native.NativeWorkflow.fromJson(ONE)
    const run = native.NativeRun.start(wf, null, { logDir: dir, runId: 'r', fsync: 'never' })
    const [act] = poll(run)
    run.completeAll([C.ok(act, 1)])
    const log = run.logPath()
    run.close()
    const changed = native.NativeWorkflow.fromJson(ONE.replace('"x"', '"y"'))
    const corrupt = path.join(dir, 'corrupt.jsonl')
    const text = fs.readFileSync(log, 'utf-8')
    const second = text.indexOf('\n') + 1
    fs.writeFileSync(corrupt, text.slice(0, second + 3) + 'X' + text.slice(second + 4))
    process.env.RUST_BACKTRACE = '0'
    return [
      [InvalidWorkflowError, () => native.NativeWorkflow.fromJson('{"name": "w", "nodes": []}')],
      [InvalidArgumentError, () => native.NativeRun.resume(log, { fsync: 'sometimes' })],
      [InvalidOutputError, () => { throw C.ok(poll(native.NativeRun.start(wf, null))[0], NaN).error }],
      [InvalidCompletionError, () => { throw native.NativeRun.start(wf, null).completeAll([C.ok(act, 1), C.ok(act, 2)])[1] }],
      [NondeterminismError, () => native.replay(log, changed)],
      [LogCorruptError, () => native.verifyLog(corrupt)],
      [RunExistsError, () => native.NativeRun.start(wf, null, { logDir: dir, runId: 'r' })],
      [AgentMeshIOError, () => native.readHeader(path.join(dir, 'missing.jsonl'))],
      [InternalError, () => native.__panicForTests('boom')],
    ]
  }

  test('each native error becomes its class: same message, code and details', () => {
    for (const [cls, fn] of nativeErrors()) {
      const raw = thrown(fn)
      assert.equal(Object.getPrototypeOf(raw), Error.prototype)
      const e = fromNative(raw)
      assert.ok(e instanceof cls, `${raw.message} is not a ${cls.name}`)
      assert.equal(e.code, cls.code)
      assert.equal(e.code, raw.code)
      assert.equal(e.message, raw.message)
      assert.deepEqual(e.details, raw.details)
      assert.notEqual(e.details, raw.details)
      assert.equal('cause' in e, false)
    }
  })

  test('the stack is the native call site, under the new class name', () => {
    function nativeCallSite() {
      return native.NativeWorkflow.fromJson('{"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "after": ["b"]}]}')
    }
    const raw = thrown(nativeCallSite)
    const e = fromNative(raw)
    assert.equal(e.node, 'a')
    assert.equal(e.field, 'after[0]')
    const lines = e.stack.split('\n')
    assert.equal(lines[0], `InvalidWorkflowError: [INVALID_WORKFLOW] node 'a', field 'after[0]': unknown node 'b'`)
    assert.deepEqual(lines.slice(1), raw.stack.split('\n').slice(1))
    assert.match(lines[1], /at nativeCallSite /)
  })

  test('napi-rs argument errors become InvalidArgumentError with a clear message', () => {
    const cases = [
      [() => native.NativeWorkflow.fromJson(5), 'a string was expected: Failed to convert JavaScript value `Number 5 ` into rust type `String` (napi StringExpected)'],
      [() => native.stateAt('/x', 'a'), 'a number was expected: Failed to convert napi value String into rust type `f64` (napi NumberExpected)'],
      [() => native.replay('/x', {}), 'invalid argument: Failed to recover `NativeWorkflow` type from napi value (napi InvalidArg)'],
      [() => C.err(poll(native.NativeRun.start(native.NativeWorkflow.fromJson(ONE), null))[0], 'T', 'm', 'yes'), 'a boolean was expected: Failed to convert napi value into rust type `bool` (napi BooleanExpected)'],
    ]
    for (const [fn, message] of cases) {
      const raw = thrown(fn)
      const e = fromNative(raw)
      assert.ok(e instanceof InvalidArgumentError)
      assert.equal(e.message, `[INVALID_ARGUMENT] ${message}`)
      assert.deepEqual(e.details, {})
      assert.equal(e.stack.split('\n')[1], raw.stack.split('\n')[1])
    }
    for (const code of ['ObjectExpected', 'NameExpected', 'FunctionExpected', 'ArrayExpected', 'BigintExpected', 'DateExpected', 'ArrayBufferExpected', 'DetachableArraybufferExpected']) {
      const e = fromNative(Object.assign(new Error('Failed to convert'), { code }))
      assert.ok(e instanceof InvalidArgumentError, code)
      assert.ok(e.message.startsWith('[INVALID_ARGUMENT] ') && e.message.endsWith(`: Failed to convert (napi ${code})`), e.message)
    }
  })

  test('a code of a newer core is kept visible as InternalError; GenericFailure with a core prefix is classified', () => {
    const newer = fromNative(Object.assign(new Error('[QUOTA_EXCEEDED] over quota'), { code: 'QUOTA_EXCEEDED', details: { node: 'a' } }))
    assert.ok(newer instanceof InternalError)
    assert.equal(newer.message, '[INTERNAL] unknown error code QUOTA_EXCEEDED: over quota')
    assert.deepEqual(newer.details, { node: 'a' })
    const generic = fromNative(Object.assign(new Error('[IO] disk full'), { code: 'GenericFailure' }))
    assert.ok(generic instanceof AgentMeshIOError)
    assert.equal(generic.message, '[IO] disk full')
  })

  test('anything else passes through unchanged', () => {
    const own = new InvalidArgumentError('mine')
    const values = [
      own,
      new RangeError('from a getter'),
      Object.assign(new TypeError('node'), { code: 'ERR_INVALID_ARG_TYPE' }),
      Object.assign(new Error('no prefix'), { code: 'IO', details: {} }), // not the addon's shape
      Object.assign(new Error('[IO] x'), { code: 5 }),
      Object.assign(new Error('[GenericFailure] x'), { code: 'GenericFailure' }),
      Object.assign(new Error('task ran twice'), { code: 'GenericFailure' }),
      { code: 'IO', message: '[IO] x', details: {} }, // not an Error
      '[IO] a string',
      42,
      null,
      undefined,
    ]
    for (const v of values) assert.equal(fromNative(v), v)
    const throwingCode = new Error('x')
    Object.defineProperty(throwingCode, 'code', {
      get() {
        throw new Error('getter')
      },
    })
    assert.equal(fromNative(throwingCode), throwingCode)
  })
})

describe('call and callAsync', () => {
  test('call returns the value and passes the arguments', () => {
    assert.deepEqual(call(native.errorCodes), [...ERROR_CODES])
    assert.equal(call((a, b) => a + b, 2, 3), 5)
    assert.equal(call(native.normalizeJson, '{"b": 1, "a": 2}'), '{"a":2,"b":1}')
  })

  test('call rethrows native errors converted, with the native call site on top', () => {
    function nativeCallSite() {
      return call(native.verifyLog, '/nonexistent/agentmesh.jsonl')
    }
    const e = thrown(nativeCallSite)
    assert.ok(e instanceof AgentMeshIOError)
    assert.equal(e.message, '[IO] opening /nonexistent/agentmesh.jsonl: No such file or directory (os error 2)')
    assert.match(e.stack.split('\n')[1], /at nativeCallSite /)
    // A caller's own exception (here from a getter the addon read) passes through.
    const boom = new RangeError('from a getter')
    const run = native.NativeRun.start(native.NativeWorkflow.fromJson(ONE), null)
    const [act] = poll(run)
    assert.equal(
      thrown(() =>
        call(() =>
          C.ok(act, {
            get bad() {
              throw boom
            },
          }),
        ),
      ),
      boom,
    )
  })

  test('callAsync resolves like the addon', async () => {
    const pending = callAsync(native.fingerprintAsync, '/nonexistent/agentmesh.jsonl')
    assert.ok(pending instanceof Promise)
    await assert.rejects(pending, AgentMeshIOError)
    assert.deepEqual(await callAsync(async (a) => a * 2, 21), 42)
  })

  test('callAsync rejects with converted errors carrying the caller async stack', async () => {
    async function asyncCaller() {
      return await callAsync(native.verifyLogAsync, '/nonexistent/agentmesh.jsonl')
    }
    await assert.rejects(asyncCaller(), (e) => {
      assert.ok(e instanceof AgentMeshIOError)
      assert.equal(e.code, 'IO')
      assert.equal(e.message, '[IO] opening /nonexistent/agentmesh.jsonl: No such file or directory (os error 2)')
      assert.match(e.stack, /\n\s+at async asyncCaller /)
      return true
    })
    // A panic on the thread pool.
    process.env.RUST_BACKTRACE = '0'
    await assert.rejects(callAsync(native.__panicForTestsAsync, 'boom'), (e) => {
      assert.ok(e instanceof InternalError)
      assert.equal(e.message, '[INTERNAL] panic inside agentmesh: boom')
      return true
    })
  })

  test('callAsync turns a synchronous throw into a rejection', async () => {
    let pending
    assert.doesNotThrow(() => {
      pending = callAsync(native.replayAsync, '/x', {})
    })
    await assert.rejects(pending, (e) => {
      assert.ok(e instanceof InvalidArgumentError)
      assert.equal(e.message, '[INVALID_ARGUMENT] invalid argument: Failed to recover `NativeWorkflow` type from napi value (napi InvalidArg)')
      return true
    })
  })
})
