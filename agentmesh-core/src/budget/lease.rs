//! Leases: how what is left of a budget is shared among the activations a step schedules, from
//! data only, so parallel agents never race for the last unit (docs/budgets.md "Leases").
//!
//! Per limited dimension, max-min fair shares ("water filling"): an activation whose own cap
//! (its node's or agent's budget) is below an even share of what is left gets its cap; what
//! it does not take is shared evenly among the others; the units an even split leaves over go
//! one each to the first activations in scheduling order. So the shares sum to exactly what is
//! left (or to the caps, when they are all smaller), and the same inputs always give the same
//! leases: with one call left and a hundred agents, the first one scheduled gets it.

use super::limits::{Dimension, Limits};

/// Split `left` (what remains of the enclosing budget) among activations with their own
/// `caps` (each activation's tightest own limit, `Limits::UNLIMITED` when none), in
/// scheduling order. Returns one lease per activation, in the same order. A dimension the
/// enclosing budget does not limit is limited only by each activation's cap.
pub fn split(left: &Limits, caps: &[Limits]) -> Vec<Limits> {
    let mut leases = caps.to_vec();
    for d in Dimension::ALL {
        let Some(total) = left.get(d) else { continue };
        let wanted: Vec<Option<u64>> = caps.iter().map(|c| c.get(d)).collect();
        for (lease, share) in leases.iter_mut().zip(fair_shares(total, &wanted)) {
            *lease = lease.with(d, Some(share));
        }
    }
    leases
}

/// Max-min fair shares of `total` for claimants capped at `caps` (`None`: no cap).
fn fair_shares(total: u64, caps: &[Option<u64>]) -> Vec<u64> {
    let n = caps.len();
    let mut shares = vec![0u64; n];
    if n == 0 {
        return shares;
    }
    // Capped claimants, smallest cap first (ties in scheduling order).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (caps[i].unwrap_or(u64::MAX), i));
    let mut left = total;
    let mut open: Vec<usize> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        let remaining = (n - k) as u64;
        match caps[i] {
            Some(cap) if cap <= left / remaining => {
                shares[i] = cap;
                left -= cap;
            }
            _ => {
                open.extend_from_slice(&order[k..]);
                break;
            }
        }
    }
    if open.is_empty() {
        return shares;
    }
    // Everyone left is capped above the even share: split evenly, the remainder to the first
    // in scheduling order.
    open.sort_unstable();
    let m = open.len() as u64;
    let (even, extra) = (left / m, left % m);
    for (j, &i) in open.iter().enumerate() {
        shares[i] = even + u64::from((j as u64) < extra);
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn calls(n: Option<u64>) -> Limits {
        Limits::UNLIMITED.with(Dimension::Calls, n)
    }

    #[test]
    fn one_call_among_a_hundred_goes_to_the_first_scheduled() {
        let leases = split(&calls(Some(1)), &vec![Limits::UNLIMITED; 100]);
        assert_eq!(leases[0].get(Dimension::Calls), Some(1));
        assert!(leases[1..]
            .iter()
            .all(|l| l.get(Dimension::Calls) == Some(0)));
        // Unlimited dimensions stay unlimited.
        assert!(leases.iter().all(|l| l.get(Dimension::MicroUsd).is_none()));
    }

    #[test]
    fn caps_first_then_an_even_split_with_the_remainder_in_order() {
        let caps = [calls(Some(2)), calls(None), calls(Some(100)), calls(None)];
        let got: Vec<_> = split(&calls(Some(31)), &caps)
            .iter()
            .map(|l| l.get(Dimension::Calls).unwrap())
            .collect();
        // 2 to the small cap; 29 over three: 10, 10, 9 in scheduling order (the cap of 100
        // is above its share).
        assert_eq!(got, vec![2, 10, 10, 9]);
        // No enclosing limit: each activation keeps its own cap.
        let free = split(&Limits::UNLIMITED, &caps);
        assert_eq!(free[0].get(Dimension::Calls), Some(2));
        assert_eq!(free[1].get(Dimension::Calls), None);
    }

    proptest! {
        #[test]
        fn shares_never_pass_caps_and_sum_exactly(
            total in 0u64..10_000,
            caps in proptest::collection::vec(proptest::option::of(0u64..5_000), 0..40),
        ) {
            let shares = fair_shares(total, &caps);
            prop_assert_eq!(shares.len(), caps.len());
            for (s, c) in shares.iter().zip(&caps) {
                if let Some(c) = c { prop_assert!(s <= c); }
            }
            let sum: u64 = shares.iter().sum();
            let capped: u64 = caps.iter().map(|c| c.unwrap_or(u64::MAX).min(total)).fold(0u64, |a, b| a.saturating_add(b));
            // Everything is handed out unless every claimant is capped below it.
            prop_assert_eq!(sum, total.min(capped));
            // Deterministic.
            prop_assert_eq!(fair_shares(total, &caps), shares);
        }
    }
}
