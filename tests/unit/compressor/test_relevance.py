"""Hybrid relevance: BM25, tie-aware ranks, reciprocal rank fusion, windows, neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from services.compressor.relevance import (
    EMBED_WINDOW_CHARS,
    RRF_K,
    average_ranks,
    bm25,
    content_tokens,
    fused,
    neighbour_bonus,
    windows,
)


def test_content_tokens_drop_stop_words_and_keep_repeats() -> None:
    assert content_tokens("What is the capital of France? France!") == [
        "capital",
        "france",
        "france",
    ]


def test_bm25_prefers_the_chunk_with_the_rare_question_word() -> None:
    chunks = [
        "The contract covers the licence of software.",
        "The contract covers payment terms.",
        "Vericel shall indemnify the licensee under the contract.",
    ]
    scores = bm25("Who must indemnify under the contract?", chunks)

    # "contract" is in every chunk and weighs little; "indemnify" is in one.
    assert int(np.argmax(scores)) == 2
    assert scores[0] == pytest.approx(scores[1], rel=0.2)


def test_bm25_saturates_repeated_words() -> None:
    once, thrice = bm25("licence", ["licence granted here", "licence licence licence granted"])

    assert thrice > once
    assert thrice < 3 * once


def test_bm25_of_a_question_without_content_words_is_zero() -> None:
    assert bm25("What is it?", ["anything at all", "more text"]).tolist() == [0.0, 0.0]


def test_average_ranks_share_ties() -> None:
    ranks = average_ranks(np.array([0.5, 0.9, 0.5, 0.1, 0.5]))

    assert ranks.tolist() == [2.0, 0.0, 2.0, 4.0, 2.0]


def test_fusion_rewards_agreement_over_one_list_s_top() -> None:
    dense = np.array([0.90, 0.80, 0.10, 0.20])
    lexical = np.array([0.00, 5.00, 6.00, 0.00])

    scores = fused(dense, lexical)

    # Chunk 1 is second in both lists; chunks 0 and 2 top one list and trail the other.
    assert int(np.argmax(scores)) == 1
    assert scores[1] == pytest.approx(2 / (RRF_K + 1))


def test_fusion_does_not_depend_on_the_scale_of_either_scoring() -> None:
    dense = np.array([0.3, 0.1, 0.2])
    lexical = np.array([1.0, 3.0, 2.0])

    assert fused(dense, lexical).tolist() == fused(100 * dense, lexical / 7).tolist()


def test_long_chunks_are_split_into_windows_at_line_breaks() -> None:
    line = "word " * 50 + "\n"
    text = line * 10

    parts = windows(text)

    assert len(parts) > 1
    assert all(len(part) <= EMBED_WINDOW_CHARS for part in parts)
    assert "".join(parts) == text
    assert windows("short") == ["short"]


def test_neighbour_bonus_stays_within_a_turn() -> None:
    base = np.array([1.0, 0.0, 0.0])
    # Chunks 0 and 1 are adjacent in turn 0; chunk 2 is the next position but in turn 1.
    bonus = neighbour_bonus(base, [(0, 4), (0, 5), (1, 6)])

    assert bonus[1] > 0
    assert bonus[2] == 0
    assert bonus[0] == 0
