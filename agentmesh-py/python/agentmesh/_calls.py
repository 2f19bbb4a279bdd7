"""Calls inside an activation: the LLM requests and tool calls an agent makes while it runs,
each recorded as it happens (docs/calls.md, docs/python.md "Calls: LLMs and tools").

The activation's methods (``act.llm``, ``act.llm_async``, ``act.llm_stream``,
``act.llm_stream_async``, ``act.tool``, ``act.tool_async``) land here. Each follows the one
procedure of every host (``Context::call_with`` in agentmesh-core/src/driver/context.rs):
start the call (``callStarted`` is durable), then — if the log does not already answer it —
make it and record its result before the agent sees it. Native providers run in Rust with
the GIL released (``act._call_execute``); host functions run here.

Under a run policy (docs/policy.md) a host function gets the request as the policy redacted
it (``ticket.request``), never the original, and the agent gets the response as recorded:
redacted, or a block raised as ``PolicyDeniedError``.

A call is started, so numbered, when the method is called, also for the ``_async`` forms
(before their first ``await``): calls an agent issues concurrently (``asyncio.gather``) are
numbered in the order it issued them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from dataclasses import dataclass
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from . import _agentmesh
from .errors import (
    InternalError,
    InvalidArgumentError,
    PolicyDeniedError,
    ProviderError,
    UnknownAgentError,
)

#: A host provider: ``fn(request, ticket)`` returns the response dict (``{"text",
#: "toolCalls"?, "finishReason"?}``) or ``(response, usage)``; it may be ``async def``.
HostProvider = Callable[[Dict[str, Any], Any], Any]
#: A host tool: ``fn(arguments)`` returns the tool's result (JSON data); may be ``async def``.
HostTool = Callable[[Any], Any]

# Keyword arguments of act.llm and the canonical request keys they set.
_OPTIONS = {
    "model": "model",
    "messages": "messages",
    "max_tokens": "maxTokens",
    "temperature": "temperature",
    "seed": "seed",
    "stop": "stop",
    "tools": "tools",
    "tool_choice": "toolChoice",
    "response_format": "responseFormat",
}


@dataclass(frozen=True)
class LlmReply:
    """An LLM call's response as the agent sees it. ``response`` is the canonical response
    the log records (``text``, ``toolCalls``, ``finishReason``); ``usage`` the tokens it
    spent (the log's keys: ``inputTokens``, ``outputTokens``, ...); ``recorded``: the log
    answered it (after a resume), nothing was sent."""

    text: str
    tool_calls: List[Dict[str, Any]]
    finish_reason: Optional[str]
    usage: Optional[Dict[str, Any]]
    response: Any
    recorded: bool


@dataclass(frozen=True)
class _Host:
    fn: Callable[..., Any]
    is_async: bool
    description: Optional[str] = None
    #: A host tool's rules (``NativeToolRules``: schema, allowlist, rate limit).
    rules: Any = None


class _CallTable:
    """A mesh's providers and tools, by name (handed to each activation it drives). A tool
    is a host function (``_Host``) or a ``NativeTool`` executed in Rust (an MCP server's)."""

    def __init__(self) -> None:
        self.providers: Dict[str, Union[_Host, Any]] = {}
        self.tools: Dict[str, Union[_Host, Any]] = {}

    def listing(self) -> Dict[str, Dict[str, Any]]:
        """Every tool: name → ``{"description", "schema"}`` (fresh objects each time)."""
        out: Dict[str, Dict[str, Any]] = {}
        for name, entry in self.tools.items():
            if isinstance(entry, _Host):
                out[name] = {"description": entry.description, "schema": entry.rules.schema}
            else:
                out[name] = {"description": entry.description, "schema": entry.schema}
        return out


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


def _provider(name: Any, config: Any) -> Union[_Host, Any]:
    """What ``Mesh.provider(name, config)`` registers."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a provider name is a str, not {type(name).__name__}")
    if callable(config):
        return _Host(config, _is_async(config))
    if isinstance(config, (dict, list)):
        return _agentmesh.NativeProvider.from_config(name, config)
    raise InvalidArgumentError(
        f"provider {name!r}: the configuration is a dict, a list of dicts (a fallback chain) "
        f"or a function (request, ticket) -> response, not {type(config).__name__}"
    )


def _tool(
    name: Any,
    fn: Any,
    description: Optional[str],
    schema: Optional[Any],
    agents: Optional[Iterable[str]],
    rate_limit: Optional[Tuple[int, float]],
) -> _Host:
    """What ``Mesh.call_tool`` registers: the function and its native rules (schema
    compiled, allowlist, rate limit), built once; ``InvalidArgumentError`` naming the tool
    and the field."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"a tool name is a non-empty str, not {name!r}")
    if not callable(fn):
        raise InvalidArgumentError(f"tool {name!r}: the tool must be callable")
    if description is not None and not isinstance(description, str):
        raise InvalidArgumentError(f"tool {name!r}: description is a str")
    rules = _agentmesh.NativeToolRules.new(name, schema, agents, rate_limit)
    return _Host(fn, _is_async(fn), description, rules)


def _lookup(act: Any, kind: str, name: Any) -> Union[_Host, Any]:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a {kind} name is a str, not {type(name).__name__}")
    table: _CallTable = act._calls
    entry = (table.providers if kind == "provider" else table.tools).get(name)
    if entry is None:
        # The core's wording (Context::call_with).
        raise UnknownAgentError(f"no {kind} registered as '{name}' with this mesh")
    return entry


def _request(request: Any, options: Mapping[str, Any]) -> Dict[str, Any]:
    if request is None:
        out: Dict[str, Any] = {}
    elif isinstance(request, Mapping):
        out = dict(request)
    else:
        raise InvalidArgumentError(
            f"an LLM request is a dict (model, messages, maxTokens, ...), not {type(request).__name__}"
        )
    for key, value in options.items():
        wire = _OPTIONS.get(key)
        if wire is None:
            raise InvalidArgumentError(
                f"act.llm got an unknown option {key!r} (options: {', '.join(_OPTIONS)})"
            )
        out[wire] = value  # a keyword overrides the request's key
    return out


def _json(value: Any) -> Any:
    """``value`` as the log records it (what a replay hands back), so an agent sees the same
    data live and after a resume (tuples become lists, ...)."""
    text, why = _agentmesh.to_json_text(value)
    if text is None:
        raise InvalidArgumentError(f"a call's response is not JSON data: {why}")
    return json.loads(_agentmesh.normalize_json(text))


def _reply(response: Any, usage: Optional[Dict[str, Any]], recorded: bool) -> LlmReply:
    r = response if isinstance(response, dict) else {}
    text = r.get("text")
    return LlmReply(
        text=text if isinstance(text, str) else "",
        tool_calls=list(r.get("toolCalls") or []),
        finish_reason=r.get("finishReason"),
        usage=usage,
        response=response,
        recorded=recorded,
    )


def _recorded(ticket: Any) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """A recorded ticket's ``(response, usage)``; its recorded error raises ``ProviderError``."""
    outcome = ticket.outcome
    if "error" in outcome:
        raise _agentmesh.provider_error_of(outcome["error"])
    return outcome["response"], outcome.get("usage")


def _split(kind: str, result: Any) -> Tuple[Any, Any]:
    if kind == "llm" and type(result) is tuple and len(result) == 2:
        return result[0], result[1]
    return result, None


def _message(e: BaseException) -> str:
    try:
        return str(e)
    except BaseException as inner:  # noqa: BLE001 - user code
        return f"<str() of the exception raised {type(inner).__name__}>"


def _failed(act: Any, ticket: Any, e: Exception) -> BaseException:
    """Record a host function's exception as the call's error: the ``ProviderError`` the
    agent gets (``type`` is the exception's class name; retryable), as recorded (the run's
    policy may have redacted its message)."""
    error = {"type": type(e).__name__, "message": _message(e), "retryable": True}
    try:
        act._call_record(ticket, error=error)
    except (ProviderError, PolicyDeniedError) as recorded:
        return recorded
    return InternalError("a call's error was recorded as a response")


def _finish(act: Any, kind: str, ticket: Any, result: Any) -> Tuple[Any, Any]:
    """Record a host function's result: ``(response, usage)`` as recorded — the usage with
    the log's keys, the response as the run's policy left it (a block raises
    ``PolicyDeniedError``)."""
    response, usage = _split(kind, result)
    recorded: Tuple[Any, Any] = act._call_record(ticket, response=_json(response), usage=usage)
    return recorded


def _sent(ticket: Any, arg: Any) -> Any:
    """What a live call sends: the run's policy's redaction of the request when it made one."""
    redacted = ticket.request
    return arg if redacted is None else redacted


def _host_call(act: Any, kind: str, entry: _Host, ticket: Any, arg: Any) -> Tuple[Any, Any]:
    """A host function's live call, recorded: ``(response, usage)``."""
    arg = _sent(ticket, arg)
    try:
        result = entry.fn(arg, ticket) if kind == "llm" else entry.fn(arg)
    except Exception as e:  # noqa: BLE001 - recorded as the call's error
        raise _failed(act, ticket, e) from e
    return _finish(act, kind, ticket, result)


async def _host_call_async(
    act: Any, kind: str, entry: _Host, ticket: Any, arg: Any
) -> Tuple[Any, Any]:
    arg = _sent(ticket, arg)
    try:
        if entry.is_async:
            result = await (entry.fn(arg, ticket) if kind == "llm" else entry.fn(arg))
        else:
            loop = asyncio.get_running_loop()
            call: Callable[[], Any] = (
                (lambda: entry.fn(arg, ticket)) if kind == "llm" else (lambda: entry.fn(arg))
            )
            result = await loop.run_in_executor(None, call)
    except Exception as e:  # noqa: BLE001 - recorded as the call's error
        raise _failed(act, ticket, e) from e
    return _finish(act, kind, ticket, result)


def _no_async(kind: str, name: str, entry: _Host) -> None:
    if entry.is_async:
        raise InvalidArgumentError(
            f"{kind} {name!r} is an async def function: call it with act.{'llm' if kind == 'provider' else 'tool'}_async"
        )


# act.llm ---------------------------------------------------------------------------------


def llm(act: Any, provider: Any, request: Any = None, **options: Any) -> LlmReply:
    entry = _lookup(act, "provider", provider)
    req = _request(request, options)
    if not isinstance(entry, _Host):
        ticket = act._call_start_native(entry, req)
        response, usage = act._call_execute(ticket)
        return _reply(response, usage, ticket.recorded)
    _no_async("provider", provider, entry)
    ticket = act.call_start("llm", provider, req)
    if ticket.recorded:
        return _reply(*_recorded(ticket), True)
    return _reply(*_host_call(act, "llm", entry, ticket, req), False)


def llm_async(act: Any, provider: Any, request: Any = None, **options: Any) -> Awaitable[LlmReply]:
    entry = _lookup(act, "provider", provider)
    req = _request(request, options)
    if not isinstance(entry, _Host):
        ticket = act._call_start_native(entry, req)

        async def native() -> LlmReply:
            if ticket.recorded:
                return _reply(*_recorded(ticket), True)
            loop = asyncio.get_running_loop()
            response, usage = await loop.run_in_executor(None, act._call_execute, ticket)
            return _reply(response, usage, False)

        return native()
    ticket = act.call_start("llm", provider, req)

    async def host() -> LlmReply:
        if ticket.recorded:
            return _reply(*_recorded(ticket), True)
        return _reply(*await _host_call_async(act, "llm", entry, ticket, req), False)

    return host()


def _chunk(response: Any) -> Dict[str, Any]:
    """The one chunk a whole response streams as (``replayed_chunk`` of the core)."""
    r = response if isinstance(response, dict) else {}
    return {k: r[k] for k in ("text", "toolCalls") if k in r}


class LlmStream:
    """The chunks of a streamed LLM call (``{"text": ...}`` deltas, as the provider sends
    them; one chunk for a response the log answers or a host provider gives whole), then
    ``reply``: the :class:`LlmReply` once the stream ended (reading ``reply`` earlier reads
    the rest). A failed call raises ``ProviderError`` from the iteration. When the run's
    policy judges responses (``ticket.hold_response``) nothing streams live: one chunk of
    the response as recorded (redacted), or ``PolicyDeniedError`` for a blocked one."""

    def __init__(self, act: Any, name: str, entry: Any, request: Dict[str, Any]) -> None:
        self._act = act
        self._entry = entry
        self._reply: Optional[LlmReply] = None
        self._native: Any = None
        self._pending: List[Dict[str, Any]] = []
        if isinstance(entry, _Host):
            _no_async("provider", name, entry)
            self._ticket = act.call_start("llm", name, request)
        else:
            self._ticket = act._call_start_native(entry, request)
            self._native = act._call_stream(self._ticket)
        self._request = request
        self._started = False

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._native is not None:
            chunk = self._native.next_chunk()
            if chunk is not None:
                c: Dict[str, Any] = chunk
                return c
            if self._reply is None:
                response, usage = self._native.outcome()
                self._reply = _reply(response, usage, self._ticket.recorded)
            raise StopIteration
        if not self._started:
            self._started = True
            if self._ticket.recorded:
                response, usage = _recorded(self._ticket)
                self._reply = _reply(response, usage, True)
            else:
                response, usage = _host_call(self._act, "llm", self._entry, self._ticket, self._request)
                self._reply = _reply(response, usage, False)
            self._pending.append(_chunk(response))
        if self._pending:
            return self._pending.pop()
        raise StopIteration

    @property
    def ticket(self) -> Any:
        """The call's :class:`CallTicket`."""
        return self._ticket

    @property
    def reply(self) -> LlmReply:
        for _ in self:
            pass
        assert self._reply is not None
        return self._reply


class AsyncLlmStream:
    """:class:`LlmStream` for ``async for``; ``await stream.result()`` gives the reply."""

    def __init__(self, act: Any, name: str, entry: Any, request: Dict[str, Any]) -> None:
        self._act = act
        self._entry = entry
        self._reply: Optional[LlmReply] = None
        self._native: Any = None
        self._pending: List[Dict[str, Any]] = []
        if isinstance(entry, _Host):
            self._ticket = act.call_start("llm", name, request)
        else:
            self._ticket = act._call_start_native(entry, request)
            self._native = act._call_stream(self._ticket)
        self._request = request
        self._started = False

    def __aiter__(self) -> AsyncIterator[Dict[str, Any]]:
        return self

    async def __anext__(self) -> Dict[str, Any]:
        if self._native is not None:
            loop = asyncio.get_running_loop()
            chunk = await loop.run_in_executor(None, self._native.next_chunk)
            if chunk is not None:
                c: Dict[str, Any] = chunk
                return c
            if self._reply is None:
                response, usage = self._native.outcome()
                self._reply = _reply(response, usage, self._ticket.recorded)
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            if self._ticket.recorded:
                response, usage = _recorded(self._ticket)
                self._reply = _reply(response, usage, True)
            else:
                response, usage = await _host_call_async(
                    self._act, "llm", self._entry, self._ticket, self._request
                )
                self._reply = _reply(response, usage, False)
            self._pending.append(_chunk(response))
        if self._pending:
            return self._pending.pop()
        raise StopAsyncIteration

    @property
    def ticket(self) -> Any:
        return self._ticket

    async def result(self) -> LlmReply:
        """The reply, once the stream ended (reads the rest first)."""
        async for _ in self:
            pass
        assert self._reply is not None
        return self._reply


def llm_stream(act: Any, provider: Any, request: Any = None, **options: Any) -> LlmStream:
    entry = _lookup(act, "provider", provider)
    return LlmStream(act, provider, entry, _request(request, options))


def llm_stream_async(act: Any, provider: Any, request: Any = None, **options: Any) -> AsyncLlmStream:
    entry = _lookup(act, "provider", provider)
    return AsyncLlmStream(act, provider, entry, _request(request, options))


# act.tool ----------------------------------------------------------------------------------
#
# The order of every host (Context::call_with): lookup → the tool's allowlist
# (PolicyDeniedError) and argument schema (InvalidArgumentError naming the path), both before
# callStarted, so a refused call records nothing and runs nothing → callStarted → a recorded
# ticket answers at once (no rate-limit wait, nothing runs) → a live one waits for its
# rate-limit slot, runs, and is recorded.


def _start_tool(act: Any, name: str, entry: Any, arguments: Any) -> Any:
    if isinstance(entry, _Host):
        return act._call_start_tool(entry.rules, arguments)
    return act._call_start_native_tool(entry, arguments)


def tool(act: Any, name: Any, arguments: Any = None) -> Any:
    entry = _lookup(act, "tool", name)
    if isinstance(entry, _Host):
        _no_async("tool", name, entry)
    ticket = _start_tool(act, name, entry, arguments)
    if ticket.recorded:
        return _recorded(ticket)[0]
    if not isinstance(entry, _Host):
        return act._call_execute(ticket)[0]  # waits for its slot natively, GIL released
    wait = entry.rules.reserve()
    if wait > 0:
        time.sleep(wait)
    return _host_call(act, "tool", entry, ticket, arguments)[0]


def tool_async(act: Any, name: Any, arguments: Any = None) -> Awaitable[Any]:
    entry = _lookup(act, "tool", name)
    ticket = _start_tool(act, name, entry, arguments)

    async def call() -> Any:
        if ticket.recorded:
            return _recorded(ticket)[0]
        if not isinstance(entry, _Host):
            loop = asyncio.get_running_loop()
            return (await loop.run_in_executor(None, act._call_execute, ticket))[0]
        wait = entry.rules.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return (await _host_call_async(act, "tool", entry, ticket, arguments))[0]

    return call()


# Mesh.mcp --------------------------------------------------------------------------------


def _mcp(
    table: _CallTable,
    command: Any,
    env: Any,
    agents: Any,
    rate_limit: Any,
    init_timeout: Any,
    call_timeout: Any,
) -> Tuple[Any, List[str]]:
    """Start an MCP server (natively, GIL released) and register its tools in ``table``:
    ``(server, names)``. A name already registered refuses them all, and the server is
    closed."""
    server, tools = _agentmesh.NativeMcp.spawn(
        command, env, agents, rate_limit, init_timeout, call_timeout
    )
    names = [t.name for t in tools]
    taken = sorted({n for n in names if n in table.tools})
    twice = sorted({n for n in names if names.count(n) > 1})
    if taken or twice:
        del tools
        server.close()
        why = (
            f"names tools already registered with this mesh ({', '.join(map(repr, taken))})"
            if taken
            else f"lists tools twice ({', '.join(map(repr, twice))})"
        )
        raise InvalidArgumentError(
            f"MCP server `{server.program}` {why}: nothing was registered and the server "
            "was closed"
        )
    for t in tools:
        table.tools[t.name] = t
    return server, names
