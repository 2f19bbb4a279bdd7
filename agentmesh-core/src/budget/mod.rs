//! Budgets (docs/budgets.md): what calls cost. The price table is the first part; limits,
//! reservations and leases build on it.

mod prices;

pub use prices::{ModelPrice, Price, PriceTable, TokenPrices};
