"""The read functions: check_log (never writes), anchors against truncation and recomputed
chains, history in one pass, and read_log streaming natively converted events."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from blake3_ref import digest
from crc32c_ref import append as crc32c_append

import agentmesh

KEY = "correct horse battery staple 8f3a"  # key material; must never show in a message


def wf(nodes: List[Dict[str, Any]], name: str = "t") -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes})


CHAIN = [
    {"id": "one", "type": "agent", "agent": "a"},
    {"id": "two", "type": "agent", "agent": "a", "after": ["one"]},
    {"id": "three", "type": "agent", "agent": "a", "after": ["two"]},
]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: {"node": act.node, "deps": sorted(act.deps)})
    r = mesh.run(wf(CHAIN, name="chain"), run_id="chain")
    assert r.status == "completed" and r.log_path is not None
    return Path(r.log_path)


def lines(path: Path) -> List[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# a re-sealing helper: what an attacker with write access could do ---------------------------

CRC_SUFFIX = len(b',"crc":"') + 8 + len(b'"}')


def reseal(records: List[bytes]) -> bytes:
    """Recompute the format-2 chain over ``records`` (header first): each record ends with the
    running CRC32C of every record body so far, ``body`` being the record without its
    ``,"crc":"…"`` field."""
    crc = 0
    out = []
    for line in records:
        record = line.rstrip(b"\n")
        body = record[:-CRC_SUFFIX] + b"}"
        crc = crc32c_append(crc, body)
        out.append(body[:-1] + b',"crc":"%08x"}\n' % crc)
    return b"".join(out)


def test_the_resealing_helper_is_faithful(log: Path) -> None:
    assert reseal(lines(log)) == log.read_bytes()


# check_log -----------------------------------------------------------------------------------


REPORT_KEYS = {"runId", "workflow", "version", "events", "lastSeq", "holes", "finished", "bytes",
               "tornAt", "repaired"}


def test_check_log_reports_without_writing(log: Path) -> None:
    report = agentmesh.check_log(log)
    assert set(report) == REPORT_KEYS
    assert report["runId"] == "chain" and report["finished"] == "runCompleted"
    assert report["tornAt"] is None and report["repaired"] is None
    assert report["bytes"] == log.stat().st_size and report["version"] == 6  # log format 6 (workflow shapes)

    size = log.stat().st_size
    with open(log, "ab") as f:
        f.write(b'{"seq":99,"type":"run')  # a torn final record (a crash mid-write)
    torn = log.read_bytes()
    report = agentmesh.check_log(log)
    assert report["tornAt"] == size and report["bytes"] == size and report["repaired"] is None
    assert log.read_bytes() == torn and not list(log.parent.glob("*.broken*"))  # untouched
    assert agentmesh.verify_log(log)["repaired"]["offset"] == size  # verify_log mends it
    assert log.stat().st_size == size


def test_check_log_of_damage_is_log_corrupt(log: Path) -> None:
    data = bytearray(log.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 5] ^= 1
    log.write_bytes(bytes(data))
    with pytest.raises(agentmesh.LogCorruptError) as info:
        agentmesh.check_log(log)
    assert info.value.offset == second
    for empty in (b"", lines(log)[0]):  # an empty file, a header without events
        log.write_bytes(empty)
        with pytest.raises(agentmesh.LogCorruptError):
            agentmesh.check_log(log)


# anchors -------------------------------------------------------------------------------------


def test_anchor_describes_the_head(log: Path) -> None:
    a = agentmesh.anchor(log)
    report = agentmesh.check_log(log)
    size = log.stat().st_size - 1  # up to the last record's end, its newline excluded
    assert a == {"version": 1, "runId": "chain", "records": report["events"],
                 "bytes": size, "head": digest(log.read_bytes()[:size]).hex()}
    assert agentmesh.verify_anchor(log, a)["events"] == report["events"]
    assert agentmesh.verify_anchor(log, json.dumps(a))["finished"] == "runCompleted"


@pytest.mark.parametrize("key", [None, KEY, KEY.encode()], ids=["plain", "str-key", "bytes-key"])
def test_every_truncation_at_a_record_boundary_is_detected(log: Path, key: Any) -> None:
    a = agentmesh.anchor(log, key=key)
    records = lines(log)
    for kept in range(len(records) - 1, 1, -1):  # header + (kept - 1) events
        log.write_bytes(b"".join(records[:kept]))
        assert agentmesh.check_log(log)["tornAt"] is None  # the chain alone sees nothing
        with pytest.raises(agentmesh.LogTruncatedError) as info:
            agentmesh.verify_anchor(log, a, key=key)
        e = info.value
        assert e.code == "LOG_TRUNCATED" and e.field in ("records", "bytes")
        assert e.expected == str(a[e.field]) and e.found is not None
        assert KEY not in str(e) and KEY not in repr(e.details)
    log.write_bytes(records[0])  # the header alone is no log at all
    with pytest.raises(agentmesh.LogCorruptError):
        agentmesh.verify_anchor(log, a, key=key)


def retimed(record: bytes) -> bytes:
    """The record with one digit of its wall-clock ``meta.at`` changed: same length."""
    at = record.index(b'"at":') + 5
    digit = record[at + 3] - ord("0")
    return record[: at + 3] + str((digit + 1) % 10).encode() + record[at + 4 :]


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "keyed"])
def test_every_recompute_after_edit_is_detected(log: Path, key: Optional[str]) -> None:
    a = agentmesh.anchor(log, key=key)
    records = lines(log)
    for i in range(1, len(records)):
        edits = [retimed(records[i])]  # same length: only the head can tell
        if b'"output":{' in records[i]:
            edits.append(records[i].replace(b'"output":{', b'"output":{"forged":true,', 1))
        for n, edit in enumerate(edits):
            edited = list(records)
            edited[i] = edit
            log.write_bytes(reseal(edited))
            assert agentmesh.check_log(log)["events"] == a["records"]  # the chain alone: intact
            with pytest.raises(agentmesh.LogHeadMismatchError) as info:
                agentmesh.verify_anchor(log, a, key=key)
            e = info.value
            assert e.code == "LOG_HEAD_MISMATCH"
            assert e.field == "head" if n == 0 else e.field in ("head", "bytes")
            assert e.expected == str(a[e.field]) and e.found is not None and e.found != e.expected
            assert KEY not in str(e) and KEY not in repr(e.details)


def test_records_appended_after_the_anchor_are_fine(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    w = wf([{"id": "x", "type": "agent", "agent": "a"},
            {"id": "ok", "type": "human", "after": ["x"]},
            {"id": "y", "type": "agent", "agent": "a", "after": ["ok"]}])
    r = mesh.run(w, run_id="grows")
    assert r.status == "waiting" and r.log_path is not None
    a = agentmesh.anchor(r.log_path, key=KEY)
    done = mesh.resume(r.log_path, {"ok": True})
    assert done.status == "completed"
    report = agentmesh.verify_anchor(r.log_path, a, key=KEY)
    assert report["events"] > a["records"] and report["finished"] == "runCompleted"


def test_keyed_anchors_need_the_right_key_and_never_show_it(log: Path) -> None:
    a = agentmesh.anchor(log, key=KEY)
    assert set(a) == {"version", "runId", "records", "bytes", "head", "mac"} and len(a["mac"]) == 64
    assert agentmesh.anchor(log, key=KEY.encode()) == a  # str material is its UTF-8 bytes
    assert agentmesh.verify_anchor(log, a, key=KEY)["events"] == a["records"]
    failures: List[agentmesh.AgentMeshError] = []
    with pytest.raises(agentmesh.LogHeadMismatchError) as info:
        agentmesh.verify_anchor(log, a, key=KEY + "x")
    assert info.value.field == "mac" and info.value.expected == a["mac"]
    failures.append(info.value)
    forged = dict(a, records=a["records"] - 1)  # an attacker edits the anchor store too
    with pytest.raises(agentmesh.LogHeadMismatchError) as info:
        agentmesh.verify_anchor(log, forged, key=KEY)
    failures.append(info.value)
    for bad_key in (None, 5, b""):
        with pytest.raises(agentmesh.InvalidArgumentError) as info2:
            agentmesh.verify_anchor(log, a, key=bad_key)  # type: ignore[arg-type]
        failures.append(info2.value)
    with pytest.raises(agentmesh.InvalidArgumentError) as info2:
        agentmesh.verify_anchor(log, agentmesh.anchor(log), key=KEY)  # unkeyed anchor + key
    failures.append(info2.value)
    with pytest.raises(agentmesh.InvalidArgumentError) as info2:
        agentmesh.anchor(log, key="\ud800" + KEY)
    failures.append(info2.value)
    for e in failures:
        assert KEY not in str(e) and KEY not in repr(e.details) and KEY[:12] not in str(e)


def test_bad_anchors_are_invalid_arguments(log: Path) -> None:
    a = agentmesh.anchor(log)
    for bad in (dict(a, version=2), dict(a, extra=1), "not json", [a], dict(a, records="many")):
        with pytest.raises(agentmesh.InvalidArgumentError):
            agentmesh.verify_anchor(log, bad)  # type: ignore[arg-type]
    with pytest.raises(agentmesh.LogHeadMismatchError) as info:
        agentmesh.verify_anchor(log, dict(a, runId="other"))
    assert info.value.field == "runId" and info.value.found == "chain"


def test_anchors_agree_with_the_cli(log: Path, tmp_path: Path) -> None:
    cli = Path(os.environ.get("AGENTMESH_CLI", "target/debug/agentmesh"))
    if not cli.exists():
        pytest.skip(f"no agentmesh CLI at {cli}")
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    out = subprocess.run([str(cli), "anchor", str(log), "--key-file", str(key_file)],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == agentmesh.anchor(log, key=KEY)


# history -------------------------------------------------------------------------------------


def test_history_is_state_at_every_step_end_in_one_pass(log: Path) -> None:
    states = agentmesh.history(log)
    assert iter(states) is states and not isinstance(states, list)
    states = list(states)
    seqs = [s["seq"] for s in states]
    assert seqs[0] == 1 and seqs == sorted(seqs)
    for s in states:
        assert s == agentmesh.state_at(log, s["seq"])
    ends = [s["seq"] for s in states if s["forkPoint"]]
    assert len(ends) >= 3  # one per step of the chain
    assert states[-1]["status"] == "completed"
    assert list(states[-1]["completed"]) == ["one", "three", "two"]


def test_history_of_a_damaged_log_raises_at_once(log: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"not a log\n")
    with pytest.raises(agentmesh.LogCorruptError):
        agentmesh.history(bad)
    with pytest.raises(agentmesh.AgentMeshIOError):
        agentmesh.history(tmp_path / "missing.jsonl")


def test_history_stopped_early_releases_its_pass(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never")
    mesh.add_agent("a", lambda act: act.node)
    long_chain = [{"id": f"n{i}", "type": "agent", "agent": "a", **({"after": [f"n{i-1}"]} if i else {})}
                  for i in range(200)]
    r = mesh.run(wf(long_chain), run_id="long")
    assert r.log_path is not None
    for _ in range(20):  # each abandoned pass must end, not pile up blocked threads
        it = agentmesh.history(r.log_path)
        assert next(it)["seq"] == 1
        del it
    # seq 1, the end of each of the 200 steps, and the end of the log (runCompleted)
    assert len(list(agentmesh.history(r.log_path))) == 202
    if os.path.isdir("/proc/self/task"):
        for _ in range(500):
            if history_threads() == 0:
                break
            time.sleep(0.01)
        assert history_threads() == 0


def history_threads() -> int:
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass  # ended meanwhile
    return sum(n.startswith("agentmesh-hist") for n in names)


# read_log ------------------------------------------------------------------------------------


def test_read_log_streams_the_canonical_events(log: Path) -> None:
    events = agentmesh.read_log(log)
    assert iter(events) is events and not isinstance(events, list)
    canonical = [json.loads(l) for l in agentmesh.canonical_log(log).splitlines()[1:]]
    assert list(events) == canonical
    assert list(events) == []  # exhausted
    first = canonical[0]
    assert type(first["seq"]) is int and first["type"] == "runStarted" and "meta" not in first


def test_read_log_gives_the_events_before_damage_then_raises(log: Path) -> None:
    data = log.read_bytes()
    starts = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    damaged = bytearray(data)
    damaged[starts[3] + 5] ^= 1  # the 4th event
    log.write_bytes(bytes(damaged))
    got: List[int] = []
    with pytest.raises(agentmesh.LogCorruptError) as info:
        for e in agentmesh.read_log(log):
            got.append(e["seq"])
    assert got == [1, 2, 3] and info.value.offset == starts[3]


def test_read_log_of_what_is_not_a_log_raises_at_once(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a":1}\n')
    with pytest.raises(agentmesh.LogCorruptError):
        agentmesh.read_log(p)
    with pytest.raises(agentmesh.AgentMeshIOError):
        agentmesh.read_log(tmp_path / "missing.jsonl")


def test_read_log_values_are_the_cores(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    value = {"big": 2**64 - 1, "neg": -(2**63), "f": 0.1, "z": -0.0, "s": "日志\u0000\"", "n": None,
             "l": [True, False, [1.5e300]], "e": {}}
    mesh.add_agent("a", lambda act: value)
    r = mesh.run(wf([{"id": "n", "type": "agent", "agent": "a"}]))
    (done,) = [e for e in agentmesh.read_log(r.log_path or "") if e["type"] == "agentCompleted"]
    assert done["data"]["output"] == value
    assert str(done["data"]["output"]["z"]) == "-0.0"
