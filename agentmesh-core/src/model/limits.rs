//! Limits shared by the orchestrator, the log and the hosts. They live here, below every
//! layer that applies them, so the state machine never imports the storage layer.

/// Deepest nesting of arrays and objects accepted in a value the log records (run input,
/// outputs, approvals, overrides, a branch condition's operand). A record wraps a value in a
/// few more levels (`runCompleted` → `data` → `output` → node; `runStarted` → `data` →
/// `workflow` → `nodes` → node → `cases` → case → `when`) and serde_json reads at most 128
/// back, so this limit keeps every record the core writes readable.
pub const MAX_VALUE_DEPTH: usize = 100;

/// Largest event the log records (64 MiB), measured in its canonical form (no `meta`, no
/// chain fields). Measured canonically so that a run gives the same outcome whether its log
/// is in memory or in a file of any format version; the physical record adds at most
/// [`RECORD_OVERHEAD`] bytes.
pub const MAX_EVENT_BYTES: usize = 64 << 20;

/// Room a physical record needs beyond its canonical form: `meta` and the chain fields.
pub const RECORD_OVERHEAD: usize = 4096;

/// Largest run output (the terminal nodes' outputs, repeated in `runCompleted`); a larger one
/// fails the run with `LIMIT_EXCEEDED`, deterministically, instead of an unwritable record.
pub const MAX_RUN_OUTPUT_BYTES: usize = 32 << 20;

/// Most loop-backs in one decision phase (between two steps), or `maxSteps` if smaller.
pub const MAX_LOOPS_PER_DECISION: u64 = 10_000;

/// Whether `value` nests more than `limit` arrays/objects (iterative: a value built in Rust
/// may be deeper than any stack).
pub(crate) fn deeper_than(value: &serde_json::Value, limit: usize) -> bool {
    use serde_json::Value;
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return false; // no allocation for the common scalar results
    }
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// Whether `value` nests more than [`MAX_VALUE_DEPTH`] arrays/objects.
pub(crate) fn too_deep(value: &serde_json::Value) -> bool {
    deeper_than(value, MAX_VALUE_DEPTH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn nested(levels: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn depth_limit_counts_containers() {
        assert!(!too_deep(&Value::Null));
        assert!(!too_deep(&nested(MAX_VALUE_DEPTH)));
        assert!(too_deep(&nested(MAX_VALUE_DEPTH + 1)));
        let mut obj = serde_json::json!({"a": nested(MAX_VALUE_DEPTH - 1)});
        assert!(!too_deep(&obj));
        obj["b"] = nested(MAX_VALUE_DEPTH);
        assert!(too_deep(&obj));
    }

    #[test]
    fn run_output_fits_in_an_event() {
        const { assert!(MAX_RUN_OUTPUT_BYTES < MAX_EVENT_BYTES) };
    }
}
