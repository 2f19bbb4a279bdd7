//! Fan-out: 100 independent agents in one superstep, then a join of all of them. Through `Mesh`
//! the 100 activations run on the driver's worker pool; through the raw `Run` API they are
//! completed in poll order on one thread (the core's own cost).

mod common;

use agentmesh_benches::fanout;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WIDTH: usize = 100;

fn bench(c: &mut Criterion) {
    let wf = fanout(WIDTH);
    let mut g = c.benchmark_group("fanout_100_join");
    // Elements = activations (100 workers + the join).
    g.throughput(Throughput::Elements(WIDTH as u64 + 1));
    g.sample_size(50);

    common::four_ways(&mut g, &wf);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
