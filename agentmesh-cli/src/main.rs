//! `agentmesh`: run scripted workflows and work with their logs (verify, inspect, canonical,
//! replay, fork, resume), plus the project's demo.
//!
//! This file holds the arguments and the mapping from outcomes and error codes to exit codes;
//! the commands are in `commands.rs`, the text rendering in `timeline.rs`.

mod commands;
mod demo;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;

use agentmesh_core::{Error, ErrorDetail, ErrorKind, FsyncMode, RunStatus};
use clap::{Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0   success: run completed, log verified, replay equal
  1   the run failed or was cancelled
  2   usage error (bad or missing arguments)
  3   the run is waiting for a person (see `agentmesh resume`)
  4   invalid input: INVALID_WORKFLOW, INVALID_ARGUMENT, INVALID_OUTPUT, UNKNOWN_AGENT, RUN_EXISTS
  5   LOG_CORRUPT: the log is damaged before its tail
  6   NONDETERMINISM: the workflow disagrees with the log
  7   IO: a file could not be read or written
  8   LOG_TRUNCATED, LOG_HEAD_MISMATCH: the log does not match its anchor
  70  anything else (INTERNAL)

Errors are printed on stderr as `[CODE] message`.";

/// Deterministic, durable, replayable multi-agent workflows.
#[derive(Parser, Debug)]
#[command(name = "agentmesh", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Durability mode of the log file.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum Fsync {
    /// fsync after every append
    Always,
    /// group commit at step boundaries, always at run end and waits (the default)
    Batch,
    /// leave it to the operating system
    Never,
}

impl From<Fsync> for FsyncMode {
    fn from(f: Fsync) -> FsyncMode {
        match f {
            Fsync::Always => FsyncMode::Always,
            Fsync::Batch => FsyncMode::Batch,
            Fsync::Never => FsyncMode::Never,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a workflow whose agents and tools follow a script, and print its timeline.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Workflow definition (JSON).
        workflow: PathBuf,
        /// Script of agent and tool behaviours (JSON). An agent or tool with no matching
        /// behaviour returns {"node": ID, "visit": V, "attempt": A}.
        #[arg(long, value_name = "S")]
        script: Option<PathBuf>,
        /// Run input as JSON (overrides the script's `input`).
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// Seed (overrides the script's `seed`).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Run id (overrides the script's `runId`; derived from workflow, input and seed
        /// when neither gives one).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Directory for the log `<runId>.jsonl`.
        #[arg(long, value_name = "D", default_value = "agentmesh-logs")]
        log_dir: PathBuf,
        /// When the log is fsynced.
        #[arg(long, value_enum, default_value = "batch")]
        fsync: Fsync,
    },
    /// Verify a log's hash chain and structure; repair a damaged tail (unless --check or
    /// --anchor, which never write).
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The log file.
        log: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Only check: never write (works on a read-only file system and while the run's
        /// writer is running).
        #[arg(long)]
        check: bool,
        /// Also check the log against an anchor taken earlier (`agentmesh anchor`): a file,
        /// or the anchor's JSON text. Read-only.
        #[arg(long, value_name = "A")]
        anchor: Option<String>,
        /// Key of a keyed anchor: a file holding the key material (else the environment
        /// variable AGENTMESH_ANCHOR_KEY, when set).
        #[arg(long, value_name = "F")]
        key_file: Option<PathBuf>,
    },
    /// Print the head of a log as JSON (run id, records, bytes, head hash): store it elsewhere
    /// and `verify --anchor` detects records cut off or a recomputed chain. With a key
    /// (--key-file, or AGENTMESH_ANCHOR_KEY) the anchor carries a MAC. Read-only.
    #[command(after_help = EXIT_CODES)]
    Anchor {
        /// The log file.
        log: PathBuf,
        /// A file holding the key material (else AGENTMESH_ANCHOR_KEY, when set).
        #[arg(long, value_name = "F")]
        key_file: Option<PathBuf>,
    },
    /// Print a log's timeline, the run's state at one seq, or its state after every step.
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The log file.
        log: PathBuf,
        /// Show the state of the run as of this seq (time travel).
        #[arg(long, value_name = "SEQ", conflicts_with = "steps")]
        at: Option<u64>,
        /// Show the state after every step (the run's history, in one pass).
        #[arg(long)]
        steps: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the canonical log (sorted by seq, no wall-clock or chain fields), byte-exact.
    #[command(after_help = EXIT_CODES)]
    Canonical {
        /// The log file.
        log: PathBuf,
    },
    /// Re-drive a log without calling any agent and report the first divergence.
    #[command(after_help = EXIT_CODES)]
    Replay {
        /// The log file.
        log: PathBuf,
        /// Replay against this workflow instead of the one recorded in the log.
        #[arg(long, value_name = "W")]
        workflow: Option<PathBuf>,
    },
    /// Start a new run from a step end of an existing one, with some outputs replaced.
    #[command(after_help = EXIT_CODES)]
    Fork {
        /// The parent log.
        log: PathBuf,
        /// Fork after this seq (1 or the last completion of a step).
        #[arg(long, value_name = "SEQ")]
        at: u64,
        /// Replace a node's output before the run continues (repeatable).
        #[arg(long = "set", value_name = "NODE=JSON")]
        set: Vec<String>,
        /// Run id of the fork (derived from parent, seq and overrides when absent).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Directory for the fork's log (default: the parent log's directory).
        #[arg(long, value_name = "D")]
        log_dir: Option<PathBuf>,
        /// Script for the agents that run after the fork point.
        #[arg(long, value_name = "S")]
        script: Option<PathBuf>,
        /// When the log is fsynced.
        #[arg(long, value_enum, default_value = "batch")]
        fsync: Fsync,
    },
    /// Continue a run from its log: resolve human approvals, finish work a crash interrupted.
    #[command(after_help = EXIT_CODES)]
    Resume {
        /// The log file.
        log: PathBuf,
        /// Resolve a waiting human node; `NODE` alone means {"approved": true} (repeatable).
        #[arg(long, value_name = "NODE[=JSON]")]
        approve: Vec<String>,
        /// Script for the agents that run after resuming; its `approvals` answer waiting
        /// human nodes that no --approve names.
        #[arg(long, value_name = "S")]
        script: Option<PathBuf>,
        /// When the log is fsynced.
        #[arg(long, value_enum, default_value = "batch")]
        fsync: Fsync,
    },
    /// Run the demo: parallel agents, a flaky tool, a review loop and a human approval,
    /// then resume, verify and replay it.
    #[command(after_help = EXIT_CODES)]
    Demo {
        /// Base directory; the demo writes to a fresh `<D>/demo-<n>` inside it.
        #[arg(long, value_name = "D", default_value = "agentmesh-logs")]
        log_dir: PathBuf,
    },
}

/// Exit code for a run's status.
pub(crate) fn status_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Completed => 0,
        RunStatus::Failed | RunStatus::Cancelled => 1,
        RunStatus::Waiting => 3,
        // A driver returns only finished or waiting runs.
        RunStatus::Running => 70,
    }
}

/// Exit code for an error, by its stable code.
fn error_code(err: &Error) -> u8 {
    match err.kind() {
        ErrorKind::InvalidWorkflow
        | ErrorKind::InvalidArgument
        | ErrorKind::InvalidOutput
        | ErrorKind::UnknownAgent
        | ErrorKind::RunExists => 4,
        ErrorKind::LogCorrupt => 5,
        ErrorKind::LogTruncated | ErrorKind::LogHeadMismatch => 8,
        ErrorKind::Nondeterminism => 6,
        ErrorKind::Io => 7,
        ErrorKind::AgentFailed
        | ErrorKind::Timeout
        | ErrorKind::LimitExceeded
        | ErrorKind::Cancelled => 1,
        _ => 70,
    }
}

fn report_error(err: &Error) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            workflow,
            script,
            input,
            seed,
            run_id,
            log_dir,
            fsync,
        } => commands::run(commands::RunArgs {
            workflow,
            script,
            input,
            seed,
            run_id,
            log_dir,
            fsync: fsync.into(),
        }),
        Command::Verify {
            log,
            json,
            check,
            anchor,
            key_file,
        } => commands::verify(commands::VerifyArgs {
            log,
            json,
            check,
            anchor,
            key_file,
        }),
        Command::Anchor { log, key_file } => commands::anchor(&log, key_file.as_deref()),
        Command::Inspect {
            log,
            at,
            steps,
            json,
        } => commands::inspect(&log, at, steps, json),
        Command::Canonical { log } => commands::canonical(&log),
        Command::Replay { log, workflow } => commands::replay(&log, workflow.as_deref()),
        Command::Fork {
            log,
            at,
            set,
            run_id,
            log_dir,
            script,
            fsync,
        } => commands::fork(commands::ForkArgs {
            log,
            at,
            set,
            run_id,
            log_dir,
            script,
            fsync: fsync.into(),
        }),
        Command::Resume {
            log,
            approve,
            script,
            fsync,
        } => commands::resume(&log, &approve, script.as_deref(), fsync.into()),
        Command::Demo { log_dir } => demo::demo(&log_dir),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report_error(&err);
            ExitCode::from(error_code(&err))
        }
    }
}
