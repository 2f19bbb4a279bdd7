//! The policies in `policy-examples/` load, and each example's workflow and script run under
//! its policy with the decisions its README describes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::policy::Policy;
use agentmesh_core::{read_log, Event, EventData, FsyncMode, Mesh, RunStatus, Script, Workflow};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy-examples")
        .join(name)
}

/// Run an example: its policy, workflow and script (approvals applied by a resume, as
/// `agentmesh resume --script` does). Returns the final status, the log's events and its text.
fn run(name: &str) -> (RunStatus, Vec<Event>, String) {
    let dir = example(name);
    let policy_file = ["policy.json", "policy.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .expect("a policy file");
    let policy = Policy::from_path(&policy_file).unwrap();
    let wf = Workflow::from_file(dir.join("workflow.json")).unwrap();
    let script = Arc::new(Script::from_file(dir.join("script.json")).unwrap());
    let logs = tempfile::tempdir().unwrap();
    let mesh = || {
        let mut m = Mesh::new()
            .with_log_dir(logs.path())
            .with_fsync(FsyncMode::Never)
            .with_policy(policy.clone());
        script.register(&mut m, &wf);
        m
    };
    let mut result = mesh().run(&wf, script.run_options().unwrap()).unwrap();
    let path = result.log_path.clone().unwrap();
    if result.status == RunStatus::Waiting {
        result = mesh().resume(&path, script.approvals.clone()).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let (header, events) = read_log(&path).unwrap();
    assert_eq!(header.policy.unwrap().hash, policy.hash());
    (result.status, events, text)
}

/// Every verdict of the log as `(type, node, rule, action)`.
fn verdicts(events: &[Event]) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for e in events {
        let list = match &e.data {
            EventData::RunStarted(s) => &s.verdicts,
            EventData::Completed(_, c) => &c.verdicts,
            EventData::Failed(_, f) => &f.verdicts,
            EventData::CallStarted(c) => &c.verdicts,
            EventData::CallCompleted(c) => &c.verdicts,
            EventData::CallFailed(c) => &c.verdicts,
            EventData::CallDenied(d) => &d.verdicts,
            _ => continue,
        };
        for v in list {
            out.push((
                e.type_name().to_owned(),
                e.node.as_deref().unwrap_or("-").to_owned(),
                v.rule.to_string(),
                v.action.as_str().to_owned(),
            ));
        }
    }
    out
}

fn has(
    v: &[(String, String, String, String)],
    ty: &str,
    node: &str,
    rule: &str,
    action: &str,
) -> bool {
    v.iter()
        .any(|(t, n, r, a)| t == ty && n == node && r == rule && a == action)
}

#[test]
fn every_example_policy_loads_and_hashes_alike_in_canonical_form() {
    for name in [
        "default",
        "strict-compliance",
        "role-tools",
        "code-review-secrets",
    ] {
        let dir = example(name);
        let file = ["policy.json", "policy.yaml"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} has no policy file"));
        let p = Policy::from_path(&file).unwrap();
        assert_eq!(p.name(), name);
        assert_eq!(Policy::from_value(p.to_json()).unwrap().hash(), p.hash());
        assert!(dir.join("README.md").is_file(), "{name} has no README");
    }
}

#[test]
fn the_default_policy_redacts_pii_and_denies_tools_no_role_allows() {
    let (status, events, text) = run("default");
    assert_eq!(status, RunStatus::Completed);
    let v = verdicts(&events);
    for rule in ["pii-email", "pii-phone", "pii-card"] {
        assert!(has(&v, "runStarted", "-", rule, "redact"), "{rule}: {v:?}");
    }
    assert!(has(&v, "callDenied", "triage", "tools", "block"), "{v:?}");
    assert!(
        has(&v, "agentCompleted", "reply", "pii-card", "redact"),
        "{v:?}"
    );
    for raw in [
        "ann.smith@example.com",
        "415-555-0132",
        "4111 1111 1111 1111",
    ] {
        assert!(!text.contains(raw), "{raw} reached the log");
    }
}

#[test]
fn the_strict_policy_keeps_confidential_text_from_the_vendor() {
    let (status, events, text) = run("strict-compliance");
    assert_eq!(status, RunStatus::Completed);
    let v = verdicts(&events);
    assert!(
        has(
            &v,
            "callDenied",
            "analyse",
            "confidential-to-vendor",
            "block"
        ),
        "{v:?}"
    );
    assert!(
        has(&v, "runStarted", "-", "redact-phone", "redact"),
        "{v:?}"
    );
    assert!(
        has(&v, "agentCompleted", "analyse", "employee-id", "warn"),
        "{v:?}"
    );
    // The allowed tool ran; the LLM was never asked.
    assert!(events
        .iter()
        .any(|e| matches!(&e.data, EventData::CallCompleted(_))));
    assert!(!text.contains("CONFIDENTIAL") && !text.contains("+44 20 7946 0958"));
}

#[test]
fn role_based_tools_give_each_agent_its_own() {
    let (status, events, _) = run("role-tools");
    assert_eq!(status, RunStatus::Completed);
    let denied: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::CallDenied(d) => {
                Some((e.node.clone().unwrap().to_string(), d.name.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        denied,
        [
            ("research".to_owned(), "write_file".to_owned()),
            ("review".to_owned(), "write_file".to_owned())
        ]
    );
    let coder_calls = events
        .iter()
        .filter(|e| {
            e.node.as_deref() == Some("code") && matches!(e.data, EventData::CallCompleted(_))
        })
        .count();
    assert_eq!(coder_calls, 3, "the coder's three tools are allowed");
}

#[test]
fn code_review_agents_never_see_or_post_secrets() {
    let (status, events, text) = run("code-review-secrets");
    assert_eq!(status, RunStatus::Completed);
    let v = verdicts(&events);
    for rule in [
        "file-aws-access-key",
        "file-aws-secret-key",
        "file-api-key",
        "file-private-key",
    ] {
        assert!(
            has(&v, "callCompleted", "review", rule, "redact"),
            "{rule}: {v:?}"
        );
    }
    assert!(
        has(&v, "callStarted", "review", "file-aws-access-key", "redact"),
        "{v:?}"
    );
    assert!(
        has(&v, "agentCompleted", "review", "author-email", "redact"),
        "{v:?}"
    );
    for raw in [
        "AKIAQX7M2ZK4RB5TN3WD",
        "9fJk2Lm8Qw4Zt6Yp1Xr3Vn7Bc5Hd0Sg2Ea8Uo4Ki",
        "ghp_R4nd0mT0k3nV4lu3ForT3st1ngOnlyAbCd12",
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
        "dev@example.com",
    ] {
        assert!(!text.contains(raw), "{raw} reached the log");
    }
}
