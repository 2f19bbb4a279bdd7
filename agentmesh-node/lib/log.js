'use strict'
// Log files: verify, canonical form, fingerprint, replay, time travel, reading. Parallel to
// Python's module functions (agentmesh.verify_log, ...). The whole-log reads return Promises
// computed on libuv's thread pool (the addon's `…Async` functions), so the event loop never
// waits for a log; each has a `…Sync` form. Every error is an AgentMesh error (errors.js).

const native = require('../native.js')
const { InvalidArgumentError, call, callAsync } = require('./errors')
const { Workflow, describe, toPath } = require('./workflow')

function nativeWorkflow(workflow) {
  if (workflow === undefined || workflow === null) return null
  if (workflow instanceof Workflow) return workflow._native
  throw new InvalidArgumentError(`workflow must be a Workflow, not ${describe(workflow)}`)
}

function checkSeq(seq) {
  // Range and integrality are checked by the addon, with the same wording.
  if (typeof seq !== 'number') throw new InvalidArgumentError(`seq must be an integer from 0 to 2^53-1, not ${describe(seq)}`)
  return seq
}

// Promise forms ----------------------------------------------------------------------------

/** Verify a log (hash chain, header, events; a torn tail is cut off and copied aside). */
async function verifyLog(path) {
  return await callAsync(native.verifyLogAsync, toPath(path))
}

/** The canonical log bytes (header, then events by seq), identical across hosts. */
async function canonicalLog(path) {
  return await callAsync(native.canonicalLogAsync, toPath(path))
}

/** blake3 (hex) of the canonical log. */
async function fingerprint(path) {
  return await callAsync(native.fingerprintAsync, toPath(path))
}

/**
 * Re-drive a log without calling agents, against `workflow` or the recorded one. Rejects with
 * `NondeterminismError` at the first divergence.
 */
async function replay(path, workflow) {
  return await callAsync(native.replayAsync, toPath(path), nativeWorkflow(workflow))
}

/** The state of the run as of `seq` (`forkPoint` says whether a fork may start there). */
async function stateAt(path, seq) {
  return await callAsync(native.stateAtAsync, toPath(path), checkSeq(seq))
}

/**
 * The events of a log in seq order (canonical form: no `meta`, `prev`, `hash`), as an async
 * iterator: `for await (const event of readLog(path))`. The log is read on the thread pool
 * when iteration starts; errors reject the first `next()`.
 */
async function* readLog(path) {
  const { events } = await callAsync(native.readLogAsync, toPath(path))
  yield* events
}

// Sync forms -------------------------------------------------------------------------------

function verifyLogSync(path) {
  return call(native.verifyLog, toPath(path))
}

function canonicalLogSync(path) {
  return call(native.canonicalLog, toPath(path))
}

function fingerprintSync(path) {
  return call(native.fingerprint, toPath(path))
}

function replaySync(path, workflow) {
  return call(native.replay, toPath(path), nativeWorkflow(workflow))
}

function stateAtSync(path, seq) {
  return call(native.stateAt, toPath(path), checkSeq(seq))
}

/** The events of a log in seq order, as an array. */
function readLogSync(path) {
  return call(native.readLog, toPath(path)).events
}

/** The log header (reads only the first line). */
function readHeader(path) {
  return call(native.readHeader, toPath(path))
}

/** The workflow recorded in a log. */
function recordedWorkflow(path) {
  return new Workflow(call(native.recordedWorkflow, toPath(path)))
}

/** Every stable error code of the core, in the core's order. */
function errorCodes() {
  return call(native.errorCodes)
}

module.exports = {
  verifyLog,
  canonicalLog,
  fingerprint,
  replay,
  stateAt,
  readLog,
  verifyLogSync,
  canonicalLogSync,
  fingerprintSync,
  replaySync,
  stateAtSync,
  readLogSync,
  readHeader,
  recordedWorkflow,
  errorCodes,
}
