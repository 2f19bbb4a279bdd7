//! `agentmesh runs DIR [--json]`: the runs whose logs are in a directory, one line each.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use agentmesh_core::{read_log, Error, ErrorKind};
use serde::Serialize;

use crate::commands::{print, to_json};
use crate::progress::{Progress, Tokens};
use crate::status::{self, RunVerdict, State};

/// One log of the directory: its run, or the error that kept it from being read.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    file: String,
    #[serde(flatten)]
    run: Option<RunLine>,
    /// `[CODE] message` of a log that could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RunLine {
    run_id: String,
    #[serde(flatten)]
    verdict: RunVerdict,
    steps: u64,
    /// Unix ms of the last event written.
    last_event_at: Option<u64>,
    /// Tokens this run spent (a fork's copied events excluded).
    usage: Tokens,
    host: Option<String>,
    /// The parent of a fork: `{"runId", "seq"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<serde_json::Value>,
}

fn line_of(path: &Path) -> Result<RunLine, Error> {
    let (header, events) = read_log(path)?;
    let progress = Progress::of(&header, &events);
    Ok(RunLine {
        verdict: status::assess(path, &progress)?,
        run_id: header.run_id.clone(),
        steps: progress.step,
        last_event_at: progress.last_at,
        usage: progress.tokens,
        host: header.host().map(str::to_owned),
        parent: header
            .parent
            .as_ref()
            .map(|p| serde_json::json!({"runId": p.run_id, "seq": p.seq})),
    })
}

/// `*.jsonl` files directly in `dir`, sorted by name.
fn logs_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io =
        |e: std::io::Error| Error::new(ErrorKind::Io, format!("reading {}: {e}", dir.display()));
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|x| x == "jsonl") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// `2026-12-02T05:46:09Z` for Unix milliseconds (UTC; proleptic Gregorian calendar).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn short_status(v: &RunVerdict) -> String {
    match v.status {
        State::Waiting => format!("waiting: {}", v.waiting_for.join(", ")),
        State::Running | State::Crashed => {
            format!("{} ({} in flight)", v.status.as_str(), v.in_flight.len())
        }
        s => s.as_str().to_owned(),
    }
}

fn render(listed: &[Listed]) -> String {
    let rows: Vec<[String; 7]> = listed
        .iter()
        .filter_map(|l| {
            let r = l.run.as_ref()?;
            Some([
                l.file.clone(),
                r.run_id.clone(),
                short_status(&r.verdict),
                r.steps.to_string(),
                r.last_event_at.map(utc).unwrap_or_else(|| "-".into()),
                format!("{} / {}", r.usage.input_tokens, r.usage.output_tokens),
                r.host.clone().unwrap_or_else(|| "-".into()),
            ])
        })
        .collect();
    let titles = [
        "log",
        "run",
        "status",
        "steps",
        "last event",
        "tokens in / out",
        "host",
    ];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Numbers right-aligned.
            if i == 3 || i == 5 {
                let _ = write!(s, "{cell:>w$}  ");
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        format!("{}\n", s.trim_end())
    };
    let mut out = line(titles);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    for l in listed {
        if let Some(e) = &l.error {
            let _ = writeln!(out, "{}  unreadable: {e}", l.file);
        }
    }
    let n = rows.len();
    let _ = writeln!(
        out,
        "{n} run{}{}",
        if n == 1 { "" } else { "s" },
        match listed.len() - n {
            0 => String::new(),
            bad => format!(", {bad} unreadable log{}", if bad == 1 { "" } else { "s" }),
        }
    );
    out
}

/// `agentmesh runs`.
pub fn runs(dir: &Path, as_json: bool) -> Result<u8, Error> {
    let listed: Vec<Listed> = logs_in(dir)?
        .into_iter()
        .map(|path| {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            match line_of(&path) {
                Ok(run) => Listed {
                    file,
                    run: Some(run),
                    error: None,
                },
                Err(e) => Listed {
                    file,
                    run: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    if as_json {
        print(&format!("{}\n", to_json(&listed)?))?;
    } else {
        print(&render(&listed))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_190_601_081), "2026-12-02T05:50:01Z");
    }
}
