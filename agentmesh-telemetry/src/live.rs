//! Live telemetry: an [`Observer`] that turns each committed event into spans and metrics as
//! the run goes, and hands finished spans to the OTLP exporter's thread.
//!
//! ```no_run
//! use std::sync::Arc;
//! use agentmesh_core::Mesh;
//! use agentmesh_telemetry::{Telemetry, TelemetryConfig};
//!
//! let telemetry = Telemetry::new(TelemetryConfig::from_env()?)?;
//! let mesh = Mesh::new().with_observer(telemetry.observer());
//! // ... run workflows; spans go to OTEL_EXPORTER_OTLP_ENDPOINT as each one ends.
//! print!("{}", telemetry.metrics_text());
//! # Ok::<(), agentmesh_core::Error>(())
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agentmesh_core::{read_log, Error, ErrorKind, Event, LogHeader, Observer};

use crate::metrics::Metrics;
use crate::otlp::{ExportStats, OtlpConfig, OtlpExporter};
use crate::otlp_metrics::OtelMetrics;
use crate::sampling::Sampler;
use crate::spans::{Category, Span, SpanBuilder};

/// What live telemetry does.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Where spans go; `None` keeps only metrics (and nothing leaves the process).
    pub otlp: Option<OtlpConfig>,
    /// Which runs' spans are exported (metrics count every run).
    pub sampler: Sampler,
    /// Put recorded inputs and outputs on spans (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`, tool arguments and results). Off by default; what is put is
    /// what the log holds, redacted by the run's policy.
    pub capture_content: bool,
    /// Longest a run's end waits for its spans to be sent.
    pub flush_timeout: Duration,
    /// Attributes that may become metric labels ([`crate::metrics::DEFAULT_LABELS`]).
    pub metric_labels: Vec<String>,
    /// With `otlp`: also send the metrics to the collector (`…/v1/metrics`) this often;
    /// `None` keeps them in the process (Prometheus text only).
    pub metrics_interval: Option<Duration>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp: None,
            sampler: Sampler::default(),
            capture_content: false,
            flush_timeout: Duration::from_secs(2),
            metric_labels: crate::metrics::DEFAULT_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            metrics_interval: Some(Duration::from_secs(10)),
        }
    }
}

impl TelemetryConfig {
    /// From the standard variables: OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (headers from `OTEL_EXPORTER_OTLP_HEADERS`,
    /// `service.name` from `OTEL_SERVICE_NAME`), the sampler from `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`, content capture when
    /// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` is `true`.
    ///
    /// Errors: `INVALID_ARGUMENT` for a sampler the variables name wrongly.
    pub fn from_env() -> agentmesh_core::Result<TelemetryConfig> {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        let otlp = (set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .then(OtlpConfig::default);
        Ok(TelemetryConfig {
            otlp,
            sampler: Sampler::from_env()?,
            capture_content: std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true")),
            ..TelemetryConfig::default()
        })
    }
}

/// Live telemetry for the runs it observes ([`Telemetry::observer`]).
#[derive(Debug, Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: TelemetryConfig,
    exporter: Option<OtlpExporter>,
    otel_metrics: Option<Arc<OtelMetrics>>,
    runs: Mutex<HashMap<String, RunSpans>>,
    metrics: Mutex<Metrics>,
}

#[derive(Debug)]
struct RunSpans {
    builder: SpanBuilder,
    sampled: bool,
    /// Whether a span of an always-traced agent was exported (its run span must be too).
    kept_some: bool,
}

impl Telemetry {
    /// Start telemetry (and the exporter's thread, when `config.otlp` is set).
    ///
    /// Errors: `INVALID_ARGUMENT` (endpoint, headers), `IO` (the thread could not start).
    pub fn new(config: TelemetryConfig) -> agentmesh_core::Result<Telemetry> {
        let exporter = config.otlp.as_ref().map(OtlpExporter::start).transpose()?;
        let otel_metrics = match (&config.otlp, config.metrics_interval) {
            (Some(otlp), Some(every)) => Some(Arc::new(OtelMetrics::start(otlp, every)?)),
            _ => None,
        };
        let mut metrics = Metrics::new(config.metric_labels.iter().cloned());
        if let Some(m) = &otel_metrics {
            metrics = metrics.with_otel(m.clone());
        }
        Ok(Telemetry {
            inner: Arc::new(Inner {
                config,
                exporter,
                otel_metrics,
                runs: Mutex::new(HashMap::new()),
                metrics: Mutex::new(metrics),
            }),
        })
    }

    /// The observer to give a mesh ([`agentmesh_core::Mesh::with_observer`]) or a run's
    /// options.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.inner.clone()
    }

    /// The metrics so far, as Prometheus text.
    pub fn metrics_text(&self) -> String {
        lock(&self.inner.metrics).prometheus_text()
    }

    /// A copy of the metrics so far.
    pub fn metrics(&self) -> Metrics {
        lock(&self.inner.metrics).snapshot()
    }

    /// What the exporter did (`None` without OTLP export).
    pub fn export_stats(&self) -> Option<&ExportStats> {
        self.inner.exporter.as_ref().map(OtlpExporter::stats)
    }

    /// Send what is queued and wait for it, at most `timeout`; whether it was all handled.
    pub fn flush(&self, timeout: Duration) -> bool {
        let spans = self
            .inner
            .exporter
            .as_ref()
            .is_none_or(|e| e.flush(timeout));
        // Metrics go within the metrics exporter's own timeout.
        let metrics = self.inner.otel_metrics.as_ref().is_none_or(|m| m.flush());
        spans && metrics
    }

    /// Flush (at most `timeout`) and stop the exporter's thread.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let spans = self
            .inner
            .exporter
            .as_ref()
            .is_none_or(|e| e.shutdown(timeout));
        let metrics = self
            .inner
            .otel_metrics
            .as_ref()
            .is_none_or(|m| m.shutdown());
        spans && metrics
    }

    /// Serve `GET /metrics` (Prometheus text) on `addr`, a loopback address (port 0 picks
    /// one), from a background thread; the address it listens on.
    ///
    /// Errors: `INVALID_ARGUMENT` for an address that is not loopback, `IO` when it cannot
    /// be bound.
    pub fn serve_metrics(&self, addr: &str) -> agentmesh_core::Result<SocketAddr> {
        let parsed: SocketAddr = addr.parse().map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("'{addr}' is not an address like 127.0.0.1:9464"),
            )
        })?;
        if !parsed.ip().is_loopback() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the metrics endpoint listens on loopback only, not {}",
                    parsed.ip()
                ),
            ));
        }
        let listener = TcpListener::bind(parsed)
            .map_err(|e| Error::new(ErrorKind::Io, format!("binding {parsed}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("binding {parsed}: {e}")))?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("agentmesh-metrics".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = me.answer(stream);
                }
            })
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("starting the metrics endpoint: {e}"))
            })?;
        Ok(local)
    }

    fn answer(&self, mut stream: std::net::TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 2048];
        let n = stream.read(&mut buf)?;
        let head = String::from_utf8_lossy(&buf[..n]);
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let (status, body, kind) =
            if head.starts_with("GET ") && (path == "/metrics" || path == "/") {
                (
                    "200 OK",
                    self.metrics_text(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            } else {
                (
                    "404 Not Found",
                    "GET /metrics\n".to_owned(),
                    "text/plain; charset=utf-8",
                )
            };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn run_spans(&self, header: &LogHeader) -> RunSpans {
        let builder = SpanBuilder::new(header);
        let sampled = self.config.sampler.samples(builder.trace_id());
        RunSpans {
            builder,
            sampled,
            kept_some: false,
        }
    }

    /// The spans of `ended` that leave the process: all of a sampled run's, else those of
    /// always-traced agents and the run span above them.
    fn keep(&self, run: &mut RunSpans, ended: Vec<Span>) -> Vec<Span> {
        if run.sampled {
            return ended;
        }
        let always = &self.config.sampler.always;
        if always.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for s in ended {
            let keep = match s.category {
                Category::Workflow => run.kept_some,
                _ => s.lane.as_deref().is_some_and(|l| always.contains(l)),
            };
            if keep {
                run.kept_some = true;
                out.push(s);
            }
        }
        out
    }
}

impl Observer for Inner {
    fn committed(&self, header: &LogHeader, events: &[Event]) {
        crate::logs::emit(header, events);
        let mut ended = Vec::new();
        let mut finished = false;
        let kept = {
            let mut runs = lock(&self.runs);
            let run = runs
                .entry(header.run_id.clone())
                .or_insert_with(|| self.run_spans(header));
            for e in events {
                run.builder.push(e, &mut ended);
                finished |= e.kind().ends_run();
            }
            {
                let mut m = lock(&self.metrics);
                m.record_spans(&ended);
                m.record_events(&header.run_id, events);
            }
            if self.config.capture_content {
                for s in &mut ended {
                    crate::content::attach(s);
                }
            }
            let kept = self.keep(run, ended);
            if finished {
                runs.remove(&header.run_id);
            }
            kept
        };
        if let Some(exporter) = &self.exporter {
            exporter.send(&kept);
            if finished {
                exporter.flush(self.config.flush_timeout);
            }
        }
    }

    fn resumed(&self, header: &LogHeader, log: &Path) {
        // Rebuild what was open when the run stopped, so what ends now nests under it; the
        // spans that ended before were the earlier process's to send.
        let mut run = self.run_spans(header);
        if let Ok((_, events)) = read_log(log) {
            let mut discard = Vec::new();
            for e in &events {
                run.builder.push(e, &mut discard);
                discard.clear();
            }
        }
        lock(&self.runs).insert(header.run_id.clone(), run);
    }
}
