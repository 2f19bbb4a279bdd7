//! Policies (docs/policy.md): data that decides, before a side effect, what a run may record,
//! send and pass on.
//!
//! A [`Policy`] is loaded all or nothing from a JSON or YAML file ([`source`] reads it
//! strictly, [`spec`] is its form). Its content rules ([`rules`]: built-in detectors,
//! regexes, keywords) judge values at fixed places of a run ([`Subject`]): block, redact or
//! warn. Its tool allowlist ([`tools`]) says which agent may call which tool, and denies
//! everything else. The run records the policy's hash in its log header and every verdict in
//! the record of the value it judged ([`crate::model::verdict`]), so a run resumes and replays
//! only under the policy it was written with, and a new policy can be checked against old runs
//! ([`regress`], `agentmesh policy check`).

pub mod detect;
mod normalize;
mod redact;
pub mod regress;
mod rules;
mod source;
pub mod spec;
mod tools;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

pub use redact::{block_digest, Checked, RedactedSpan, Redaction, PLACEHOLDER_PREFIX};
pub use regress::{check_policy, Change, ChangeKind, LogCheck, PolicyReport};
pub use source::{Syntax, MAX_POLICY_BYTES};
pub use spec::{is_canonical_name, Subject, POLICY_VERSION};

use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::model::verdict::TOOLS_RULE;
use detect::Detector;
use rules::{Matcher, Rule};
use source::{Doc, Positions};
use spec::{PolicySpec, RuleSpec, MAX_RULES};
use tools::Allowlist;

/// A loaded policy: its rules compiled, its hash computed.
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    spec: PolicySpec,
    hash: String,
    rules: Vec<Rule>,
    tools: Allowlist,
    /// Bit set of the subjects some rule applies to.
    subjects: u8,
    /// For each subject (by [`Subject::bit`] position), the indexes of the rules on it.
    by_subject: Vec<Vec<usize>>,
}

/// Why a policy could not be loaded; becomes `POLICY_INVALID`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolicyError {
    message: String,
    rule: Option<String>,
    field: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
}

impl PolicyError {
    fn file(message: String) -> PolicyError {
        PolicyError {
            message,
            rule: None,
            field: None,
            line: None,
            column: None,
        }
    }

    fn syntax(message: String, line: usize, column: usize) -> PolicyError {
        PolicyError {
            line: Some(line),
            column: Some(column),
            ..PolicyError::file(message)
        }
    }

    fn into_error(self, origin: Option<&str>) -> Error {
        let mut text = String::new();
        if let Some(o) = origin {
            text.push_str(o);
        }
        if let (Some(l), Some(c)) = (self.line, self.column) {
            text.push_str(&format!(
                "{}line {l} column {c}",
                if origin.is_some() { ":" } else { "" }
            ));
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        if let Some(r) = &self.rule {
            text.push_str(&format!("rule '{r}': "));
        }
        if let Some(f) = &self.field {
            text.push_str(&format!("{f}: "));
        }
        text.push_str(&self.message);
        Error::new(ErrorKind::PolicyInvalid, text).with_detail(ErrorDetail::Policy {
            rule: self.rule,
            field: self.field,
            line: self.line,
            column: self.column,
        })
    }
}

impl Policy {
    /// Load a policy file: JSON or YAML by its extension (`.json`, `.yaml`, `.yml`; JSON
    /// otherwise when it starts with `{`, else YAML). The file must be a regular file (not a
    /// symlink, FIFO or device) of at most [`MAX_POLICY_BYTES`].
    ///
    /// Errors: `POLICY_INVALID`, naming the file, the rule and the line and column.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Policy> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = source::read_file(path).map_err(|e| e.into_error(None))?;
        let syntax = Syntax::of_path(path).unwrap_or(if text.trim_start().starts_with('{') {
            Syntax::Json
        } else {
            Syntax::Yaml
        });
        Policy::parse(&text, syntax).map_err(|e| e.into_error(Some(&shown)))
    }

    /// Load a policy from text in `syntax`.
    ///
    /// Errors: `POLICY_INVALID`, naming the rule and the line and column.
    pub fn from_str(text: &str, syntax: Syntax) -> Result<Policy> {
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(PolicyError::file(format!(
                "the policy is {} bytes, over the limit of {MAX_POLICY_BYTES}",
                text.len()
            ))
            .into_error(None));
        }
        Policy::parse(text, syntax).map_err(|e| e.into_error(None))
    }

    /// Load a policy from a JSON value (a host-language dict or object: it has no duplicate
    /// keys to refuse and no positions to report).
    ///
    /// Errors: `POLICY_INVALID`, naming the rule and field.
    pub fn from_value(value: Value) -> Result<Policy> {
        Policy::compile(Doc {
            value,
            positions: Positions::new(),
        })
        .map_err(|e| e.into_error(None))
    }

    fn parse(text: &str, syntax: Syntax) -> std::result::Result<Policy, PolicyError> {
        let doc = match syntax {
            Syntax::Json => source::parse_json(text)?,
            Syntax::Yaml => source::parse_yaml(text)?,
        };
        Policy::compile(doc)
    }

    fn compile(doc: Doc) -> std::result::Result<Policy, PolicyError> {
        let at = |pointer: &str| doc.positions.get(pointer).copied();
        let fail = |pointer: &str, rule: Option<&str>, field: Option<String>, message: String| {
            let pos = at(pointer);
            PolicyError {
                message,
                rule: rule.map(str::to_owned),
                field,
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
            }
        };
        if !doc.value.is_object() {
            return Err(fail("", None, None, "a policy is an object".to_owned()));
        }
        let spec: PolicySpec = serde_path_to_error::deserialize(&doc.value).map_err(|e| {
            let path = e.path().to_string();
            let pointer = dotted_to_pointer(&path);
            let rule = rule_of(&doc.value, &pointer);
            fail(
                &pointer,
                rule.as_deref(),
                (path != ".").then_some(path),
                e.into_inner().to_string(),
            )
        })?;
        if spec.version != POLICY_VERSION {
            return Err(fail(
                "/version",
                None,
                Some("version".into()),
                format!(
                    "policy format version {} is not supported (this AgentMesh reads version {POLICY_VERSION})",
                    spec.version
                ),
            ));
        }
        if spec.name.is_empty() || spec.name.len() > 128 || spec.name.chars().any(char::is_control)
        {
            return Err(fail(
                "/name",
                None,
                Some("name".into()),
                "must be 1 to 128 bytes without control characters".to_owned(),
            ));
        }
        if spec.rules.len() > MAX_RULES {
            return Err(fail(
                "/rules",
                None,
                Some("rules".into()),
                format!("{} rules, over the limit of {MAX_RULES}", spec.rules.len()),
            ));
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(spec.rules.len());
        let mut subjects = 0u8;
        for (i, r) in spec.rules.iter().enumerate() {
            let here = |field: &str| format!("/rules/{i}/{field}");
            let id = Some(r.id.as_str());
            let name = |field: &str| Some(format!("rules[{i}].{field}"));
            if !spec::is_id(&r.id) {
                return Err(fail(
                    &here("id"),
                    None,
                    name("id"),
                    format!(
                        "rule id \"{}\" must be 1 to 64 of A-Z a-z 0-9 _ . -",
                        r.id.escape_debug()
                    ),
                ));
            }
            if r.id == TOOLS_RULE {
                return Err(fail(
                    &here("id"),
                    id,
                    name("id"),
                    format!("the id '{TOOLS_RULE}' is reserved for the tool allowlist"),
                ));
            }
            if !seen.insert(r.id.as_str()) {
                return Err(fail(
                    &here("id"),
                    id,
                    name("id"),
                    "duplicate rule id".to_owned(),
                ));
            }
            let matcher = compile_matcher(r)
                .map_err(|(field, why)| fail(&here(field), id, name(field), why))?;
            let on = match &r.on {
                None => Subject::ALL.iter().fold(0, |acc, s| acc | s.bit()),
                Some(list) if list.is_empty() => {
                    return Err(fail(
                        &here("on"),
                        id,
                        name("on"),
                        "lists no subject: leave it out to apply the rule everywhere".to_owned(),
                    ))
                }
                Some(list) => {
                    let unique: BTreeSet<_> = list.iter().collect();
                    if unique.len() != list.len() {
                        return Err(fail(
                            &here("on"),
                            id,
                            name("on"),
                            "lists a subject twice".to_owned(),
                        ));
                    }
                    list.iter().fold(0, |acc, s| acc | s.bit())
                }
            };
            subjects |= on;
            let kind: Arc<str> = match &matcher {
                Matcher::Detector(d) => d.name().into(),
                _ => r.id.as_str().into(),
            };
            rules.push(Rule {
                id: r.id.as_str().into(),
                action: r.action,
                kind,
                matcher,
                on,
            });
        }
        let tools = Allowlist::new(spec.tools.as_ref())
            .map_err(|(pointer, field, why)| fail(&pointer, Some(TOOLS_RULE), Some(field), why))?;
        // The hash is over the canonical form: JSON and YAML of the same policy, or the same
        // policy reformatted, hash alike.
        let canonical = serde_json::to_string(&spec).expect("a policy serializes");
        let hash = blake3::hash(canonical.as_bytes()).to_hex().to_string();
        let by_subject = Subject::ALL
            .iter()
            .map(|s| (0..rules.len()).filter(|&i| rules[i].applies(*s)).collect())
            .collect();
        Ok(Policy {
            inner: Arc::new(Inner {
                spec,
                hash,
                rules,
                tools,
                subjects,
                by_subject,
            }),
        })
    }

    /// The built-in policy `agentmesh-detectors`: every built-in detector redacts, everywhere,
    /// and no tool is allowed (what `agentmesh redact` uses without `--policy`).
    pub fn builtin() -> Policy {
        let rules: Vec<Value> = Detector::ALL
            .iter()
            .map(|d| serde_json::json!({"id": d.name(), "detect": d.name(), "action": "redact"}))
            .collect();
        Policy::from_value(serde_json::json!({
            "version": POLICY_VERSION,
            "name": "agentmesh-detectors",
            "rules": rules,
        }))
        .expect("the built-in policy is valid")
    }

    /// blake3 (hex) of the policy's canonical form: what the log header records.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The policy file format version.
    pub fn version(&self) -> u32 {
        self.inner.spec.version
    }

    /// The rule ids, in order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.inner.rules.iter().map(|r| &*r.id)
    }

    /// The policy in canonical JSON form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.inner.spec).expect("a policy serializes")
    }

    /// Whether some rule applies to `subject` (a value nothing looks at is passed as it is).
    pub fn looks_at(&self, subject: Subject) -> bool {
        self.inner.subjects & subject.bit() != 0
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// The indexes of the rules that apply to `subject`, in order.
    pub(crate) fn rules_on(&self, subject: Subject) -> &[usize] {
        &self.inner.by_subject[subject as usize]
    }

    pub(crate) fn rule(&self, id: &str) -> Option<&Rule> {
        self.inner.rules.iter().find(|r| &*r.id == id)
    }

    pub(crate) fn allowlist(&self) -> &Allowlist {
        &self.inner.tools
    }
}

/// Whether `policy` is the one the run in `header` was recorded under (what replay with a
/// policy checks).
///
/// Errors: `INVALID_ARGUMENT` naming both policies and the way to test a new one.
pub fn check_run_policy(header: &crate::model::header::LogHeader, policy: &Policy) -> Result<()> {
    crate::run::run_policy(header, Some(policy.clone())).map(|_| ())
}

fn compile_matcher(r: &RuleSpec) -> std::result::Result<Matcher, (&'static str, String)> {
    match (&r.detect, &r.regex, &r.keywords) {
        (Some(name), None, None) => match Detector::from_name(name) {
            Some(d) => Ok(Matcher::Detector(d)),
            None => {
                let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                let close = names
                    .iter()
                    .min_by_key(|n| crate::error::edit_distance(n, name))
                    .filter(|n| crate::error::edit_distance(n, name) <= 2)
                    .map(|n| format!(" (did you mean '{n}'?)"))
                    .unwrap_or_default();
                Err((
                    "detect",
                    format!(
                        "unknown detector '{}'{close}; the detectors are {}",
                        name.escape_debug(),
                        names.join(", ")
                    ),
                ))
            }
        },
        (None, Some(p), None) => rules::compile_regex(p)
            .map(Matcher::Regex)
            .map_err(|e| ("regex", e)),
        (None, None, Some(words)) => rules::compile_keywords(words)
            .map(Matcher::Keywords)
            .map_err(|e| ("keywords", e)),
        _ => Err((
            "id",
            "a rule needs exactly one of 'detect', 'regex' and 'keywords'".to_owned(),
        )),
    }
}

/// `rules[2].regex` → `/rules/2/regex` (serde_path_to_error's path to a JSON Pointer).
fn dotted_to_pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::new();
    for part in path.split('.') {
        let (name, index) = match part.find('[') {
            Some(i) => (&part[..i], Some(part[i + 1..].trim_end_matches(']'))),
            None => (part, None),
        };
        if !name.is_empty() {
            out.push('/');
            out.push_str(&source::escape(name));
        }
        if let Some(ix) = index {
            out.push('/');
            out.push_str(ix);
        }
    }
    out
}

/// The id of the rule a pointer lies in, when it is in one.
fn rule_of(doc: &Value, pointer: &str) -> Option<String> {
    let rest = pointer.strip_prefix("/rules/")?;
    let index = rest.split('/').next()?;
    doc.pointer(&format!("/rules/{index}/id"))?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
