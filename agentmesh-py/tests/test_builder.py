"""``Workflow.builder``: workflows built in code are the same documents as their JSON form,
are validated the same way, and run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List

import pytest

import agentmesh
from agentmesh import Retry, Workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def same(built: Workflow, reference: Workflow) -> None:
    assert built.to_dict() == reference.to_dict()
    assert built.to_json() == reference.to_json()
    assert built.hash == reference.hash
    assert built.name == reference.name
    assert built.node_ids() == reference.node_ids()


def review_loop() -> Workflow:
    return (
        Workflow.builder("review-loop")
        .max_steps(20)
        .agent("draft", "writer", max_visits=3)
        .agent("review", "critic", after=["draft"])
        .branch(
            "route",
            [
                ({"path": "/outputs/review/score", "gte": 0.8}, "publish"),
                (
                    {"all": [
                        {"path": "/visits/draft", "lt": 3},
                        {"path": "/outputs/review/fixable", "eq": True},
                    ]},
                    "draft",
                ),
            ],
            default="escalate",
            after=["review"],
        )
        .agent("publish", "publisher")
        .agent("escalate", "editor")
        .build()
    )


# equality with the JSON form -----------------------------------------------------------------


def test_review_loop_equals_the_example_file() -> None:
    same(review_loop(), Workflow.from_file(EXAMPLES / "review-loop" / "workflow.json"))


def test_triage_equals_the_example_file() -> None:
    built = (
        Workflow.builder("triage")
        .agent("classify", "classifier")
        .branch(
            "route",
            [
                ({"path": "/outputs/classify/category", "in": ["bug", "crash"]}, "engineer"),
                ({"path": "/outputs/classify/category", "matches": "^billing"}, "finance"),
            ],
            "support",
            after="classify",
        )
        .agent("engineer", "engineer")
        .agent("finance", "finance")
        .agent("support", "support")
        .agent("reply", "mailer", after=("engineer", "finance", "support"))
        .build()
    )
    same(built, Workflow.from_file(EXAMPLES / "triage" / "workflow.json"))


def test_tool_timeout_and_retry_equal_the_example_file() -> None:
    built = (
        Workflow.builder("retry-backoff")
        .tool("fetch", "http_get", timeout_ms=200, retry=Retry(4, backoff_ms=20, backoff_multiplier=2))
        .agent("parse", "parser", after="fetch")
        .build()
    )
    same(built, Workflow.from_file(EXAMPLES / "retry-backoff" / "workflow.json"))
    assert built.tool_names() == ["http_get"] and built.agent_names() == ["parser"]


def test_human_and_tools_equal_the_example_file() -> None:
    built = (
        Workflow.builder("approval")
        .agent("draft", "writer")
        .human("approve", "Publish this draft?", after="draft")
        .branch(
            "decide",
            [({"path": "/outputs/approve/approved", "eq": True}, "publish")],
            default="archive",
            after="approve",
        )
        .tool("publish", "cms")
        .tool("archive", "cms")
        .build()
    )
    same(built, Workflow.from_file(EXAMPLES / "approval" / "workflow.json"))


def test_every_option_maps_to_its_json_field() -> None:
    built = (
        Workflow.builder("all-options")
        .max_steps(50)
        .agent("a", "writer", timeout_ms=1500, retry=Retry(3, backoff_ms=10, backoff_multiplier=1.5), max_visits=4)
        .tool("t", "search", after=["a"], timeout_ms=7, retry=Retry(2), max_visits=2)
        .human("h", after=["t"], max_visits=5)
        .human("h2", "Sure?", after="h")
        .branch("b", default="a", after="h2", max_visits=3)
        .build()
    )
    spec = {
        "name": "all-options",
        "maxSteps": 50,
        "nodes": [
            {"id": "a", "type": "agent", "agent": "writer", "timeoutMs": 1500,
             "retry": {"maxAttempts": 3, "backoffMs": 10, "backoffMultiplier": 1.5}, "maxVisits": 4},
            {"id": "t", "type": "tool", "tool": "search", "after": ["a"], "timeoutMs": 7,
             "retry": {"maxAttempts": 2}, "maxVisits": 2},
            {"id": "h", "type": "human", "after": ["t"], "maxVisits": 5},
            {"id": "h2", "type": "human", "prompt": "Sure?", "after": ["h"]},
            {"id": "b", "type": "branch", "after": ["h2"], "default": "a", "maxVisits": 3},
        ],
    }
    same(built, Workflow.from_dict(spec))
    nodes = {n["id"]: n for n in built.to_dict()["nodes"]}
    assert nodes["a"]["retry"] == {"maxAttempts": 3, "backoffMs": 10, "backoffMultiplier": 1.5}
    assert nodes["t"]["timeoutMs"] == 7 and nodes["t"]["maxVisits"] == 2
    assert "prompt" not in nodes["h"] and nodes["h2"]["prompt"] == "Sure?"
    assert nodes["b"]["default"] == "a" and "cases" not in nodes["b"]


def test_map_and_reads_options_map_to_their_json_fields() -> None:
    built = (
        Workflow.builder("shapes")
        .agent("plan", "planner", reads=["/input/topic"])
        .map(
            "research", agent="researcher", over="/outputs/plan/questions", after="plan",
            item_key="/id", max_items=100, concurrency=4, on_item_failure="collect",
            retry=Retry(3, backoff_ms=10), timeout_ms=5000, max_visits=2, reads="/visits/plan",
        )
        .map("fetch", tool="http_get", over="/input/urls")
        .tool("store", "db", after=["research", "fetch"], reads=["/outputs/plan"])
        .human("approve", "OK?", after="store", reads=("/outputs/research", "/outputs/fetch"))
        .build()
    )
    spec = {
        "name": "shapes",
        "nodes": [
            {"id": "plan", "type": "agent", "agent": "planner", "reads": ["/input/topic"]},
            {"id": "research", "type": "map", "agent": "researcher", "over": "/outputs/plan/questions",
             "after": ["plan"], "itemKey": "/id", "maxItems": 100, "concurrency": 4,
             "onItemFailure": "collect", "retry": {"maxAttempts": 3, "backoffMs": 10},
             "timeoutMs": 5000, "maxVisits": 2, "reads": ["/visits/plan"]},
            {"id": "fetch", "type": "map", "tool": "http_get", "over": "/input/urls"},
            {"id": "store", "type": "tool", "tool": "db", "after": ["research", "fetch"],
             "reads": ["/outputs/plan"]},
            {"id": "approve", "type": "human", "prompt": "OK?", "after": ["store"],
             "reads": ["/outputs/research", "/outputs/fetch"]},
        ],
    }
    same(built, Workflow.from_dict(spec))
    assert built.agent_names() == ["planner", "researcher"]
    assert built.tool_names() == ["db", "http_get"]
    nodes = {n["id"]: n for n in built.to_dict()["nodes"]}
    # Options left out are left out of the JSON, as when written by hand.
    assert set(nodes["fetch"]) == {"id", "type", "tool", "over"}


def test_built_map_equals_the_vector_workflow() -> None:
    vectors = Path(__file__).resolve().parents[2] / "bindings-tests" / "vectors"
    built = (
        Workflow.builder("map-failures-and-retries")
        .agent("plan", "planner")
        .map("fetch", tool="fetcher", over="/outputs/plan/urls", item_key="/url", after=["plan"],
             retry=Retry(3, backoff_ms=10, backoff_multiplier=2.0), timeout_ms=300)
        .map("grade", agent="grader", over="/outputs/fetch", after=["fetch"], on_item_failure="collect",
             retry=Retry(2))
        .agent("report", "reporter", after=["fetch"])
        .build()
    )
    same(built, Workflow.from_file(vectors / "map_failures_and_retries" / "workflow.json"))


def test_output_option_maps_to_its_json_field() -> None:
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    contract = {"schema": schema, "repair": True}
    built = (
        Workflow.builder("contracts")
        .agent("a", "writer", output=contract)
        .tool("t", "db", after="a", output={"schema": {"type": "string"}})
        .map("m", agent="researcher", over="/outputs/a/items", after="a", output=contract)
        .human("h", "OK?", after=["t", "m"], output={"schema": {"type": "boolean"}, "repair": False})
        .build()
    )
    spec = {
        "name": "contracts",
        "nodes": [
            {"id": "a", "type": "agent", "agent": "writer", "output": contract},
            {"id": "t", "type": "tool", "tool": "db", "after": ["a"], "output": {"schema": {"type": "string"}}},
            {"id": "m", "type": "map", "agent": "researcher", "over": "/outputs/a/items", "after": ["a"],
             "output": contract},
            {"id": "h", "type": "human", "prompt": "OK?", "after": ["t", "m"],
             "output": {"schema": {"type": "boolean"}}},
        ],
    }
    same(built, Workflow.from_dict(spec))
    nodes = {n["id"]: n for n in built.to_dict()["nodes"]}
    assert nodes["a"]["output"] == contract
    assert nodes["h"]["output"] == {"schema": {"type": "boolean"}}  # repair=False is the default
    # No output: no field, as when written by hand.
    plain = Workflow.builder("plain").agent("a", "writer").build()
    assert "output" not in plain.to_dict()["nodes"][0]


def test_the_builder_keeps_its_own_copy_of_an_output_contract() -> None:
    contract: Dict[str, Any] = {"schema": {"type": "string"}}
    b = Workflow.builder("copy").agent("a", "writer", output=contract)
    contract["repair"] = True
    contract["schema"] = {"type": "integer"}
    assert b.build().to_dict()["nodes"][0]["output"] == {"schema": {"type": "string"}}


def test_built_structured_outputs_equal_the_vector_workflow() -> None:
    vectors = Path(__file__).resolve().parents[2] / "bindings-tests" / "vectors"
    plan = {
        "type": "object", "required": ["questions"], "additionalProperties": False,
        "properties": {"questions": {"type": "array", "minItems": 1, "maxItems": 5,
                                     "items": {"type": "string", "minLength": 1}}},
    }
    notes = {"type": "object", "required": ["notes"], "properties": {"notes": {"type": "string"}}}
    built = (
        Workflow.builder("structured-output-repair-reask")
        .agent("plan", "planner", retry=Retry(3), output={"schema": plan, "repair": True})
        .map("research", agent="researcher", over="/outputs/plan/questions", after=["plan"],
             retry=Retry(2), output={"schema": notes})
        .agent("write", "writer", after=["research"],
               output={"schema": {"type": "string", "maxLength": 200}, "repair": True})
        .build()
    )
    same(built, Workflow.from_file(vectors / "structured_output_repair_reask" / "workflow.json"))


def test_defaults_equal_explicit_default_fields() -> None:
    # Retry's defaults are the JSON defaults: with or without them it is one workflow.
    explicit = Workflow.from_dict({"name": "d", "nodes": [
        {"id": "a", "type": "agent", "agent": "w",
         "retry": {"maxAttempts": 2, "backoffMs": 0, "backoffMultiplier": 1}},
    ]})
    same(Workflow.builder("d").agent("a", "w", retry=Retry(2)).build(), explicit)
    assert Retry(2) == Retry(2, backoff_ms=0, backoff_multiplier=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Retry(2).max_attempts = 3  # type: ignore[misc]


def test_lone_string_after_is_one_dependency() -> None:
    w = Workflow.builder("s").agent("draft", "w").agent("review", "w", after="draft").build()
    assert w.to_dict()["nodes"][1]["after"] == ["draft"]
    w = Workflow.builder("s").agent("a", "w").agent("b", "w").human("h", after=("a", "b")).build()
    assert w.to_dict()["nodes"][2]["after"] == ["a", "b"]
    # No `after`: the field is absent, as in JSON written by hand.
    assert "after" not in w.to_dict()["nodes"][0]


def test_methods_chain_and_nodes_keep_declaration_order() -> None:
    b = Workflow.builder("order")
    assert b.agent("z", "w") is b
    assert b.tool("y", "t") is b and b.human("x") is b and b.max_steps(3) is b
    assert b.branch("v", default="z", after="x") is b
    assert b.map("u", agent="w", over="/input") is b
    w = b.build()
    assert w.node_ids() == ["z", "y", "x", "v", "u"]
    # build() does not consume the builder: it validates the same document again.
    assert b.build().hash == w.hash


# validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, node, field, words",
    [
        (lambda: Workflow.builder("x").build(), None, "nodes", "at least one node"),
        (lambda: Workflow.builder("").agent("a", "w").build(), None, "name", "empty"),
        (lambda: Workflow.builder("x").agent("a", "w").max_steps(0).build(), None, "maxSteps", "out of range"),
        (lambda: Workflow.builder("x").agent("a", "w").agent("a", "w").build(), "a", "id", "duplicate"),
        (lambda: Workflow.builder("x").agent("a b", "w").build(), "a b", "id", "ASCII"),
        (lambda: Workflow.builder("x").agent("a", "w", after="zz").build(), "a", "after[0]", "unknown node 'zz'"),
        (lambda: Workflow.builder("x").agent("a", "w", after="a").build(), "a", "after[0]", "itself"),
        (lambda: Workflow.builder("x").agent("a", "w", timeout_ms=0).build(), "a", "timeoutMs", "out of range"),
        (lambda: Workflow.builder("x").agent("a", "w", timeout_ms=1.5).build(), "a", "timeoutMs", "1.5"),
        (lambda: Workflow.builder("x").tool("a", "t", retry=Retry(0)).build(), "a", "retry.maxAttempts", "out of range"),
        (lambda: Workflow.builder("x").tool("a", "t", retry=Retry(2, backoff_multiplier=11)).build(),
         "a", "retry.backoffMultiplier", ""),
        (lambda: Workflow.builder("x").agent("a", "w", max_visits=0).build(), "a", "maxVisits", "out of range"),
        (lambda: Workflow.builder("x").agent("a", "w").branch("b", after="a").build(), "b", "cases", "at least one case"),
        (lambda: Workflow.builder("x").agent("a", "w").agent("c", "w")
         .branch("b", [({"path": "/outputs/a/n", "gt": {}}, "c")], after="a").build(),
         "b", "cases[0].when.gt", ""),
        (lambda: Workflow.builder("x").agent("a", "w").agent("c", "w")
         .branch("b", [({"path": "/outputs/nobody/n", "eq": 1}, "c")], after="a").build(),
         "b", "cases[0].when.path", "nobody"),
        (lambda: Workflow.builder("x").agent("a", "w")
         .branch("b", [({"path": "/outputs/a/n", "eq": 1}, "a")], after="a").build(),
         "b", "cases[0].goto", "unbounded cycle"),
        (lambda: Workflow.builder("x").map("m", over="/input").build(), "m", "agent", "agent (or tool)"),
        (lambda: Workflow.builder("x").map("m", over="/input", agent="a", tool="t").build(), "m", "tool", "not both"),
        (lambda: Workflow.builder("x").agent("p", "w").map("m", over="/outputs/p/q", agent="a").build(),
         "m", "over", "add it to 'after'"),
        (lambda: Workflow.builder("x").map("m", over="/visits/m", agent="a").build(), "m", "over", "visit count"),
        (lambda: Workflow.builder("x").map("m", over="/input", agent="a", item_key="id").build(),
         "m", "itemKey", "JSON Pointer"),
        (lambda: Workflow.builder("x").map("m", over="/input", agent="a", max_items=0).build(),
         "m", "maxItems", "out of range"),
        (lambda: Workflow.builder("x").map("m", over="/input", agent="a", concurrency=10_001).build(),
         "m", "concurrency", "out of range"),
        (lambda: Workflow.builder("x").map("m", over="/input", agent="a", on_item_failure="skip").build(),  # type: ignore[arg-type]
         "m", "onItemFailure", "skip"),
        (lambda: Workflow.builder("x").agent("a", "w", reads=["/outputs/zz"]).build(), "a", "reads[0]", "unknown node 'zz'"),
        (lambda: Workflow.builder("x").agent("a", "w", reads=["/input", "/input"]).build(), "a", "reads[1]", "listed twice"),
        (lambda: Workflow.builder("x").human("h", reads=["input"]).build(), "h", "reads[0]", ""),
        (lambda: Workflow.builder("x").tool("t", "t", reads=[3]).build(), "t", "reads[0]", "expected a string"),  # type: ignore[list-item]
    ],
    ids=[
        "no-nodes", "empty-name", "max-steps-0", "duplicate-id", "bad-id", "unknown-after",
        "after-itself", "timeout-0", "timeout-float", "retry-0", "multiplier-11", "max-visits-0",
        "branch-without-cases", "bad-operand", "unknown-path-node", "unbounded-loop",
        "map-without-worker", "map-agent-and-tool", "map-over-not-after", "map-over-visits",
        "map-bad-item-key", "map-max-items-0", "map-concurrency-too-big", "map-bad-on-item-failure",
        "reads-unknown-node", "reads-twice", "reads-not-a-path", "reads-not-a-string",
    ],
)
def test_invalid_build_names_node_and_field(build: Any, node: Any, field: str, words: str) -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        build()
    e = info.value
    assert e.code == "INVALID_WORKFLOW"
    assert (e.node, e.field) == (node, field), str(e)
    assert words in str(e)


def test_bounded_loop_is_valid_with_max_steps_or_max_visits() -> None:
    loop = [({"path": "/outputs/a/n", "eq": 1}, "a")]
    Workflow.builder("x").max_steps(5).agent("a", "w").branch("b", loop, after="a").build()
    Workflow.builder("x").agent("a", "w", max_visits=2).branch("b", loop, after="a").build()


def test_retry_of_wrong_type_names_node_and_field() -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        Workflow.builder("x").agent("a", "w", retry={"maxAttempts": 2}).build()  # type: ignore[arg-type]
    assert (info.value.node, info.value.field) == ("a", "retry")


def test_retry_of_wrong_type_is_rejected_at_once() -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError, match="node 'a', field 'retry': must be an agentmesh.Retry, not dict"):
        Workflow.builder("x").agent("a", "w", retry={"maxAttempts": 2})  # type: ignore[arg-type]


def test_non_json_condition_is_invalid_workflow() -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError, match="not JSON data"):
        Workflow.builder("x").agent("a", "w").agent("c", "w").branch(
            "b", [({"path": "/outputs/a/n", "in": {1, 2}}, "c")], after="a"
        ).build()


# running built workflows ---------------------------------------------------------------------


def loop_mesh(log_dir: Path, scores: List[float]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("writer", lambda act: {"draft": act.visit})
    mesh.add_agent("critic", lambda act: {"score": scores[act.deps["draft"]["draft"] - 1], "fixable": True})
    mesh.add_agent("publisher", lambda act: {"published": act.input["topic"]})
    mesh.add_agent("editor", lambda act: "escalated")
    return mesh


def branch_events(path: Any) -> List[Dict[str, Any]]:
    return [e for e in agentmesh.read_log(path) if e["type"] == "branchDecided"]


def test_built_loop_runs_until_the_review_passes(tmp_path: Path) -> None:
    r = loop_mesh(tmp_path, [0.2, 0.9, 0.1]).run(review_loop(), input={"topic": "t"}, run_id="pass")
    assert r.status == "completed"
    assert r.output == {"publish": {"published": "t"}}
    decided = branch_events(r.log_path)
    assert [(e["data"]["case"], e["data"]["goto"], e["data"].get("loop", False)) for e in decided] == [
        (1, "draft", True),
        (0, "publish", False),
    ]
    drafts = [e for e in agentmesh.read_log(r.log_path) if e["type"] == "agentScheduled" and e["node"] == "draft"]
    assert [e["data"].get("visit", 1) for e in drafts] == [1, 2]  # omitted when 1
    assert "visit" not in drafts[0]["data"]
    assert agentmesh.replay(r.log_path, review_loop())["outcome"]["output"] == r.output


def test_built_loop_escalates_after_three_drafts(tmp_path: Path) -> None:
    r = loop_mesh(tmp_path, [0.1, 0.2, 0.3]).run(review_loop(), input={"topic": "t"}, run_id="esc")
    assert r.status == "completed" and r.output == {"escalate": "escalated"}
    decided = branch_events(r.log_path)
    assert [e["data"]["goto"] for e in decided] == ["draft", "draft", "escalate"]
    assert decided[-1]["data"]["case"] is None
    skipped = [e["node"] for e in agentmesh.read_log(r.log_path) if e["type"] == "nodeSkipped"]
    assert skipped == ["publish"]


def test_built_loop_hits_max_visits(tmp_path: Path) -> None:
    w = (
        Workflow.builder("spin")
        .agent("work", "w", max_visits=2)
        .branch("again", [({"path": "/outputs/work/done", "eq": False}, "work")], after="work")
        .build()
    )
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("w", lambda act: {"done": False})
    r = mesh.run(w, run_id="spin")
    assert r.status == "failed"
    assert r.error["code"] == "LIMIT_EXCEEDED" and r.error["node"] == "work"
    assert agentmesh.verify_log(r.log_path)["finished"] == "runFailed"


def test_built_tool_retries_with_backoff(tmp_path: Path) -> None:
    w = (
        Workflow.builder("fetch")
        .tool("get", "http", retry=Retry(3, backoff_ms=5, backoff_multiplier=2))
        .agent("use", "parser", after="get")
        .build()
    )
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def http(act: agentmesh.Activation) -> Any:
        if act.attempt < 3:
            raise agentmesh.ActivationError("HttpError", "503")
        return {"body": "ok"}

    mesh.add_tool("http", http)
    mesh.add_agent("parser", lambda act: act.deps["get"]["body"].upper())
    r = mesh.run(w, run_id="fetch")
    assert r.status == "completed" and r.output == {"use": "OK"}
    scheduled = [e for e in agentmesh.read_log(r.log_path) if e["type"] == "toolScheduled"]
    assert [e["data"].get("delayMs", 0) for e in scheduled] == [0, 5, 10]
