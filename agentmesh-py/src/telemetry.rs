//! Telemetry from Python (docs/telemetry.md): `agentmesh.Telemetry` (live spans over OTLP and
//! metrics for the runs a mesh drives), `export_log` (a log as Chrome trace, HTML timeline,
//! Mermaid or spans) and `export_otlp` (a finished log's spans sent to a collector). Spans and
//! metrics are derived in Rust from the committed events: the same trace whichever language
//! hosts the run. Network and file work runs with the GIL released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use agentmesh_core::{Error, ErrorKind};
use agentmesh_telemetry::otlp::OtlpConfig;
use agentmesh_telemetry::{
    render_log, send_log, Format, Sampler, Telemetry as CoreTelemetry, TelemetryConfig,
    WeakTelemetry,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{detached, to_py};

/// Live telemetry for the runs of the meshes it is given to (`Mesh(telemetry=...)`).
#[pyclass(frozen, module = "agentmesh", name = "Telemetry")]
pub struct Telemetry {
    pub inner: CoreTelemetry,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

fn seconds(py: Python<'_>, name: &str, value: f64) -> PyResult<Duration> {
    if !(0.0..=3600.0).contains(&value) {
        return Err(to_py(
            py,
            &invalid(format!("{name} is seconds between 0 and 3600, not {value}")),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn otlp_config(
    py: Python<'_>,
    endpoint: &str,
    headers: Option<&Bound<'_, PyDict>>,
    service_name: Option<String>,
) -> PyResult<OtlpConfig> {
    let mut config = OtlpConfig::to(endpoint);
    if let Some(h) = headers {
        let mut map = HashMap::new();
        for (k, v) in h.iter() {
            let (Ok(k), Ok(v)) = (k.extract::<String>(), v.extract::<String>()) else {
                return Err(to_py(py, &invalid("headers maps str to str".to_owned())));
            };
            map.insert(k, v);
        }
        config.headers = map;
    }
    config.service_name = service_name;
    Ok(config)
}

/// Every telemetry still alive, flushed when the interpreter exits (`flush_at_exit`): the
/// telemetry threads are daemons, so without it a short script's last spans would be lost.
/// Weak handles: a telemetry the program dropped stops its threads as usual.
static MADE: std::sync::Mutex<Vec<(WeakTelemetry, Duration)>> = std::sync::Mutex::new(Vec::new());

impl Telemetry {
    fn kept(inner: CoreTelemetry) -> Telemetry {
        let timeout = inner.flush_timeout();
        let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
        made.retain(|(t, _)| t.upgrade().is_some());
        made.push((inner.downgrade(), timeout));
        Telemetry { inner }
    }
}

/// Flush every telemetry (each within its `flush_timeout`), with the GIL released; registered
/// with `atexit` when the module loads.
#[pyfunction]
pub fn flush_at_exit(py: Python<'_>) {
    let made: Vec<_> = MADE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    py.detach(move || {
        for (t, timeout) in made {
            if let Some(t) = t.upgrade() {
                t.flush(timeout);
            }
        }
    });
}

#[pymethods]
impl Telemetry {
    /// Spans go to the collector at `otlp` (a base URL such as `http://127.0.0.1:4318`, to
    /// which `/v1/traces` is added, or a full traces URL) as each one ends, from a background
    /// thread that drops (and counts) rather than waits; without `otlp` only metrics are
    /// kept. `sample_ratio` of runs are exported (by trace id: the same runs in every
    /// process), and the agents in `always_trace` always. `capture_content` puts recorded
    /// inputs and outputs on spans (as the log holds them: redacted by the run's policy).
    /// `flush_timeout`: seconds a run's end waits for its spans. `metric_labels`: the
    /// attributes allowed as metric labels.
    #[new]
    #[pyo3(signature = (otlp=None, *, headers=None, service_name=None, sample_ratio=1.0, always_trace=Vec::new(), capture_content=false, flush_timeout=2.0, metric_labels=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        otlp: Option<String>,
        headers: Option<&Bound<'_, PyDict>>,
        service_name: Option<String>,
        sample_ratio: f64,
        always_trace: Vec<String>,
        capture_content: bool,
        flush_timeout: f64,
        metric_labels: Option<Vec<String>>,
    ) -> PyResult<Telemetry> {
        let mut sampler = Sampler::ratio(sample_ratio).map_err(|e| to_py(py, &e))?;
        for agent in &always_trace {
            sampler = sampler.always_trace(agent);
        }
        let otlp = match otlp {
            Some(url) => Some(otlp_config(py, &url, headers, service_name)?),
            None if headers.is_some() || service_name.is_some() => {
                return Err(to_py(
                    py,
                    &invalid("headers and service_name need otlp (the collector)".to_owned()),
                ))
            }
            None => None,
        };
        let mut config = TelemetryConfig {
            otlp,
            sampler,
            capture_content,
            flush_timeout: seconds(py, "flush_timeout", flush_timeout)?,
            ..TelemetryConfig::default()
        };
        if let Some(labels) = metric_labels {
            config.metric_labels = labels;
        }
        let inner = CoreTelemetry::new(config).map_err(|e| to_py(py, &e))?;
        Ok(Telemetry::kept(inner))
    }

    /// Telemetry configured by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
    /// `OTEL_TRACES_SAMPLER_ARG`, `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`).
    #[staticmethod]
    fn from_env(py: Python<'_>) -> PyResult<Telemetry> {
        let config = TelemetryConfig::from_env().map_err(|e| to_py(py, &e))?;
        let inner = CoreTelemetry::new(config).map_err(|e| to_py(py, &e))?;
        Ok(Telemetry::kept(inner))
    }

    /// The metrics so far, as Prometheus text.
    fn metrics_text(&self) -> String {
        self.inner.metrics_text()
    }

    /// Send what is queued and wait, at most `timeout` seconds; whether it was all handled.
    #[pyo3(signature = (timeout=2.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = seconds(py, "timeout", timeout)?;
        let inner = self.inner.clone();
        Ok(py.detach(move || inner.flush(t)))
    }

    /// Flush (at most `timeout` seconds) and stop the exporter's thread.
    #[pyo3(signature = (timeout=2.0))]
    fn shutdown(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = seconds(py, "timeout", timeout)?;
        let inner = self.inner.clone();
        Ok(py.detach(move || inner.shutdown(t)))
    }

    /// Serve `GET /metrics` on `addr` (loopback only; port 0 picks one) from a background
    /// thread; the `host:port` it listens on.
    #[pyo3(signature = (addr="127.0.0.1:9464"))]
    fn serve_metrics(&self, py: Python<'_>, addr: &str) -> PyResult<String> {
        let bound = self.inner.serve_metrics(addr).map_err(|e| to_py(py, &e))?;
        Ok(bound.to_string())
    }

    /// `{"exported", "dropped", "failed_requests"}` so far, or `None` without `otlp`.
    #[getter]
    fn export_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(stats) = self.inner.export_stats() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("exported", stats.exported())?;
        d.set_item("dropped", stats.dropped())?;
        d.set_item("failed_requests", stats.failed_requests())?;
        Ok(Some(d))
    }

    fn __repr__(&self) -> String {
        match self.inner.export_stats() {
            Some(_) => "Telemetry(otlp)".to_owned(),
            None => "Telemetry(metrics only)".to_owned(),
        }
    }
}

/// The log at `path` (finished or running) as `format`: `"chrome"` (Chrome/Perfetto trace
/// JSON), `"html"` (a self-contained timeline), `"mermaid"` (the workflow with the run's
/// statuses) or `"spans"` (the derived spans, one JSON object per line).
#[pyfunction]
pub fn export_log(py: Python<'_>, path: PathBuf, format: &str) -> PyResult<String> {
    let format = Format::parse(format).map_err(|e| to_py(py, &e))?;
    detached(py, || render_log(&path, format))
}

/// Send the finished spans of the log at `path` to the collector at `endpoint`, with their
/// original times; the number sent. Blocks (with the GIL released) until the collector
/// answered.
#[pyfunction]
#[pyo3(signature = (path, endpoint, *, headers=None, service_name=None, content=false))]
pub fn export_otlp(
    py: Python<'_>,
    path: PathBuf,
    endpoint: &str,
    headers: Option<&Bound<'_, PyDict>>,
    service_name: Option<String>,
    content: bool,
) -> PyResult<u64> {
    let config = otlp_config(py, endpoint, headers, service_name)?;
    detached(py, || send_log(&path, &config, content))
}

/// The process's AgentMesh logs as JSON lines, kept for Python to drain (`route_logs`).
#[pyclass(frozen, module = "agentmesh", name = "NativeLogBuffer")]
pub struct NativeLogBuffer {
    inner: std::sync::Arc<agentmesh_telemetry::logs::LogBuffer>,
}

#[pymethods]
impl NativeLogBuffer {
    /// Up to `max` JSON lines, waiting at most `wait` seconds (GIL released) for the first.
    fn drain(&self, py: Python<'_>, max: usize, wait: f64) -> PyResult<Vec<String>> {
        let wait = seconds(py, "wait", wait)?;
        let inner = self.inner.clone();
        Ok(py.detach(move || inner.drain(max, wait)))
    }

    /// Lines dropped because nobody drained them in time.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
}

/// Start keeping the process's `tracing` events from `level` up (the first call decides) in a
/// buffer of `cap` lines; the buffer.
#[pyfunction]
pub fn capture_logs(py: Python<'_>, level: &str, cap: usize) -> PyResult<NativeLogBuffer> {
    let inner = agentmesh_telemetry::capture_logs(level, cap).map_err(|e| to_py(py, &e))?;
    Ok(NativeLogBuffer { inner })
}
