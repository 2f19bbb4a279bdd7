#!/usr/bin/env python3
"""Check the JSON Schemas in docs/schema/ against the files they describe.

Validates
  - every bindings-tests/vectors/*/workflow.json and docs/examples/*/workflow.json
    (docs/examples/demo/ included) against workflow.schema.json;
  - every script.json beside them against script.schema.json;
  - every policy-examples/*/policy.json against policy.schema.json (the YAML ones through
    `agentmesh policy show --json` when AGENTMESH_CLI names the binary);
  - every line of every bindings-tests/vectors/*/expected.jsonl against event.schema.json,
    and that those lines are canonical (no meta or chain fields);
  - every line of the physical format-1 logs in agentmesh-core/tests/data/format-v1/, and of
    the log files named on the command line (.ci/run passes the format-2 logs its example runs
    wrote);
  - that the schema's event types are exactly the event table (`event_table!`) in
    agentmesh-core/src/model/event.rs, in its order;
  - a set of invalid documents, each of which must be rejected (so a schema that accepts
    everything fails this script).

Prints one line per failure and a summary `N passed, M failed`; exits 1 on any failure.
Needs the `jsonschema` package (4.18 or later): pip install jsonschema
Run from anywhere: python3 docs/schema/check_schemas.py [LOG.jsonl ...]
"""

import json
import re
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent
ROOT = SCHEMA_DIR.parent.parent


def load_schemas():
    schemas = {
        name: json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
        for name in ("workflow", "event", "script", "policy")
    }
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    # event.schema.json refers to workflow.schema.json by a relative $ref; resolve it locally.
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    validators = {
        name: Draft202012Validator(schema, registry=registry)
        for name, schema in schemas.items()
    }
    # The two branches of event.schema.json's oneOf, for precise messages.
    for part in ("header", "event"):
        ref = {"$ref": f"{schemas['event']['$id']}#/$defs/{part}"}
        validators[f"event.{part}"] = Draft202012Validator(ref, registry=registry)
    return validators


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def fail(self, what, why):
        self.failed += 1
        print(f"FAIL {what}: {why}")

    def ok(self):
        self.passed += 1

    def valid(self, validator, instance, what):
        # best_match looks inside oneOf/anyOf for the most relevant error.
        e = best_match(validator.iter_errors(instance))
        if e is not None:
            path = "/".join(str(p) for p in e.absolute_path) or "(root)"
            self.fail(what, f"at {path}: {e.message[:300]}")
        else:
            self.ok()

    def invalid(self, validator, instance, what):
        if validator.is_valid(instance):
            self.fail(what, "accepted, but must be rejected")
        else:
            self.ok()


def rel(path):
    return path.relative_to(ROOT).as_posix()


def read_json(check, path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        check.fail(rel(path), f"not readable JSON: {e}")
        return None


def check_files(check, v):
    dirs = sorted((ROOT / "bindings-tests" / "vectors").glob("*/"))
    dirs += sorted((ROOT / "docs" / "examples").glob("*/"))
    for d in dirs:
        for name, schema in (("workflow.json", "workflow"), ("script.json", "script")):
            path = d / name
            if path.is_file():
                doc = read_json(check, path)
                if doc is not None:
                    check.valid(v[schema], doc, rel(path))
        expected = d / "expected.jsonl"
        if expected.is_file():
            lines = expected.read_text(encoding="utf-8").split("\n")
            if lines[-1] != "":
                check.fail(rel(expected), "does not end with a newline")
            for n, line in enumerate(lines[:-1], start=1):
                what = f"{rel(expected)}:{n}"
                try:
                    record = json.loads(line)
                except ValueError as e:
                    check.fail(what, f"not JSON: {e}")
                    continue
                # On failure, re-check against the matching branch of the oneOf: its
                # errors say what is wrong, where the oneOf's only says "no branch".
                header = isinstance(record, dict) and "format" in record
                part = v["event.header" if header else "event.event"]
                if v["event"].is_valid(record):
                    check.ok()
                elif part.is_valid(record):
                    check.fail(what, "rejected by event.schema.json")
                else:
                    check.valid(part, record, what)
                physical = [k for k in ("meta", "prev", "hash", "crc") if k in record]
                if physical:
                    check.fail(what, f"not canonical: has {', '.join(physical)}")
                if n == 1 and "format" not in record:
                    check.fail(what, "the first line must be the header")


def check_policies(check, v):
    """The example policies: JSON files as they are, YAML ones in the canonical form the CLI
    prints (their loading is checked by the Rust tests either way)."""
    import os
    import subprocess

    cli = os.environ.get("AGENTMESH_CLI")
    for path in sorted((ROOT / "policy-examples").glob("*/policy.*")):
        if path.suffix == ".json":
            doc = read_json(check, path)
        elif cli:
            out = subprocess.run([cli, "policy", "show", "--json", str(path)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                check.fail(rel(path), out.stderr.strip())
                continue
            doc = json.loads(out.stdout)["policy"]
        else:
            continue
        if doc is not None:
            check.valid(v["policy"], doc, rel(path))


def check_physical_logs(check, v, extra):
    """Log files as written — the committed logs AgentMesh 0.1 wrote (file format 1) and
    any given — are physical records the schema must accept as they are."""
    logs = sorted((ROOT / "agentmesh-core" / "tests" / "data" / "format-v1").glob("*-1.jsonl"))
    if not logs:
        check.fail("format-v1", "no committed format-1 logs found")
    for path in logs + [Path(p).resolve() for p in extra]:
        name = rel(path) if path.is_relative_to(ROOT) else str(path)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            record = json.loads(line)
            check.valid(v["event"], record, f"{name}:{n}")
            if "meta" not in record:
                check.fail(f"{name}:{n}", "not a physical record (no meta)")


def check_event_types(check, event_schema):
    source = (ROOT / "agentmesh-core" / "src" / "model" / "event.rs").read_text()
    m = re.search(r"^event_table! \{(.*?)^\}", source, re.S | re.M)
    if not m:
        check.fail("event.rs", "the event_table! invocation was not found")
        return
    in_code = re.findall(r'^\s+[A-Za-z]+ = "([A-Za-z]+)",', m.group(1), re.M)
    in_schema = event_schema["$defs"]["event"]["properties"]["type"]["enum"]
    with_rule = [
        r["if"]["properties"]["type"]["const"]
        for r in event_schema["$defs"]["event"]["allOf"]
        if "type" in r.get("if", {}).get("properties", {})
    ]
    if in_code != in_schema or sorted(in_code) != sorted(with_rule):
        check.fail(
            "event.schema.json",
            "event types differ from the event table in event.rs: "
            f"{in_code} vs {in_schema} / {with_rule}",
        )
    else:
        check.ok()


HEADER = {
    "format": "agentmesh-log", "version": 1, "flags": [], "runId": "r-1",
    "workflow": {"name": "w", "hash": "a" * 64}, "seed": 1,
}
STEP = {
    "seq": 2, "type": "stepStarted", "runId": "r-1", "traceId": "b" * 32, "parentSeq": 1,
    "data": {"step": 1, "activations": 1},
}
PHYSICAL = dict(STEP, meta={"at": 1795277604298}, prev="c" * 64, hash="d" * 64)
# File format 2: no runId/traceId (the header determines them), a crc instead of prev/hash.
PHYSICAL_2 = dict({k: x for k, x in STEP.items() if k not in ("runId", "traceId")},
                  meta={"at": 1795277604298}, crc="002324e8")
HEADER_2 = dict(HEADER, version=2, meta={"at": 1795277604298}, crc="cd8d9dbd")
SCHEDULED = {
    "seq": 3, "type": "agentScheduled", "runId": "r-1", "traceId": "b" * 32, "parentSeq": 2,
    "node": "a", "attempt": 1, "data": {"agent": "x"},
}
WORKFLOW = {"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}


POLICY = {
    "version": 1,
    "name": "p",
    "rules": [
        {"id": "mail", "detect": "email", "action": "redact"},
        {"id": "zeus", "keywords": ["project zeus"], "action": "block", "on": ["llmRequest"]},
        {"id": "ticket", "regex": "TCK-[0-9]+", "action": "warn"},
    ],
    "tools": {"roles": {"reader": ["read_file"]}, "agents": {"coder": ["reader"]},
              "workflow": ["notify"]},
}


def branch(when):
    return {"name": "w", "nodes": [
        {"id": "a", "type": "agent", "agent": "x"},
        {"id": "b", "type": "branch", "after": ["a"], "cases": [{"when": when, "goto": "c"}]},
        {"id": "c", "type": "agent", "agent": "x"},
    ]}


def node(**fields):
    return {"name": "w", "nodes": [fields]}


def check_self(check, v):
    """Known-good and known-bad documents: the schemas must tell them apart."""
    for doc, what in [
        (HEADER, "header"),
        (dict(HEADER, meta={"at": 5}, prev="0" * 64, hash="e" * 64), "physical header"),
        (STEP, "canonical event"),
        (PHYSICAL, "physical event"),
        (HEADER_2, "format-2 header"),
        (PHYSICAL_2, "format-2 event"),
        (dict(PHYSICAL_2, type="agentFailed", node="a", attempt=1, data={
            "error": {"kind": "error", "type": "E", "message": "m", "retryable": False},
            "usage": {"inputTokens": 5, "outputTokens": 1}}), "failure with usage"),
        (SCHEDULED, "scheduled event"),
    ]:
        check.valid(v["event"], doc, f"self-check: {what} is valid")
    check.valid(v["workflow"], WORKFLOW, "self-check: minimal workflow is valid")
    check.valid(v["policy"], POLICY, "self-check: a policy with every section is valid")
    for doc, what in [
        ({"name": "p"}, "policy without version"),
        (dict(POLICY, version=2), "policy version 2"),
        (dict(POLICY, colour=1), "unknown policy field"),
        (dict(POLICY, rules=[{"id": "r", "action": "redact"}]), "rule without a matcher"),
        (dict(POLICY, rules=[{"id": "r", "action": "redact", "detect": "email", "regex": "a"}]),
         "rule with two matchers"),
        (dict(POLICY, rules=[{"id": "r", "action": "erase", "detect": "email"}]), "unknown action"),
        (dict(POLICY, rules=[{"id": "r", "action": "warn", "detect": "emial"}]), "unknown detector"),
        (dict(POLICY, rules=[{"id": "tools", "action": "warn", "detect": "email"}]),
         "reserved rule id"),
        (dict(POLICY, rules=[{"id": "r", "action": "warn", "detect": "email", "on": ["prompt"]}]),
         "unknown subject"),
        (dict(POLICY, tools={"roles": {"r": ["read file"]}}), "tool name with a space"),
        (dict(POLICY, tools={"roles": {"r": ["rеad"]}}), "tool name with a look-alike"),
    ]:
        check.invalid(v["policy"], doc, f"self-check: {what} is rejected")
    check.valid(v["workflow"], branch({"not": {"any": [
        {"path": "/input/x", "eq": 1}, {"path": "/visits/a", "lt": 3},
    ]}}), "self-check: nested condition is valid")

    bad_workflows = [
        ({"nodes": WORKFLOW["nodes"]}, "no name"),
        ({"name": "w", "nodes": []}, "no nodes"),
        (dict(WORKFLOW, colour=1), "unknown workflow field"),
        (dict(WORKFLOW, maxSteps=0), "maxSteps 0"),
        (node(id="a", type="agent"), "agent node without agent"),
        (node(id="a", type="tool", tool="t", agent="x"), "tool node with agent"),
        (node(id="a", type="human", timeoutMs=5), "human node with timeoutMs"),
        (node(id="a/b", type="agent", agent="x"), "id with a slash"),
        (node(id="a", type="robot"), "unknown node type"),
        (node(id="a", type="agent", agent="x", retry={"maxAttempts": 0}), "maxAttempts 0"),
        (node(id="a", type="agent", agent="x", retry={"maxAttempts": 2, "backoffMultiplier": 0.5}),
         "backoffMultiplier below 1"),
        (node(id="a", type="agent", agent="x", timeoutMs=604800001), "timeoutMs above 7 days"),
        (node(id="b", type="branch"), "branch without cases or default"),
        (node(id="a", type="agent", agent="x\ny"), "control character in agent name"),
        (branch({"path": "/input/x", "eq": 1, "ne": 2}), "test with two operators"),
        (branch({"path": "/input/x"}), "test without operator"),
        (branch({"path": "input/x", "eq": 1}), "path not a JSON pointer"),
        (branch({"path": "/visits/a/x", "eq": 1}), "field after a visit count"),
        (branch({"path": "/input/x", "in": 3}), "in with a non-array"),
        (branch({"path": "/input/x", "gt": {}}), "gt with an object"),
        (branch({"path": "/input/x", "exists": "yes"}), "exists with a non-boolean"),
        (branch({"all": []}), "empty all"),
        (branch({"path": "/input/x", "frob": 1}), "unknown operator"),
        (dict(WORKFLOW, budget={"calls": -1}), "a negative budget"),
        (dict(WORKFLOW, budget={"dollars": 1}), "an unknown budget dimension"),
        (dict(WORKFLOW, budget={"microUsd": 1.5}), "a fractional budget"),
        (dict(WORKFLOW, budgetWarnings=[0]), "a warning threshold of 0"),
        (node(id="h", type="human", budget={"calls": 1}), "a budget on a human node"),
        (node(id="m", type="map", agent="x"), "a map without over"),
        (node(id="m", type="map", over="/input"), "a map without agent or tool"),
        (node(id="m", type="map", agent="x", tool="t", over="/input"), "a map with agent and tool"),
        (node(id="m", type="map", agent="x", over="/visits/a"), "a map over a visit count"),
        (node(id="m", type="map", agent="x", over="/input", maxItems=0), "maxItems 0"),
        (node(id="m", type="map", agent="x", over="/input", onItemFailure="skip"),
         "an unknown onItemFailure"),
        (node(id="a", type="agent", agent="x", over="/input"), "over on an agent node"),
        (node(id="a", type="agent", agent="x", reads=["input"]), "a read that is not a pointer"),
        (node(id="b", type="branch", default="b", reads=["/input"]), "reads on a branch"),
        (node(id="a", type="agent", agent="x", output={"repair": True}), "an output without schema"),
        (node(id="b", type="branch", default="b", output={"schema": {}}), "an output on a branch"),
        (node(id="w", type="workflow"), "a workflow node without its workflow"),
        (node(id="w", type="workflow", agent="x", workflow=WORKFLOW), "a workflow node with an agent"),
        (node(id="w", type="workflow", workflow=WORKFLOW, input="input"), "an input that is not a pointer"),
        (node(id="w", type="workflow", workflow={"name": "c", "nodes": []}), "an empty child workflow"),
        (node(id="a", type="agent", agent="x", input="/input"), "input on an agent node"),
    ]
    for doc, what in bad_workflows:
        check.invalid(v["workflow"], doc, f"self-check: workflow with {what} is rejected")

    bad_events = [
        (dict(HEADER, version=2), "canonical header of version 2"),
        (dict(HEADER, version=7, meta={"at": 5}, crc="0" * 8), "header of version 7"),
        (dict(HEADER, version=5, meta={"at": 5}, crc="0" * 8, policy={"name": "p"}),
         "header policy without a hash"),
        (dict(HEADER, meta={"at": 5}, crc="0" * 8), "format-1 header with a crc"),
        (dict(HEADER_2, prev="0" * 64, hash="e" * 64), "crc and prev/hash together"),
        (dict(PHYSICAL_2, runId="r-1"), "format-2 event with runId"),
        (dict(PHYSICAL_2, crc="ABCDEF01"), "uppercase crc"),
        (dict(PHYSICAL_2, crc="0" * 9), "crc of 9 digits"),
        (dict({k: x for k, x in PHYSICAL_2.items() if k != "meta"}), "crc without meta"),
        ({k: x for k, x in STEP.items() if k != "traceId"}, "canonical event without traceId"),
        (dict(HEADER, prev="0" * 64), "header with prev but no hash"),
        (dict(STEP, type="stepFinished"), "unknown event type"),
        (dict(STEP, data={"step": 1}), "stepStarted without activations"),
        (dict(STEP, node="a"), "stepStarted with a node"),
        ({k: x for k, x in STEP.items() if k != "parentSeq"}, "stepStarted without parentSeq"),
        (dict(STEP, traceId="xyz"), "malformed traceId"),
        (dict(PHYSICAL, hash="D" * 64), "uppercase hash"),
        (dict(STEP, prev="c" * 64, hash="d" * 64), "chain fields without meta"),
        (dict(SCHEDULED, data={"tool": "x"}), "agentScheduled naming a tool"),
        ({k: x for k, x in SCHEDULED.items() if k != "attempt"}, "scheduled event without attempt"),
        (dict(STEP, type="runFailed", data={"error": {"code": "OOPS", "message": "m"}}),
         "runFailed with an unknown code"),
        (dict(STEP, type="nodeSkipped", node="a", data={"why": 1}), "nodeSkipped with data"),
        (dict(STEP, type="branchDecided", node="a", data={"case": 0}),
         "branchDecided without goto"),
        (dict(STEP, type="agentFailed", node="a", attempt=1,
              data={"error": {"kind": "crash", "type": "E", "message": "m", "retryable": True}}),
         "failure of unknown kind"),
        (dict(SCHEDULED, data={"agent": "x", "lease": {"calls": -1}}), "a negative lease"),
        (dict(STEP, type="budgetWarning", data={"scope": "run", "dimension": "calls",
                                                "threshold": 80, "limit": 5}),
         "budgetWarning without spent"),
        (dict(SCHEDULED, data={"agent": "x", "item": {"key": "k"}}), "an item without index"),
        (dict(SCHEDULED, data={"agent": "x", "reads": {"/input": 0}}), "a read from seq 0"),
        (dict(STEP, type="mapCompleted", node="a", data={}), "mapCompleted without items"),
        (dict(STEP, type="agentCompleted", node="a", attempt=1,
              data={"output": 1, "repaired": {"from": "a" * 64, "to": "b" * 64, "fixes": ["magic"]}}),
         "a repair with an unknown fix"),
        (dict(STEP, type="mapCompleted", node="a", data={"items": 2, "failed": 0}),
         "mapCompleted with failed 0"),
        (dict(STEP, type="callDenied", sub=1, node="a", attempt=1,
              data={"call": 1, "kind": "llm", "name": "p", "request": {}}),
         "callDenied without its refusal"),
    ]
    for doc, what in bad_events:
        check.invalid(v["event"], doc, f"self-check: {what} is rejected")

    bad_scripts = [
        ({"agents": {"a": [{"outputs": 1}]}}, "misspelled behaviour field"),
        ({"agents": {"a": {"output": 1}}}, "behaviours not in a list"),
        ({"agents": {"a": [{"error": {"type": "E"}}]}}, "error without message"),
        ({"seed": -1}, "negative seed"),
        ({"runId": ".hidden"}, "run id starting with a dot"),
        ({"approval": {}}, "unknown top-level field"),
        ({"agents": {"a": [{"item": -1}]}}, "a negative item filter"),
    ]
    for doc, what in bad_scripts:
        check.invalid(v["script"], doc, f"self-check: script with {what} is rejected")


def main():
    check = Checker()
    v = load_schemas()
    check_files(check, v)
    check_policies(check, v)
    check_physical_logs(check, v, sys.argv[1:])
    check_event_types(check, v["event"].schema)
    check_self(check, v)
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
