//! `NativeTelemetry`: live telemetry (docs/telemetry.md) for the runs a mesh starts, resumes,
//! retries and forks (its observer goes into their options), and the exports of a log
//! (`exportLog`, `exportOtlp`, `exportOtlpSync`). Spans and metrics are computed by
//! `agentmesh-telemetry` from the committed events, so they are the same in every host.
//!
//! Options cross as JSON text the JS layer wrote (lib/telemetry.js checks them first); they
//! are parsed here with unknown fields refused, so nothing the JS layer missed is ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentmesh_core::Observer;
use agentmesh_telemetry::otlp::OtlpConfig;
use agentmesh_telemetry::{render_log, send_log, Format, Sampler, Telemetry, TelemetryConfig};
use napi::bindgen_prelude::AsyncTask;
use napi::Env;
use napi_derive::napi;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::args;
use crate::errors::{guard, invalid_argument, OrThrow};
use crate::task::{spawn, CoreTask};

/// `new Telemetry(options)`, as JSON.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TelemetryOptions {
    otlp: Option<String>,
    headers: Option<HashMap<String, String>>,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
    always_trace: Option<Vec<String>>,
    capture_content: Option<bool>,
    flush_timeout_ms: Option<u64>,
    /// `null` (or absent): the default labels; a list: exactly those.
    metric_labels: Option<Vec<String>>,
}

/// The options of `exportOtlp`, as JSON.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendOptions {
    headers: Option<HashMap<String, String>>,
    service_name: Option<String>,
    content: Option<bool>,
}

/// `text` as `T`; `what` names the options in the error, with the offending field's path.
fn parse<T: DeserializeOwned + Default>(
    what: &str,
    text: Option<&str>,
) -> agentmesh_core::Result<T> {
    let Some(text) = text else {
        return Ok(T::default());
    };
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            invalid_argument(format!("{what}: {inner}"))
        } else {
            invalid_argument(format!("{what}: option '{path}': {inner}"))
        }
    })
}

fn otlp_config(
    endpoint: &str,
    headers: Option<HashMap<String, String>>,
    service_name: Option<String>,
) -> OtlpConfig {
    OtlpConfig {
        headers: headers.unwrap_or_default(),
        service_name,
        ..OtlpConfig::to(endpoint)
    }
}

fn config(options: TelemetryOptions) -> agentmesh_core::Result<TelemetryConfig> {
    let TelemetryOptions {
        otlp,
        headers,
        service_name,
        sample_ratio,
        always_trace,
        capture_content,
        flush_timeout_ms,
        metric_labels,
    } = options;
    let defaults = TelemetryConfig::default();
    let otlp = match otlp {
        Some(endpoint) => Some(otlp_config(&endpoint, headers, service_name)),
        None if headers.is_some() || service_name.is_some() => {
            return Err(invalid_argument(
                "telemetry options: headers and serviceName are for OTLP export: give otlp too",
            ))
        }
        None => None,
    };
    let mut sampler = Sampler::ratio(sample_ratio.unwrap_or(1.0))?;
    for agent in always_trace.unwrap_or_default() {
        sampler = sampler.always_trace(&agent);
    }
    Ok(TelemetryConfig {
        otlp,
        sampler,
        capture_content: capture_content.unwrap_or(false),
        flush_timeout: flush_timeout_ms.map_or(defaults.flush_timeout, Duration::from_millis),
        metric_labels: metric_labels.unwrap_or(defaults.metric_labels),
        metrics_interval: defaults.metrics_interval,
    })
}

/// What an exporter did.
#[napi(object)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: f64,
    /// Spans dropped: the queue was full, or their request failed.
    pub dropped: f64,
    /// Export requests that failed (collector down, slow or refusing).
    pub failed_requests: f64,
}

/// Live telemetry: spans exported over OTLP as they end (when an endpoint is given), metrics
/// as Prometheus text.
#[napi]
pub struct NativeTelemetry {
    inner: Telemetry,
}

impl NativeTelemetry {
    /// The observer a run's options take.
    pub(crate) fn observer(&self) -> Arc<dyn Observer> {
        self.inner.observer()
    }
}

fn duration_ms(what: &str, ms: Option<f64>) -> agentmesh_core::Result<Duration> {
    Ok(match ms {
        None => Duration::from_secs(2),
        Some(ms) => Duration::from_millis(args::uint(what, ms)?),
    })
}

#[napi]
impl NativeTelemetry {
    /// Telemetry from the options' JSON text (`otlp`, `headers`, `serviceName`,
    /// `sampleRatio`, `alwaysTrace`, `captureContent`, `flushTimeoutMs`, `metricLabels`);
    /// starts the exporter's thread when `otlp` is given. Errors: `INVALID_ARGUMENT` (an
    /// unknown option, a wrong type, a ratio outside 0..1, an endpoint that is not an http(s)
    /// URL, a malformed header), `IO` (the thread could not start).
    #[napi(factory, catch_unwind)]
    pub fn from_options_json(env: &Env, options: Option<String>) -> napi::Result<NativeTelemetry> {
        let inner = guard(|| {
            let options = parse::<TelemetryOptions>("telemetry options", options.as_deref())?;
            Telemetry::new(config(options)?)
        })
        .or_throw(env)?;
        Ok(NativeTelemetry { inner })
    }

    /// Telemetry from the standard `OTEL_*` variables (`TelemetryConfig::from_env`). Errors:
    /// `INVALID_ARGUMENT` (a sampler the variables name wrongly, the endpoint), `IO`.
    #[napi(factory, catch_unwind)]
    pub fn from_env(env: &Env) -> napi::Result<NativeTelemetry> {
        let inner = guard(|| Telemetry::new(TelemetryConfig::from_env()?)).or_throw(env)?;
        Ok(NativeTelemetry { inner })
    }

    /// The metrics so far, as Prometheus text.
    #[napi(catch_unwind)]
    pub fn metrics_text(&self) -> String {
        self.inner.metrics_text()
    }

    /// Send what is queued and wait for it, at most `timeoutMs` (default 2000); whether it was
    /// all handled. Blocks the calling thread. Errors: `INVALID_ARGUMENT` (the timeout).
    #[napi(catch_unwind)]
    pub fn flush(&self, env: &Env, timeout_ms: Option<f64>) -> napi::Result<bool> {
        let timeout = duration_ms("timeoutMs", timeout_ms).or_throw(env)?;
        Ok(self.inner.flush(timeout))
    }

    /// Flush (at most `timeoutMs`, default 2000) and stop the exporter's thread; whether the
    /// flush finished. Errors: `INVALID_ARGUMENT` (the timeout).
    #[napi(catch_unwind)]
    pub fn shutdown(&self, env: &Env, timeout_ms: Option<f64>) -> napi::Result<bool> {
        let timeout = duration_ms("timeoutMs", timeout_ms).or_throw(env)?;
        Ok(self.inner.shutdown(timeout))
    }

    /// Serve `GET /metrics` on `addr` (a loopback address; port 0 picks one) from a
    /// background thread; the address it listens on (`127.0.0.1:PORT`). Errors:
    /// `INVALID_ARGUMENT` (not a loopback address), `IO` (it cannot be bound).
    #[napi(catch_unwind)]
    pub fn serve_metrics(&self, env: &Env, addr: String) -> napi::Result<String> {
        let bound = guard(|| self.inner.serve_metrics(&addr)).or_throw(env)?;
        Ok(bound.to_string())
    }

    /// What the exporter did so far; `null` without OTLP export.
    #[napi(getter)]
    pub fn export_stats(&self) -> Option<ExportStats> {
        self.inner.export_stats().map(|s| ExportStats {
            exported: s.exported() as f64,
            dropped: s.dropped() as f64,
            failed_requests: s.failed_requests() as f64,
        })
    }
}

/// The log at `path` rendered as `format`: `chrome` (Chrome/Perfetto trace JSON), `html` (a
/// self-contained timeline), `mermaid` (a flowchart) or `spans` (the derived spans, one JSON
/// object a line). Errors: `INVALID_ARGUMENT` (the format), `IO`, `LOG_CORRUPT`.
#[napi(catch_unwind)]
pub fn export_log(env: &Env, path: String, format: String) -> napi::Result<String> {
    guard(|| render_log(&path, Format::parse(&format)?)).or_throw(env)
}

fn send(path: &str, endpoint: &str, options: Option<&str>) -> agentmesh_core::Result<f64> {
    let SendOptions {
        headers,
        service_name,
        content,
    } = parse("exportOtlp options", options)?;
    let config = otlp_config(endpoint, headers, service_name);
    Ok(send_log(path, &config, content.unwrap_or(false))? as f64)
}

/// Send the finished spans of the log at `path` to the collector at `endpoint` (a base URL
/// or a full traces URL) with their recorded times; `options` is JSON text of `headers`,
/// `serviceName`, `content`. The number of spans sent. Blocks on the network. Errors:
/// `INVALID_ARGUMENT` (endpoint, headers, options), `IO` (the collector refused or could not
/// be reached), `LOG_CORRUPT`.
#[napi(catch_unwind)]
pub fn export_otlp_sync(
    env: &Env,
    path: String,
    endpoint: String,
    options: Option<String>,
) -> napi::Result<f64> {
    guard(|| send(&path, &endpoint, options.as_deref())).or_throw(env)
}

/// `exportOtlpSync` on the thread pool.
#[napi(ts_return_type = "Promise<number>")]
pub fn export_otlp(
    path: String,
    endpoint: String,
    options: Option<String>,
) -> AsyncTask<CoreTask<f64>> {
    spawn(move || send(&path, &endpoint, options.as_deref()))
}

/// The observer a run takes: the mesh's telemetry's, when it has one.
pub(crate) fn observer(telemetry: Option<&NativeTelemetry>) -> Option<Arc<dyn Observer>> {
    telemetry.map(NativeTelemetry::observer)
}

/// The process's AgentMesh logs as JSON lines, kept for JavaScript to drain (`routeLogs`).
#[napi]
pub struct NativeLogBuffer {
    inner: Arc<agentmesh_telemetry::logs::LogBuffer>,
}

#[napi]
impl NativeLogBuffer {
    /// Up to `max` JSON lines, without waiting.
    #[napi(catch_unwind)]
    pub fn drain(&self, max: u32) -> Vec<String> {
        self.inner.drain(max as usize, Duration::ZERO)
    }

    /// Lines dropped because nobody drained them in time.
    #[napi(getter)]
    pub fn dropped(&self) -> f64 {
        self.inner.dropped() as f64
    }
}

/// Start keeping the process's `tracing` events from `level` up (the first call decides) in a
/// buffer of `cap` lines. Errors: `INVALID_ARGUMENT` (the level; another global subscriber).
#[napi(catch_unwind)]
pub fn capture_logs(env: &Env, level: String, cap: u32) -> napi::Result<NativeLogBuffer> {
    let inner = guard(|| agentmesh_telemetry::capture_logs(&level, cap as usize)).or_throw(env)?;
    Ok(NativeLogBuffer { inner })
}
