// Typings of the addon's plain Node-API part (src/raw.rs): the per-step protocol, which napi
// build does not see (native.d.ts is generated from the napi-rs part). Hand-written; kept true
// by test/native.test.js (exports, methods, record layout). Internal to the package.
import type { Failure } from './native'

/**
 * What an agent's result became, converted the moment the driver got it (snapshot): made by
 * the static factories, recorded once by `NativeRun.completeAll`. Every factory takes a last,
 * optional `into`: a recorded completion to reuse instead of making a new object.
 */
export declare class NativeCompletion {
  private constructor()
  /**
   * `output` (JSON data) with optional usage (`{inputTokens, outputTokens}`) and duration. A
   * value that is not JSON data, or bad usage, makes the permanent `InvalidOutput` failure
   * naming the node; a JS exception thrown while reading the value is thrown.
   */
  static ok(id: number, node: string, output: unknown, usage?: unknown, durationUs?: number | null, into?: NativeCompletion | null): NativeCompletion
  /** `ok` with the output as JSON text, recorded as the core parses it. */
  static okJson(id: number, node: string, outputJson: string, usage?: unknown, durationUs?: number | null, into?: NativeCompletion | null): NativeCompletion
  /** A failure the agent reported, with the usage of the failed attempt. */
  static err(id: number, node: string, errorType: string, message: string, retryable: boolean, usage?: unknown, durationUs?: number | null, into?: NativeCompletion | null): NativeCompletion
  /** The deadline passed first: the core records the one timeout failure. */
  static timedOut(id: number, node: string, into?: NativeCompletion | null): NativeCompletion
  /** A result that could not be read: the `InvalidOutput` failure `node '<node>': <reason>`. */
  static unreadable(id: number, node: string, reason: string, durationUs?: number | null, into?: NativeCompletion | null): NativeCompletion
  /** The activation id it completes. */
  readonly id: number
  /** The `INVALID_OUTPUT` error when the result could not be recorded as given, else `null`. */
  readonly error: Error | null
}

/**
 * One activation in a poll text: `[id, node, kind, name, attempt, visit, delayMs, timeoutMs,
 * step, seed, prompt, depsEnd]` (`timeoutMs`, `prompt` `null` when absent; `seed` decimal);
 * a map item's record, one with `reads` and a retry's have four more entries: `itemIndex,
 * itemKey, valueEnd, readsEnd` (`itemIndex`, `itemKey` `null` when absent); a retry's has a
 * seventeenth, `lastFailure`, the failure it retries as the log records it; a sub-workflow
 * node's has those (`lastFailure` `null` without one) and an eighteenth, `inputEnd`: its own
 * input's text (its workflow node's `input`) follows its reads text.
 */
export type ActivationRecord =
  | [
      id: number,
      node: string,
      kind: 'agent' | 'tool' | 'human',
      name: string,
      attempt: number,
      visit: number,
      delayMs: number,
      timeoutMs: number | null,
      step: number,
      seed: string,
      prompt: string | null,
      depsEnd: number,
    ]
  | [
      id: number,
      node: string,
      kind: 'agent' | 'tool' | 'human',
      name: string,
      attempt: number,
      visit: number,
      delayMs: number,
      timeoutMs: number | null,
      step: number,
      seed: string,
      prompt: string | null,
      depsEnd: number,
      itemIndex: number | null,
      itemKey: string | null,
      valueEnd: number,
      readsEnd: number,
    ]
  | [
      id: number,
      node: string,
      kind: 'agent' | 'tool' | 'human',
      name: string,
      attempt: number,
      visit: number,
      delayMs: number,
      timeoutMs: number | null,
      step: number,
      seed: string,
      prompt: string | null,
      depsEnd: number,
      itemIndex: number | null,
      itemKey: string | null,
      valueEnd: number,
      readsEnd: number,
      lastFailure: Failure,
    ]
  | [
      id: number,
      node: string,
      kind: 'agent' | 'tool' | 'human',
      name: string,
      attempt: number,
      visit: number,
      delayMs: number,
      timeoutMs: number | null,
      step: number,
      seed: string,
      prompt: string | null,
      depsEnd: number,
      itemIndex: number | null,
      itemKey: string | null,
      valueEnd: number,
      readsEnd: number,
      lastFailure: Failure | null,
      inputEnd: number,
    ]

declare module './native' {
  interface NativeRun {
    /**
     * Activations not yet handed out, as a poll text: a JSON line of `ActivationRecord`s,
     * then their texts back to back: each one's deps text (ending at its `depsEnd`, counted
     * after the newline in UTF-16 code units), then, for a record of sixteen entries or more,
     * its item's value text (ending at `valueEnd`; empty without an item) and its reads text
     * (ending at `readsEnd`; empty without reads), and for a record of eighteen, its own input
     * text (ending at `inputEnd`).
     */
    poll(): string
    /** Activations still waiting for a completion, as a poll text. */
    outstanding(): string
    /**
     * Record a burst of completions in one commit (one fsync with fsync `always`): `null`
     * when each was recorded as given, else one entry each (`null`, or the `INVALID_OUTPUT` /
     * `INVALID_COMPLETION` error explaining it).
     */
    completeAll(completions: NativeCompletion[]): Array<Error | null> | null
    /** `completeAll`, then `poll`: the poll text, or `[notes, text]` when there are notes. */
    completeAll(completions: NativeCompletion[], poll: true): string | [Array<Error | null>, string]
  }
}

/**
 * A call's ticket as `NativeCalls.start` / `native` give it (src/calls.rs): a recorded call
 * (`live: false`) carries its `response` or `error`, and `usage`; a clamped one `maxTokens`.
 */
export interface NativeTicket {
  activation: number
  call: number
  seq: number
  idempotencyKey: string
  live: boolean
  /** The `maxTokens` a budget clamped the call to (absent: not clamped). */
  maxTokens?: number
  response?: unknown
  error?: { type: string; message: string; retryable: boolean; status?: number }
  usage?: Record<string, unknown>
  cached?: boolean
}

/** What a native call's `done` resolves to: its outcome, and how many chunks it streamed. */
export interface NativeOutcome {
  response?: unknown
  error?: { type: string; message: string; retryable: boolean; status?: number }
  usage?: Record<string, unknown>
  chunks: number
}
