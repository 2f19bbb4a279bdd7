import type { Anchor, LogEvent, LogHeader, ReplayReport, RunState, UsageReport, VerifyReport } from '../native'
import type { PathLike, Workflow } from './workflow'

/**
 * Verify a log: hash chain, header, event structure; a torn tail is cut off after being copied
 * to `<log>.broken`. Rejects with `LogCorruptError` (`offset`) or `AgentMeshIOError`. Runs on
 * the thread pool.
 */
export declare function verifyLog(path: PathLike): Promise<VerifyReport>
/**
 * Verify a log without ever writing to it: a damaged tail is reported (`tornAt`), not cut off.
 * Works on a read-only file system and while the run's writer is running (`verifyLog` repairs).
 */
export declare function checkLog(path: PathLike): Promise<VerifyReport>

/** Options of `anchor` and `verifyAnchor`. */
export interface AnchorOptions {
  /**
   * Key material for a keyed anchor (a MAC over the head that nobody without the key can
   * recompute): a string (its UTF-8 bytes), a Buffer or a Uint8Array; use at least 32 random
   * bytes. Never logged, never shown in an error.
   */
  key?: string | Uint8Array | null
}

/**
 * Take an anchor of a log (read-only): run id, record count, byte length and the chain's head
 * hash, with a MAC when `key` is given. Keep it outside the log's machine: `verifyAnchor`
 * then detects a log cut at a record boundary or edited with its chain recomputed.
 */
export declare function anchor(path: PathLike, options?: AnchorOptions): Promise<Anchor>
/**
 * Check a log (read-only) against an anchor taken earlier (the object or its JSON text).
 * Rejects with `LogTruncatedError` (fewer records or bytes than anchored) or
 * `LogHeadMismatchError` (another head, run or MAC: `field`, `expected`, `found`); a keyed
 * anchor needs its key (`InvalidArgumentError` otherwise).
 */
export declare function verifyAnchor(path: PathLike, anchor: Anchor | string, options?: AnchorOptions): Promise<VerifyReport>
/**
 * The run's state at seq 1, after every step, and at the end of the log, in one pass, as an
 * async iterator (streamed). Rejects with `NondeterminismError` when the log disagrees with
 * its workflow.
 */
export declare function history(path: PathLike): AsyncIterableIterator<RunState>

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
 * What the run in a log spent (read-only): token usage in all (`total`) and by node, agent,
 * tool and model; a fork's events copied from its parent are `inherited`, never in `total`.
 */
export declare function usageReport(path: PathLike): Promise<UsageReport>
/**
 * The events of a log in seq order (canonical form), as an async iterator:
 * `for await (const event of readLog(path))`. Streams in flat memory (a reader thread hands
 * over batches); errors reject the `next()` that reaches them.
 */
export declare function readLog(path: PathLike): AsyncIterableIterator<LogEvent>

/** `verifyLog`, blocking. */
export declare function verifyLogSync(path: PathLike): VerifyReport
/** `checkLog`, blocking. */
export declare function checkLogSync(path: PathLike): VerifyReport
/** `anchor`, blocking. */
export declare function anchorSync(path: PathLike, options?: AnchorOptions): Anchor
/** `verifyAnchor`, blocking (throws `LogTruncatedError`, `LogHeadMismatchError`). */
export declare function verifyAnchorSync(path: PathLike, anchor: Anchor | string, options?: AnchorOptions): VerifyReport
/** `history`, as an array. */
export declare function historySync(path: PathLike): RunState[]
/** `canonicalLog`, blocking. */
export declare function canonicalLogSync(path: PathLike): Buffer
/** `fingerprint`, blocking. */
export declare function fingerprintSync(path: PathLike): string
/** `replay`, blocking (throws `NondeterminismError`). */
export declare function replaySync(path: PathLike, workflow?: Workflow | null): ReplayReport
/** `stateAt`, blocking. */
export declare function stateAtSync(path: PathLike, seq: number): RunState
/** `usageReport`, blocking. */
export declare function usageReportSync(path: PathLike): UsageReport
/** The events of a log in seq order, as an array. */
export declare function readLogSync(path: PathLike): LogEvent[]

/** The log header (reads only the first line). */
export declare function readHeader(path: PathLike): LogHeader
/** The workflow recorded in a log's `runStarted` event. */
export declare function recordedWorkflow(path: PathLike): Workflow
/** Every stable error code of the core (the addon's list), in the core's order. */
export declare function errorCodes(): string[]
