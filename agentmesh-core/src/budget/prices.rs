//! A versioned price table: what a model's tokens cost, in integer micro-USD per million
//! tokens, so money is never a float in the core.
//!
//! The bundled table (`data/prices.json`) is generated from the genai-prices data (MIT, by
//! Pydantic; `data/tools/from_genai_prices.py` says how and keeps the source and date in the
//! table). A user table is merged over it: its entries are looked at first. Lookups need the
//! provider's id (`openai`, `anthropic`, `google`, ...): the same model name costs different
//! amounts at different providers, and a price is never guessed across them. A model the
//! table does not know has no price (`None`), never a price of zero.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::failure::Usage;

/// The format version of price tables this core reads.
const TABLE_VERSION: u32 = 1;
/// A regex in a match rule compiles to at most this much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

static BUNDLED: &str = include_str!("../../data/prices.json");

/// Prices per provider and model, looked up by the provider's id and the model name a call
/// reports.
#[derive(Debug, Clone)]
pub struct PriceTable {
    source: String,
    as_of: String,
    models: Vec<ModelPrice>,
    /// The indexes of each provider's entries in `models`, in order (a lookup scans one
    /// provider's entries, not the whole table).
    by_provider: HashMap<String, Vec<usize>>,
    /// Micro-USD per call of each priced tool.
    tools: HashMap<String, u64>,
    hash: String,
}

/// One model's prices at one provider, and which model names they are for.
#[derive(Debug, Clone)]
pub struct ModelPrice {
    /// The provider's id.
    pub provider: String,
    /// The model's id in the table.
    pub model: String,
    /// What its tokens cost.
    pub prices: TokenPrices,
    rule: Rule,
}

/// Micro-USD per million tokens of each kind. Kinds without a price of their own cost what
/// input (cache reads and writes) or output (reasoning) tokens cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenPrices {
    /// Prompt tokens.
    pub input: Price,
    /// Completion tokens.
    pub output: Price,
    /// Prompt tokens read from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Price>,
    /// Prompt tokens written to the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Price>,
    /// Reasoning tokens (part of the completion tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Price>,
}

/// A price in micro-USD per million tokens: one rate, or rates by the size of the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Price {
    /// The same rate for any prompt.
    Flat(u64),
    /// `base`, or the rate of the last tier whose `above` the prompt's input tokens exceed
    /// (applied to all the tokens of that kind, as providers bill long prompts).
    Tiered {
        /// The rate up to the first tier.
        base: u64,
        /// Rates for prompts longer than `above` input tokens, in increasing `above`.
        tiers: Vec<Tier>,
    },
}

/// A rate for prompts longer than `above` input tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Input tokens the prompt exceeds.
    pub above: u64,
    /// Micro-USD per million tokens.
    pub price: u64,
}

impl Price {
    fn rate(&self, input_tokens: u64) -> u64 {
        match self {
            Price::Flat(p) => *p,
            Price::Tiered { base, tiers } => tiers
                .iter()
                .rev()
                .find(|t| input_tokens > t.above)
                .map_or(*base, |t| t.price),
        }
    }
}

impl TokenPrices {
    /// What `usage` costs, in micro-USD, rounded up (a fraction of a micro-USD is charged as
    /// one, never dropped). Saturates at `u64::MAX`.
    pub fn cost_micro_usd(&self, usage: &Usage) -> u64 {
        let input = usage.input_tokens;
        let cached = usage.cached_input_tokens.min(input);
        let written = usage.cache_write_tokens.min(input - cached);
        let plain = input - cached - written;
        let reasoning = usage.reasoning_tokens.min(usage.output_tokens);
        let completion = usage.output_tokens - reasoning;
        let rate = |p: &Price| u128::from(p.rate(input));
        let input_rate = rate(&self.input);
        let output_rate = rate(&self.output);
        let or = |p: &Option<Price>, fallback: u128| p.as_ref().map_or(fallback, rate);
        let total = u128::from(plain) * input_rate
            + u128::from(cached) * or(&self.cached_input, input_rate)
            + u128::from(written) * or(&self.cache_write, input_rate)
            + u128::from(completion) * output_rate
            + u128::from(reasoning) * or(&self.reasoning, output_rate);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Which model names an entry prices.
#[derive(Debug, Clone)]
enum Rule {
    Equals(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(Regex),
    Or(Vec<Rule>),
    And(Vec<Rule>),
    Not(Box<Rule>),
}

impl Rule {
    fn matches(&self, model: &str) -> bool {
        match self {
            Rule::Equals(s) => model == s,
            Rule::StartsWith(s) => model.starts_with(s.as_str()),
            Rule::EndsWith(s) => model.ends_with(s.as_str()),
            Rule::Contains(s) => model.contains(s.as_str()),
            Rule::Regex(r) => r.is_match(model),
            Rule::Or(rules) => rules.iter().any(|r| r.matches(model)),
            Rule::And(rules) => rules.iter().all(|r| r.matches(model)),
            Rule::Not(rule) => !rule.matches(model),
        }
    }
}

/// A match rule as the table's JSON writes it (`{"equals": "gpt-4o"}`, `{"or": [...]}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum RuleSpec {
    Equals(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(String),
    Or(Vec<RuleSpec>),
    And(Vec<RuleSpec>),
    Not(Box<RuleSpec>),
}

impl RuleSpec {
    fn compile(&self, at: &str) -> Result<Rule> {
        let all = |rules: &[RuleSpec], kind: &str| {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| r.compile(&format!("{at}.{kind}[{i}]")))
                .collect::<Result<Vec<_>>>()
        };
        Ok(match self {
            RuleSpec::Equals(s) => Rule::Equals(s.clone()),
            RuleSpec::StartsWith(s) => Rule::StartsWith(s.clone()),
            RuleSpec::EndsWith(s) => Rule::EndsWith(s.clone()),
            RuleSpec::Contains(s) => Rule::Contains(s.clone()),
            RuleSpec::Regex(p) => Rule::Regex(
                RegexBuilder::new(p)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| invalid(format!("{at}.regex: {e}")))?,
            ),
            RuleSpec::Or(rules) => Rule::Or(all(rules, "or")?),
            RuleSpec::And(rules) => Rule::And(all(rules, "and")?),
            RuleSpec::Not(rule) => Rule::Not(Box::new(rule.compile(&format!("{at}.not"))?)),
        })
    }
}

/// A table as its JSON writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TableSpec {
    version: u32,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    as_of: Option<String>,
    models: Vec<ModelSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolSpec>,
}

/// A tool's price: micro-USD per call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ToolSpec {
    name: String,
    per_call: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelSpec {
    provider: String,
    model: String,
    #[serde(rename = "match")]
    rule: RuleSpec,
    prices: TokenPrices,
}

fn invalid(message: String) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("price table: {message}"),
    )
}

impl PriceTable {
    /// The table bundled with this library (parsed once).
    pub fn bundled() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            PriceTable::from_json(BUNDLED).expect("the bundled price table is valid")
        })
    }

    /// Read a table from its JSON text (`{"version": 1, "models": [{"provider", "model",
    /// "match", "prices"}]}`, prices in micro-USD per million tokens).
    ///
    /// Errors: `INVALID_ARGUMENT` naming the field (an unknown field, a price that is not a
    /// non-negative integer, an invalid regex, an unknown version).
    pub fn from_json(text: &str) -> Result<PriceTable> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let spec: TableSpec = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("at {}: {}", e.path(), e.inner())))?;
        if spec.version != TABLE_VERSION {
            return Err(invalid(format!(
                "version {} is not {TABLE_VERSION}, the version this library reads",
                spec.version
            )));
        }
        PriceTable::compile(spec)
    }

    fn compile(spec: TableSpec) -> Result<PriceTable> {
        let models = spec
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(ModelPrice {
                    provider: m.provider.clone(),
                    model: m.model.clone(),
                    prices: m.prices.clone(),
                    rule: m.rule.compile(&format!("models[{i}].match"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut tools = HashMap::new();
        for (i, t) in spec.tools.iter().enumerate() {
            if t.name.is_empty() || tools.insert(t.name.clone(), t.per_call).is_some() {
                return Err(invalid(format!(
                    "at tools[{i}].name: a tool is priced once, under a non-empty name"
                )));
            }
        }
        let bytes = serde_json::to_vec(&spec).expect("a table serializes");
        let mut table = PriceTable::indexed(
            spec.source.unwrap_or_default(),
            spec.as_of.unwrap_or_default(),
            models,
            blake3::hash(&bytes).to_hex().to_string(),
        );
        table.tools = tools;
        Ok(table)
    }

    fn indexed(source: String, as_of: String, models: Vec<ModelPrice>, hash: String) -> PriceTable {
        let mut by_provider: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            by_provider.entry(m.provider.clone()).or_default().push(i);
        }
        PriceTable {
            source,
            as_of,
            models,
            by_provider,
            tools: HashMap::new(),
            hash,
        }
    }

    /// This table with `over`'s entries looked at first (a user's prices and models over the
    /// bundled ones). The merged table has a hash of its own.
    pub fn merged(&self, over: &PriceTable) -> PriceTable {
        let mut models = over.models.clone();
        models.extend(self.models.iter().cloned());
        let hash = blake3::hash(format!("{}+{}", over.hash, self.hash).as_bytes());
        let mut table = PriceTable::indexed(
            format!("{} over {}", over.source, self.source),
            over.as_of.clone(),
            models,
            hash.to_hex().to_string(),
        );
        table.tools = self.tools.clone();
        table
            .tools
            .extend(over.tools.iter().map(|(k, v)| (k.clone(), *v)));
        table
    }

    /// What one call of tool `name` costs, in micro-USD (`None`: the table does not price it;
    /// a budget counts such a call as one call at 0 µUSD).
    pub fn tool(&self, name: &str) -> Option<u64> {
        self.tools.get(name).copied()
    }

    /// The prices of `model` at `provider`: the first entry of that provider whose rule
    /// matches the name; `None` when the table has none.
    pub fn find(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.by_provider
            .get(provider)?
            .iter()
            .map(|&i| &self.models[i])
            .find(|m| m.rule.matches(model))
    }

    /// blake3 of the table (hex): what a log records, so a replay knows which prices a run
    /// was charged at.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where the prices come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The date the prices were taken (`YYYY-MM-DD`).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// How many model entries the table has.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage::tokens(input, output)
    }

    #[test]
    fn the_bundled_table_prices_well_known_models() {
        let t = PriceTable::bundled();
        assert!(t.len() > 1000, "{}", t.len());
        assert!(t.source().contains("genai-prices") && t.source().contains("MIT"));
        assert_eq!(t.as_of(), "2026-12-02");
        let gpt4o = t.find("openai", "gpt-4o").unwrap();
        // $2.50 and $10 per million tokens.
        assert_eq!(gpt4o.prices.cost_micro_usd(&usage(1_000_000, 0)), 2_500_000);
        assert_eq!(
            gpt4o.prices.cost_micro_usd(&usage(0, 1_000_000)),
            10_000_000
        );
        assert_eq!(
            t.find("openai", "gpt-4o-2024-08-06").unwrap().model,
            "gpt-4o"
        );
        let sonnet = t.find("anthropic", "claude-sonnet-4-5-20250929").unwrap();
        // $3 / $15 per million tokens; over 200k prompt tokens, $6 / $22.50 for the whole call.
        let cost = |i, o| sonnet.prices.cost_micro_usd(&usage(i, o));
        assert_eq!(cost(100_000, 100_000), 300_000 + 1_500_000);
        assert_eq!(cost(1_000_000, 1_000_000), 6_000_000 + 22_500_000);
        // Not guessed across providers, never free when unknown.
        assert!(t.find("openai", "claude-sonnet-4-5").is_none());
        assert!(t.find("openai", "no-such-model").is_none());
        // A `not` rule (a lookahead in the source): the TTS model is priced separately.
        let pro = t.find("google", "gemini-2.5-pro").unwrap();
        assert_eq!(pro.model, "gemini-2.5-pro");
        assert!(
            t.find("google", "gemini-2.5-pro-preview-tts")
                .map(|m| m.model.as_str())
                != Some("gemini-2.5-pro")
        );
    }

    #[test]
    fn costs_round_up_tier_by_prompt_size_and_price_token_kinds() {
        let t = PriceTable::from_json(
            r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"equals": "m"},
                "prices": {"input": {"base": 1000000, "tiers": [{"above": 100, "price": 2000000}]},
                           "output": 4000000, "cachedInput": 100000, "reasoning": 8000000}}]}"#,
        )
        .unwrap();
        let p = &t.find("p", "m").unwrap().prices;
        // One input token at $1/Mtok is a millionth of a dollar: 1 µUSD; 1/10 of one rounds up.
        assert_eq!(p.cost_micro_usd(&usage(1, 0)), 1);
        let mut u = usage(10, 0);
        u.cached_input_tokens = 10;
        assert_eq!(p.cost_micro_usd(&u), 1, "1 µUSD, rounded up from 0.1 × 10");
        // Over 100 input tokens the whole prompt is at the tier's rate.
        assert_eq!(p.cost_micro_usd(&usage(100, 0)), 100);
        assert_eq!(p.cost_micro_usd(&usage(101, 0)), 202);
        // Reasoning tokens are part of the output and have their own rate.
        let mut u = usage(0, 10);
        u.reasoning_tokens = 4;
        assert_eq!(p.cost_micro_usd(&u), 6 * 4 + 4 * 8);
        // Counts beyond what fits saturate instead of wrapping.
        assert_eq!(p.cost_micro_usd(&usage(u64::MAX, u64::MAX)), u64::MAX);
    }

    #[test]
    fn a_user_table_is_looked_at_first_and_changes_the_hash() {
        let base = PriceTable::bundled();
        let mine = PriceTable::from_json(
            r#"{"version": 1, "source": "ours", "asOf": "2026-12-01", "models": [{"provider": "openai",
                "model": "gpt-4o", "match": {"startsWith": "gpt-4o"}, "prices": {"input": 1, "output": 2}}]}"#,
        )
        .unwrap();
        let merged = base.merged(&mine);
        assert_eq!(
            merged.find("openai", "gpt-4o").unwrap().prices.input,
            Price::Flat(1)
        );
        assert_eq!(merged.len(), base.len() + 1);
        assert_ne!(merged.hash(), base.hash());
        assert_eq!(base.hash(), PriceTable::from_json(BUNDLED).unwrap().hash());
        assert_eq!(base.hash().len(), 64);
    }

    #[test]
    fn invalid_tables_are_typed_errors_naming_the_field() {
        let cases = [
            (r#"{"version": 2, "models": []}"#, "version 2"),
            (r#"{"version": 1, "models": [], "extra": 1}"#, "extra"),
            (
                r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"equals": "m"}, "prices": {"input": -1, "output": 1}}]}"#,
                "models[0].prices",
            ),
            (
                r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"equals": "m"}, "prices": {"input": 1.5, "output": 1}}]}"#,
                "models[0].prices",
            ),
            (
                r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"or": [{"regex": "("}]}, "prices": {"input": 1, "output": 1}}]}"#,
                "models[0].match.or[0].regex",
            ),
            (
                r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"regex": "^(?!x)"}, "prices": {"input": 1, "output": 1}}]}"#,
                "models[0].match.regex",
            ),
            (
                r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"like": "m"}, "prices": {"input": 1, "output": 1}}]}"#,
                "models[0].match",
            ),
        ];
        for (text, field) in cases {
            let e = PriceTable::from_json(text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains(field), "{field}: {}", e.message());
        }
    }
}
