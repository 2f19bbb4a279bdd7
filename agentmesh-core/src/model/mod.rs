//! Wire types: workflow definitions, conditions, events, activations and completions.

pub mod activation;
pub(crate) mod condition;
pub mod event;
pub(crate) mod validate;
pub mod workflow;

use serde_json::Value;

/// Deepest nesting of arrays and objects accepted in a value the log records (run input,
/// outputs, approvals, overrides). A record wraps the value in up to three more levels
/// (`runCompleted` → `data` → `output` → node) and serde_json reads at most 128 back, so
/// anything near that would be written and then be unreadable; 100 leaves room.
pub const MAX_VALUE_DEPTH: usize = 100;

/// Whether `value` nests more than [`MAX_VALUE_DEPTH`] arrays/objects (iterative: a value built
/// in Rust may be deeper than any stack).
pub(crate) fn too_deep(value: &Value) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > MAX_VALUE_DEPTH {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
