//! One benchmark scenario, run once: the program to hand to a profiler.
//!
//! ```text
//! cargo build --release -p agentmesh-benches --bin profile
//! valgrind --tool=callgrind --toggle-collect='profile::measured*' \
//!     --callgrind-out-file=cg.out target/release/profile chain-file
//! callgrind_annotate --inclusive=yes cg.out | head -60
//! ```
//!
//! Instruction counts (callgrind) are the same for the same binary and input whatever else
//! the machine runs, which wall-clock timings on a shared machine are not: compare them before
//! and after an optimisation. Scenarios: `chain-mem`, `chain-file` (1000 steps through the
//! raw `Run` API, memory / file log with batch fsync), `chain-telemetry` (300 `Mesh` runs of
//! that chain observed by live telemetry, for `perf`: it has threads), `fanout-raw` and
//! `map-raw` (1000 runs each of the static fan-out of 100 and of a map over 100 items), `verify`, `replay`,
//! `canonical` and `history` (of a 20,000-event loop log). Only [`measured`] is the scenario: the workflow
//! and the log it reads are built before, outside what `--toggle-collect` counts.

use agentmesh_benches::{build_loop_log, chain, options, run_raw, Payload};
use std::path::Path;

use agentmesh_core::{canonical_log, history, replay, verify_log};

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let wf = chain(1000);
    let log = match scenario.as_str() {
        "chain-mem" | "chain-file" | "chain-telemetry" | "fanout-raw" | "map-raw" => None,
        "verify" | "replay" | "canonical" | "history" => {
            Some(build_loop_log(dir.path(), 20_000).expect("log").0)
        }
        other => {
            eprintln!(
                "usage: profile chain-mem|chain-file|chain-telemetry|fanout-raw|map-raw|verify|replay|canonical|history (not '{other}')"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = measured(&scenario, &wf, dir.path(), log.as_deref()) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// The scenario itself (`--toggle-collect='profile::measured*'`).
#[inline(never)]
fn measured(
    scenario: &str,
    wf: &agentmesh_core::Workflow,
    dir: &Path,
    log: Option<&Path>,
) -> agentmesh_core::Result<()> {
    match (scenario, log) {
        ("chain-mem", _) => run_raw(wf, options(None, None), Payload::Null).map(drop),
        ("chain-telemetry", _) => {
            // 300 Mesh runs of the chain observed by live telemetry (no export).
            let t = agentmesh_telemetry::Telemetry::new(Default::default())?;
            let mesh = agentmesh_benches::mesh(Payload::Null, None).with_observer(t.observer());
            for _ in 0..300 {
                agentmesh_benches::run_mesh(&mesh, wf, options(None, None))?;
            }
            t.flush(std::time::Duration::from_secs(10));
            Ok(())
        }
        // 1000 runs of the static fan-out of 100 and of the map over 100 items (raw Run,
        // memory): what a map item costs beyond a node.
        ("fanout-raw" | "map-raw", _) => {
            let wf = match scenario {
                "map-raw" => agentmesh_benches::map_fanout(),
                _ => agentmesh_benches::fanout(100),
            };
            let input = agentmesh_benches::map_options(100, None, None);
            (0..1000).try_for_each(|_| run_raw(&wf, input.clone(), Payload::Null).map(drop))
        }
        ("chain-file", _) => run_raw(
            wf,
            options(Some("profile".into()), Some(dir)),
            Payload::Null,
        )
        .map(drop),
        ("verify", Some(p)) => verify_log(p).map(drop),
        ("replay", Some(p)) => replay(p, None).map(drop),
        ("canonical", Some(p)) => canonical_log(p, &mut std::io::sink()).map(drop),
        (_, Some(p)) => history(p).map(drop),
        (_, None) => unreachable!("checked in main"),
    }
}
