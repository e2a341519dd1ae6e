"""How onnx.run_session splits a batch into model calls (length_groups): the cheapest calls
under its cost model, every text in exactly one, and the same vectors as one text at a time."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.embedding.onnx import CALL_TOKENS, MAX_CALL_TOKENS, length_groups, run_session


def cost(groups: list[list[int]], lengths: list[int]) -> int:
    return sum(CALL_TOKENS + len(g) * max(lengths[i] for i in g) for g in groups)


def allowed(groups: list[list[int]], lengths: list[int]) -> bool:
    return all(
        len(g) == 1 or len(g) * max(lengths[i] for i in g) <= MAX_CALL_TOKENS for g in groups
    )


def cheapest_by_brute_force(lengths: list[int]) -> int:
    """Every split of the length-sorted texts into consecutive runs."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = None
    for cuts in itertools.product((False, True), repeat=max(0, len(order) - 1)):
        groups, current = [], [order[0]]
        for index, cut in zip(order[1:], cuts, strict=True):
            if cut:
                groups.append(current)
                current = []
            current.append(index)
        groups.append(current)
        if allowed(groups, lengths) and (best is None or cost(groups, lengths) < best):
            best = cost(groups, lengths)
    assert best is not None
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=2, max_value=256), min_size=1, max_size=9))
def test_groups_hold_every_text_once_and_cost_least(lengths):
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert allowed(groups, lengths)
    assert cost(groups, lengths) == cheapest_by_brute_force(lengths)


def test_texts_of_one_length_share_calls_up_to_the_token_bound():
    groups = length_groups([32] * 40)
    assert [len(g) for g in groups] == [16, 16, 8]  # 16 x 32 = MAX_CALL_TOKENS


def test_a_short_text_is_not_padded_to_a_long_one():
    assert sorted(map(sorted, length_groups([300, 12, 14, 280]))) == [[0], [1, 2], [3]]


def test_no_texts_no_calls():
    assert length_groups([]) == []


class CountingSession:
    """Stands in for the ONNX session: a row's vector is a function of its unpadded tokens."""

    def __init__(self) -> None:
        self.widths: list[tuple[int, int]] = []

    def run(self, _outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        self.widths.append(ids.shape)
        vectors = np.zeros((len(ids), 384), dtype=np.float32)
        vectors[:, 0] = (ids * mask).sum(axis=1)
        vectors[:, 1] = mask.sum(axis=1)
        return [vectors]


class Encoding:
    def __init__(self, ids: list[int], width: int) -> None:
        self.ids = ids + [0] * (width - len(ids))
        self.attention_mask = [1] * len(ids) + [0] * (width - len(ids))
        self.type_ids = [0] * width


class WordTokenizer:
    """Pads to the batch's longest on the right, as the model's tokenizer is set up to."""

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        ids = [[len(word) for word in text.split()] + [1] for text in texts]
        width = max(map(len, ids))
        return [Encoding(row, width) for row in ids]


def test_rows_come_back_in_input_order_from_calls_cut_to_their_own_longest():
    texts = ["a " * 60, "bb cc", "d", "eee " * 3, "ffff " * 58]
    session = CountingSession()
    got = run_session(session, WordTokenizer(), texts)
    for text, row in zip(texts, got, strict=True):
        alone = run_session(CountingSession(), WordTokenizer(), [text])[0]
        np.testing.assert_array_equal(row, alone)
    assert len(session.widths) == 2  # the three short texts together, the two long ones
    assert sorted(width for _, width in session.widths) == [4, 61]
