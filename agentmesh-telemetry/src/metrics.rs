//! Metrics derived from spans and events: the GenAI client histograms and `agentmesh.*`
//! counters and histograms, kept in memory and rendered as Prometheus text.
//!
//! Labels come only from an allowlist of low-cardinality attributes ([`DEFAULT_LABELS`]):
//! never run ids, prompts, messages or other user text.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use agentmesh_core::{Event, EventData};

use crate::spans::{AttrValue, Category, Span, Status};

/// Attributes that may become metric labels unless the allowlist is replaced.
pub const DEFAULT_LABELS: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.token.type",
    "gen_ai.agent.name",
    "gen_ai.tool.name",
    "gen_ai.workflow.name",
    "error.type",
    "agentmesh.run.status",
    "agentmesh.policy.action",
    "agentmesh.policy.rule",
    "agentmesh.budget.scope",
    "agentmesh.budget.dimension",
];

/// Token-count buckets of `gen_ai.client.token.usage` (the convention's advice).
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Seconds buckets of `gen_ai.client.operation.duration` (the convention's advice), used for
/// every duration here.
const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The metrics: name, kind, unit, help.
const FAMILIES: &[(&str, Kind, &str, &str)] = &[
    (
        "gen_ai.client.token.usage",
        Kind::Tokens,
        "{token}",
        "Tokens used by LLM calls, by token type.",
    ),
    (
        "gen_ai.client.operation.duration",
        Kind::Seconds,
        "s",
        "Duration of LLM and tool calls.",
    ),
    (
        "agentmesh.runs",
        Kind::Counter,
        "{run}",
        "Runs that ended, by workflow and status.",
    ),
    (
        "agentmesh.run.duration",
        Kind::Seconds,
        "s",
        "Duration of runs, from start to end.",
    ),
    (
        "agentmesh.step.duration",
        Kind::Seconds,
        "s",
        "Duration of supersteps.",
    ),
    (
        "agentmesh.activation.duration",
        Kind::Seconds,
        "s",
        "Duration of agent, tool and human activations.",
    ),
    (
        "agentmesh.cost",
        Kind::Counter,
        "uUSD",
        "Cost of calls in micro-USD (from the run's price table).",
    ),
    (
        "agentmesh.budget.warnings",
        Kind::Counter,
        "{warning}",
        "Budget warning thresholds reached.",
    ),
    (
        "agentmesh.budget.exceeded",
        Kind::Counter,
        "{refusal}",
        "Calls and runs a budget refused.",
    ),
    (
        "agentmesh.policy.verdicts",
        Kind::Counter,
        "{verdict}",
        "Policy verdicts, by action and rule.",
    ),
    (
        "agentmesh.retries",
        Kind::Counter,
        "{attempt}",
        "Activation attempts that retry a failure.",
    ),
    (
        "agentmesh.timeouts",
        Kind::Counter,
        "{attempt}",
        "Activation attempts that timed out.",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Tokens,
    Seconds,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

type Labels = Vec<(&'static str, String)>;

/// Aggregated metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    allow: BTreeSet<String>,
    counters: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    /// Per run: when its current step started (unix µs).
    step_start: HashMap<String, u64>,
    /// Where observations also go (OTLP metrics export).
    otel: Option<Arc<crate::otlp_metrics::OtelMetrics>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(DEFAULT_LABELS.iter().map(|s| s.to_string()))
    }
}

impl Metrics {
    /// Metrics whose labels are the attributes in `allow`.
    pub fn new(allow: impl IntoIterator<Item = String>) -> Metrics {
        Metrics {
            allow: allow.into_iter().collect(),
            counters: BTreeMap::new(),
            histograms: BTreeMap::new(),
            step_start: HashMap::new(),
            otel: None,
        }
    }

    /// Also record every observation on `otel`'s instruments (OTLP export).
    pub fn with_otel(mut self, otel: Arc<crate::otlp_metrics::OtelMetrics>) -> Metrics {
        self.otel = Some(otel);
        self
    }

    /// A copy of the values, detached from any export.
    pub fn snapshot(&self) -> Metrics {
        Metrics {
            otel: None,
            ..self.clone()
        }
    }

    /// Take in spans that ended.
    pub fn record_spans(&mut self, spans: &[Span]) {
        for s in spans {
            if s.status == Status::Open {
                continue;
            }
            let secs = s.dur_us() as f64 / 1e6;
            match s.category {
                Category::Chat | Category::ToolCall => {
                    let base = self.labels(
                        s,
                        &[
                            "gen_ai.operation.name",
                            "gen_ai.provider.name",
                            "gen_ai.request.model",
                            "gen_ai.response.model",
                            "gen_ai.tool.name",
                            "error.type",
                        ],
                    );
                    self.observe("gen_ai.client.operation.duration", base.clone(), secs);
                    for (key, kind) in [
                        ("gen_ai.usage.input_tokens", "input"),
                        ("gen_ai.usage.output_tokens", "output"),
                    ] {
                        if let Some(AttrValue::Int(n)) = s.attr(key) {
                            let mut l: Labels = base
                                .iter()
                                .filter(|(k, _)| *k != "error.type")
                                .cloned()
                                .collect();
                            if self.allow.contains("gen_ai.token.type") {
                                l.push(("gen_ai.token.type", kind.to_owned()));
                            }
                            self.observe("gen_ai.client.token.usage", l, *n as f64);
                        }
                    }
                    if let Some(AttrValue::Int(micro)) = s.attr("agentmesh.cost.micro_usd") {
                        let l = self.labels(s, &["gen_ai.provider.name", "gen_ai.request.model"]);
                        self.add("agentmesh.cost", l, *micro as f64);
                    }
                    for ev in &s.events {
                        if ev.name == "agentmesh.budget.exceeded" {
                            let l = self.event_labels(&ev.attrs);
                            self.add("agentmesh.budget.exceeded", l, 1.0);
                        }
                    }
                }
                Category::Agent | Category::ToolNode | Category::Human => {
                    let l =
                        self.labels(s, &["gen_ai.agent.name", "gen_ai.tool.name", "error.type"]);
                    self.observe("agentmesh.activation.duration", l.clone(), secs);
                    let agent = self.labels(s, &["gen_ai.agent.name", "gen_ai.tool.name"]);
                    if s.attr("agentmesh.retry").is_some() {
                        self.add("agentmesh.retries", agent.clone(), 1.0);
                    }
                    if s.attr("agentmesh.timeout").is_some() {
                        self.add("agentmesh.timeouts", agent, 1.0);
                    }
                }
                Category::Guardrail => {
                    let l = self.labels(s, &["agentmesh.policy.action", "agentmesh.policy.rule"]);
                    self.add("agentmesh.policy.verdicts", l, 1.0);
                }
                Category::Workflow => {
                    let l = self.labels(s, &["gen_ai.workflow.name", "agentmesh.run.status"]);
                    self.add("agentmesh.runs", l.clone(), 1.0);
                    self.observe("agentmesh.run.duration", l, secs);
                    for ev in &s.events {
                        let name = match ev.name {
                            "agentmesh.budget.warning" => "agentmesh.budget.warnings",
                            "agentmesh.budget.exceeded" => "agentmesh.budget.exceeded",
                            _ => continue,
                        };
                        let l = self.event_labels(&ev.attrs);
                        self.add(name, l, 1.0);
                    }
                }
            }
        }
    }

    /// Take in committed events of run `run_id` (step durations).
    pub fn record_events(&mut self, run_id: &str, events: &[Event]) {
        for e in events {
            let Some(at) = e.meta.as_ref().map(|m| m.at.saturating_mul(1000)) else {
                continue;
            };
            let ends_step = matches!(e.data, EventData::StepStarted(_)) || e.kind().ends_run();
            if ends_step {
                if let Some(start) = self.step_start.remove(run_id) {
                    let secs = at.saturating_sub(start) as f64 / 1e6;
                    self.observe("agentmesh.step.duration", Vec::new(), secs);
                }
            }
            if matches!(e.data, EventData::StepStarted(_)) {
                self.step_start.insert(run_id.to_owned(), at);
            }
        }
    }

    fn labels(&self, s: &Span, keys: &[&'static str]) -> Labels {
        keys.iter()
            .filter(|k| self.allow.contains(**k))
            .filter_map(|k| s.attr(k).map(|v| (*k, v.text())))
            .collect()
    }

    fn event_labels(&self, attrs: &[(&'static str, AttrValue)]) -> Labels {
        attrs
            .iter()
            .filter(|(k, _)| self.allow.contains(*k))
            .map(|(k, v)| (*k, v.text()))
            .collect()
    }

    fn add(&mut self, name: &'static str, labels: Labels, by: f64) {
        if let Some(otel) = &self.otel {
            otel.add(name, family(name).2, &key_values(&labels), by);
        }
        *self.counters.entry((name, labels)).or_default() += by;
    }

    fn observe(&mut self, name: &'static str, labels: Labels, value: f64) {
        let (_, kind, unit) = family(name);
        let buckets = match kind {
            Kind::Tokens => TOKEN_BUCKETS,
            _ => SECONDS_BUCKETS,
        };
        if let Some(otel) = &self.otel {
            otel.record(name, unit, buckets, &key_values(&labels), value);
        }
        let h = self
            .histograms
            .entry((name, labels))
            .or_insert_with(|| Histogram {
                counts: vec![0; buckets.len()],
                ..Histogram::default()
            });
        for (i, b) in buckets.iter().enumerate() {
            if value <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += value;
        h.count += 1;
    }

    /// The value of counter `name` (OpenTelemetry name) summed over its labels.
    pub fn counter_total(&self, name: &str) -> f64 {
        self.counters
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// Observations of histogram `name` summed over its labels.
    pub fn histogram_count(&self, name: &str) -> u64 {
        self.histograms
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, h)| h.count)
            .sum()
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric with data.
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        for (name, kind, unit, help) in FAMILIES {
            let prom = prom_name(name, *kind, unit);
            match kind {
                Kind::Counter => {
                    let rows: Vec<_> = self
                        .counters
                        .iter()
                        .filter(|((n, _), _)| n == name)
                        .collect();
                    if rows.is_empty() {
                        continue;
                    }
                    let _ = writeln!(out, "# HELP {prom}_total {help}");
                    let _ = writeln!(out, "# TYPE {prom}_total counter");
                    for ((_, labels), v) in rows {
                        let _ = writeln!(
                            out,
                            "{prom}_total{} {}",
                            render_labels(labels, None),
                            num(*v)
                        );
                    }
                }
                Kind::Tokens | Kind::Seconds => {
                    let rows: Vec<_> = self
                        .histograms
                        .iter()
                        .filter(|((n, _), _)| n == name)
                        .collect();
                    if rows.is_empty() {
                        continue;
                    }
                    let buckets = if *kind == Kind::Tokens {
                        TOKEN_BUCKETS
                    } else {
                        SECONDS_BUCKETS
                    };
                    let _ = writeln!(out, "# HELP {prom} {help}");
                    let _ = writeln!(out, "# TYPE {prom} histogram");
                    for ((_, labels), h) in rows {
                        for (b, c) in buckets.iter().zip(&h.counts) {
                            let le = num(*b);
                            let _ = writeln!(
                                out,
                                "{prom}_bucket{} {c}",
                                render_labels(labels, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{prom}_bucket{} {}",
                            render_labels(labels, Some("+Inf")),
                            h.count
                        );
                        let _ = writeln!(
                            out,
                            "{prom}_sum{} {}",
                            render_labels(labels, None),
                            num(h.sum)
                        );
                        let _ = writeln!(
                            out,
                            "{prom}_count{} {}",
                            render_labels(labels, None),
                            h.count
                        );
                    }
                }
            }
        }
        out
    }
}

fn family(name: &str) -> (&'static str, Kind, &'static str) {
    FAMILIES
        .iter()
        .find(|f| f.0 == name)
        .map(|f| (f.0, f.1, f.2))
        .expect("every metric name is in FAMILIES")
}

fn key_values(labels: &Labels) -> Vec<opentelemetry::KeyValue> {
    labels
        .iter()
        .map(|(k, v)| opentelemetry::KeyValue::new(*k, v.clone()))
        .collect()
}

/// Prometheus names: dots become underscores, the unit is a suffix.
fn prom_name(name: &str, kind: Kind, unit: &str) -> String {
    let base = name.replace('.', "_");
    match (kind, unit) {
        (Kind::Seconds, _) => format!("{base}_seconds"),
        (Kind::Counter, "uUSD") => format!("{base}_microusd"),
        _ => base,
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", k.replace('.', "_"), escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
