"""Telemetry from Python (docs/telemetry.md): live OpenTelemetry spans exported to a real
OTLP receiver (oteltap, when AGENTMESH_OTELTAP names it; CI sets it), the same span tree the
log gives after the fact and the CLI gives for the same log, metrics, pictures, and typed
errors for bad input."""
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

import agentmesh

CLI = os.environ.get("AGENTMESH_CLI")
OTELTAP = os.environ.get("AGENTMESH_OTELTAP")
VECTORS = Path(__file__).resolve().parents[2] / "bindings-tests" / "vectors"

POLICY = {"version": 1, "name": "e2e", "rules": [{"id": "pii-email", "detect": "email", "action": "redact"}]}

WORKFLOW = agentmesh.Workflow.from_dict({"name": "telemetry-e2e", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "research", "type": "agent", "agent": "researcher", "after": ["plan"]},
    {"id": "flaky", "type": "agent", "agent": "flaky", "after": ["plan"],
     "retry": {"maxAttempts": 2, "backoffMs": 0}},
    {"id": "slow", "type": "agent", "agent": "sleeper", "after": ["plan"], "timeoutMs": 60,
     "retry": {"maxAttempts": 2, "backoffMs": 0}},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["research", "flaky", "slow"]},
]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    """oteltap on a free port; received spans arrive as NDJSON lines on its stdout."""

    def __init__(self) -> None:
        assert OTELTAP is not None
        self.port = free_port()
        self.proc = subprocess.Popen(
            [OTELTAP, "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.spans: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        until = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < until, "oteltap did not start listening"
                time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if "spanId" in v:
                with self._lock:
                    self.spans.append(v)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, n: int) -> List[Dict[str, Any]]:
        until = time.monotonic() + 20
        while time.monotonic() < until:
            with self._lock:
                if len(self.spans) >= n:
                    return list(self.spans)
            time.sleep(0.05)
        with self._lock:
            return list(self.spans)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    if OTELTAP is None:
        assert os.environ.get("CI") != "true", "CI sets AGENTMESH_OTELTAP"
        pytest.skip("AGENTMESH_OTELTAP is not set")
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
    time.sleep(0.015)
    prompt = request["messages"][-1]["content"]
    text = "write to ops@example.com" if "contact" in prompt else prompt.upper()
    return {"text": text, "finishReason": "stop"}, {"inputTokens": 12, "outputTokens": 7}


def make_mesh(log_dir: Path, telemetry: Optional[agentmesh.Telemetry]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir, policy=POLICY, telemetry=telemetry)
    mesh.provider("local", provider)

    @mesh.agent("planner")
    def planner(act: agentmesh.Activation) -> Dict[str, Any]:
        return {"plan": "go"}

    @mesh.agent("researcher")
    def researcher(act: agentmesh.Activation) -> Dict[str, Any]:
        r = act.llm("local", model="smollm2", max_tokens=32, temperature=0.0, seed=7,
                    messages=[{"role": "user", "content": "find facts"}])
        return {"facts": r.text}

    @mesh.agent("flaky")
    def flaky(act: agentmesh.Activation) -> Dict[str, Any]:
        if act.attempt == 1:
            raise ConnectionError("connection reset")
        return {"ok": True}

    @mesh.agent("sleeper")
    def sleeper(act: agentmesh.Activation) -> Dict[str, Any]:
        if act.attempt == 1:
            time.sleep(0.3)
        return {"slept": act.attempt}

    @mesh.agent("writer")
    def writer(act: agentmesh.Activation) -> Dict[str, Any]:
        r = act.llm("local", model="smollm2", messages=[{"role": "user", "content": "contact line"}])
        return {"text": r.text}

    return mesh


def tree(spans: List[Dict[str, Any]]) -> Set[Tuple[str, str, str]]:
    return {(s["spanId"], s.get("parentSpanId") or "", s["name"]) for s in spans}


def exported(path: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in agentmesh.export_log(path, "spans").splitlines()]


def attrs(span: Dict[str, Any]) -> Dict[str, Any]:
    """OTLP JSON attributes as a flat dict."""
    out: Dict[str, Any] = {}
    for a in span.get("attributes", []):
        (kind, value), = a["value"].items()
        out[a["key"]] = int(value) if kind == "intValue" else value
    return out


def test_a_run_exports_one_trace_with_parentage_to_a_real_receiver(tmp_path: Path, receiver: Receiver) -> None:
    telemetry = agentmesh.Telemetry(receiver.url, service_name="agentmesh-py-test")
    result = make_mesh(tmp_path, telemetry).run(WORKFLOW, input={"topic": "otel"})
    assert result.status == "completed"
    assert result.log_path is not None
    derived = exported(result.log_path)
    got = receiver.wait(len(derived))
    assert len(got) == len(derived)
    # The same tree the log gives after the fact.
    assert tree(got) == tree(derived)
    ids = {s["spanId"] for s in got}
    assert len({s["traceId"] for s in got}) == 1, "one trace per run"
    roots = [s for s in got if not s.get("parentSpanId")]
    assert [r["name"] for r in roots] == ["invoke_workflow telemetry-e2e"]
    assert all(s["parentSpanId"] in ids for s in got if s.get("parentSpanId"))
    by_id = {s["spanId"]: s for s in got}
    # Retries are separate spans linked to the attempt they retry.
    flaky = [s for s in got if s["name"] == "invoke_agent flaky"]
    assert len(flaky) == 2
    failed = next(s for s in flaky if not s.get("links"))
    retry = next(s for s in flaky if s.get("links"))
    assert retry["links"][0]["spanId"] == failed["spanId"]
    assert failed["status"]["code"] == 2 and attrs(failed)["error.type"] == "ConnectionError"
    sleeper = [s for s in got if s["name"] == "invoke_agent sleeper"]
    assert sum(1 for s in sleeper if attrs(s).get("agentmesh.timeout")) == 1
    # LLM calls: CLIENT spans under their activation, with the GenAI attributes.
    chats = [s for s in got if s["name"] == "chat smollm2"]
    assert len(chats) == 2
    for c in chats:
        assert c["kind"] == 3
        assert by_id[c["parentSpanId"]]["name"] in ("invoke_agent researcher", "invoke_agent writer")
        a = attrs(c)
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "smollm2"
        assert a["gen_ai.usage.input_tokens"] == 12 and a["gen_ai.usage.output_tokens"] == 7
        assert "gen_ai.input.messages" not in a, "content only when asked for"
    # The verdict: a guardrail span under the call it judged.
    guard = [s for s in got if s["name"] == "apply_guardrail pii-email"]
    assert len(guard) == 1
    assert by_id[guard[0]["parentSpanId"]]["name"] == "chat smollm2"
    assert attrs(guard[0])["gen_ai.guardrail.result.type"] == "redact"
    # Durations: what the log recorded.
    want = {s["spanId"]: int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) for s in derived}
    for s in got:
        assert int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) == want[s["spanId"]]
    assert telemetry.flush(10.0)
    stats = telemetry.export_stats
    assert stats is not None and stats["exported"] == len(derived) and stats["dropped"] == 0


@pytest.mark.skipif(CLI is None, reason="AGENTMESH_CLI is not set")
def test_python_node_and_rust_derive_the_same_span_tree_for_a_vector(tmp_path: Path, receiver: Receiver) -> None:
    """The policy vector run by the Python driver with live telemetry, and by the CLI (Rust):
    the receiver's tree, the Python log's and the Rust log's are one tree."""
    sys.path.insert(0, str(VECTORS.parent / "python"))
    from test_vectors import drive, load_script, new_mesh  # type: ignore[import-not-found]

    vdir = VECTORS / "policy_block_redact_warn"
    wf = agentmesh.Workflow.from_file(vdir / "workflow.json")
    script = load_script(vdir / "script.json")
    telemetry = agentmesh.Telemetry(receiver.url)
    mesh = new_mesh(str(tmp_path / "py"), wf, script, telemetry)
    result = drive(lambda: mesh.run(wf, input=script.get("input"), seed=script.get("seed", 0),
                                    run_id=script.get("runId"), budget=script.get("budget")))
    assert result.log_path is not None
    py_tree = tree(exported(result.log_path))
    assert CLI is not None
    subprocess.run([CLI, "run", str(vdir / "workflow.json"), "--script", str(vdir / "script.json"),
                    "--log-dir", str(tmp_path / "rs")], check=False, capture_output=True)
    rs_log = next((tmp_path / "rs").glob("*.jsonl"))
    cli = subprocess.run([CLI, "export", str(rs_log), "--format", "spans"], check=True,
                         capture_output=True, text=True).stdout
    rs_tree = tree([json.loads(line) for line in cli.splitlines()])
    assert py_tree == rs_tree
    # The run waits for a person: its run span and the wait are still open, so not sent yet.
    finished = [s for s in exported(result.log_path) if not s["open"]]
    assert len(finished) < len(py_tree)
    assert tree(receiver.wait(len(finished))) == tree(finished)
    # Another mesh (another process) resumes it with the approval: the spans open before
    # end now, under the same parents, and the receiver holds the whole final tree.
    resumed = drive(lambda: new_mesh(str(tmp_path / "py"), wf, script, telemetry).resume(
        result.log_path, script["approvals"]))
    assert resumed.status in ("completed", "failed")
    final = exported(result.log_path)
    assert not any(s["open"] for s in final)
    assert tree(receiver.wait(len(final))) == tree(final)


def test_metrics_text_and_the_scrape_endpoint(tmp_path: Path) -> None:
    telemetry = agentmesh.Telemetry()
    result = make_mesh(tmp_path, telemetry).run(WORKFLOW)
    text = telemetry.metrics_text()
    assert "# TYPE gen_ai_client_token_usage histogram" in text
    assert 'gen_ai_token_type="output"' in text
    assert "agentmesh_runs_total" in text and "agentmesh_retries_total" in text
    assert result.run_id not in text, "no run ids as labels"
    addr = telemetry.serve_metrics("127.0.0.1:0")
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        body = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert "agentmesh_runs_total" in body
    with pytest.raises(agentmesh.InvalidArgumentError, match="loopback"):
        telemetry.serve_metrics("0.0.0.0:0")


def test_a_down_collector_drops_counted_and_the_run_completes(tmp_path: Path) -> None:
    telemetry = agentmesh.Telemetry(f"http://127.0.0.1:{free_port()}", flush_timeout=0.5)
    result = make_mesh(tmp_path, telemetry).run(WORKFLOW)
    assert result.status == "completed"
    telemetry.flush(5.0)
    stats = telemetry.export_stats
    assert stats is not None and stats["dropped"] > 0 and stats["exported"] == 0


def test_pictures_and_post_hoc_export(tmp_path: Path, receiver: Receiver) -> None:
    result = make_mesh(tmp_path, None).run(WORKFLOW)
    assert result.log_path is not None
    chrome = json.loads(agentmesh.export_log(result.log_path, "chrome"))
    lanes = {e["args"]["name"] for e in chrome["traceEvents"] if e["name"] == "thread_name"}
    assert {"planner", "researcher", "flaky", "sleeper", "writer"} <= lanes
    html = agentmesh.export_log(result.log_path, "html")
    assert '<script type="application/json" id="run-data">' in html
    assert "ops@example.com" not in html, "what the log holds: redacted"
    assert agentmesh.export_log(result.log_path, "mermaid").startswith("flowchart TD")
    sent = agentmesh.export_otlp(result.log_path, receiver.url, content=True)
    got = receiver.wait(sent)
    assert len(got) == sent == len(exported(result.log_path))
    chat = next(s for s in got if s["name"] == "chat smollm2")
    assert "find facts" in attrs(chat)["gen_ai.input.messages"]


def test_bad_input_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(agentmesh.InvalidArgumentError, match="between 0 and 1"):
        agentmesh.Telemetry(sample_ratio=2.0)
    with pytest.raises(agentmesh.InvalidArgumentError, match="not a URL"):
        agentmesh.Telemetry("not a url")
    with pytest.raises(agentmesh.InvalidArgumentError, match="authorization") as bad_header:
        agentmesh.Telemetry("http://127.0.0.1:4318", headers={"authorization": "Bearer SECRET\n"})
    assert "SECRET" not in str(bad_header.value), "header values carry keys: never in messages"
    with pytest.raises(agentmesh.InvalidArgumentError, match="need otlp"):
        agentmesh.Telemetry(service_name="x")
    with pytest.raises(agentmesh.InvalidArgumentError, match="seconds"):
        agentmesh.Telemetry(flush_timeout=-1)
    with pytest.raises(agentmesh.InvalidArgumentError, match="Telemetry"):
        agentmesh.Mesh(telemetry={"otlp": "x"})  # type: ignore[arg-type]
    result = make_mesh(tmp_path, None).run(WORKFLOW)
    assert result.log_path is not None
    with pytest.raises(agentmesh.InvalidArgumentError, match="unknown export format"):
        agentmesh.export_log(result.log_path, "svg")
    with pytest.raises(agentmesh.AgentMeshIOError, match="exporting"):
        agentmesh.export_otlp(result.log_path, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TypeError):
        agentmesh.Telemetry(always_trace=1)  # type: ignore[arg-type]


def test_sampling_is_per_run_and_always_trace_keeps_an_agent(tmp_path: Path, receiver: Receiver) -> None:
    telemetry = agentmesh.Telemetry(receiver.url, sample_ratio=0.0, always_trace=["writer"])
    result = make_mesh(tmp_path, telemetry).run(WORKFLOW)
    assert result.status == "completed"
    telemetry.flush(5.0)
    got = receiver.wait(4)
    names = sorted(s["name"] for s in got)
    # The writer's activation, its call and verdict, and the run span above them; no others.
    assert names == ["apply_guardrail pii-email", "chat smollm2", "invoke_agent writer",
                     "invoke_workflow telemetry-e2e"]
    # Metrics count every run whatever the sampler says.
    assert "agentmesh_runs_total" in telemetry.metrics_text()


def test_structured_logs_reach_python_logging_with_run_trace_node_and_seq(tmp_path: Path) -> None:
    """The first route_logs installs the process's subscriber (this test runs the logs of
    every later test in this process through it, which is harmless)."""
    records: List[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("agentmesh.test")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    agentmesh.route_logs("agentmesh.test", level="debug")
    telemetry = agentmesh.Telemetry()
    result = make_mesh(tmp_path, telemetry).run(WORKFLOW)
    until = time.monotonic() + 10
    while time.monotonic() < until and not any(getattr(r, "event", None) == "runCompleted" and getattr(r, "run_id", None) == result.run_id for r in records):
        time.sleep(0.05)
    mine = [r for r in records if getattr(r, "run_id", None) == result.run_id]
    assert any(getattr(r, "event", None) == "runCompleted" for r in mine)
    failed = next(r for r in mine if getattr(r, "event", None) == "agentFailed")
    assert failed.levelno == logging.WARNING
    assert getattr(failed, "node") == "flaky"
    assert failed.getMessage() == "flaky failed: ConnectionError: connection reset"
    for r in mine:
        assert getattr(r, "trace_id") == mine[0].__dict__["trace_id"]
        assert isinstance(getattr(r, "seq"), int)
    with pytest.raises(agentmesh.InvalidArgumentError, match="log level"):
        agentmesh.route_logs(level="loud")


def test_a_short_script_s_spans_are_sent_before_the_interpreter_exits(tmp_path: Path, receiver: Receiver) -> None:
    """The telemetry threads are daemons: the module flushes every telemetry at exit."""
    script = tmp_path / "short.py"
    script.write_text(
        "import sys, agentmesh\n"
        "t = agentmesh.Telemetry(sys.argv[1])\n"
        "mesh = agentmesh.Mesh(telemetry=t)\n"
        "mesh.add_agent('a', lambda act: {'ok': True})\n"
        "wf = agentmesh.Workflow.from_dict({'name': 'short', 'nodes': [\n"
        "    {'id': 'x', 'type': 'agent', 'agent': 'a'}, {'id': 'y', 'type': 'agent', 'agent': 'a', 'after': ['x']}]})\n"
        "print(mesh.run(wf).status)\n"
    )
    out = subprocess.run([sys.executable, str(script), receiver.url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed"
    names = sorted(s["name"] for s in receiver.wait(3))
    assert names == ["invoke_agent a", "invoke_agent a", "invoke_workflow short"]
