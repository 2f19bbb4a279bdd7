use super::*;
use crate::model::verdict::Action;
use serde_json::json;

const YAML: &str = "\
version: 1
name: test
rules:
  - id: pii-email
    detect: email
    action: redact
  - id: zeus
    keywords: [project zeus]
    action: block
    on: [output, llmRequest]
  - id: ticket
    regex: 'TICKET-[0-9]{4}'
    action: warn
tools:
  roles:
    reader: [read_file]
  agents:
    coder: [reader]
";

fn policy() -> Policy {
    Policy::from_str(YAML, Syntax::Yaml).unwrap()
}

fn invalid(text: &str, syntax: Syntax) -> Error {
    let e = Policy::from_str(text, syntax).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyInvalid, "{e}");
    e
}

#[test]
fn json_and_yaml_of_one_policy_hash_alike() {
    let json_text = serde_json::to_string_pretty(&policy().to_json()).unwrap();
    let from_json = Policy::from_str(&json_text, Syntax::Json).unwrap();
    assert_eq!(from_json.hash(), policy().hash());
    assert_eq!(
        Policy::from_value(policy().to_json()).unwrap().hash(),
        policy().hash()
    );
    let changed = YAML.replace("TICKET-[0-9]{4}", "TICKET-[0-9]{5}");
    assert_ne!(
        Policy::from_str(&changed, Syntax::Yaml).unwrap().hash(),
        policy().hash()
    );
    assert_eq!(
        policy().rule_ids().collect::<Vec<_>>(),
        ["pii-email", "zeus", "ticket"]
    );
}

#[test]
fn errors_name_the_rule_field_and_position() {
    let bad = YAML.replace("'TICKET-[0-9]{4}'", "'TICKET-(?=[0-9])'");
    let e = invalid(&bad, Syntax::Yaml);
    assert!(
        e.message()
            .starts_with("line 12 column 12: rule 'ticket': rules[2].regex: "),
        "{e}"
    );
    assert!(e.message().contains("look-around"), "{e}");
    assert_eq!(
        e.detail(),
        Some(&ErrorDetail::Policy {
            rule: Some("ticket".into()),
            field: Some("rules[2].regex".into()),
            line: Some(12),
            column: Some(12),
        })
    );
    let json_text = r#"{"version": 1, "name": "j",
  "rules": [{"id": "a", "detect": "emial", "action": "redact"}]}"#;
    let e = invalid(json_text, Syntax::Json);
    assert!(e.message().starts_with("line 2 column 35: rule 'a': rules[0].detect: unknown detector 'emial' (did you mean 'email'?)"), "{e}");
    let e = invalid(
        &YAML.replace("action: warn", "action: warn\n    colour: red"),
        Syntax::Yaml,
    );
    assert!(
        e.message().contains("rule 'ticket'") && e.message().contains("unknown field `colour`"),
        "{e}"
    );
    let e = invalid(&YAML.replace("id: zeus", "id: pii-email"), Syntax::Yaml);
    assert!(
        e.message()
            .contains("rule 'pii-email': rules[1].id: duplicate rule id"),
        "{e}"
    );
    let e = invalid(
        &YAML.replace(
            "agents:\n    coder: [reader]",
            "agents:\n    coder: [admin]",
        ),
        Syntax::Yaml,
    );
    assert!(
        e.message()
            .contains("tools.agents.coder[0]: unknown role 'admin'"),
        "{e}"
    );
    let e = invalid(&YAML.replace("version: 1", "version: 2"), Syntax::Yaml);
    assert!(e.message().contains("version 2 is not supported"), "{e}");
    let e = invalid(
        &YAML.replace("    detect: email\n", "    detect: email\n    regex: a\n"),
        Syntax::Yaml,
    );
    assert!(e.message().contains("exactly one of"), "{e}");
}

#[test]
fn duplicate_keys_anchors_and_tags_are_refused() {
    let e = invalid(r#"{"version": 1, "name": "a", "name": "b"}"#, Syntax::Json);
    assert!(e.message().contains("duplicate key \"name\""), "{e}");
    assert!(e.message().starts_with("line 1 column"), "{e}");
    let e = invalid("version: 1\nname: a\nname: b\n", Syntax::Yaml);
    assert!(
        e.message()
            .starts_with("line 3 column 1: duplicate key \"name\""),
        "{e}"
    );
    let e = invalid("version: 1\nname: &n a\nrules: []\n", Syntax::Yaml);
    assert!(e.message().contains("anchors and tags"), "{e}");
    let e = invalid("version: !!int 1\nname: a\n", Syntax::Yaml);
    assert!(e.message().contains("anchors and tags"), "{e}");
    let e = invalid(
        "version: 1\nname: a\n---\nversion: 1\nname: b\n",
        Syntax::Yaml,
    );
    assert!(e.message().contains("one YAML document"), "{e}");
    let e = invalid("version: 1\nname: [a\n", Syntax::Yaml);
    assert!(e.message().starts_with("line "), "{e}");
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let e = invalid(
        &format!(r#"{{"version": 1, "name": "a", "x": {deep}}}"#),
        Syntax::Json,
    );
    assert!(e.message().contains("nesting deeper"), "{e}");
}

#[test]
fn only_regular_files_under_the_size_limit_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("p.yaml");
    std::fs::write(&good, YAML).unwrap();
    assert_eq!(Policy::from_path(&good).unwrap().hash(), policy().hash());
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; MAX_POLICY_BYTES as usize + 1]).unwrap();
    let e = Policy::from_path(&big).unwrap_err();
    assert!(e.message().contains("over the limit"), "{e}");
    let e = Policy::from_path(dir.path()).unwrap_err();
    assert!(e.message().contains("is a directory"), "{e}");
    #[cfg(unix)]
    {
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let e = Policy::from_path(&link).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyInvalid);
        assert!(e.message().contains("is a symlink"), "{e}");
        let e = Policy::from_path("/dev/null").unwrap_err();
        assert!(e.message().contains("is a device"), "{e}");
        let fifo = dir.path().join("fifo.yaml");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            let e = Policy::from_path(&fifo).unwrap_err();
            assert!(e.message().contains("is a FIFO"), "{e}");
        }
    }
    let e = Policy::from_path(dir.path().join("missing.yaml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyInvalid);
}

#[test]
fn check_redacts_warns_and_blocks_per_subject() {
    let p = policy();
    let v = json!({"to": "ann@example.com", "body": "see TICKET-1234", "n": 3});
    let c = p.check(Subject::Input, &v);
    assert!(!c.blocked);
    assert_eq!(
        c.value,
        Some(json!({"to": "[REDACTED:email]", "body": "see TICKET-1234", "n": 3}))
    );
    let rules: Vec<(&str, Action, Option<&str>)> = c
        .verdicts
        .iter()
        .map(|v| (&*v.rule, v.action, v.path.as_deref()))
        .collect();
    assert_eq!(
        rules,
        [
            ("ticket", Action::Warn, Some("/body")),
            ("pii-email", Action::Redact, Some("/to"))
        ]
    );
    // The keyword rule applies to outputs, not to the input.
    let zeus = json!(["Project  Zeus", "PROJECT ZEUS"]);
    assert!(!p.check(Subject::Input, &json!("project zeus")).blocked);
    let c = p.check(
        Subject::Output,
        &json!({"a": "about project zeus", "b": "x@example.org"}),
    );
    assert!(c.blocked);
    assert!(c.value.is_none());
    assert_eq!(
        c.verdicts.len(),
        1,
        "a block keeps only the blocks: {:?}",
        c.verdicts
    );
    assert_eq!(c.verdicts[0].path.as_deref(), Some("/a"));
    assert_eq!(
        p.check(Subject::Output, &zeus).verdicts[0].path.as_deref(),
        Some("/1")
    );
    // Keys are judged too, and two keys redacted alike stay two members.
    let c = p.check(
        Subject::Input,
        &json!({"a@example.com": 1, "b@example.com": 2}),
    );
    assert_eq!(
        c.value,
        Some(json!({"[REDACTED:email]": 1, "[REDACTED:email]#2": 2}))
    );
    assert_eq!(
        p.check(Subject::Input, &json!({"x": [1, true, null]})),
        Checked::default()
    );
}

#[test]
fn redaction_is_idempotent_and_merges_overlaps() {
    let p = Policy::from_value(json!({
        "version": 1, "name": "o",
        "rules": [
            {"id": "mail", "detect": "email", "action": "redact"},
            {"id": "domain", "regex": "example\\.com and more", "action": "redact"},
        ]
    }))
    .unwrap();
    let text = "write to ann@example.com and more, é😀";
    let r = p.redact(text);
    assert_eq!(r.text, "write to [REDACTED:email], é😀");
    assert_eq!(
        r.spans,
        [RedactedSpan {
            start: 9,
            end: 33,
            kind: "email".into(),
            rule: "mail".into()
        }]
    );
    let again = p.redact(&r.text);
    assert_eq!(again.text, r.text);
    assert!(again.spans.is_empty());
    // Character offsets count Unicode scalars.
    let r = p.redact("é😀 ann@example.com");
    assert_eq!((r.spans[0].start, r.spans[0].end), (3, 18));
}

#[test]
fn failure_messages_are_redacted_by_blocking_rules_too() {
    let p = policy();
    let (text, verdicts) = p.check_message(
        Subject::Output,
        "boom: project zeus leaked to a@example.com",
    );
    assert_eq!(
        text.as_deref(),
        Some("boom: [REDACTED:zeus] leaked to [REDACTED:email]")
    );
    assert!(
        verdicts.iter().all(|v| v.action == Action::Redact),
        "{verdicts:?}"
    );
}

#[test]
fn block_digests_are_keyed_by_record() {
    let v = json!({"ssn": "123-45-6789"});
    let a = block_digest("run-1/4/1", &v);
    assert_eq!(a, block_digest("run-1/4/1", &v));
    assert_ne!(a, block_digest("run-1/4/3", &v));
    assert_ne!(
        a,
        blake3::hash(v.to_string().as_bytes()).to_hex().to_string()
    );
    assert_eq!(a.len(), 64);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn redacting_never_panics_and_is_idempotent(text in "(\\PC|[@.\\-0-9 a-z])*") {
        let p = policy();
        let once = p.redact(&text);
        let twice = p.redact(&once.text);
        proptest::prop_assert_eq!(&twice.text, &once.text);
        let n = text.chars().count();
        for s in &once.spans {
            proptest::prop_assert!(s.start < s.end && s.end <= n);
        }
    }
}

#[test]
fn the_guide_lists_every_detector() {
    let guide = include_str!("../../../docs/policy.md");
    for d in detect::Detector::ALL {
        assert!(
            guide.contains(&format!("| `{}` |", d.name())),
            "docs/policy.md has no row for detector '{}'",
            d.name()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Every built-in detector at once, on text made of the pieces PII is made of and
    /// multi-byte characters around them: no panic, spans on characters, idempotent, and the
    /// redacted text holds no match of its own.
    #[test]
    fn the_built_in_detectors_redact_idempotently_on_any_text(
        parts in proptest::collection::vec(
            "(\\PC{0,3}|[0-9]{1,19}|[ .@:/+=\\-]|[A-Za-z0-9+/]{4,40}|é|😀|ж|\\u{200B}|-----BEGIN PRIVATE KEY-----|ssn|password=|sk-|AKIA|eyJ|@example\\.com)",
            0..24,
        )
    ) {
        let text: String = parts.concat();
        let p = Policy::builtin();
        let once = p.redact(&text);
        let twice = p.redact(&once.text);
        proptest::prop_assert_eq!(&twice.text, &once.text);
        proptest::prop_assert!(twice.spans.is_empty());
        let n = text.chars().count();
        for s in &once.spans {
            proptest::prop_assert!(s.start < s.end && s.end <= n);
        }
        let checked = p.check(Subject::Output, &serde_json::Value::String(text.clone()));
        if let Some(v) = checked.value {
            proptest::prop_assert_eq!(v.as_str().unwrap(), once.text.as_str());
        }
    }
}
