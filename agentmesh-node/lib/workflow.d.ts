import type { NativeWorkflow } from '../native'
import type { JsonValue } from './mesh'

/** A file path: a string or a `file:` URL. */
export type PathLike = string | URL

/** Retry policy of an agent or tool node (`retry` in the workflow JSON). */
export interface RetryPolicy {
  /** 1–100 attempts in all. */
  maxAttempts: number
  /** Wait before the first retry, 0–86,400,000 ms (default 0). */
  backoffMs?: number
  /** Factor applied to the wait before each later retry, 1–10 (default 1). */
  backoffMultiplier?: number
  /**
   * Error types never retried (exact type names: a thrown error's class name, or an
   * `ActivationError`'s `type`), on top of the programming-error defaults.
   */
  nonRetryable?: string[]
  /**
   * Retry programming errors too (`TypeError`, `ReferenceError`, `SyntaxError`, `RangeError`,
   * and Python's); by default they fail the node at once (default false).
   */
  retryProgrammingErrors?: boolean
}

/** `{path, <op>: operand}` for each operator of `Op` (exactly one operator per test). */
type Test<Op extends string, T> = Op extends string ? { path: string } & { [K in Op]: T } : never

/**
 * A branch condition: a test `{path, <op>: operand}` on the state document (`/input/...`,
 * `/outputs/<node>/...`, `/visits/<node>`), or `all`/`any`/`not` of conditions.
 */
export type Condition =
  | Test<'eq' | 'ne' | 'contains', JsonValue>
  | Test<'gt' | 'gte' | 'lt' | 'lte', number | string>
  | Test<'in', JsonValue[]>
  | Test<'exists', boolean>
  | Test<'matches', string>
  | { all: Condition[] }
  | { any: Condition[] }
  | { not: Condition }

/** One case of a branch: the first whose `when` holds is chosen. */
export interface BranchCase {
  when: Condition
  goto: string
}

interface NodeBase {
  /** 1–128 of `A-Z a-z 0-9 _ - .`, unique. */
  id: string
  /** Dependencies. */
  after?: string[]
  /** Most times the node may be activated (a branch: decided) in one run. */
  maxVisits?: number
}

/**
 * Paths of earlier values (`/outputs/<node>/...`, `/visits/<node>`, `/input/...`) the node's
 * activations receive in `act.reads`, besides their `deps`.
 */
interface Reads {
  reads?: string[]
}

/**
 * A node's output contract (`output` in the workflow JSON; docs/workflow.md, "Structured
 * outputs"). An output that does not match fails the attempt with the retryable
 * `OutputSchemaError`, whose message names the path; the retry gets it in `act.lastFailure`.
 */
export interface OutputSpec {
  /**
   * The JSON Schema every output must match (draft 2020-12 unless its `$schema` names another;
   * `format` asserted; no remote `$ref`s). A schema the core cannot use is
   * `INVALID_WORKFLOW` with field `output.schema`.
   */
  schema: boolean | { readonly [keyword: string]: unknown }
  /**
   * Parse a text output that does not match as almost-JSON first (code fences, single quotes,
   * trailing commas, ...) and record that JSON if it matches (default false).
   */
  repair?: boolean
}

/** The output contract of a node that reports outputs (agent, tool, human, map). */
interface Contract {
  output?: OutputSpec
}

export interface AgentNode extends NodeBase, Reads, Contract {
  type: 'agent'
  agent: string
  timeoutMs?: number
  retry?: RetryPolicy
}

export interface ToolNode extends NodeBase, Reads, Contract {
  type: 'tool'
  tool: string
  timeoutMs?: number
  retry?: RetryPolicy
}

export interface HumanNode extends NodeBase, Reads, Contract {
  type: 'human'
  prompt?: string
}

/** What a map node does when one of its items fails for good (after its retries). */
export type ItemFailure = 'fail' | 'collect'

/** A map runs its agent or its tool: exactly one of them. */
type AgentOrTool = { agent: string; tool?: never } | { tool: string; agent?: never }

/**
 * One activation of `agent` (or one call of `tool`) per item of the array at `over`, all in one
 * step; the node's output is the array of the item outputs, in item order (fields as in
 * `MapOptions`).
 */
export type MapNode = NodeBase &
  Reads &
  Contract &
  Pick<MapOptions, 'over' | 'itemKey' | 'maxItems' | 'concurrency' | 'onItemFailure' | 'timeoutMs' | 'retry'> & {
    type: 'map'
  } & AgentOrTool

export interface BranchNode extends NodeBase {
  type: 'branch'
  cases?: BranchCase[]
  default?: string
}

export type NodeDefinition = AgentNode | ToolNode | HumanNode | BranchNode | MapNode

/** A workflow document, as in the workflow JSON (docs/workflow.md). */
export interface WorkflowDefinition {
  name: string
  /** Most supersteps one run may take. */
  maxSteps?: number
  nodes: NodeDefinition[]
}

/**
 * A workflow the core has parsed and validated. Invalid definitions throw
 * `InvalidWorkflowError` naming the node and field.
 */
export declare class Workflow {
  /** Wraps a `NativeWorkflow`; use the static constructors. */
  constructor(nativeWorkflow: NativeWorkflow)
  /** Parse and validate workflow JSON text. */
  static fromJson(text: string): Workflow
  /** Validate a workflow given as a plain object (JSON data). */
  static fromObject(definition: WorkflowDefinition): Workflow
  /** Read, parse and validate a workflow file. */
  static fromFile(path: PathLike): Workflow
  /** Build a workflow in code. */
  static builder(name: string): WorkflowBuilder
  /** The native workflow (internal: for the driver and the log functions). */
  readonly _native: NativeWorkflow
  /** The workflow's name. */
  readonly name: string
  /** blake3 (hex) of the canonical workflow JSON, as recorded in log headers. */
  readonly hash: string
  /** The canonical workflow JSON text. */
  toJson(): string
  /** The canonical workflow as a plain object. */
  toObject(): WorkflowDefinition
  /** The canonical definition (what `JSON.stringify(workflow)` writes). */
  toJSON(): WorkflowDefinition
  /** Node ids in declaration order. */
  nodeIds(): string[]
  /** Agent names the workflow uses, sorted. */
  agentNames(): string[]
  /** Tool names the workflow uses, sorted. */
  toolNames(): string[]
  /**
   * Hints about a valid workflow that probably does not do what its author meant (a node whose
   * every `after` entry is a branch receives no deps); they never change a run. Loading or
   * building a workflow emits each once per process (`process.emitWarning`, type
   * `AgentMeshWarning`).
   */
  readonly warnings: string[]
  toString(): string
}

/** `after`: one node id or several. */
export type After = string | readonly string[]

export interface WorkOptions {
  after?: After
  /** Deadline of one attempt, enforced by the driver. */
  timeoutMs?: number
  retry?: RetryPolicy
  maxVisits?: number
  /** Earlier values the activations receive in `act.reads`: one path (like `/outputs/critic`) or several. */
  reads?: string | readonly string[]
  /**
   * The contract every output must meet (`{schema, repair}`): a mismatch fails the attempt
   * with the retryable `OutputSchemaError` naming the path (for a map: each item's output).
   */
  output?: OutputSpec
}

export interface HumanOptions {
  /** Shown to the person; copied into `humanRequested`. */
  prompt?: string
  after?: After
  maxVisits?: number
  /** Earlier values the human activation carries in `reads`: one path or several. */
  reads?: string | readonly string[]
  /**
   * The contract the decision must meet: one that does not match is refused
   * (`InvalidOutputError` from `Mesh.resume`), nothing is recorded and the run still waits.
   */
  output?: OutputSpec
}

/**
 * `WorkflowBuilder.map`'s options: `over`, exactly one of `agent` and `tool`, the map's own
 * fields, and those of an agent or tool node (`timeoutMs` and `retry` apply to each item).
 */
export interface MapOptions extends WorkOptions {
  /** Path of the array to map over (`/outputs/plan/items`, `/input/urls`). */
  over: string
  /** The agent that runs each item (or give `tool`). */
  agent?: string
  /** The tool called for each item (or give `agent`). */
  tool?: string
  /** JSON Pointer into each item to its key (a string or an integer, unique among the items). */
  itemKey?: string
  /** Most items the array may hold, 1–10,000 (default 1,000). */
  maxItems?: number
  /** Most items running at once, 1–10,000 (default all). */
  concurrency?: number
  /** `fail` (default): the node fails the run; `collect`: `{ok, output}` / `{ok, error}` per item. */
  onItemFailure?: ItemFailure
}

export interface BranchOptions {
  cases?: readonly BranchCase[]
  /** Target when no case holds. */
  default?: string
  after?: After
  maxVisits?: number
}

/** Adds nodes in declaration order; `build()` validates like JSON input. */
export declare class WorkflowBuilder {
  constructor(name: string)
  /** An agent node run by the agent registered as `agent`. */
  agent(id: string, agent: string, options?: WorkOptions): this
  /** A tool node run by the tool registered as `tool`. */
  tool(id: string, tool: string, options?: WorkOptions): this
  /** A human-approval node. */
  human(id: string, options?: HumanOptions): this
  /**
   * A map node: one activation of `agent` (or call of `tool`) per item of the array at `over`;
   * its output is the array of the item outputs, in item order.
   */
  map(id: string, options: MapOptions & AgentOrTool): this
  /** A branch: `cases` tried in order, `default` when none holds. */
  branch(id: string, options: BranchOptions): this
  /** Bound the number of supersteps of a run. */
  maxSteps(n: number): this
  /** Validate and compile (`InvalidWorkflowError` names the node and field). */
  build(): Workflow
}
