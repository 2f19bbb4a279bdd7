"""Anchors: keep the head of a log somewhere else, and a log cut short or rewritten is caught.

The chain alone catches damage (a changed byte, a lost record in the middle) but not a
log cut at a record boundary: what is left is a shorter valid chain. An anchor taken earlier
(with a key, so that nobody without it can forge one) catches both that and a rewritten log
whose chain was recomputed.
"""
import json
import os
import tempfile

import agentmesh

wf = agentmesh.Workflow.from_dict({"name": "ledger", "nodes": [
    {"id": "charge", "type": "agent", "agent": "payments"},
    {"id": "receipt", "type": "agent", "agent": "mailer", "after": ["charge"]},
]})

# The key material comes from outside the log's machine (a secret store, an environment
# variable); it is never logged nor shown in an error.
key = os.environ.get("AGENTMESH_ANCHOR_KEY", "example key material, use 32+ random bytes")

with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)
    mesh.add_agent("payments", lambda act: {"charged": 42})
    mesh.add_agent("mailer", lambda act: {"sent": True})
    r = mesh.run(wf, run_id="order-17")
    assert r.log_path is not None

    a = agentmesh.anchor(r.log_path, key=key)
    print("anchor:", {k: (v[:12] + "…" if k in ("head", "mac") else v) for k, v in a.items()})
    stored = json.dumps(a)  # store it elsewhere: another machine, a database, a ticket

    print("intact:", agentmesh.verify_anchor(r.log_path, stored, key=key)["finished"])

    # Someone cuts the last two records: the chain alone still verifies...
    with open(r.log_path, "rb") as f:
        records = f.readlines()
    with open(r.log_path, "wb") as f:
        f.writelines(records[:-2])
    report = agentmesh.check_log(r.log_path)  # read-only; verify_log would also repair a torn tail
    print("check_log after the cut:", report["events"], "events, torn at", report["tornAt"])

    # ...the anchor does not.
    try:
        agentmesh.verify_anchor(r.log_path, stored, key=key)
    except agentmesh.LogTruncatedError as e:
        print(f"{e.code}: field {e.field}, expected {e.expected}, found {e.found}")

    # A forged anchor (the attacker rewrote the anchor store too: the cut log's own head with
    # the old MAC, since a new MAC needs the key) fails its MAC.
    forged = dict(agentmesh.anchor(r.log_path), mac=a["mac"])
    try:
        agentmesh.verify_anchor(r.log_path, forged, key=key)
    except agentmesh.LogHeadMismatchError as e:
        print(f"{e.code}: field {e.field}")
