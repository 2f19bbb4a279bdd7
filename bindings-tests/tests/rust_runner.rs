//! The Rust runner of the conformance vectors: every vector's canonical log must equal its
//! `expected.jsonl` byte for byte, and must not change when the agents finish in another order.
//! With `AGENTMESH_BLESS=1` it rewrites `expected.jsonl` instead (the only writer of them).

use agentmesh_bindings_tests::{
    excerpt, first_difference, list_vectors, perturbed, run_script, vectors_dir, Vector, VectorRun,
    BLESS_ENV,
};
use agentmesh_core::{replay, verify_log};

fn blessing() -> bool {
    std::env::var(BLESS_ENV).is_ok_and(|v| v == "1")
}

fn describe_difference(what: &str, expected: &[u8], actual: &[u8]) -> Option<String> {
    let d = first_difference(expected, actual)?;
    let show = |l: &Option<String>| match l {
        Some(l) => excerpt(l, d.column, 600),
        None => "<end of log>".to_owned(),
    };
    Some(format!(
        "{what}: first difference on line {} at byte {}\n  expected: {}\n  actual:   {}",
        d.line,
        d.column,
        show(&d.expected),
        show(&d.actual)
    ))
}

/// The log must verify, and replaying it must reach the run's own outcome.
fn check_log(run: &VectorRun) -> Result<(), String> {
    let report = verify_log(&run.log_path).map_err(|e| format!("verify_log: {e}"))?;
    if report.repaired.is_some() {
        return Err(format!("verify_log repaired a torn tail: {report:?}"));
    }
    let lines = run.canonical.iter().filter(|&&b| b == b'\n').count() as u64;
    if report.events + 1 != lines {
        return Err(format!(
            "verify_log counted {} events but the canonical log has {lines} lines",
            report.events
        ));
    }
    if report.finished.is_some() != run.result.status.is_finished() {
        return Err(format!(
            "verify_log says finished={:?} but the run is {}",
            report.finished,
            run.result.status.as_str()
        ));
    }
    let rep = replay(&run.log_path, None).map_err(|e| format!("replay: {e}"))?;
    let got = (&rep.outcome.status, &rep.outcome.output, &rep.outcome.error);
    let want = (&run.result.status, &run.result.output, &run.result.error);
    if got != want {
        return Err(format!("replay ends in {got:?}, the run ended in {want:?}"));
    }
    Ok(())
}

fn check_vector(v: &Vector, bless: bool) -> Result<String, String> {
    let (workflow, script) = v.load().map_err(|e| format!("loading: {e}"))?;
    let shifted = perturbed(&script);
    let dirs = (tempfile::tempdir(), tempfile::tempdir());
    let (Ok(d1), Ok(d2)) = dirs else {
        return Err("cannot create temp dirs".to_owned());
    };
    // Both variants at once: it halves the wall time and adds contention, which is the point.
    let (plain, shifted) = std::thread::scope(|s| {
        let a = s.spawn(|| run_script(&workflow, &script, d1.path()));
        let b = s.spawn(|| run_script(&workflow, &shifted, d2.path()));
        (a.join(), b.join())
    });
    let plain = plain
        .map_err(|_| "the run panicked".to_owned())?
        .map_err(|e| format!("run: {e}"))?;
    let shifted = shifted
        .map_err(|_| "the perturbed run panicked".to_owned())?
        .map_err(|e| format!("perturbed run: {e}"))?;
    check_log(&plain)?;
    check_log(&shifted).map_err(|e| format!("perturbed run: {e}"))?;
    if let Some(d) = describe_difference(
        "timing dependence (plain run = expected, perturbed delays = actual)",
        &plain.canonical,
        &shifted.canonical,
    ) {
        return Err(d);
    }
    let status = format!(
        "{} ({} resumes)",
        plain.result.status.as_str(),
        plain.resumes
    );
    let path = v.expected_path();
    let expected = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if bless {
        if expected.as_deref() != Some(&plain.canonical[..]) {
            std::fs::write(&path, &plain.canonical)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            return Ok(format!("{status}, blessed"));
        }
        return Ok(status);
    }
    let Some(expected) = expected else {
        return Err(format!(
            "no expected.jsonl; create it with {BLESS_ENV}=1 cargo test -p agentmesh-bindings-tests"
        ));
    };
    match describe_difference("expected.jsonl vs this run", &expected, &plain.canonical) {
        Some(d) => Err(d),
        None => Ok(status),
    }
}

#[test]
fn vectors_match_expected_logs_in_any_completion_order() {
    let vectors = list_vectors(vectors_dir()).expect("list vectors");
    assert!(
        !vectors.is_empty(),
        "no vectors in {}",
        vectors_dir().display()
    );
    let bless = blessing();
    let results: Vec<(String, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = vectors
            .iter()
            .map(|v| (v.name.clone(), s.spawn(move || check_vector(v, bless))))
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("the check panicked".to_owned()));
                (name, r)
            })
            .collect()
    });
    let mut failures = Vec::new();
    for (name, r) in results {
        match r {
            Ok(status) => eprintln!("ok   {name}: {status}"),
            Err(e) => {
                eprintln!("FAIL {name}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n\n")
    );
}

/// Every approval names a human node and every behaviour key a node, agent or tool of the
/// workflow, so a typo cannot silently turn a scripted behaviour into the default output.
#[test]
fn scripts_refer_to_their_workflows() {
    for v in list_vectors(vectors_dir()).expect("list vectors") {
        let (workflow, script) = v.load().unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let humans: Vec<&str> = workflow
            .spec()
            .nodes
            .iter()
            .filter(|n| n.kind == agentmesh_core::NodeKind::Human)
            .map(|n| n.id.as_str())
            .collect();
        for node in script.approvals.keys() {
            assert!(
                humans.contains(&node.as_str()),
                "{}: approval for '{node}', which is not a human node",
                v.name
            );
        }
        let ids: Vec<&str> = workflow.node_ids().collect();
        let names = workflow.agent_names();
        let tools = workflow.tool_names();
        for key in script.agents.keys() {
            assert!(
                ids.contains(&key.as_str())
                    || names.contains(key.as_str())
                    || tools.contains(key.as_str()),
                "{}: script behaviours for '{key}', which is no node, agent or tool",
                v.name
            );
        }
    }
}
