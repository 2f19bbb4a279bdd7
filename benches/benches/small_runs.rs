//! Many small runs: 1000 runs of a 5-node chain with small payloads, in memory and with file
//! logs (a fresh run id, hence a new file, per run). Measures per-run fixed costs: workflow
//! clone, run id, header, `runStarted` (which embeds the workflow), file creation and fsyncs.

use agentmesh_benches::{chain, mesh, options, run_mesh, run_raw, FileRuns, Payload};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const RUNS: usize = 1000;

fn bench(c: &mut Criterion) {
    let wf = chain(5);
    let mut g = c.benchmark_group("small_runs_1000x5");
    g.throughput(Throughput::Elements(RUNS as u64));
    // Each iteration takes tens of milliseconds to seconds: the same count per sample.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);

    let in_memory = mesh(Payload::Small, None);
    g.bench_function("mesh/memory", |b| {
        b.iter(|| {
            for _ in 0..RUNS {
                run_mesh(&in_memory, &wf, options(None, None)).expect("run");
            }
        })
    });
    g.bench_function("raw/memory", |b| {
        b.iter(|| {
            for _ in 0..RUNS {
                run_raw(&wf, options(None, None), Payload::Small).expect("run");
            }
        })
    });

    let mut files = FileRuns::new().expect("temp dir");
    let dir = files.dir().to_path_buf();
    let on_disk = mesh(Payload::Small, Some(&dir));
    g.bench_function("mesh/file_batch", |b| {
        b.iter_custom(|iters| {
            files
                .time(iters as usize * RUNS, |id| {
                    run_mesh(&on_disk, &wf, options(Some(id), None))
                })
                .expect("run")
        })
    });
    g.bench_function("raw/file_batch", |b| {
        b.iter_custom(|iters| {
            files
                .time(iters as usize * RUNS, |id| {
                    run_raw(&wf, options(Some(id), Some(&dir)), Payload::Small).map(drop)
                })
                .expect("run")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
