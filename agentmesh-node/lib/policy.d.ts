// Policies (docs/policy.md): load one, try it on text, check it against recorded runs.

/** A policy: a `Policy`, a policy file's path (JSON or YAML), or a policy object. */
export type PolicySource = Policy | string | Record<string, unknown>

/** A policy, loaded all or nothing (`PolicyInvalidError` naming the rule, field, line, column). */
export declare class Policy {
  /** A file path (read synchronously: at most 1 MiB), a policy object, or a Policy. */
  constructor(source: PolicySource)
  /** The policy's name. */
  readonly name: string
  /** blake3 (hex) of its canonical form: what a run's log header records. */
  readonly hash: string
  /** The policy file format version. */
  readonly version: number
  /** The rule ids, in order. */
  readonly ruleIds: string[]
  /** The policy in canonical form. */
  toJSON(): Record<string, unknown>
}

/** One replaced span: offsets in Unicode code points of the input (not UTF-16 units). */
export interface RedactedSpan {
  start: number
  end: number
  /** What the placeholder says: a detector's name or a custom rule's id. */
  kind: string
  rule: string
}

/** A redacted text and what was replaced. */
export interface Redaction {
  text: string
  spans: RedactedSpan[]
}

/** `text` with the policy's redact and block matches replaced (every built-in detector without one). */
export declare function redact(text: string, policy?: PolicySource | null): Redaction

/** One decision a new policy would change on a recorded run. */
export interface PolicyChange {
  seq: number
  sub?: number
  node?: string
  /** `input`, `output`, `llmRequest`…, `tool`, `workflow`. */
  subject: string
  change: 'nowBlock' | 'nowRedact' | 'nowWarn' | 'noLongerBlock' | 'noLongerRedact' | 'noLongerWarn' | 'ruleChanged'
  rule: string
  kind: string
  path?: string
  count: number
  /** The change in one sentence. */
  detail: string
}

/** What a policy would decide differently on recorded runs (`agentmesh policy check --json`). */
export interface PolicyReport {
  policy: { name: string; hash: string }
  logs: {
    path: string
    runId: string
    recordedPolicy?: { name: string; hash: string }
    values: number
    changes: PolicyChange[]
  }[]
}

/** Judge the runs recorded in `logs` by `policy` (on libuv's thread pool). */
export declare function checkPolicy(policy: PolicySource, logs: string | string[]): Promise<PolicyReport>
/** `checkPolicy`, blocking. */
export declare function checkPolicySync(policy: PolicySource, logs: string | string[]): PolicyReport
