"""Python binding benchmark: AgentMesh per-step and per-run cost next to the plain-Python floor.

Run it after installing the package (release build: ``pip install ./agentmesh-py``)::

    python benches/python/bench.py            # the full table (about a minute)
    python benches/python/bench.py --quick    # fewer repetitions: a smoke test, not a figure
    python benches/python/bench.py --json     # one JSON object per line, for benches/all.sh
    python benches/python/bench.py --only readlog [--readlog-mb 136]   # streaming reads

The **floor** is what a plain Python loop pays for the same work, measured in the same
process: call the same no-op functions, ``json.dumps`` each result, append it to a file, one
fsync at the end (per run for the small-runs workload). AgentMesh adds the orchestrator, a
hash-chained durable log and the driver; the target is at most 3x the floor per step with
the file log (fsync batch). Every figure is the best of N repetitions after a warm-up; the
median is printed next to it. This is a script, not a test: nothing asserts on time.

``readlog`` builds one big log (a counter loop, written by the ``agentmesh`` CLI when it is
found — ``$AGENTMESH_CLI``, ``target/release/agentmesh`` or ``target/debug/agentmesh`` — else
by this package) and measures, each in a fresh child process, iterating ``read_log`` (events/s
and peak RSS: the targets are >= 500k events/s and < 50 MB for a ~136 MB log) and
``history`` (states/s), next to ``json.loads`` of every canonical line as the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

import agentmesh


def noop(act: agentmesh.Activation) -> Any:
    return None


async def noop_async(act: agentmesh.Activation) -> Any:
    return None


def small(act: agentmesh.Activation) -> Any:
    return {"ok": True, "visit": act.visit}


def chain(n: int) -> agentmesh.Workflow:
    b = agentmesh.Workflow.builder(f"chain-{n}")
    for i in range(n):
        b.agent(f"n{i}", "noop", after=[f"n{i - 1}"] if i else [])
    return b.build()


def fanout(width: int) -> agentmesh.Workflow:
    b = agentmesh.Workflow.builder(f"fanout-{width}")
    for i in range(width):
        b.agent(f"w{i}", "noop")
    b.agent("join", "noop", after=[f"w{i}" for i in range(width)])
    return b.build()


def timed(fn: Callable[[], Any], reps: int) -> Tuple[float, float]:
    """(best, median) seconds of ``reps`` calls after one untimed warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


class Scratch:
    """A fresh directory per repetition, removed after the clock stops."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="agentmesh-bench-")
        self.n = 0

    def fresh(self) -> str:
        self.n += 1
        d = os.path.join(self.root, str(self.n))
        os.mkdir(d)
        return d

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# the floor ---------------------------------------------------------------------------------


def floor_calls(fn: Callable[[Any], Any], acts: List[Any], path: str) -> None:
    """The plain loop: call, json.dumps, append a line; one fsync at the end."""
    with open(path, "a", encoding="utf-8") as f:
        for act in acts:
            f.write(json.dumps(fn(act)))
            f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def fake_acts(n: int) -> List[Any]:
    # The floor's functions receive an argument like the agents do (a cheap stand-in).
    return [SimpleNamespace(visit=1) for _ in range(n)]


# workloads ---------------------------------------------------------------------------------

Row = Dict[str, Any]


def bench_chain(scratch: Scratch, reps: int, n: int) -> List[Row]:
    wf = chain(n)
    rows: List[Row] = []
    acts = fake_acts(n)

    def floor() -> None:
        floor_calls(noop, acts, os.path.join(scratch.fresh(), "floor.jsonl"))

    best, med = timed(floor, reps)
    floor_us = best / n * 1e6
    rows.append(row("chain_1000", "floor", "file", best / n, med / n, floor_us))

    for mode in ("memory", "file"):
        for kind in ("sync", "async"):
            one = runner(scratch, mode, kind, wf, noop_async if kind == "async" else noop)
            best, med = timed(one, reps)
            rows.append(row("chain_1000", kind, mode, best / n, med / n, floor_us))
    return rows


def runner(
    scratch: Scratch, mode: str, kind: str, wf: agentmesh.Workflow, fn: Callable[[Any], Any]
) -> Callable[[], None]:
    """One run per call, on one long-lived Mesh (as an application keeps one): a new run id
    (so a new log file) each time. Async runs are awaited inside one event loop per call."""
    mesh = agentmesh.Mesh(log_dir=scratch.fresh() if mode == "file" else None)
    mesh.add_agent("noop", fn)
    count = [0]

    def one() -> None:
        count[0] += 1
        run_id = f"r{count[0]}"
        if kind == "async":
            r = asyncio.run(mesh.run_async(wf, run_id=run_id))
        else:
            r = mesh.run(wf, run_id=run_id)
        assert r.status == "completed", r

    return one


def bench_fanout(scratch: Scratch, reps: int, width: int) -> List[Row]:
    wf = fanout(width)
    rows: List[Row] = []
    acts = fake_acts(width + 1)

    def floor() -> None:
        floor_calls(noop, acts, os.path.join(scratch.fresh(), "floor.jsonl"))

    best, med = timed(floor, reps)
    floor_run = best
    rows.append(row("fanout_100_join", "floor", "file", best, med, floor_run * 1e6, per="run"))
    for mode in ("memory", "file"):
        for kind in ("sync", "async"):
            one = runner(scratch, mode, kind, wf, noop_async if kind == "async" else noop)
            best, med = timed(one, reps)
            rows.append(row("fanout_100_join", kind, mode, best, med, floor_run * 1e6, per="run"))
    return rows


def bench_small_runs(scratch: Scratch, reps: int, runs: int) -> List[Row]:
    wf = chain(5)
    rows: List[Row] = []
    acts = fake_acts(5)

    def floor() -> None:
        d = scratch.fresh()
        for i in range(runs):
            floor_calls(small, acts, os.path.join(d, f"r{i}.jsonl"))

    best, med = timed(floor, reps)
    floor_run_us = best / runs * 1e6
    rows.append(row("small_runs_1000x5", "floor", "file", best / runs, med / runs, floor_run_us, per="run"))
    for mode in ("memory", "file"):
        for kind in ("sync", "async"):
            many = small_runs(scratch, mode, kind, wf, runs)
            best, med = timed(many, reps)
            rows.append(row("small_runs_1000x5", kind, mode, best / runs, med / runs, floor_run_us, per="run"))
    return rows


async def small_async(act: agentmesh.Activation) -> Any:
    return {"ok": True, "visit": act.visit}


def small_runs(
    scratch: Scratch, mode: str, kind: str, wf: agentmesh.Workflow, runs: int
) -> Callable[[], None]:
    """``runs`` runs one after another on one Mesh (async: inside one event loop)."""
    mesh = agentmesh.Mesh(log_dir=scratch.fresh() if mode == "file" else None)
    mesh.add_agent("noop", small_async if kind == "async" else small)
    batch = [0]

    async def many_async(prefix: str) -> None:
        for i in range(runs):
            r = await mesh.run_async(wf, run_id=f"{prefix}-{i}")
            assert r.status == "completed", r

    def many() -> None:
        batch[0] += 1
        prefix = f"b{batch[0]}"
        if kind == "async":
            asyncio.run(many_async(prefix))
            return
        for i in range(runs):
            r = mesh.run(wf, run_id=f"{prefix}-{i}")
            assert r.status == "completed", r

    return many


# streaming reads -----------------------------------------------------------------------------

READLOG_OUTPUT = {"ok": True, "summary": "a short status line an agent might return, about this long", "score": 0.75}


def readlog_workflow(iterations: int) -> Dict[str, Any]:
    """A loop of one agent: four events per iteration, a workflow of constant size."""
    return {"name": "readlog-bench", "maxSteps": iterations + 10, "nodes": [
        {"id": "work", "type": "agent", "agent": "worker", "maxVisits": iterations},
        {"id": "again", "type": "branch", "after": ["work"],
         "cases": [{"when": {"path": "/visits/work", "lt": iterations}, "goto": "work"}]},
    ]}


def find_cli() -> Optional[str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for path in (os.environ.get("AGENTMESH_CLI"), os.path.join(root, "target", "release", "agentmesh"),
                 os.path.join(root, "target", "debug", "agentmesh")):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def build_big_log(directory: str, megabytes: int) -> Tuple[str, str]:
    """A log of about ``megabytes`` MB; (path, what wrote it)."""
    iterations = max(1, megabytes * 1_000_000 // 925)  # ~925 bytes per iteration
    spec = readlog_workflow(iterations)
    cli = find_cli()
    if cli is not None:
        wf_path = os.path.join(directory, "workflow.json")
        script = os.path.join(directory, "script.json")
        with open(wf_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        with open(script, "w", encoding="utf-8") as f:
            json.dump({"agents": {"worker": [{"output": READLOG_OUTPUT}]}}, f)
        subprocess.run([cli, "run", wf_path, "--script", script, "--log-dir", directory, "--run-id", "big"],
                       check=True, stdout=subprocess.DEVNULL)
        return os.path.join(directory, "big.jsonl"), cli
    mesh = agentmesh.Mesh(log_dir=directory, fsync="never")
    mesh.add_agent("worker", lambda act: READLOG_OUTPUT)
    r = mesh.run(agentmesh.Workflow.from_dict(spec), run_id="big")
    assert r.status == "completed" and r.log_path is not None, r
    return r.log_path, "agentmesh (Python)"


def readlog_child(what: str, path: str) -> Dict[str, Any]:
    """In a fresh process: one pass of ``what`` over the log; items, seconds, peak RSS (KiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    n = 0
    if what == "read_log":
        for _ in agentmesh.read_log(path):
            n += 1
    elif what == "history":
        for _ in agentmesh.history(path):
            n += 1
    else:  # the floor: json.loads of every canonical line (the old read_log's per-event cost)
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)
                n += 1
    elapsed = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"items": n, "seconds": elapsed, "peak_kib": peak, "baseline_kib": before}


def bench_readlog(scratch: Scratch, megabytes: int) -> List[Row]:
    path, writer = build_big_log(scratch.fresh(), megabytes)
    size_mb = os.path.getsize(path) / 1e6
    rows: List[Row] = []
    for what in ("json_loads_lines", "read_log", "history"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--readlog-child", what, path],
                             check=True, capture_output=True, text=True).stdout
        m = json.loads(out)
        rows.append({
            "language": "python", "workload": f"readlog_{round(size_mb)}mb", "host": what,
            "log": "file", "per": "pass", "items": m["items"], "seconds": round(m["seconds"], 3),
            "items_per_s": round(m["items"] / m["seconds"]) if m["seconds"] > 0 else None,
            "peak_rss_mb": round(m["peak_kib"] / 1024, 1), "baseline_rss_mb": round(m["baseline_kib"] / 1024, 1),
            "log_mb": round(size_mb, 1), "written_by": os.path.basename(writer),
        })
    return rows


def print_readlog(rows: List[Row]) -> None:
    print(f"{'workload':<16}{'pass':<18}{'items':>10}{'seconds':>9}{'items/s':>12}{'peak RSS MB':>13}{'baseline MB':>13}")
    for r in rows:
        print(f"{r['workload']:<16}{r['host']:<18}{r['items']:>10}{r['seconds']:>9.2f}{r['items_per_s']:>12,}"
              f"{r['peak_rss_mb']:>13.1f}{r['baseline_rss_mb']:>13.1f}")


def row(
    workload: str, host: str, log: str, best_s: float, median_s: float, floor_us: float, per: str = "step"
) -> Row:
    best_us = best_s * 1e6
    return {
        "language": "python",
        "workload": workload,
        "host": host,
        "log": log,
        "per": per,
        "best_us": round(best_us, 2),
        "median_us": round(median_s * 1e6, 2),
        "floor_us": round(floor_us, 2),
        "x_floor": round(best_us / floor_us, 2) if floor_us > 0 else None,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    ap.add_argument("--only", choices=("chain", "fanout", "small", "readlog"), help="one workload")
    ap.add_argument("--readlog-mb", type=int, default=136, help="size of the readlog log (MB)")
    ap.add_argument("--readlog-child", nargs=2, metavar=("WHAT", "LOG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.readlog_child:
        print(json.dumps(readlog_child(*args.readlog_child)))
        return 0
    reps = {"chain": 3 if args.quick else 15, "fanout": 3 if args.quick else 30, "small": 1 if args.quick else 5}
    scratch = Scratch()
    rows: List[Row] = []
    try:
        if args.only in (None, "chain"):
            rows += bench_chain(scratch, reps["chain"], 1000)
        if args.only in (None, "fanout"):
            rows += bench_fanout(scratch, reps["fanout"], 100)
        if args.only in (None, "small"):
            rows += bench_small_runs(scratch, reps["small"], 100 if args.quick else 1000)
        if args.only == "readlog" or (args.only is None and not args.quick):
            read_rows = bench_readlog(scratch, 4 if args.quick else args.readlog_mb)
        else:
            read_rows = []
    finally:
        scratch.close()
    if args.json:
        for r in rows + read_rows:
            print(json.dumps(r))
        return 0
    if not rows:
        print(f"python {sys.version.split()[0]}, agentmesh {agentmesh.__version__}")
        print_readlog(read_rows)
        return 0
    print(f"python {sys.version.split()[0]}, agentmesh {agentmesh.__version__}; best (median) of N")
    print(f"{'workload':<20}{'host':<7}{'log':<8}{'per':<5}{'best µs':>12}{'median µs':>12}{'floor µs':>11}{'× floor':>9}")
    for r in rows:
        x = "" if r["host"] == "floor" else f"{r['x_floor']:.2f}"
        print(
            f"{r['workload']:<20}{r['host']:<7}{r['log']:<8}{r['per']:<5}"
            f"{r['best_us']:>12.2f}{r['median_us']:>12.2f}{r['floor_us']:>11.2f}{x:>9}"
        )
    if read_rows:
        print_readlog(read_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
