"""Human approval: the run stops "waiting" at a human node; another process resumes it with
the decision. Run without arguments; it starts the second process itself.
"""
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional

import agentmesh
from agentmesh import Activation

wf = agentmesh.Workflow.from_dict({"name": "approval", "nodes": [
    {"id": "draft", "type": "agent", "agent": "writer"},
    {"id": "approve", "type": "human", "prompt": "Publish this draft?", "after": ["draft"]},
    {"id": "decide", "type": "branch", "after": ["approve"],
     "cases": [{"when": {"path": "/outputs/approve/approved", "eq": True}, "goto": "publish"}],
     "default": "archive"},
    {"id": "publish", "type": "tool", "tool": "cms", "after": ["approve"]},
    {"id": "archive", "type": "tool", "tool": "cms", "after": ["approve"]},
]})


def make_mesh(log_dir: Optional[str] = None) -> agentmesh.Mesh:
    """Every process that runs or resumes the workflow registers the same agents and tools."""
    mesh = agentmesh.Mesh(log_dir=log_dir)

    @mesh.agent("writer")
    def writer(act: Activation) -> Dict[str, Any]:
        return {"text": f"Release notes for {act.input['version']}"}

    @mesh.tool("cms")
    def cms(act: Activation) -> Dict[str, Any]:
        return {"done": act.node, "by": act.deps["approve"].get("by")}

    return mesh


if sys.argv[1:2] == ["--approve"]:
    # The second process: knows only the log path and the run id.
    log_path, run_id = sys.argv[2], sys.argv[3]
    done = make_mesh().resume(log_path, approvals={"approve": {"approved": True, "by": "dana"}},
                              run_id=run_id)  # run_id: refuse a log of another run
    print(f"  second process: {done.status} {done.output}")
    sys.exit(0)

with tempfile.TemporaryDirectory() as logs:
    first = make_mesh(logs).run(wf, input={"version": "0.1"}, run_id="release-0.1")
    print(first.status, [(a.node, a.prompt) for a in first.waiting])
    assert first.log_path is not None  # the log is on disk; this process could exit here

    try:  # an approval must name a waiting human node; nothing is recorded otherwise
        make_mesh().resume(first.log_path, approvals={"aprove": True})
    except agentmesh.InvalidArgumentError as e:
        print(e)

    sys.stdout.flush()  # our lines before the child's
    subprocess.run([sys.executable, __file__, "--approve", first.log_path, first.run_id], check=True)
    print("finished:", agentmesh.verify_log(first.log_path)["finished"])
