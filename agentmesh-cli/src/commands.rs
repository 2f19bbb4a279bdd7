//! The commands that start a run or read a log: each returns the process exit code, or an
//! error whose code picks one. `resume` and `fork` are in `resume.rs`, `show` in `show.rs`,
//! `runs` in `runs.rs`, `inspect --follow` in `follow.rs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use agentmesh_core::{
    canonical_log, check_log, history, read_log, replay as replay_log, state_at, verify_anchor,
    verify_log, Anchor, AnchorKey, Error, ErrorKind, FsyncMode, Script, Workflow,
};
use serde_json::Value;

use crate::exit;
use crate::hosted::{self, Host};
use crate::progress::Progress;
use crate::report::{self, Driven};
use crate::status;
use crate::timeline::{self, Values};

/// Arguments of `agentmesh run`.
pub struct RunArgs {
    pub workflow: PathBuf,
    pub script: Option<PathBuf>,
    pub input: Option<String>,
    pub seed: Option<u64>,
    pub run_id: Option<String>,
    pub log_dir: PathBuf,
    pub fsync: FsyncMode,
    pub policy: Option<PathBuf>,
}

/// Write `text` to stdout.
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::new(ErrorKind::Io, format!("writing to stdout: {e}")))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

pub fn to_value(value: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

pub fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

pub fn load_script(path: Option<&Path>) -> Result<Script, Error> {
    match path {
        Some(p) => Script::from_file(p),
        None => Ok(Script::default()),
    }
}

fn parse_json(what: &str, text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{what}: not valid JSON: {e}")))
}

/// Parse `NODE=JSON` arguments; `bare` is the value of a `NODE` without `=` (when allowed).
pub fn parse_assignments(
    flag: &str,
    args: &[String],
    bare: Option<&Value>,
) -> Result<BTreeMap<String, Value>, Error> {
    let mut out = BTreeMap::new();
    for arg in args {
        let (node, value) = match (arg.split_once('='), bare) {
            (Some((node, json)), _) => (node, parse_json(&format!("{flag} {node}"), json)?),
            (None, Some(v)) => (arg.as_str(), v.clone()),
            (None, None) => {
                return Err(invalid(format!("{flag} expects NODE=JSON, got '{arg}'")));
            }
        };
        if node.is_empty() {
            return Err(invalid(format!("{flag} '{arg}' names no node")));
        }
        if out.insert(node.to_owned(), value).is_some() {
            return Err(invalid(format!("{flag} names node '{node}' twice")));
        }
    }
    Ok(out)
}

/// The timeline of a run's log followed by its outcome; `resume_cmd` (see
/// [`report::render_outcome`]) is shown when the run waits for a person.
pub fn result_text(r: &Driven, resume_cmd: Option<&str>) -> Result<String, Error> {
    let mut text = String::new();
    if let Some(p) = &r.log_path {
        text.push_str(&timeline_text(p)?);
        text.push('\n');
    }
    text.push_str(&report::render_outcome(r, resume_cmd));
    Ok(text)
}

/// The text timeline of a log, with its outstanding activations.
fn timeline_text(log: &Path) -> Result<String, Error> {
    let (header, events) = read_log(log)?;
    let pending: Vec<_> = Progress::of(&header, &events)
        .pending
        .into_values()
        .collect();
    Ok(timeline::render(
        &header,
        &timeline::rows(&events, Values::Preview),
        &pending,
    ))
}

/// `agentmesh run`.
pub fn run(a: RunArgs) -> Result<u8, Error> {
    let workflow = Workflow::from_file(&a.workflow)?;
    for w in workflow.warnings() {
        eprintln!("warning: {w}");
    }
    let mut script = load_script(a.script.as_deref())?;
    if let Some(text) = &a.input {
        script.input = parse_json("--input", text)?;
    }
    if let Some(seed) = a.seed {
        script.seed = seed;
    }
    if let Some(id) = a.run_id {
        script.run_id = Some(id);
    }
    let options = script.run_options()?;
    let policy = hosted::policy_for(a.policy.as_deref(), &script)?;
    let (mesh, _) = hosted::mesh_for(&Host::Cli, script, &workflow, a.fsync, policy)?;
    let result: Driven = mesh.with_log_dir(a.log_dir).run(&workflow, options)?.into();
    let resume = result
        .log_path
        .as_deref()
        .map(|p| hosted::resume_command(p, a.script.as_deref(), a.policy.as_deref()));
    print(&result_text(&result, resume.as_deref())?)?;
    Ok(exit::of_driven(&result))
}

/// Arguments of `agentmesh verify`.
pub struct VerifyArgs {
    pub log: PathBuf,
    pub json: bool,
    pub check: bool,
    pub anchor: Option<String>,
    pub key_file: Option<PathBuf>,
}

/// The anchor key from `--key-file`, else `AGENTMESH_ANCHOR_KEY`; never printed. One final
/// newline of a key file is not key material (`echo … > key` writes one), so a file and the
/// variable holding the same text give the same key.
fn anchor_key(key_file: Option<&Path>) -> Result<Option<AnchorKey>, Error> {
    let material = match key_file {
        Some(p) => {
            let mut m = std::fs::read(p)
                .map_err(|e| Error::new(ErrorKind::Io, format!("reading {}: {e}", p.display())))?;
            if m.ends_with(b"\n") {
                m.pop();
                if m.ends_with(b"\r") {
                    m.pop();
                }
            }
            Some(m)
        }
        None => std::env::var_os("AGENTMESH_ANCHOR_KEY")
            .map(|v| v.into_encoded_bytes())
            .filter(|v| !v.is_empty()),
    };
    material.map(|m| AnchorKey::from_material(&m)).transpose()
}

/// `agentmesh verify`.
pub fn verify(a: VerifyArgs) -> Result<u8, Error> {
    let report = match &a.anchor {
        Some(text) => {
            // A file, or the JSON text itself.
            let text = if text.trim_start().starts_with('{') {
                text.clone()
            } else {
                std::fs::read_to_string(text)
                    .map_err(|e| Error::new(ErrorKind::Io, format!("reading {text}: {e}")))?
            };
            let anchor = Anchor::from_json(&text)?;
            let key = anchor_key(a.key_file.as_deref())?;
            verify_anchor(&a.log, &anchor, key.as_ref())?
        }
        None if a.check => check_log(&a.log)?,
        None => verify_log(&a.log)?,
    };
    let (header, events) = read_log(&a.log)?;
    let verdict = status::assess(&a.log, &Progress::of(&header, &events))?;
    if a.json {
        // The library's report, plus what the run is and who hosts it.
        let mut value = to_value(&report)?;
        if let (Value::Object(m), Value::Object(v)) = (&mut value, to_value(&verdict)?) {
            m.extend(v);
            m.insert("host".to_owned(), header.host().into());
        }
        print(&format!("{}\n", to_json(&value)?))?;
    } else {
        let mut text = report::render_verify(&report, &verdict, header.host());
        if a.anchor.is_some() {
            text.push_str("anchor       matches (the anchored records are all there, unchanged)\n");
        }
        print(&text)?;
    }
    Ok(0)
}

/// `agentmesh anchor`.
pub fn anchor(log: &Path, key_file: Option<&Path>) -> Result<u8, Error> {
    let key = anchor_key(key_file)?;
    let a = agentmesh_core::anchor(log, key.as_ref())?;
    print(&format!("{}\n", a.to_json()))?;
    Ok(0)
}

/// `agentmesh inspect` (without `--follow`).
pub fn inspect(log: &Path, at: Option<u64>, steps: bool, as_json: bool) -> Result<u8, Error> {
    let text = match (at, steps) {
        (Some(seq), _) => {
            let header = agentmesh_core::read_header(log)?;
            let state = state_at(log, seq)?;
            if as_json {
                format!("{}\n", to_json(&state)?)
            } else {
                report::render_state(&header, &log.display().to_string(), &state)
            }
        }
        (None, true) => {
            let header = agentmesh_core::read_header(log)?;
            let states = history(log)?;
            if as_json {
                format!("{}\n", to_json(&states)?)
            } else {
                report::render_history(&header, &log.display().to_string(), &states)
            }
        }
        (None, false) if as_json => {
            let (header, events) = read_log(log)?;
            let pending: Vec<_> = Progress::of(&header, &events)
                .pending
                .into_values()
                .collect();
            let rows = timeline::rows(&events, Values::Full);
            format!("{}\n", timeline::to_json(&header, &rows, &pending))
        }
        (None, false) => timeline_text(log)?,
    };
    print(&text)?;
    Ok(0)
}

/// `agentmesh usage`: what the run spent, as a table or the report's JSON.
pub fn usage(log: &Path, as_json: bool) -> Result<u8, Error> {
    let report = agentmesh_core::usage_report(log)?;
    if as_json {
        print(&format!("{}\n", to_json(&report)?))?;
        return Ok(0);
    }
    let row = |name: &str, t: &agentmesh_core::UsageTotals| {
        format!(
            "{name:<24} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
            t.input_tokens, t.output_tokens, t.cached_input_tokens, t.reasoning_tokens, t.attempts
        )
    };
    let mut text = format!("run          {}\n\n", report.run_id);
    text.push_str(&format!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
        "", "input", "output", "cached", "reasoning", "attempts"
    ));
    text.push_str(&row("total", &report.total));
    for (title, by) in [
        ("node", &report.by_node),
        ("agent", &report.by_agent),
        ("tool", &report.by_tool),
        ("model", &report.by_model),
    ] {
        for (name, t) in by {
            text.push_str(&row(&format!("{title} {name}"), t));
        }
    }
    if let Some(i) = &report.inherited {
        text.push_str(&format!(
            "\ninherited from the parent (not counted above): {} input, {} output tokens in {} attempts\n",
            i.input_tokens, i.output_tokens, i.attempts
        ));
    }
    print(&text)?;
    Ok(0)
}

/// `agentmesh cost`: what the calls cost, a line per node and model.
pub fn cost(log: &Path, as_json: bool) -> Result<u8, Error> {
    let report = agentmesh_core::usage_report(log)?;
    let total_usd = report.total.micro_usd;
    if as_json {
        let v = serde_json::json!({
            "runId": report.run_id,
            "lines": report.lines,
            "total": report.total,
            "inherited": report.inherited,
        });
        print(&format!(
            "{}
",
            to_json(&v)?
        ))?;
        return Ok(0);
    }
    let usd = |m: Option<u64>| m.map_or_else(|| "—".to_owned(), |m| m.to_string());
    let share = |m: Option<u64>| match (m, total_usd) {
        (Some(m), Some(t)) if t > 0 => format!("{:.1}%", m as f64 * 100.0 / t as f64),
        _ => "—".to_owned(),
    };
    let mut text = format!("run          {}\n\n", report.run_id);
    text.push_str(&format!(
        "{:<16} {:<16} {:<24} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>12} {:>7}\n",
        "node",
        "agent",
        "model",
        "calls",
        "refused",
        "in",
        "out",
        "cached",
        "reasoning",
        "µUSD",
        "share"
    ));
    let line = |node: &str, name: &str, model: &str, t: &agentmesh_core::UsageTotals| {
        format!(
            "{node:<16} {name:<16} {model:<24} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>12} {:>7}\n",
            t.calls,
            t.denied,
            t.input_tokens,
            t.output_tokens,
            t.cached_input_tokens,
            t.reasoning_tokens,
            usd(t.micro_usd),
            share(t.micro_usd)
        )
    };
    for l in &report.lines {
        text.push_str(&line(
            &l.node,
            &l.name,
            l.model.as_deref().unwrap_or("(tool)"),
            &l.spent,
        ));
    }
    text.push_str(&line("total", "", "", &report.total));
    if report.total.micro_usd.is_none() {
        text.push_str("\nthis run does not account for spend (no budget, no prices): micro-USD are not recorded\n");
    }
    if report.total.denied > 0 {
        text.push_str(&format!(
            "\n{} call(s) refused by a budget before they were sent\n",
            report.total.denied
        ));
    }
    if let Some(i) = &report.inherited {
        text.push_str(&format!(
            "\ninherited from the parent (not counted above): {} calls, {} µUSD\n",
            i.calls,
            usd(i.micro_usd)
        ));
    }
    print(&text)?;
    Ok(0)
}

/// `agentmesh canonical`: the canonical log, byte for byte.
pub fn canonical(log: &Path) -> Result<u8, Error> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    canonical_log(log, &mut out)?;
    out.flush()
        .map_err(|e| Error::new(ErrorKind::Io, format!("writing to stdout: {e}")))?;
    Ok(0)
}

/// `agentmesh replay`.
pub fn replay(
    log: &Path,
    workflow: Option<&Path>,
    policy: Option<&Path>,
    reevaluate: bool,
) -> Result<u8, Error> {
    let workflow = workflow.map(Workflow::from_file).transpose()?;
    let policy = policy
        .map(agentmesh_core::policy::Policy::from_path)
        .transpose()?;
    // Replay feeds recorded verdicts; a policy given is checked to be the run's, or (asked to
    // re-evaluate) judges the log afterwards.
    if let (Some(p), false) = (&policy, reevaluate) {
        agentmesh_core::policy::check_run_policy(&agentmesh_core::read_header(log)?, p)?;
    }
    let report = replay_log(log, workflow.as_ref())?;
    let mut text = format!(
        "replay       equal: {} events re-driven, no agent called\n",
        report.events
    );
    text.push_str(&format!("run          {}\n", report.run_id));
    text.push_str(&format!(
        "workflow     {}\n",
        match (&workflow, report.workflow_changed) {
            (None, _) => "the one recorded in the log",
            (Some(_), false) => "given, identical to the recorded one",
            (Some(_), true) => "given, differs from the recorded one but decides the same events",
        }
    ));
    let o = &report.outcome;
    text.push_str(&format!("status       {}\n", o.status.as_str()));
    if let Some(output) = &o.output {
        text.push_str(&format!("output       {output}\n"));
    }
    if let Some(e) = &o.error {
        text.push_str(&format!("error        {}\n", timeline::run_error(e)));
    }
    if let (Some(p), true) = (&policy, reevaluate) {
        let report = agentmesh_core::policy::check_policy(p, &[log])?;
        text.push('\n');
        text.push_str(&report.render());
        print(&text)?;
        return Ok(u8::from(report.changes() > 0));
    }
    print(&text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn assignments_parse_json_and_bare_approvals() {
        let yes = json!({"approved": true});
        let m = parse_assignments(
            "--approve",
            &strings(&["a", r#"b={"approved":false}"#]),
            Some(&yes),
        )
        .unwrap();
        assert_eq!(m["a"], yes);
        assert_eq!(m["b"], json!({"approved": false}));
    }

    #[test]
    fn assignments_reject_bad_input_with_invalid_argument() {
        for args in [
            strings(&["a"]),
            strings(&["a={"]),
            strings(&["=1"]),
            strings(&["a=1", "a=2"]),
        ] {
            let e = parse_assignments("--set", &args, None).unwrap_err();
            assert_eq!(e.code(), "INVALID_ARGUMENT", "{args:?}: {e}");
        }
    }
}
