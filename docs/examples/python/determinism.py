"""Determinism: agents that decide from act.input, act.deps and act.seed give the same canonical
log however long each one takes and in whichever order they finish. Unseeded randomness (or
the clock) in an output does not.
"""
import os
import random
import tempfile
import time
from typing import Any, Callable, Dict

import agentmesh
from agentmesh import Activation

wf = agentmesh.Workflow.from_dict({"name": "sampling", "nodes": [
    {"id": f"sample{i}", "type": "agent", "agent": "sampler"} for i in range(4)
] + [{"id": "pick", "type": "agent", "agent": "picker",
      "after": [f"sample{i}" for i in range(4)]}]})


def seeded(act: Activation) -> Dict[str, Any]:
    time.sleep(random.uniform(0, 0.02))  # timing varies from run to run: that is fine
    rng = random.Random(act.seed)  # the activation's seed: same run seed, same choices
    return {"temperature": round(rng.uniform(0.2, 1.0), 3), "draw": rng.randrange(100)}


def unseeded(act: Activation) -> Dict[str, Any]:
    return {"temperature": round(random.uniform(0.2, 1.0), 3)}  # differs on every run


def pick(act: Activation) -> str:
    return max(act.deps, key=lambda node: act.deps[node]["temperature"])


def run(log_dir: str, sampler: Callable[[Activation], Any], seed: int = 7) -> str:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("sampler", sampler)
    mesh.add_agent("picker", pick)
    result = mesh.run(wf, input={"prompt": "name a colour"}, seed=seed)
    return result.fingerprint


with tempfile.TemporaryDirectory() as logs:
    a = run(os.path.join(logs, "a"), seeded)
    b = run(os.path.join(logs, "b"), seeded)
    print("seeded agents, two runs, same fingerprint:", a == b)
    print("another run seed, same fingerprint:", a == run(os.path.join(logs, "c"), seeded, seed=8))
    x = run(os.path.join(logs, "x"), unseeded)
    y = run(os.path.join(logs, "y"), unseeded)
    print("unseeded random outputs, same fingerprint:", x == y)
