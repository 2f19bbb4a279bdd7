"""Regenerate agentmesh-core/data/prices.json from the genai-prices data (MIT, pydantic).

    python3 agentmesh-core/data/tools/from_genai_prices.py PATH/TO/genai-prices/data/prices.json \
        --source "genai-prices 0.2.1" --date 2026-12-02 > agentmesh-core/data/prices.json

The crate ships its data: after `cargo fetch` of genai-prices it is at
~/.cargo/registry/src/*/genai-prices-<v>/data/prices.json. Only token prices are kept (input,
output, cache read, cache write, reasoning), as integer micro-USD per million tokens; a
model's prices in effect on --date are taken when they change over time; tiered prices
(by prompt size) keep their tiers. Models priced only in other units (audio hours, pages,
searches) are left out. The output is sorted and stable, so a refresh diff shows what moved.
"""

import argparse
import json
import sys
from decimal import Decimal

KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cachedInput",
    "cache_write_mtok": "cacheWrite",
    "output_reasoning_mtok": "reasoning",
}


def micro(value, where):
    """USD per million tokens -> integer micro-USD per million tokens (exact or refused)."""
    d = Decimal(str(value)) * 1_000_000
    whole = d.to_integral_value()
    if d < 0:
        sys.exit(f"{where}: a negative price {value}")
    # The data are floats: 0.18000000000000002 is 0.18. A price truly between two whole
    # micro-USD per Mtok (0.0833333 USD/Mtok) is rounded up: never cheaper than the source.
    if abs(d - whole) <= Decimal("0.001"):
        return int(whole)
    print(f"{where}: {value} USD/Mtok rounded up to {int(d) + 1} micro-USD/Mtok", file=sys.stderr)
    return int(d) + 1


def price(value, where):
    if isinstance(value, (int, float)):
        return micro(value, where)
    if isinstance(value, dict) and set(value) == {"base", "tiers"}:
        return {
            "base": micro(value["base"], where),
            "tiers": [
                {"above": int(t["start"]), "price": micro(t["price"], where)}
                for t in value["tiers"]
            ],
        }
    sys.exit(f"{where}: unknown price shape {value!r}")


def match(rule, where):
    if not isinstance(rule, dict) or len(rule) != 1:
        sys.exit(f"{where}: unknown match rule {rule!r}")
    (kind, arg), = rule.items()
    names = {"equals": "equals", "starts_with": "startsWith", "ends_with": "endsWith",
             "contains": "contains", "regex": "regex"}
    if kind == "regex" and arg.startswith("^(?!") and arg.endswith(")"):
        # `^(?!X)` (no lookaround in Rust's linear-time regex crate) is "not ^X".
        inner = arg[4:-1]
        if "(?=" in inner or "(?!" in inner or "(?<" in inner:
            sys.exit(f"{where}: unsupported lookaround in {arg!r}")
        return {"not": {"regex": "^" + inner}}
    if kind == "regex" and ("(?=" in arg or "(?!" in arg or "(?<" in arg):
        sys.exit(f"{where}: unsupported lookaround in {arg!r}")
    if kind in names:
        return {names[kind]: arg}
    if kind in ("or", "and"):
        return {kind: [match(r, where) for r in arg]}
    sys.exit(f"{where}: unknown match rule {kind}")


def in_effect(prices, date, where):
    """A list of {constraint, prices}: the last one whose start_date is on or before date."""
    if isinstance(prices, dict):
        return prices
    chosen = None
    for entry in prices:
        constraint = entry.get("constraint") or {}
        start = constraint.get("start_date")
        if set(constraint) - {"start_date"}:
            continue  # time-of-day or other conditions: not a snapshot price
        if start is None or start <= date:
            chosen = entry["prices"]
    if chosen is None:
        sys.exit(f"{where}: no price in effect on {date}")
    return chosen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prices")
    ap.add_argument("--source", required=True)
    ap.add_argument("--date", required=True)
    args = ap.parse_args()
    data = json.load(open(args.prices))
    models = []
    for provider in data:
        for m in provider["models"]:
            where = f"{provider['id']}/{m['id']}"
            raw = in_effect(m["prices"], args.date, where)
            prices = {KEYS[k]: price(v, where) for k, v in raw.items() if k in KEYS}
            if "input" not in prices or "output" not in prices:
                continue
            models.append({
                "provider": provider["id"],
                "model": m["id"],
                "match": match(m["match"], where),
                "prices": dict(sorted(prices.items())),
            })
    models.sort(key=lambda m: (m["provider"], m["model"]))
    out = {
        "version": 1,
        "unit": "micro-USD per million tokens",
        "source": f"{args.source} (https://github.com/pydantic/genai-prices, MIT licence)",
        "asOf": args.date,
        "models": models,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=False, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
