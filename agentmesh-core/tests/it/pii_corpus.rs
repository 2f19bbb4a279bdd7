//! The built-in detectors scored on the labelled corpus `tests/data/pii-corpus/corpus.jsonl`
//! (written by `make_corpus.py` there, from hand-written contexts; labels come from how each
//! value was made, not from the detectors). Per kind: a labelled span is found (TP) when a
//! predicted span of that kind overlaps it; a predicted span overlapping no labelled span of
//! its kind is a false positive. Every kind must reach recall ≥ 0.98 and precision ≥ 0.95.

use std::collections::BTreeMap;
use std::path::Path;

use agentmesh_core::policy::detect::{find, Detector, Span};
use serde_json::Value;

/// One corpus record: its text and labelled spans by kind.
struct Record {
    text: String,
    labels: Vec<(Detector, Span)>,
}

/// Reads a corpus file; a label's offsets are those of its text's next unused occurrence.
fn corpus(file: &str) -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pii-corpus")
        .join(file);
    let data = std::fs::read_to_string(&path).expect("the corpus is readable");
    data.lines()
        .enumerate()
        .map(|(n, line)| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            let text = v["text"].as_str().expect("text").to_string();
            let mut labels: Vec<(Detector, Span)> = Vec::new();
            for s in v["spans"].as_array().expect("spans") {
                let kind = s["kind"].as_str().expect("kind");
                let detector = Detector::from_name(kind)
                    .unwrap_or_else(|| panic!("line {}: kind {kind}", n + 1));
                let needle = s["text"].as_str().expect("span text");
                let mut from = 0;
                let start = loop {
                    let at = text[from..]
                        .find(needle)
                        .map(|p| from + p)
                        .unwrap_or_else(|| panic!("line {}: {needle:?} not in the text", n + 1));
                    if !labels
                        .iter()
                        .any(|(d, sp)| *d == detector && sp.start == at)
                    {
                        break at;
                    }
                    from = at + 1;
                };
                labels.push((
                    detector,
                    Span {
                        start,
                        end: start + needle.len(),
                    },
                ));
            }
            Record { text, labels }
        })
        .collect()
}

fn overlaps(a: &Span, b: &Span) -> bool {
    a.start < b.end && b.start < a.end
}

/// Counts of one kind.
#[derive(Default)]
struct Score {
    labelled: usize,
    predicted: usize,
    tp: usize,
    fp: usize,
    fn_: usize,
}

#[test]
fn every_detector_meets_its_targets_on_the_corpus() {
    let records = corpus("corpus.jsonl");
    assert!(records.len() >= 700, "corpus too small: {}", records.len());
    let negatives = records.iter().filter(|r| r.labels.is_empty()).count();
    assert!(negatives >= 300, "hard negatives: {negatives}");
    let failed = score(&records, 40);
    assert!(
        failed.is_empty(),
        "below target (or < 40 labelled): {failed:?}"
    );
}

/// `heldout.jsonl` was written apart from the detectors (by another session, never used to
/// tune them): its scores are the out-of-sample figures. Few labels per kind, so one miss
/// moves recall by 0.1; the targets are checked on it all the same.
#[test]
fn the_detectors_meet_their_targets_on_the_held_out_records() {
    let records = corpus("heldout.jsonl");
    let failed = score(&records, 9);
    assert!(
        failed.is_empty(),
        "below target on held-out records: {failed:?}"
    );
}

/// Score every detector on `records`, print the table and the misses; the kinds below
/// recall 0.98 or precision 0.95, or with fewer than `min_labels` labels.
fn score(records: &[Record], min_labels: usize) -> Vec<&'static str> {
    let mut scores: BTreeMap<Detector, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    for r in records {
        for &d in Detector::ALL {
            let mut predicted = Vec::new();
            find(d, &r.text, &mut predicted);
            let labelled: Vec<Span> = r
                .labels
                .iter()
                .filter(|(k, _)| *k == d)
                .map(|(_, s)| *s)
                .collect();
            let score = scores.entry(d).or_default();
            score.labelled += labelled.len();
            score.predicted += predicted.len();
            for l in &labelled {
                if predicted.iter().any(|p| overlaps(p, l)) {
                    score.tp += 1;
                } else {
                    score.fn_ += 1;
                    misses.push(format!(
                        "FN {}: {:?} in {:?}",
                        d.name(),
                        &r.text[l.start..l.end],
                        r.text
                    ));
                }
            }
            for p in &predicted {
                assert!(p.start < p.end && p.end <= r.text.len(), "{p:?}");
                assert!(r.text.is_char_boundary(p.start) && r.text.is_char_boundary(p.end));
                if !labelled.iter().any(|l| overlaps(p, l)) {
                    score.fp += 1;
                    misses.push(format!(
                        "FP {}: {:?} in {:?}",
                        d.name(),
                        &r.text[p.start..p.end],
                        r.text
                    ));
                }
            }
        }
    }
    println!(
        "{:<16}{:>9}{:>10}{:>6}{:>5}{:>5}{:>11}{:>8}",
        "kind", "labelled", "predicted", "TP", "FP", "FN", "precision", "recall"
    );
    let mut failed = Vec::new();
    for (d, s) in &scores {
        let precision = if s.predicted == 0 {
            0.0
        } else {
            (s.predicted - s.fp) as f64 / s.predicted as f64
        };
        let recall = if s.labelled == 0 {
            0.0
        } else {
            s.tp as f64 / s.labelled as f64
        };
        println!(
            "{:<16}{:>9}{:>10}{:>6}{:>5}{:>5}{:>11.3}{:>8.3}",
            d.name(),
            s.labelled,
            s.predicted,
            s.tp,
            s.fp,
            s.fn_,
            precision,
            recall
        );
        if s.labelled < min_labels || recall < 0.98 || precision < 0.95 {
            failed.push(d.name());
        }
    }
    for m in &misses {
        println!("{m}");
    }
    failed
}
