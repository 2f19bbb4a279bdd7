'use strict'
// The `agentmesh` package: deterministic, durable, replayable multi-agent workflows.
// The orchestration and the log are the Rust core (the native addon, ./native.js); this
// package's JavaScript is the driver (lib/mesh.js), workflows (lib/workflow.js), the read side
// of logs (lib/log.js) and the error classes (lib/errors.js).
//
// `module.exports` is one object literal of names so that Node's ESM loader sees every export:
// `import { Mesh, Workflow } from 'agentmesh'` works as well as `require('agentmesh')`.

const errors = require('./lib/errors')
const { Workflow, WorkflowBuilder } = require('./lib/workflow')
const log = require('./lib/log')
const { ActivationError, Mesh, Output, RawJson, RunResult } = require('./lib/mesh')

module.exports = {
  Mesh,
  Workflow,
  WorkflowBuilder,
  ActivationError,
  Output,
  RawJson,
  RunResult,
  verifyLog: log.verifyLog,
  verifyLogSync: log.verifyLogSync,
  canonicalLog: log.canonicalLog,
  canonicalLogSync: log.canonicalLogSync,
  fingerprint: log.fingerprint,
  fingerprintSync: log.fingerprintSync,
  replay: log.replay,
  replaySync: log.replaySync,
  stateAt: log.stateAt,
  stateAtSync: log.stateAtSync,
  readLog: log.readLog,
  readLogSync: log.readLogSync,
  readHeader: log.readHeader,
  recordedWorkflow: log.recordedWorkflow,
  errorCodes: log.errorCodes,
  errorClass: errors.errorClass,
  ERROR_CODES: errors.ERROR_CODES,
  AgentMeshError: errors.AgentMeshError,
  InvalidWorkflowError: errors.InvalidWorkflowError,
  InvalidArgumentError: errors.InvalidArgumentError,
  InvalidOutputError: errors.InvalidOutputError,
  InvalidCompletionError: errors.InvalidCompletionError,
  NondeterminismError: errors.NondeterminismError,
  LogCorruptError: errors.LogCorruptError,
  RunExistsError: errors.RunExistsError,
  AgentFailedError: errors.AgentFailedError,
  AgentTimeoutError: errors.AgentTimeoutError,
  LimitExceededError: errors.LimitExceededError,
  RunCancelledError: errors.RunCancelledError,
  UnknownAgentError: errors.UnknownAgentError,
  AgentMeshIOError: errors.AgentMeshIOError,
  InternalError: errors.InternalError,
}
