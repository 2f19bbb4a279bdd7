//! `agentmesh inspect --follow LOG`: print a live log's timeline as its events are appended,
//! until the run finishes or waits for a person (or Ctrl-C).
//!
//! Read-only and lock-free: it polls the file's length and re-reads the log when it grew, so
//! it never gets in the way of the process writing it (any language). Events are printed in
//! the order they become visible: within a step, completions appear as they arrive, each
//! with the seq reserved for it.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use agentmesh_core::{read_log, Error, ErrorKind, EventData};

use crate::commands::{print, to_json};
use crate::exit;
use crate::progress::Progress;
use crate::timeline::{self, header_line, Layout, Values, FORK_LEGEND};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(200);

/// The file's length, or `None` while it does not exist.
fn length(log: &Path) -> Result<Option<u64>, Error> {
    match std::fs::metadata(log) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new(
            ErrorKind::Io,
            format!("reading {}: {e}", log.display()),
        )),
    }
}

/// `agentmesh inspect --follow`.
pub fn follow(log: &Path, as_json: bool) -> Result<u8, Error> {
    let mut printed: HashSet<u64> = HashSet::new();
    let mut layout: Option<Layout> = None;
    let mut seen: Option<u64> = None;
    let mut told_missing = false;
    loop {
        let len = length(log)?;
        if len.is_none() && !told_missing {
            eprintln!("waiting for {} to appear (Ctrl-C to stop)", log.display());
            told_missing = true;
        }
        // A log being created may be empty for a moment.
        if len.is_none_or(|l| l == 0) || len == seen {
            std::thread::sleep(POLL);
            continue;
        }
        seen = len;
        let (header, events) = read_log(log)?;
        let mut text = String::new();
        let layout = *layout.get_or_insert_with(|| {
            // Sized once from the workflow's node ids, so lines printed later line up.
            let ids: Vec<String> = match events.first().map(|e| &e.data) {
                Some(EventData::RunStarted(s)) => {
                    s.workflow.nodes.iter().map(|n| n.id.clone()).collect()
                }
                _ => Vec::new(),
            };
            let layout = Layout::new(9_999, ids.iter().map(String::as_str));
            if !as_json {
                text.push_str(&header_line(&header));
                text.push('\n');
                text.push_str(&layout.titles());
            }
            layout
        });
        for row in timeline::rows(
            &events,
            if as_json {
                Values::Full
            } else {
                Values::Preview
            },
        ) {
            if !printed.insert(row.seq) {
                continue;
            }
            if as_json {
                text.push_str(&to_json(&row)?);
                text.push('\n');
            } else {
                text.push_str(&layout.row(&row));
            }
        }
        let progress = Progress::of(&header, &events);
        let done = if let Some(status) = progress.finished {
            Some((exit::of_status(status), status.as_str().to_owned()))
        } else if progress.is_waiting() {
            let nodes: Vec<&str> = progress.waiting().map(|a| a.node.as_str()).collect();
            if !as_json {
                for p in progress.waiting() {
                    text.push_str(&layout.pending(p));
                }
            }
            Some((3, format!("waiting for a person ({})", nodes.join(", "))))
        } else {
            None
        };
        if let (Some((_, status)), false) = (&done, as_json) {
            text.push_str(FORK_LEGEND);
            text.push_str(&format!("\nstatus       {status}\n"));
        }
        print(&text)?;
        if let Some((code, _)) = done {
            return Ok(code);
        }
        std::thread::sleep(POLL);
    }
}
