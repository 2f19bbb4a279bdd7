import agentmesh

wf = agentmesh.Workflow.from_dict({"name": "hello", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["plan"]},
]})
mesh = agentmesh.Mesh()  # logs in memory; Mesh(log_dir="runs") writes runs/<run id>.jsonl

@mesh.agent("planner")
def planner(act):
    return {"steps": 2, "topic": act.input["topic"]}

@mesh.agent("writer")
def writer(act):
    return f"{act.deps['plan']['steps']} steps"

result = mesh.run(wf, input={"topic": "rust"}, seed=7)
print(result.status, result.output)
print(result.run_id, result.fingerprint)
