//! Fan-out: 100 independent agents in one superstep, then a join of all of them. Through `Mesh`
//! the 100 activations run on the driver's worker pool; through the raw `Run` API they are
//! completed in poll order on one thread (the core's own cost).

use std::hint::black_box;

use agentmesh_benches::{fanout, mesh, options, run_mesh, run_raw, FileRuns, Payload};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WIDTH: usize = 100;

fn bench(c: &mut Criterion) {
    let wf = fanout(WIDTH);
    let mut g = c.benchmark_group("fanout_100_join");
    // Elements = activations (100 workers + the join).
    g.throughput(Throughput::Elements(WIDTH as u64 + 1));
    g.sample_size(50);

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
