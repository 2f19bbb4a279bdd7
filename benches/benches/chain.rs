//! Per-step overhead: a 1000-node chain of no-op agents (one activation per superstep), through
//! the Rust driver (`Mesh`, inline path: no thread hop for a lone activation) and through the raw
//! `Run` API, with the log in memory and in a file (batch fsync). Throughput is per step.

use std::hint::black_box;

use agentmesh_benches::{chain, mesh, options, run_mesh, run_raw, FileRuns, Payload};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const STEPS: usize = 1000;

fn bench(c: &mut Criterion) {
    let wf = chain(STEPS);
    let mut g = c.benchmark_group("chain_1000");
    g.throughput(Throughput::Elements(STEPS as u64));
    g.sample_size(20);

    let in_memory = mesh(Payload::Null, None);
    g.bench_function("mesh/memory", |b| {
        b.iter(|| run_mesh(&in_memory, &wf, options(None, None)).expect("run"))
    });
    g.bench_function("raw/memory", |b| {
        b.iter(|| black_box(run_raw(&wf, options(None, None), Payload::Null).expect("run")))
    });

    let mut files = FileRuns::new().expect("temp dir");
    let dir = files.dir().to_path_buf();
    let on_disk = mesh(Payload::Null, Some(&dir));
    g.bench_function("mesh/file_batch", |b| {
        b.iter_custom(|iters| {
            files
                .time(iters as usize, |id| {
                    run_mesh(&on_disk, &wf, options(Some(id), None))
                })
                .expect("run")
        })
    });
    g.bench_function("raw/file_batch", |b| {
        b.iter_custom(|iters| {
            files
                .time(iters as usize, |id| {
                    run_raw(&wf, options(Some(id), Some(&dir)), Payload::Null).map(drop)
                })
                .expect("run")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
