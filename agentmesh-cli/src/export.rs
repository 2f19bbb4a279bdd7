//! `agentmesh export LOG`: pictures of a run, and its spans sent to a collector after the fact
//! (docs/telemetry.md).

use std::path::Path;

use agentmesh_core::{read_log, Error, ErrorKind};
use agentmesh_telemetry::{otlp, render, send_log, Format};

use crate::commands::print;

/// `agentmesh export`: exit 0 when everything asked for was written or sent.
pub fn export(
    log: &Path,
    format: Option<Format>,
    output: Option<&Path>,
    otlp_url: Option<&str>,
    content: bool,
) -> Result<u8, Error> {
    let (header, events) = read_log(log)?;
    if let Some(format) = format {
        let text = render(&header, &events, format)?;
        match output {
            Some(path) => std::fs::write(path, text.as_bytes()).map_err(|e| {
                Error::new(ErrorKind::Io, format!("writing {}: {e}", path.display()))
            })?,
            None => print(&text)?,
        }
    }
    if let Some(url) = otlp_url {
        // Open spans (a running log) are not sent: see send_log.
        let sent = send_log(log, &otlp::OtlpConfig::to(url), content)?;
        eprintln!(
            "sent {sent} spans of run {} (trace {}) to {}",
            header.run_id,
            agentmesh_core::trace_id_for(&header.run_id),
            otlp::traces_url(url)
        );
    }
    Ok(0)
}
