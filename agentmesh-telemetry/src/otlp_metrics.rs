//! OTLP/HTTP metrics export: every observation [`crate::metrics::Metrics`] takes in is also
//! recorded on an OpenTelemetry SDK instrument of the same name, and the SDK's periodic
//! reader (its own thread, no async runtime) sends them over the same `ureq` client as the
//! spans. A down collector costs a failed request per interval, never the run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use agentmesh_core::{Error, ErrorKind};
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::otlp::{resource, OtlpConfig, UreqClient};

/// The metrics URL next to a traces URL (`…/v1/traces` → `…/v1/metrics`).
pub fn metrics_url(traces: &str) -> String {
    match traces.strip_suffix("/v1/traces") {
        Some(base) => format!("{base}/v1/metrics"),
        None => traces.to_owned(),
    }
}

/// SDK instruments fed by [`crate::metrics::Metrics`].
pub struct OtelMetrics {
    provider: SdkMeterProvider,
    meter: Meter,
    counters: Mutex<HashMap<&'static str, Counter<f64>>>,
    histograms: Mutex<HashMap<&'static str, Histogram<f64>>>,
}

impl std::fmt::Debug for OtelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelMetrics").finish_non_exhaustive()
    }
}

impl OtelMetrics {
    /// Start exporting every `interval` to the metrics endpoint of `config`.
    ///
    /// Errors: `INVALID_ARGUMENT` for an endpoint or header the exporter refuses.
    pub fn start(config: &OtlpConfig, interval: Duration) -> agentmesh_core::Result<OtelMetrics> {
        crate::otlp::check_headers(&config.headers)?;
        let mut builder = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(UreqClient::new(config.timeout))
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(config.timeout);
        if let Some(traces) = &config.endpoint {
            builder = builder.with_endpoint(metrics_url(traces));
        }
        if !config.headers.is_empty() {
            builder = builder.with_headers(config.headers.clone());
        }
        let exporter = builder.build().map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("configuring the OTLP metrics exporter: {e}"),
            )
        })?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource(config))
            .with_reader(reader)
            .build();
        let meter = provider.meter("agentmesh");
        Ok(OtelMetrics {
            provider,
            meter,
            counters: Mutex::new(HashMap::new()),
            histograms: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn add(&self, name: &'static str, unit: &'static str, attrs: &[KeyValue], by: f64) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .entry(name)
            .or_insert_with(|| self.meter.f64_counter(name).with_unit(unit).build())
            .add(by, attrs);
    }

    pub(crate) fn record(
        &self,
        name: &'static str,
        unit: &'static str,
        buckets: &[f64],
        attrs: &[KeyValue],
        value: f64,
    ) {
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        histograms
            .entry(name)
            .or_insert_with(|| {
                self.meter
                    .f64_histogram(name)
                    .with_unit(unit)
                    .with_boundaries(buckets.to_vec())
                    .build()
            })
            .record(value, attrs);
    }

    /// Send what has been recorded now.
    pub fn flush(&self) -> bool {
        self.provider.force_flush().is_ok()
    }

    /// Send what has been recorded and stop the reader's thread.
    pub fn shutdown(&self) -> bool {
        self.provider.shutdown().is_ok()
    }
}
