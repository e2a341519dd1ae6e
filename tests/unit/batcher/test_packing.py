"""Packed prompts and splitting their replies: any doubt sends requests to their own calls."""

from __future__ import annotations

import orjson
import pytest

from services.batcher.packing import (
    INSTRUCTION,
    REQUESTS_MARKER,
    PackItem,
    allocate,
    pack_turns,
    split_reply,
)
from shared.chat import Role

IDS = ["1", "2", "3"]


def reply(*pairs: tuple[object, object]) -> str:
    return orjson.dumps([{"id": i, "answer": a} for i, a in pairs]).decode()


def test_the_system_prompt_is_sent_once_and_the_requests_as_a_json_listing():
    system, user = pack_turns("Long shared prompt", [PackItem("1", "a"), PackItem("2", 'b "q"')])
    assert (system.role, system.content) == (Role.SYSTEM, "Long shared prompt")
    assert user.role is Role.USER and user.content.startswith(INSTRUCTION)
    listing = user.content.split(f"\n{REQUESTS_MARKER}\n", 1)[1]
    assert orjson.loads(listing) == [{"id": "1", "request": "a"}, {"id": "2", "request": 'b "q"'}]


def test_a_complete_reply_is_split_by_id_in_any_order():
    split = split_reply(reply(("3", "c"), ("1", "a"), ("2", "b")), IDS)
    assert split.answers == {"1": "a", "2": "b", "3": "c"}
    assert split.fallback == () and split.problem == ""


def test_a_code_fence_and_numeric_ids_are_tolerated():
    fenced = "```json\n" + reply((1, "a"), (2, "b"), (3, "c")) + "\n```"
    assert split_reply(fenced, IDS).answers == {"1": "a", "2": "b", "3": "c"}


def test_missing_ids_fall_back_alone_and_the_rest_are_used():
    split = split_reply(reply(("1", "a"), ("3", "c")), IDS)
    assert split.answers == {"1": "a", "3": "c"}
    assert split.fallback == ("2",) and "1 of 3" in split.problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json at all", "not valid JSON"),
        ('{"id": "1", "answer": "a"}', "not a JSON array"),
        ('["a", "b", "c"]', "not an object"),
        (reply(("1", 5), ("2", "b"), ("3", "c")), "string id and answer"),
        (reply(("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")), "not asked"),
        (reply(("1", "a"), ("1", "b"), ("3", "c")), "twice"),
        (reply(("1", "a"), ("2", "b"))[:-5], "not valid JSON"),
    ],
)
def test_any_structural_mismatch_distrusts_the_whole_reply(text: str, problem: str):
    split = split_reply(text, IDS)
    assert split.answers == {} and split.fallback == tuple(IDS)
    assert problem in split.problem


def test_a_reply_cut_short_is_never_trusted_even_if_it_parses():
    split = split_reply(reply(("1", "a")), IDS, complete=False)
    assert split.answers == {} and split.fallback == tuple(IDS)


@pytest.mark.parametrize(
    ("total", "weights"), [(100, [1, 1, 1]), (7, [5, 0, 2]), (0, [3, 4]), (10, [0, 0]), (1, [1])]
)
def test_allocate_splits_exactly_in_proportion(total: int, weights: list[int]):
    shares = allocate(total, weights)
    assert sum(shares) == total and len(shares) == len(weights)
    assert all(share >= 0 for share in shares)
    if sum(weights):
        for share, weight in zip(shares, weights, strict=True):
            assert abs(share - total * weight / sum(weights)) < 1
