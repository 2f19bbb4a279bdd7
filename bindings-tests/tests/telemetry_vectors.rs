//! Telemetry derived from every vector's log: a well-formed span tree (one trace, every parent
//! present, nothing left open in a finished run), the same span ids however parallel agents
//! finish, and the three pictures. The vectors' logs are byte-identical from every host, so
//! this is also the span tree Python and Node export.

use std::collections::HashSet;

use agentmesh_bindings_tests::{list_vectors, perturbed, run_script, vectors_dir};
use agentmesh_core::{read_log, RunStatus};
use agentmesh_telemetry::{render, spans, Format, Status};

fn tree(path: &std::path::Path) -> Vec<(String, String, String)> {
    let (header, events) = read_log(path).unwrap();
    let (all, _) = spans(&header, &events);
    let mut v: Vec<_> = all
        .iter()
        .map(|s| {
            (
                s.span_id.hex(),
                s.parent.map(|p| p.hex()).unwrap_or_default(),
                s.name.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_vector_gives_a_well_formed_trace_and_pictures() {
    let dir = tempfile::tempdir().unwrap();
    for (i, v) in list_vectors(vectors_dir()).unwrap().iter().enumerate() {
        let (workflow, script) = v.load().unwrap();
        let run = run_script(&workflow, &script, &dir.path().join(format!("a{i}"))).unwrap();
        let (header, events) = read_log(&run.log_path).unwrap();
        let (all, steps) = spans(&header, &events);
        let name = &v.name;
        assert!(!all.is_empty(), "{name}");
        let ids: HashSet<_> = all.iter().map(|s| s.span_id).collect();
        assert_eq!(ids.len(), all.len(), "{name}: span ids are unique");
        assert!(
            all.iter().all(|s| s.trace_id == all[0].trace_id),
            "{name}: one trace"
        );
        for s in &all {
            if let Some(p) = s.parent {
                assert!(
                    ids.contains(&p),
                    "{name}: the parent of {} is a span",
                    s.name
                );
            }
            assert!(
                s.end_us >= s.start_us,
                "{name}: {} ends after it starts",
                s.name
            );
        }
        let finished = matches!(
            run.result.status,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        );
        if finished {
            assert!(
                all.iter().all(|s| s.status != Status::Open),
                "{name}: nothing open"
            );
        }
        assert!(!steps.is_empty() || events.len() < 3, "{name}");
        for f in [Format::Chrome, Format::Html, Format::Mermaid, Format::Spans] {
            let out = render(&header, &events, f).unwrap();
            assert!(!out.is_empty(), "{name} {f:?}");
            if f == Format::Chrome {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert!(
                    v["traceEvents"].as_array().unwrap().len() > all.len(),
                    "{name}"
                );
            }
            if f == Format::Mermaid {
                for node in &workflow.spec().nodes {
                    assert!(out.contains(&node.id), "{name}: node {} drawn", node.id);
                }
            }
        }
        // Another completion order: the same spans, ids and parents.
        let other = run_script(
            &workflow,
            &perturbed(&script),
            &dir.path().join(format!("b{i}")),
        )
        .unwrap();
        assert_eq!(
            tree(&run.log_path),
            tree(&other.log_path),
            "{name}: completion order"
        );
    }
}

#[test]
fn map_items_and_repaired_outputs_are_named_on_their_spans() {
    use agentmesh_telemetry::AttrValue;
    let dir = tempfile::tempdir().unwrap();
    let attr = |s: &agentmesh_telemetry::Span, k: &str| {
        s.attrs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
    };
    let vectors = list_vectors(vectors_dir()).unwrap();
    let run_of = |name: &str, sub: &str| {
        let v = vectors.iter().find(|v| v.name == name).unwrap();
        let (workflow, script) = v.load().unwrap();
        let run = run_script(&workflow, &script, &dir.path().join(sub)).unwrap();
        let (header, events) = read_log(&run.log_path).unwrap();
        spans(&header, &events).0
    };
    let all = run_of("map_failures_and_retries", "map");
    let fetches: Vec<_> = all
        .iter()
        .filter(|s| s.name == "execute_tool fetcher")
        .collect();
    assert_eq!(fetches.len(), 7, "4 items, 3 retries");
    let keyed: HashSet<(i64, String)> = fetches
        .iter()
        .map(|s| {
            match (
                attr(s, "agentmesh.item.index"),
                attr(s, "agentmesh.item.key"),
            ) {
                (Some(AttrValue::Int(i)), Some(AttrValue::Str(k))) => (i, k),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert!(keyed.contains(&(1, "b.example".to_owned())), "{keyed:?}");
    assert_eq!(keyed.len(), 4);
    let all = run_of("structured_output_repair_reask", "schema");
    let repaired: Vec<_> = all
        .iter()
        .filter_map(|s| attr(s, "agentmesh.output.repaired"))
        .collect();
    assert_eq!(
        repaired,
        [AttrValue::Str(
            "codeFence,comments,singleQuotes,unquotedKeys,trailingCommas".into()
        )]
    );
    let failed = all
        .iter()
        .filter(|s| attr(s, "error.type") == Some(AttrValue::Str("OutputSchemaError".into())))
        .count();
    assert_eq!(failed, 3, "two planner attempts and one item");
}
