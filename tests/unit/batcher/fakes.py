"""A fake Batch API provider with remote state that outlives a "crashed" runner."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import orjson

from services.batcher.provider_batches import ProviderBatch, ProviderError
from services.dispatcher.endpoints import Endpoint
from shared.pricing import TokenUsage

ENDPOINT = Endpoint(
    name="sim-us-east",
    provider="simulator",
    region="us-east",
    base_url="http://sim/us-east/v1",
    api_key_env="",
    models=frozenset({"gpt-4o"}),
)


class SimulatedCrash(Exception):
    """The process dies right after the named provider call took effect."""


def price(model: str, region: str, usage: TokenUsage, batch: bool) -> int:
    full = usage.input_tokens * 10 + usage.output_tokens * 40
    return full // 2 if batch else full


@dataclass
class Remote:
    """What the provider holds; shared by the provider objects of successive runner lives."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    batches: dict[str, dict[str, object]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def count(self, name: str) -> int:
        return self.calls.count(name)


def answer_lines(content: bytes) -> bytes:
    lines = []
    for raw in content.splitlines():
        request = orjson.loads(raw)
        prompt = request["body"]["messages"][-1]["content"]
        body = {
            "model": request["body"]["model"],
            "choices": [{"message": {"content": f"re: {prompt}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 3},
        }
        lines.append(
            orjson.dumps(
                {"custom_id": request["custom_id"], "response": {"status_code": 200, "body": body}}
            )
        )
    return b"\n".join(lines)


class FakeProvider:
    """Completes a batch on the polls_to_finish-th get; crash_after names a call that raises
    SimulatedCrash after taking effect; fail holds errors to raise before calls, by name."""

    def __init__(self, remote: Remote, *, crash_after: str = "", polls_to_finish: int = 1) -> None:
        self.remote = remote
        self.crash_after = crash_after
        self.polls_to_finish = polls_to_finish
        self.fail: dict[str, ProviderError] = {}
        self.fail_after: dict[str, ProviderError] = {}

    def _enter(self, name: str) -> None:
        self.remote.calls.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def _leave(self, name: str) -> None:
        if self.crash_after == name:
            self.crash_after = ""
            raise SimulatedCrash(name)
        if name in self.fail_after:
            raise self.fail_after.pop(name)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.remote.ids)}"

    async def find_file(self, endpoint: Endpoint, filename: str) -> str | None:
        self._enter("find_file")
        return next((i for i, (n, _) in self.remote.files.items() if n == filename), None)

    async def upload(self, endpoint: Endpoint, filename: str, content: bytes) -> str:
        self._enter("upload")
        file_id = self._new_id("file")
        self.remote.files[file_id] = (filename, content)
        self._leave("upload")
        return file_id

    async def find_batch(
        self, endpoint: Endpoint, job_id: str, not_before: float
    ) -> ProviderBatch | None:
        self._enter("find_batch")
        for batch_id, batch in self.remote.batches.items():
            if batch["job_id"] == job_id:
                return ProviderBatch(batch_id, str(batch["status"]))
        return None

    async def create(self, endpoint: Endpoint, file_id: str, job_id: str) -> ProviderBatch:
        self._enter("create")
        batch_id = self._new_id("batch")
        self.remote.batches[batch_id] = {
            "job_id": job_id,
            "file_id": file_id,
            "status": "in_progress",
            "polls": 0,
        }
        self._leave("create")
        return ProviderBatch(batch_id, "in_progress")

    def _view(self, batch_id: str) -> ProviderBatch:
        batch = self.remote.batches[batch_id]
        output = str(batch.get("output", ""))
        return ProviderBatch(batch_id, str(batch["status"]), output_file_id=output)

    async def get(self, endpoint: Endpoint, batch_id: str) -> ProviderBatch:
        self._enter("get")
        batch = self.remote.batches[batch_id]
        polls = int(str(batch["polls"])) + 1
        batch["polls"] = polls
        if batch["status"] == "in_progress" and polls >= self.polls_to_finish:
            _, content = self.remote.files[str(batch["file_id"])]
            output_id = self._new_id("file")
            self.remote.files[output_id] = ("output.jsonl", answer_lines(content))
            batch.update(status="completed", output=output_id)
        view = self._view(batch_id)
        self._leave("get")
        return view

    async def cancel(self, endpoint: Endpoint, batch_id: str) -> ProviderBatch:
        self._enter("cancel")
        batch = self.remote.batches[batch_id]
        if batch["status"] == "in_progress":
            batch["status"] = "cancelled"
        self._leave("cancel")
        return self._view(batch_id)

    async def content(self, endpoint: Endpoint, file_id: str) -> bytes:
        self._enter("content")
        return self.remote.files[file_id][1]
