import type { LogEvent, LogHeader, ReplayReport, RunState, VerifyReport } from '../native'
import type { PathLike, Workflow } from './workflow'

/**
 * Verify a log: hash chain, header, event structure; a torn tail is cut off after being copied
 * to `<log>.broken`. Rejects with `LogCorruptError` (`offset`) or `AgentMeshIOError`. Runs on
 * the thread pool.
 */
export declare function verifyLog(path: PathLike): Promise<VerifyReport>
/** The canonical log bytes: header, then events by seq, without meta or chain fields. */
export declare function canonicalLog(path: PathLike): Promise<Buffer>
/** blake3 (hex) of the canonical log. */
export declare function fingerprint(path: PathLike): Promise<string>
/**
 * Re-drive a log against `workflow` (the recorded one when absent) without calling any agent.
 * Rejects with `NondeterminismError` (`seq`, `node`, `field`, `expected`, `actual`).
 */
export declare function replay(path: PathLike, workflow?: Workflow | null): Promise<ReplayReport>
/** Time travel: the run's state as of `seq` (`InvalidArgumentError` outside the log). */
export declare function stateAt(path: PathLike, seq: number): Promise<RunState>
/**
 * The events of a log in seq order (canonical form), as an async iterator:
 * `for await (const event of readLog(path))`. Errors reject the first `next()`.
 */
export declare function readLog(path: PathLike): AsyncGenerator<LogEvent, void, undefined>

/** `verifyLog`, blocking. */
export declare function verifyLogSync(path: PathLike): VerifyReport
/** `canonicalLog`, blocking. */
export declare function canonicalLogSync(path: PathLike): Buffer
/** `fingerprint`, blocking. */
export declare function fingerprintSync(path: PathLike): string
/** `replay`, blocking (throws `NondeterminismError`). */
export declare function replaySync(path: PathLike, workflow?: Workflow | null): ReplayReport
/** `stateAt`, blocking. */
export declare function stateAtSync(path: PathLike, seq: number): RunState
/** The events of a log in seq order, as an array. */
export declare function readLogSync(path: PathLike): LogEvent[]

/** The log header (reads only the first line). */
export declare function readHeader(path: PathLike): LogHeader
/** The workflow recorded in a log's `runStarted` event. */
export declare function recordedWorkflow(path: PathLike): Workflow
/** Every stable error code of the core (the addon's list), in the core's order. */
export declare function errorCodes(): string[]
