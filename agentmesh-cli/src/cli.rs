//! The arguments of the `agentmesh` command and what each command calls.

use std::path::PathBuf;

use agentmesh_core::{Error, FsyncMode};
use clap::{Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES;
use crate::{commands, demo, export, follow, policy, resume, runs, show};

/// Deterministic, durable, replayable multi-agent workflows.
#[derive(Parser, Debug)]
#[command(name = "agentmesh", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A file format of `agentmesh export`.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum ExportFormat {
    /// Chrome/Perfetto trace JSON (chrome://tracing, ui.perfetto.dev)
    Chrome,
    /// one self-contained HTML timeline
    Html,
    /// the workflow DAG as a Mermaid flowchart, with the run's statuses
    Mermaid,
    /// the derived OpenTelemetry spans, one JSON object per line
    Spans,
}

impl From<ExportFormat> for agentmesh_telemetry::Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Chrome => agentmesh_telemetry::Format::Chrome,
            ExportFormat::Html => agentmesh_telemetry::Format::Html,
            ExportFormat::Mermaid => agentmesh_telemetry::Format::Mermaid,
            ExportFormat::Spans => agentmesh_telemetry::Format::Spans,
        }
    }
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
        /// Policy file (JSON or YAML) that judges the run (docs/policy.md); else the
        /// script's `policy`. A run goes on only under the policy it was started with.
        #[arg(long, value_name = "P")]
        policy: Option<PathBuf>,
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
    /// Print a log's timeline (step ends marked as fork points, outstanding activations as
    /// rows), the run's state at one seq, or its state after every step; or follow a live log.
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The log file.
        log: PathBuf,
        /// Show the state of the run as of this seq (time travel).
        #[arg(long, value_name = "SEQ", conflicts_with_all = ["steps", "follow"])]
        at: Option<u64>,
        /// Show the state after every step (the run's history, in one pass).
        #[arg(long, conflicts_with = "follow")]
        steps: bool,
        /// Print the timeline as events are appended, until the run finishes or waits for a
        /// person (or Ctrl-C). Read-only: works beside the process writing the log.
        #[arg(long)]
        follow: bool,
        /// Print JSON instead of text (with --follow: one JSON event per line).
        #[arg(long)]
        json: bool,
    },
    /// Print one visit of a node in full: its input (run input and the outputs of its `after`
    /// nodes), every attempt with its output or error, and overrides. Read-only.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The log file.
        log: PathBuf,
        /// The node id.
        node: String,
        /// Which visit (1-based; default: the latest).
        #[arg(long, value_name = "N")]
        visit: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the runs whose logs (`*.jsonl`) are in a directory: run id, status, steps, last
    /// event time, tokens spent, host. Unreadable logs are listed with their error.
    #[command(after_help = EXIT_CODES)]
    Runs {
        /// The directory.
        dir: PathBuf,
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
        /// Check that the run was recorded under this policy (refused otherwise, unless
        /// --reevaluate).
        #[arg(long, value_name = "P")]
        policy: Option<PathBuf>,
        /// With --policy: judge the log by that policy instead of refusing another one, and
        /// print what it would decide differently (as `agentmesh policy check`; exit 1 when
        /// something would change).
        #[arg(long, requires = "policy")]
        reevaluate: bool,
    },
    /// Start a new run from a step end of an existing one, with some outputs replaced. On a
    /// log a program hosts, only the nodes the script gives run (see `resume`).
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
        /// Continue under this workflow instead of the recorded one (the parent's events up
        /// to --at must replay equal under it).
        #[arg(long, value_name = "W")]
        workflow: Option<PathBuf>,
        /// When the log is fsynced.
        #[arg(long, value_enum, default_value = "batch")]
        fsync: Fsync,
        /// Policy file (JSON or YAML) that judges the run (docs/policy.md); else the
        /// script's `policy`. A run goes on only under the policy it was started with.
        #[arg(long, value_name = "P")]
        policy: Option<PathBuf>,
    },
    /// Continue a run from its log: resolve human approvals, finish work a crash interrupted.
    ///
    /// On a run the CLI started, agents follow the script (default outputs for the rest). On
    /// a run a program hosts (Python, Node, Rust), only the nodes the script gives run: the
    /// CLI records the approvals, runs what it may and stops where the program's agents and
    /// tools are needed (exit 9); that program then resumes the run.
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
        /// Policy file (JSON or YAML) that judges the run (docs/policy.md); else the
        /// script's `policy`. A run goes on only under the policy it was started with.
        #[arg(long, value_name = "P")]
        policy: Option<PathBuf>,
    },
    /// Retry a failed or cancelled run: `runReopened`, then the nodes that failed it (and the
    /// activations a cancel closed) run again with fresh attempts; finished work is kept. On
    /// a run a program hosts, only the nodes the script gives run (see `resume`).
    #[command(after_help = EXIT_CODES)]
    Retry {
        /// The log file.
        log: PathBuf,
        /// Script for the agents that run after the retry.
        #[arg(long, value_name = "S")]
        script: Option<PathBuf>,
        /// When the log is fsynced.
        #[arg(long, value_enum, default_value = "batch")]
        fsync: Fsync,
        /// Policy file (JSON or YAML) that judges the run (docs/policy.md); else the
        /// script's `policy`. A run goes on only under the policy it was started with.
        #[arg(long, value_name = "P")]
        policy: Option<PathBuf>,
    },
    /// What a run spent: tokens per run, node, agent, tool and model (a fork's events copied
    /// from its parent are not counted). Read-only.
    #[command(after_help = EXIT_CODES)]
    Usage {
        /// The log file.
        log: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What a run's calls cost: a line per node and model (calls, tokens in, out, cached and
    /// reasoning, micro-USD, share of the run's cost), then the run's total and any refused
    /// calls (a fork's inherited events are not counted). Read-only.
    #[command(after_help = EXIT_CODES)]
    Cost {
        /// The log file.
        log: PathBuf,
        /// Print the lines and totals as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Redact text read on stdin with a policy's redact and block rules (default: every
    /// built-in detector) and print it; with --json, one object {"text", "spans": [{"start",
    /// "end", "kind", "rule"}]} with character offsets into the input.
    #[command(after_help = EXIT_CODES)]
    Redact {
        /// Policy file (JSON or YAML); default: the built-in detectors, all redacting.
        #[arg(long, value_name = "P")]
        policy: Option<PathBuf>,
        /// Print one JSON object instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Turn a log (finished or still running) into a file a person can open, or send its
    /// spans to an OpenTelemetry collector with their original times (docs/telemetry.md):
    /// `--format chrome` (Chrome/Perfetto trace JSON), `html` (a self-contained timeline),
    /// `mermaid` (the workflow with the run's statuses), `spans` (the derived spans, one
    /// JSON object per line). Read-only.
    #[command(after_help = EXIT_CODES)]
    Export {
        /// The log file.
        log: PathBuf,
        /// What to write.
        #[arg(long, value_enum, required_unless_present = "otlp")]
        format: Option<ExportFormat>,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE", requires = "format")]
        output: Option<PathBuf>,
        /// Send the run's finished spans over OTLP/HTTP (protobuf) to this collector: a base
        /// URL (`http://127.0.0.1:4318`, `/v1/traces` is added) or a full traces URL. Headers
        /// and the service name come from the standard OTEL_* variables.
        #[arg(long, value_name = "URL")]
        otlp: Option<String>,
        /// With --otlp: put the recorded inputs and outputs on the spans
        /// (`gen_ai.input.messages`, `gen_ai.output.messages`, tool arguments and results), as
        /// the log holds them (redacted by the run's policy). Off by default.
        #[arg(long, requires = "otlp")]
        content: bool,
    },
    /// Policies: check a new one against recorded runs, or show one.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the demo: parallel agents, a flaky tool, a review loop and a human approval,
    /// then resume, verify and replay it.
    #[command(after_help = EXIT_CODES)]
    Demo {
        /// Base directory; the demo writes to a fresh `<D>/demo-<n>` inside it.
        #[arg(long, value_name = "D", default_value = "agentmesh-logs")]
        log_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Judge recorded runs by a policy and list every decision that would change: what it
    /// would now block, redact or warn about, what it would no longer, tools it would deny
    /// or allow. Exit 0 when nothing would change, 1 when something would. Read-only.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The policy file (JSON or YAML).
        policy: PathBuf,
        /// Logs to judge.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a policy (all of its checks), print its hash, rules and tool allowlists.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The policy file (JSON or YAML).
        policy: PathBuf,
        /// Print JSON: name, hash and the policy in canonical form.
        #[arg(long)]
        json: bool,
    },
}

/// Run the command `cli` names; the exit code of its outcome.
pub(crate) fn dispatch(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Run {
            workflow,
            script,
            input,
            seed,
            run_id,
            log_dir,
            fsync,
            policy,
        } => commands::run(commands::RunArgs {
            workflow,
            script,
            input,
            seed,
            run_id,
            log_dir,
            fsync: fsync.into(),
            policy,
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
            follow: true,
            json,
            ..
        } => follow::follow(&log, json),
        Command::Inspect {
            log,
            at,
            steps,
            json,
            ..
        } => commands::inspect(&log, at, steps, json),
        Command::Show {
            log,
            node,
            visit,
            json,
        } => show::show(&log, &node, visit, json),
        Command::Runs { dir, json } => runs::runs(&dir, json),
        Command::Canonical { log } => commands::canonical(&log),
        Command::Replay {
            log,
            workflow,
            policy,
            reevaluate,
        } => commands::replay(&log, workflow.as_deref(), policy.as_deref(), reevaluate),
        Command::Fork {
            log,
            at,
            set,
            run_id,
            log_dir,
            script,
            workflow,
            fsync,
            policy,
        } => resume::fork(resume::ForkArgs {
            log,
            at,
            set,
            run_id,
            log_dir,
            script,
            workflow,
            fsync: fsync.into(),
            policy,
        }),
        Command::Resume {
            log,
            approve,
            script,
            fsync,
            policy,
        } => resume::resume(resume::ResumeArgs {
            log,
            approve,
            script,
            fsync: fsync.into(),
            policy,
        }),
        Command::Retry {
            log,
            script,
            fsync,
            policy,
        } => resume::retry(resume::RetryArgs {
            log,
            script,
            fsync: fsync.into(),
            policy,
        }),
        Command::Usage { log, json } => commands::usage(&log, json),
        Command::Cost { log, json } => commands::cost(&log, json),
        Command::Redact { policy, json } => policy::redact(policy.as_deref(), json),
        Command::Policy(PolicyCommand::Check { policy, logs, json }) => {
            policy::check(&policy, &logs, json)
        }
        Command::Policy(PolicyCommand::Show { policy, json }) => policy::show(&policy, json),
        Command::Demo { log_dir } => demo::demo(&log_dir),
        Command::Export {
            log,
            format,
            output,
            otlp,
            content,
        } => export::export(
            &log,
            format.map(Into::into),
            output.as_deref(),
            otlp.as_deref(),
            content,
        ),
    }
}
