//! What an LLM call reserves before it is sent: its worst case (the estimated prompt plus
//! `max_tokens` of completion, priced), checked against what is left of its lease. When it
//! does not fit, the call is either clamped (a smaller `max_tokens`, when the call allows it
//! and at least its minimum fits) or refused — before anything is sent.

use super::limits::{Amounts, Dimension, Limits};
use super::prices::TokenPrices;
use crate::model::failure::Usage;

/// An LLM call about to be made, as a budget sees it.
#[derive(Debug, Clone, Copy)]
pub struct LlmAsk<'a> {
    /// Its model's prices (`None`: a call whose cost is not counted, such as one to a model
    /// a host priced at zero on purpose; a missing price is an error before this).
    pub prices: Option<&'a TokenPrices>,
    /// Estimated prompt tokens.
    pub input_tokens: u64,
    /// The completion tokens it asks for at most.
    pub max_tokens: u64,
    /// `Some(n)`: it may be clamped to any `max_tokens` from `n` up; `None`: it runs as asked
    /// or not at all.
    pub clamp_to_at_least: Option<u64>,
}

/// What a budget decides for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// It fits as asked; reserve `amounts`.
    Fits {
        /// Reserved.
        amounts: Amounts,
    },
    /// It fits with a smaller `max_tokens`; send that and reserve `amounts`.
    Clamped {
        /// The `max_tokens` to send.
        max_tokens: u64,
        /// Reserved.
        amounts: Amounts,
    },
    /// It does not fit: nothing is sent.
    Refused {
        /// The first dimension it does not fit in.
        dimension: Dimension,
        /// What is left there.
        left: u64,
        /// What the call needs there (at its smallest allowed `max_tokens`).
        requested: u64,
    },
}

impl LlmAsk<'_> {
    /// The worst case of this call with `max_tokens` completion tokens.
    pub fn amounts(&self, max_tokens: u64) -> Amounts {
        let cost = self.prices.map_or(0, |p| {
            p.cost_micro_usd(&Usage::tokens(self.input_tokens, max_tokens))
        });
        Amounts::of(self.input_tokens, max_tokens, cost, 1)
    }
}

/// Decide `ask` against `left` (what is left of the call's lease).
pub fn reserve_llm(left: &Limits, ask: &LlmAsk<'_>) -> Reservation {
    let fits = |max_tokens: u64| left.exceeded_by(&Amounts::ZERO, &ask.amounts(max_tokens));
    let Some(refused_at) = fits(ask.max_tokens) else {
        return Reservation::Fits {
            amounts: ask.amounts(ask.max_tokens),
        };
    };
    let refuse = |max_tokens: u64, d: Dimension| Reservation::Refused {
        dimension: d,
        left: left.get(d).unwrap_or(u64::MAX),
        requested: ask.amounts(max_tokens).get(d),
    };
    let Some(min) = ask.clamp_to_at_least.filter(|&m| m < ask.max_tokens) else {
        return refuse(ask.max_tokens, refused_at);
    };
    if let Some(d) = fits(min) {
        return refuse(min, d);
    }
    // The worst case grows with max_tokens: the largest that fits, by bisection (min fits,
    // max_tokens does not).
    let (mut lo, mut hi) = (min, ask.max_tokens);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid).is_none() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Reservation::Clamped {
        max_tokens: lo,
        amounts: ask.amounts(lo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::prices::Price;

    fn prices() -> TokenPrices {
        // $1 per million input tokens, $4 per million output tokens.
        TokenPrices {
            input: Price::Flat(1_000_000),
            output: Price::Flat(4_000_000),
            cached_input: None,
            cache_write: None,
            reasoning: None,
        }
    }

    fn usd(left: u64) -> Limits {
        Limits::UNLIMITED.with(Dimension::MicroUsd, Some(left))
    }

    #[test]
    fn a_call_that_fits_reserves_its_worst_case() {
        let p = prices();
        let ask = LlmAsk {
            prices: Some(&p),
            input_tokens: 1_000,
            max_tokens: 500,
            clamp_to_at_least: None,
        };
        // 1,000 × 1 + 500 × 4 = 3,000 µUSD.
        assert_eq!(
            reserve_llm(&usd(3_000), &ask),
            Reservation::Fits {
                amounts: Amounts::of(1_000, 500, 3_000, 1)
            }
        );
    }

    #[test]
    fn a_call_that_does_not_fit_is_clamped_to_the_largest_max_tokens_that_does() {
        let p = prices();
        let ask = LlmAsk {
            prices: Some(&p),
            input_tokens: 1_000,
            max_tokens: 500,
            clamp_to_at_least: Some(100),
        };
        // 2,000 µUSD left: 1,000 for the prompt, 250 output tokens.
        assert_eq!(
            reserve_llm(&usd(2_000), &ask),
            Reservation::Clamped {
                max_tokens: 250,
                amounts: Amounts::of(1_000, 250, 2_000, 1)
            }
        );
        // Output-token limits clamp too.
        let out = Limits::UNLIMITED.with(Dimension::TotalTokens, Some(1_300));
        assert!(matches!(
            reserve_llm(&out, &ask),
            Reservation::Clamped {
                max_tokens: 300,
                ..
            }
        ));
    }

    #[test]
    fn a_call_below_its_minimum_or_not_clampable_is_refused_naming_the_dimension() {
        let p = prices();
        let mut ask = LlmAsk {
            prices: Some(&p),
            input_tokens: 1_000,
            max_tokens: 500,
            clamp_to_at_least: Some(300),
        };
        assert_eq!(
            reserve_llm(&usd(2_000), &ask),
            Reservation::Refused {
                dimension: Dimension::MicroUsd,
                left: 2_000,
                requested: 2_200
            }
        );
        ask.clamp_to_at_least = None;
        assert_eq!(
            reserve_llm(&usd(2_000), &ask),
            Reservation::Refused {
                dimension: Dimension::MicroUsd,
                left: 2_000,
                requested: 3_000
            }
        );
        // Zero left: the first paid call is refused before it is sent.
        let none = Limits::UNLIMITED.with(Dimension::Calls, Some(0));
        assert_eq!(
            reserve_llm(&none, &ask),
            Reservation::Refused {
                dimension: Dimension::Calls,
                left: 0,
                requested: 1
            }
        );
        // A prompt that alone does not fit is refused even when clamping is allowed.
        ask.clamp_to_at_least = Some(0);
        assert!(matches!(
            reserve_llm(&usd(999), &ask),
            Reservation::Refused {
                requested: 1_000,
                ..
            }
        ));
    }

    proptest::proptest! {
        #[test]
        fn clamping_takes_the_largest_max_tokens_that_fits(
            left in 0u64..20_000,
            input in 0u64..5_000,
            max in 0u64..5_000,
            min in proptest::option::of(0u64..5_000),
        ) {
            let p = prices();
            let ask = LlmAsk { prices: Some(&p), input_tokens: input, max_tokens: max, clamp_to_at_least: min };
            let limits = usd(left);
            let fits = |m: u64| limits.exceeded_by(&Amounts::ZERO, &ask.amounts(m)).is_none();
            match reserve_llm(&limits, &ask) {
                Reservation::Fits { amounts } => {
                    proptest::prop_assert!(fits(max));
                    proptest::prop_assert_eq!(amounts, ask.amounts(max));
                }
                Reservation::Clamped { max_tokens, .. } => {
                    proptest::prop_assert!(min.unwrap() <= max_tokens && max_tokens < max);
                    proptest::prop_assert!(fits(max_tokens) && !fits(max_tokens + 1));
                }
                Reservation::Refused { .. } => {
                    proptest::prop_assert!(!fits(max));
                    if let Some(m) = min.filter(|&m| m < max) {
                        proptest::prop_assert!(!fits(m));
                    }
                }
            }
        }
    }
}
