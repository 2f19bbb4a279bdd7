//! Policies in runs (docs/policy.md): what is blocked never happens and never reaches the log,
//! what is redacted is recorded, sent and passed on redacted, every decision is a verdict in
//! the record of the value it judged, and a run goes on only under its own policy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentmesh_core::policy::{block_digest, Policy, Syntax};
use agentmesh_core::{
    canonical_log, read_log, replay, CallExecutor, CallOutcome, CallTicket, ErrorDetail, ErrorKind,
    EventData, FsyncMode, Mesh, RunOptions, RunStatus, Workflow,
};
use serde_json::{json, Value};

use crate::common::wf;

const EMAIL: &str = "ann.smith@example.com";
const SSN: &str = "219-09-9999";

fn policy() -> Policy {
    Policy::from_str(
        r#"
version: 1
name: run-test
rules:
  - id: pii-email
    detect: email
    action: redact
  - id: no-ssn
    detect: ssn
    action: block
  - id: codename
    keywords: [project zeus]
    action: warn
tools:
  roles:
    searcher: [search]
  agents:
    researcher: [searcher]
"#,
        Syntax::Yaml,
    )
    .unwrap()
}

/// An LLM or tool that answers with what it was sent and counts its calls.
struct Recorder {
    calls: AtomicUsize,
    sent: Mutex<Vec<Value>>,
    answer: Value,
}

impl Recorder {
    fn new(answer: Value) -> Arc<Recorder> {
        Arc::new(Recorder {
            calls: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
            answer,
        })
    }
    fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CallExecutor for Recorder {
    fn execute(
        &self,
        request: &Value,
        _ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.sent.lock().unwrap().push(request.clone());
        if let Some(f) = on_chunk {
            f(&json!({"text": self.answer["text"]}));
        }
        CallOutcome::ok(self.answer.clone())
    }
}

fn log_text(dir: &std::path::Path, run_id: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{run_id}.jsonl"))).unwrap()
}

fn mesh(dir: &std::path::Path) -> Mesh {
    Mesh::new()
        .with_fsync(FsyncMode::Never)
        .with_log_dir(dir)
        .with_policy(policy())
}

#[test]
fn input_and_outputs_are_recorded_and_passed_on_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [
        {"id": "a", "type": "agent", "agent": "echo"},
        {"id": "b", "type": "agent", "agent": "reader", "after": ["a"]}]}));
    let mut m = mesh(dir.path());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    m.agent("echo", move |act, _| {
        s.lock().unwrap().push(act.input.as_ref().clone());
        Ok(json!({"reply": format!("mail {EMAIL} about project zeus")}).into())
    });
    let s = seen.clone();
    m.agent("reader", move |act, _| {
        s.lock().unwrap().push(act.deps["a"].as_ref().clone());
        Ok(json!("done").into())
    });
    let result = m
        .run(
            &w,
            RunOptions {
                input: json!({"from": EMAIL}),
                run_id: Some("redact".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], json!({"from": "[REDACTED:email]"}));
    assert_eq!(
        seen[1],
        json!({"reply": "mail [REDACTED:email] about project zeus"})
    );
    let text = log_text(dir.path(), "redact");
    assert!(!text.contains(EMAIL), "the raw address reached the log");
    let (header, events) = read_log(dir.path().join("redact.jsonl")).unwrap();
    assert_eq!(header.policy.as_ref().unwrap().hash, policy().hash());
    assert_eq!(header.version, agentmesh_core::LOG_VERSION);
    let EventData::RunStarted(started) = &events[0].data else {
        panic!()
    };
    assert_eq!(started.verdicts[0].rule.as_ref(), "pii-email");
    assert_eq!(started.verdicts[0].path.as_deref(), Some("/from"));
    let completed = events
        .iter()
        .find_map(|e| match &e.data {
            EventData::Completed(_, c) if e.node.as_deref() == Some("a") => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    let rules: Vec<(&str, &str)> = completed
        .verdicts
        .iter()
        .map(|v| (&*v.rule, v.action.as_str()))
        .collect();
    assert_eq!(rules, [("pii-email", "redact"), ("codename", "warn")]);
    // Replay needs no policy: verdicts are host facts fed as recorded.
    assert!(replay(dir.path().join("redact.jsonl"), None).is_ok());
}

#[test]
fn a_blocked_output_never_reaches_the_log_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [{"id": "a", "type": "agent", "agent": "leaky"}]}));
    let mut m = mesh(dir.path());
    let output = json!({"note": format!("ssn {SSN}")});
    let o = output.clone();
    m.agent("leaky", move |_, _| Ok(o.clone().into()));
    let result = m
        .run(
            &w,
            RunOptions {
                run_id: Some("block".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.code, "POLICY_DENIED");
    assert!(
        error.message.contains("policy rule 'no-ssn'"),
        "{}",
        error.message
    );
    let verdict = error.verdict.unwrap();
    let text = log_text(dir.path(), "block");
    assert!(!text.contains(SSN) && !text.contains("9999"), "{text}");
    // The digest proves what was blocked to whoever holds the value.
    let (_, events) = read_log(dir.path().join("block.jsonl")).unwrap();
    let failed = events
        .iter()
        .find(|e| matches!(e.data, EventData::Failed(..)))
        .unwrap();
    let context = format!("block/{}/0", failed.seq);
    assert_eq!(
        verdict.digest.as_deref(),
        Some(&*block_digest(&context, &output))
    );
    let EventData::Failed(_, f) = &failed.data else {
        unreachable!()
    };
    assert_eq!(f.error.error_type, "PolicyDeniedError");
}

#[test]
fn a_blocked_request_is_never_sent_and_its_agent_gets_policy_denied() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [{"id": "a", "type": "agent", "agent": "asker"}]}));
    let llm = Recorder::new(json!({"text": "ok", "finishReason": "stop"}));
    let mut m = mesh(dir.path());
    m.provider("llm", llm.clone());
    m.agent("asker", |_, ctx| {
        let blocked = ctx.llm("llm", json!({"prompt": format!("my ssn is {SSN}")}));
        let e = blocked.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyDenied);
        assert!(!e.message().contains(SSN), "{e}");
        let Some(ErrorDetail::Verdict(v)) = e.detail() else {
            panic!("{e:?}")
        };
        assert_eq!(&*v.rule, "no-ssn");
        // A redacted request is sent redacted.
        let r = ctx.llm("llm", json!({"prompt": format!("write to {EMAIL}")}))?;
        Ok(json!({"got": r.response.as_ref().clone()}).into())
    });
    let result = m
        .run(
            &w,
            RunOptions {
                run_id: Some("req".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    assert_eq!(llm.count(), 1, "the blocked request was sent");
    assert_eq!(
        llm.sent.lock().unwrap()[0],
        json!({"prompt": "write to [REDACTED:email]"})
    );
    let text = log_text(dir.path(), "req");
    assert!(!text.contains(SSN) && !text.contains(EMAIL));
    let (_, events) = read_log(dir.path().join("req.jsonl")).unwrap();
    let denied = events
        .iter()
        .find_map(|e| match &e.data {
            EventData::CallDenied(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert!(denied.request.is_none() && denied.budget.is_none());
    assert_eq!(&*denied.verdicts[0].rule, "no-ssn");
    assert!(denied.verdicts[0].digest.is_some());
}

#[test]
fn an_agent_that_lets_a_policy_denial_through_fails_the_run_with_it() {
    let w = wf(json!({"name": "p", "nodes": [{"id": "a", "type": "agent", "agent": "asker"}]}));
    let llm = Recorder::new(json!({"text": "ok"}));
    let mut m = Mesh::new().with_policy(policy());
    m.provider("llm", llm.clone());
    m.agent("asker", |_, ctx| {
        ctx.llm("llm", json!({"prompt": SSN}))?;
        Ok(json!(1).into())
    });
    let result = m.run(&w, RunOptions::default()).unwrap();
    let error = result.error.unwrap();
    assert_eq!(error.code, "POLICY_DENIED");
    assert_eq!(error.verdict.unwrap().rule.as_ref(), "no-ssn");
    assert_eq!(llm.count(), 0);
}

#[test]
fn tools_outside_the_allowlist_are_never_called() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [
        {"id": "r", "type": "agent", "agent": "researcher"},
        {"id": "w", "type": "agent", "agent": "writer"}]}));
    let search = Recorder::new(json!({"hits": 1}));
    let shell = Recorder::new(json!({"ran": true}));
    let mut m = mesh(dir.path());
    m.call_tool("search", search.clone());
    m.call_tool("Search", search.clone());
    m.call_tool("shell", shell.clone());
    m.agent("researcher", |_, ctx| {
        ctx.tool("search", json!({"q": "rust"}))?;
        let e = ctx.tool("Search", json!({"q": "rust"})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyDenied);
        let e = ctx.tool("shell", json!({"cmd": "ls"})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyDenied);
        assert!(
            e.message()
                .contains("agent 'researcher' may not call this tool"),
            "{e}"
        );
        Ok(json!("r").into())
    });
    m.agent("writer", |_, ctx| {
        let e = ctx.tool("search", json!({"q": "x"})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyDenied);
        Ok(json!("w").into())
    });
    let result = m
        .run(
            &w,
            RunOptions {
                run_id: Some("tools".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    assert_eq!(search.count(), 1);
    assert_eq!(shell.count(), 0, "a denied tool ran");
    let (_, events) = read_log(dir.path().join("tools.jsonl")).unwrap();
    let denials: Vec<(String, String, String)> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::CallDenied(d) => Some((
                d.name.to_string(),
                d.verdicts[0].rule.to_string(),
                d.verdicts[0].agent.as_deref().unwrap_or("").to_owned(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        denials,
        [
            ("Search".into(), "tools".into(), "researcher".into()),
            ("shell".into(), "tools".into(), "researcher".into()),
            ("search".into(), "tools".into(), "writer".into()),
        ]
    );
}

#[test]
fn responses_are_redacted_before_the_agent_and_the_log_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [{"id": "a", "type": "agent", "agent": "asker"}]}));
    let llm = Recorder::new(json!({"text": format!("reach me at {EMAIL}")}));
    let leaky = Recorder::new(json!({"text": format!("ssn {SSN}")}));
    let mut m = mesh(dir.path());
    m.provider("llm", llm.clone());
    m.provider("leaky", leaky.clone());
    m.agent("asker", |_, ctx| {
        let mut chunks = Vec::new();
        let r = ctx.llm_stream("llm", json!({"prompt": "hi"}), &mut |c| {
            chunks.push(c.clone())
        })?;
        assert_eq!(r.response["text"], "reach me at [REDACTED:email]");
        // A judged response is streamed only once it is recorded, redacted.
        assert_eq!(chunks, [json!({"text": "reach me at [REDACTED:email]"})]);
        let e = ctx.llm("leaky", json!({"prompt": "hi"})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyDenied);
        assert!(!e.message().contains(SSN));
        Ok(json!("fine").into())
    });
    let result = m
        .run(
            &w,
            RunOptions {
                run_id: Some("resp".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    let text = log_text(dir.path(), "resp");
    assert!(!text.contains(EMAIL) && !text.contains(SSN), "{text}");
    assert!(text.contains("\"type\":\"PolicyDeniedError\""), "{text}");
}

#[test]
fn a_run_goes_on_only_under_its_own_policy() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [
        {"id": "ask", "type": "human"},
        {"id": "b", "type": "agent", "agent": "echo", "after": ["ask"]}]}));
    let mut m = mesh(dir.path());
    m.agent("echo", |act, _| Ok(act.deps["ask"].as_ref().clone().into()));
    let first = m
        .run(
            &w,
            RunOptions {
                run_id: Some("human".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(first.status, RunStatus::Waiting);
    let path = dir.path().join("human.jsonl");
    let approve = || BTreeMap::from([("ask".to_owned(), json!({"ok": true, "by": EMAIL}))]);
    // Without its policy, or under another one, the run does not go on.
    let mut bare = Mesh::new().with_fsync(FsyncMode::Never);
    bare.agent("echo", |act, _| Ok(act.deps["ask"].as_ref().clone().into()));
    let e = bare.resume(&path, approve()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message().contains("was started under policy 'run-test'"),
        "{e}"
    );
    let other = Policy::from_value(json!({"version": 1, "name": "other"})).unwrap();
    let mut wrong = Mesh::new().with_fsync(FsyncMode::Never).with_policy(other);
    wrong.agent("echo", |act, _| Ok(act.deps["ask"].as_ref().clone().into()));
    let e = wrong.resume(&path, approve()).unwrap_err();
    assert!(e.message().contains("agentmesh policy check"), "{e}");
    // Under its own policy the approval is judged like an output: redacted.
    let done = m.resume(&path, approve()).unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        done.output.unwrap()["b"],
        json!({"ok": true, "by": "[REDACTED:email]"})
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains(EMAIL));
}

#[test]
fn a_blocked_input_fails_the_run_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [{"id": "a", "type": "agent", "agent": "never"}]}));
    let mut m = mesh(dir.path());
    m.agent("never", |_, _| panic!("an agent ran on a blocked input"));
    let result = m
        .run(
            &w,
            RunOptions {
                input: json!({"ssn": SSN}),
                run_id: Some("input".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.unwrap().code, "POLICY_DENIED");
    let (_, events) = read_log(dir.path().join("input.jsonl")).unwrap();
    let EventData::RunStarted(s) = &events[0].data else {
        panic!()
    };
    assert_eq!(*s.input, Value::Null);
    assert!(!log_text(dir.path(), "input").contains(SSN));
    assert!(replay(dir.path().join("input.jsonl"), None).is_ok());
}

#[test]
fn tool_nodes_need_the_policy_to_list_their_tool() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [{"id": "t", "type": "tool", "tool": "fetch"}]}));
    let mut m = mesh(dir.path());
    m.tool("fetch", |_, _| Ok(json!(1).into()));
    let e = m.run(&w, RunOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyDenied);
    assert!(e.message().contains("node 't' runs tool 'fetch'"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a log was created"
    );
}

#[test]
fn a_crash_mid_activation_resumes_to_the_same_log_under_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let w: Workflow =
        wf(json!({"name": "p", "nodes": [{"id": "a", "type": "agent", "agent": "asker"}]}));
    let llm = Recorder::new(json!({"text": format!("to {EMAIL}")}));
    let crash = Arc::new(AtomicUsize::new(1));
    let agent = |m: &mut Mesh, crash: Arc<AtomicUsize>| {
        m.agent("asker", move |_, ctx| {
            let a = ctx.llm("llm", json!({"prompt": format!("one {EMAIL}")}))?;
            let _ = ctx.llm("llm", json!({"prompt": SSN}));
            if crash.fetch_sub(1, Ordering::SeqCst) == 1 {
                return Err(agentmesh_core::Failure::error("Crash", "simulated")
                    .permanent()
                    .into());
            }
            let b = ctx.llm("llm", json!({"prompt": "two"}))?;
            Ok(json!([a.response.as_ref(), b.response.as_ref()]).into())
        });
    };
    // First run: the agent dies after two calls (a recorded failure stands for the crash:
    // cut the log before it).
    let mut m = mesh(dir.path());
    m.provider("llm", llm.clone());
    agent(&mut m, crash.clone());
    m.run(
        &w,
        RunOptions {
            run_id: Some("crash".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let path = dir.path().join("crash.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let keep: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("\"agentFailed\""))
        .collect();
    std::fs::write(&path, keep.join("\n") + "\n").unwrap();
    let mut m = mesh(dir.path());
    m.provider("llm", llm.clone());
    agent(&mut m, crash);
    let done = m.resume(&path, BTreeMap::new()).unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(llm.count(), 2, "a recorded call was sent again");
    // The same run in one go gives the same canonical log.
    let fresh = tempfile::tempdir().unwrap();
    let mut m = mesh(fresh.path());
    m.provider("llm", Recorder::new(json!({"text": format!("to {EMAIL}")})));
    agent(&mut m, Arc::new(AtomicUsize::new(0)));
    m.run(
        &w,
        RunOptions {
            run_id: Some("crash".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let canonical = |p: &std::path::Path| {
        let mut out = Vec::new();
        canonical_log(p, &mut out).unwrap();
        out
    };
    assert_eq!(
        canonical(&path),
        canonical(&fresh.path().join("crash.jsonl"))
    );
}

#[test]
fn re_execution_takes_a_redacted_decision_as_recorded_and_fork_overrides_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [
        {"id": "draft", "type": "agent", "agent": "echo"},
        {"id": "ask", "type": "human", "after": ["draft"]},
        {"id": "b", "type": "agent", "agent": "echo", "after": ["ask"]}]}));
    let mut m = mesh(dir.path());
    m.agent("echo", |act, _| {
        Ok(json!({"node": act.node.as_ref()}).into())
    });
    let run = |m: &Mesh| {
        m.run(
            &w,
            RunOptions {
                run_id: Some("reexec".into()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert_eq!(run(&m).status, RunStatus::Waiting);
    let path = dir.path().join("reexec.jsonl");
    let approve = BTreeMap::from([("ask".to_owned(), json!({"by": EMAIL}))]);
    assert_eq!(
        m.resume(&path, approve).unwrap().status,
        RunStatus::Completed
    );
    // Re-executing replays the person's (redacted) decision with its verdicts: equal.
    let report = m.reexecute(&path).unwrap();
    assert_eq!(report.activations, 2);
    // A fork's override is judged like an output: redacted, or refused when blocked.
    let fork = |seq, value: Value| {
        m.fork(
            &path,
            seq,
            BTreeMap::from([("draft".to_owned(), value)]),
            Some(format!("fork-{seq}")),
        )
    };
    let (_, events) = read_log(&path).unwrap();
    let step_end = events
        .iter()
        .find(|e| matches!(e.data, EventData::Completed(..)) && e.node.as_deref() == Some("draft"))
        .unwrap()
        .seq;
    let forked = fork(step_end, json!({"note": format!("to {EMAIL}")})).unwrap();
    assert_eq!(forked.status, RunStatus::Waiting);
    let fork_log = std::fs::read_to_string(forked.log_path.as_ref().unwrap()).unwrap();
    assert!(!fork_log.contains(EMAIL) && fork_log.contains("[REDACTED:email]"));
    assert!(replay(forked.log_path.as_ref().unwrap(), None).is_ok());
    let e = fork(step_end, json!({"ssn": SSN})).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyDenied);
    assert!(!e.message().contains(SSN));
}
