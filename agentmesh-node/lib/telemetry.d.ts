// Telemetry (docs/telemetry.md): live spans and metrics for the runs a mesh observes, and the
// exports of a log.
import type { PathLike } from './workflow'

/** `new Telemetry(options)`. */
export interface TelemetryOptions {
  /** The collector's base URL (`http://127.0.0.1:4318`) or full traces URL; absent: no span export (metrics only). */
  otlp?: string | null
  /** Extra request headers (with `otlp`). */
  headers?: Record<string, string> | null
  /** `service.name` (else `OTEL_SERVICE_NAME`, else `agentmesh`; with `otlp`). */
  serviceName?: string | null
  /** Share of runs whose spans are exported, 0 to 1 (default 1); metrics count every run. */
  sampleRatio?: number | null
  /** Agents whose activations are exported whatever the ratio says. */
  alwaysTrace?: string[] | null
  /** Put recorded inputs and outputs on spans (what the log holds, redacted by the run's policy). */
  captureContent?: boolean | null
  /** How long a run's end waits for its spans to be sent (default 2000). */
  flushTimeoutMs?: number | null
  /** Attribute names allowed as metric labels; `null`: the default ones. */
  metricLabels?: string[] | null
}

/** What the exporter did. */
export interface TelemetryExportStats {
  /** Spans the collector accepted. */
  exported: number
  /** Spans dropped: the queue was full, or their request failed. */
  dropped: number
  /** Export requests that failed (collector down, slow or refusing). */
  failedRequests: number
}

/** Live telemetry for the runs a mesh observes (`new Mesh({telemetry})`). */
export declare class Telemetry {
  /** `InvalidArgumentError` naming the option when one is unknown or wrong. */
  constructor(options?: TelemetryOptions)
  /** Telemetry configured by the standard `OTEL_*` variables. */
  static fromEnv(): Telemetry
  /** The metrics so far, as Prometheus text. */
  metricsText(): string
  /** Send what is queued and wait for it (blocking), at most `timeoutMs` (default 2000); whether it was all handled. */
  flush(timeoutMs?: number): boolean
  /** Flush (at most `timeoutMs`, default 2000) and stop the exporter; whether the flush finished. */
  shutdown(timeoutMs?: number): boolean
  /** Serve `GET /metrics` on a loopback address (default `127.0.0.1:9464`; port 0 picks one); the address it listens on. */
  serveMetrics(addr?: string): string
  /** What the exporter did so far; `null` without `otlp`. */
  readonly exportStats: TelemetryExportStats | null
}

/** What `exportLog` renders a log as. */
export type ExportFormat = 'chrome' | 'html' | 'mermaid' | 'spans'

/** The log at `path` as Chrome/Perfetto JSON, an HTML timeline, a Mermaid flowchart or span JSON lines (read synchronously). */
export declare function exportLog(path: PathLike, format: ExportFormat): string

/** `exportOtlp` options. */
export interface ExportOtlpOptions {
  /** Extra request headers. */
  headers?: Record<string, string> | null
  /** `service.name` (else `OTEL_SERVICE_NAME`, else `agentmesh`). */
  serviceName?: string | null
  /** Put the recorded inputs and outputs on the spans (default false). */
  content?: boolean | null
}

/** Send the finished spans of the log at `path` to the collector at `endpoint`, off the JS thread; the number sent. */
export declare function exportOtlp(path: PathLike, endpoint: string, options?: ExportOtlpOptions): Promise<number>
/** `exportOtlp`, blocking. */
export declare function exportOtlpSync(path: PathLike, endpoint: string, options?: ExportOtlpOptions): number

/** One structured log record (a committed event of an observed run, or a telemetry warning). */
export interface LogRecord {
  /** `DEBUG`, `INFO`, `WARN` or `ERROR`. */
  level: string
  message: string
  /** `agentmesh::event` or `agentmesh::telemetry`. */
  target: string
  timestamp?: string
  run_id?: string
  trace_id?: string
  span_id?: string
  node?: string | null
  seq?: number
  sub?: number | null
  attempt?: number | null
  event?: string
  [field: string]: unknown
}

/** A logger `routeLogs` can call: console, winston and the like. */
export interface LevelLogger {
  debug(message: string, record: LogRecord): unknown
  info(message: string, record: LogRecord): unknown
  warn(message: string, record: LogRecord): unknown
  error(message: string, record: LogRecord): unknown
}

export interface RouteLogsOptions {
  /** Lowest level routed (default `info`); decided by the first call. */
  level?: 'debug' | 'info' | 'warn' | 'error' | null
  /** Lines kept until drained (default 10000; the oldest dropped); decided by the first call. */
  buffer?: number | null
  /** How often the records are drained on the JS thread (default 100 ms). */
  everyMs?: number | null
}

/** Route AgentMesh's structured logs to `logger` (a function or a level logger). */
export declare function routeLogs(logger: ((record: LogRecord) => unknown) | LevelLogger, options?: RouteLogsOptions): void
