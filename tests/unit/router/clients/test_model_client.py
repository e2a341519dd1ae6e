"""The model client's mapping: packable and logprobs on the way out, logprobs on the way back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

from sluice.batcher.v1 import batcher_service_pb2 as batcher_pb
from sluice.common.v1 import common_pb2

from services.router.clients.batchers import BatcherReplicas
from services.router.clients.model import ModelClient
from services.router.gates import LogprobSummary
from tests.unit.router.learned_rig import chat_request


@dataclass
class RecordingBatcher:
    completion: common_pb2.Completion
    seen: list[batcher_pb.ExecuteRequest] = field(default_factory=list)

    async def Execute(
        self, request: batcher_pb.ExecuteRequest, **options: Any
    ) -> batcher_pb.ExecuteResponse:
        self.seen.append(request)
        return batcher_pb.ExecuteResponse(completion=self.completion)


@dataclass
class OneReplica:
    stub: RecordingBatcher

    def ranked(self, key: bytes) -> list[tuple[str, Any]]:
        return [("127.0.0.1:1", self.stub)]


def client(completion: common_pb2.Completion) -> tuple[ModelClient, RecordingBatcher]:
    batcher = RecordingBatcher(completion)
    replicas = cast(BatcherReplicas, OneReplica(batcher))
    return ModelClient(replicas, cast(Any, None), "127.0.0.1:2"), batcher


async def call(class_changes: dict[str, Any], tier_changes: dict[int, dict[str, Any]], **done):
    chat = chat_request(class_changes, tier_changes)
    models, batcher = client(common_pb2.Completion(content="B", model="cheap", **done))
    answer = await models.call(chat, chat.model_class.tiers[0], chat.turns, time.monotonic() + 5)
    return answer, batcher.seen[0]


async def test_a_packable_class_marks_its_calls_packable() -> None:
    _, sent = await call({"packable": True}, {})
    assert sent.packable and not sent.call.logprobs
    _, plain = await call({}, {})
    assert not plain.packable


async def test_a_logprob_gate_asks_for_logprobs_and_reads_their_summary() -> None:
    tier = {0: {"gates": ["logprob"], "min_mean_logprob": -0.5}}
    answer, sent = await call(
        {"packable": True},
        tier,
        logprobs_present=True,
        mean_token_logprob=-0.25,
        min_token_logprob=-1.5,
        logprob_tokens=3,
    )
    assert sent.call.logprobs
    # A packed call's answer is shared, so it has no logprobs of this request's own.
    assert not sent.packable
    assert answer.logprobs == LogprobSummary(-0.25, -1.5, 3)


async def test_an_answer_without_logprobs_has_no_summary() -> None:
    answer, _ = await call({}, {0: {"gates": ["logprob"], "min_token_logprob": -3}})
    assert answer.logprobs is None
