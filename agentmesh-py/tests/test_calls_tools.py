"""Tool access and MCP tools through the public API: allowlists (PolicyDeniedError, nothing
recorded, the function not called), argument schemas, rate limits (live calls delayed,
recorded ones not), bad registration input, the tool listing, and MCP servers — the real
server-everything from npm for discovery and calls, failing commands for the errors.

The MCP tests need AGENTMESH_MCP_SERVERS (the folder .ci/run installs the servers into):
without it they are skipped, and they fail when CI is set."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

ANY = agentmesh.Activation


def workflow(*agents: str) -> agentmesh.Workflow:
    nodes = [{"id": f"n{i}", "type": "agent", "agent": a} for i, a in enumerate(agents)]
    return agentmesh.Workflow.from_dict({"name": "tools", "nodes": nodes})


def calls_of(res: agentmesh.RunResult) -> List[Dict[str, Any]]:
    events = [json.loads(line) for line in res.canonical().splitlines()[1:]]
    return [e for e in events if e["type"].startswith("call")]


class Counted:
    """A host tool that counts its calls."""

    def __init__(self) -> None:
        self.args: List[Any] = []

    def __call__(self, arguments: Any) -> Any:
        self.args.append(arguments)
        return {"hits": [arguments.get("q") if isinstance(arguments, dict) else None]}


# allowlists ---------------------------------------------------------------------------------


def test_an_allowed_agent_calls_and_another_is_denied_with_nothing_recorded() -> None:
    mesh = agentmesh.Mesh()
    search = Counted()
    mesh.call_tool("search", search, agents=["researcher"])
    denied: List[BaseException] = []

    @mesh.agent("researcher")
    def researcher(act: ANY) -> Any:
        return act.tool("search", {"q": "logs"})

    @mesh.agent("writer")
    def writer(act: ANY) -> Any:
        for attempt in (lambda: act.tool("search", {"q": "x"}), lambda: act.tool_async("search", {"q": "y"})):
            try:
                attempt()
            except agentmesh.PolicyDeniedError as e:
                denied.append(e)
        return "done"

    res = mesh.run(workflow("researcher", "writer"))
    assert res.output == {"n0": {"hits": ["logs"]}, "n1": "done"}
    assert search.args == [{"q": "logs"}]  # the writer's calls never reached the function
    message = "agent 'writer' may not call tool 'search' (agents allowed: researcher); nothing was recorded"
    assert [(e.code, e.message) for e in denied] == [("POLICY_DENIED", message)] * 2
    assert isinstance(denied[0], agentmesh.AgentMeshError)
    started = [e for e in calls_of(res) if e["type"] == "callStarted"]
    assert [(e["node"], e["data"]["name"]) for e in started] == [("n0", "search")]


def test_an_empty_allowlist_denies_everyone_and_names_compare_exactly() -> None:
    mesh = agentmesh.Mesh()
    mesh.call_tool("nobody", Counted(), agents=[])
    mesh.call_tool("exact", Counted(), agents=("Writer", "writer "))
    seen: List[str] = []

    @mesh.agent("writer")
    def writer(act: ANY) -> Any:
        for tool in ("nobody", "exact"):
            with pytest.raises(agentmesh.PolicyDeniedError) as e:
                act.tool(tool, {})
            seen.append(e.value.message)
        return None

    res = mesh.run(workflow("writer"))
    assert seen == [
        "agent 'writer' may not call tool 'nobody' (agents allowed: none); nothing was recorded",
        "agent 'writer' may not call tool 'exact' (agents allowed: Writer, writer ); nothing was recorded",
    ]
    assert calls_of(res) == []


def test_the_allowlist_names_a_tool_nodes_activation_too() -> None:
    # A workflow tool node's activation is named after the tool: that is the "agent" it checks.
    mesh = agentmesh.Mesh()
    mesh.call_tool("lookup", lambda args: 42, agents=["fetcher"])
    mesh.add_tool("fetcher", lambda act: act.tool("lookup", {}))
    wf = agentmesh.Workflow.from_dict({"name": "t", "nodes": [{"id": "f", "type": "tool", "tool": "fetcher"}]})
    assert mesh.run(wf).output == {"f": 42}


# schemas ------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"q": {"type": "string"}, "n": {"type": "integer", "minimum": 1}},
    "required": ["q"],
    "additionalProperties": False,
}


def test_arguments_that_fail_the_schema_are_refused_naming_the_path() -> None:
    mesh = agentmesh.Mesh()
    search = Counted()
    mesh.call_tool("search", search, description="Search", schema=SCHEMA)
    refused: List[str] = []

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        for bad in ({"q": 3}, {"q": "x", "n": 0}, {}, {"q": "x", "extra": 1}, None):
            with pytest.raises(agentmesh.InvalidArgumentError) as e:
                act.tool("search", bad)
            refused.append(e.value.message)
        return act.tool("search", {"q": "ok", "n": 2})

    res = mesh.run(workflow("w"))
    assert res.output == {"n0": {"hits": ["ok"]}}
    assert search.args == [{"q": "ok", "n": 2}]
    assert refused[0] == "tool call 'search': arguments at /q: 3 is not of type \"string\""
    assert refused[1].startswith("tool call 'search': arguments at /n: 0 is less than the minimum of 1")
    assert refused[2].startswith("tool call 'search': arguments at /: \"q\" is a required property")
    assert refused[3].startswith("tool call 'search': arguments at /: Additional properties")
    assert refused[4].startswith("tool call 'search': arguments at /: null is not of type \"object\"")
    assert [e["data"]["call"] for e in calls_of(res)] == [1, 1]  # one call, numbered 1


def test_a_denied_agent_is_told_so_before_its_arguments_are_checked() -> None:
    mesh = agentmesh.Mesh()
    mesh.call_tool("search", Counted(), schema=SCHEMA, agents=["other"])

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        with pytest.raises(agentmesh.PolicyDeniedError):
            act.tool("search", {"q": 3})
        with pytest.raises(agentmesh.PolicyDeniedError):
            act.tool("search", {"q": {1, 2}})  # not JSON data either
        return None

    mesh.run(workflow("w"))


# rate limits --------------------------------------------------------------------------------

WINDOW = 0.15


def test_a_rate_limit_delays_live_calls_by_its_window() -> None:
    mesh = agentmesh.Mesh()
    search = Counted()
    mesh.call_tool("search", search, rate_limit=(1, WINDOW))
    starts: List[float] = []

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        for i in range(3):
            act.tool("search", {"q": str(i)})
            starts.append(time.monotonic())
        return None

    t0 = time.monotonic()
    mesh.run(workflow("w"))
    assert len(search.args) == 3
    # The first starts at once; each later one a window after the one before (lower bounds).
    assert starts[2] - t0 >= 2 * WINDOW * 0.98
    assert starts[2] - starts[1] >= WINDOW * 0.98


def test_an_async_rate_limited_tool_waits_without_blocking_the_loop() -> None:
    mesh = agentmesh.Mesh()

    async def search(arguments: Any) -> Any:
        return arguments["q"]

    mesh.call_tool("search", search, rate_limit=(1, WINDOW))
    ticks: List[float] = []

    @mesh.agent("w")
    async def w(act: ANY) -> Any:
        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        t0 = time.monotonic()
        got = await asyncio.gather(*(act.tool_async("search", {"q": i}) for i in range(3)))
        took = time.monotonic() - t0
        t.cancel()
        return {"got": got, "took_two_windows": took >= 2 * WINDOW * 0.98}

    res = asyncio.run(mesh.run_async(workflow("w")))
    assert res.output["n0"] == {"got": [0, 1, 2], "took_two_windows": True}
    assert len(ticks) >= 5  # the loop ran other work while the calls waited for their slots


def test_calls_answered_from_the_log_never_wait_for_a_slot(tmp_path: Path) -> None:
    attempts = {"n": 0}
    search = Counted()

    def make(rate_limit: Any) -> agentmesh.Mesh:
        mesh = agentmesh.Mesh(log_dir=tmp_path)
        mesh.call_tool("search", search, rate_limit=rate_limit)

        @mesh.agent("w")
        def w(act: ANY) -> Any:
            hits = [act.tool("search", {"q": str(i)}) for i in range(3)]
            attempts["n"] += 1
            if attempts["n"] == 1:
                raise KeyboardInterrupt  # stop after the calls, as a crash would
            return hits

        return mesh

    with pytest.raises(KeyboardInterrupt):
        make(None).run(workflow("w"), run_id="r")
    assert len(search.args) == 3
    # One call an hour: had a recorded call taken a slot, the second would wait an hour (and
    # the test's timeout fail it). They are answered from the log, so nothing waits or runs.
    res = make((1, 3600.0)).resume(tmp_path / "r.jsonl")
    assert res.status == "completed" and len(search.args) == 3
    report = make((1, 3600.0)).reexecute(tmp_path / "r.jsonl")
    assert report.calls == 3 and len(search.args) == 3


# bad registration input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "agents, field",
    [
        ("researcher", "agents must be an iterable of agent names, not a str"),
        ([1], "agents[0] must be an agent name (str), not int"),
        (["a", None], "agents[1] must be an agent name (str), not NoneType"),
        (5, "agents must be an iterable of agent names (str), not int"),
    ],
)
def test_bad_agents_are_refused_naming_the_tool_and_field(agents: Any, field: str) -> None:
    mesh = agentmesh.Mesh()
    with pytest.raises(agentmesh.InvalidArgumentError) as e:
        mesh.call_tool("search", Counted(), agents=agents)
    assert e.value.message.startswith(f"tool 'search': {field}"), e.value.message
    assert mesh.call_tools() == {}


@pytest.mark.parametrize(
    "rate_limit, field",
    [
        ((0, 1.0), "rate_limit calls must be an int from 1 to 4294967295, not 0"),
        ((-1, 1.0), "rate_limit calls must be an int from 1 to 4294967295, not -1"),
        ((True, 1.0), "rate_limit calls must be an int from 1 to 4294967295, not True"),
        ((1.5, 1.0), "rate_limit calls must be an int from 1 to 4294967295, not 1.5"),
        ((2**32, 1.0), "rate_limit calls must be an int from 1 to 4294967295, not 4294967296"),
        ((1, 0), "rate_limit per_seconds must be a finite number of seconds > 0, not 0"),
        ((1, -1.0), "rate_limit per_seconds must be a finite number of seconds > 0, not -1.0"),
        ((1, math.nan), "rate_limit per_seconds must be a finite number of seconds > 0, not nan"),
        ((1, math.inf), "rate_limit per_seconds must be a finite number of seconds > 0, not inf"),
        ((1, False), "rate_limit per_seconds must be a finite number of seconds > 0, not False"),
        ((1, "1"), "rate_limit per_seconds must be a finite number of seconds > 0, not str"),
        ((1, 1e-12), "rate_limit per_seconds must be a finite number of seconds > 0, not 1e-12"),
        ((1, 1e300), "rate_limit per_seconds must be a finite number of seconds > 0, not 1e+300"),
        ((1,), "rate_limit must be a (calls, per_seconds) pair, not tuple"),
        ((1, 2, 3), "rate_limit must be a (calls, per_seconds) pair, not tuple"),
        ("1/s", "rate_limit must be a (calls, per_seconds) pair, not str"),
        ({"calls": 1}, "rate_limit must be a (calls, per_seconds) pair, not dict"),
    ],
)
def test_bad_rate_limits_are_refused_naming_the_tool_and_field(rate_limit: Any, field: str) -> None:
    mesh = agentmesh.Mesh()
    with pytest.raises(agentmesh.InvalidArgumentError) as e:
        mesh.call_tool("search", Counted(), rate_limit=rate_limit)
    assert e.value.message == f"tool 'search': {field}"


def test_bad_schemas_names_and_functions_are_refused() -> None:
    mesh = agentmesh.Mesh()
    with pytest.raises(agentmesh.InvalidArgumentError, match=r"^\[INVALID_ARGUMENT\] tool 'search': its argument schema is invalid"):
        mesh.call_tool("search", Counted(), schema={"type": 12})
    with pytest.raises(agentmesh.InvalidArgumentError, match="tool 'search': the schema is not JSON data"):
        mesh.call_tool("search", Counted(), schema={"type": {1, 2}})
    with pytest.raises(agentmesh.InvalidArgumentError, match="non-empty str"):
        mesh.call_tool("", Counted())
    with pytest.raises(agentmesh.InvalidArgumentError, match="non-empty str"):
        mesh.call_tool(3, Counted())  # type: ignore[arg-type]
    with pytest.raises(agentmesh.InvalidArgumentError, match="tool 'search': the tool must be callable"):
        mesh.call_tool("search", "not a function")  # type: ignore[arg-type]
    with pytest.raises(agentmesh.InvalidArgumentError, match="tool 'search': description is a str"):
        mesh.call_tool("search", Counted(), description=3)  # type: ignore[arg-type]
    assert mesh.call_tools() == {}
    # Accepted forms: a list, a generator, a list rate limit, an int window.
    mesh.call_tool("a", Counted(), agents=(n for n in ["x"]), rate_limit=[2, 1])
    assert list(mesh.call_tools()) == ["a"]


def test_the_listing_describes_every_tool() -> None:
    mesh = agentmesh.Mesh()
    mesh.call_tool("search", Counted(), description="Search the notes", schema=SCHEMA)
    mesh.call_tool("plain", Counted())
    listing = mesh.call_tools()
    assert listing == {
        "search": {"description": "Search the notes", "schema": SCHEMA},
        "plain": {"description": None, "schema": None},
    }
    listing["search"]["schema"]["type"] = "changed"  # a copy: the registered schema is kept
    assert mesh.call_tools()["search"]["schema"] == SCHEMA


# MCP ----------------------------------------------------------------------------------------


def servers_dir() -> Path:
    d = os.environ.get("AGENTMESH_MCP_SERVERS")
    if d is None:
        if os.environ.get("CI"):
            pytest.fail("AGENTMESH_MCP_SERVERS is not set; CI must install the MCP servers (.ci/run)")
        pytest.skip("set AGENTMESH_MCP_SERVERS to the folder the MCP reference servers are installed in")
    return Path(d)


@pytest.fixture
def everything() -> List[str]:
    entry = servers_dir() / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    assert entry.is_file(), f"{entry} is missing: install the MCP servers"
    return ["node", str(entry), "stdio"]


def process_ends(pid: int) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within 20 s: a functional check."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def text_of(result: Dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in result["content"])


def test_mcp_tools_are_discovered_called_and_recorded(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    names = mesh.mcp(everything)
    assert {"echo", "get-sum"} <= set(names)
    listing = mesh.call_tools()
    assert set(listing) == set(names)
    assert listing["get-sum"]["description"] == "Returns the sum of two numbers"
    assert listing["get-sum"]["schema"]["required"] == ["a", "b"]
    refused: List[str] = []

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        echo = act.tool("echo", {"message": "hi"})
        total = act.tool("get-sum", {"a": 2, "b": 3})
        with pytest.raises(agentmesh.InvalidArgumentError) as e:
            act.tool("get-sum", {"a": "seventeen", "b": 3})
        refused.append(e.value.message)
        return {"echo": text_of(echo), "sum": text_of(total)}

    res = mesh.run(workflow("w"))
    assert res.output == {"n0": {"echo": "Echo: hi", "sum": "The sum of 2 and 3 is 5."}}
    assert refused == ["tool call 'get-sum': arguments at /a: \"seventeen\" is not of type \"number\""]
    recs = calls_of(res)
    assert [(e["type"], e["data"].get("name"), e["data"]["call"]) for e in recs] == [
        ("callStarted", "echo", 1),
        ("callCompleted", None, 1),
        ("callStarted", "get-sum", 2),
        ("callCompleted", None, 2),
    ]
    assert recs[0]["data"]["kind"] == "tool" and recs[0]["data"]["request"] == {"message": "hi"}
    # The MCP result in canonical form, as the log records it.
    assert recs[1]["data"]["response"] == {"content": [{"type": "text", "text": "Echo: hi"}]}


def test_mcp_tools_from_async_agents_and_a_reexecution(everything: List[str], tmp_path: Path) -> None:
    def make(rate_limit: Any) -> agentmesh.Mesh:
        mesh = agentmesh.Mesh(log_dir=tmp_path)
        mesh.mcp(everything, rate_limit=rate_limit)

        @mesh.agent("w")
        async def w(act: ANY) -> Any:
            a, b, c = await asyncio.gather(
                act.tool_async("get-sum", {"a": 1, "b": 2}),
                act.tool_async("echo", {"message": "x"}),
                act.tool_async("get-sum", {"a": 3, "b": 4}),
            )
            return [text_of(a), text_of(b), text_of(c)]

        return mesh

    res = asyncio.run(make(None).run_async(workflow("w"), run_id="mcp"))
    assert res.output == {"n0": ["The sum of 1 and 2 is 3.", "Echo: x", "The sum of 3 and 4 is 7."]}
    started = [e["data"]["name"] for e in calls_of(res) if e["type"] == "callStarted"]
    assert started == ["get-sum", "echo", "get-sum"]  # numbered in the order they were issued
    # One call an hour per tool: the recorded calls are answered without waiting for a slot
    # (the second get-sum would otherwise wait an hour, and the test's timeout fail it).
    report = asyncio.run(make((1, 3600.0)).reexecute_async(tmp_path / "mcp.jsonl"))
    assert (report.run_id, report.calls) == ("mcp", 3)


def test_an_mcp_restriction_refuses_another_agent(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    mesh.mcp(everything, agents=["researcher"])

    @mesh.agent("researcher")
    def researcher(act: ANY) -> Any:
        return text_of(act.tool("echo", {"message": "ok"}))

    @mesh.agent("writer")
    def writer(act: ANY) -> Any:
        try:
            act.tool("echo", {"message": "no"})
        except agentmesh.PolicyDeniedError as e:
            return e.message
        return "called"

    res = mesh.run(workflow("researcher", "writer"))
    assert res.output == {
        "n0": "Echo: ok",
        "n1": "agent 'writer' may not call tool 'echo' (agents allowed: researcher); nothing was recorded",
    }
    assert [e["node"] for e in calls_of(res)] == ["n0", "n0"]


def test_an_mcp_rate_limit_applies_to_each_tool(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    mesh.mcp(everything, rate_limit=(1, WINDOW))
    starts: List[float] = []

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        for i in range(3):
            act.tool("get-sum", {"a": i, "b": 1})
            starts.append(time.monotonic())
        act.tool("echo", {"message": "own limit"})  # another tool: its own, unused limit
        return None

    t0 = time.monotonic()
    mesh.run(workflow("w"))
    assert starts[2] - t0 >= 2 * WINDOW * 0.98


def test_mcp_env_reaches_the_server_and_host_secrets_do_not(
    everything: List[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTMESH_TEST_HOST_SECRET", "host-secret-value")
    mesh = agentmesh.Mesh()
    mesh.mcp(everything, env={"AGENTMESH_TEST_GIVEN": "given-value"})

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        return json.loads(text_of(act.tool("get-env")))

    env = mesh.run(workflow("w")).output["n0"]
    assert env["AGENTMESH_TEST_GIVEN"] == "given-value"
    assert "AGENTMESH_TEST_HOST_SECRET" not in env


def test_mcp_call_timeout_is_a_recorded_provider_error(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    mesh.mcp(everything, call_timeout=0.3)

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        try:
            act.tool("trigger-long-running-operation", {"duration": 5, "steps": 1})
        except agentmesh.ProviderError as e:
            return [e.error_type, e.retryable, e.message]
        return "answered"

    res = mesh.run(workflow("w"))
    error_type, retryable, message = res.output["n0"]
    assert (error_type, retryable) == ("Timeout", True)
    assert "no response to tools/call `trigger-long-running-operation` within 300 ms" in message
    failed = [e for e in calls_of(res) if e["type"] == "callFailed"]
    assert failed[0]["data"]["error"]["type"] == "Timeout"


def test_failing_mcp_servers_are_typed_errors_without_secrets() -> None:
    mesh = agentmesh.Mesh()
    secret = "s3cr3t-token-value"
    with pytest.raises(agentmesh.ProviderError) as e:
        mesh.mcp(["/no/such/mcp-server", f"--token={secret}"], env={"API_TOKEN": secret})
    assert e.value.error_type == "McpSpawnFailed" and e.value.code == "PROVIDER_ERROR"
    assert "/no/such/mcp-server" in e.value.message and secret not in str(e.value)
    with pytest.raises(agentmesh.ProviderError) as e:
        mesh.mcp(["sh", "-c", "echo started >&2; exit 3"], env={"API_TOKEN": secret})
    assert e.value.error_type == "McpServerExited" and "exit status: 3" in e.value.message
    assert secret not in str(e.value)
    with pytest.raises(agentmesh.AgentTimeoutError) as t:
        mesh.mcp(["sleep", "30"], init_timeout=0.2, env={"API_TOKEN": secret})
    assert t.value.code == "TIMEOUT" and "within 200 ms" in t.value.message
    assert secret not in str(t.value)
    assert mesh.call_tools() == {}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"command": "node server.js"}, "mcp: command must be a list of str (the program, then its arguments), not a str"),
        ({"command": []}, "mcp: command must be a non-empty list of str"),
        ({"command": ["node", 3]}, "mcp: command[1] must be a str, not int"),
        ({"command": [""]}, "mcp: command[0] (the program) is an empty str"),
        ({"command": 7}, "mcp: command must be a non-empty list of str"),
        ({"env": {"K": 1}}, 'MCP server `/no/such/cmd`: env["K"] must be a str, not int'),
        ({"env": {1: "v"}}, "MCP server `/no/such/cmd`: env keys must be str, not int"),
        ({"env": ["K=v"]}, "MCP server `/no/such/cmd`: env must be a mapping of str to str, not list"),
        ({"agents": "writer"}, "MCP server `/no/such/cmd`: agents must be an iterable of agent names"),
        ({"rate_limit": (0, 1)}, "MCP server `/no/such/cmd`: rate_limit calls must be an int"),
        ({"init_timeout": 0}, "MCP server `/no/such/cmd`: init_timeout must be a finite number of seconds > 0, not 0"),
        ({"call_timeout": math.nan}, "MCP server `/no/such/cmd`: call_timeout must be a finite number of seconds > 0, not nan"),
        ({"call_timeout": True}, "MCP server `/no/such/cmd`: call_timeout must be a finite number of seconds > 0, not True"),
    ],
)
def test_bad_mcp_arguments_are_refused_before_anything_starts(kwargs: Dict[str, Any], message: str) -> None:
    args: Dict[str, Any] = {"command": ["/no/such/cmd"], **kwargs}
    with pytest.raises(agentmesh.InvalidArgumentError) as e:  # never McpSpawnFailed: nothing ran
        agentmesh.Mesh().mcp(**args)
    assert e.value.message.startswith(message), e.value.message


def test_mcp_tool_names_already_registered_are_refused(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    mesh.call_tool("echo", Counted())
    with pytest.raises(agentmesh.InvalidArgumentError, match=r"names tools already registered with this mesh \('echo'\): nothing was registered"):
        mesh.mcp(everything)
    assert list(mesh.call_tools()) == ["echo"]


def test_close_ends_the_server_and_unregisters_its_tools(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    names = mesh.mcp(everything)
    mesh.call_tool("mine", Counted())
    server = mesh._mcp_servers[0][0]
    pid: Optional[int] = server.pid
    assert pid is not None and server.running
    mesh.close()
    assert not server.running and server.pid is None
    assert process_ends(pid)
    assert list(mesh.call_tools()) == ["mine"]
    mesh.close()  # again: nothing to do

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        with pytest.raises(agentmesh.UnknownAgentError, match="no tool registered as 'echo'"):
            act.tool(names[0], {"message": "x"})
        return None

    mesh.run(workflow("w"))


def test_the_server_ends_when_the_mesh_is_garbage_collected(everything: List[str]) -> None:
    mesh = agentmesh.Mesh()
    mesh.mcp(everything)

    @mesh.agent("w")
    def w(act: ANY) -> Any:
        return text_of(act.tool("echo", {"message": "x"}))

    assert mesh.run(workflow("w")).output == {"n0": "Echo: x"}
    pid = mesh._mcp_servers[0][0].pid
    assert pid is not None
    del mesh, w
    gc.collect()
    assert process_ends(pid)
