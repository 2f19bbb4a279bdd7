//! Exit codes: from a run's outcome and from an error's stable code, and how errors are shown.

use agentmesh_core::{Error, ErrorDetail, ErrorKind, RunStatus};

use crate::report::Driven;

/// The exit-code table shown by `--help` (and in docs/cli.md).
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success: run completed, log verified, replay equal
  1   the run failed or was cancelled (POLICY_DENIED too); `policy check`: a decision
      would change
  2   usage error (bad or missing arguments)
  3   the run is waiting for a person (see `agentmesh resume`)
  4   invalid input: INVALID_WORKFLOW, INVALID_ARGUMENT, INVALID_OUTPUT, UNKNOWN_AGENT,
      RUN_EXISTS, POLICY_INVALID
  5   LOG_CORRUPT: the log is damaged before its tail
  6   NONDETERMINISM: the workflow disagrees with the log
  7   IO: a file could not be read or written
  8   LOG_TRUNCATED, LOG_HEAD_MISMATCH: the log does not match its anchor
  9   the run needs its host program: its next agents or tools are a program's, which
      should resume it (e.g. mesh.resume(LOG) in Python or Node); the CLI never invents them
  70  anything else (INTERNAL)

Errors are printed on stderr as `[CODE] message`.";

/// Exit code of a run left to its host program.
pub const NEEDS_HOST: u8 = 9;

/// Exit code for a run's status.
pub fn of_status(status: RunStatus) -> u8 {
    match status {
        RunStatus::Completed => 0,
        RunStatus::Failed | RunStatus::Cancelled => 1,
        RunStatus::Waiting => 3,
        // A driver returns only finished or waiting runs, or runs left to their host.
        RunStatus::Running => 70,
    }
}

/// Exit code for the outcome of a run the CLI drove.
pub fn of_driven(r: &Driven) -> u8 {
    if r.needs_host() {
        NEEDS_HOST
    } else {
        of_status(r.status)
    }
}

/// Exit code for an error, by its stable code.
pub fn of_error(err: &Error) -> u8 {
    match err.kind() {
        ErrorKind::InvalidWorkflow
        | ErrorKind::InvalidArgument
        | ErrorKind::InvalidOutput
        | ErrorKind::UnknownAgent
        | ErrorKind::PolicyInvalid
        | ErrorKind::RunExists => 4,
        ErrorKind::LogCorrupt => 5,
        ErrorKind::LogTruncated | ErrorKind::LogHeadMismatch => 8,
        ErrorKind::Nondeterminism => 6,
        ErrorKind::Io => 7,
        ErrorKind::AgentFailed
        | ErrorKind::Timeout
        | ErrorKind::LimitExceeded
        | ErrorKind::PolicyDenied
        | ErrorKind::Cancelled => 1,
        _ => 70,
    }
}

/// Print an error on stderr: `[CODE] message`, then its details one per line.
pub fn report_error(err: &Error) {
    eprintln!("{err}");
    match err.detail() {
        Some(ErrorDetail::Nondeterminism {
            seq,
            node,
            field,
            expected,
            actual,
        }) => {
            eprintln!("  seq       {seq}");
            eprintln!("  node      {}", node.as_deref().unwrap_or("-"));
            eprintln!("  field     {field}");
            eprintln!("  expected  {expected}");
            eprintln!("  actual    {actual}");
        }
        Some(ErrorDetail::LogCorrupt { offset }) => eprintln!("  offset    {offset}"),
        Some(ErrorDetail::Policy {
            rule,
            field,
            line,
            column,
        }) => {
            if let Some(r) = rule {
                eprintln!("  rule      {r}");
            }
            if let Some(f) = field {
                eprintln!("  field     {f}");
            }
            if let (Some(l), Some(c)) = (line, column) {
                eprintln!("  at        line {l} column {c}");
            }
        }
        Some(ErrorDetail::Anchor {
            field,
            expected,
            found,
        }) => {
            eprintln!("  field     {field}");
            eprintln!("  expected  {expected}");
            eprintln!("  found     {found}");
        }
        _ => {}
    }
}
