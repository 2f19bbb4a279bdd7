//! Conformance vectors shared by the Rust, Python and Node hosts, and the Rust runner.
//!
//! A vector is a directory `vectors/<name>/` holding `workflow.json`, `script.json` (agent
//! behaviour as data, the core [`Script`] format) and `expected.jsonl` (the canonical log the
//! run must produce, byte for byte). `README.md` next to this crate specifies the procedure
//! every host's runner follows; [`run_script`] is that procedure for the Rust driver.
//!
//! Only the Rust runner (`tests/rust_runner.rs`) writes `expected.jsonl`, and only when
//! [`BLESS_ENV`] is `1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::{
    canonical_log, Error, ErrorKind, FsyncMode, Mesh, Result, RunResult, RunStatus, Script,
    Workflow,
};
use serde_json::Value;

/// Set to `1` to make the Rust runner rewrite every `expected.jsonl`.
pub const BLESS_ENV: &str = "AGENTMESH_BLESS";

/// Scripted delays in `1..PERTURB_BELOW_MS` are mirrored by [`perturbed`]; longer ones (used to
/// outlast a `timeoutMs`) are left alone.
pub const PERTURB_BELOW_MS: u64 = 100;

/// One vector directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    /// Directory name, which says what the vector proves.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
}

impl Vector {
    /// `workflow.json`.
    pub fn workflow_path(&self) -> PathBuf {
        self.dir.join("workflow.json")
    }

    /// `script.json`.
    pub fn script_path(&self) -> PathBuf {
        self.dir.join("script.json")
    }

    /// `expected.jsonl`.
    pub fn expected_path(&self) -> PathBuf {
        self.dir.join("expected.jsonl")
    }

    /// Parse the workflow and the script.
    ///
    /// Errors: `IO`, `INVALID_WORKFLOW`, `INVALID_ARGUMENT` (bad script).
    pub fn load(&self) -> Result<(Workflow, Script)> {
        Ok((
            Workflow::from_file(self.workflow_path())?,
            Script::from_file(self.script_path())?,
        ))
    }
}

/// The `vectors/` directory of this crate.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Every vector under `dir` (each subdirectory is one), sorted by name.
///
/// Errors: `IO`; `INVALID_ARGUMENT` for a directory name that is not UTF-8.
pub fn list_vectors(dir: impl AsRef<Path>) -> Result<Vec<Vector>> {
    let dir = dir.as_ref();
    let io = |e| Error::new(ErrorKind::Io, format!("listing {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_dir() {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|n| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("vector directory name {n:?} is not UTF-8"),
            )
        })?;
        out.push(Vector {
            name,
            dir: entry.path(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What running a vector produced.
#[derive(Debug, Clone)]
pub struct VectorRun {
    /// The canonical log of the run, as `canonical_log` writes it.
    pub canonical: Vec<u8>,
    /// The log file.
    pub log_path: PathBuf,
    /// The result of the last start or resume.
    pub result: RunResult,
    /// How many times the run was resumed with approvals.
    pub resumes: usize,
}

fn scripted_mesh(script: &Arc<Script>, workflow: &Workflow, log_dir: &Path) -> Mesh {
    // The canonical log does not depend on durability; skipping fsync keeps the suite fast.
    let mut mesh = Mesh::new()
        .with_log_dir(log_dir)
        .with_fsync(FsyncMode::Never);
    if let Some(prices) = script
        .price_table()
        .expect("a vector's price table is valid")
    {
        mesh = mesh.with_prices(prices);
    }
    if let Some(policy) = script.policy().expect("a vector's policy is valid") {
        mesh = mesh.with_policy(policy);
    }
    script.register(&mut mesh, workflow);
    mesh
}

/// Run a vector's workflow and script with the Rust driver, logging into `log_dir` (which
/// must not already hold a log with the script's run id), and return its canonical log.
///
/// The run starts with the script's `input`, `seed` and `runId`. While it is `waiting`, the
/// script's approvals for the waiting human nodes are applied by [`Mesh::resume`] on a new
/// mesh, as another process would; it stops when the run finishes or no approval applies.
///
/// Errors: those of [`Mesh::run`] and [`Mesh::resume`], and of reading the canonical log.
pub fn run_script(workflow: &Workflow, script: &Script, log_dir: &Path) -> Result<VectorRun> {
    let script = Arc::new(script.clone());
    let options = script.run_options()?;
    let mut result = scripted_mesh(&script, workflow, log_dir).run(workflow, options)?;
    let log_path = result
        .log_path
        .clone()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "a file-backed run has no log path"))?;
    let mut resumes = 0;
    let mut retries = 0;
    loop {
        match result.status {
            RunStatus::Waiting => {
                let approvals: BTreeMap<String, Value> = result
                    .waiting
                    .iter()
                    .filter_map(|a| {
                        let output = script.approvals.get(&*a.node)?;
                        Some((a.node.to_string(), output.clone()))
                    })
                    .collect();
                if approvals.is_empty() {
                    break;
                }
                result = scripted_mesh(&script, workflow, log_dir).resume(&log_path, approvals)?;
                resumes += 1;
            }
            RunStatus::Failed | RunStatus::Cancelled if retries < script.retries => {
                result = scripted_mesh(&script, workflow, log_dir).retry(&log_path)?;
                retries += 1;
            }
            _ => break,
        }
    }
    let mut canonical = Vec::new();
    canonical_log(&log_path, &mut canonical)?;
    Ok(VectorRun {
        canonical,
        log_path,
        result,
        resumes,
    })
}

/// [`run_script`] for a vector directory.
///
/// Errors: those of [`Vector::load`] and [`run_script`].
pub fn run_vector(vector: &Vector, log_dir: &Path) -> Result<VectorRun> {
    let (workflow, script) = vector.load()?;
    run_script(&workflow, &script, log_dir)
}

/// The script with its short delays mirrored (`d` in `1..100` becomes `100 - d`), so parallel
/// agents finish in a different order. Delays of 0 stay 0 and delays of 100 ms or more stay as
/// they are, so a delay meant to outlast a `timeoutMs` still does.
pub fn perturbed(script: &Script) -> Script {
    let mut s = script.clone();
    for b in s.agents.values_mut().flatten() {
        if (1..PERTURB_BELOW_MS).contains(&b.delay_ms) {
            b.delay_ms = PERTURB_BELOW_MS - b.delay_ms;
        }
    }
    s
}

/// The first line where two logs differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDiff {
    /// 1-based line number.
    pub line: usize,
    /// 0-based byte column of the first difference within the line.
    pub column: usize,
    /// The expected line (`None` past the end of the expected log).
    pub expected: Option<String>,
    /// The actual line (`None` past the end of the actual log).
    pub actual: Option<String>,
}

/// The first differing line of two logs, or `None` when they are byte for byte equal.
pub fn first_difference(expected: &[u8], actual: &[u8]) -> Option<LineDiff> {
    if expected == actual {
        return None;
    }
    let mut e = expected.split_inclusive(|&b| b == b'\n');
    let mut a = actual.split_inclusive(|&b| b == b'\n');
    let mut line = 0;
    loop {
        line += 1;
        let (x, y) = (e.next(), a.next());
        if x == y {
            // Equal logs were handled above, so both cannot end here.
            continue;
        }
        let column = match (x, y) {
            (Some(x), Some(y)) => x.iter().zip(y).take_while(|(p, q)| p == q).count(),
            _ => 0,
        };
        let text = |l: Option<&[u8]>| l.map(|l| String::from_utf8_lossy(l).into_owned());
        return Some(LineDiff {
            line,
            column,
            expected: text(x),
            actual: text(y),
        });
    }
}

/// A line for a failure message: at most `width` bytes around `column`, marked when cut.
pub fn excerpt(line: &str, column: usize, width: usize) -> String {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.len() <= width {
        return line.to_owned();
    }
    let mut start = column.saturating_sub(width / 2).min(line.len() - width);
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + width).min(line.len());
    while !line.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "{}{}{} ({} bytes)",
        if start > 0 { "…" } else { "" },
        &line[start..end],
        if end < line.len() { "…" } else { "" },
        line.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_core::Behavior;
    use serde_json::json;

    #[test]
    fn perturbed_mirrors_only_short_delays() {
        let mut script = Script::default();
        let delays = [0, 1, 10, 99, 100, 1500];
        script.agents.insert(
            "a".into(),
            delays
                .iter()
                .map(|&d| Behavior {
                    delay_ms: d,
                    ..Behavior::default()
                })
                .collect(),
        );
        let p = perturbed(&script);
        let got: Vec<u64> = p.agents["a"].iter().map(|b| b.delay_ms).collect();
        assert_eq!(got, vec![0, 99, 90, 1, 100, 1500]);
    }

    #[test]
    fn first_difference_reports_line_and_column() {
        assert_eq!(first_difference(b"a\nb\n", b"a\nb\n"), None);
        assert_eq!(
            first_difference(b"a\nbcd\n", b"a\nbxd\n"),
            Some(LineDiff {
                line: 2,
                column: 1,
                expected: Some("bcd\n".into()),
                actual: Some("bxd\n".into()),
            })
        );
        let d = first_difference(b"a\n", b"a\nextra\n").unwrap();
        assert_eq!(
            (d.line, d.expected, d.actual),
            (2, None, Some("extra\n".into()))
        );
        // A missing final newline is a difference too.
        let d = first_difference(b"a\n", b"a").unwrap();
        assert_eq!((d.line, d.column), (1, 1));
    }

    #[test]
    fn excerpt_cuts_long_lines_around_the_difference() {
        assert_eq!(excerpt("short\n", 2, 10), "short");
        let long = format!("{}X{}", "a".repeat(50), "b".repeat(50));
        let e = excerpt(&long, 50, 10);
        assert!(
            e.starts_with('…') && e.contains('X') && e.ends_with("(101 bytes)"),
            "{e}"
        );
        // Never splits a multi-byte character.
        let wide = "é".repeat(40);
        assert!(excerpt(&wide, 41, 9).contains('é'));
    }

    #[test]
    fn list_vectors_is_sorted_and_ignores_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for d in ["b", "a", "c_1"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("README.md"), "x").unwrap();
        let names: Vec<String> = list_vectors(dir)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, vec!["a", "b", "c_1"]);
        let err = list_vectors(dir.join("missing")).unwrap_err();
        assert_eq!(err.code(), "IO");
    }

    #[test]
    fn resume_stops_when_no_approval_applies() {
        let dir = tempfile::tempdir().unwrap();
        let wf = Workflow::from_value(json!({"name": "two-gates", "nodes": [
            {"id": "first", "type": "human"},
            {"id": "second", "type": "human", "after": ["first"]},
            {"id": "done", "type": "agent", "agent": "a", "after": ["second"]}
        ]}))
        .unwrap();
        let script: Script = serde_json::from_value(json!({
            "runId": "gates", "approvals": {"first": {"ok": true}}
        }))
        .unwrap();
        let run = run_script(&wf, &script, dir.path()).unwrap();
        assert_eq!(run.resumes, 1);
        assert_eq!(run.result.status, RunStatus::Waiting);
        assert_eq!(&*run.result.waiting[0].node, "second");
        let text = String::from_utf8(run.canonical).unwrap();
        assert!(text.contains(r#""type":"humanResolved""#), "{text}");
    }
}
