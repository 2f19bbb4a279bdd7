// Types of the `agentmesh` package (hand-written; the addon's generated typings are
// ./native.d.ts, internal).
export * from './lib/errors'
export * from './lib/workflow'
export * from './lib/log'
export * from './lib/mesh'
export * from './lib/calls'
export * from './lib/policy'
export * from './lib/telemetry'
export type {
  Anchor,
  BudgetRefusal,
  CostLine,
  EventMeta,
  Failure,
  HeaderMeta,
  LogEvent,
  LogHeader,
  Outcome,
  PolicyRef,
  ReplayReport,
  RunError,
  RunState,
  UsageReport,
  UsageTotals,
  Verdict,
  VerifyReport,
} from './native'
