//! `agentmesh redact` and `agentmesh policy check|show`: try a policy on text, and judge
//! recorded runs by a new policy before adopting it (docs/policy.md).

use std::io::Read;
use std::path::{Path, PathBuf};

use agentmesh_core::policy::{check_policy, Policy, Subject};
use agentmesh_core::{Error, ErrorKind};
use serde_json::json;

use crate::commands::print;

/// Longest text `agentmesh redact` reads from stdin.
const MAX_STDIN: u64 = 64 << 20;

/// A policy file, or the built-in detectors when none is given.
pub fn load(path: Option<&Path>) -> Result<Policy, Error> {
    match path {
        Some(p) => Policy::from_path(p),
        None => Ok(Policy::builtin()),
    }
}

/// `agentmesh redact`: stdin redacted on stdout, or one JSON object with the spans.
pub fn redact(policy: Option<&Path>, json: bool) -> Result<u8, Error> {
    let policy = load(policy)?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::new(ErrorKind::Io, format!("reading stdin: {e}")))?;
    if bytes.len() as u64 > MAX_STDIN {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("stdin holds more than {MAX_STDIN} bytes"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("stdin is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        )
    })?;
    let r = policy.redact(&text);
    if json {
        print(&format!(
            "{}\n",
            serde_json::to_string(&r).expect("serializes")
        ))?;
    } else {
        print(&r.text)?;
    }
    Ok(0)
}

/// `agentmesh policy check`: exit 0 when no decision would change, 1 when some would.
pub fn check(policy: &Path, logs: &[PathBuf], json: bool) -> Result<u8, Error> {
    let policy = Policy::from_path(policy)?;
    let report = check_policy(&policy, logs)?;
    if json {
        print(&format!("{}\n", report.to_json()))?;
    } else {
        print(&report.render())?;
    }
    Ok(u8::from(report.changes() > 0))
}

/// `agentmesh policy show`: a policy's hash and rules, checked.
pub fn show(policy: &Path, json: bool) -> Result<u8, Error> {
    let p = Policy::from_path(policy)?;
    if json {
        let out = json!({"name": p.name(), "hash": p.hash(), "policy": p.to_json()});
        print(&format!("{out}\n"))?;
        return Ok(0);
    }
    let spec = p.to_json();
    let mut text = format!(
        "policy       {} (version {})\nhash         {}\n",
        p.name(),
        p.version(),
        p.hash()
    );
    for r in spec["rules"].as_array().into_iter().flatten() {
        let matcher = ["detect", "regex", "keywords"]
            .iter()
            .find_map(|k| r.get(*k).map(|v| format!("{k} {v}")))
            .unwrap_or_default();
        let on = match r.get("on") {
            Some(v) => v.to_string(),
            None => "everywhere".to_owned(),
        };
        text.push_str(&format!(
            "rule         {:<20} {:<7} {matcher} on {on}\n",
            r["id"].as_str().unwrap_or(""),
            r["action"].as_str().unwrap_or(""),
        ));
    }
    let tools = &spec["tools"];
    if tools.is_null() {
        text.push_str("tools        none allowed (no tools section)\n");
    } else {
        for (agent, roles) in tools["agents"].as_object().into_iter().flatten() {
            text.push_str(&format!("agent        {agent}: roles {roles}\n"));
        }
        for (role, list) in tools["roles"].as_object().into_iter().flatten() {
            text.push_str(&format!("role         {role}: {list}\n"));
        }
        text.push_str(&format!("tool nodes   {}\n", tools["workflow"]));
    }
    let looks: Vec<&str> = Subject::ALL
        .iter()
        .filter(|s| p.looks_at(**s))
        .map(|s| s.as_str())
        .collect();
    text.push_str(&format!("judges       {}\n", looks.join(", ")));
    print(&text)?;
    Ok(0)
}
