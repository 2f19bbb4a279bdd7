//! Structured logs: every committed event of an observed run as one JSON line with run id,
//! trace id, span id, node and seq, drained from the capture buffer (its own test binary:
//! the subscriber is global to the process).

use std::time::Duration;

use agentmesh_core::{Failure, Mesh, RunOptions, Workflow};
use agentmesh_telemetry::{Telemetry, TelemetryConfig};
use serde_json::{json, Value};

#[test]
fn each_committed_event_is_a_json_line_with_run_trace_node_and_seq() {
    let buffer = agentmesh_telemetry::capture_logs("debug", 10_000).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &buffer,
        &agentmesh_telemetry::capture_logs("info", 5).unwrap()
    ));
    assert_eq!(
        agentmesh_telemetry::capture_logs("loud", 5)
            .unwrap_err()
            .kind(),
        agentmesh_core::ErrorKind::InvalidArgument
    );
    let telemetry = Telemetry::new(TelemetryConfig::default()).unwrap();
    let wf = Workflow::from_value(json!({"name": "logs", "nodes": [
        {"id": "a", "type": "agent", "agent": "ok"},
        {"id": "b", "type": "agent", "agent": "bad", "after": ["a"]}]}))
    .unwrap();
    let mut mesh = Mesh::new().with_observer(telemetry.observer());
    mesh.agent("ok", |_, _| Ok(json!({"secret": "s3cr3t-output"}).into()));
    mesh.agent("bad", |_, _| Err(Failure::error("ValueError", "no").into()));
    let r = mesh.run(&wf, RunOptions::default()).unwrap();
    // Log lines are written on the telemetry thread: wait until it has handled the run.
    assert!(telemetry.flush(Duration::from_secs(5)));
    let lines: Vec<Value> = buffer
        .drain(10_000, Duration::from_millis(100))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["target"] == "agentmesh::event")
        .collect();
    assert!(lines.len() >= 6, "{lines:?}");
    let trace = agentmesh_core::trace_id_for(&r.run_id);
    for l in &lines {
        assert_eq!(l["run_id"], json!(r.run_id));
        assert_eq!(l["trace_id"], json!(trace));
        assert_eq!(l["span_id"].as_str().unwrap().len(), 16);
        assert!(l["seq"].as_u64().is_some());
        assert!(l["event"].as_str().is_some());
    }
    let failed = lines.iter().find(|l| l["event"] == "agentFailed").unwrap();
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["node"], "b");
    assert_eq!(failed["message"], "b failed: ValueError: no");
    let started = lines.iter().find(|l| l["event"] == "runStarted").unwrap();
    assert_eq!(started["level"], "INFO");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("s3cr3t-output"), "payloads stay in the log");
}
