"""Returning LLM responses: keep the text, the finish reason and the usage; never the
response's id or timestamp, which differ on every call and so make every run's log (and
fingerprint) different.

`FakeOpenAI` stands in for `openai.OpenAI` (same attribute names, pydantic-like objects with
`model_dump`), so the script runs offline; with the real client the agents are the same.
"""
import itertools
import tempfile
import time
from typing import Any, Dict, List

import agentmesh
from agentmesh import Activation, Output


class Model:
    """What openai's response objects have in common: attributes and model_dump."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __getattr__(self, name: str) -> Any:  # the fields are set dynamically, as in pydantic
        raise AttributeError(name)

    def model_dump(self, mode: str = "python") -> Dict[str, Any]:
        return {k: v.model_dump(mode) if isinstance(v, Model) else
                [x.model_dump(mode) for x in v] if isinstance(v, list) else v
                for k, v in self.__dict__.items()}


class ChatCompletion(Model): ...
class Choice(Model): ...
class ChatCompletionMessage(Model): ...
class CompletionUsage(Model): ...


class FakeOpenAI:
    ids = itertools.count(1)

    def __init__(self) -> None:
        self.chat = Model(completions=Model(create=self.create))

    def create(self, model: str, messages: List[Dict[str, str]], **params: Any) -> ChatCompletion:
        text = f"Bees eat nectar. (asked: {messages[-1]['content']})"
        return ChatCompletion(
            id=f"chatcmpl-{next(self.ids)}", created=int(time.time()), model=model,  # vary
            choices=[Choice(index=0, finish_reason="stop",
                            message=ChatCompletionMessage(role="assistant", content=text))],
            usage=CompletionUsage(prompt_tokens=9, completion_tokens=7, total_tokens=16),
        )


client = FakeOpenAI()  # openai.OpenAI(base_url=..., api_key=...)
wf = agentmesh.Workflow.from_dict({"name": "ask", "nodes": [
    {"id": "answer", "type": "agent", "agent": "llm"}]})


def ask(act: Activation) -> Any:
    return client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": act.input["question"]}],
        temperature=0, seed=act.seed % 2**31)


def answer(act: Activation) -> Output:
    # The pattern: the fields the workflow needs, and the SDK's usage object as it comes (the
    # core reads its token counts; usage=r, the whole response, would also record r.model).
    r = ask(act)
    choice = r.choices[0]
    return Output({"text": choice.message.content, "finish": choice.finish_reason},
                  usage=r.usage)


def whole_message(act: Activation) -> Any:
    return ask(act).choices[0].message  # an SDK object, not JSON data


def dumped(act: Activation) -> Any:
    return ask(act).model_dump(mode="json")  # JSON data, but with `id` and `created`


def fingerprints(agent: Any) -> List[str]:
    """The same run twice (in two directories), with `agent` as the LLM agent."""
    prints = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as logs:
            mesh = agentmesh.Mesh(log_dir=logs)
            mesh.add_agent("llm", agent)
            r = mesh.run(wf, input={"question": "What do bees eat?"}, seed=1)
            prints.append(r.fingerprint[:16])
    return prints


a, b = fingerprints(answer)
print("fields and usage:      same log twice:", a == b, a)
with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)
    mesh.add_agent("llm", answer)
    r = mesh.run(wf, input={"question": "What do bees eat?"}, seed=1)
    print("recorded usage:       ", [e["data"]["usage"] for e in agentmesh.read_log(r.log_path or "")
                                     if e["type"] == "agentCompleted"][0])
a, b = fingerprints(dumped)
print("model_dump(mode=json): same log twice:", a == b)
try:
    fingerprints(whole_message)
except agentmesh.AgentFailedError as e:
    print("the message object:   ", e.__cause__)
