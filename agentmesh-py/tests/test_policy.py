"""Policies through the public API (docs/policy.md): ``agentmesh.Policy`` from files and
dicts, ``PolicyInvalidError``; runs under ``Mesh(policy=...)`` — what is redacted is
recorded, sent and passed on redacted, what is blocked is never sent, never run and never in
the log, and the agent gets ``PolicyDeniedError``; host-made calls (``ticket.request``,
``call_complete``'s recorded response); resume only under the run's policy; ``redact`` and
``check_policy``. Native providers against the real llama-server are at the end (skipped
without it, as in test_calls_llm.py).

Content rules use emails, US SSNs, keywords and regexes only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, List

import pytest

import agentmesh
from test_calls_llm import REQUEST, Proxy, llama  # noqa: F401 - llama is a fixture
from test_calls_tools import everything, text_of  # noqa: F401 - everything is a fixture

EMAIL = "ann.smith@example.com"
SSN = "219-09-9999"

POLICY: Dict[str, Any] = {
    "version": 1,
    "name": "py-test",
    "rules": [
        {"id": "pii-email", "detect": "email", "action": "redact"},
        {"id": "no-ssn", "detect": "ssn", "action": "block"},
        {"id": "codename", "keywords": ["project zeus"], "action": "warn"},
        {"id": "ticket", "regex": "TCK-[0-9]{5}", "action": "redact", "on": ["llmResponse", "output"]},
    ],
    "tools": {"roles": {"searcher": ["search"]}, "agents": {"researcher": ["searcher"]}},
}

POLICY_YAML = """\
# the same policy as POLICY, in YAML, keys in another order
name: py-test
version: 1
tools:
  agents:
    researcher: [searcher]
  roles:
    searcher: [search]
rules:
  - id: pii-email
    action: redact
    detect: email
  - id: no-ssn
    detect: ssn
    action: block
  - {id: codename, keywords: [project zeus], action: warn}
  - id: ticket
    regex: "TCK-[0-9]{5}"
    action: redact
    on: [llmResponse, output]
"""

ONE = {"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "asker"}]}


def wf(spec: Dict[str, Any]) -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict(spec)


def log_bytes(result: agentmesh.RunResult) -> bytes:
    assert result.log_path is not None
    return Path(result.log_path).read_bytes()


def events(result: agentmesh.RunResult) -> List[Dict[str, Any]]:
    assert result.log_path is not None
    return list(agentmesh.read_log(result.log_path))


# loading ----------------------------------------------------------------------------------


def test_yaml_json_and_dict_forms_of_a_policy_hash_alike(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(POLICY, indent=2))
    (tmp_path / "p.yaml").write_text(POLICY_YAML)
    from_json = agentmesh.Policy(tmp_path / "p.json")  # os.PathLike
    from_yaml = agentmesh.Policy(str(tmp_path / "p.yaml"))  # str
    reordered = dict(reversed(list(POLICY.items())))
    from_dict = agentmesh.Policy(reordered)
    assert agentmesh.Policy(MappingProxyType(POLICY)) == from_dict  # any mapping
    assert len(from_json.hash) == 64
    assert from_json.hash == from_yaml.hash == from_dict.hash
    assert from_json == from_yaml and hash(from_json) == hash(from_dict)
    assert from_json.name == "py-test" and from_json.version == 1
    assert from_json.rule_ids == ["pii-email", "no-ssn", "codename", "ticket"]
    # The canonical form loads back to the same policy; it is a fresh dict each time.
    canonical = from_yaml.to_dict()
    assert agentmesh.Policy(canonical).hash == from_json.hash
    canonical["name"] = "changed"
    assert from_yaml.to_dict()["name"] == "py-test"
    assert agentmesh.Policy(from_dict) is not from_dict and agentmesh.Policy(from_dict) == from_dict
    other = agentmesh.Policy({"version": 1, "name": "other"})
    assert other != from_json and other.rule_ids == []


def test_a_duplicate_json_key_is_refused_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "dup.json"
    p.write_text('{\n  "version": 1,\n  "name": "a",\n  "name": "b"\n}\n')
    with pytest.raises(agentmesh.PolicyInvalidError) as info:
        agentmesh.Policy(p)
    e = info.value
    assert e.code == "POLICY_INVALID" and isinstance(e, agentmesh.AgentMeshError)
    assert e.line == 4 or e.line == 5  # the duplicate's line (the parser reports where it ends)
    assert e.column is not None and e.rule is None
    assert "duplicate key" in str(e) and str(p) in str(e)


def test_an_unknown_field_names_rule_field_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "unknown.yaml"
    p.write_text("version: 1\nname: a\nrules:\n  - id: r1\n    detect: email\n    action: redact\n    colour: red\n")
    with pytest.raises(agentmesh.PolicyInvalidError) as info:
        agentmesh.Policy(p)
    e = info.value
    assert (e.rule, e.field, e.line, e.column) == ("r1", "rules[0].colour", 7, 5 + len("colour") + 2)
    assert e.details == {"rule": "r1", "field": "rules[0].colour", "line": 7, "column": 13}


def test_a_look_ahead_regex_is_refused_naming_the_rule(tmp_path: Path) -> None:
    p = tmp_path / "lookahead.yaml"
    p.write_text('version: 1\nname: a\nrules:\n  - id: greedy\n    regex: "a(?=b)"\n    action: redact\n')
    with pytest.raises(agentmesh.PolicyInvalidError) as info:
        agentmesh.Policy(p)
    assert (info.value.rule, info.value.field, info.value.line) == ("greedy", "rules[0].regex", 5)
    assert "look-around" in info.value.message
    # A dict has no lines: rule and field only.
    with pytest.raises(agentmesh.PolicyInvalidError) as info:
        agentmesh.Policy({"version": 1, "name": "a", "rules": [{"id": "greedy", "regex": "a(?=b)", "action": "redact"}]})
    assert (info.value.rule, info.value.field, info.value.line, info.value.column) == (
        "greedy", "rules[0].regex", None, None,
    )


def test_a_symlink_a_missing_file_and_other_sources_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text(json.dumps(POLICY))
    link = tmp_path / "link.json"
    os.symlink(real, link)
    assert agentmesh.Policy(real).name == "py-test"
    with pytest.raises(agentmesh.PolicyInvalidError, match="symlink"):
        agentmesh.Policy(link)
    with pytest.raises(agentmesh.PolicyInvalidError, match="cannot read"):
        agentmesh.Policy(tmp_path / "missing.json")
    for bad in (3, ["a"], None, b"p.json"):
        with pytest.raises(agentmesh.InvalidArgumentError, match="a policy is a Policy, a path"):
            agentmesh.Policy(bad)  # type: ignore[arg-type]
    with pytest.raises(agentmesh.PolicyInvalidError, match="not JSON data"):
        agentmesh.Policy({"version": 1, "name": {1, 2}})
    with pytest.raises(agentmesh.PolicyInvalidError):
        agentmesh.Mesh(policy={"version": 2, "name": "future"})


# runs under a policy ----------------------------------------------------------------------


def test_input_and_outputs_are_recorded_and_passed_on_redacted(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    seen: List[Any] = []

    @mesh.agent("echo")
    def echo(act: agentmesh.Activation) -> Any:
        seen.append(act.input)
        return {"reply": f"mail {EMAIL} about Project Zeus"}

    @mesh.agent("reader")
    def reader(act: agentmesh.Activation) -> Any:
        seen.append(act.deps["a"])
        return "done"

    flow = wf({"name": "p", "nodes": [
        {"id": "a", "type": "agent", "agent": "echo"},
        {"id": "b", "type": "agent", "agent": "reader", "after": ["a"]}]})
    result = mesh.run(flow, input={"from": EMAIL}, run_id="redact")
    assert result.status == "completed"
    assert seen == [{"from": "[REDACTED:email]"}, {"reply": "mail [REDACTED:email] about Project Zeus"}]
    assert result.output == {"b": "done"}
    assert EMAIL.encode() not in log_bytes(result)
    header = agentmesh.read_header(result.log_path or "")
    assert header["policy"] == {"name": "py-test", "hash": agentmesh.Policy(POLICY).hash}
    evs = events(result)
    assert evs[0]["type"] == "runStarted"
    assert [(v["rule"], v["action"], v.get("path")) for v in evs[0]["data"]["verdicts"]] == [
        ("pii-email", "redact", "/from")
    ]
    done = next(e for e in evs if e["type"] == "agentCompleted" and e["node"] == "a")
    assert [(v["rule"], v["action"]) for v in done["data"]["verdicts"]] == [
        ("pii-email", "redact"), ("codename", "warn"),
    ]


def test_a_host_provider_gets_the_redacted_request_and_a_blocked_one_never(tmp_path: Path) -> None:
    sent: List[Dict[str, Any]] = []

    def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
        sent.append(request)
        return {"text": "ok", "finishReason": "stop"}

    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    mesh.provider("p", provider)

    @mesh.agent("asker")
    def asker(act: agentmesh.Activation) -> Any:
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.llm("p", messages=[{"role": "user", "content": f"my ssn is {SSN}"}])
        e = info.value
        assert e.rule == "no-ssn" and e.code == "POLICY_DENIED"
        assert e.verdict is not None and e.verdict["kind"] == "ssn" and e.verdict["action"] == "block"
        assert e.verdict["path"] == "/messages/0/content" and len(e.verdict["digest"]) == 64
        assert SSN not in str(e) and SSN not in e.message and "9999" not in repr(e)
        r = act.llm("p", messages=[{"role": "user", "content": f"write to {EMAIL}"}])
        return r.text

    result = mesh.run(wf(ONE), run_id="req")
    assert result.status == "completed" and result.output == {"a": "ok"}
    assert sent == [{"messages": [{"role": "user", "content": "write to [REDACTED:email]"}]}]
    text = log_bytes(result)
    assert SSN.encode() not in text and EMAIL.encode() not in text
    denied = [e for e in events(result) if e["type"] == "callDenied"]
    assert len(denied) == 1 and denied[0]["data"]["verdicts"][0]["rule"] == "no-ssn"


def test_a_policy_denial_the_agent_lets_through_fails_the_run_with_its_verdict() -> None:
    calls: List[Any] = []
    mesh = agentmesh.Mesh(policy=POLICY)
    mesh.provider("p", lambda req, t: calls.append(req) or {"text": "never"})
    mesh.add_agent("asker", lambda act: act.llm("p", messages=[{"role": "user", "content": SSN}]).text)
    # As for a budget's refusal: the run fails with the refusal's code, and comes back.
    result = mesh.run(wf(ONE))
    assert result.status == "failed" and calls == []
    assert result.error["code"] == "POLICY_DENIED"
    assert result.error["verdict"]["rule"] == "no-ssn"
    assert SSN not in json.dumps(result.error)


def test_a_tool_outside_the_allowlist_never_runs(tmp_path: Path) -> None:
    ran: List[str] = []
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    mesh.call_tool("search", lambda args: ran.append("search") or {"hits": [args["q"]]})
    mesh.call_tool("shell", lambda args: ran.append("shell") or {"out": "root"})

    @mesh.agent("researcher")
    def researcher(act: agentmesh.Activation) -> Any:
        hits = act.tool("search", {"q": "renewals"})
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.tool("shell", {"cmd": "ls"})
        assert info.value.rule == "tools"
        assert info.value.verdict is not None and info.value.verdict["agent"] == "researcher"
        assert "agent 'researcher' may not call this tool" in str(info.value)
        return hits

    @mesh.agent("writer")
    def writer(act: agentmesh.Activation) -> Any:
        with pytest.raises(agentmesh.PolicyDeniedError):
            act.tool("search", {"q": "x"})
        return "w"

    seen: List[Dict[str, Any]] = []
    flow = wf({"name": "t", "nodes": [
        {"id": "r", "type": "agent", "agent": "researcher"},
        {"id": "w", "type": "agent", "agent": "writer"}]})
    result = mesh.run(flow, run_id="tools", on_event=seen.append)
    assert result.status == "completed" and result.output["r"] == {"hits": ["renewals"]}
    assert ran == ["search"]
    denied = [e for e in seen if e["type"] == "callDenied"]
    got = sorted((e["data"]["name"], e["data"]["verdicts"][0]["rule"], e["data"]["verdicts"][0]["agent"]) for e in denied)
    assert got == [("search", "tools", "writer"), ("shell", "tools", "researcher")]


def test_responses_are_redacted_or_blocked_before_the_agent_sees_them(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    answers = {
        "mail": {"text": f"reach me at {EMAIL}, re TCK-12345", "finishReason": "stop"},
        "leak": {"text": f"ssn {SSN}", "finishReason": "stop"},
    }
    mesh.provider("p", lambda req, t: answers[req["messages"][0]["content"]])
    mesh.call_tool("search", lambda args: {"hits": [f"dave {SSN}"]})

    @mesh.agent("researcher")
    def researcher(act: agentmesh.Activation) -> Any:
        r = act.llm("p", messages=[{"role": "user", "content": "mail"}])
        assert r.text == "reach me at [REDACTED:email], re [REDACTED:ticket]"
        assert r.response["text"] == r.text
        stream = act.llm_stream("p", messages=[{"role": "user", "content": "mail"}])
        chunks = list(stream)
        assert chunks == [{"text": "reach me at [REDACTED:email], re [REDACTED:ticket]"}]
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.llm("p", messages=[{"role": "user", "content": "leak"}])
        assert "no-ssn" in str(info.value) and SSN not in str(info.value)
        with pytest.raises(agentmesh.PolicyDeniedError):
            list(act.llm_stream("p", messages=[{"role": "user", "content": "leak"}]))
        with pytest.raises(agentmesh.PolicyDeniedError):
            act.tool("search", {"q": "dave"})
        return "fine"

    result = mesh.run(wf({"name": "r", "nodes": [{"id": "a", "type": "agent", "agent": "researcher"}]}), run_id="resp")
    assert result.status == "completed", result.error
    text = log_bytes(result)
    assert EMAIL.encode() not in text and SSN.encode() not in text and b"TCK-12345" not in text
    failed = [e for e in events(result) if e["type"] == "callFailed"]
    assert [e["data"]["error"]["type"] for e in failed] == ["PolicyDeniedError"] * 3
    assert all(e["data"]["verdicts"][0]["rule"] == "no-ssn" for e in failed)


def test_host_made_calls_send_ticket_request_and_use_what_call_complete_returns(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)

    @mesh.agent("asker")
    def asker(act: agentmesh.Activation) -> Any:
        plain = act.call_start("llm", "mine", {"prompt": "hello"})
        assert plain.live and plain.request is None and plain.hold_response is True
        assert act.call_complete(plain, response={"text": "hi"}) == {"text": "hi"}
        t = act.call_start("llm", "mine", {"prompt": f"write to {EMAIL}"})
        assert t.request == {"prompt": "write to [REDACTED:email]"}  # send this, not the original
        got = act.call_complete(t, response={"text": f"done, cc {EMAIL}"}, usage={"inputTokens": 3, "outputTokens": 2})
        assert got == {"text": "done, cc [REDACTED:email]"}
        t = act.call_start("llm", "mine", {"prompt": "leak"})
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.call_complete(t, response={"text": SSN})
        assert SSN not in str(info.value)
        t = act.call_start("llm", "mine", {"prompt": "fail"})
        assert act.call_complete(t, error={"type": "Timeout", "message": f"no answer for {EMAIL}"}) is None
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.call_start("llm", "mine", {"prompt": SSN})
        assert info.value.rule == "no-ssn"
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.call_start_many([("llm", "mine", {"prompt": "ok"}), ("tool", "shell", {"cmd": "ls"})])
        assert info.value.rule == "tools"
        return "ok"

    result = mesh.run(wf(ONE), run_id="host")
    assert result.status == "completed", result.error
    text = log_bytes(result)
    assert EMAIL.encode() not in text and SSN.encode() not in text
    evs = events(result)
    failed = [e["data"]["error"] for e in evs if e["type"] == "callFailed"]
    assert failed[0]["type"] == "PolicyDeniedError"
    assert failed[1] == {"type": "Timeout", "message": "no answer for [REDACTED:email]", "retryable": True}
    # The batch is recorded whole: the allowed call started, the shell call denied.
    started = [e["data"]["name"] for e in evs if e["type"] == "callStarted"]
    assert started[-1] == "mine" and [e["data"]["name"] for e in evs if e["type"] == "callDenied"] == ["mine", "shell"]


def test_asyncio_agents_get_the_same_redactions_and_refusals(tmp_path: Path) -> None:
    sent: List[Any] = []

    async def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
        sent.append(request)
        content = request["messages"][0]["content"]
        return {"text": f"ssn {SSN}" if content == "leak" else f"cc {EMAIL}", "finishReason": "stop"}

    async def search(args: Any) -> Any:
        sent.append(args)
        return {"hits": [args["q"]]}

    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    mesh.provider("p", provider)
    mesh.call_tool("search", search)

    @mesh.agent("researcher")
    async def researcher(act: agentmesh.Activation) -> Any:
        r = await act.llm_async("p", messages=[{"role": "user", "content": f"to {EMAIL}"}])
        chunks = [c async for c in act.llm_stream_async("p", messages=[{"role": "user", "content": "x"}])]
        hits = await act.tool_async("search", {"q": f"who is {EMAIL}"})
        with pytest.raises(agentmesh.PolicyDeniedError):
            await act.llm_async("p", messages=[{"role": "user", "content": "leak"}])
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            await act.tool_async("search", {"q": SSN})
        assert info.value.rule == "no-ssn"
        return {"text": r.text, "chunks": chunks, "hits": hits}

    flow = wf({"name": "r", "nodes": [{"id": "a", "type": "agent", "agent": "researcher"}]})
    result = asyncio.run(mesh.run_async(flow, run_id="async"))
    assert result.status == "completed", result.error
    assert result.output["a"] == {
        "text": "cc [REDACTED:email]",
        "chunks": [{"text": "cc [REDACTED:email]"}],
        "hits": {"hits": ["who is [REDACTED:email]"]},
    }
    assert sent[0] == {"messages": [{"role": "user", "content": "to [REDACTED:email]"}]}
    assert sent[2] == {"q": "who is [REDACTED:email]"}
    assert len(sent) == 4  # the SSN tool call never ran
    assert EMAIL.encode() not in log_bytes(result) and SSN.encode() not in log_bytes(result)


def test_a_blocked_output_fails_the_run_with_its_verdict(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    mesh.add_agent("asker", lambda act: {"note": f"ssn {SSN}"})
    result = mesh.run(wf(ONE), run_id="out")
    assert result.status == "failed"
    assert result.error is not None and result.error["code"] == "POLICY_DENIED"
    assert result.error["verdict"]["rule"] == "no-ssn" and result.error["verdict"]["path"] == "/note"
    assert "policy rule 'no-ssn'" in result.error["message"] and SSN not in result.error["message"]
    assert SSN.encode() not in log_bytes(result) and b"9999" not in log_bytes(result)


# resume, fork, re-execute ---------------------------------------------------------------


HUMAN = {"name": "h", "nodes": [
    {"id": "ask", "type": "human"},
    {"id": "b", "type": "agent", "agent": "echo", "after": ["ask"]}]}


def echo_mesh(tmp_path: Path, policy: Any) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=policy)
    mesh.add_agent("echo", lambda act: act.deps["ask"])
    return mesh


def test_a_run_goes_on_only_under_its_own_policy(tmp_path: Path) -> None:
    first = echo_mesh(tmp_path, POLICY).run(wf(HUMAN), run_id="human")
    assert first.status == "waiting"
    path = first.log_path or ""
    approve = {"ask": {"ok": True, "by": EMAIL}}
    before = Path(path).read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        echo_mesh(tmp_path, None).resume(path, approve)
    assert "was started under policy 'py-test'" in str(info.value)
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        echo_mesh(tmp_path, {"version": 1, "name": "other"}).resume(path, approve)
    assert "'py-test'" in str(info.value) and "'other'" in str(info.value)
    assert "agentmesh policy check" in str(info.value)
    assert Path(path).read_bytes() == before  # nothing written
    # The same policy from its YAML file: the approval is judged like an output.
    yaml = tmp_path / "policy.yaml"
    yaml.write_text(POLICY_YAML)
    done = echo_mesh(tmp_path, yaml).resume(path, approve)
    assert done.status == "completed"
    assert done.output["b"] == {"ok": True, "by": "[REDACTED:email]"}
    assert EMAIL.encode() not in Path(path).read_bytes()
    # Forks and re-executions carry the policy too.
    with pytest.raises(agentmesh.InvalidArgumentError, match="was started under policy"):
        echo_mesh(tmp_path, None).fork(path, 1, run_id="f")
    with pytest.raises(agentmesh.InvalidArgumentError, match="was started under policy"):
        echo_mesh(tmp_path, None).reexecute(path)


# The agent of the crash test, run in a child that SIGKILLs itself after its calls (``CRASH``
# set) and again in this process on resume: every call is then answered from the log.
AGENT = textwrap.dedent(
    """
    import os, signal, agentmesh

    def build(log_dir, policy, crash, sent):
        mesh = agentmesh.Mesh(log_dir=log_dir, fsync="always", policy=policy)

        def provider(request, ticket):
            sent.append(request)
            content = request["messages"][0]["content"]
            return {"text": "ssn 219-09-9999" if content == "leak" else "cc ann.smith@example.com"}

        mesh.provider("p", provider)
        mesh.call_tool("shell", lambda args: sent.append(args) or "ran")

        @mesh.agent("researcher")
        def researcher(act):
            seen = [act.llm("p", messages=[{"role": "user", "content": "mail ann.smith@example.com"}]).text]
            for call in (
                lambda: act.llm("p", messages=[{"role": "user", "content": "219-09-9999"}]),
                lambda: act.llm("p", messages=[{"role": "user", "content": "leak"}]),
                lambda: act.tool("shell", {"cmd": "ls"}),
            ):
                try:
                    call()
                    seen.append("allowed")
                except agentmesh.PolicyDeniedError as e:
                    seen.append(e.rule or e.message)
            if crash:
                os.kill(os.getpid(), signal.SIGKILL)  # dies with every call recorded
            return seen

        return mesh
    """
)
CRASH = AGENT + textwrap.dedent(
    """
    import json, sys
    mesh = build(sys.argv[1], json.loads(sys.argv[2]), True, [])
    mesh.run(agentmesh.Workflow.from_dict(json.loads(sys.argv[3])), run_id="crash")
    """
)
RESEARCH = {"name": "c", "nodes": [{"id": "a", "type": "agent", "agent": "researcher"}]}


def test_a_run_killed_mid_activation_resumes_under_its_policy_to_the_same_log(tmp_path: Path) -> None:
    crashed_dir, clean_dir = tmp_path / "crashed", tmp_path / "clean"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(crashed_dir), json.dumps(POLICY), json.dumps(RESEARCH)],
        capture_output=True, text=True, timeout=60,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    path = crashed_dir / "crash.jsonl"
    assert [e["type"] for e in agentmesh.read_log(path)].count("callDenied") == 2
    namespace: Dict[str, Any] = {}
    exec(AGENT, namespace)
    build = namespace["build"]
    sent: List[Any] = []
    with pytest.raises(agentmesh.InvalidArgumentError, match="was started under policy"):
        build(crashed_dir, None, False, sent).resume(path)
    resumed = build(crashed_dir, POLICY, False, sent).resume(path)
    assert resumed.status == "completed", resumed.error
    assert sent == []  # every call was answered from the log: nothing sent, no tool ran
    # A blocked response's error carries no verdict (its record has it): the message names it.
    assert resumed.output["a"] == [
        "cc [REDACTED:email]",
        "no-ssn",
        "the response was blocked by policy rule 'no-ssn' (ssn found at /text)",
        "tools",
    ]
    clean = build(clean_dir, POLICY, False, sent).run(wf(RESEARCH), run_id="crash")
    assert clean.output == resumed.output
    assert agentmesh.canonical_log(clean.log_path or "") == agentmesh.canonical_log(path)
    assert len(sent) == 2  # the clean run sent the two requests the policy let through
    assert SSN.encode() not in path.read_bytes() and EMAIL.encode() not in path.read_bytes()


def test_retry_goes_on_only_under_the_runs_policy(tmp_path: Path) -> None:
    leak = [True]

    def make(policy: Any) -> agentmesh.Mesh:
        mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=policy)
        mesh.add_agent("asker", lambda act: {"note": f"ssn {SSN}" if leak[0] else f"mail {EMAIL}"})
        return mesh

    failed = make(POLICY).run(wf(ONE), run_id="retry")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "POLICY_DENIED"
    leak[0] = False
    path = failed.log_path or ""
    with pytest.raises(agentmesh.InvalidArgumentError, match="was started under policy"):
        make(None).retry(path)
    done = make(POLICY).retry(path)
    assert done.status == "completed" and done.output == {"a": {"note": "mail [REDACTED:email]"}}


def test_a_reexecution_takes_a_redacted_human_decision_from_the_log(tmp_path: Path) -> None:
    mesh = echo_mesh(tmp_path, POLICY)
    first = mesh.run(wf(HUMAN), run_id="human-rx")
    path = first.log_path or ""
    assert mesh.resume(path, {"ask": {"by": EMAIL}}).status == "completed"
    assert echo_mesh(tmp_path, POLICY).reexecute(path).run_id == "human-rx"


def test_a_reexecution_judges_new_outputs_as_they_were_judged(tmp_path: Path) -> None:
    def make(policy: Any) -> agentmesh.Mesh:
        mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=policy)
        mesh.add_agent("asker", lambda act: {"to": EMAIL, "input": act.input})
        return mesh

    result = make(POLICY).run(wf(ONE), input={"from": EMAIL}, run_id="rx")
    assert result.output == {"a": {"to": "[REDACTED:email]", "input": {"from": "[REDACTED:email]"}}}
    path = result.log_path or ""
    report = make(agentmesh.Policy(POLICY)).reexecute(path)
    assert (report.run_id, report.activations) == ("rx", 1)
    with pytest.raises(agentmesh.InvalidArgumentError, match="was started under policy"):
        make(None).reexecute(path)


def test_a_run_without_a_policy_does_not_go_on_under_one(tmp_path: Path) -> None:
    first = echo_mesh(tmp_path, None).run(wf(HUMAN), run_id="bare")
    with pytest.raises(agentmesh.InvalidArgumentError, match="started without a policy"):
        echo_mesh(tmp_path, POLICY).resume(first.log_path or "", {"ask": 1})


# redact ---------------------------------------------------------------------------------


def test_redact_gives_text_and_code_point_spans() -> None:
    text = f"😀 é {EMAIL} and TCK-12345, {SSN}"
    r = agentmesh.redact(text, POLICY)
    assert r["text"] == "😀 é [REDACTED:email] and [REDACTED:ticket], [REDACTED:ssn]"
    start = text.index(EMAIL)  # a str index: code points
    assert start == 4
    assert r["spans"][0] == {"start": start, "end": start + len(EMAIL), "kind": "email", "rule": "pii-email"}
    assert [(s["kind"], s["rule"]) for s in r["spans"]] == [
        ("email", "pii-email"), ("ticket", "ticket"), ("ssn", "no-ssn"),
    ]
    for s in r["spans"]:
        assert "[REDACTED" not in text[s["start"] : s["end"]]
    assert text[r["spans"][2]["start"] : r["spans"][2]["end"]] == SSN


def test_redact_defaults_to_the_builtin_detectors_and_checks_its_text(tmp_path: Path) -> None:
    r = agentmesh.redact(f"write {EMAIL} about project zeus, TCK-12345")
    assert r["text"] == "write [REDACTED:email] about project zeus, TCK-12345"
    assert r["spans"] == [{"start": 6, "end": 6 + len(EMAIL), "kind": "email", "rule": "email"}]
    assert agentmesh.redact("nothing here") == {"text": "nothing here", "spans": []}
    p = tmp_path / "p.yaml"
    p.write_text(POLICY_YAML)
    assert agentmesh.redact("TCK-00001", p)["text"] == "[REDACTED:ticket]"
    assert agentmesh.redact("TCK-00001", agentmesh.Policy(p))["text"] == "[REDACTED:ticket]"
    for bad in (None, 3, b"bytes", ["a"]):
        with pytest.raises(agentmesh.InvalidArgumentError, match="redact takes a str"):
            agentmesh.redact(bad)  # type: ignore[arg-type]
    with pytest.raises(agentmesh.InvalidArgumentError):
        agentmesh.redact("\ud800 lone surrogate")


# check_policy ---------------------------------------------------------------------------


def test_check_policy_reports_what_a_new_policy_would_change(tmp_path: Path) -> None:
    bare = agentmesh.Mesh(log_dir=tmp_path, fsync="never")
    bare.add_agent("asker", lambda act: {"reply": f"mail {EMAIL}"})
    old = bare.run(wf(ONE), run_id="old").log_path or ""
    judged = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=POLICY)
    judged.add_agent("asker", lambda act: {"reply": f"mail {EMAIL}"})
    same = judged.run(wf(ONE), run_id="same").log_path or ""

    report = agentmesh.check_policy(POLICY, old)
    assert report["policy"] == {"name": "py-test", "hash": agentmesh.Policy(POLICY).hash}
    [log] = report["logs"]
    assert log["runId"] == "old" and log["path"] == old and "recordedPolicy" not in log
    done_seq = next(e["seq"] for e in agentmesh.read_log(old) if e["type"] == "agentCompleted")
    [change] = log["changes"]
    assert change["change"] == "nowRedact" and change["rule"] == "pii-email"
    assert change["seq"] == done_seq and change["subject"] == "output" and change["kind"] == "email"
    assert EMAIL not in json.dumps(report)

    both = agentmesh.check_policy(agentmesh.Policy(POLICY), [Path(old), same])
    assert [entry["runId"] for entry in both["logs"]] == ["old", "same"]
    assert both["logs"][1]["changes"] == []
    assert both["logs"][1]["recordedPolicy"]["name"] == "py-test"
    with pytest.raises(agentmesh.AgentMeshIOError):
        agentmesh.check_policy(POLICY, tmp_path / "missing.jsonl")
    with pytest.raises(agentmesh.InvalidArgumentError, match="logs is a log's path"):
        agentmesh.check_policy(POLICY, 3)  # type: ignore[arg-type]


# native providers (the real llama-server) -------------------------------------------------


def test_native_provider_gets_the_redacted_request_and_returns_the_recorded_response(
    llama: str, tmp_path: Path
) -> None:
    proxy = Proxy(llama)
    # Every space of a response redacted (the response's keys have none): whatever the model
    # says, the agent sees placeholders.
    policy = {**POLICY, "rules": POLICY["rules"] + [
        {"id": "space", "regex": " ", "action": "redact", "on": ["llmResponse"]}]}
    try:
        mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=policy)
        mesh.provider("local", {"kind": "openai", "baseUrl": proxy.base_url, "maxRetries": 0})

        @mesh.agent("asker")
        def asker(act: agentmesh.Activation) -> Any:
            req = {**REQUEST, "messages": [{"role": "user", "content": f"Say hello to {EMAIL}."}]}
            r = act.llm("local", req)
            stream = act.llm_stream("local", req)
            assert stream.ticket.hold_response is True
            chunks = list(stream)
            with pytest.raises(agentmesh.PolicyDeniedError) as info:
                act.llm("local", {**REQUEST, "messages": [{"role": "user", "content": SSN}]})
            assert info.value.rule == "no-ssn"
            return {"text": r.text, "chunks": chunks, "streamed": stream.reply.text}

        result = mesh.run(wf(ONE), run_id="native")
    finally:
        proxy.close()
    assert result.status == "completed", result.error
    out = result.output["a"]
    assert len(proxy.bodies) == 2  # the blocked request was never sent
    for body in proxy.bodies:
        assert EMAIL.encode() not in body and b"[REDACTED:email]" in body
    assert "[REDACTED:space]" in out["text"] and " " not in out["text"]
    # A judged response streams as one chunk, once recorded (redacted).
    assert out["chunks"] == [{"text": out["streamed"]}]
    assert "[REDACTED:space]" in out["streamed"] and " " not in out["streamed"]
    assert EMAIL.encode() not in log_bytes(result)


def test_native_provider_response_blocked_raises_policy_denied(llama: str) -> None:
    policy = {"version": 1, "name": "no-letters", "rules": [
        {"id": "letters", "regex": "[A-Za-z]", "action": "block", "on": ["llmResponse"]}]}
    mesh = agentmesh.Mesh(policy=policy)
    mesh.provider("local", {"kind": "openai", "baseUrl": llama, "maxRetries": 0})

    @mesh.agent("asker")
    def asker(act: agentmesh.Activation) -> Any:
        with pytest.raises(agentmesh.PolicyDeniedError, match="letters"):
            act.llm("local", REQUEST)
        stream = act.llm_stream("local", REQUEST)
        with pytest.raises(agentmesh.PolicyDeniedError, match="letters"):
            list(stream)
        return "blocked twice"

    result = mesh.run(wf(ONE))
    assert result.status == "completed" and result.output == {"a": "blocked twice"}


def test_native_stream_streams_live_when_the_policy_does_not_judge_responses(llama: str) -> None:
    policy = {"version": 1, "name": "inputs-only", "rules": [
        {"id": "pii-email", "detect": "email", "action": "redact", "on": ["input", "llmRequest"]}]}
    mesh = agentmesh.Mesh(policy=policy)
    mesh.provider("local", {"kind": "openai", "baseUrl": llama, "maxRetries": 0})

    @mesh.agent("asker")
    def asker(act: agentmesh.Activation) -> Any:
        stream = act.llm_stream("local", REQUEST)
        assert stream.ticket.hold_response is False
        return {"chunks": list(stream), "text": stream.reply.text}

    out = mesh.run(wf(ONE)).output["a"]
    assert len(out["chunks"]) > 1
    assert "".join(c.get("text", "") for c in out["chunks"]) == out["text"]


# MCP tools (the reference "everything" server) ------------------------------------------


def test_an_mcp_tool_gets_redacted_arguments_and_a_blocked_call_never_runs(
    everything: List[str], tmp_path: Path
) -> None:
    policy = {**POLICY, "tools": {"roles": {"echoer": ["echo"]}, "agents": {"researcher": ["echoer"]}}}
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never", policy=policy)
    mesh.mcp(everything)

    @mesh.agent("researcher")
    def researcher(act: agentmesh.Activation) -> Any:
        echo = act.tool("echo", {"message": f"hi {EMAIL}"})
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.tool("echo", {"message": SSN})
        assert info.value.rule == "no-ssn"
        with pytest.raises(agentmesh.PolicyDeniedError) as info:
            act.tool("get-sum", {"a": 1, "b": 2})
        assert info.value.rule == "tools"
        return text_of(echo)

    flow = wf({"name": "m", "nodes": [{"id": "a", "type": "agent", "agent": "researcher"}]})
    try:
        result = mesh.run(flow, run_id="mcp")
    finally:
        mesh.close()
    assert result.status == "completed", result.error
    # The server echoes what it was sent: the redacted arguments.
    assert result.output == {"a": "Echo: hi [REDACTED:email]"}
    evs = events(result)
    assert [e["data"]["name"] for e in evs if e["type"] == "callStarted"] == ["echo"]
    assert [e["data"]["name"] for e in evs if e["type"] == "callDenied"] == ["echo", "get-sum"]
    assert EMAIL.encode() not in log_bytes(result) and SSN.encode() not in log_bytes(result)
