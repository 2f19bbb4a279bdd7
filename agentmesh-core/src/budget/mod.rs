//! Budgets (docs/budgets.md): what calls cost (the price table), what may be spent (limits),
//! and how parallel activations share what is left (leases). Reservation before calls and
//! settlement after them build on these.

mod lease;
mod limits;
mod prices;
mod reserve;

pub use lease::split as split_leases;
pub use limits::{Amounts, Dimension, Limits};
pub use prices::{ModelPrice, Price, PriceTable, TokenPrices};
pub use reserve::{reserve_llm, LlmAsk, Reservation};
