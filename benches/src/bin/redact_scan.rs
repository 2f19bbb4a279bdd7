//! Throughput of the built-in PII and secret detectors (`agentmesh_core::policy::detect`).
//!
//! ```text
//! cargo run --release -p agentmesh-benches --bin redact_scan
//! ```
//!
//! Prints MB/s of `find` over every detector on (a) 8 MB of clean mixed text (prose, JSON,
//! code, built deterministically), (b) the same text with 1 % of its lines carrying a positive,
//! and the time of the adversarial inputs at 50 KB and 500 KB (linear detectors take ~10x).
//! Each figure is the best of several repetitions (the least disturbed by other processes).

use std::time::{Duration, Instant};

use agentmesh_core::policy::detect::{find, Detector, Span};

/// A small deterministic generator (xorshift), so the texts are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const WORDS: &[&str] = &[
    "the",
    "workflow",
    "agent",
    "retries",
    "a",
    "step",
    "when",
    "budget",
    "is",
    "reserved",
    "log",
    "replay",
    "of",
    "and",
    "every",
    "event",
    "durable",
    "state",
    "machine",
    "provider",
    "returns",
    "tokens",
    "cost",
    "to",
    "with",
    "policy",
    "redacts",
    "output",
    "before",
    "it",
    "leaves",
    "run",
    "node",
    "fails",
    "after",
    "three",
    "attempts",
    "scheduler",
    "host",
    "poll",
    "complete",
];

/// One line of clean text: prose, JSON or code, with ordinary numbers in it.
fn clean_line(r: &mut Rng, out: &mut String) {
    match r.below(3) {
        0 => {
            for k in 0..8 + r.below(12) {
                if k > 0 {
                    out.push(' ');
                }
                out.push_str(r.pick(WORDS));
            }
            out.push_str(".\n");
        }
        1 => {
            let (id, ms, n) = (r.below(100_000), r.below(5000), r.below(50));
            let name = r.pick(WORDS);
            let day = 1 + r.below(28);
            out.push_str(&format!(
                "{{\"id\": {id}, \"node\": \"{name}\", \"status\": \"completed\", \"duration_ms\": {ms}, \"attempt\": {n}, \"at\": \"2026-11-{day:02}T10:00:00Z\", \"score\": 0.{ms}}}\n"
            ));
        }
        _ => {
            let (a, b) = (r.pick(WORDS), r.pick(WORDS));
            let n = r.below(1000);
            out.push_str(&format!(
                "    let {a}_{b} = self.{a}.get({n}).map(|x| x * 2 + 1).unwrap_or(0); // {b}: version 1.{n}\n"
            ));
        }
    }
}

const POSITIVES: &[&str] = &[
    "contact jane.doe@example.com today",
    "call +44 20 7946 0958 now",
    "ssn 219-09-9999 on file",
    "card 4111 1111 1111 1111 exp 09/28",
    "iban DE89 3704 0044 0532 0130 00",
    "aws_access_key_id = AKIAZ3MSJV4WWNKWW5FG",
    "aws_secret_access_key = 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",
    "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "from 203.0.113.7 port 443",
    "key ghp_R8x2Lq7Vz0Tn4Ks9Wm3Yb6Hc1Jd5Fg8Pa2Qe",
    "DB_PASSWORD=\"Tr0ub4dor&3x\"",
];

/// About `size` bytes of text; `positive_every` lines in one carries a positive (0: none).
fn build(size: usize, positive_every: usize) -> String {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(size + 256);
    let mut line = 0;
    while out.len() < size {
        if positive_every > 0 && line % positive_every == positive_every - 1 {
            out.push_str(r.pick(POSITIVES));
            out.push('\n');
        } else {
            clean_line(&mut r, &mut out);
        }
        line += 1;
    }
    out
}

/// Runs every detector over `text`; returns the matches.
fn scan_all(text: &str, spans: &mut Vec<Span>) -> usize {
    spans.clear();
    for &d in Detector::ALL {
        find(d, text, spans);
    }
    spans.len()
}

/// Best of `reps` timings of a full scan, and the match count.
fn best(text: &str, reps: usize) -> (Duration, usize) {
    let mut spans = Vec::new();
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..reps {
        let t = Instant::now();
        n = scan_all(text, &mut spans);
        best = best.min(t.elapsed());
    }
    (best, n)
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Adversarial input number `k`, about `size` bytes.
fn adversarial(k: usize, size: usize) -> (&'static str, String) {
    let rep = |unit: &str| unit.repeat(size / unit.len());
    match k {
        0 => ("digits", rep("7")),
        1 => ("a", rep("a")),
        2 => ("BEGIN PRIVATE KEY", rep("-----BEGIN PRIVATE KEY-----")),
        3 => ("a.a.a.a", rep("a.")),
        4 => ("1.1.1.1", rep("1.")),
        5 => ("'+1 '", rep("+1 ")),
        6 => ("eyJ", rep("eyJ")),
        7 => ("a@", rep("a@")),
        8 => ("password=", rep("password=")),
        9 => ("'4111 '", rep("4111 ")),
        _ => ("AKIA", rep("AKIA")),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 2 } else { 7 };
    let clean = build(8 << 20, 0);
    let (t, n) = best(&clean, reps);
    println!(
        "clean text       {:>6.1} MB  {:>8.1} MB/s  ({n} matches)",
        clean.len() as f64 / 1e6,
        mb_per_s(clean.len(), t)
    );
    let mut spans = Vec::new();
    println!("  per detector:");
    for &d in Detector::ALL {
        let mut best_d = Duration::MAX;
        for _ in 0..reps {
            spans.clear();
            let t = Instant::now();
            find(d, &clean, &mut spans);
            best_d = best_d.min(t.elapsed());
        }
        println!(
            "    {:<16}{:>9.1} MB/s",
            d.name(),
            mb_per_s(clean.len(), best_d)
        );
    }
    let dirty = build(8 << 20, 100);
    let (t, n) = best(&dirty, reps);
    println!(
        "1% positive lines{:>6.1} MB  {:>8.1} MB/s  ({n} matches)",
        dirty.len() as f64 / 1e6,
        mb_per_s(dirty.len(), t)
    );
    println!("adversarial (all detectors)        50 KB       500 KB   ratio");
    for k in 0..11 {
        let (name, small) = adversarial(k, 50_000);
        let (_, large) = adversarial(k, 500_000);
        let (ts, _) = best(&small, reps);
        let (tl, _) = best(&large, reps);
        println!(
            "  {name:<20}{:>12.3} ms{:>10.3} ms{:>8.1}",
            ts.as_secs_f64() * 1e3,
            tl.as_secs_f64() * 1e3,
            tl.as_secs_f64() / ts.as_secs_f64()
        );
    }
    let (_, mb) = adversarial(5, 1_000_000);
    let (t, _) = best(&mb, reps);
    println!("  '+1 ' x 1 MB        {:>12.3} ms", t.as_secs_f64() * 1e3);
}
