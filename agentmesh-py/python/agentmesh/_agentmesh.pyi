# Stub of the native module (agentmesh-py/src), checked by `python -m mypy.stubtest
# agentmesh._agentmesh`. JSON data from Python (input, outputs, usage, overrides) is converted
# natively; reports, events and states come back as Python objects built natively.
# Errors are raised as agentmesh.errors classes (by code).
from os import PathLike
from pathlib import Path
from typing import (
    Any,
    Awaitable,
    ClassVar,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    final,
)

from agentmesh._calls import AsyncLlmStream, LlmReply, LlmStream

__all__ = [
    "NativeWorkflow",
    "NativeRun",
    "Activation",
    "Item",
    "Completion",
    "CallTicket",
    "NativePrices",
    "Policy",
    "Telemetry",
    "export_log",
    "export_otlp",
    "NativeLogBuffer",
    "capture_logs",
    "redact",
    "check_policy",
    "NativeProvider",
    "NativeChunks",
    "NativeToolRules",
    "NativeTool",
    "NativeMcp",
    "provider_error_of",
    "normalize_usage",
    "to_json_text",
    "EventStream",
    "StateStream",
    "verify_log",
    "check_log",
    "anchor",
    "verify_anchor",
    "history",
    "canonical_log",
    "read_log",
    "read_header",
    "fingerprint",
    "usage_report",
    "replay",
    "state_at",
    "recorded_workflow",
    "normalize_json",
    "error_codes",
    "cli_main",
]

_Path = Union[str, PathLike[str]]

@final
class NativeWorkflow:
    @staticmethod
    def from_json(text: str) -> NativeWorkflow: ...
    @staticmethod
    def from_file(path: _Path) -> NativeWorkflow: ...
    @property
    def name(self) -> str: ...
    @property
    def hash(self) -> str: ...
    def to_json(self) -> str: ...
    def node_ids(self) -> List[str]: ...
    def agent_names(self) -> List[str]: ...
    def tool_names(self) -> List[str]: ...
    def warnings(self) -> List[str]: ...
    def check_registered(self, agents: List[str], tools: List[str]) -> None: ...

@final
class Item:
    @property
    def index(self) -> int: ...
    @property
    def key(self) -> Optional[str]: ...
    @property
    def value(self) -> Any: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]  # unhashable: the value may be a dict

@final
class Activation:
    @property
    def id(self) -> int: ...
    @property
    def run_id(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def visit(self) -> int: ...
    @property
    def delay_ms(self) -> int: ...
    @property
    def timeout_ms(self) -> Optional[int]: ...
    @property
    def prompt(self) -> Optional[str]: ...
    @property
    def seed(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def input(self) -> Any: ...
    @property
    def deps(self) -> Dict[str, Any]: ...
    @property
    def reads(self) -> Dict[str, Any]: ...
    @property
    def item(self) -> Optional[Item]: ...
    @property
    def last_failure(self) -> Optional[Dict[str, Any]]: ...
    def cancel_run(self, reason: str = "cancelled") -> None: ...
    # calls (agentmesh/_calls.py is the agent API)
    def call_start(
        self, kind: str, name: str, request: Any = None, ask: Optional[Mapping[str, Any]] = None
    ) -> CallTicket: ...
    def call_start_many(
        self,
        calls: Iterable[
            Union[
                Tuple[str, str, Any],
                Tuple[str, str, Any, Optional[Mapping[str, Any]]],
                Mapping[str, Any],
            ]
        ],
    ) -> List[CallTicket]: ...
    def call_complete(
        self,
        ticket: CallTicket,
        response: Any = None,
        usage: Optional[Any] = None,
        error: Optional[Mapping[str, Any]] = None,
    ) -> Any: ...
    def _call_record(
        self,
        ticket: CallTicket,
        response: Any = None,
        usage: Optional[Any] = None,
        error: Optional[Mapping[str, Any]] = None,
    ) -> Tuple[Any, Optional[Dict[str, Any]]]: ...
    def _call_start_native(self, provider: NativeProvider, request: Any) -> CallTicket: ...
    def _call_start_tool(self, rules: NativeToolRules, arguments: Any = None) -> CallTicket: ...
    def _call_start_native_tool(self, tool: NativeTool, arguments: Any = None) -> CallTicket: ...
    def _call_execute(self, ticket: CallTicket) -> Tuple[Any, Optional[Dict[str, Any]]]: ...
    def _call_stream(self, ticket: CallTicket) -> NativeChunks: ...
    @property
    def _calls(self) -> Any: ...
    def llm(
        self,
        provider: str,
        request: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = ...,
        messages: Optional[List[Dict[str, Any]]] = ...,
        max_tokens: Optional[int] = ...,
        temperature: Optional[float] = ...,
        seed: Optional[int] = ...,
        stop: Optional[List[str]] = ...,
        tools: Optional[List[Dict[str, Any]]] = ...,
        tool_choice: Optional[Any] = ...,
        response_format: Optional[Any] = ...,
    ) -> LlmReply: ...
    def llm_async(
        self,
        provider: str,
        request: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = ...,
        messages: Optional[List[Dict[str, Any]]] = ...,
        max_tokens: Optional[int] = ...,
        temperature: Optional[float] = ...,
        seed: Optional[int] = ...,
        stop: Optional[List[str]] = ...,
        tools: Optional[List[Dict[str, Any]]] = ...,
        tool_choice: Optional[Any] = ...,
        response_format: Optional[Any] = ...,
    ) -> Awaitable[LlmReply]: ...
    def llm_stream(
        self,
        provider: str,
        request: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = ...,
        messages: Optional[List[Dict[str, Any]]] = ...,
        max_tokens: Optional[int] = ...,
        temperature: Optional[float] = ...,
        seed: Optional[int] = ...,
        stop: Optional[List[str]] = ...,
        tools: Optional[List[Dict[str, Any]]] = ...,
        tool_choice: Optional[Any] = ...,
        response_format: Optional[Any] = ...,
    ) -> LlmStream: ...
    def llm_stream_async(
        self,
        provider: str,
        request: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = ...,
        messages: Optional[List[Dict[str, Any]]] = ...,
        max_tokens: Optional[int] = ...,
        temperature: Optional[float] = ...,
        seed: Optional[int] = ...,
        stop: Optional[List[str]] = ...,
        tools: Optional[List[Dict[str, Any]]] = ...,
        tool_choice: Optional[Any] = ...,
        response_format: Optional[Any] = ...,
    ) -> AsyncLlmStream: ...
    def tool(self, name: str, arguments: Any = None) -> Any: ...
    def tool_async(self, name: str, arguments: Any = None) -> Awaitable[Any]: ...

@final
class CallTicket:
    @property
    def activation(self) -> int: ...
    @property
    def call(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def live(self) -> bool: ...
    @property
    def recorded(self) -> bool: ...
    @property
    def max_tokens(self) -> Optional[int]: ...
    @property
    def request(self) -> Any: ...
    @property
    def hold_response(self) -> bool: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def outcome(self) -> Optional[Dict[str, Any]]: ...
    def tool_call_id(self, i: int) -> str: ...

@final
class NativePrices:
    @staticmethod
    def from_table(table: Mapping[str, Any]) -> NativePrices: ...
    def __len__(self) -> int: ...

@final
class Policy:
    def __new__(cls, source: Union[Policy, _Path, Mapping[str, Any]]) -> Policy: ...
    @property
    def name(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def rule_ids(self) -> List[str]: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

_PolicyArg = Union[Policy, _Path, Dict[str, Any]]

def redact(text: str, policy: Optional[_PolicyArg] = None) -> Dict[str, Any]: ...
def check_policy(policy: _PolicyArg, logs: Sequence[_Path]) -> Dict[str, Any]: ...

@final
class Telemetry:
    def __new__(
        cls,
        otlp: Optional[str] = None,
        *,
        headers: Optional[Dict[str, str]] = None,
        service_name: Optional[str] = None,
        sample_ratio: float = 1.0,
        always_trace: Sequence[str] = ...,
        capture_content: bool = False,
        flush_timeout: float = 2.0,
        metric_labels: Optional[Sequence[str]] = None,
    ) -> Telemetry: ...
    @staticmethod
    def from_env() -> Telemetry: ...
    def metrics_text(self) -> str: ...
    def flush(self, timeout: float = 2.0) -> bool: ...
    def shutdown(self, timeout: float = 2.0) -> bool: ...
    def serve_metrics(self, addr: str = "127.0.0.1:9464") -> str: ...
    @property
    def export_stats(self) -> Optional[Dict[str, int]]: ...

@final
class NativeLogBuffer:
    def drain(self, max: int, wait: float) -> List[str]: ...
    @property
    def dropped(self) -> int: ...

def capture_logs(level: str, cap: int) -> NativeLogBuffer: ...
def export_log(path: _Path, format: str) -> str: ...
def export_otlp(
    path: _Path,
    endpoint: str,
    *,
    headers: Optional[Dict[str, str]] = None,
    service_name: Optional[str] = None,
    content: bool = False,
) -> int: ...

@final
class NativeProvider:
    @staticmethod
    def from_config(name: str, config: Any) -> NativeProvider: ...
    @property
    def name(self) -> str: ...

@final
class NativeChunks:
    def __iter__(self) -> NativeChunks: ...
    def __next__(self) -> Optional[Dict[str, Any]]: ...
    def next_chunk(self) -> Optional[Dict[str, Any]]: ...
    def outcome(self) -> Tuple[Any, Optional[Dict[str, Any]]]: ...

@final
class NativeToolRules:
    @staticmethod
    def new(
        name: str,
        schema: Optional[Any] = None,
        agents: Optional[Iterable[str]] = None,
        rate_limit: Optional[Tuple[int, float]] = None,
    ) -> NativeToolRules: ...
    @property
    def name(self) -> str: ...
    @property
    def schema(self) -> Optional[Any]: ...
    def reserve(self) -> float: ...

@final
class NativeTool:
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> Optional[str]: ...
    @property
    def schema(self) -> Any: ...

@final
class NativeMcp:
    @staticmethod
    def spawn(
        command: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        agents: Optional[Iterable[str]] = None,
        rate_limit: Optional[Tuple[int, float]] = None,
        init_timeout: Optional[float] = None,
        call_timeout: Optional[float] = None,
    ) -> Tuple[NativeMcp, List[NativeTool]]: ...
    @property
    def program(self) -> str: ...
    @property
    def pid(self) -> Optional[int]: ...
    @property
    def running(self) -> bool: ...
    def close(self) -> bool: ...

def provider_error_of(error: Mapping[str, Any]) -> BaseException: ...
def normalize_usage(usage: Any) -> Optional[Dict[str, Any]]: ...

@final
class EventStream:
    def __iter__(self) -> EventStream: ...
    def __next__(self) -> Dict[str, Any]: ...

@final
class StateStream:
    def __iter__(self) -> StateStream: ...
    def __next__(self) -> Dict[str, Any]: ...

@final
class Completion:
    @staticmethod
    def ok(
        act: Activation, output: Any, usage: Optional[Any] = None, duration_us: Optional[int] = None
    ) -> Completion: ...
    @staticmethod
    def ok_json(
        act: Activation, text: str, usage: Optional[Any] = None, duration_us: Optional[int] = None
    ) -> Completion: ...
    @staticmethod
    def err(
        act: Activation,
        error_type: str,
        message: str,
        retryable: bool = True,
        usage: Optional[Any] = None,
        duration_us: Optional[int] = None,
        cause: Optional[BaseException] = None,
    ) -> Completion: ...
    @staticmethod
    def invalid_output(act: Activation, reason: str, duration_us: Optional[int] = None) -> Completion: ...
    @staticmethod
    def timed_out(duration_us: Optional[int] = None) -> Completion: ...
    @property
    def failed(self) -> bool: ...
    @property
    def cause(self) -> Optional[BaseException]: ...

@final
class NativeRun:
    @staticmethod
    def start(
        workflow: NativeWorkflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        log_dir: Optional[_Path] = None,
        fsync: str = "batch",
        tenant: Optional[str] = None,
        watch: bool = False,
        budget: Optional[Mapping[str, Any]] = None,
        prices: Optional[NativePrices] = None,
        policy: Optional[_PolicyArg] = None,
        telemetry: Optional[Telemetry] = None,
    ) -> NativeRun: ...
    @staticmethod
    def resume(
        path: _Path,
        fsync: str = "batch",
        run_id: Optional[str] = None,
        approvals: Optional[Dict[str, Any]] = None,
        watch: bool = False,
        prices: Optional[NativePrices] = None,
        policy: Optional[_PolicyArg] = None,
        telemetry: Optional[Telemetry] = None,
    ) -> NativeRun: ...
    @staticmethod
    def retry(
        path: _Path,
        fsync: str = "batch",
        run_id: Optional[str] = None,
        watch: bool = False,
        prices: Optional[NativePrices] = None,
        policy: Optional[_PolicyArg] = None,
        telemetry: Optional[Telemetry] = None,
    ) -> NativeRun: ...
    @staticmethod
    def fork(
        path: _Path,
        seq: int,
        overrides: Optional[Dict[str, Any]] = None,
        run_id: Optional[str] = None,
        log_dir: Optional[_Path] = None,
        fsync: str = "batch",
        workflow: Optional[NativeWorkflow] = None,
        watch: bool = False,
        prices: Optional[NativePrices] = None,
        policy: Optional[_PolicyArg] = None,
        telemetry: Optional[Telemetry] = None,
    ) -> NativeRun: ...
    @staticmethod
    def reexecute(path: _Path, policy: Optional[_PolicyArg] = None) -> NativeRun: ...
    def reexec_report(self) -> Tuple[str, int, int, int]: ...
    def take_committed(self) -> List[Dict[str, Any]]: ...
    def poll(self, token: Optional[Any] = None, calls: Optional[Any] = None) -> List[Activation]: ...
    def outstanding(self) -> List[Activation]: ...
    def complete_all(self, items: List[Tuple[int, Completion]]) -> List[Optional[BaseException]]: ...
    def fsync_count(self) -> int: ...
    def cancel(self, reason: str) -> bool: ...
    def status(self) -> str: ...
    def outcome(self) -> Dict[str, Any]: ...
    def run_id(self) -> str: ...
    def log_path(self) -> Optional[Path]: ...
    def fingerprint(self) -> str: ...
    def usage(self) -> Dict[str, Any]: ...
    def canonical(self) -> bytes: ...
    def close(self) -> None: ...
    def workflow(self) -> NativeWorkflow: ...

def verify_log(path: _Path) -> Dict[str, Any]: ...
def check_log(path: _Path) -> Dict[str, Any]: ...
def anchor(path: _Path, key: Optional[Union[bytes, str]] = None) -> Dict[str, Any]: ...
def verify_anchor(
    path: _Path, anchor: Union[Dict[str, Any], str], key: Optional[Union[bytes, str]] = None
) -> Dict[str, Any]: ...
def canonical_log(path: _Path) -> bytes: ...
def read_header(path: _Path) -> Dict[str, Any]: ...
def read_log(path: _Path) -> EventStream: ...
def history(path: _Path) -> StateStream: ...
def fingerprint(path: _Path) -> str: ...
def usage_report(path: _Path) -> Dict[str, Any]: ...
def replay(path: _Path, workflow: Optional[NativeWorkflow] = None) -> Dict[str, Any]: ...
def state_at(path: _Path, seq: int) -> Dict[str, Any]: ...
def recorded_workflow(path: _Path) -> NativeWorkflow: ...
def normalize_json(text: str) -> str: ...
def error_codes() -> List[str]: ...
def cli_main(argv: List[str]) -> int: ...
def to_json_text(obj: Any) -> Tuple[Optional[str], Optional[str]]: ...
