//! Activations as `poll` hands them to JavaScript: one string per poll, no object per field,
//! no native object per activation.
//!
//! Building `input` and `deps` (and a dozen named properties) for every activation cost more
//! than the rest of a step, and most agents read a few fields; each Node-API call costs 30–50 ns
//! and a native object per activation (as Python's `Activation`) about 0.7 µs in wrapping and
//! GC finalization alone (see `raw.rs`). So `poll` returns one string:
//!
//! ```text
//! [[id, node, kind, name, attempt, visit, delayMs, timeoutMs, step, seed, prompt, depsEnd], ...]
//! <deps JSON text of the first activation><deps JSON text of the second>...
//! ```
//!
//! a JSON header line (`timeoutMs` and `prompt` `null` when absent, `seed` a decimal string),
//! a newline, then each activation's `deps` as the JSON text of its dependencies' outputs,
//! ending at `depsEnd` (in UTF-16 code units after the newline, as JavaScript indexes strings).
//! A map item's record, and the record of an activation with `reads`, has four more entries,
//! `itemIndex, itemKey, valueEnd, readsEnd` (`itemIndex` and `itemKey` `null` when absent): its
//! deps text is followed by the item's value text (none without an item), ending at `valueEnd`,
//! then by the JSON text of its reads (path → value; none when it has none), ending at
//! `readsEnd`. A retry's record (an activation with a `last_failure`) has those four and a
//! seventeenth, `lastFailure`: the failure it retries as the log records it (`{"kind", "type",
//! "message", "retryable"}`), in the header itself (small, and only on retries). Every other
//! record stays at twelve entries, so the common path costs nothing more. The activation of a
//! sub-workflow's node, whose `input` is its workflow node's and not the run's, has those and
//! an eighteenth, `inputEnd` (`lastFailure` `null` when none): its input's JSON text follows
//! its reads text, ending there.
//! The driver's `Activation` (lib/mesh.js) parses the header at once and a `deps` (item value,
//! reads) text only when an agent reads it — into what `json::write` would have built
//! (`JSON.parse` of the core's JSON text, the contract of `json.rs`); the run input is one text
//! per run (`NativeRun.inputJson`), parsed per activation on first read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use agentmesh_core as core;

use crate::raw::{self, RawEnv, Value, R};

/// `s` as a JSON string.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON text of an activation's `deps` (node id → output) or `reads` (path → value), keys
/// in the core's order.
fn write_values(out: &mut String, values: &BTreeMap<Arc<str>, Arc<serde_json::Value>>) {
    out.push('{');
    for (i, (key, value)) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        // A `Value` always serializes.
        let _ = write!(out, ":{value}");
    }
    out.push('}');
}

/// Length of `s` in UTF-16 code units.
fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        return s.len();
    }
    s.chars().map(char::len_utf16).sum()
}

/// The text `poll` returns for `acts` of a run whose input is `run_input` (see the module
/// docs).
pub fn poll_text(acts: &[core::Activation], run_input: &Arc<serde_json::Value>) -> String {
    let mut out = String::with_capacity(64 + acts.len() * 96);
    let mut texts = String::new();
    let mut end = 0;
    out.push('[');
    for (i, a) in acts.iter().enumerate() {
        let start = texts.len();
        write_values(&mut texts, &a.deps);
        end += utf16_len(&texts[start..]);
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "[{},", a.id);
        write_str(&mut out, &a.node);
        let _ = write!(out, ",\"{}\",", a.kind.as_str());
        write_str(&mut out, &a.name);
        let _ = write!(out, ",{},{},{},", a.attempt, a.visit, a.delay_ms);
        match a.timeout_ms {
            Some(ms) => {
                let _ = write!(out, "{ms},");
            }
            None => out.push_str("null,"),
        }
        let _ = write!(out, "{},\"{}\",", a.step, a.seed);
        match &a.prompt {
            Some(p) => write_str(&mut out, p),
            None => out.push_str("null"),
        }
        let _ = write!(out, ",{end}");
        let own_input = !Arc::ptr_eq(&a.input, run_input);
        if a.item.is_some() || !a.reads.is_empty() || a.last_failure.is_some() || own_input {
            write_item_and_reads(&mut out, &mut texts, &mut end, a);
        }
        match &a.last_failure {
            Some(failure) => write_failure(&mut out, failure),
            None if own_input => out.push_str(",null"),
            None => {}
        }
        if own_input {
            let start = texts.len();
            let _ = write!(texts, "{}", a.input);
            end += utf16_len(&texts[start..]);
            let _ = write!(out, ",{end}");
        }
        out.push(']');
    }
    out.push_str("]\n");
    out.push_str(&texts);
    out
}

/// The four more record entries of a map item, a reading activation or a retry, and its value
/// and reads texts after its deps text (see the module docs).
fn write_item_and_reads(
    out: &mut String,
    texts: &mut String,
    end: &mut usize,
    a: &core::Activation,
) {
    match &a.item {
        Some(item) => {
            let _ = write!(out, ",{},", item.index);
            match &item.key {
                Some(key) => write_str(out, key),
                None => out.push_str("null"),
            }
            let start = texts.len();
            let _ = write!(texts, "{}", item.value);
            *end += utf16_len(&texts[start..]);
        }
        None => out.push_str(",null,null"),
    }
    let _ = write!(out, ",{end}");
    if !a.reads.is_empty() {
        let start = texts.len();
        write_values(texts, &a.reads);
        *end += utf16_len(&texts[start..]);
    }
    let _ = write!(out, ",{end}");
}

/// A retry's seventeenth record entry: its last failure in the log's JSON form.
fn write_failure(out: &mut String, failure: &core::Failure) {
    out.push(',');
    // A `Failure` (strings, a bool, a unit enum) always serializes.
    out.push_str(&serde_json::to_string(failure).expect("a failure serializes"));
}

/// The `poll` text of `acts` as a JS string.
///
/// # Safety
///
/// As for `raw` (the current call's environment, on its thread).
pub unsafe fn records(
    env: RawEnv,
    acts: Vec<core::Activation>,
    run_input: &Arc<serde_json::Value>,
) -> R<Value> {
    // SAFETY: per this function's contract.
    unsafe { raw::string(env, &poll_text(&acts, run_input)) }
}
