//! Reading a ~100k-event log: `verify_log` (hash chain and envelopes, no body parsing),
//! `canonical_log` to a sink, and `replay` (parse every event, re-drive the orchestrator,
//! compare). The log is a 1-agent loop with small payloads, built once. Throughput is per event.

use std::hint::black_box;

use agentmesh_benches::build_loop_log;
use agentmesh_core::{canonical_log, replay, verify_log};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const EVENTS: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, events) = build_loop_log(dir.path(), EVENTS).expect("build log");
    let mut g = c.benchmark_group("log_100k");
    g.throughput(Throughput::Elements(events));
    // Each iteration takes tens of milliseconds to seconds: the same count per sample.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function("verify_log", |b| {
        b.iter(|| black_box(verify_log(&path).expect("verify")))
    });
    g.bench_function("canonical_log", |b| {
        b.iter(|| black_box(canonical_log(&path, &mut std::io::sink()).expect("canonical")))
    });
    g.bench_function("replay", |b| {
        b.iter(|| black_box(replay(&path, None).expect("replay")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
