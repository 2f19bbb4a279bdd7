"""Policies: a YAML policy that redacts e-mail addresses, blocks US SSNs and gives only the
researcher the `search` tool (docs/policy.md). The run input and an agent's output are
redacted before the log or the next agent sees them; an LLM request carrying an SSN is never
sent; a tool the agent's role lacks is never called; `redact` tries the policy on text; and
`check_policy` tells what the policy would have decided on a run recorded without it.

`llm` stands in for a real LLM client so the script runs offline: it receives the request as
the policy left it.
"""
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import agentmesh

POLICY = """\
version: 1
name: support
rules:
  - id: pii-email
    detect: email
    action: redact
  - id: no-ssn
    detect: ssn
    action: block
tools:
  roles:
    searcher: [search]
  agents:
    researcher: [searcher]
"""

sent: List[Dict[str, Any]] = []


def llm(request: Dict[str, Any], ticket: Any) -> Dict[str, Any]:
    sent.append(request)
    return {"text": f"noted: {request['messages'][0]['content']}", "finishReason": "stop"}


def researcher(act: agentmesh.Activation) -> Any:
    try:
        act.llm("llm", messages=[{"role": "user", "content": "the customer's SSN is 219-09-9999"}])
    except agentmesh.PolicyDeniedError as e:
        print("blocked:   ", e.rule, "-", e)
    reply = act.llm("llm", messages=[{"role": "user", "content": f"reply to {act.input['from']}"}])
    hits = act.tool("search", {"q": "refunds"})
    return {"reply": reply.text, "hits": hits, "cc": "ops@example.org"}


def writer(act: agentmesh.Activation) -> Any:
    try:
        act.tool("search", {"q": "anything"})
    except agentmesh.PolicyDeniedError as e:
        print("denied:    ", e.rule, "-", e)
    return {"draft": f"see {act.deps['research']['cc']}"}


WORKFLOW = agentmesh.Workflow.from_dict({"name": "support", "nodes": [
    {"id": "research", "type": "agent", "agent": "researcher"},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["research"]}]})


def mesh(log_dir: str, policy: Any) -> agentmesh.Mesh:
    m = agentmesh.Mesh(log_dir=log_dir, fsync="never", policy=policy)
    m.provider("llm", llm)
    m.call_tool("search", lambda args: {"hits": 2})
    m.add_agent("researcher", researcher)
    m.add_agent("writer", writer)
    return m


with tempfile.TemporaryDirectory() as d:
    path = Path(d) / "policy.yaml"
    path.write_text(POLICY)
    policy = agentmesh.Policy(str(path))
    print("policy:    ", policy.name, policy.hash[:12], policy.rule_ids)

    result = mesh(d, policy).run(WORKFLOW, input={"from": "ann@example.com"}, run_id="support")
    print("status:    ", result.status)
    print("output:    ", json.dumps(result.output))
    print("sent:      ", [r["messages"][0]["content"] for r in sent])
    log = Path(result.log_path or "").read_text()
    assert "ann@example.com" not in log and "219-09-9999" not in log
    denied = [json.loads(line)["data"]["verdicts"][0] for line in log.splitlines()
              if '"type":"callDenied"' in line]
    print("denials:   ", [(v["rule"], v.get("agent")) for v in denied])

    print("redact:    ", agentmesh.redact("write to bob@example.org, ssn 219-09-9999", policy))

    # Yesterday's run, recorded without a policy: what would this one change?
    sent.clear()
    old = mesh(d, None)
    old_result = old.run(WORKFLOW, input={"from": "ann@example.com"}, run_id="yesterday")
    report = agentmesh.check_policy(policy, [old_result.log_path or ""])
    for change in report["logs"][0]["changes"]:
        print("would:     ", change["seq"], change["subject"], change["detail"])
