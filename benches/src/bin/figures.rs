//! The performance figures of AgentMesh against its targets, measured in-process.
//!
//! ```text
//! cargo run --release -p agentmesh-benches --bin figures [-- [--quick] [--only SECTION]]
//! ```
//!
//! Every figure is timed with `std::time::Instant` over several repetitions and reported as the
//! best, the median and the worst (the best is the least disturbed by other processes; the
//! median and the worst show the spread). A second table breaks the chain run and the reading of
//! a log into their parts. See `docs/performance.md`. Peak memory is measured in a child process (this binary re-run with `--child`), so
//! each measurement starts from a fresh process.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentmesh_benches::{
    build_loop_log, chain, counter_loop, counter_loop_events, fanout, internal, io_error,
    map_fanout, map_options, mesh, options, run_mesh, run_raw, FileRuns, Payload,
};
use agentmesh_core::{
    canonical_log, for_each_state, replay, verify_log, CallExecutor, CallOutcome, CallRequest,
    CallTicket, Completion, Error, ErrorKind, Event, FsyncMode, Mesh, Result, Run, Workflow,
};
use serde_json::json;

/// Calls one activation makes in the call figures.
const CALLS: usize = 1000;

/// `CALLS` recorded calls through the raw `Run` API (start, then complete: two records).
fn raw_calls(options: agentmesh_core::RunOptions) -> Result<()> {
    let wf = chain(1);
    let mut run = Run::start(&wf, options)?;
    let act = run.poll()?.remove(0);
    for i in 0..CALLS {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "i": i});
        let t = run.call_start(act.id, CallRequest::llm("p", req))?;
        let out = CallOutcome::ok(json!({"text": "hi", "finishReason": "stop"}))
            .with_usage(agentmesh_core::Usage::tokens(5, 1));
        run.call_complete(act.id, t.call, out)?;
    }
    run.complete(act.id, Completion::ok(json!(1)))
}

/// [`raw_calls`] under a budget: each call carries its estimate, is reserved against its
/// lease (price lookup, clamp check) and settled to its usage; the records carry `reserve`
/// and `charge`.
fn raw_calls_budgeted(mut options: agentmesh_core::RunOptions) -> Result<()> {
    use agentmesh_core::{CallAsk, Limits, PriceTable};
    options.budget = Some(Limits::from_option(
        &json!({"microUsd": 1_000_000_000_000u64, "calls": 1_000_000}),
    )?);
    options.prices = Some(PriceTable::from_json(
        r#"{"version": 1, "models": [{"provider": "p", "model": "m", "match": {"equals": "m"},
            "prices": {"input": 2500000, "output": 10000000}}]}"#,
    )?);
    let wf = chain(1);
    let mut run = Run::start(&wf, options)?;
    let act = run.poll()?.remove(0);
    for i in 0..CALLS {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "i": i});
        let mut r = CallRequest::llm("p", req);
        r.ask = Some(CallAsk {
            provider: "p".into(),
            model: "m".into(),
            input_tokens: 12,
            max_tokens: Some(64),
            min_tokens: Some(8),
        });
        let t = run.call_start(act.id, r)?;
        let out = CallOutcome::ok(json!({"text": "hi", "finishReason": "stop"}))
            .with_usage(agentmesh_core::Usage::tokens(5, 1));
        run.call_complete(act.id, t.call, out)?;
    }
    run.complete(act.id, Completion::ok(json!(1)))
}

struct Instant0;
impl CallExecutor for Instant0 {
    fn execute(
        &self,
        _: &serde_json::Value,
        _: &CallTicket,
        _: Option<&mut dyn FnMut(&serde_json::Value)>,
    ) -> CallOutcome {
        CallOutcome::ok(json!({"text": "hi", "finishReason": "stop"}))
            .with_usage(agentmesh_core::Usage::tokens(5, 1))
    }
}

/// A mesh whose one agent makes `CALLS` `ctx.llm` calls to an executor that answers at once.
fn calls_mesh(dir: Option<&Path>) -> Mesh {
    let mut m = Mesh::new();
    if let Some(d) = dir {
        m = m.with_log_dir(d);
    }
    m.provider("p", std::sync::Arc::new(Instant0));
    m.agent(agentmesh_benches::AGENT, |_, ctx| {
        for i in 0..CALLS {
            let req =
                json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "i": i});
            ctx.llm("p", req)
                .map_err(|e| agentmesh_core::Failure::error("E", e.to_string()))?;
        }
        Ok(json!(1).into())
    });
    m
}

/// Best, median and worst of repeated timings, in seconds.
#[derive(Debug, Clone, Copy)]
struct Stats {
    best: f64,
    median: f64,
    worst: f64,
}

fn measure(reps: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Stats> {
    // One untimed run first: page cache, allocator and worker threads warm up.
    f()?;
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        secs.push(f()?.as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    Ok(Stats {
        best: secs[0],
        median: secs[secs.len() / 2],
        worst: secs[secs.len() - 1],
    })
}

const BUDGET_CALLS: usize = 10_000;

/// `n` LLM calls' accounting against one lease: what the budget manager adds per call.
fn budget_calls(n: usize) -> Result<()> {
    use agentmesh_core::{
        reserve_llm, Amounts, Dimension, Limits, LlmAsk, PriceTable, Reservation,
    };
    let table = PriceTable::bundled();
    let lease = Limits::UNLIMITED
        .with(Dimension::MicroUsd, Some(u64::MAX / 2))
        .with(Dimension::Calls, Some(u64::MAX / 2));
    let mut spent = Amounts::ZERO;
    for i in 0..n {
        let model = if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
        let prices = &table.find("openai", model).expect("priced").prices;
        let ask = LlmAsk {
            prices: Some(prices),
            input_tokens: 1_200 + (i as u64 % 7),
            max_tokens: 256,
            clamp_to_at_least: Some(16),
        };
        let reserved = match reserve_llm(&lease.left(&spent), &ask) {
            Reservation::Fits { amounts } | Reservation::Clamped { amounts, .. } => amounts,
            Reservation::Refused { .. } => unreachable!("the lease is large"),
        };
        spent = spent.plus(&reserved);
        // Settle: the call used fewer output tokens than reserved.
        let actual = ask.amounts(100);
        spent = spent.minus(&reserved).plus(&actual);
    }
    std::hint::black_box(spent);
    Ok(())
}

/// `steps` lease splits of a 100-activation step in every dimension.
fn budget_leases(steps: usize) -> Result<()> {
    use agentmesh_core::{split_leases, Dimension, Limits};
    let mut left = Limits::UNLIMITED;
    for (i, d) in Dimension::ALL.into_iter().enumerate() {
        left = left.with(d, Some(1_000_000 + i as u64));
    }
    let caps: Vec<Limits> = (0..100)
        .map(|i| {
            if i % 10 == 0 {
                Limits::UNLIMITED.with(Dimension::Calls, Some(2))
            } else {
                Limits::UNLIMITED
            }
        })
        .collect();
    for _ in 0..steps {
        std::hint::black_box(split_leases(&left, std::hint::black_box(&caps)));
    }
    Ok(())
}

/// The ten-rule policy of the policy figures: detectors, a regex and keywords, as a real
/// deployment would combine them.
fn ten_rule_policy() -> agentmesh_core::policy::Policy {
    agentmesh_core::policy::Policy::from_value(json!({
        "version": 1, "name": "bench",
        "rules": [
            {"id": "email", "detect": "email", "action": "redact"},
            {"id": "phone", "detect": "phone", "action": "redact"},
            {"id": "ssn", "detect": "ssn", "action": "block"},
            {"id": "card", "detect": "card", "action": "block"},
            {"id": "ip", "detect": "ipv4", "action": "redact"},
            {"id": "jwt", "detect": "jwt", "action": "redact"},
            {"id": "keys", "detect": "api_key", "action": "redact"},
            {"id": "secrets", "detect": "secret_value", "action": "redact"},
            {"id": "ticket", "regex": "TCK-[0-9]{6}", "action": "warn"},
            {"id": "codename", "keywords": ["project zeus", "blue harbor"], "action": "warn"}
        ]
    }))
    .expect("a valid policy")
}

/// A 1 KB agent output without PII: what a policy looks at on most steps.
fn kilobyte_output(visit: u64) -> serde_json::Value {
    let para = "The release notes summarise the changes since version 2.4: faster startup, \
                a smaller memory footprint, and retries that back off exponentially. ";
    json!({
        "visit": visit,
        "summary": para.repeat(4),
        "items": ["startup time down 18 percent", "memory down 11 percent", "retry jitter"],
        "status": "ok",
        "notes": para.repeat(3),
    })
}

/// A mesh whose chain agent returns [`kilobyte_output`], with or without the policy.
fn policy_mesh(policy: Option<agentmesh_core::policy::Policy>) -> Mesh {
    let mut m = Mesh::new().with_fsync(FsyncMode::Batch);
    if let Some(p) = policy {
        m = m.with_policy(p);
    }
    m.agent(agentmesh_benches::AGENT, |act, _| {
        Ok(kilobyte_output(act.visit).into())
    });
    m
}

/// `reps` copies of clean prose, JSON and code, about `bytes` long.
fn clean_text(bytes: usize) -> String {
    let block = "Deploys roll out region by region; each waits for the health checks of the last. \
                 {\"service\": \"billing\", \"replicas\": 3, \"version\": \"2.14.1\"}\n\
                 fn retry(attempt: u32) -> Duration { Duration::from_millis(100 << attempt) }\n\
                 The on-call engineer reviews the dashboards at 09:00 and files a summary.\n";
    let mut out = String::with_capacity(bytes + block.len());
    while out.len() < bytes {
        out.push_str(block);
    }
    out
}

/// A stand-in OTLP collector on loopback: answers every request `200` with an empty
/// protobuf body (an `ExportTraceServiceResponse` with nothing rejected), so the exporter does
/// all its real work (encode, send) and nothing waits on a slow receiver.
fn otlp_sink() -> Result<String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io_error("binding the OTLP sink", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error("binding the OTLP sink", e))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 1 << 16];
                let mut head = Vec::new();
                loop {
                    // One request at a time per connection: read the head, then the body.
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while head.len() < end + 4 + len {
                        let Ok(n) = stream.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    head.drain(..end + 4 + len);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(format!("http://{addr}"))
}

/// What live telemetry adds to the W1 chain, and how exports scale with a log's length.
fn telemetry_figures(plan: &Plan, t: &mut Table, files: &mut FileRuns) -> Result<()> {
    use agentmesh_telemetry::otlp::OtlpConfig;
    use agentmesh_telemetry::{Telemetry, TelemetryConfig};
    let wf = chain(1000);
    let plain = mesh(Payload::Null, None);
    let url = otlp_sink()?;
    let telemetry = Telemetry::new(TelemetryConfig {
        otlp: Some(OtlpConfig::to(&url)),
        // Metrics go out every 10 s; a chain run is shorter, so they never ride along.
        ..TelemetryConfig::default()
    })?;
    let observed = mesh(Payload::Null, None).with_observer(telemetry.observer());
    // Events of one chain run (what the observer sees).
    let events = {
        let watched = agentmesh_core::RunOptions {
            watch: true,
            ..options(None, None)
        };
        let mut run = run_raw(&wf, watched, Payload::Null)?;
        run.take_committed().len() as f64
    };
    // Where the cost is: an observer that drops what it is given (the core's copy of each
    // commit), and telemetry without export (derivation and metrics, no OTLP).
    #[derive(Debug)]
    struct Drop0;
    impl agentmesh_core::Observer for Drop0 {
        fn committed(&self, _: &agentmesh_core::LogHeader, events: Vec<agentmesh_core::Event>) {
            std::hint::black_box(events);
        }
    }
    let noop = mesh(Payload::Null, None).with_observer(std::sync::Arc::new(Drop0));
    let local = Telemetry::new(TelemetryConfig::default())?;
    let metrics_only = mesh(Payload::Null, None).with_observer(local.observer());
    // Blocks of runs, the four in turn, three rounds; each block's median, and the median of
    // the three. After a block the telemetry threads are drained (untimed), so the next
    // block does not share the second core with them.
    let drain = || {
        telemetry.flush(Duration::from_secs(10));
        local.flush(Duration::from_secs(10));
    };
    let meshes = [&plain, &noop, &metrics_only, &observed];
    let mut blocks: [Vec<Stats>; 4] = Default::default();
    for _ in 0..3 {
        for (i, m) in meshes.iter().enumerate() {
            blocks[i].push(measure(plan.chain_reps, || {
                timed(|| run_mesh(m, &wf, options(None, None)))
            })?);
            drain();
        }
    }
    let mid = |v: &[Stats]| {
        let mut v = v.to_vec();
        v.sort_by(|x, y| x.median.total_cmp(&y.median));
        v[v.len() / 2]
    };
    let [a, c, d, b] = [
        mid(&blocks[0]),
        mid(&blocks[1]),
        mid(&blocks[2]),
        mid(&blocks[3]),
    ];
    t.time(
        "chain 1000, Mesh, memory: per step",
        a,
        1000.0,
        1e6,
        "µs",
        Target::None,
    );
    t.time(
        "chain 1000, Mesh, memory, an observer that drops the events: per step",
        c,
        1000.0,
        1e6,
        "µs",
        Target::None,
    );
    t.time(
        "chain 1000, Mesh, memory, live telemetry without export: per step",
        d,
        1000.0,
        1e6,
        "µs",
        Target::None,
    );
    t.time(
        "chain 1000, Mesh, memory, live telemetry + OTLP export: per step",
        b,
        1000.0,
        1e6,
        "µs",
        Target::None,
    );
    let added = (b.median - a.median) / a.median * 100.0;
    t.note(
        "live telemetry added to the chain (median)",
        format!("{added:.1} % (target ≤ 10 %)"),
    );
    t.note(
        "live telemetry per event (median)",
        format!(
            "{:.2} µs over {events:.0} events (target ≤ 2 µs)",
            (b.median - a.median) / events * 1e6
        ),
    );
    telemetry.flush(Duration::from_secs(10));
    if let Some(stats) = telemetry.export_stats() {
        t.note(
            "spans exported / dropped during the runs",
            format!("{} / {}", stats.exported(), stats.dropped()),
        );
    }
    // The same with file logs (batch fsync), where the observer takes the events the writer
    // serialized without copying them.
    let disk_dir = files.dir().to_path_buf();
    let disk = mesh(Payload::Null, Some(&disk_dir));
    let disk_observed = mesh(Payload::Null, Some(&disk_dir)).with_observer(telemetry.observer());
    let mut fa = Vec::new();
    let mut fb = Vec::new();
    for _ in 0..3 {
        fa.push(measure(plan.chain_reps, || {
            files.time(1, |id| run_mesh(&disk, &wf, options(Some(id), None)))
        })?);
        drain();
        fb.push(measure(plan.chain_reps, || {
            files.time(1, |id| {
                run_mesh(&disk_observed, &wf, options(Some(id), None))
            })
        })?);
        drain();
    }
    let (fa, fb) = (mid(&fa), mid(&fb));
    t.time(
        "chain 1000, Mesh, file (batch): per step",
        fa,
        1000.0,
        1e6,
        "µs",
        Target::None,
    );
    t.time(
        "chain 1000, Mesh, file (batch), live telemetry + OTLP export: per step",
        fb,
        1000.0,
        1e6,
        "µs",
        Target::None,
    );
    t.note(
        "live telemetry added to the file chain (median)",
        format!(
            "{:.1} % (target ≤ 10 %), {:.2} µs per event",
            (fb.median - fa.median) / fa.median * 100.0,
            (fb.median - fa.median) / events * 1e6
        ),
    );
    // Exports of a 10k- and a 100k-event log: linear means ten times the events, about ten
    // times the time.
    let dir = tempfile::tempdir().map_err(|e| io_error("creating a temp dir", e))?;
    let mut per = Vec::new();
    for n in [plan.log_events / 10, plan.log_events] {
        let (path, events) = build_loop_log(&dir.path().join(n.to_string()), n)?;
        let (header, evs) = agentmesh_core::read_log(&path)?;
        // What the telemetry thread does per event: spans, then metrics from them.
        let s = measure(plan.log_reps.min(5), || {
            timed(|| {
                let mut b = agentmesh_telemetry::SpanBuilder::new(&header);
                let mut m = agentmesh_telemetry::Metrics::default();
                let mut out = Vec::new();
                for e in &evs {
                    b.push(e, &mut out);
                    m.record_spans(&out);
                    out.clear();
                }
                m.record_events(&header.run_id, &evs);
                std::hint::black_box(m);
                Ok(())
            })
        })?;
        t.time(
            &format!("derive spans + metrics, {events} events: per event"),
            s,
            events as f64,
            1e6,
            "µs",
            Target::None,
        );
        for (name, format) in [
            ("spans", agentmesh_telemetry::Format::Spans),
            ("chrome", agentmesh_telemetry::Format::Chrome),
            ("html", agentmesh_telemetry::Format::Html),
        ] {
            let s = measure(plan.log_reps.min(5), || {
                timed(|| {
                    std::hint::black_box(agentmesh_telemetry::render(&header, &evs, format)?);
                    Ok(())
                })
            })?;
            t.time(
                &format!("export --format {name}, {events} events: per event"),
                s,
                events as f64,
                1e6,
                "µs",
                Target::None,
            );
            per.push((name, events, s.median));
        }
    }
    for name in ["spans", "chrome", "html"] {
        let v: Vec<_> = per.iter().filter(|p| p.0 == name).collect();
        if let [small, large] = v.as_slice() {
            let events = large.1 as f64 / small.1.max(1) as f64;
            t.note(
                &format!("export {name}: time ratio for {events:.1}× the events"),
                format!("{:.1}× (linear ≈ {events:.1}×)", large.2 / small.2),
            );
        }
    }
    Ok(())
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// One line of the table.
struct Row {
    what: String,
    best: String,
    median: String,
    worst: String,
    target: String,
    verdict: &'static str,
}

#[derive(Clone, Copy)]
enum Target {
    None,
    /// Best value must be at most this.
    AtMost(f64),
    /// Best value must be at least this.
    AtLeast(f64),
}

struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// A row of per-unit times: `stats` seconds per repetition, `units` per repetition, shown
    /// in `scale` (1e6 = µs, 1e3 = ms) per unit.
    fn time(&mut self, what: &str, stats: Stats, units: f64, scale: f64, unit: &str, t: Target) {
        let v = |s: f64| s * scale / units;
        self.push(
            what,
            [v(stats.best), v(stats.median), v(stats.worst)],
            unit,
            t,
        );
    }

    /// A row of rates: `items` per repetition, shown per second.
    fn rate(&mut self, what: &str, stats: Stats, items: f64, t: Target) {
        let v = |s: f64| items / s;
        self.push(
            what,
            [v(stats.best), v(stats.median), v(stats.worst)],
            "events/s",
            t,
        );
    }

    fn push(&mut self, what: &str, [best, median, worst]: [f64; 3], unit: &str, t: Target) {
        let fmt = |x: f64| {
            if x >= 100_000.0 {
                format!("{:.2}M {unit}", x / 1e6)
            } else if x >= 100.0 {
                format!("{x:.0} {unit}")
            } else {
                format!("{x:.2} {unit}")
            }
        };
        let (target, verdict) = match t {
            Target::None => (String::from("-"), ""),
            Target::AtMost(m) => (format!("<= {}", fmt(m)), verdict(best <= m, median <= m)),
            Target::AtLeast(m) => (format!(">= {}", fmt(m)), verdict(best >= m, median >= m)),
        };
        self.rows.push(Row {
            what: what.to_owned(),
            best: fmt(best),
            median: fmt(median),
            worst: fmt(worst),
            target,
            verdict,
        });
    }

    fn note(&mut self, what: &str, value: String) {
        self.rows.push(Row {
            what: what.to_owned(),
            best: value,
            median: String::new(),
            worst: String::new(),
            target: String::new(),
            verdict: "",
        });
    }

    fn print(&self) {
        println!("| figure | best | median | worst | target | |");
        println!("|---|---|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.what, r.best, r.median, r.worst, r.target, r.verdict
            );
        }
    }
}

fn verdict(best_ok: bool, median_ok: bool) -> &'static str {
    match (best_ok, median_ok) {
        (true, true) => "met",
        (true, false) => "met (best only)",
        _ => "MISSED",
    }
}

struct Plan {
    chain_reps: usize,
    fanout_reps: usize,
    small_reps: usize,
    log_reps: usize,
    log_events: u64,
    memory_steps: [u64; 2],
    /// Run only this section (for profiling one of them).
    only: Option<String>,
}

const SECTIONS: &[&str] = &[
    "chain",
    "fanout",
    "small",
    "size",
    "fsync",
    "log",
    "memory",
    "breakdown",
    "calls",
    "budget",
    "policy",
    "telemetry",
];
const USAGE: &str =
    "usage: figures [--quick] [--only chain|fanout|small|size|fsync|log|memory|breakdown|calls|budget|policy|telemetry]";

impl Plan {
    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == section)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..])
    } else {
        parse(&args).and_then(|plan| figures(&plan))
    };
    if let Err(e) = result {
        eprintln!("figures: {e}");
        std::process::exit(1);
    }
}

fn parse(args: &[String]) -> Result<Plan> {
    let bad = |what: String| Error::new(ErrorKind::InvalidArgument, format!("{what}; {USAGE}"));
    let mut plan = Plan {
        chain_reps: 30,
        fanout_reps: 50,
        small_reps: 5,
        log_reps: 7,
        log_events: 100_000,
        memory_steps: [10_000, 100_000],
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // A smoke test of the script itself, not a measurement.
            "--quick" => {
                plan.chain_reps = 3;
                plan.fanout_reps = 3;
                plan.small_reps = 1;
                plan.log_reps = 1;
                plan.log_events = 10_000;
                plan.memory_steps = [1_000, 10_000];
            }
            "--only" => match args.next() {
                Some(s) if SECTIONS.contains(&s.as_str()) => plan.only = Some(s.clone()),
                Some(s) => return Err(bad(format!("unknown section '{s}'"))),
                None => return Err(bad("--only needs a section".to_owned())),
            },
            other => return Err(bad(format!("unknown argument '{other}'"))),
        }
    }
    Ok(plan)
}

fn figures(plan: &Plan) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for meaningful figures");
    }
    machine();
    let mut t = Table { rows: Vec::new() };
    let mut files = FileRuns::new()?;
    let dir = files.dir().to_path_buf();
    let mem = mesh(Payload::Null, None);
    let disk = mesh(Payload::Null, Some(&dir));

    if plan.runs("chain") {
        // Per-step overhead of a 1000-node chain.
        let wf = chain(1000);
        let s = measure(plan.chain_reps, || {
            timed(|| run_mesh(&mem, &wf, options(None, None)))
        })?;
        t.time(
            "chain 1000, Mesh, memory: per step",
            s,
            1000.0,
            1e6,
            "µs",
            Target::AtMost(2.0),
        );
        let s = measure(plan.chain_reps, || {
            timed(|| run_raw(&wf, options(None, None), Payload::Null).map(drop))
        })?;
        t.time(
            "chain 1000, raw Run, memory: per step",
            s,
            1000.0,
            1e6,
            "µs",
            Target::AtMost(2.0),
        );
        let s = measure(plan.chain_reps, || {
            files.time(1, |id| run_mesh(&disk, &wf, options(Some(id), None)))
        })?;
        t.time(
            "chain 1000, Mesh, file (batch fsync): per step",
            s,
            1000.0,
            1e6,
            "µs",
            Target::AtMost(3.0),
        );
        let s = measure(plan.chain_reps, || {
            files.time(1, |id| {
                run_raw(&wf, options(Some(id), Some(&dir)), Payload::Null).map(drop)
            })
        })?;
        t.time(
            "chain 1000, raw Run, file (batch fsync): per step",
            s,
            1000.0,
            1e6,
            "µs",
            Target::AtMost(3.0),
        );
    }

    if plan.runs("calls") {
        // One recorded call, network excluded: call_start + call_complete + two records.
        let s = measure(plan.chain_reps, || timed(|| raw_calls(options(None, None))))?;
        t.time(
            "1000 calls, raw Run, memory: per call",
            s,
            CALLS as f64,
            1e6,
            "µs",
            Target::AtMost(5.0),
        );
        let s = measure(plan.chain_reps, || {
            files.time(1, |id| raw_calls(options(Some(id), Some(&dir))))
        })?;
        t.time(
            "1000 calls, raw Run, file (batch fsync): per call",
            s,
            CALLS as f64,
            1e6,
            "µs",
            Target::AtMost(5.0),
        );
        let wf: Workflow = chain(1);
        let calls_mem = calls_mesh(None);
        let s = measure(plan.chain_reps, || {
            timed(|| run_mesh(&calls_mem, &wf, options(None, None)))
        })?;
        t.time(
            "1000 calls, ctx.llm (Mesh), memory: per call",
            s,
            CALLS as f64,
            1e6,
            "µs",
            Target::None,
        );
        let calls_disk = calls_mesh(Some(&dir));
        let s = measure(plan.chain_reps, || {
            files.time(1, |id| run_mesh(&calls_disk, &wf, options(Some(id), None)))
        })?;
        t.time(
            "1000 calls, ctx.llm (Mesh), file (batch fsync): per call",
            s,
            CALLS as f64,
            1e6,
            "µs",
            Target::None,
        );
    }

    if plan.runs("budget") {
        // The accounting of one LLM call, the tokenizer excluded: price lookup, reservation
        // against a lease, settlement.
        let s = measure(plan.chain_reps, || timed(|| budget_calls(BUDGET_CALLS)))?;
        t.time(
            "10000 calls: price + reserve + settle, per call",
            s,
            BUDGET_CALLS as f64,
            1e6,
            "µs",
            Target::AtMost(2.0),
        );
        // The same in place: 1000 recorded calls through the raw Run, with and without a
        // budget (their difference is what accounting adds to a call, records included).
        let plain = measure(plan.chain_reps, || timed(|| raw_calls(options(None, None))))?;
        let budgeted = measure(plan.chain_reps, || {
            timed(|| raw_calls_budgeted(options(None, None)))
        })?;
        t.time(
            "1000 calls, raw Run, memory, no budget: per call",
            plain,
            CALLS as f64,
            1e6,
            "µs",
            Target::None,
        );
        t.time(
            "1000 calls, raw Run, memory, under a budget: per call",
            budgeted,
            CALLS as f64,
            1e6,
            "µs",
            Target::None,
        );
        t.note(
            "accounting added per call (median, budget − no budget)",
            format!(
                "{:.2} µs (target ≤ 2 µs)",
                (budgeted.median - plain.median) / CALLS as f64 * 1e6
            ),
        );
        let s = measure(plan.chain_reps, || timed(|| budget_leases(1000)))?;
        t.time(
            "leases for a step of 100 activations, 5 limited dimensions: per step",
            s,
            1000.0,
            1e6,
            "µs",
            Target::None,
        );
    }

    if plan.runs("policy") {
        // What a ten-rule policy adds to a step whose agent returns 1 KB of clean text.
        let wf = chain(1000);
        let plain = policy_mesh(None);
        let judged = policy_mesh(Some(ten_rule_policy()));
        let a = measure(plan.chain_reps, || {
            timed(|| run_mesh(&plain, &wf, options(None, None)))
        })?;
        let b = measure(plan.chain_reps, || {
            timed(|| run_mesh(&judged, &wf, options(None, None)))
        })?;
        t.time(
            "chain 1000, 1 KB outputs, no policy: per step",
            a,
            1000.0,
            1e6,
            "µs",
            Target::None,
        );
        t.time(
            "chain 1000, 1 KB outputs, 10-rule policy: per step",
            b,
            1000.0,
            1e6,
            "µs",
            Target::None,
        );
        t.note(
            "policy added per step (median, policy − none)",
            format!(
                "{:.2} µs (target ≤ 5 µs)",
                (b.median - a.median) / 1000.0 * 1e6
            ),
        );
        let policy = ten_rule_policy();
        let value = kilobyte_output(1);
        let s = measure(plan.chain_reps, || {
            timed(|| {
                for _ in 0..1000 {
                    std::hint::black_box(
                        policy.check(agentmesh_core::policy::Subject::Output, &value),
                    );
                }
                Ok(())
            })
        })?;
        t.time(
            "Policy::check of a 1 KB output, 10 rules",
            s,
            1000.0,
            1e6,
            "µs",
            Target::AtMost(5.0),
        );
        // Every built-in detector over clean text.
        let builtin = agentmesh_core::policy::Policy::builtin();
        let text = clean_text(8 << 20);
        let s = measure(plan.chain_reps.min(5), || {
            timed(|| {
                std::hint::black_box(builtin.redact(&text));
                Ok(())
            })
        })?;
        let mb = text.len() as f64 / 1e6;
        t.note(
            "redact 8 MB of clean text, every built-in detector",
            format!(
                "{:.0} MB/s median, {:.0} MB/s best (target ≥ 100 MB/s)",
                mb / s.median,
                mb / s.best
            ),
        );
        // `(a+)+$` and `(a|aa)+b` (exponential in a backtracking engine) over runs of `a`,
        // with every built-in detector: linear here (ten times the text, ten times the time).
        let mut rules: Vec<serde_json::Value> = vec![
            json!({"id": "nested", "regex": "(a+)+$", "action": "redact"}),
            json!({"id": "alternation", "regex": "(a|aa)+b", "action": "redact"}),
        ];
        for d in agentmesh_core::policy::detect::Detector::ALL {
            rules.push(json!({"id": d.name(), "detect": d.name(), "action": "redact"}));
        }
        let adversarial = agentmesh_core::policy::Policy::from_value(json!({
            "version": 1, "name": "adversarial", "rules": rules
        }))?;
        for n in [50_000usize, 500_000] {
            let text = "a".repeat(n) + "!";
            let s = measure(plan.chain_reps.min(5), || {
                timed(|| {
                    std::hint::black_box(adversarial.redact(&text));
                    Ok(())
                })
            })?;
            t.time(
                &format!(
                    "`(a+)+$`, `(a|aa)+b` and the detectors over {} KB of `a` + `!`",
                    n / 1000
                ),
                s,
                1.0,
                1e6,
                "µs",
                Target::None,
            );
        }
    }

    if plan.runs("fanout") {
        // Fan-out of 100 agents and a join.
        let wf = fanout(100);
        let s = measure(plan.fanout_reps, || {
            timed(|| run_mesh(&mem, &wf, options(None, None)))
        })?;
        t.time(
            "fan-out 100 + join, Mesh (worker pool), memory: per run",
            s,
            1.0,
            1e6,
            "µs",
            Target::None,
        );
        let s = measure(plan.fanout_reps, || {
            files.time(1, |id| run_mesh(&disk, &wf, options(Some(id), None)))
        })?;
        t.time(
            "fan-out 100 + join, Mesh (worker pool), file: per run",
            s,
            1.0,
            1e6,
            "µs",
            Target::None,
        );
        let s = measure(plan.fanout_reps, || {
            timed(|| run_raw(&wf, options(None, None), Payload::Null).map(drop))
        })?;
        t.time(
            "fan-out 100 + join, raw Run, memory: per run",
            s,
            1.0,
            1e6,
            "µs",
            Target::None,
        );
        let s = measure(plan.fanout_reps, || {
            files.time(1, |id| {
                run_raw(&wf, options(Some(id), Some(&dir)), Payload::Null).map(drop)
            })
        })?;
        t.time(
            "fan-out 100 + join, raw Run, file: per run",
            s,
            1.0,
            1e6,
            "µs",
            Target::None,
        );
        // The same fan-out as a map over 100 items (issue 14: per item within 1.2x of the
        // static nodes). Both runs get the same input, the 100 items, so only the graph
        // differs (the input is hashed into the run id and recorded in `runStarted`).
        let map = map_fanout();
        let reps = plan.fanout_reps;
        let input = map_options(100, None, None);
        let fixed_mesh = measure(reps, || timed(|| run_mesh(&mem, &wf, input.clone())))?;
        let map_mesh = measure(reps, || timed(|| run_mesh(&mem, &map, input.clone())))?;
        let fixed_raw = measure(reps, || {
            timed(|| run_raw(&wf, input.clone(), Payload::Null).map(drop))
        })?;
        let map_raw = measure(reps, || {
            timed(|| run_raw(&map, input.clone(), Payload::Null).map(drop))
        })?;
        t.time(
            "map over 100 items + join, Mesh (worker pool), memory: per run",
            map_mesh,
            1.0,
            1e6,
            "µs",
            Target::None,
        );
        t.time(
            "map over 100 items + join, raw Run, memory: per run",
            map_raw,
            1.0,
            1e6,
            "µs",
            Target::None,
        );
        let ratio = |a: Stats, b: Stats| [a.best / b.best, a.median / b.median, a.worst / b.worst];
        t.push(
            "map / static fan-out of 100 + join, same input, Mesh (worker pool), memory",
            ratio(map_mesh, fixed_mesh),
            "x",
            Target::AtMost(1.2),
        );
        t.push(
            "map / static fan-out of 100 + join, same input, raw Run, memory",
            ratio(map_raw, fixed_raw),
            "x",
            Target::AtMost(1.2),
        );
    }

    if plan.runs("small") {
        // 1000 small runs of a 5-node chain.
        let wf = chain(5);
        let small_mem = mesh(Payload::Small, None);
        let small_disk = mesh(Payload::Small, Some(&dir));
        let s = measure(plan.small_reps, || {
            timed(|| (0..1000).try_for_each(|_| run_mesh(&small_mem, &wf, options(None, None))))
        })?;
        t.time(
            "1000 runs of a 5-node chain, Mesh, memory: total",
            s,
            1.0,
            1e3,
            "ms",
            Target::None,
        );
        let s = measure(plan.small_reps, || {
            files.time(1000, |id| {
                run_mesh(&small_disk, &wf, options(Some(id), None))
            })
        })?;
        t.time(
            "1000 runs of a 5-node chain, Mesh, file (batch): total",
            s,
            1.0,
            1e3,
            "ms",
            Target::None,
        );
    }

    if plan.runs("size") {
        // Log size: a small-payload 5-node run (header and runStarted included), and the steady
        // state of a long run.
        let small = run_raw(
            &chain(5),
            options(Some("size-small".into()), Some(&dir)),
            Payload::Small,
        )?;
        let small_path = small.log_path().expect("file run").to_path_buf();
        // The run holds the writer lock on its log until dropped.
        drop(small);
        let report = verify_log(&small_path)?;
        t.push(
            "log size, 5-node run, small payloads: bytes/event (all lines incl. header)",
            [report.bytes as f64 / report.events as f64; 3],
            "B",
            Target::AtMost(400.0),
        );
        // A 1000-step chain, all of it (header, runStarted with its 1000-node workflow).
        let long = run_raw(
            &chain(1000),
            options(Some("size-chain".into()), Some(&dir)),
            Payload::Small,
        )?;
        let long_path = long.log_path().expect("file run").to_path_buf();
        drop(long);
        let bytes = std::fs::metadata(&long_path)
            .map_err(|e| io_error("stat of the log", e))?
            .len();
        t.push(
            "log size, 1000-step chain, small payloads: whole file",
            [bytes as f64 / 1e6; 3],
            "MB",
            Target::AtMost(0.6),
        );
    }

    if plan.runs("fsync") {
        // Group commit: completions of a 100-way fan-out given together share one commit.
        let wf = fanout(100);
        let mut opts = options(Some("fsync-fanout".into()), Some(&dir));
        opts.fsync = FsyncMode::Always;
        let mut run = Run::start(&wf, opts)?;
        while !run.is_finished()? {
            let acts = run.poll()?;
            let done = acts
                .into_iter()
                .map(|a| (a.id, Completion::ok(Payload::Small.output(a.visit))))
                .collect();
            run.complete_all(done)?;
        }
        t.push(
            "fan-out 100 + join, raw Run, fsync always, complete_all: fsyncs per run",
            [run.fsync_count() as f64; 3],
            "",
            Target::None,
        );
    }

    if plan.runs("telemetry") {
        telemetry_figures(plan, &mut t, &mut files)?;
    }

    if plan.runs("log") {
        // Reading a 100k-event log.
        let log_dir = tempfile::tempdir().map_err(|e| io_error("creating a temp dir", e))?;
        let (path, events) = build_loop_log(log_dir.path(), plan.log_events)?;
        let bytes = std::fs::metadata(&path)
            .map_err(|e| io_error("stat of the log", e))?
            .len();
        t.push(
            &format!("log size, {events}-event loop run: bytes/event"),
            [bytes as f64 / events as f64; 3],
            "B",
            Target::AtMost(400.0),
        );
        let verify = measure(plan.log_reps, || timed(|| verify_log(&path).map(drop)))?;
        let replayed = measure(plan.log_reps, || timed(|| replay(&path, None).map(drop)))?;
        let canonical = measure(plan.log_reps, || {
            timed(|| canonical_log(&path, &mut std::io::sink()).map(drop))
        })?;
        let n = events as f64;
        t.rate(
            &format!("verify_log, {events} events"),
            verify,
            n,
            Target::None,
        );
        t.rate(
            &format!("replay, {events} events"),
            replayed,
            n,
            Target::None,
        );
        t.rate(
            "verify + replay: events / (t_verify + t_replay)",
            Stats {
                best: verify.best + replayed.best,
                median: verify.median + replayed.median,
                worst: verify.worst + replayed.worst,
            },
            n,
            Target::AtLeast(2e6),
        );
        // The state at every step end in one pass, against one replay.
        let states = measure(plan.log_reps, || {
            timed(|| for_each_state(&path, &mut |_| Ok(())))
        })?;
        t.rate(
            &format!("history (state at every step end), {events} events"),
            states,
            n,
            Target::None,
        );
        t.push(
            "history / replay time",
            [
                states.best / replayed.best,
                states.median / replayed.median,
                states.worst / replayed.worst,
            ],
            "×",
            Target::AtMost(2.0),
        );
        t.rate(
            &format!("canonical_log to a sink, {events} events"),
            canonical,
            n,
            Target::None,
        );
    }

    if plan.runs("memory") {
        // Peak memory of long runs with a file log, each in a fresh child process.
        for steps in plan.memory_steps {
            let (base, peak) = child_peak("run", steps)?;
            t.note(
                &format!("peak memory (VmHWM), Mesh run of {steps} steps, file log"),
                format!(
                    "{} MiB ({:+.1} MiB over the {:.1} MiB baseline)",
                    fmt_mib(peak),
                    (peak as f64 - base as f64) / 1024.0,
                    base as f64 / 1024.0
                ),
            );
        }
        for steps in plan.memory_steps {
            let (base, peak) = child_peak("replay", steps)?;
            t.note(
                &format!(
                    "peak memory (VmHWM), verify + replay of a {steps}-step log ({} events)",
                    counter_loop_events(steps)
                ),
                format!(
                    "{} MiB ({:+.1} MiB over the {:.1} MiB baseline)",
                    fmt_mib(peak),
                    (peak as f64 - base as f64) / 1024.0,
                    base as f64 / 1024.0
                ),
            );
        }
    }

    t.print();
    if plan.runs("breakdown") {
        let mut b = Table { rows: Vec::new() };
        breakdown(plan, &mut b, &mut files)?;
        println!();
        println!("Where the time goes (phases and per-event costs; no targets):");
        println!();
        b.print();
    }
    println!();
    println!("load average after: {}", read_trimmed("/proc/loadavg"));
    Ok(())
}

/// Seconds spent in each phase of one raw-API run.
struct Phases {
    /// `Run::start`: header, `runStarted`, first step (file: create, two fsyncs).
    start: Duration,
    /// Every poll/complete round but the last.
    steps: Duration,
    /// The last round: completes the run (file: the final fsync).
    last: Duration,
    /// `Run::fingerprint` (what `Mesh::run` computes for its result).
    fingerprint: Duration,
    /// Dropping the run (memory: its events).
    drop: Duration,
}

fn phased(wf: &agentmesh_core::Workflow, opts: agentmesh_core::RunOptions) -> Result<Phases> {
    let t = Instant::now();
    let mut run = Run::start(wf, opts)?;
    let start = t.elapsed();
    let (mut steps, mut last) = (Duration::ZERO, Duration::ZERO);
    while !run.is_finished()? {
        let t = Instant::now();
        let acts = run.poll()?;
        if acts.is_empty() {
            return Err(internal("run stalled"));
        }
        for act in acts {
            run.complete(act.id, Completion::ok(Payload::Null.output(act.visit)))?;
        }
        if run.is_finished()? {
            last = t.elapsed();
        } else {
            steps += t.elapsed();
        }
    }
    let t = Instant::now();
    run.fingerprint()?;
    let fingerprint = t.elapsed();
    let t = Instant::now();
    drop(run);
    Ok(Phases {
        start,
        steps,
        last,
        fingerprint,
        drop: t.elapsed(),
    })
}

/// `,"crc":"` + 8 hex + `"}`: the chain field ending every format-2 record.
const CHAIN_SUFFIX_LEN: usize = 8 + 8 + 2;

/// The envelope of a record parsed without allocating: the lower bound of what parsing an
/// event's envelope costs with serde_json.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Fields are parsed to be timed, never read.
struct BorrowedEnvelope<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    parent_seq: Option<u64>,
    node: Option<&'a str>,
    attempt: Option<u32>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    meta: Option<&'a serde_json::value::RawValue>,
    crc: &'a str,
}

/// Reads one phase out of [`Phases`].
type PhaseOf = fn(&Phases) -> Duration;

fn stats_of(mut secs: Vec<f64>) -> Stats {
    secs.sort_by(f64::total_cmp);
    Stats {
        best: secs[0],
        median: secs[secs.len() / 2],
        worst: secs[secs.len() - 1],
    }
}

/// Phase times of the 1000-node chain (raw API) and per-event costs of the parts of
/// verification and replay, measured on the same kind of log.
fn breakdown(plan: &Plan, t: &mut Table, files: &mut FileRuns) -> Result<()> {
    let wf = chain(1000);
    let dir = files.dir().to_path_buf();
    for log in [false, true] {
        let mut all: Vec<Phases> = Vec::new();
        phased(&wf, options(None, None))?;
        for _ in 0..plan.chain_reps {
            if log {
                files.time(1, |id| {
                    all.push(phased(&wf, options(Some(id), Some(&dir)))?);
                    Ok(())
                })?;
            } else {
                all.push(phased(&wf, options(None, None))?);
            }
        }
        let sink = if log { "file (batch)" } else { "memory" };
        let phases: [(&str, PhaseOf, f64); 5] = [
            ("Run::start (header, runStarted, step 1)", |p| p.start, 1.0),
            (
                "poll + complete, per step (steps 1..999)",
                |p| p.steps,
                999.0,
            ),
            (
                "last complete (run end; file: final fsync)",
                |p| p.last,
                1.0,
            ),
            ("Run::fingerprint (on request)", |p| p.fingerprint, 1.0),
            ("drop(Run)", |p| p.drop, 1.0),
        ];
        for (what, get, units) in phases {
            let s = stats_of(all.iter().map(|p| get(p).as_secs_f64()).collect());
            t.time(
                &format!("chain 1000, raw Run, {sink}: {what}"),
                s,
                units,
                1e6,
                "µs",
                Target::None,
            );
        }
    }

    // One write(2) per committed step is what a file log adds besides serializing and hashing:
    // time a write of one chain step's records (3 records of ~160 B) on the same file system.
    let path = dir.join("write-probe.bin");
    let record = vec![b'x'; 3 * 160];
    let writes = 10_000;
    let s = measure(plan.log_reps, || {
        let mut f = std::fs::File::create(&path).map_err(|e| io_error("creating a probe", e))?;
        timed(|| {
            for _ in 0..writes {
                std::io::Write::write_all(&mut f, &record)
                    .map_err(|e| io_error("writing a probe", e))?;
            }
            Ok(())
        })
    })?;
    std::fs::remove_file(&path).map_err(|e| io_error("removing the probe", e))?;
    t.time(
        "write(2) of one step's records (480 B) to a file in the log directory",
        s,
        writes as f64,
        1e6,
        "µs",
        Target::None,
    );

    // The parts of reading a log, per event, on a loop log like the `log` section's.
    let log_dir = tempfile::tempdir().map_err(|e| io_error("creating a temp dir", e))?;
    let (path, events) = build_loop_log(log_dir.path(), plan.log_events)?;
    let n = events as f64;
    let per_event = |t: &mut Table, what: &str, s: Stats| {
        t.time(what, s, n, 1e9, "ns", Target::None);
    };
    // Streaming read into one reused buffer, as the log reader does (256 KiB at a time).
    let mut chunk = vec![0u8; 256 * 1024];
    let s = measure(plan.log_reps, || {
        timed(|| {
            let mut f = std::fs::File::open(&path).map_err(|e| io_error("opening the log", e))?;
            while std::io::Read::read(&mut f, &mut chunk)
                .map_err(|e| io_error("reading the log", e))?
                > 0
            {}
            Ok(())
        })
    })?;
    per_event(t, "read(2) of the file in 256 KiB chunks, per event", s);
    let bytes = std::fs::read(&path).map_err(|e| io_error("reading the log", e))?;
    let texts: Vec<&str> = bytes
        .split(|&b| b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).map_err(|_| internal("log is not UTF-8")))
        .collect::<Result<_>>()?;
    // The chain: a running CRC32C over each record without its chain field (format 2), and
    // for comparison the blake3 step format 1 used (prev hash, then the same body).
    let s = measure(plan.log_reps, || {
        timed(|| {
            let mut crc = 0u32;
            for l in &texts {
                crc = crc32c::crc32c_append(crc, &l.as_bytes()[..l.len() - CHAIN_SUFFIX_LEN]);
            }
            std::hint::black_box(crc);
            Ok(())
        })
    })?;
    per_event(
        t,
        "CRC32C chain step of one record (format 2), per event",
        s,
    );
    let s = measure(plan.log_reps, || {
        timed(|| {
            let mut prev = [0u8; 32];
            for l in &texts {
                let body = &l.as_bytes()[..l.len() - CHAIN_SUFFIX_LEN];
                let mut h = blake3::Hasher::new();
                h.update(&prev);
                h.update(body);
                prev = *h.finalize().as_bytes();
            }
            std::hint::black_box(prev);
            Ok(())
        })
    })?;
    per_event(
        t,
        "blake3 chain step of the same record (format 1, for comparison), per event",
        s,
    );
    // A full parse of one event, from its canonical form (what `read_log` hands out).
    let mut canonical = Vec::with_capacity(bytes.len() * 2);
    canonical_log(&path, &mut canonical)?;
    let canonical = String::from_utf8(canonical).map_err(|_| internal("not UTF-8"))?;
    let canonical: Vec<&str> = canonical.lines().skip(1).collect();
    let s = measure(plan.log_reps, || {
        timed(|| {
            for l in &canonical {
                let e = Event::from_json(l).map_err(|e| internal(e.to_string()))?;
                std::hint::black_box(e);
            }
            Ok(())
        })
    })?;
    per_event(t, "Event::from_json of one canonical record, per event", s);
    let s = measure(plan.log_reps, || {
        timed(|| {
            for l in &texts {
                let e: BorrowedEnvelope<'_> =
                    serde_json::from_str(l).map_err(|e| internal(e.to_string()))?;
                std::hint::black_box(e);
            }
            Ok(())
        })
    })?;
    per_event(
        t,
        "a physical record into a borrowed envelope (no allocation, data left raw), per event",
        s,
    );
    let parsed = canonical
        .iter()
        .map(|l| Event::from_json(l).map_err(|e| internal(e.to_string())))
        .collect::<Result<Vec<Event>>>()?;
    let mut out = Vec::with_capacity(bytes.len());
    let s = measure(plan.log_reps, || {
        timed(|| {
            out.clear();
            for e in &parsed {
                serde_json::to_writer(&mut out, e).map_err(|e| internal(e.to_string()))?;
            }
            Ok(())
        })
    })?;
    per_event(t, "serde_json::to_writer of one Event, per event", s);
    let s = measure(plan.log_reps, || timed(|| verify_log(&path).map(drop)))?;
    per_event(t, "verify_log, per event (for comparison)", s);
    let s = measure(plan.log_reps, || timed(|| replay(&path, None).map(drop)))?;
    per_event(t, "replay, per event (for comparison)", s);

    // Where the bytes of a record go.
    let mut fields: std::collections::BTreeMap<String, usize> = Default::default();
    for text in &texts {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| internal(e.to_string()))?;
        for (k, v) in value.as_object().into_iter().flatten() {
            // `"key":value,` — the comma stands for the braces and the newline of the line.
            *fields.entry(k.clone()).or_default() += k.len() + 4 + v.to_string().len();
        }
    }
    let mut fields: Vec<(String, usize)> = fields.into_iter().collect();
    fields.sort_by_key(|f| std::cmp::Reverse(f.1));
    let total: usize = texts.iter().map(|l| l.len() + 1).sum();
    t.note(
        &format!(
            "bytes per record by field ({} B average)",
            total / texts.len()
        ),
        fields
            .iter()
            .map(|(k, b)| format!("{k} {:.0}", *b as f64 / texts.len() as f64))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(())
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Run `figures --child <what> <steps>` and parse its `baseline peak` (KiB) answer.
fn child_peak(what: &str, steps: u64) -> Result<(u64, u64)> {
    let exe = std::env::current_exe().map_err(|e| io_error("locating this binary", e))?;
    let out = Command::new(exe)
        .args(["--child", what, &steps.to_string()])
        .output()
        .map_err(|e| io_error("running the memory child", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(internal(format!(
            "memory child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let nums: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums[..] {
        [base, peak] => Ok((base, peak)),
        _ => Err(internal(format!("memory child printed '{}'", text.trim()))),
    }
}

/// The child: print VmHWM (KiB) before and after one long run (or its verify + replay).
fn child(args: &[String]) -> Result<()> {
    let (what, steps) = match args {
        [what, steps] => (
            what.as_str(),
            steps
                .parse::<u64>()
                .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("steps: {e}")))?,
        ),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "usage: --child run|replay STEPS",
            ))
        }
    };
    let dir = tempfile::tempdir().map_err(|e| io_error("creating a temp dir", e))?;
    let wf = counter_loop(steps);
    let m = mesh(Payload::Small, Some(dir.path()));
    match what {
        "run" => {
            let base = vm_hwm_kib()?;
            run_mesh(&m, &wf, options(Some("mem".into()), None))?;
            println!("{base} {}", vm_hwm_kib()?);
        }
        "replay" => {
            // Write the log first, then start a fresh high-water mark for the read side alone.
            run_mesh(&m, &wf, options(Some("mem".into()), None))?;
            reset_hwm();
            let base = vm_hwm_kib()?;
            let path = dir.path().join("mem.jsonl");
            verify_log(&path)?;
            replay(&path, None)?;
            println!("{base} {}", vm_hwm_kib()?);
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("unknown child measurement '{other}'"),
            ))
        }
    }
    Ok(())
}

/// Reset the peak RSS to the current RSS (Linux `clear_refs` value 5); a no-op where refused.
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| io_error("reading /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| internal("no VmHWM in /proc/self/status"))
}

fn read_trimmed(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

fn machine() {
    let cpuinfo = read_trimmed("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = read_trimmed("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("?")
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".to_owned(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1048576.0)
        });
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("date (UTC): {}", utc_date(secs));
    println!(
        "machine: {nproc} CPUs ({model}), {mem} RAM, Linux {}",
        read_trimmed("/proc/sys/kernel/osrelease")
    );
    println!("load average before: {}", read_trimmed("/proc/loadavg"));
    println!();
}

/// `YYYY-MM-DD HH:MM` of a Unix time (Howard Hinnant's civil-from-days).
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
