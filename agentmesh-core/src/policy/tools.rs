//! Tool allowlists: roles name the tools they may call, agents take roles, the workflow's own
//! tool nodes have a list of their own. A policy denies every tool it does not allow. Names are
//! compared byte for byte in one canonical form ([`super::is_canonical_name`]): a requested name
//! outside that form is denied whatever the lists say.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::source::escape;
use super::spec::{is_canonical_name, is_id, ToolsSpec};
use crate::model::verdict::{Action, Verdict, TOOLS_RULE};

/// The compiled `tools` section.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    /// Agent name → the tools it may call (the union of its roles').
    agents: BTreeMap<String, BTreeSet<String>>,
    /// Tools tool nodes may run.
    workflow: BTreeSet<String>,
}

type SpecError = (String, String, String);

impl Allowlist {
    /// Compile and check a `tools` section (absent: nothing is allowed).
    ///
    /// Errors: (pointer, field, why) for a bad name or an unknown role.
    pub(crate) fn new(spec: Option<&ToolsSpec>) -> Result<Allowlist, SpecError> {
        let Some(spec) = spec else {
            return Ok(Allowlist::default());
        };
        let tool_name = |pointer: String, field: String, name: &str| -> Result<(), SpecError> {
            if is_canonical_name(name) {
                Ok(())
            } else {
                Err((
                    pointer,
                    field,
                    format!(
                        "\"{}\" is not a tool name in canonical form (1 to 128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit)",
                        name.escape_debug()
                    ),
                ))
            }
        };
        for (role, tools) in &spec.roles {
            if !is_id(role) {
                return Err((
                    format!("/tools/roles/{}", escape(role)),
                    format!("tools.roles.{role}"),
                    "a role name is 1 to 64 of A-Z a-z 0-9 _ . -".to_owned(),
                ));
            }
            for (i, t) in tools.iter().enumerate() {
                tool_name(
                    format!("/tools/roles/{}/{i}", escape(role)),
                    format!("tools.roles.{role}[{i}]"),
                    t,
                )?;
            }
        }
        let mut agents = BTreeMap::new();
        for (agent, roles) in &spec.agents {
            if agent.is_empty() || agent.len() > 256 || agent.chars().any(char::is_control) {
                return Err((
                    format!("/tools/agents/{}", escape(agent)),
                    format!("tools.agents.{agent}"),
                    "an agent name is 1 to 256 bytes without control characters".to_owned(),
                ));
            }
            let mut allowed = BTreeSet::new();
            for (i, role) in roles.iter().enumerate() {
                let Some(tools) = spec.roles.get(role) else {
                    return Err((
                        format!("/tools/agents/{}/{i}", escape(agent)),
                        format!("tools.agents.{agent}[{i}]"),
                        format!(
                            "unknown role '{}' (roles: {})",
                            role.escape_debug(),
                            spec.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                allowed.extend(tools.iter().cloned());
            }
            agents.insert(agent.clone(), allowed);
        }
        for (i, t) in spec.workflow.iter().enumerate() {
            tool_name(
                format!("/tools/workflow/{i}"),
                format!("tools.workflow[{i}]"),
                t,
            )?;
        }
        Ok(Allowlist {
            agents,
            workflow: spec.workflow.iter().cloned().collect(),
        })
    }

    /// The verdict denying agent `agent` the call of tool `tool`, or `None` when allowed.
    pub(crate) fn check_call(&self, agent: &str, tool: &str) -> Option<Verdict> {
        let allowed = is_canonical_name(tool)
            && self
                .agents
                .get(agent)
                .is_some_and(|tools| tools.contains(tool));
        (!allowed).then(|| Verdict {
            rule: TOOLS_RULE.into(),
            action: Action::Block,
            kind: "tool".into(),
            path: None,
            count: 1,
            digest: None,
            agent: Some(Arc::from(agent)),
        })
    }

    /// Whether a tool node may run `tool`.
    pub(crate) fn allows_node(&self, tool: &str) -> bool {
        is_canonical_name(tool) && self.workflow.contains(tool)
    }

    /// Whether agent `agent` may call tool `tool`.
    #[cfg(test)]
    pub(crate) fn allows(&self, agent: &str, tool: &str) -> bool {
        self.check_call(agent, tool).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Allowlist {
        let spec = ToolsSpec {
            roles: [("reader".to_owned(), vec!["read_file".to_owned()])].into(),
            agents: [("coder".to_owned(), vec!["reader".to_owned()])].into(),
            workflow: vec!["fetch".into()],
        };
        Allowlist::new(Some(&spec)).unwrap()
    }

    #[test]
    fn only_the_exact_canonical_name_is_allowed() {
        let l = list();
        assert!(l.allows("coder", "read_file"));
        for trick in [
            "Read_File",
            "read_file ",
            " read_file",
            "read_file\n",
            "fs/read_file",
            "r\u{435}ad_file", // Cyrillic е
            "read\u{200B}_file",
            "read_file\0",
            "ｒｅａｄ_ｆｉｌｅ",
        ] {
            assert!(!l.allows("coder", trick), "{trick:?} was allowed");
        }
        assert!(
            !l.allows("writer", "read_file"),
            "agents without a role get nothing"
        );
        assert!(!l.allows("Coder", "read_file"));
        assert!(l.allows_node("fetch"));
        assert!(!l.allows_node("read_file"));
        assert!(!Allowlist::default().allows("coder", "read_file"));
    }

    #[test]
    fn unknown_roles_and_bad_names_are_refused() {
        let spec = ToolsSpec {
            roles: [("reader".to_owned(), vec!["read file".to_owned()])].into(),
            ..ToolsSpec::default()
        };
        let (pointer, field, why) = Allowlist::new(Some(&spec)).unwrap_err();
        assert_eq!(pointer, "/tools/roles/reader/0");
        assert_eq!(field, "tools.roles.reader[0]");
        assert!(why.contains("canonical form"), "{why}");
        let spec = ToolsSpec {
            agents: [("coder".to_owned(), vec!["admin".to_owned()])].into(),
            ..ToolsSpec::default()
        };
        let (_, _, why) = Allowlist::new(Some(&spec)).unwrap_err();
        assert!(why.contains("unknown role 'admin'"), "{why}");
    }
}
