// Type fixture (tsc only, never run): the log functions of lib/log.d.ts.
import * as log from '../../lib/log'
import { Workflow } from '../../lib/workflow'
import type { Anchor, LogEvent, LogHeader, ReplayReport, RunState, UsageReport, VerifyReport } from '../../native'
import type { AnchorOptions } from '../../lib/log'

export async function readSide(path: string): Promise<void> {
  const report: VerifyReport = await log.verifyLog(path)
  const bytes: Buffer = await log.canonicalLog(new URL(`file://${path}`))
  const fingerprint: string = await log.fingerprint(path)
  const replayed: ReplayReport = await log.replay(path, Workflow.fromFile('w.json'))
  const recorded: ReplayReport = await log.replay(path)
  const state: RunState = await log.stateAt(path, 3)
  for await (const event of log.readLog(path)) {
    const type: string = event.type
    const seq: number = event.seq
    void [type, seq]
  }
  const events: LogEvent[] = log.readLogSync(path)
  const header: LogHeader = log.readHeader(path)
  const seed: bigint = header.seed
  const wf: Workflow = log.recordedWorkflow(path)
  const codes: string[] = log.errorCodes()
  const sync: [VerifyReport, Buffer, string, ReplayReport, RunState] = [
    log.verifyLogSync(path),
    log.canonicalLogSync(path),
    log.fingerprintSync(path),
    log.replaySync(path, null),
    log.stateAtSync(path, 1),
  ]
  void [report, bytes, fingerprint, replayed, recorded, state, events, seed, wf, codes, sync]

  const checked: VerifyReport = await log.checkLog(path)
  const torn: number | null | undefined = log.checkLogSync(path).tornAt
  const options: AnchorOptions = { key: Buffer.from('k') }
  const a: Anchor = await log.anchor(path, options)
  const keyed: Anchor = log.anchorSync(path, { key: 'material' })
  const mac: string | undefined = keyed.mac
  const ok: VerifyReport = await log.verifyAnchor(path, a)
  const fromText: VerifyReport = log.verifyAnchorSync(path, JSON.stringify(keyed), { key: new Uint8Array([1, 2]) })
  for await (const s of log.history(path)) {
    const at: number = s.seq
    void at
  }
  const states: RunState[] = log.historySync(path)
  void [checked, torn, mac, ok, fromText, states]
  // @ts-expect-error a key is a string or bytes
  await log.anchor(path, { key: 42 })
  // @ts-expect-error an anchor is an object or its JSON text
  log.verifyAnchorSync(path, 7)

  // @ts-expect-error the Promise form must be awaited
  const events2: number = log.verifyLog(path).events
  // @ts-expect-error replay takes a Workflow, not a definition
  await log.replay(path, { name: 'w', nodes: [] })
  // @ts-expect-error seq is a number
  await log.stateAt(path, '3')
  // @ts-expect-error paths are strings or URLs
  log.verifyLogSync(5)
  // @ts-expect-error readLog is an async iterator, not an array
  log.readLog(path).length
  void events2

  const usage: UsageReport = await log.usageReport(path)
  const usageSync: UsageReport = log.usageReportSync(new URL(`file://${path}`))
  const perNode: number | undefined = usage.byNode['plan']?.inputTokens
  void [usageSync, perNode]
  // @ts-expect-error the Promise form must be awaited
  log.usageReport(path).total
}
