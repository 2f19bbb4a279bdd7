'use strict'
// Calls inside activations (docs/calls.md): what an agent's `act.llm`, `act.llmStream`,
// `act.tool` and the low-level `act.callStart` / `callStartMany` / `callComplete` do.
//
// The protocol is the core's (Run::call_start / call_complete, each committed before it
// returns) and follows the Rust driver's Context::call_with: start the call and get a ticket;
// a live ticket is executed, then its result recorded; a recorded one (after a resume, in
// re-execute replay) is answered from the log and nothing is executed or reported.
//
// - Host providers and call tools (JavaScript functions) run on the JS thread; their result
//   is recorded (NativeCalls.complete) before the agent sees it.
// - Built-in providers (NativeExecutor, agentmesh-providers over ureq) run on a dedicated
//   native thread, which records the result itself and settles a Promise; streamed chunks
//   arrive through a ThreadsafeFunction (src/calls.rs).
// - A call is numbered when it starts, synchronously, in program order: `act.llm(...)` takes
//   its number before its first await, so `Promise.all([act.llm(a), act.llm(b)])` numbers a
//   then b. `callStartMany` fixes the numbers of a batch up front.
// - Once the agent returned (its result settled), its calls are closed: a call started or
//   finished later (an unawaited Promise, a timer) is refused with InvalidCompletionError and
//   nothing is logged, whenever the driver records the activation's completion.

const native = require('../native.js')
const { InvalidArgumentError, InvalidCompletionError, InvalidOutputError, UnknownAgentError, call, callAsync, fromNative } = require('./errors')
const { Output, RawJson, describeFailure } = require('./values')
const { sleep } = require('./tools')
const { askArg } = require('./budgets')

/** A started call: its number, whether it must be made, and the recorded outcome if not. */
class CallTicket {
  constructor(raw) {
    /** The activation. */
    this.activation = raw.activation
    /** The call's number in its activation (1, 2, … in the order calls start). */
    this.call = raw.call
    /** The seq the call's records sit under (the activation's completion seq). */
    this.seq = raw.seq
    /** The same for a call re-issued after a crash: pass it to services that honour one. */
    this.idempotencyKey = raw.idempotencyKey
    /** Make the call and report it (`callComplete`); otherwise the log holds its result. */
    this.live = raw.live
    /**
     * The `maxTokens` the budget allows this call: send it instead of the request's (`null`
     * when the budget did not clamp it).
     */
    this.maxTokens = raw.maxTokens === undefined ? null : raw.maxTokens
    /**
     * The request as the run's policy redacted it (docs/policy.md): send this one, never the
     * original (`null` when the policy left the request as it was).
     */
    this.request = raw.request === undefined ? null : raw.request
    /**
     * The run's policy judges the response: stream nothing to the agent before
     * `callComplete` returns the recorded response.
     */
    this.holdResponse = raw.holdResponse === true
    /** The recorded `{response, usage, error}` (`null` for a live ticket). */
    this.outcome = raw.live
      ? null
      : {
          response: 'response' in raw ? raw.response : null,
          usage: raw.usage === undefined ? null : raw.usage,
          error: raw.error === undefined ? null : raw.error,
        }
  }

  /** Whether the log answered the call (nothing is sent, nothing is reported). */
  get recorded() {
    return !this.live
  }

  /** The id the `i`-th tool call of an LLM response gets (`call_<seq>_<call>_<i>`). */
  toolCallId(i) {
    return `call_${this.seq}_${this.call}_${i}`
  }
}

/** An LLM call's response as an agent sees it. */
class LlmReply {
  constructor(response, usage, recorded) {
    /** The canonical response (`text`, `toolCalls`, `finishReason`), as recorded. */
    this.response = response
    /** Tokens spent, or `null`. */
    this.usage = usage === undefined ? null : usage
    /** Whether the log answered it (after a resume, in re-execute replay): nothing was sent. */
    this.recorded = recorded
  }

  /** The response's `text`, `''` when it has none. */
  get text() {
    const t = field(this.response, 'text')
    return typeof t === 'string' ? t : ''
  }

  /** The response's `toolCalls` (`{id, name, arguments}`), `[]` when none. */
  get toolCalls() {
    const t = field(this.response, 'toolCalls')
    return Array.isArray(t) ? t : []
  }

  /** The response's `finishReason`, or `null`. */
  get finishReason() {
    const t = field(this.response, 'finishReason')
    return t === undefined ? null : t
  }
}

function field(v, key) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v[key] : undefined
}

/** The one chunk a response is streamed as when nothing streamed it (core `replayed_chunk`). */
function replayedChunk(response) {
  const chunk = {}
  const text = field(response, 'text')
  if (text !== undefined) chunk.text = text
  const toolCalls = field(response, 'toolCalls')
  if (toolCalls !== undefined) chunk.toolCalls = toolCalls
  return chunk
}

/** The ProviderError for a call's error `{type, message, retryable, status}` (core wording). */
function providerError(e) {
  const arg = { type: String(e.type), message: String(e.message), retryable: e.retryable !== false }
  if (e.status !== undefined && e.status !== null) arg.status = e.status
  return fromNative(call(native.providerError, arg))
}

/**
 * `act.llmStream(...)`: an async iterator of the response's chunks (`{text}` deltas; tool-call
 * deltas as the provider gives them), and `reply`, a Promise of the final LlmReply. A response
 * the log answers, or a host provider's, arrives as one chunk. The loop throws the call's
 * error (a ProviderError) after the chunks received before it.
 */
class LlmStream {
  #queue = []
  #waiters = []
  #count = 0
  #need = null // [count, resolve] while the call waits for chunks still on their way
  #end = null // {error} once the call ended (error null: done)
  #closed = false

  constructor(run) {
    const sink = { push: (c) => this.#push(c), all: (n) => this.#all(n) }
    /** The final LlmReply, once the call ended (rejects with its error). */
    this.reply = run(sink).then(
      (reply) => {
        this.#finish(null)
        return reply
      },
      (e) => {
        this.#finish(e)
        throw e
      },
    )
    // Handled here: a consumer that only loops sees the error there.
    this.reply.catch(() => {})
  }

  #push(chunk) {
    this.#count++
    if (!this.#closed) {
      const waiter = this.#waiters.shift()
      if (waiter !== undefined) waiter.resolve({ value: chunk, done: false })
      else this.#queue.push(chunk)
    }
    if (this.#need !== null && this.#count >= this.#need[0]) {
      const resolve = this.#need[1]
      this.#need = null
      resolve()
    }
  }

  #all(n) {
    if (this.#count >= n) return Promise.resolve()
    return new Promise((resolve) => {
      this.#need = [n, resolve]
    })
  }

  #finish(error) {
    this.#end = { error }
    for (const waiter of this.#waiters.splice(0)) this.#settle(waiter)
  }

  #settle(waiter) {
    const error = this.#closed ? null : this.#end.error
    this.#closed = true
    if (error === null) waiter.resolve({ value: undefined, done: true })
    else waiter.reject(error)
  }

  [Symbol.asyncIterator]() {
    return this
  }

  next() {
    if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift(), done: false })
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject }
      if (this.#closed || this.#end !== null) this.#settle(waiter)
      else this.#waiters.push(waiter)
    })
  }

  /** Stop reading chunks; the call itself runs to its end and is recorded (`reply`). */
  return(value) {
    this.#closed = true
    this.#queue = []
    for (const waiter of this.#waiters.splice(0)) waiter.resolve({ value: undefined, done: true })
    return Promise.resolve({ value, done: true })
  }
}

function micros(started) {
  return Math.round((performance.now() - started) * 1000)
}

/** A request or result as the addon takes it: `[value, isJsonText]`. */
function dataArg(v) {
  return v instanceof RawJson ? [v.text, true] : [v === undefined ? null : v, false]
}

function checkName(what, name) {
  if (typeof name !== 'string') throw new InvalidArgumentError(`a ${what} name must be a string, not ${typeof name}`)
}

/**
 * The calls of one activation: its driver's NativeCalls, and whether the agent returned.
 * Made on the activation's first call (an activation that makes none costs nothing).
 */
class CallPort {
  constructor(drive, id, agent) {
    this.drive = drive
    this.id = id
    /** The activation's agent (or tool node) name: whom a tool's allowlist is checked for. */
    this.agent = agent
    this.closed = false
    this.used = false
  }

  check() {
    if (this.drive === null) throw new InvalidArgumentError('this activation is not being driven by a Mesh: it cannot make calls')
    if (this.closed) {
      throw new InvalidCompletionError(
        `call refused: activation ${this.id} ended (its agent returned); a call made or finished after that is not recorded`,
      )
    }
  }

  /** The agent returned: later calls (and results of calls still running) are refused. */
  end() {
    if (this.closed) return
    this.closed = true
    if (this.used) call(() => this.drive.calls.end(this.id))
  }

  // low level ------------------------------------------------------------------------------

  startMany(specs) {
    if (!Array.isArray(specs)) throw new InvalidArgumentError('callStartMany takes an array of {kind, name, request, ask?}')
    const kinds = []
    const names = []
    const requests = []
    const texts = []
    const asks = []
    for (const s of specs) {
      if (s === null || typeof s !== 'object') throw new InvalidArgumentError('a call is {kind, name, request, ask?}')
      checkName('call', s.name)
      const [request, text] = dataArg(s.request)
      kinds.push(String(s.kind))
      names.push(s.name)
      requests.push(request)
      texts.push(text)
      asks.push(askArg(s.ask) ?? null)
    }
    this.check()
    this.used = true
    return call(() => this.drive.calls.start(this.id, kinds, names, requests, texts, asks)).map((t) => new CallTicket(t))
  }

  complete(ticket, result) {
    const number = ticket !== null && typeof ticket === 'object' ? ticket.call : ticket
    if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError('callComplete needs the ticket (or its call number)')
    const r = result === undefined || result === null ? {} : result
    if (typeof r !== 'object') throw new InvalidArgumentError('callComplete takes {response, usage, error, durationUs}')
    let error
    if (r.error !== undefined && r.error !== null) {
      const e = r.error
      error = { type: String(e.type), message: String(e.message), retryable: e.retryable === undefined ? true : Boolean(e.retryable) }
      if (e.status !== undefined && e.status !== null) error.status = e.status
    }
    const [response, text] = dataArg(r.response)
    let usage = r.usage === null ? undefined : r.usage
    if (usage instanceof RawJson) usage = JSON.parse(usage.text)
    const durationUs = r.durationUs === null ? undefined : r.durationUs
    this.check()
    // The outcome as recorded: the policy may have redacted the response or blocked it.
    return call(() =>
      this.drive.calls.complete(this.id, number, text ? undefined : response, text ? response : undefined, usage, error, durationUs),
    )
  }

  // the agent API ----------------------------------------------------------------------------

  async llm(provider, request, sink) {
    checkName('provider', provider)
    const entry = this.drive === null ? undefined : this.drive.mesh._providers.get(provider)
    if (entry === undefined) {
      this.check()
      throw new UnknownAgentError(`no provider registered as '${provider}' with this mesh`)
    }
    if (entry.executor !== undefined) {
      const [response, usage, recorded] = await this.#native(entry.executor, 'llm', provider, request, sink)
      return new LlmReply(response, usage, recorded)
    }
    const [response, usage, recorded] = await this.#host(entry.fn, 'llm', provider, request, sink, null)
    return new LlmReply(response, usage, recorded)
  }

  /**
   * Call tool `name` (Context::call_with's order): its allowlist and argument schema admit
   * the call before it is started (a refusal records nothing and calls nothing), then a live
   * call waits for its rate-limit slot; a call the log answers never waits.
   */
  async tool(name, args) {
    checkName('tool', name)
    const entry = this.drive === null ? undefined : this.drive.mesh._callTools.get(name)
    if (entry === undefined) {
      this.check()
      throw new UnknownAgentError(`no tool registered as '${name}' with this mesh`)
    }
    if (entry.executor !== undefined) {
      const [response] = await this.#native(entry.executor, 'tool', name, args, null)
      return response
    }
    if (entry.rules !== null) {
      this.check()
      const [value, text] = entry.schema === null ? [null, false] : dataArg(args)
      call(() => entry.rules.admit(this.agent, value, text))
    }
    const [response] = await this.#host(entry.fn, 'tool', name, args, null, entry.rules)
    return response
  }

  /** A call a JavaScript function makes: `[response, usage, recorded]`. */
  async #host(fn, kind, name, request, sink, rules) {
    // Numbered now, before any await: program order.
    const [ticket] = this.startMany([{ kind, name, request }])
    if (!ticket.live) return answered(ticket, sink)
    if (rules !== null) await sleep(rules.reserve())
    const started = performance.now()
    let response = null
    let usage = null
    let error = null
    try {
      // What the policy left of the request: the function never sees what it redacted.
      let v = await fn(ticket.request ?? request, ticket)
      if (v instanceof Output) {
        usage = v.usage
        v = v.value
      }
      response = v
    } catch (e) {
      const f = describeFailure(e)
      error = { type: f.type, message: f.message, retryable: f.retryable }
      usage = f.usage
    }
    const durationUs = micros(started)
    let recorded
    if (error === null) {
      try {
        recorded = this.complete(ticket, { response, usage, durationUs })
      } catch (e) {
        // Not JSON data: recorded as the call's failure, never left in flight.
        if (!(e instanceof InvalidOutputError)) throw e
        error = { type: 'InvalidOutput', message: e.message.replace(/^\[INVALID_OUTPUT\] /, ''), retryable: false }
        recorded = this.complete(ticket, { error, usage, durationUs })
      }
    } else {
      recorded = this.complete(ticket, { error, usage, durationUs })
    }
    // What the agent gets is what the log holds (a policy may have redacted or blocked it).
    if (recorded.error !== undefined) throw providerError(recorded.error)
    if (sink !== null) sink.push(replayedChunk(recorded.response))
    return [recorded.response, usage, false]
  }

  /** A call a built-in executor makes, on its own thread (src/calls.rs): `[response, usage, recorded]`. */
  async #native(executor, kind, name, request, sink) {
    if (request instanceof RawJson) request = JSON.parse(request.text)
    this.check()
    this.used = true
    const onChunk =
      sink === null
        ? undefined
        : (text) => {
            // Never throws into the addon's ThreadsafeFunction.
            try {
              sink.push(JSON.parse(text))
            } catch {
              // a chunk the consumer cannot take is dropped; the reply still has it all
            }
          }
    const raw = call(() => this.drive.calls.native(executor, this.id, kind, name, this.agent, request, onChunk))
    const ticket = new CallTicket(raw)
    if (!ticket.live) return answered(ticket, sink)
    const outcome = await callAsync(() => raw.done)
    if (sink !== null) await sink.all(outcome.chunks)
    if (outcome.error !== undefined) throw providerError(outcome.error)
    // A judged response streamed nothing: the agent gets it once, as recorded.
    if (sink !== null && ticket.holdResponse) sink.push(replayedChunk(outcome.response))
    return [outcome.response, outcome.usage === undefined ? null : outcome.usage, false]
  }
}

/** A recorded ticket's answer: `[response, usage, true]`, or its error as a ProviderError. */
function answered(ticket, sink) {
  const o = ticket.outcome
  if (o.error !== null) throw providerError(o.error)
  if (sink !== null) sink.push(replayedChunk(o.response))
  return [o.response, o.usage, true]
}

module.exports = { CallPort, CallTicket, LlmReply, LlmStream, providerError, replayedChunk }
