//! The plain JS objects the addon returns: activations, outcomes and the log reports.
//!
//! Each is a `#[napi(object)]` built straight from the core's struct (no JSON text between),
//! so the generated `.d.ts` types them exactly. Every conversion destructures the core struct
//! without `..`: a field added to the core fails this crate's build instead of being dropped.
//!
//! Numbers: counters (`id`, `seq`, `step`, `visit`, `events`, offsets, token counts) are JS
//! numbers, exact below 2^53, which no log reaches. Seeds are full 64-bit values (an
//! activation's seed is a hash), so every `seed` is a `bigint`: the header's, the
//! activation's, and `data.seed` of a `runStarted` event. User data (`input`, `deps`,
//! outputs) is what `JSON.parse` of its text gives (see `json.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use agentmesh_core as core;
use napi::bindgen_prelude::{BigInt, ToNapiValue, TypeName};
use napi::{sys, ValueType};
use napi_derive::napi;
use serde_json::Value;

use crate::json::{self, Json, Record};

/// A counter as a JS number (exact below 2^53).
pub fn num(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One unit of work as reports show it (`RunState.pending`, with the fields of the core's JSON;
/// the driver's activations come from `poll`, see `activation.rs`).
#[napi(object, object_from_js = false)]
pub struct Activation {
    /// Activation id (the seq of its scheduling event).
    pub id: i64,
    pub run_id: String,
    /// Node id.
    pub node: String,
    #[napi(ts_type = "'agent' | 'tool' | 'human'")]
    pub kind: String,
    /// Agent or tool name (the node id for a human activation).
    pub name: String,
    /// Attempt within this visit, from 1.
    pub attempt: u32,
    /// Visit of the node, from 1 (more than 1 inside loops).
    pub visit: i64,
    /// Retry backoff the driver waits before starting the work.
    pub delay_ms: i64,
    /// Deadline of this attempt, counted after the delay (enforced by the driver).
    pub timeout_ms: Option<i64>,
    /// Prompt of a human activation.
    pub prompt: Option<String>,
    /// Deterministic per-activation seed derived from the run seed (full 64 bits).
    pub seed: BigInt,
    /// Superstep number.
    pub step: i64,
    /// The run input.
    #[napi(ts_type = "unknown")]
    pub input: Json<Arc<Value>>,
    /// Outputs of the node's completed `after` dependencies, by node id.
    #[napi(ts_type = "Record<string, unknown>")]
    pub deps: Record<Arc<str>, Arc<Value>>,
    /// The item of a map node this activation runs (absent for any other activation).
    pub item: Option<Item>,
    /// The values of the node's `reads`, by path as written (a path with no value yet is left
    /// out); absent when there are none, as in the core's JSON (`agentmesh inspect`).
    #[napi(ts_type = "Record<string, unknown>")]
    pub reads: Option<Record<Arc<str>, Arc<Value>>>,
    /// The failure this attempt retries, as the log records it (absent on a first attempt and
    /// after a cancel).
    pub last_failure: Option<Failure>,
}

/// A failed attempt as the log records it (`Activation.lastFailure`): what to tell a model
/// asked again, such as an `OutputSchemaError` naming the path its output got wrong.
#[napi(object, object_from_js = false)]
pub struct Failure {
    /// `error` (the work failed) or `timeout` (its deadline passed first).
    #[napi(ts_type = "'error' | 'timeout'")]
    pub kind: String,
    /// Error type name (a JS error's class name, an `ActivationError`'s type,
    /// `OutputSchemaError`, `Timeout`).
    #[napi(js_name = "type")]
    pub error_type: String,
    pub message: String,
    /// Whether the node's retry policy could retry it.
    pub retryable: bool,
}

impl From<core::Failure> for Failure {
    fn from(f: core::Failure) -> Failure {
        let core::Failure {
            kind,
            error_type,
            message,
            retryable,
        } = f;
        Failure {
            kind: match kind {
                core::FailureKind::Error => "error",
                core::FailureKind::Timeout => "timeout",
            }
            .to_owned(),
            error_type,
            message,
            retryable,
        }
    }
}

/// One item of a map node's array (`Activation.item`).
#[napi(object, object_from_js = false)]
pub struct Item {
    /// Position in the array, from 0.
    pub index: i64,
    /// The value at the node's `itemKey`, as text (absent without an `itemKey`).
    pub key: Option<String>,
    /// The item.
    #[napi(ts_type = "unknown")]
    pub value: Json<Arc<Value>>,
}

impl From<core::Item> for Item {
    fn from(i: core::Item) -> Item {
        let core::Item { index, key, value } = i;
        Item {
            index: num(index),
            key: key.map(|k| k.to_string()),
            value: Json(value),
        }
    }
}

impl From<core::Activation> for Activation {
    fn from(a: core::Activation) -> Activation {
        let core::Activation {
            id,
            run_id,
            node,
            kind,
            name,
            attempt,
            visit,
            delay_ms,
            timeout_ms,
            prompt,
            seed,
            step,
            input,
            deps,
            item,
            reads,
            last_failure,
        } = a;
        Activation {
            id: num(id),
            run_id: run_id.to_string(),
            node: node.to_string(),
            kind: kind.as_str().to_owned(),
            name: name.to_string(),
            attempt,
            visit: num(visit),
            delay_ms: num(delay_ms),
            timeout_ms: timeout_ms.map(num),
            prompt,
            seed: BigInt::from(seed),
            step: num(step),
            input: Json(input),
            deps: Record(deps),
            item: item.map(Item::from),
            reads: (!reads.is_empty()).then_some(Record(reads)),
            last_failure: last_failure.map(Failure::from),
        }
    }
}

/// The error a failed or cancelled run records.
#[napi(object, object_from_js = false)]
pub struct RunError {
    /// Stable error code (`AGENT_FAILED`, `TIMEOUT`, `LIMIT_EXCEEDED`, `CANCELLED`, ...).
    pub code: String,
    pub message: String,
    /// The node that failed the run, if one did.
    pub node: Option<String>,
    /// The refusal that failed the run (`BUDGET_EXCEEDED`).
    pub budget: Option<BudgetRefusal>,
    /// The policy verdict that failed the run (`POLICY_DENIED`).
    pub verdict: Option<Verdict>,
    /// The map item (its index) that failed the run, when one did.
    pub item: Option<i64>,
}

impl From<core::RunError> for RunError {
    fn from(e: core::RunError) -> RunError {
        let core::RunError {
            code,
            message,
            node,
            budget,
            verdict,
            item,
        } = e;
        RunError {
            code,
            message,
            node,
            budget: budget.map(BudgetRefusal::from),
            verdict: verdict.map(Verdict::from),
            item: item.map(num),
        }
    }
}

/// What a rule of the run's policy decided (docs/policy.md): never the content.
#[napi(object, object_from_js = false)]
pub struct Verdict {
    /// The rule's id (`tools` for the tool allowlist).
    pub rule: String,
    /// `block`, `redact` or `warn`.
    #[napi(ts_type = "'block' | 'redact' | 'warn'")]
    pub action: String,
    /// What it found: a detector name, a custom rule's id, `tool`.
    pub kind: String,
    /// Where in the value (a JSON Pointer).
    pub path: Option<String>,
    /// How many matches there.
    pub count: u32,
    /// A block's keyed digest of the value it kept out of the log.
    pub digest: Option<String>,
    /// The agent a tool call was refused to.
    pub agent: Option<String>,
}

impl From<core::Verdict> for Verdict {
    fn from(v: core::Verdict) -> Verdict {
        Verdict {
            rule: v.rule.to_string(),
            action: v.action.as_str().to_owned(),
            kind: v.kind.to_string(),
            path: v.path,
            count: v.count,
            digest: v.digest,
            agent: v.agent.map(|a| a.to_string()),
        }
    }
}

/// The policy a run is judged by (its log header's `policy`).
#[napi(object, object_from_js = false)]
pub struct PolicyRef {
    /// The policy's name.
    pub name: String,
    /// blake3 (hex) of its canonical form.
    pub hash: String,
}

/// Why a budget refused a call: the first dimension it does not fit in (`callDenied`'s
/// `budget`, a `BUDGET_EXCEEDED` run error's). Amounts are JS numbers (exact below 2^53).
#[napi(object, object_from_js = false)]
pub struct BudgetRefusal {
    /// The budget that binds.
    #[napi(ts_type = "'run' | 'node' | 'agent'")]
    pub scope: String,
    /// Its agent name (scope `agent`).
    pub agent: Option<String>,
    /// Its node (scope `node`; also the node whose call was refused).
    pub node: Option<String>,
    /// The dimension.
    #[napi(ts_type = "'inputTokens' | 'outputTokens' | 'totalTokens' | 'microUsd' | 'calls'")]
    pub dimension: String,
    /// The budget's limit there.
    pub limit: f64,
    /// What the budget had spent or reserved when the call was refused.
    pub spent: f64,
    /// What the call needed there (at its smallest allowed `maxTokens`).
    pub requested: f64,
    /// What was left of the activation's lease there.
    pub left: f64,
}

impl From<core::BudgetRefusal> for BudgetRefusal {
    fn from(r: core::BudgetRefusal) -> BudgetRefusal {
        let core::BudgetRefusal {
            scope,
            agent,
            node,
            dimension,
            limit,
            spent,
            requested,
            left,
        } = r;
        BudgetRefusal {
            scope: scope.as_str().to_owned(),
            agent: agent.map(|a| a.to_string()),
            node: node.map(|n| n.to_string()),
            dimension: dimension.as_str().to_owned(),
            limit: limit as f64,
            spent: spent as f64,
            requested: requested as f64,
            left: left as f64,
        }
    }
}

/// The result of a run so far.
#[napi(object, object_from_js = false)]
pub struct Outcome {
    #[napi(ts_type = "'running' | 'waiting' | 'completed' | 'failed' | 'cancelled'")]
    pub status: String,
    /// Outputs of the terminal nodes, by node id (completed runs).
    #[napi(ts_type = "Record<string, unknown>")]
    pub output: Option<Json<Value>>,
    /// Why the run failed or was cancelled.
    pub error: Option<RunError>,
}

impl From<core::Outcome> for Outcome {
    fn from(o: core::Outcome) -> Outcome {
        let core::Outcome {
            status,
            output,
            error,
        } = o;
        Outcome {
            status: status.as_str().to_owned(),
            output: output.map(Json),
            error: error.map(RunError::from),
        }
    }
}

/// Workflow identity in a log header.
#[napi(object, object_from_js = false)]
pub struct WorkflowRef {
    pub name: String,
    /// blake3 (hex) of the canonical workflow JSON.
    pub hash: String,
}

/// Parent link of a forked run.
#[napi(object, object_from_js = false)]
pub struct ParentRef {
    pub run_id: String,
    /// Last parent event copied into the fork.
    pub seq: i64,
}

/// Creation time and host of a log (never canonical).
#[napi(object, object_from_js = false)]
pub struct HeaderMeta {
    /// Unix time in milliseconds.
    pub at: i64,
    /// What created the log: `cli`, `python`, `node` or `rust` (absent in older logs).
    pub host: Option<String>,
}

/// First line of every log.
#[napi(object, object_from_js = false)]
pub struct LogHeader {
    /// Always `"agentmesh-log"`.
    pub format: String,
    pub version: u32,
    /// Core behaviour flags in effect.
    pub flags: Vec<u32>,
    pub run_id: String,
    pub workflow: WorkflowRef,
    /// Run seed (full 64 bits).
    pub seed: BigInt,
    pub tenant: Option<String>,
    /// Parent of a forked run.
    pub parent: Option<ParentRef>,
    /// The policy the run is judged by.
    pub policy: Option<PolicyRef>,
    /// Creation time and host (not canonical).
    pub meta: Option<HeaderMeta>,
}

impl From<core::LogHeader> for LogHeader {
    fn from(h: core::LogHeader) -> LogHeader {
        let core::LogHeader {
            format,
            version,
            flags,
            run_id,
            workflow,
            seed,
            tenant,
            parent,
            policy,
            meta,
        } = h;
        LogHeader {
            format,
            version,
            flags,
            run_id,
            workflow: WorkflowRef {
                name: workflow.name,
                hash: workflow.hash,
            },
            seed: BigInt::from(seed),
            tenant,
            parent: parent.map(|p| ParentRef {
                run_id: p.run_id,
                seq: num(p.seq),
            }),
            policy: policy.map(|p| PolicyRef {
                name: p.name,
                hash: p.hash,
            }),
            meta: meta.map(|m| HeaderMeta {
                at: num(m.at),
                host: m.host,
            }),
        }
    }
}

/// Wall-clock facts of an event, as its writer recorded them (never canonical).
#[napi(object, object_from_js = false)]
pub struct EventMeta {
    /// Unix time in milliseconds when the record was appended.
    pub at: i64,
    /// How long the activation ran (completion events), in microseconds.
    pub dur_us: Option<i64>,
}

/// One event of a log: the canonical form (no chain fields), with `meta` only where the
/// event comes from a watched run (`NativeRun.takeCommitted`; the log readers give the
/// canonical form, without it).
#[napi(object, object_from_js = false)]
pub struct LogEvent {
    pub seq: i64,
    /// A call record's number under `seq` (`callStarted`, `callCompleted`, `callFailed`);
    /// absent on every other event.
    pub sub: Option<u32>,
    /// Event type (`runStarted`, `agentCompleted`, ...).
    #[napi(js_name = "type")]
    pub kind: String,
    pub run_id: String,
    pub trace_id: String,
    /// The event that caused this one.
    pub parent_seq: Option<i64>,
    pub node: Option<String>,
    pub attempt: Option<u32>,
    /// The body, as in the log (`data.seed` of `runStarted` is a `bigint`).
    #[napi(ts_type = "Record<string, unknown>")]
    pub data: EventBody,
    /// When it was appended (and how long its activation ran): committed events only.
    pub meta: Option<EventMeta>,
}

impl TryFrom<core::Event> for LogEvent {
    type Error = core::Error;

    /// The canonical form, as the log readers give it.
    fn try_from(e: core::Event) -> core::Result<LogEvent> {
        LogEvent::convert(e, false)
    }
}

impl LogEvent {
    /// The event as the log holds it: the canonical form with its `meta` (a watched run's
    /// committed events).
    pub fn with_meta(e: core::Event) -> core::Result<LogEvent> {
        LogEvent::convert(e, true)
    }

    /// One conversion for the readers and the watchers, so both give the same object.
    fn convert(e: core::Event, keep_meta: bool) -> core::Result<LogEvent> {
        let kind = e.type_name().to_owned();
        // The body is whatever the core serializes: take `data` from the serde form.
        let mut value = crate::errors::serde_value(&e)?;
        let data = value
            .get_mut("data")
            .map(Value::take)
            .unwrap_or_else(|| Value::Object(Default::default()));
        let core::Event {
            seq,
            sub,
            run_id,
            trace_id,
            parent_seq,
            node,
            attempt,
            data: body,
            meta,
        } = e;
        let seed = match body {
            core::EventData::RunStarted(b) => Some(b.seed),
            _ => None,
        };
        Ok(LogEvent {
            seq: num(seq),
            sub,
            kind,
            run_id: run_id.to_string(),
            trace_id: trace_id.to_string(),
            parent_seq: parent_seq.map(num),
            node: node.map(|n| n.to_string()),
            attempt,
            data: EventBody { data, seed },
            meta: meta.filter(|_| keep_meta).map(|m| EventMeta {
                at: num(m.at),
                dur_us: m.dur_us.map(num),
            }),
        })
    }
}

/// An event body; a `runStarted` seed is set as a `bigint`.
pub struct EventBody {
    data: Value,
    seed: Option<u64>,
}

impl ToNapiValue for EventBody {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let EventBody { mut data, seed } = val;
        if let (Some(map), Some(_)) = (data.as_object_mut(), seed) {
            map.remove("seed");
        }
        // SAFETY: napi calls this with the live environment of the current call.
        unsafe {
            let obj = json::write(env, &data)?;
            if let Some(seed) = seed {
                let value = BigInt::to_napi_value(env, BigInt::from(seed))?;
                let status = sys::napi_set_named_property(env, obj, c"seed".as_ptr(), value);
                if status != sys::Status::napi_ok {
                    return Err(napi::Error::new(
                        napi::Status::from(status),
                        "setting data.seed".to_owned(),
                    ));
                }
            }
            Ok(obj)
        }
    }
}

impl TypeName for EventBody {
    fn type_name() -> &'static str {
        "Record<string, unknown>"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

/// A log's header and its events in seq order.
#[napi(object, object_from_js = false)]
pub struct LogContents {
    pub header: LogHeader,
    pub events: Vec<LogEvent>,
}

/// A damaged tail cut off or mended (cut bytes were first copied to `brokenPath`).
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct Repair {
    /// Offset of the first byte changed (the new end of the last record).
    pub offset: i64,
    /// How many bytes were cut.
    pub bytes: i64,
    /// Where the cut bytes were copied (`null` when nothing was cut).
    pub broken_path: Option<String>,
    /// The last record was complete but its newline missing or damaged: kept, newline written.
    pub newline_restored: bool,
}

/// What `verifyLog` / `checkLog` found.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct VerifyReport {
    /// Run id from the header.
    pub run_id: String,
    /// Workflow name from the header.
    pub workflow: String,
    /// File format version.
    pub version: u32,
    /// Number of events.
    pub events: i64,
    /// Highest seq.
    pub last_seq: i64,
    /// Reserved seqs below `lastSeq` not yet written: completions still outstanding.
    pub holes: Vec<i64>,
    /// Type of the final event when the run has finished (`runCompleted`, ...).
    pub finished: Option<String>,
    /// Bytes of the verified records (after a repair: the file size).
    pub bytes: i64,
    /// Offset of a damaged tail left as it is (`checkLog` never writes).
    pub torn_at: Option<i64>,
    /// The repair made (`verifyLog` only).
    pub repaired: Option<Repair>,
}

impl From<core::VerifyReport> for VerifyReport {
    fn from(r: core::VerifyReport) -> VerifyReport {
        let core::VerifyReport {
            run_id,
            workflow,
            version,
            events,
            last_seq,
            holes,
            finished,
            bytes,
            torn_at,
            repaired,
        } = r;
        VerifyReport {
            run_id,
            workflow,
            version,
            events: num(events),
            last_seq: num(last_seq),
            holes: holes.into_iter().map(num).collect(),
            finished,
            bytes: num(bytes),
            torn_at: torn_at.map(num),
            repaired: repaired.map(|r| Repair {
                offset: num(r.offset),
                bytes: num(r.bytes),
                broken_path: r.broken_path.map(|p| p.to_string_lossy().into_owned()),
                newline_restored: r.newline_restored,
            }),
        }
    }
}

/// What `replay` found: the log re-driven without calling any agent.
#[napi(object, object_from_js = false)]
pub struct ReplayReport {
    pub run_id: String,
    /// Events re-driven and found equal.
    pub events: i64,
    /// Whether the workflow given differs from the recorded one (but decided the same events).
    pub workflow_changed: bool,
    /// The run's outcome as of the end of the log.
    pub outcome: Outcome,
}

impl From<core::ReplayReport> for ReplayReport {
    fn from(r: core::ReplayReport) -> ReplayReport {
        let core::ReplayReport {
            run_id,
            events,
            workflow_changed,
            outcome,
        } = r;
        ReplayReport {
            run_id,
            events: num(events),
            workflow_changed,
            outcome: outcome.into(),
        }
    }
}

/// The state of a run as of one seq (`stateAt`).
#[napi(object, object_from_js = false)]
pub struct RunState {
    /// The seq asked for.
    pub seq: i64,
    #[napi(ts_type = "'running' | 'waiting' | 'completed' | 'failed' | 'cancelled'")]
    pub status: String,
    /// Latest step started.
    pub step: i64,
    /// Outputs of completed nodes (latest visit), by node id.
    #[napi(ts_type = "Record<string, unknown>")]
    pub completed: Record<String, Value>,
    /// Nodes skipped by branch decisions.
    pub skipped: Vec<String>,
    /// Nodes that failed for good.
    pub failed: Vec<String>,
    /// Visit counts by node id.
    #[napi(ts_type = "Record<string, number>")]
    pub visits: Record<String, Value>,
    /// Activations scheduled and not yet completed.
    pub pending: Vec<Activation>,
    /// Whether `seq` is a step end, where `NativeRun.fork` may branch off.
    pub fork_point: bool,
    /// Map nodes whose items are not all done yet: how far each is (absent when none).
    #[napi(ts_type = "Record<string, { items: number; done: number; failed: number }>")]
    pub maps: Option<Record<String, Value>>,
}

impl From<core::RunState> for RunState {
    fn from(s: core::RunState) -> RunState {
        let core::RunState {
            seq,
            status,
            step,
            completed,
            skipped,
            failed,
            visits,
            pending,
            fork_point,
            maps,
        } = s;
        RunState {
            seq: num(seq),
            status: status.as_str().to_owned(),
            step: num(step),
            completed: Record(completed),
            skipped,
            failed,
            visits: Record(
                visits
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            pending: pending.into_iter().map(Activation::from).collect(),
            fork_point,
            maps: (!maps.is_empty()).then(|| {
                Record(
                    maps.into_iter()
                        .map(|(k, p)| {
                            let v = serde_json::json!({"items": p.items, "done": p.done, "failed": p.failed});
                            (k, v)
                        })
                        .collect::<BTreeMap<_, _>>(),
                )
            }),
        }
    }
}

/// Usage summed over agent and tool attempts (`usageReport`; keys as the core's serde form).
#[napi(object, object_from_js = false)]
pub struct UsageTotals {
    /// Prompt tokens, cached ones included.
    pub input_tokens: i64,
    /// Completion tokens, reasoning included.
    pub output_tokens: i64,
    /// Prompt tokens read from a prompt cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to a prompt cache.
    pub cache_write_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// Agent and tool attempts that ended (completed or failed), with or without usage.
    pub attempts: i64,
    /// Of those, the ones that reported usage.
    pub reported: i64,
    /// Calls made inside activations (absent when none).
    pub calls: Option<i64>,
    /// Calls a budget refused before they were sent (absent when none).
    pub denied: Option<i64>,
    /// What the calls were charged, in micro-USD (absent when the run does not account for
    /// spend).
    pub micro_usd: Option<i64>,
}

impl From<core::UsageTotals> for UsageTotals {
    fn from(t: core::UsageTotals) -> UsageTotals {
        let core::UsageTotals {
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_write_tokens,
            reasoning_tokens,
            attempts,
            reported,
            calls,
            denied,
            micro_usd,
        } = t;
        UsageTotals {
            input_tokens: num(input_tokens),
            output_tokens: num(output_tokens),
            cached_input_tokens: num(cached_input_tokens),
            cache_write_tokens: num(cache_write_tokens),
            reasoning_tokens: num(reasoning_tokens),
            attempts: num(attempts),
            reported: num(reported),
            calls: (calls > 0).then(|| num(calls)),
            denied: (denied > 0).then(|| num(denied)),
            micro_usd: micro_usd.map(num),
        }
    }
}

/// Usage totals by node id, agent, tool or model: a plain object in key order whose values
/// are `UsageTotals` objects (keys as own data properties: a model named `__proto__` is a
/// key, as `JSON.parse` would make it).
pub struct UsageBy(BTreeMap<String, core::UsageTotals>);

impl ToNapiValue for UsageBy {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let status = |s: sys::napi_status, what: &str| match s {
            sys::Status::napi_ok => Ok(()),
            s => Err(napi::Error::new(napi::Status::from(s), what.to_owned())),
        };
        // SAFETY: napi calls this with the live environment of the current call; the
        // descriptors' handles stay in its scope until napi_define_properties.
        unsafe {
            let mut obj = std::ptr::null_mut();
            status(sys::napi_create_object(env, &mut obj), "creating an object")?;
            let mut props = Vec::with_capacity(val.0.len());
            for (key, totals) in val.0 {
                props.push(sys::napi_property_descriptor {
                    utf8name: std::ptr::null(),
                    name: json::string(env, &key)?,
                    method: None,
                    getter: None,
                    setter: None,
                    value: UsageTotals::to_napi_value(env, totals.into())?,
                    attributes: sys::PropertyAttributes::writable
                        | sys::PropertyAttributes::enumerable
                        | sys::PropertyAttributes::configurable,
                    data: std::ptr::null_mut(),
                });
            }
            if !props.is_empty() {
                let defined = sys::napi_define_properties(env, obj, props.len(), props.as_ptr());
                status(defined, "defining usage keys")?;
            }
            Ok(obj)
        }
    }
}

impl TypeName for UsageBy {
    fn type_name() -> &'static str {
        "Record<string, UsageTotals>"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

/// What a run spent (`usageReport`, `RunResult.usage`): the core's `UsageReport`, with the
/// keys and key order of its serde JSON. A fork's `inherited` is what the events copied from
/// its parent record (never in `total`); absent for a run that is not a fork.
#[napi(object, object_from_js = false)]
pub struct UsageReport {
    pub run_id: String,
    /// Everything this run spent.
    pub total: UsageTotals,
    /// By node id.
    #[napi(ts_type = "Record<string, UsageTotals>")]
    pub by_node: UsageBy,
    /// By agent name (agent nodes).
    #[napi(ts_type = "Record<string, UsageTotals>")]
    pub by_agent: UsageBy,
    /// By tool name (tool nodes).
    #[napi(ts_type = "Record<string, UsageTotals>")]
    pub by_tool: UsageBy,
    /// By the model the usage names (attempts that named none are not here).
    #[napi(ts_type = "Record<string, UsageTotals>")]
    pub by_model: UsageBy,
    /// A fork: what the events copied from its parent record (the parent spent it).
    pub inherited: Option<UsageTotals>,
    /// What the calls spent, a line per node and model (absent when the run made none).
    pub lines: Option<Vec<CostLine>>,
}

/// What the calls of one node spent on one model or tool (`UsageReport.lines`).
#[napi(object, object_from_js = false)]
pub struct CostLine {
    /// The node.
    pub node: String,
    /// Its agent or tool name.
    pub name: String,
    /// The model (absent for tool calls).
    pub model: Option<String>,
    /// What they spent.
    pub spent: UsageTotals,
}

impl From<core::UsageReport> for UsageReport {
    fn from(r: core::UsageReport) -> UsageReport {
        let core::UsageReport {
            run_id,
            total,
            by_node,
            by_agent,
            by_tool,
            by_model,
            inherited,
            lines,
        } = r;
        UsageReport {
            run_id,
            total: total.into(),
            by_node: UsageBy(by_node),
            by_agent: UsageBy(by_agent),
            by_tool: UsageBy(by_tool),
            by_model: UsageBy(by_model),
            inherited: inherited.map(UsageTotals::from),
            lines: (!lines.is_empty()).then(|| {
                lines
                    .into_iter()
                    .map(|l| CostLine {
                        node: l.node,
                        name: l.name,
                        model: l.model,
                        spent: l.spent.into(),
                    })
                    .collect()
            }),
        }
    }
}
