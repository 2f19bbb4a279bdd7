//! Timeline lanes: one per agent (or tool, or human node), split into rows only where that
//! agent's activations overlap in time (parallel fan-out of one agent). Calls and verdicts sit
//! in the row of their activation; the run and its own verdicts sit in the `run` lane.

use std::collections::HashMap;

use crate::spans::{Category, Span, SpanId};

/// A lane of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// The agent, tool or human node it shows (`run` for the run itself).
    pub name: String,
    /// Rows: 1 unless the lane's activations overlap.
    pub rows: usize,
}

/// Lanes in order of first appearance, and each span's `(lane, row)`.
#[derive(Debug, Default)]
pub struct Layout {
    /// The lanes, `run` first.
    pub lanes: Vec<Lane>,
    /// Where each span is drawn.
    pub place: HashMap<SpanId, (usize, usize)>,
}

/// The earliest time in `spans` and `steps` (unix µs): where a picture's time axis starts.
pub fn origin(spans: &[Span], steps: &[crate::spans::StepMark]) -> u64 {
    spans
        .iter()
        .map(|s| s.start_us)
        .chain(steps.iter().map(|s| s.time_us))
        .min()
        .unwrap_or(0)
}

/// Lay out `spans` (any order).
pub fn layout(spans: &[Span]) -> Layout {
    let mut out = Layout {
        lanes: vec![Lane {
            name: "run".to_owned(),
            rows: 1,
        }],
        place: HashMap::new(),
    };
    let mut acts: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            matches!(
                s.category,
                Category::Agent | Category::ToolNode | Category::Human
            )
        })
        .collect();
    acts.sort_by_key(|s| (s.start_us, s.seq));
    let mut lane_of: HashMap<String, usize> = HashMap::new();
    // Per lane, the end time of each row.
    let mut row_ends: Vec<Vec<u64>> = vec![vec![u64::MAX]];
    for s in &acts {
        let name = s.lane.as_deref().unwrap_or("-").to_owned();
        let lane = *lane_of.entry(name.clone()).or_insert_with(|| {
            out.lanes.push(Lane { name, rows: 0 });
            row_ends.push(Vec::new());
            out.lanes.len() - 1
        });
        let ends = &mut row_ends[lane];
        let row = match ends.iter().position(|end| *end <= s.start_us) {
            Some(r) => r,
            None => {
                ends.push(0);
                ends.len() - 1
            }
        };
        ends[row] = s.end_us.max(s.start_us + 1);
        out.lanes[lane].rows = out.lanes[lane].rows.max(row + 1);
        out.place.insert(s.span_id, (lane, row));
    }
    // Calls under their activation; verdicts under whatever they judged.
    let by_id: HashMap<SpanId, &Span> = spans.iter().map(|s| (s.span_id, s)).collect();
    for s in spans {
        if out.place.contains_key(&s.span_id) {
            continue;
        }
        let mut at = s.parent;
        let mut place = (0, 0);
        while let Some(id) = at {
            if let Some(p) = out.place.get(&id) {
                place = *p;
                break;
            }
            at = by_id.get(&id).and_then(|p| p.parent);
        }
        out.place.insert(s.span_id, place);
    }
    out
}
