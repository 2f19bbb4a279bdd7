"""Working from a log: verify and read it, replay it (also against a changed workflow), the
state at a seq, a fork with an output replaced, the canonical log and its fingerprint.

Runs docs/examples/review-loop/workflow.json with Python agents that return what that
example's script.json returns, so the log is the one docs/replay.md works with.
"""
import os
import tempfile

import agentmesh

HERE = os.path.dirname(os.path.abspath(__file__))
wf = agentmesh.Workflow.from_file(os.path.join(HERE, "..", "review-loop", "workflow.json"))

DRAFTS = {1: "Supersteps are steps.",
          2: "All ready nodes run together; the next step is decided when all finish."}
REVIEWS = {1: {"score": 0.4, "fixable": True, "note": "too vague"},
           2: {"score": 0.9, "fixable": True}}


def make_mesh(log_dir: str) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("writer", lambda act: {"text": DRAFTS[act.visit]})
    mesh.add_agent("critic", lambda act: REVIEWS[act.visit])
    mesh.add_agent("publisher", lambda act: {"url": "https://example.com/posts/supersteps"})
    mesh.add_agent("editor", lambda act: {"escalated": True})
    return mesh


with tempfile.TemporaryDirectory() as logs:
    mesh = make_mesh(logs)
    r = mesh.run(wf, input={"brief": "Explain supersteps in one paragraph."}, seed=7,
                 run_id="review-1")
    log = r.log_path or ""
    print(r.status, r.output)

    report = agentmesh.verify_log(log)  # hash chain and structure; repairs a torn tail
    print("verify:", report["events"], "events, finished with", report["finished"])
    decisions = [(e["seq"], e["data"]["goto"]) for e in agentmesh.read_log(log)
                 if e["type"] == "branchDecided"]
    print("branch decisions (seq, goto):", decisions)

    # Replay: re-drive the log with its recorded workflow; no agent is called.
    replayed = agentmesh.replay(log)
    print("replay:", replayed["events"], "events re-driven, outcome", replayed["outcome"]["status"])

    # Replay against a changed workflow: the first event it would have decided differently.
    lenient = agentmesh.Workflow.from_json(wf.to_json().replace('"gte":0.8', '"gte":0.3'))
    try:
        agentmesh.replay(log, lenient)
    except agentmesh.NondeterminismError as e:
        print(f"lenient workflow: seq {e.seq}, node {e.node}, field {e.field}, "
              f"expected {e.expected}, actual {e.actual}")

    # Time travel: the state as of seq 7, the end of step 2.
    state = agentmesh.state_at(log, 7)
    print("at seq 7:", state["status"], "step", state["step"], "forkPoint", state["forkPoint"],
          "review", state["completed"]["review"])

    # Fork at that step end: what if the reviewer had liked the first draft?
    fork = mesh.fork(log, 7, {"review": {"score": 0.95, "fixable": False}})
    print("fork:", fork.status, fork.output, "parent", agentmesh.read_header(fork.log_path or "")["parent"])

    # The same run again, in another directory: the same canonical log, byte for byte.
    again = make_mesh(os.path.join(logs, "again")).run(
        wf, input={"brief": "Explain supersteps in one paragraph."}, seed=7, run_id="review-1")
    same = agentmesh.canonical_log(log) == agentmesh.canonical_log(again.log_path or "")
    print("canonical logs identical:", same, "| fingerprint", agentmesh.fingerprint(log))
