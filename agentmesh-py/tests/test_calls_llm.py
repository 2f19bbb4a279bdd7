"""Native providers (Rust, GIL released) against the real llama-server: OpenAI-compatible and
Anthropic kinds, streaming, and a two-agent workflow SIGKILLed mid-run and resumed behind a
counting proxy: no recorded call is sent again and the log equals an uninterrupted run's.

Needs AGENTMESH_LLAMA_SERVER and AGENTMESH_LLM_MODEL (``eval "$(bash .ci/llama-server.sh)"``);
without them the tests are skipped, unless CI is set (then they fail)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List

import pytest

import agentmesh

SERVER = os.environ.get("AGENTMESH_LLAMA_SERVER")
MODEL = os.environ.get("AGENTMESH_LLM_MODEL")
WF = {"name": "llm", "nodes": [{"id": "a", "type": "agent", "agent": "w"}]}
REQUEST = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Say hello."}],
    "maxTokens": 16,
    "temperature": 0,
    "seed": 1,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    """A llama-server on a free port; its base URL (``.../v1``)."""
    if not SERVER or not MODEL:
        if os.environ.get("CI"):
            pytest.fail("AGENTMESH_LLAMA_SERVER / AGENTMESH_LLM_MODEL are not set (run .ci/llama-server.sh)")
        pytest.skip("no llama-server (eval \"$(bash .ci/llama-server.sh)\")")
    port = free_port()
    proc = subprocess.Popen(
        [SERVER, "-m", MODEL, "--host", "127.0.0.1", "--port", str(port), "-t", "1", "-c", "2048",
         "-np", "1", "--no-cache-prompt", "--alias", "smollm2", "--no-webui"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, "llama-server exited"
            assert time.monotonic() < deadline, "llama-server not healthy after 60 s"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait(10)


def run_one(mesh: agentmesh.Mesh, agent: Any) -> Any:
    mesh.add_agent("w", agent)
    return mesh.run(agentmesh.Workflow.from_dict(WF)).output["a"]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_native_llm_call_is_recorded(llama: str, kind: str) -> None:
    mesh = agentmesh.Mesh()
    mesh.provider("local", {"kind": kind, "baseUrl": llama, "maxRetries": 0})

    def w(act: agentmesh.Activation) -> Any:
        r = act.llm("local", REQUEST)
        return {"text": r.text, "finish": r.finish_reason, "usage": r.usage, "recorded": r.recorded}

    out = run_one(mesh, w)
    assert out["text"] and out["finish"] in ("stop", "length") and out["recorded"] is False
    assert out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_native_stream_sends_chunks_and_records_the_whole(llama: str, kind: str, tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.provider("local", {"kind": kind, "baseUrl": llama, "maxRetries": 0})

    def w(act: agentmesh.Activation) -> Any:
        s = act.llm_stream("local", REQUEST)
        chunks = list(s)
        whole = act.llm("local", REQUEST)  # the same request, not streamed: the same answer
        return {"chunks": chunks, "text": s.reply.text, "whole": whole.text}

    mesh.add_agent("w", w)
    res = mesh.run(agentmesh.Workflow.from_dict(WF), run_id="s")
    out = res.output["a"]
    assert len(out["chunks"]) > 1
    assert "".join(c.get("text", "") for c in out["chunks"]) == out["text"] == out["whole"]
    recorded = [e for e in agentmesh.read_log(res.log_path or "") if e["type"] == "callCompleted"]
    assert recorded[0]["data"]["response"]["text"] == out["text"]


def test_native_calls_from_asyncio_agents(llama: str) -> None:
    mesh = agentmesh.Mesh()
    mesh.provider("local", {"kind": "openai", "baseUrl": llama, "maxRetries": 0})

    async def w(act: agentmesh.Activation) -> Any:
        a, b = await asyncio.gather(act.llm_async("local", REQUEST), act.llm_async("local", REQUEST, max_tokens=4))
        s = act.llm_stream_async("local", REQUEST)
        chunks = [c async for c in s]
        return {"a": a.text, "b": b.text, "stream": "".join(c.get("text", "") for c in chunks), "s": (await s.result()).text}

    mesh.add_agent("w", w)
    out = asyncio.run(mesh.run_async(agentmesh.Workflow.from_dict(WF))).output["a"]
    assert out["a"] == out["stream"] == out["s"] and out["b"] and len(out["b"]) <= len(out["a"])


def test_a_dead_provider_is_a_provider_error(llama: str) -> None:
    mesh = agentmesh.Mesh()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    mesh.provider("dead", {"kind": "openai", "baseUrl": dead, "maxRetries": 0, "connectTimeoutMs": 2000})
    # A fallback chain: the dead one first, then the live server.
    mesh.provider("chain", [{"kind": "openai", "baseUrl": dead, "maxRetries": 0}, {"kind": "openai", "baseUrl": llama, "maxRetries": 0}])

    def w(act: agentmesh.Activation) -> Any:
        try:
            act.llm("dead", REQUEST)
        except agentmesh.ProviderError as e:
            err = {"type": e.error_type, "retryable": e.retryable}
        return {"err": err, "chain": act.llm("chain", REQUEST).text}

    out = run_one(mesh, w)
    assert out["err"]["type"] and out["chain"]


# SIGKILL mid-run, behind a counting proxy ---------------------------------------------------


class Proxy:
    """Forwards requests to the server one by one, keeping their bodies and the server's
    answers."""

    def __init__(self, upstream: str) -> None:
        self.bodies: List[bytes] = []
        self.responses: List[bytes] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.bodies.append(body)
                req = urllib.request.Request(
                    upstream.rsplit("/v1", 1)[0] + self.path, data=body, method="POST",
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                proxy.responses.append(data)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import agentmesh

    base, log_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    crash = os.environ.get("CRASH") == "1"
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.provider("local", {"kind": "openai", "baseUrl": base, "maxRetries": 0})

    def ask(act, i):
        return act.llm("local", model="smollm2", max_tokens=8, temperature=0, seed=1,
                       messages=[{"role": "user", "content": f"Say one word about {act.node} number {i}."}]).text

    @mesh.agent("planner")
    def planner(act):
        return [ask(act, 0)]

    @mesh.agent("writer")
    def writer(act):
        first = ask(act, 0)
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-agent: call 1 recorded, call 2 not made
        return [first, ask(act, 1)]

    wf = agentmesh.Workflow.from_dict({"name": "llm-e2e", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "write", "type": "agent", "agent": "writer", "after": ["plan"]}]})
    if mode == "run":
        res = mesh.run(wf, run_id="llm-e2e")
    else:
        res = mesh.resume(os.path.join(log_dir, "llm-e2e.jsonl"))
    print(json.dumps({"status": res.status, "output": res.output}))
    """
)


def test_sigkill_mid_run_resume_sends_no_recorded_call_again(llama: str, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proxy = Proxy(llama)
    try:

        def child(log_dir: Path, mode: str, crash: bool) -> "subprocess.CompletedProcess[str]":
            return subprocess.run(
                [sys.executable, str(script), proxy.base_url, str(log_dir), mode],
                env={**os.environ, "CRASH": "1" if crash else "0"},
                capture_output=True, text=True, timeout=120,
            )

        crashed = child(tmp_path / "a", "run", crash=True)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        sent_before = list(proxy.bodies)
        assert len(sent_before) == 2  # plan's call and write's first
        resumed = child(tmp_path / "a", "resume", crash=False)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "completed"
        sent_on_resume = proxy.bodies[2:]
        assert len(sent_on_resume) == 1 and sent_on_resume[0] not in sent_before

        clean = child(tmp_path / "b", "run", crash=False)
        assert clean.returncode == 0, clean.stderr
        assert len(proxy.bodies) == 6
        assert proxy.bodies[3:] == sent_before + sent_on_resume  # the same requests, each once
        assert agentmesh.canonical_log(tmp_path / "a" / "llm-e2e.jsonl") == agentmesh.canonical_log(
            tmp_path / "b" / "llm-e2e.jsonl"
        )
    finally:
        proxy.close()
