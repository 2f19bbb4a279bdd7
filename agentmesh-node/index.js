'use strict'
// The `agentmesh` package: deterministic, durable, replayable multi-agent workflows.
// The orchestration and the log are the Rust core (the native addon, ./native.js); this
// package's JavaScript is the driver (lib/mesh.js), workflows (lib/workflow.js), the read side
// of logs (lib/log.js) and the error classes (lib/errors.js).
//
// `module.exports` is one object literal of names so that Node's ESM loader sees every export:
// `import { Mesh, Workflow } from 'agentmesh'` works as well as `require('agentmesh')`.

const {
  AgentMeshError,
  InvalidWorkflowError,
  InvalidArgumentError,
  InvalidOutputError,
  InvalidCompletionError,
  NondeterminismError,
  LogCorruptError,
  LogTruncatedError,
  LogHeadMismatchError,
  RunExistsError,
  AgentFailedError,
  AgentTimeoutError,
  LimitExceededError,
  RunCancelledError,
  UnknownAgentError,
  AgentMeshIOError,
  InternalError,
  ERROR_CODES,
  errorClass,
} = require('./lib/errors')
const { Workflow, WorkflowBuilder } = require('./lib/workflow')
const {
  verifyLog,
  verifyLogSync,
  canonicalLog,
  canonicalLogSync,
  fingerprint,
  fingerprintSync,
  replay,
  replaySync,
  stateAt,
  stateAtSync,
  readLog,
  readLogSync,
  readHeader,
  recordedWorkflow,
  errorCodes,
} = require('./lib/log')
const { ActivationError, Mesh, Output, RawJson, RunResult } = require('./lib/mesh')

// Shorthand properties only: Node's CommonJS lexer (what ESM named imports see) stops at the
// first `name: expression`.
module.exports = {
  Mesh,
  Workflow,
  WorkflowBuilder,
  ActivationError,
  Output,
  RawJson,
  RunResult,
  verifyLog,
  verifyLogSync,
  canonicalLog,
  canonicalLogSync,
  fingerprint,
  fingerprintSync,
  replay,
  replaySync,
  stateAt,
  stateAtSync,
  readLog,
  readLogSync,
  readHeader,
  recordedWorkflow,
  errorCodes,
  errorClass,
  ERROR_CODES,
  AgentMeshError,
  InvalidWorkflowError,
  InvalidArgumentError,
  InvalidOutputError,
  InvalidCompletionError,
  NondeterminismError,
  LogCorruptError,
  LogTruncatedError,
  LogHeadMismatchError,
  RunExistsError,
  AgentFailedError,
  AgentTimeoutError,
  LimitExceededError,
  RunCancelledError,
  UnknownAgentError,
  AgentMeshIOError,
  InternalError,
}
