//! Live telemetry: an [`Observer`] that queues each commit's events for the telemetry thread
//! ([`crate::worker`]), which turns them into spans, metrics and log lines as the run goes and
//! hands finished spans to the OTLP exporter's thread. The run's own thread only queues.
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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentmesh_core::{Error, ErrorKind, Observer};

use crate::metrics::Metrics;
use crate::otlp::{ExportStats, OtlpConfig, OtlpExporter};
use crate::otlp_metrics::OtelMetrics;
use crate::sampling::Sampler;
use crate::worker::{Feed, Msg, Worker};

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
    shared: Arc<Shared>,
}

/// A [`Telemetry`] that may be gone ([`Telemetry::downgrade`]).
#[derive(Debug, Clone)]
pub struct WeakTelemetry(std::sync::Weak<Shared>);

impl WeakTelemetry {
    /// The telemetry, while some handle keeps it.
    pub fn upgrade(&self) -> Option<Telemetry> {
        self.0.upgrade().map(|shared| Telemetry { shared })
    }
}

/// What the handles share; dropping the last one flushes (at most `flush_timeout`).
#[derive(Debug)]
struct Shared {
    feed: Arc<Feed>,
    flush_timeout: Duration,
    exporter: Option<Arc<OtlpExporter>>,
    otel_metrics: Option<Arc<OtelMetrics>>,
    metrics: Arc<Mutex<Metrics>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush(self.flush_timeout);
    }
}

impl Telemetry {
    /// Start telemetry: its thread, and the exporters' threads when `config.otlp` is set.
    ///
    /// Errors: `INVALID_ARGUMENT` (endpoint, headers), `IO` (a thread could not start).
    pub fn new(config: TelemetryConfig) -> agentmesh_core::Result<Telemetry> {
        let exporter = config
            .otlp
            .as_ref()
            .map(OtlpExporter::start)
            .transpose()?
            .map(Arc::new);
        let otel_metrics = match (&config.otlp, config.metrics_interval) {
            (Some(otlp), Some(every)) => Some(Arc::new(OtelMetrics::start(otlp, every)?)),
            _ => None,
        };
        let mut metrics = Metrics::new(config.metric_labels.iter().cloned());
        if let Some(m) = &otel_metrics {
            metrics = metrics.with_otel(m.clone());
        }
        let metrics = Arc::new(Mutex::new(metrics));
        let (feed, wake) = Feed::new();
        let feed = Arc::new(feed);
        let worker = Worker {
            feed: feed.clone(),
            wake,
            sampler: config.sampler.clone(),
            capture_content: config.capture_content,
            exporter: exporter.clone(),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("agentmesh-telemetry".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::new(ErrorKind::Io, format!("starting telemetry: {e}")))?;
        Ok(Telemetry {
            shared: Arc::new(Shared {
                feed,
                flush_timeout: config.flush_timeout,
                exporter,
                otel_metrics,
                metrics,
            }),
        })
    }

    /// The observer to give a mesh ([`agentmesh_core::Mesh::with_observer`]) or a run's
    /// options. On the committing thread it only queues the commit's events.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.shared.feed.clone()
    }

    /// The metrics of every commit so far, as Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.shared.sync(Duration::from_secs(2));
        lock(&self.shared.metrics).prometheus_text()
    }

    /// A copy of the metrics of every commit so far.
    pub fn metrics(&self) -> Metrics {
        self.shared.sync(Duration::from_secs(2));
        lock(&self.shared.metrics).snapshot()
    }

    /// A handle that does not keep the telemetry alive (its threads stop once the last
    /// [`Telemetry`] and the observers given out are gone): for hosts that flush at exit.
    pub fn downgrade(&self) -> WeakTelemetry {
        WeakTelemetry(Arc::downgrade(&self.shared))
    }

    /// How long a flush at the end waits (the config's `flush_timeout`).
    pub fn flush_timeout(&self) -> Duration {
        self.shared.flush_timeout
    }

    /// What the exporter did (`None` without OTLP export).
    pub fn export_stats(&self) -> Option<&ExportStats> {
        self.shared.exporter.as_deref().map(OtlpExporter::stats)
    }

    /// Commits dropped because the telemetry thread was behind (their spans and metrics are
    /// missing; the runs are not affected).
    pub fn dropped_events(&self) -> u64 {
        self.shared.feed.dropped.load(Ordering::Relaxed)
    }

    /// Handle every commit so far and send its spans, waiting at most `timeout` for them
    /// (metrics go within their exporter's own timeout); whether every span was handled (sent,
    /// or dropped and counted) in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }

    /// Flush (at most `timeout`) and stop the exporters' threads.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let flushed = self.shared.flush(timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        let spans = self
            .shared
            .exporter
            .as_ref()
            .is_none_or(|e| e.shutdown(left));
        if let Some(m) = &self.shared.otel_metrics {
            m.shutdown();
        }
        flushed && spans
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

impl Shared {
    /// Wait (at most `timeout`) until the telemetry thread handled everything queued before.
    fn sync(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.feed.push(Msg::Sync(done_tx), 0, true);
        done_rx.recv_timeout(timeout).is_ok()
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let handled = self.sync(timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        let spans = self.exporter.as_ref().is_none_or(|e| e.flush(left));
        // Metrics are best effort: a failed metrics export is the collector's state, which
        // the spans' counts already tell; it does not make the flush unfinished.
        if let Some(m) = &self.otel_metrics {
            m.flush();
        }
        handled && spans
    }
}
