//! The one check every host makes before it drives a workflow: does it have an agent for
//! every agent name and a tool for every tool name? One wording for Rust, Python and Node,
//! naming what is missing, the likely reason (a typo, or registered as the other kind) and
//! what is registered.

use crate::error::{edit_distance, Error, ErrorKind, Result};
use crate::model::workflow::Workflow;

/// The registered name a missing `name` is most likely a typo of: equal ignoring case, or
/// at most a third of its characters (at least one) away; ties go to the first in order.
fn nearest<'a>(name: &str, registered: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    registered
        .iter()
        .map(|r| {
            let d = if r.to_lowercase() == lower {
                0
            } else {
                edit_distance(name, r)
            };
            (d, *r)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, r)| r)
}

fn listed(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Workflow {
    /// Check that `agents` and `tools` (the names a host registered) cover every agent and
    /// tool name this workflow uses.
    ///
    /// Errors: `UNKNOWN_AGENT`, e.g. "workflow 'brief' uses agent 'planer' (did you mean
    /// 'planner'?), tool 'save' (registered as an agent, not a tool), not registered with
    /// this mesh (registered agents: 'planner', 'save'; tools: none)".
    pub fn check_registered(&self, agents: &[&str], tools: &[&str]) -> Result<()> {
        let mut agents = agents.to_vec();
        let mut tools = tools.to_vec();
        agents.sort_unstable();
        agents.dedup();
        tools.sort_unstable();
        tools.dedup();
        let mut missing = Vec::new();
        for (kind, used, registered, other, other_kind) in [
            ("agent", self.agent_names(), &agents, &tools, "a tool"),
            ("tool", self.tool_names(), &tools, &agents, "an agent"),
        ] {
            for name in used {
                if registered.binary_search(&name).is_ok() {
                    continue;
                }
                let hint = if other.binary_search(&name).is_ok() {
                    format!(
                        " (registered as {other_kind}, not {} {kind})",
                        article(kind)
                    )
                } else {
                    nearest(name, registered)
                        .map(|n| format!(" (did you mean '{n}'?)"))
                        .unwrap_or_default()
                };
                missing.push(format!("{kind} '{name}'{hint}"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::UnknownAgent,
            format!(
                "workflow '{}' uses {}, not registered with this mesh (registered agents: {}; tools: {})",
                self.name(),
                missing.join(", "),
                listed(&agents),
                listed(&tools)
            ),
        ))
    }
}

fn article(kind: &str) -> &'static str {
    if kind == "agent" {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wf() -> Workflow {
        Workflow::from_value(json!({"name": "typos", "nodes": [
            {"id": "a", "type": "agent", "agent": "Writer"},
            {"id": "b", "type": "agent", "agent": "planer"},
            {"id": "c", "type": "agent", "agent": "unrelated"},
            {"id": "d", "type": "tool", "tool": "sav"},
            {"id": "e", "type": "tool", "tool": "search"}]}))
        .unwrap()
    }

    #[test]
    fn names_what_is_missing_why_and_what_is_registered() {
        let e = wf()
            .check_registered(&["writer", "planner", "search"], &["save"])
            .unwrap_err();
        assert_eq!(e.code(), "UNKNOWN_AGENT");
        assert_eq!(
            e.message(),
            "workflow 'typos' uses agent 'Writer' (did you mean 'writer'?), agent 'planer' (did you mean 'planner'?), agent 'unrelated', tool 'sav' (did you mean 'save'?), tool 'search' (registered as an agent, not a tool), not registered with this mesh (registered agents: 'planner', 'search', 'writer'; tools: 'save')"
        );
        let all = ["Writer", "planer", "unrelated"];
        assert!(wf().check_registered(&all, &["sav", "search"]).is_ok());
        let none = wf().check_registered(&[], &[]).unwrap_err();
        assert!(
            none.message()
                .ends_with("(registered agents: none; tools: none)"),
            "{none}"
        );
    }

    #[test]
    fn a_typo_is_a_third_of_the_name_at_most() {
        assert_eq!(nearest("planer", &["planner", "writer"]), Some("planner"));
        assert_eq!(nearest("zzz", &["planner"]), None);
        assert_eq!(nearest("sav", &["save", "say"]), Some("save"));
    }
}
