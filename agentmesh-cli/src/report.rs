//! Text of outcomes, states, histories and verify reports; [`Driven`], the outcome of a run
//! the CLI drove.
//!
//! Pure rendering: core values (and the CLI's verdicts) in, strings out.

use std::fmt::Write as _;
use std::path::PathBuf;

use agentmesh_core::{
    Activation, Error, LogHeader, Run, RunError, RunResult, RunState, RunStatus, VerifyReport,
};
use serde_json::Value;

use crate::status::RunVerdict;
use crate::timeline::{header_line, preview, run_error, shell_quote, PREVIEW_CHARS};

fn describe_human(a: &Activation) -> String {
    match &a.prompt {
        Some(p) => format!("{} (asks {})", a.node, Value::String(p.clone())),
        None => a.node.to_string(),
    }
}

/// The outcome of driving a run, as the commands print it (from a [`RunResult`] or straight
/// from a [`Run`] the CLI drove).
#[derive(Debug)]
pub struct Driven {
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<RunError>,
    /// Human activations waiting for a decision.
    pub waiting: Vec<Activation>,
    /// Agent and tool activations left for the host program (see `Mesh::stop_at_missing`).
    pub needs: Vec<Activation>,
    pub log_path: Option<PathBuf>,
    /// The fingerprint, or why it is unavailable.
    pub fingerprint: Result<String, Error>,
}

impl From<RunResult> for Driven {
    fn from(r: RunResult) -> Driven {
        Driven {
            fingerprint: r.fingerprint(),
            status: r.status,
            output: r.output,
            error: r.error,
            waiting: r.waiting,
            needs: r.needs,
            log_path: r.log_path,
        }
    }
}

impl Driven {
    /// The outcome of a run driven as far as its mesh could (its lock is released here).
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn of_run(run: Run) -> Result<Driven, Error> {
        RunResult::of_run(run).map(Driven::from)
    }

    /// Whether the run stopped where its host program's agents or tools are needed.
    pub fn needs_host(&self) -> bool {
        self.status == RunStatus::Running && !self.needs.is_empty()
    }
}

/// The outcome block printed after a run: status, output or error, log, fingerprint, and for a
/// waiting run the nodes and the exact command that approves them (`resume_cmd` is the
/// command up to the `--approve` flags); for a run left to its host program, what it needs.
pub fn render_outcome(r: &Driven, resume_cmd: Option<&str>) -> String {
    let mut out = String::new();
    if r.needs_host() {
        let _ = writeln!(
            out,
            "status       running (stopped: the next work is its host program's)"
        );
    } else {
        let _ = writeln!(out, "status       {}", r.status.as_str());
    }
    match r.status {
        RunStatus::Completed => {
            let output = r.output.clone().unwrap_or(Value::Null);
            let _ = writeln!(out, "output       {output}");
        }
        RunStatus::Waiting => {
            let nodes: Vec<String> = r.waiting.iter().map(describe_human).collect();
            let _ = writeln!(out, "waiting for  {}", nodes.join(", "));
        }
        _ => {}
    }
    for (i, a) in r.needs.iter().enumerate() {
        let label = if i == 0 { "needs" } else { "" };
        let _ = writeln!(
            out,
            "{label:<12} {}: {} {}",
            a.node,
            a.kind.as_str(),
            a.name
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error        {}", run_error(e));
    }
    if let Some(p) = &r.log_path {
        let _ = writeln!(out, "log          {}", p.display());
    }
    match &r.fingerprint {
        Ok(fp) => {
            let _ = writeln!(out, "fingerprint  {fp}");
        }
        Err(e) => {
            let _ = writeln!(out, "fingerprint  unavailable: {e}");
        }
    }
    if r.status == RunStatus::Waiting {
        if let Some(cmd) = resume_cmd {
            let mut line = cmd.to_owned();
            for a in &r.waiting {
                let _ = write!(line, " --approve {}", shell_quote(&a.node));
            }
            let _ = writeln!(out, "to approve:  {line}");
        }
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// The state of a run at one seq (`inspect --at`); `log` is named in the fork hint.
pub fn render_state(header: &LogHeader, log: &str, st: &RunState) -> String {
    let mut out = header_line(header);
    out.push('\n');
    let _ = writeln!(out, "state at seq {}", st.seq);
    let _ = writeln!(out, "status       {}", st.status.as_str());
    let _ = writeln!(out, "step         {}", st.step);
    if st.fork_point {
        let _ = writeln!(
            out,
            "fork point   yes, a step end: `agentmesh fork {} --at {} --set NODE=JSON` branches off here",
            shell_quote(log),
            st.seq
        );
    } else {
        let _ = writeln!(out, "fork point   no (not a step end)");
    }
    if st.completed.is_empty() {
        let _ = writeln!(out, "completed    -");
    } else {
        let width = st.completed.keys().map(|k| k.len()).max().unwrap_or(0);
        for (i, (node, output)) in st.completed.iter().enumerate() {
            let label = if i == 0 { "completed" } else { "" };
            let _ = writeln!(
                out,
                "{label:<12} {node:<width$}  {}",
                preview(output, PREVIEW_CHARS)
            );
        }
    }
    let _ = writeln!(out, "skipped      {}", list(&st.skipped));
    let _ = writeln!(out, "failed       {}", list(&st.failed));
    for (i, (node, p)) in st.maps.iter().enumerate() {
        let label = if i == 0 { "maps" } else { "" };
        let failed = if p.failed > 0 {
            format!(", {} failed", p.failed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{label:<12} {node}: {} of {} items done{failed}",
            p.done, p.items
        );
    }
    if st.pending.is_empty() {
        let _ = writeln!(out, "pending      -");
    } else {
        for (i, a) in st.pending.iter().enumerate() {
            let label = if i == 0 { "pending" } else { "" };
            let item = a
                .item
                .as_ref()
                .map_or_else(String::new, |it| format!(", item {}", it.index));
            let _ = writeln!(
                out,
                "{label:<12} #{} {} ({} {}, attempt {}, visit {}{item})",
                a.id,
                a.node,
                a.kind.as_str(),
                a.name,
                a.attempt,
                a.visit
            );
        }
    }
    let visits: Vec<String> = st.visits.iter().map(|(n, v)| format!("{n} {v}")).collect();
    let _ = writeln!(out, "visits       {}", list(&visits));
    out
}

/// The run's state after every step (`inspect --steps`): one line per state, with the nodes
/// whose output changed since the line before.
pub fn render_history(header: &LogHeader, log: &str, states: &[RunState]) -> String {
    let mut out = header_line(header);
    out.push('\n');
    let _ = writeln!(
        out,
        "{:>6}  {:>5}  {:<9}  {:>4}  changed / pending",
        "seq", "step", "status", "done"
    );
    let mut before: Option<&RunState> = None;
    for st in states {
        let changed: Vec<&str> = st
            .completed
            .iter()
            .filter(|(k, v)| before.and_then(|b| b.completed.get(*k)) != Some(*v))
            .map(|(k, _)| k.as_str())
            .collect();
        let pending: Vec<String> = st.pending.iter().map(|a| a.node.to_string()).collect();
        let mut what = String::new();
        if !changed.is_empty() {
            let _ = write!(what, "+{}", changed.join(" +"));
        }
        if !pending.is_empty() {
            if !what.is_empty() {
                what.push_str("  ");
            }
            let _ = write!(what, "waiting: {}", pending.join(", "));
        }
        let _ = writeln!(
            out,
            "{:>6}  {:>5}  {:<9}  {:>4}  {what}",
            st.seq,
            st.step,
            st.status.as_str(),
            st.completed.len()
        );
        before = Some(st);
    }
    let _ = writeln!(
        out,
        "\n{} states; `agentmesh inspect {} --at SEQ` shows one whole, `agentmesh fork` branches off at a step end",
        states.len(),
        shell_quote(log)
    );
    out
}

/// A verify report as text, with what the run is (`verdict`) and the program that hosts it.
pub fn render_verify(r: &VerifyReport, verdict: &RunVerdict, host: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run          {}", r.run_id);
    let _ = writeln!(out, "workflow     {}", r.workflow);
    let _ = writeln!(out, "format       version {}", r.version);
    let _ = writeln!(out, "events       {}", r.events);
    let _ = writeln!(out, "last seq     {}", r.last_seq);
    let holes: Vec<String> = r.holes.iter().map(u64::to_string).collect();
    let _ = writeln!(
        out,
        "holes        {}",
        if holes.is_empty() {
            "none".to_owned()
        } else {
            format!("{} (completions still outstanding)", holes.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "finished     {}",
        r.finished.as_deref().unwrap_or("no")
    );
    let _ = writeln!(out, "status       {}", verdict.summary);
    let _ = writeln!(
        out,
        "host         {}",
        host.unwrap_or("- (not recorded: a log of AgentMesh 0.2 or older)")
    );
    let _ = writeln!(out, "bytes        {}", r.bytes);
    match (&r.repaired, r.torn_at) {
        (Some(rep), _) if rep.newline_restored => {
            let _ = writeln!(
                out,
                "repaired     the last record's newline was {} at byte {}: written again",
                if rep.bytes > 0 { "damaged" } else { "missing" },
                rep.offset
            );
        }
        (Some(rep), _) => {
            let moved = rep
                .broken_path
                .as_ref()
                .map(|p| format!(" moved to {}", p.display()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "repaired     torn tail cut at byte {}: {} bytes{moved}",
                rep.offset, rep.bytes
            );
        }
        (None, Some(at)) => {
            let _ = writeln!(
                out,
                "tail         damaged from byte {at} (left as it is: read-only check)"
            );
        }
        (None, None) => {
            let _ = writeln!(out, "repaired     nothing to repair");
        }
    }
    let _ = writeln!(out, "ok           the log is intact");
    out
}
