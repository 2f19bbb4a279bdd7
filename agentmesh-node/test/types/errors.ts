// Type fixture (tsc only, never run): the error classes of lib/errors.d.ts.
import {
  AgentFailedError,
  AgentMeshError,
  InvalidArgumentError,
  InvalidWorkflowError,
  LogCorruptError,
  NondeterminismError,
  ERROR_CODES,
  errorClass,
} from '../../lib/errors'
import type { AgentMeshErrorCode, AnyAgentMeshError, ErrorDetails } from '../../lib/errors'

export function describeError(e: unknown): string {
  if (e instanceof NondeterminismError) {
    const code: 'NONDETERMINISM' = e.code
    const seq: number | null = e.seq
    const texts: (string | null)[] = [e.node, e.field, e.expected, e.actual]
    return `${code} ${seq} ${texts.join(' ')}`
  }
  if (e instanceof LogCorruptError) {
    const offset: number | null = e.offset
    return `corrupt at ${offset}`
  }
  if (e instanceof AgentMeshError) {
    const code: AgentMeshErrorCode = e.code
    const details: ErrorDetails = e.details
    return `${code} ${e.message} ${JSON.stringify(details)}`
  }
  return String(e)
}

/** `code` discriminates the union of every class. */
export function where(e: AnyAgentMeshError): string | number | null {
  switch (e.code) {
    case 'INVALID_WORKFLOW':
      return e.field
    case 'LOG_CORRUPT':
      return e.offset
    case 'NONDETERMINISM':
      return e.seq
    case 'AGENT_FAILED':
      return e.node
    default:
      // @ts-expect-error only LogCorruptError has an offset
      return e.offset
  }
}

const codes: readonly AgentMeshErrorCode[] = ERROR_CODES
export const first: AgentMeshErrorCode | undefined = codes[0]
// @ts-expect-error ERROR_CODES is read-only
ERROR_CODES.push('IO')
// @ts-expect-error not a code
export const notACode: AgentMeshErrorCode = 'NOT_A_CODE'

// errorClass: the exact class for a known code, the base class for any string.
const Corrupt = errorClass('LOG_CORRUPT')
export const offset: number | null = new Corrupt('x', { offset: 3 }).offset
export const staticCode: 'LOG_CORRUPT' = Corrupt.code
const Some = errorClass(String(Math.random()))
// @ts-expect-error the base class has no offset
new Some('x').offset

const wf = new InvalidWorkflowError('bad', { node: null, field: '(document)' })
export const node: string | null = wf.node
// @ts-expect-error code is read-only
wf.code = 'IO'
// @ts-expect-error details has known keys with their types
new InvalidWorkflowError('bad', { node: 5 })
// @ts-expect-error the message is required
new InvalidArgumentError()

const failed = new AgentFailedError('[AGENT_FAILED] node a failed', { node: 'a' }, { cause: new RangeError('boom') })
failed.result = null
export const cause: unknown = failed.cause
export const isError: Error = failed
// @ts-expect-error result is a RunResult or null
failed.result = 'done'
