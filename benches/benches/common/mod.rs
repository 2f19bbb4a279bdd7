//! The four ways every workflow benchmark runs: `Mesh` and raw `Run`, in memory and with a
//! file log (batch fsync).

use std::hint::black_box;

use agentmesh_benches::{mesh, options, run_mesh, run_raw, FileRuns, Payload};
use agentmesh_core::Workflow;
use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;

pub fn four_ways(g: &mut BenchmarkGroup<'_, WallTime>, wf: &Workflow) {
    let in_memory = mesh(Payload::Null, None);
    g.bench_function("mesh/memory", |b| {
        b.iter(|| run_mesh(&in_memory, wf, options(None, None)).expect("run"))
    });
    g.bench_function("raw/memory", |b| {
        b.iter(|| black_box(run_raw(wf, options(None, None), Payload::Null).expect("run")))
    });

    let mut files = FileRuns::new().expect("temp dir");
    let dir = files.dir().to_path_buf();
    let on_disk = mesh(Payload::Null, Some(&dir));
    g.bench_function("mesh/file_batch", |b| {
        b.iter_custom(|iters| {
            files
                .time(iters as usize, |id| {
                    run_mesh(&on_disk, wf, options(Some(id), None))
                })
                .expect("run")
        })
    });
    g.bench_function("raw/file_batch", |b| {
        b.iter_custom(|iters| {
            files
                .time(iters as usize, |id| {
                    run_raw(wf, options(Some(id), Some(&dir)), Payload::Null).map(drop)
                })
                .expect("run")
        })
    });
}
