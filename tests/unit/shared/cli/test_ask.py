"""`sluice ask --stream` prints the streamed answer once, then the summary."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

from shared.cli import ask

ANSWER = "First paragraph.\n\nSecond paragraph.\n\nThird paragraph."


class FakeStub:
    def __init__(self, _channel: Any) -> None:
        pass

    def CompleteStream(self, request: Any, **_: Any) -> Iterator[pb.CompleteStreamResponse]:
        for piece in ("First paragraph.\n\n", "Second paragraph.\n\n", "Third paragraph."):
            yield pb.CompleteStreamResponse(delta=pb.ContentDelta(attempt=1, tier=1, text=piece))
        summary = pb.CompleteResponse(
            content=ANSWER, tier=1, model="Qwen/Qwen3-8B", region="us-east", trace_id="ab" * 16
        )
        yield pb.CompleteStreamResponse(summary=summary)


def test_stream_prints_every_paragraph_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(pb_grpc, "RouterServiceStub", FakeStub)
    args = argparse.Namespace(
        router="127.0.0.1:1",
        api_key="dev",
        prompt="Tell me three things",
        system="",
        model_class="",
        no_cache=False,
        stream=True,
        timeout=5.0,
    )

    assert ask.run_ask(args, tmp_path) == 0

    out = capsys.readouterr().out
    for paragraph in ("First paragraph.", "Second paragraph.", "Third paragraph."):
        assert out.count(paragraph) == 1, out
    assert out.index("Third paragraph.") < out.index("answered by tier 1 · Qwen/Qwen3-8B")
    assert f"trace {'ab' * 16}" in out
