//! OTLP/HTTP (protobuf) export of derived spans with the `opentelemetry-otlp` exporter over a
//! small `ureq` client: no async runtime, no tokio. The exporter runs on one background
//! thread fed by a bounded queue; a full queue or a failed export drops spans, counts them
//! and logs a warning, and never blocks or fails the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use agentmesh_core::{Error, ErrorKind};
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status as OtelStatus, TraceFlags, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value as OtelValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;

use crate::spans::{AttrValue, Span, Status};

/// Where and how spans are sent. [`OtlpConfig::from_env`] reads the standard variables.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The traces endpoint (`…/v1/traces`); `None`: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else `http://localhost:4318/v1/traces`.
    pub endpoint: Option<String>,
    /// Extra request headers (added to `OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: HashMap<String, String>,
    /// `service.name` (else `OTEL_SERVICE_NAME`, else `agentmesh`).
    pub service_name: Option<String>,
    /// Longest one export request may take.
    pub timeout: Duration,
    /// Spans the queue holds before new ones are dropped.
    pub queue: usize,
    /// Most spans per request.
    pub batch: usize,
    /// How long a span may wait in the queue before its batch is sent.
    pub delay: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            headers: HashMap::new(),
            service_name: None,
            timeout: Duration::from_secs(5),
            queue: 4096,
            batch: 512,
            delay: Duration::from_millis(500),
        }
    }
}

impl OtlpConfig {
    /// A config sending to `endpoint`: a collector's base URL (`http://host:4318`, to which
    /// `/v1/traces` is added) or a full traces URL (any other path).
    pub fn to(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: Some(traces_url(endpoint)),
            ..OtlpConfig::default()
        }
    }
}

/// A collector's base URL becomes its traces URL; a URL with a path is kept.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{trimmed}/v1/traces"),
        // A path of its own, or not a URL at all (refused, as given, when the exporter starts).
        _ => endpoint.to_owned(),
    }
}

/// Counts of what an exporter did.
#[derive(Debug, Default)]
pub struct ExportStats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_requests: AtomicU64,
}

impl ExportStats {
    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
    /// Spans dropped: the queue was full, or their request failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Export requests that failed (collector down, slow or refusing).
    pub fn failed_requests(&self) -> u64 {
        self.failed_requests.load(Ordering::Relaxed)
    }
}

enum Msg {
    Spans(Vec<SpanData>),
    Flush(SyncSender<()>),
}

/// A background OTLP exporter: [`OtlpExporter::send`] never blocks.
pub struct OtlpExporter {
    tx: Mutex<Option<SyncSender<Msg>>>,
    /// Spans queued and not yet taken by the thread (the queue bound counts spans).
    queued: Arc<AtomicU64>,
    queue: u64,
    stats: Arc<ExportStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
    endpoint: String,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// Start the exporter thread.
    ///
    /// Errors: `INVALID_ARGUMENT` when the endpoint (given or from the environment) is not a
    /// URL or a header is malformed.
    pub fn start(config: &OtlpConfig) -> agentmesh_core::Result<OtlpExporter> {
        let (mut exporter, endpoint) = build_exporter(config)?;
        exporter.set_resource(&resource(config));
        // Messages, not spans: each message is a batch of one span's worth or more.
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let stats = Arc::new(ExportStats::default());
        let queued = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            exporter,
            rx,
            stats: stats.clone(),
            queued: queued.clone(),
            batch: config.batch.max(1),
            delay: config.delay,
            endpoint: endpoint.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("agentmesh-otlp".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::new(ErrorKind::Io, format!("starting the OTLP exporter: {e}")))?;
        Ok(OtlpExporter {
            tx: Mutex::new(Some(tx)),
            queued,
            queue: config.queue.max(1) as u64,
            stats,
            thread: Mutex::new(Some(thread)),
            endpoint,
        })
    }

    /// The traces URL spans go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What it did so far.
    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    /// Queue `spans`; when the queue is full they are dropped (counted, warned), never waited
    /// for.
    pub fn send(&self, spans: &[Span]) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        if self.queued.load(Ordering::Relaxed) + n > self.queue {
            self.drop_spans(n, "the export queue is full (collector slow or down)");
            return;
        }
        let data = spans.iter().map(span_data).collect();
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            self.drop_spans(n, "the exporter is shut down");
            return;
        };
        self.queued.fetch_add(n, Ordering::Relaxed);
        match tx.try_send(Msg::Spans(data)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                self.drop_spans(n, "the export queue is full (collector slow or down)");
            }
        }
    }

    fn drop_spans(&self, n: u64, why: &str) {
        let before = self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        warn_dropped(before, n, why, &self.endpoint);
    }

    /// Send what is queued now and wait for it, at most `timeout`. Whether everything queued
    /// before the call was handled (sent or dropped) in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        {
            let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(tx) = guard.as_ref() else {
                return true;
            };
            if tx.try_send(Msg::Flush(done_tx)).is_err() {
                return false;
            }
        }
        done_rx.recv_timeout(timeout).is_ok()
    }

    /// Ask the thread to send what it holds now, without waiting.
    pub fn flush_soon(&self) {
        let (done_tx, _) = mpsc::sync_channel(1);
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            let _ = tx.try_send(Msg::Flush(done_tx));
        }
    }

    /// Flush (at most `timeout`) and stop the thread.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(tx);
        if flushed {
            if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = t.join();
            }
        }
        flushed
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its last batch; it is not joined, so a
        // hung collector never holds up the program's exit.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Export `spans` now, in batches, on the calling thread (post-hoc export). The number the
/// collector accepted.
///
/// Errors: `INVALID_ARGUMENT` (endpoint, headers), `IO` (the collector refused or could not
/// be reached: the message names the endpoint, never a header value).
pub fn export_now(spans: &[Span], config: &OtlpConfig) -> agentmesh_core::Result<u64> {
    let (mut exporter, endpoint) = build_exporter(config)?;
    exporter.set_resource(&resource(config));
    let mut sent = 0u64;
    for chunk in spans.chunks(config.batch.max(1)) {
        let batch: Vec<SpanData> = chunk.iter().map(span_data).collect();
        futures_executor::block_on(exporter.export(batch)).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("exporting {} spans to {endpoint}: {e}", chunk.len()),
            )
        })?;
        sent += chunk.len() as u64;
    }
    Ok(sent)
}

struct Worker {
    exporter: opentelemetry_otlp::SpanExporter,
    rx: Receiver<Msg>,
    stats: Arc<ExportStats>,
    queued: Arc<AtomicU64>,
    batch: usize,
    delay: Duration,
    endpoint: String,
}

impl Worker {
    fn run(self) {
        let mut pending: Vec<SpanData> = Vec::new();
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(Duration::from_secs(3600), |t| {
                self.delay.saturating_sub(t.elapsed())
            });
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Spans(spans)) => {
                    self.queued.fetch_sub(spans.len() as u64, Ordering::Relaxed);
                    oldest.get_or_insert_with(Instant::now);
                    pending.extend(spans);
                    while pending.len() >= self.batch {
                        let rest = pending.split_off(self.batch);
                        self.export(std::mem::replace(&mut pending, rest));
                    }
                    if pending.is_empty() {
                        oldest = None;
                    }
                }
                Ok(Msg::Flush(done)) => {
                    // Everything queued before the flush is in `pending` or behind it in the
                    // channel; take what is there now. A later flush found there is answered
                    // only once its spans are handled too, like this one.
                    let mut dones = vec![done];
                    while let Ok(msg) = self.rx.try_recv() {
                        match msg {
                            Msg::Spans(spans) => {
                                self.queued.fetch_sub(spans.len() as u64, Ordering::Relaxed);
                                pending.extend(spans);
                            }
                            Msg::Flush(other) => dones.push(other),
                        }
                    }
                    self.export_all(&mut pending);
                    oldest = None;
                    for done in dones {
                        let _ = done.try_send(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export_all(&mut pending);
                    oldest = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export_all(&mut pending);
                    let _ = self.exporter.shutdown();
                    return;
                }
            }
        }
    }

    fn export_all(&self, pending: &mut Vec<SpanData>) {
        while !pending.is_empty() {
            let rest = pending.split_off(self.batch.min(pending.len()));
            self.export(std::mem::replace(pending, rest));
        }
    }

    fn export(&self, batch: Vec<SpanData>) {
        let n = batch.len() as u64;
        match futures_executor::block_on(self.exporter.export(batch)) {
            Ok(()) => {
                self.stats.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                let before = self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                warn_dropped(
                    before,
                    n,
                    &format!("the export failed: {e}"),
                    &self.endpoint,
                );
            }
        }
    }
}

/// One warning for the first drop, then one each time the total doubles: a down collector
/// is visible without flooding the program's log.
fn warn_dropped(before: u64, n: u64, why: &str, endpoint: &str) {
    let after = before + n;
    if before == 0 || (before.leading_zeros() != after.leading_zeros()) {
        tracing::warn!(
            target: "agentmesh::telemetry",
            dropped = after,
            endpoint,
            "telemetry spans dropped: {why}"
        );
    }
}

fn build_exporter(
    config: &OtlpConfig,
) -> agentmesh_core::Result<(opentelemetry_otlp::SpanExporter, String)> {
    let endpoint = match &config.endpoint {
        Some(e) => e.clone(),
        None => endpoint_from_env(),
    };
    let uri: http::Uri = endpoint.parse().map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("the OTLP endpoint '{endpoint}' is not a URL: {e}"),
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the OTLP endpoint '{endpoint}' is not an http:// or https:// URL"),
        ));
    }
    check_headers(&config.headers)?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(UreqClient::new(config.timeout))
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(config.timeout)
        .with_endpoint(endpoint.clone());
    if !config.headers.is_empty() {
        builder = builder.with_headers(config.headers.clone());
    }
    let exporter = builder.build().map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("configuring the OTLP exporter for {endpoint}: {e}"),
        )
    })?;
    Ok((exporter, endpoint))
}

/// `INVALID_ARGUMENT` for a header name or value HTTP refuses, naming the header (never its
/// value: headers carry API keys).
pub(crate) fn check_headers(headers: &HashMap<String, String>) -> agentmesh_core::Result<()> {
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the OTLP header name {name:?} is not a valid HTTP header name"),
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the value of OTLP header '{name}' is not a valid HTTP header value (not shown)"),
            ));
        }
    }
    Ok(())
}

fn endpoint_from_env() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(e) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return e;
    }
    match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
        None => "http://localhost:4318/v1/traces".to_owned(),
    }
}

pub(crate) fn resource(config: &OtlpConfig) -> Resource {
    let mut b = Resource::builder();
    if let Some(name) = &config.service_name {
        b = b.with_service_name(name.clone());
    } else if std::env::var("OTEL_SERVICE_NAME").is_err() {
        b = b.with_service_name("agentmesh");
    }
    b.with_attribute(KeyValue::new("telemetry.sdk.name", "agentmesh"))
        .with_attribute(KeyValue::new(
            "agentmesh.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The SDK's span record of a derived span (original times, deterministic ids).
pub fn span_data(s: &Span) -> SpanData {
    let ctx = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(s.trace_id.0),
        opentelemetry::trace::SpanId::from_bytes(s.span_id.0),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let time = |us: u64| UNIX_EPOCH + Duration::from_micros(us);
    let events = s
        .events
        .iter()
        .map(|e| {
            opentelemetry::trace::Event::new(
                e.name,
                time(e.time_us),
                e.attrs.iter().map(kv).collect(),
                0,
            )
        })
        .collect();
    let links = s
        .links
        .iter()
        .map(|l| {
            Link::with_context(SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes(s.trace_id.0),
                opentelemetry::trace::SpanId::from_bytes(l.0),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ))
        })
        .collect();
    SpanData {
        span_context: ctx,
        parent_span_id: s.parent.map_or(opentelemetry::trace::SpanId::INVALID, |p| {
            opentelemetry::trace::SpanId::from_bytes(p.0)
        }),
        parent_span_is_remote: false,
        span_kind: if s.category.is_client() {
            SpanKind::Client
        } else {
            SpanKind::Internal
        },
        name: s.name.clone().into(),
        start_time: time(s.start_us),
        end_time: time(s.end_us.max(s.start_us)),
        attributes: s.attrs.iter().map(kv).collect(),
        dropped_attributes_count: 0,
        events: {
            let mut e = SpanEvents::default();
            e.events = events;
            e
        },
        links: {
            let mut l = SpanLinks::default();
            l.links = links;
            l
        },
        status: match &s.status {
            Status::Ok => OtelStatus::Ok,
            Status::Error(m) => OtelStatus::error(m.clone()),
            Status::Open => OtelStatus::Unset,
        },
        instrumentation_scope: InstrumentationScope::builder("agentmesh")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(crate::SCHEMA_URL)
            .build(),
    }
}

fn kv((k, v): &(&'static str, AttrValue)) -> KeyValue {
    let value = match v {
        AttrValue::Str(s) => OtelValue::from(s.clone()),
        AttrValue::Int(i) => OtelValue::I64(*i),
        AttrValue::Float(f) => OtelValue::F64(*f),
        AttrValue::Bool(b) => OtelValue::Bool(*b),
        AttrValue::Strs(v) => OtelValue::Array(opentelemetry::Array::String(
            v.iter().map(|s| s.clone().into()).collect(),
        )),
    };
    KeyValue::new(*k, value)
}

/// `HttpClient` over `ureq`: blocking, so the exporter's future completes in one poll and
/// `futures_executor::block_on` drives it without a runtime.
#[derive(Debug)]
pub(crate) struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    pub(crate) fn new(timeout: Duration) -> UreqClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        UreqClient { agent }
    }
}

/// Longest response body read from a collector.
const MAX_RESPONSE: u64 = 4 << 20;

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        let bytes = body.with_config().limit(MAX_RESPONSE).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_url_is_kept() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/otlp/v1/traces"),
            "https://c.example/otlp/v1/traces"
        );
    }

    #[test]
    fn a_bad_header_is_refused_without_showing_its_value() {
        let mut c = OtlpConfig::to("http://127.0.0.1:4318");
        c.headers
            .insert("authorization".into(), "Bearer SECRET\n".into());
        let e = OtlpExporter::start(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("authorization") && !e.message().contains("SECRET"));
        let mut c = OtlpConfig::to("http://127.0.0.1:4318");
        c.headers.insert("bad name".into(), "v".into());
        assert!(export_now(&[], &c)
            .unwrap_err()
            .message()
            .contains("bad name"));
    }

    #[test]
    fn a_bad_endpoint_is_a_typed_error() {
        for bad in ["not a url", "ftp://127.0.0.1:21/v1/traces"] {
            let e = OtlpExporter::start(&OtlpConfig::to(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
