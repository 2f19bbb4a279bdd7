//! Budget limits and amounts: what may be spent, in five dimensions, as integers.
//!
//! A limit is a whole number (`0`: nothing may be spent) or the string `"unlimited"`; a
//! dimension left out is unlimited. Anything else — a negative, a fraction, a number past
//! 2^64-1, a boolean, NaN or an infinity a host passes — is refused, naming the field.

use serde::de::{Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// The dimensions a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Prompt tokens.
    InputTokens,
    /// Completion tokens.
    OutputTokens,
    /// Prompt plus completion tokens.
    TotalTokens,
    /// Cost in micro-USD.
    MicroUsd,
    /// Calls made.
    Calls,
}

impl Dimension {
    /// Every dimension, in the order the log writes them.
    pub const ALL: [Dimension; 5] = [
        Dimension::InputTokens,
        Dimension::OutputTokens,
        Dimension::TotalTokens,
        Dimension::MicroUsd,
        Dimension::Calls,
    ];

    /// The field name (`inputTokens`, `microUsd`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::InputTokens => "inputTokens",
            Dimension::OutputTokens => "outputTokens",
            Dimension::TotalTokens => "totalTokens",
            Dimension::MicroUsd => "microUsd",
            Dimension::Calls => "calls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An amount in every dimension (spent, reserved, asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts([u64; 5]);

impl Amounts {
    /// Nothing.
    pub const ZERO: Amounts = Amounts([0; 5]);

    /// `tokens` in and out, `micro_usd`, and `calls`; total tokens is their sum (saturating).
    pub fn of(input: u64, output: u64, micro_usd: u64, calls: u64) -> Amounts {
        Amounts([
            input,
            output,
            input.saturating_add(output),
            micro_usd,
            calls,
        ])
    }

    /// The amount in `d`.
    pub fn get(&self, d: Dimension) -> u64 {
        self.0[d.index()]
    }

    /// `self + other` in every dimension, saturating.
    pub fn plus(&self, other: &Amounts) -> Amounts {
        Amounts(std::array::from_fn(|i| {
            self.0[i].saturating_add(other.0[i])
        }))
    }

    /// `self - other` in every dimension, stopping at zero.
    pub fn minus(&self, other: &Amounts) -> Amounts {
        Amounts(std::array::from_fn(|i| {
            self.0[i].saturating_sub(other.0[i])
        }))
    }
}

/// A limit per dimension; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits([Option<u64>; 5]);

impl Limits {
    /// No limit in any dimension.
    pub const UNLIMITED: Limits = Limits([None; 5]);

    /// The limit in `d`.
    pub fn get(&self, d: Dimension) -> Option<u64> {
        self.0[d.index()]
    }

    /// With `limit` in `d`.
    pub fn with(mut self, d: Dimension, limit: Option<u64>) -> Limits {
        self.0[d.index()] = limit;
        self
    }

    /// Whether no dimension is limited.
    pub fn is_unlimited(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// The tighter of two limits in every dimension.
    pub fn tightest(&self, other: &Limits) -> Limits {
        Limits(std::array::from_fn(|i| match (self.0[i], other.0[i]) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }))
    }

    /// What is left of these limits after `spent` (`None`: unlimited).
    pub fn left(&self, spent: &Amounts) -> Limits {
        Limits(std::array::from_fn(|i| {
            self.0[i].map(|l| l.saturating_sub(spent.0[i]))
        }))
    }

    /// The first dimension where `spent + asked` passes the limit, if any.
    pub fn exceeded_by(&self, spent: &Amounts, asked: &Amounts) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|&d| {
            self.get(d)
                .is_some_and(|l| spent.get(d).saturating_add(asked.get(d)) > l)
        })
    }

    /// Read a `budget` object. `at` names it in errors (`budget`, `budgets.agents.writer`);
    /// `node` is the node it belongs to, if any.
    ///
    /// Errors: `INVALID_WORKFLOW` naming the node and field (`budget.microUsd`).
    pub fn from_value(value: &Value, node: Option<&str>, at: &str) -> Result<Limits> {
        let bad = |field: String, why: String| Error::invalid_workflow(node, &field, why);
        let Value::Object(map) = value else {
            return Err(bad(
                at.to_owned(),
                format!(
                    "a budget is an object of limits ({}), not {}",
                    Dimension::ALL.map(Dimension::as_str).join(", "),
                    kind_of(value)
                ),
            ));
        };
        let mut limits = Limits::UNLIMITED;
        for (key, v) in map {
            let Some(d) = Dimension::parse(key) else {
                return Err(bad(
                    format!("{at}.{key}"),
                    format!(
                        "unknown budget dimension (known: {})",
                        Dimension::ALL.map(Dimension::as_str).join(", ")
                    ),
                ));
            };
            limits = limits.with(
                d,
                limit_of(v).map_err(|why| bad(format!("{at}.{key}"), why))?,
            );
        }
        Ok(limits)
    }
}

impl Limits {
    /// Read a run's `budget` option (what replaces the workflow's budget), as
    /// [`Limits::from_value`] does.
    ///
    /// Errors: `INVALID_ARGUMENT` naming the field (`budget.microUsd: ...`).
    pub fn from_option(value: &Value) -> Result<Limits> {
        Limits::from_value(value, None, "budget").map_err(|e| {
            let message = e.message().strip_prefix("field ").unwrap_or(e.message());
            Error::new(
                crate::error::ErrorKind::InvalidArgument,
                format!("run option {message}"),
            )
        })
    }
}

/// The largest float every whole number up to is exact (2^53).
const EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// A limit's value: a whole number from 0 to 2^64-1, or `"unlimited"`.
fn limit_of(v: &Value) -> std::result::Result<Option<u64>, String> {
    match v {
        Value::String(s) if s == "unlimited" => Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Ok(Some(u)),
            (None, Some(_), _) => Err(format!("a limit is not negative, not {n}")),
            // A whole number written as a float (`5.0`, what a Python float gives) is that
            // number while it is exact.
            (None, None, Some(f)) if f.fract() == 0.0 && (0.0..=EXACT_FLOAT).contains(&f) => {
                Ok(Some(f as u64))
            }
            (None, None, Some(f)) if f.fract() == 0.0 && f > 0.0 => Err(format!(
                "{n} is more than a limit written as a float holds exactly (write an integer, at most {})",
                u64::MAX
            )),
            (None, None, Some(f)) if f < 0.0 => Err(format!("a limit is not negative, not {n}")),
            _ => Err(format!("a limit is a whole number, not {n}")),
        },
        other => Err(format!(
            "a limit is a whole number or \"unlimited\", not {}",
            kind_of(other)
        )),
    }
}

impl Dimension {
    /// The dimension named `name` (`inputTokens`, `microUsd`, ...).
    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

impl Serialize for Dimension {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Dimension {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Dimension, D::Error> {
        let name = String::deserialize(d)?;
        Dimension::parse(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown budget dimension '{name}'")))
    }
}

/// In the log and in workflows a budget is an object of its limited dimensions, in
/// [`Dimension::ALL`] order (`{"microUsd": 5000000, "calls": 10}`); unlimited ones are left
/// out, so `"unlimited"` written in a workflow is not in its canonical form.
impl Serialize for Limits {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let limited: Vec<(Dimension, u64)> = Dimension::ALL
            .into_iter()
            .filter_map(|d| self.get(d).map(|l| (d, l)))
            .collect();
        let mut map = s.serialize_map(Some(limited.len()))?;
        for (d, l) in limited {
            map.serialize_entry(d.as_str(), &l)?;
        }
        map.end()
    }
}

/// Read as [`Limits::from_value`] does, one key at a time, so an error names its field
/// (`budget.calls`).
impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Limits, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Limits;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "a budget: an object of limits ({})",
                    Dimension::ALL.map(Dimension::as_str).join(", ")
                )
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Limits, A::Error> {
                let mut limits = Limits::UNLIMITED;
                while let Some(key) = map.next_key::<String>()? {
                    let Some(d) = Dimension::parse(&key) else {
                        // Refused while reading its value, so the error's path names the key.
                        let Unknown = map.next_value()?;
                        unreachable!("an unknown dimension's value is refused");
                    };
                    let LimitValue(l) = map.next_value()?;
                    limits = limits.with(d, l);
                }
                Ok(limits)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The value of a key that is no dimension: refused whatever it is.
struct Unknown;

impl<'de> Deserialize<'de> for Unknown {
    fn deserialize<D: Deserializer<'de>>(_: D) -> std::result::Result<Unknown, D::Error> {
        Err(D::Error::custom(format!(
            "unknown budget dimension (known: {})",
            Dimension::ALL.map(Dimension::as_str).join(", ")
        )))
    }
}

/// One limit as written: a whole number or `"unlimited"`.
struct LimitValue(Option<u64>);

impl<'de> Deserialize<'de> for LimitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<LimitValue, D::Error> {
        let v = Value::deserialize(d)?;
        limit_of(&v).map(LimitValue).map_err(D::Error::custom)
    }
}

/// In the log an amount is an object of its non-zero dimensions except `totalTokens` (the
/// sum of the two token counts): `{"inputTokens": 812, "outputTokens": 96, "microUsd":
/// 1400, "calls": 1}`.
impl Serialize for Amounts {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let parts: Vec<(Dimension, u64)> = Dimension::ALL
            .into_iter()
            .filter(|&d| d != Dimension::TotalTokens && self.get(d) != 0)
            .map(|d| (d, self.get(d)))
            .collect();
        let mut map = s.serialize_map(Some(parts.len()))?;
        for (d, n) in parts {
            map.serialize_entry(d.as_str(), &n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Amounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Amounts, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Wire {
            #[serde(default)]
            input_tokens: u64,
            #[serde(default)]
            output_tokens: u64,
            #[serde(default)]
            micro_usd: u64,
            #[serde(default)]
            calls: u64,
        }
        let w = Wire::deserialize(d)?;
        Ok(Amounts::of(
            w.input_tokens,
            w.output_tokens,
            w.micro_usd,
            w.calls,
        ))
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    #[test]
    fn limits_read_whole_numbers_and_unlimited() {
        let l = Limits::from_value(
            &json!({"microUsd": 5_000_000, "calls": 0, "inputTokens": "unlimited", "totalTokens": u64::MAX}),
            None,
            "budget",
        )
        .unwrap();
        assert_eq!(l.get(Dimension::MicroUsd), Some(5_000_000));
        assert_eq!(l.get(Dimension::Calls), Some(0));
        assert_eq!(l.get(Dimension::InputTokens), None);
        assert_eq!(l.get(Dimension::OutputTokens), None);
        assert_eq!(l.get(Dimension::TotalTokens), Some(u64::MAX));
        assert!(Limits::from_value(&json!({}), None, "budget")
            .unwrap()
            .is_unlimited());
        let f = Limits::from_value(&json!({"calls": 5.0}), None, "budget").unwrap();
        assert_eq!(f.get(Dimension::Calls), Some(5));
    }

    #[test]
    fn bad_limits_name_the_node_and_field() {
        let cases = [
            (json!({"microUsd": -1}), "budget.microUsd", "not negative"),
            (json!({"calls": 1.5}), "budget.calls", "whole number"),
            (
                json!({"calls": 1e30}),
                "budget.calls",
                "more than a limit written as a float holds",
            ),
            (json!({"calls": -1e30}), "budget.calls", "not negative"),
            (json!({"calls": true}), "budget.calls", "not true"),
            (json!({"calls": null}), "budget.calls", "not null"),
            (
                json!({"calls": "lots"}),
                "budget.calls",
                "the string \"lots\"",
            ),
            (
                json!({"dollars": 1}),
                "budget.dollars",
                "unknown budget dimension",
            ),
            (json!([1]), "budget", "not an array"),
        ];
        for (v, field, why) in cases {
            let e = Limits::from_value(&v, Some("writer"), "budget").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidWorkflow);
            assert!(
                e.message()
                    .starts_with(&format!("node 'writer', field '{field}': "))
                    && e.message().contains(why),
                "{v}: {}",
                e.message()
            );
        }
    }

    #[test]
    fn arithmetic_saturates_and_finds_the_first_exceeded_dimension() {
        let l = Limits::UNLIMITED
            .with(Dimension::Calls, Some(2))
            .with(Dimension::MicroUsd, Some(100));
        let spent = Amounts::of(10, 5, 60, 1);
        assert_eq!(spent.get(Dimension::TotalTokens), 15);
        assert_eq!(l.exceeded_by(&spent, &Amounts::of(0, 0, 40, 1)), None);
        assert_eq!(
            l.exceeded_by(&spent, &Amounts::of(0, 0, 41, 1)),
            Some(Dimension::MicroUsd)
        );
        assert_eq!(
            l.exceeded_by(&spent, &Amounts::of(0, 0, 0, 2)),
            Some(Dimension::Calls)
        );
        assert_eq!(l.left(&spent).get(Dimension::MicroUsd), Some(40));
        let big = Amounts::of(u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(big.plus(&big).get(Dimension::InputTokens), u64::MAX);
        assert_eq!(Amounts::ZERO.minus(&big), Amounts::ZERO);
        let tight = l.tightest(&Limits::UNLIMITED.with(Dimension::Calls, Some(1)));
        assert_eq!(
            (tight.get(Dimension::Calls), tight.get(Dimension::MicroUsd)),
            (Some(1), Some(100))
        );
    }
}
