"""Long prompts through a real cache process with the real MiniLM model: a document longer than
the model's window, followed by different questions, never serves one question's answer to
another; the same question re-asked, or reworded after the same document, still hits."""

from __future__ import annotations

import subprocess

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from tests.integration.test_cache_service import CONTEXT, SAMPLING, running

pytestmark = pytest.mark.integration
__all__ = ["running"]  # the fixture, imported for pytest

# The issue's example: 40 clauses of a contract (~1,000 word pieces, four windows' worth).
CONTRACT = "\n".join(
    f"Clause {n}. The supplier shall deliver the goods listed in schedule {n} within {n + 2} "
    f"business days of the purchase order, at its own cost and risk, to the address the buyer "
    f"names in writing."
    for n in range(1, 41)
)
DELIVERY = "What is the delivery time in clause 3?"
DELIVERY_REWORDED = "What is the delivery time stated in clause 3?"
MOBY_DICK = "Who wrote Moby-Dick?"


def turn(document: str, question: str, where: str) -> str:
    if where == "end":
        return f"{document}\n\n{question}"
    if where == "start":
        return f"{question}\n\n{document}"
    lines = document.splitlines()
    return "\n".join([*lines[:20], question, *lines[20:]])


def user(text: str) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]


def test_a_long_shared_document_never_serves_another_question(
    running: tuple[subprocess.Popen[bytes], grpc.Channel],
) -> None:
    _, channel = running
    stub = pb_grpc.SemanticCacheServiceStub(channel)
    for length in (3, 10, 40):  # clauses: below, about at, and well above the window
        document = "\n".join(CONTRACT.splitlines()[:length])
        for where in ("end", "start", "middle"):
            stored = stub.Store(
                pb.StoreRequest(
                    context=CONTEXT,
                    model_class="small",
                    messages=user(turn(document, DELIVERY, where)),
                    sampling=SAMPLING,
                    content=f"{length + 2} business days.",
                    model="gpt-4o-mini",
                ),
                timeout=30,
            )

            def lookup(
                question: str, where: str = where, document: str = document
            ) -> pb.LookupResponse:
                asked = pb.LookupRequest(
                    context=CONTEXT,
                    model_class="small",
                    messages=user(turn(document, question, where)),
                    sampling=SAMPLING,
                    allow_semantic=True,
                )
                reply: pb.LookupResponse = stub.Lookup(asked, timeout=30)
                return reply

            case = f"{length} clauses, question at the {where}"
            assert lookup(MOBY_DICK).kind == pb.HIT_KIND_MISS, case
            again = lookup(DELIVERY)
            assert (again.kind, again.entry_id) == (pb.HIT_KIND_EXACT, stored.entry_id), case
            if where == "end":
                reworded = lookup(DELIVERY_REWORDED)
                assert reworded.kind == pb.HIT_KIND_SEMANTIC, case
                assert reworded.entry_id == stored.entry_id, case
