//! Messages that name the way out: what to do with a run whose log already exists, or that a
//! retry cannot help. Built on the error path only (they read the log once more).

use std::path::Path;

use crate::model::activation::RunStatus;
use crate::model::event::EventData;
use crate::replay::{self, Stop};

/// The last step end of the log at `path` (a fork point) before `seq` (any when `None`),
/// when it can be read.
pub(crate) fn last_fork_point(path: &Path, before: Option<u64>) -> Option<u64> {
    let last = crate::log::check_log(path).ok()?.last_seq;
    let rebuilt = replay::rebuild_file(path, None, Stop::At(last), None).ok()?;
    let limit = before.unwrap_or(u64::MAX);
    rebuilt
        .fork_points
        .iter()
        .rev()
        .find(|&&p| p < limit)
        .copied()
}

/// The step end to fork at to run `node` again from its first failed attempt of the run's
/// last failures (forking after a failure would only fail again).
fn fork_point_before_failure(path: &Path, node: &str) -> Option<u64> {
    let (_, events) = crate::log::read_log(path).ok()?;
    let mut first_failure = None;
    for e in events.iter().filter(|e| e.node.as_deref() == Some(node)) {
        match &e.data {
            EventData::Failed(..) => {
                first_failure.get_or_insert(e.seq);
            }
            EventData::Completed(..) => first_failure = None,
            _ => {}
        }
    }
    last_fork_point(path, first_failure)
}

/// What to do with the run whose log is at `path`, by its status: "the run failed at node
/// 'x' (...): retry it, or fork it at seq N".
pub(crate) fn for_existing(path: &Path) -> String {
    let shown = path.display();
    let Ok(report) = replay::replay(path, None) else {
        return format!("{shown} already exists: choose another run id or log directory");
    };
    let o = report.outcome;
    let failed_node = o.error.as_ref().and_then(|e| e.node.clone());
    let fork = || match match &failed_node {
        Some(n) => fork_point_before_failure(path, n),
        None => last_fork_point(path, None),
    } {
        Some(seq) => format!("fork it at seq {seq} (or an earlier step end)"),
        None => "fork it at an earlier step end".to_owned(),
    };
    match o.status {
        RunStatus::Completed => format!(
            "{shown} already exists and its run completed, which is final: choose another run id, input or seed, or {}",
            fork()
        ),
        RunStatus::Failed => {
            let at = o
                .error
                .as_ref()
                .and_then(|e| e.node.as_deref())
                .map(|n| format!(" at node '{n}'"))
                .unwrap_or_default();
            let code = o.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
            format!(
                "{shown} already exists and its run failed{at} ({code}): retry it (`agentmesh retry`, `retry` in the libraries), or {}",
                fork()
            )
        }
        RunStatus::Cancelled => format!(
            "{shown} already exists and its run was cancelled: retry it (`agentmesh retry`, `retry` in the libraries), or choose another run id"
        ),
        RunStatus::Running | RunStatus::Waiting => format!(
            "{shown} already exists and its run is {}: resume it, or choose another run id or log directory",
            o.status.as_str()
        ),
    }
}
