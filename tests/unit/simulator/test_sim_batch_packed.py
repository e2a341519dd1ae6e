"""Packed prompts: a JSON array of the answers each request would get alone, and the markers
that break the array on purpose."""

from __future__ import annotations

import orjson
import pytest

from services.batcher.packing import PackItem, pack_turns, split_reply
from services.simulator.packed import packed_requests
from tests.unit.simulator.helpers import chat, make_client

SYSTEM = "You are a terse assistant."


def packed_body(requests: list[str], **extra: object) -> dict[str, object]:
    items = [PackItem(str(n), text) for n, text in enumerate(requests, 1)]
    turns = pack_turns(SYSTEM, items)
    messages = [{"role": t.role.value, "content": t.content} for t in turns]
    return {"model": "gpt-4o", "messages": messages, **extra}


async def packed_reply(requests: list[str], **extra: object) -> tuple[str, str]:
    async with make_client() as client:
        response = await client.post(
            "/us-east/v1/chat/completions", json=packed_body(requests, **extra)
        )
    choice = response.json()["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


async def test_each_packed_answer_is_what_the_request_gets_alone():
    requests = ["What is the capital of France?", "Explain DNS briefly"]
    content, finish = await packed_reply(requests)
    async with make_client() as client:
        alone = [(await chat(client, text)).json() for text in requests]
    assert finish == "stop"
    split = split_reply(content, ["1", "2"])
    assert not split.fallback and not split.problem
    assert [split.answers["1"], split.answers["2"]] == [
        a["choices"][0]["message"]["content"] for a in alone
    ]


@pytest.mark.parametrize(
    ("marker", "problem"),
    [
        ("[sim:pack-drop]", "no answer for 1 of 2"),
        ("[sim:pack-extra]", "not asked"),
        ("[sim:pack-dup]", "twice"),
        ("[sim:pack-bad]", "not valid JSON"),
    ],
)
async def test_markers_break_the_reply_in_the_way_they_name(marker: str, problem: str):
    content, _ = await packed_reply(["What is the capital of France?", f"Explain DNS {marker}"])
    split = split_reply(content, ["1", "2"])
    assert problem in split.problem


async def test_a_packed_reply_past_max_tokens_is_cut_and_finishes_with_length():
    content, finish = await packed_reply(["Explain DNS", "Explain TCP"], max_tokens=20)
    assert finish == "length"
    assert split_reply(content, ["1", "2"], complete=finish == "stop").fallback == ("1", "2")


def test_only_the_packed_shape_is_recognised():
    assert packed_requests("just a question") is None
    assert packed_requests("x\nREQUESTS:\nnot json") is None
    assert packed_requests('x\nREQUESTS:\n[{"id": 1, "request": "q"}]') is None
    listing = orjson.dumps([{"id": "a", "request": "q"}]).decode()
    assert packed_requests(f"x\nREQUESTS:\n{listing}") == [("a", "q")]
