"""Run the Rust, Python and Node benchmarks and print one table (optionally into docs).

    python3 benches/all.py            # builds what it needs (release), runs all three, prints
    python3 benches/all.py --write    # ... and replaces the table in docs/performance.md

What it runs, each a release build measured the same way (best of N after a warm-up):

- Rust: ``cargo run --release -p agentmesh-benches --bin figures -- --only chain|fanout|small``
  (the ``Mesh`` rows; figures prints a markdown table that is parsed here);
- Python: ``benches/python/bench.py --json`` with the interpreter given by ``--python``
  (default: a virtualenv this script creates in ``target/bench-venv`` and installs
  ``./agentmesh-py`` into — a release build);
- Node: ``benches/node/bench.js --json`` after building the addon in release
  (``node agentmesh-node/scripts/install.js --force``).

The per-language floors (a plain loop calling the same functions, writing JSON lines, one
fsync) are measured by the Python and Node scripts in the same process as their rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"

WORKLOADS = [
    ("chain_1000", "chain 1000, per step"),
    ("fanout_100_join", "fan-out 100 + join, per run"),
    ("small_runs_1000x5", "1000 × 5-node chain, per run"),
]

Key = Tuple[str, str, str, str]  # (workload, language, host, log)


def run(cmd: List[str], **kw: object) -> str:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, cwd=ROOT, **kw).stdout  # type: ignore[call-overload]


def to_us(text: str) -> float:
    m = re.match(r"([\d.]+)(M?) (µs|ms|s)", text.strip())
    if not m:
        raise ValueError(f"cannot read a time from {text!r}")
    value = float(m.group(1)) * (1e6 if m.group(2) else 1)
    return value * {"µs": 1, "ms": 1e3, "s": 1e6}[m.group(3)]


def rust_rows(quick: bool) -> Dict[Key, Tuple[float, float]]:
    labels = {
        "chain 1000, Mesh, memory: per step": ("chain_1000", "memory", 1),
        "chain 1000, Mesh, file (batch fsync): per step": ("chain_1000", "file", 1),
        "fan-out 100 + join, Mesh (worker pool), memory: per run": ("fanout_100_join", "memory", 1),
        "fan-out 100 + join, Mesh (worker pool), file: per run": ("fanout_100_join", "file", 1),
        "1000 runs of a 5-node chain, Mesh, memory: total": ("small_runs_1000x5", "memory", 1000),
        "1000 runs of a 5-node chain, Mesh, file (batch): total": ("small_runs_1000x5", "file", 1000),
    }
    rows: Dict[Key, Tuple[float, float]] = {}
    for section in ("chain", "fanout", "small"):
        cmd = ["cargo", "run", "-q", "--release", "-p", "agentmesh-benches", "--bin", "figures", "--", "--only", section]
        out = run(cmd + (["--quick"] if quick else []))
        for line in out.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and cells[0] in labels:
                workload, log, per = labels[cells[0]]
                rows[(workload, "rust", "mesh", log)] = (to_us(cells[1]) / per, to_us(cells[2]) / per)
    return rows


def python_rows(python: Optional[str], quick: bool) -> Tuple[Dict[Key, Tuple[float, float]], Dict[str, float]]:
    if python is None:
        venv = ROOT / "target" / "bench-venv"
        if not (venv / "bin" / "python").exists():
            run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "./agentmesh-py"])
        python = str(venv / "bin" / "python")
    out = run([python, "benches/python/bench.py", "--json"] + (["--quick"] if quick else []))
    return rows_of(out, "python")


def node_rows(quick: bool) -> Tuple[Dict[Key, Tuple[float, float]], Dict[str, float]]:
    run(["node", "agentmesh-node/scripts/install.js", "--force"])
    out = run(["node", "benches/node/bench.js", "--json"] + (["--quick"] if quick else []))
    return rows_of(out, "node")


# Rows of the log-reading benchmarks (events/s and peak memory, not times), by language.
READS: List[Dict[str, object]] = []


def rows_of(out: str, language: str) -> Tuple[Dict[Key, Tuple[float, float]], Dict[str, float]]:
    rows: Dict[Key, Tuple[float, float]] = {}
    floors: Dict[str, float] = {}
    for line in out.splitlines():
        r = json.loads(line)
        if "best_us" not in r:
            READS.append(r)
        elif r["host"] == "floor":
            floors[r["workload"]] = r["best_us"]
        else:
            rows[(r["workload"], language, r["host"], r["log"])] = (r["best_us"], r["median_us"])
    return rows, floors


def fmt(us: float) -> str:
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.2f} µs"


def table(rows: Dict[Key, Tuple[float, float]], floors: Dict[Tuple[str, str], float]) -> str:
    hosts = [("rust", "mesh", "Rust `Mesh`"), ("python", "sync", "Python `run`"), ("python", "async", "Python `run_async`"),
             ("node", "sync", "Node `runSync`"), ("node", "async", "Node `run`")]
    out = ["| Workload | Host | memory | file (batch) | floor (same language) | file ÷ floor |", "|---|---|---|---|---|---|"]
    for workload, title in WORKLOADS:
        for language, host, name in hosts:
            mem = rows.get((workload, language, host, "memory"))
            disk = rows.get((workload, language, host, "file"))
            if mem is None and disk is None:
                continue
            floor = floors.get((workload, language))
            ratio = f"{disk[0] / floor:.1f}×" if disk and floor else "–"
            out.append(
                f"| {title} | {name} | {fmt(mem[0]) if mem else '–'} | {fmt(disk[0]) if disk else '–'} | "
                f"{fmt(floor) if floor else '–'} | {ratio} |"
            )
    return "\n".join(out)


def read_table() -> str:
    """One pass over a large log: events (or states) per second and peak memory."""
    out = ["| Read | Host | events/s | peak RSS (at start) |", "|---|---|---|---|"]
    for r in READS:
        rate = r.get("items_per_s") or r.get("events_per_s")
        base = r.get("baseline_rss_mb") or r.get("base_rss_mb")
        out.append(f"| {r['workload']} | {r['language'].capitalize()} `{r['host']}` | {rate:,} | {r['peak_rss_mb']} MB ({base} MB) |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", help="a Python with agentmesh installed (release build)")
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke test")
    ap.add_argument("--write", action="store_true", help=f"replace the table in {DOC.relative_to(ROOT)}")
    args = ap.parse_args()
    rows = rust_rows(args.quick)
    floors: Dict[Tuple[str, str], float] = {}
    for language, (lang_rows, lang_floors) in (("python", python_rows(args.python, args.quick)), ("node", node_rows(args.quick))):
        rows.update(lang_rows)
        floors.update({(w, language): f for w, f in lang_floors.items()})
    text = table(rows, floors)
    if READS:
        text += "\n\n" + read_table()
    print(text)
    if args.write:
        doc = DOC.read_text(encoding="utf-8")
        if START not in doc or END not in doc:
            raise SystemExit(f"{DOC}: no {START} … {END} markers")
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
