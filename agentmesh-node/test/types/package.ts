// Type fixture (tsc only, never run): the errors, workflow and log names through the package
// entry point (index.d.ts), as a user imports them.
import {
  AgentMeshError,
  ERROR_CODES,
  NondeterminismError,
  Workflow,
  WorkflowBuilder,
  LogTruncatedError,
  anchor,
  errorClass,
  readLog,
  verifyAnchor,
  replay,
  verifyLogSync,
} from '../..'
import type { AgentMeshErrorCode, Anchor, AnchorOptions, Condition, LogEvent, PathLike, RetryPolicy, VerifyReport, WorkflowDefinition } from '../..'

export async function check(path: PathLike, definition: WorkflowDefinition): Promise<AgentMeshErrorCode | null> {
  const wf: Workflow = Workflow.fromObject(definition)
  const builder: WorkflowBuilder = Workflow.builder('w')
  const retry: RetryPolicy = { maxAttempts: 2 }
  const when: Condition = { path: '/input', exists: true }
  builder.agent('a', 'x', { retry }).branch('b', { after: 'a', cases: [{ when, goto: 'a' }] })
  const report: VerifyReport = verifyLogSync(path)
  const events: LogEvent[] = []
  for await (const e of readLog(path)) events.push(e)
  const options: AnchorOptions = { key: 'k' }
  const a: Anchor = await anchor(path, options)
  try {
    await verifyAnchor(path, a, options)
  } catch (e) {
    if (e instanceof LogTruncatedError) return e.code
  }
  try {
    await replay(path, wf)
  } catch (e) {
    if (e instanceof NondeterminismError) return e.code
    if (e instanceof AgentMeshError) return e.code
  }
  void [report, errorClass('IO'), ERROR_CODES]
  return null
}

// The addon's internals are not part of the package's types.
// @ts-expect-error fromNative is internal to the package
import { fromNative } from '../..'
void fromNative
