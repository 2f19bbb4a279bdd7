//! Per-step overhead: a 1000-node chain of no-op agents (one activation per superstep), through
//! the Rust driver (`Mesh`, inline path: no thread hop for a lone activation) and through the raw
//! `Run` API, with the log in memory and in a file (batch fsync). Throughput is per step.

mod common;

use agentmesh_benches::chain;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const STEPS: usize = 1000;

fn bench(c: &mut Criterion) {
    let wf = chain(STEPS);
    let mut g = c.benchmark_group("chain_1000");
    g.throughput(Throughput::Elements(STEPS as u64));
    g.sample_size(20);

    common::four_ways(&mut g, &wf);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
