'use strict'
// Values agents hand to the driver (an exact failure, an output with usage, exact JSON text),
// and how a thrown value is described for the log: shared by the driver (lib/mesh.js) and the
// calls an agent makes (lib/calls.js).

const { InvalidArgumentError, InvalidOutputError } = require('./errors')

/**
 * Throw from an agent to fail its activation with an exact type, message and retryable flag,
 * and the tokens the failed attempt spent (`usage`).
 */
class ActivationError extends Error {
  constructor(type, message, options = {}) {
    super(message)
    this.name = 'ActivationError'
    this.type = String(type)
    this.retryable = options.retryable === undefined ? true : Boolean(options.retryable)
    this.usage = options.usage === undefined ? null : options.usage
  }
}

/** An agent result with token usage (`{inputTokens, outputTokens}`). */
class Output {
  constructor(value, options = {}) {
    this.value = value
    this.usage = options.usage === undefined ? null : options.usage
  }
}

/** JSON text handed to the core as written (still parsed and validated there). */
class RawJson {
  constructor(text) {
    if (typeof text !== 'string') throw new InvalidArgumentError(`RawJson needs a string, not ${typeof text}`)
    this.text = text
  }
}

function describe(value) {
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** The type, message, retryable flag and usage an agent's exception is recorded with. */
function describeFailure(thrown) {
  if (thrown instanceof InvalidOutputError) {
    return { type: 'InvalidOutput', message: thrown.message.replace(/^\[INVALID_OUTPUT\] /, ''), retryable: false, usage: null }
  }
  if (thrown instanceof ActivationError) {
    return { type: String(thrown.type), message: String(thrown.message), retryable: Boolean(thrown.retryable), usage: thrown.usage }
  }
  if (thrown instanceof Error) {
    let message
    try {
      message = String(thrown.message)
    } catch {
      message = describe(thrown)
    }
    const type = (thrown.constructor && thrown.constructor.name) || thrown.name || 'Error'
    return { type: String(type), message, retryable: true, usage: null }
  }
  // `throw 'text'`, `throw {code: 1}`, `throw undefined`: recorded, never lost.
  return { type: 'NonErrorThrown', message: `${typeof thrown}: ${describe(thrown)}`, retryable: true, usage: null }
}

module.exports = { ActivationError, Output, RawJson, describe, describeFailure }
