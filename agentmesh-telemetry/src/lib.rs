//! Telemetry derived from AgentMesh logs (docs/telemetry.md).
//!
//! Everything here is computed from a run's events — live, as they are committed, or after
//! the fact from any log file — never from a second bookkeeping path, and nothing here can
//! change a log's canonical bytes or block a run:
//!
//! - [`spans`]: OpenTelemetry GenAI spans (one trace per run), exported over OTLP/HTTP.
//! - [`live`]: a [`Telemetry`] observer for running meshes: spans exported as they end
//!   ([`otlp`], batched on a background thread), [`metrics`] as Prometheus text.
//! - [`chrome`], [`html`], [`mermaid`]: files a person can open.
#![deny(missing_docs)]

pub mod chrome;
pub mod content;
pub mod export;
pub mod html;
pub mod lanes;
pub mod live;
pub mod logs;
pub mod mermaid;
pub mod metrics;
pub mod otlp;
pub mod otlp_metrics;
pub mod sampling;
pub mod spans;
mod worker;

pub use chrome::{chrome_trace, chrome_trace_text};
pub use export::{render, render_log, send_log, span_json, Format};
pub use html::html_timeline;
pub use live::{Telemetry, TelemetryConfig, WeakTelemetry};
pub use logs::{capture_logs, json_logs_to_stderr, LogBuffer};
pub use mermaid::mermaid;
pub use metrics::Metrics;
pub use otlp::{ExportStats, OtlpConfig};
pub use sampling::Sampler;
pub use spans::{
    spans, AttrValue, Category, Span, SpanBuilder, SpanEvent, SpanId, Status, StepMark, TraceId,
};

/// The OpenTelemetry semantic conventions the span and metric names follow: GenAI names as
/// released in semantic-conventions v1.41.0, guardrail names from `semantic-conventions-genai`.
pub const SEMCONV_VERSION: &str = "1.41.0";

/// The schema URL sent with every span's instrumentation scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

/// docs/telemetry.md: its Rust example is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../docs/telemetry.md")]
mod telemetry_guide {}
