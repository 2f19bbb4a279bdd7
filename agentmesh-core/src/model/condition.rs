//! Branch conditions: data, not code.
//!
//! A condition is one of
//! - a test `{"path": "/outputs/review/score", "<op>": operand}` with exactly one operator of
//!   `eq ne gt gte lt lte in contains exists matches`;
//! - `{"all": [c, ...]}`, `{"any": [c, ...]}`, `{"not": c}`.
//!
//! Paths are JSON Pointers (RFC 6901) into the run state
//! `{"input": <run input>, "outputs": {<node>: <latest output>}, "visits": {<node>: <count>}}`.
//! A missing path makes every operator false except `exists: false`. Numbers compare by value
//! (`1 == 1.0`); `gt gte lt lte` compare two numbers or two strings, and are false otherwise.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

/// Largest accepted compiled regex (bytes), so a condition cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone)]
pub(crate) enum Root {
    Input,
    Output(usize),
    Visits(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Path {
    root: Root,
    tokens: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Contains(Value),
    Exists(bool),
    Matches(Box<Regex>),
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Test(Path, Op),
}

/// What a condition can read.
pub(crate) trait StateView {
    fn input(&self) -> &Value;
    fn output(&self, node: usize) -> Option<&Value>;
    fn visits(&self, node: usize) -> u64;
}

type CompileResult<T> = std::result::Result<T, (String, String)>;

impl Condition {
    /// Compile `value`; errors are `(field path, message)`.
    pub(crate) fn compile(
        value: &Value,
        nodes: &HashMap<String, usize>,
        field: &str,
    ) -> CompileResult<Condition> {
        compile(value, nodes, field, 0)
    }

    pub(crate) fn eval(&self, state: &dyn StateView) -> bool {
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.eval(state)),
            Condition::Any(cs) => cs.iter().any(|c| c.eval(state)),
            Condition::Not(c) => !c.eval(state),
            Condition::Test(path, op) => {
                let visits;
                let found = match &path.root {
                    Root::Input => resolve(state.input(), &path.tokens),
                    Root::Output(n) => state.output(*n).and_then(|v| resolve(v, &path.tokens)),
                    Root::Visits(n) => {
                        visits = Value::from(state.visits(*n));
                        Some(&visits)
                    }
                };
                test(op, found)
            }
        }
    }
}

fn err<T>(field: &str, msg: impl Into<String>) -> CompileResult<T> {
    Err((field.to_owned(), msg.into()))
}

fn compile(
    value: &Value,
    nodes: &HashMap<String, usize>,
    field: &str,
    depth: usize,
) -> CompileResult<Condition> {
    if depth > MAX_DEPTH {
        return err(field, format!("conditions nest deeper than {MAX_DEPTH}"));
    }
    let Some(obj) = value.as_object() else {
        return err(field, "a condition must be an object");
    };
    let list = |key: &str, v: &Value| -> CompileResult<Vec<Condition>> {
        let Some(items) = v.as_array() else {
            return err(&format!("{field}.{key}"), "must be an array of conditions");
        };
        if items.is_empty() {
            return err(&format!("{field}.{key}"), "must not be empty");
        }
        items
            .iter()
            .enumerate()
            .map(|(i, c)| compile(c, nodes, &format!("{field}.{key}[{i}]"), depth + 1))
            .collect()
    };
    if obj.len() == 1 {
        let (key, v) = obj.iter().next().expect("one entry");
        match key.as_str() {
            "all" => return Ok(Condition::All(list("all", v)?)),
            "any" => return Ok(Condition::Any(list("any", v)?)),
            "not" => {
                return Ok(Condition::Not(Box::new(compile(
                    v,
                    nodes,
                    &format!("{field}.not"),
                    depth + 1,
                )?)))
            }
            _ => {}
        }
    }
    let Some(path_value) = obj.get("path") else {
        return err(field, "expected {\"path\": ..., \"<op>\": ...}, {\"all\": [...]}, {\"any\": [...]} or {\"not\": ...}");
    };
    let Some(path_text) = path_value.as_str() else {
        return err(&format!("{field}.path"), "must be a string");
    };
    let path = compile_path(path_text, nodes).map_err(|m| (format!("{field}.path"), m))?;
    let ops: Vec<(&String, &Value)> = obj.iter().filter(|(k, _)| k.as_str() != "path").collect();
    if ops.len() != 1 {
        return err(
            field,
            format!(
                "a test needs exactly one operator besides 'path', found {}",
                ops.len()
            ),
        );
    }
    let (name, operand) = ops[0];
    let f = format!("{field}.{name}");
    let comparable = |v: &Value| -> CompileResult<Value> {
        if v.is_number() || v.is_string() {
            Ok(v.clone())
        } else {
            err(&f, "must be a number or a string")
        }
    };
    let op = match name.as_str() {
        "eq" => Op::Eq(operand.clone()),
        "ne" => Op::Ne(operand.clone()),
        "gt" => Op::Gt(comparable(operand)?),
        "gte" => Op::Gte(comparable(operand)?),
        "lt" => Op::Lt(comparable(operand)?),
        "lte" => Op::Lte(comparable(operand)?),
        "in" => match operand.as_array() {
            Some(items) => Op::In(items.clone()),
            None => return err(&f, "must be an array"),
        },
        "contains" => Op::Contains(operand.clone()),
        "exists" => match operand.as_bool() {
            Some(b) => Op::Exists(b),
            None => return err(&f, "must be true or false"),
        },
        "matches" => {
            let Some(pattern) = operand.as_str() else {
                return err(&f, "must be a regular expression string");
            };
            let re = regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| (f.clone(), format!("invalid regular expression: {e}")))?;
            Op::Matches(Box::new(re))
        }
        other => return err(field, format!("unknown operator '{other}'")),
    };
    Ok(Condition::Test(path, op))
}

/// Compile a state path (`/input…`, `/outputs/<node>…`, `/visits/<node>`); the error names
/// what is wrong with it.
pub(crate) fn compile_path(
    text: &str,
    nodes: &HashMap<String, usize>,
) -> std::result::Result<Path, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!(
            "'{text}' is not a JSON Pointer (it must start with '/')"
        ));
    };
    let mut tokens = rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"));
    let root = tokens.next().unwrap_or_default();
    let node = |tokens: &mut dyn Iterator<Item = String>| -> std::result::Result<usize, String> {
        let id = tokens
            .next()
            .ok_or_else(|| format!("'{text}' needs a node id after /{root}/"))?;
        nodes
            .get(&id)
            .copied()
            .ok_or_else(|| format!("'{text}' names unknown node '{id}'"))
    };
    let root = match root.as_str() {
        "input" => Root::Input,
        "outputs" => Root::Output(node(&mut tokens)?),
        "visits" => {
            let n = node(&mut tokens)?;
            if tokens.next().is_some() {
                return Err(format!("'{text}': a visit count has no fields"));
            }
            Root::Visits(n)
        }
        other => {
            return Err(format!(
                "'{text}' must start with /input, /outputs/<node> or /visits/<node>, not /{other}"
            ))
        }
    };
    Ok(Path {
        root,
        tokens: tokens.collect(),
    })
}

impl Path {
    /// The node whose output or visit count it reads (`None` for `/input`).
    pub(crate) fn node(&self) -> Option<usize> {
        match self.root {
            Root::Input => None,
            Root::Output(n) | Root::Visits(n) => Some(n),
        }
    }

    /// The node whose whole output it is (`/outputs/<node>`, nothing after).
    pub(crate) fn whole_output(&self) -> Option<usize> {
        match self.root {
            Root::Output(n) if self.tokens.is_empty() => Some(n),
            _ => None,
        }
    }

    /// Whether it reads a visit count.
    pub(crate) fn is_visits(&self) -> bool {
        matches!(self.root, Root::Visits(_))
    }

    /// Its value in `state` (`None` when missing).
    pub(crate) fn resolve<'s>(&self, state: &'s dyn StateView) -> Option<Cow<'s, Value>> {
        match &self.root {
            Root::Input => resolve(state.input(), &self.tokens).map(Cow::Borrowed),
            Root::Output(n) => state
                .output(*n)
                .and_then(|v| resolve(v, &self.tokens))
                .map(Cow::Borrowed),
            Root::Visits(n) => Some(Cow::Owned(Value::from(state.visits(*n)))),
        }
    }
}

/// Split a JSON Pointer (RFC 6901) into its unescaped tokens; `None` when it does not start
/// with `/`.
pub(crate) fn pointer_tokens(text: &str) -> Option<Vec<String>> {
    let rest = text.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// The value at `tokens` inside `value`.
pub(crate) fn resolve<'v>(mut value: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    for t in tokens {
        value = match value {
            Value::Object(map) => map.get(t)?,
            Value::Array(items) => {
                if t.len() > 1 && t.starts_with('0') {
                    return None;
                }
                items.get(t.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(value)
}

/// JSON equality where numbers compare by value (`1 == 1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => json_cmp(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn json_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(p), Some(q)) => Some(p.cmp(&q)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn test(op: &Op, found: Option<&Value>) -> bool {
    let Some(v) = found else {
        return matches!(op, Op::Exists(false));
    };
    match op {
        Op::Eq(x) => json_eq(v, x),
        Op::Ne(x) => !json_eq(v, x),
        Op::Gt(x) => json_cmp(v, x) == Some(Ordering::Greater),
        Op::Gte(x) => matches!(json_cmp(v, x), Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt(x) => json_cmp(v, x) == Some(Ordering::Less),
        Op::Lte(x) => matches!(json_cmp(v, x), Some(Ordering::Less | Ordering::Equal)),
        Op::In(items) => items.iter().any(|x| json_eq(v, x)),
        Op::Contains(x) => match v {
            Value::Array(items) => items.iter().any(|i| json_eq(i, x)),
            Value::String(s) => x.as_str().is_some_and(|needle| s.contains(needle)),
            Value::Object(map) => x.as_str().is_some_and(|k| map.contains_key(k)),
            _ => false,
        },
        Op::Exists(b) => *b,
        Op::Matches(re) => v.as_str().is_some_and(|s| re.is_match(s)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct S {
        input: Value,
        outputs: Vec<Option<Value>>,
    }
    impl StateView for S {
        fn input(&self) -> &Value {
            &self.input
        }
        fn output(&self, node: usize) -> Option<&Value> {
            self.outputs[node].as_ref()
        }
        fn visits(&self, node: usize) -> u64 {
            node as u64 + 2
        }
    }

    fn check(cond: Value) -> bool {
        let nodes = HashMap::from([("a".to_owned(), 0), ("b".to_owned(), 1)]);
        let c = Condition::compile(&cond, &nodes, "when").unwrap();
        let s = S {
            input: json!({"topic": "rust", "n": 3, "tags": ["x", "y"], "a/b": 1}),
            outputs: vec![
                Some(json!({"score": 0.8, "label": "Good", "items": [{"k": 1}]})),
                None,
            ],
        };
        c.eval(&s)
    }

    #[test]
    fn operators() {
        assert!(check(json!({"path": "/input/topic", "eq": "rust"})));
        assert!(check(json!({"path": "/input/n", "eq": 3.0})));
        assert!(check(json!({"path": "/input/n", "ne": 4})));
        assert!(check(json!({"path": "/outputs/a/score", "gt": 0.5})));
        assert!(!check(json!({"path": "/outputs/a/score", "lt": 0.5})));
        assert!(check(json!({"path": "/input/n", "gte": 3})));
        assert!(check(json!({"path": "/input/n", "lte": 3})));
        assert!(check(json!({"path": "/input/topic", "in": ["go", "rust"]})));
        assert!(check(json!({"path": "/input/tags", "contains": "y"})));
        assert!(check(json!({"path": "/input/topic", "contains": "us"})));
        assert!(check(json!({"path": "/outputs/a/label", "matches": "^G"})));
        assert!(check(json!({"path": "/outputs/a/items/0/k", "eq": 1})));
        assert!(check(json!({"path": "/input/a~1b", "eq": 1})));
        assert!(check(json!({"path": "/visits/b", "eq": 3})));
        assert!(check(json!({"path": "/outputs/b/x", "exists": false})));
        assert!(
            !check(json!({"path": "/outputs/b/x", "ne": 1})),
            "missing path is false except exists:false"
        );
        assert!(
            !check(json!({"path": "/input/topic", "gt": 1})),
            "string vs number never compares"
        );
    }

    #[test]
    fn combinators() {
        assert!(check(
            json!({"all": [{"path": "/input/n", "eq": 3}, {"not": {"path": "/input/topic", "eq": "go"}}]})
        ));
        assert!(check(
            json!({"any": [{"path": "/input/n", "eq": 9}, {"path": "/input/n", "eq": 3}]})
        ));
        assert!(!check(
            json!({"all": [{"path": "/input/n", "eq": 9}, {"path": "/input/n", "eq": 3}]})
        ));
    }
}
