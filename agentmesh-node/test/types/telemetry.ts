// Type fixture (tsc only, never run): telemetry through the package entry point.
import { Mesh, Telemetry, exportLog, exportOtlp, exportOtlpSync } from '../..'
import type { ExportFormat, ExportOtlpOptions, TelemetryExportStats, TelemetryOptions } from '../..'

export async function check(log: string): Promise<number> {
  const options: TelemetryOptions = { otlp: 'http://127.0.0.1:4318', sampleRatio: 0.5, alwaysTrace: ['writer'], metricLabels: null }
  const t = new Telemetry(options)
  const fromEnv: Telemetry = Telemetry.fromEnv()
  const mesh = new Mesh({ telemetry: t })
  const text: string = t.metricsText() + fromEnv.metricsText()
  const addr: string = t.serveMetrics('127.0.0.1:0')
  const flushed: boolean = t.flush(100) && t.shutdown()
  const stats: TelemetryExportStats | null = t.exportStats
  const format: ExportFormat = 'spans'
  const spans: string = exportLog(log, format)
  const send: ExportOtlpOptions = { headers: { 'x-key': 'v' }, serviceName: 's', content: true }
  const sent: number = exportOtlpSync(log, addr, send)
  // @ts-expect-error: not a format
  exportLog(log, 'svg')
  // @ts-expect-error: not an option
  new Telemetry({ sampleRate: 1 })
  // @ts-expect-error: a Telemetry, not its options
  new Mesh({ telemetry: options })
  void mesh
  void text
  void flushed
  void stats
  void spans
  return sent + (await exportOtlp(new URL(`file://${log}`), 'http://127.0.0.1:4318'))
}
