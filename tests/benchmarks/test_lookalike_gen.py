"""The checked-in look-alike set: its size and kinds, its hash split, that the generator
reproduces it byte for byte, and the workload the cache benchmark makes of it."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.common import DEFAULT_DATA, is_fit
from benchmarks.lookalike_gen import LookalikePair, as_spaces, build, load_pairs, template_pairs
from services.cache.verifiers.perturb_tables import KINDS


@pytest.fixture(scope="module")
def pairs() -> list[LookalikePair]:
    return load_pairs()


def test_at_least_400_pairs_over_every_kind_with_both_labels_in_both_halves(
    pairs: list[LookalikePair],
) -> None:
    assert len(pairs) >= 400
    counts = Counter((p.kind, p.label, p.half) for p in pairs)
    for kind in KINDS:
        for label in ("must_miss", "must_hit"):
            for half in ("fit", "held"):
                assert counts[(kind, label, half)] >= 5, (kind, label, half)
    assert {p.source for p in pairs} == {"template", "qqp", "banking77", "clinc150"}


def test_the_half_is_the_hash_of_the_pair(pairs: list[LookalikePair]) -> None:
    for pair in pairs:
        assert pair.half == ("fit" if is_fit(f"{pair.stored}\n{pair.asked}") else "held")
    assert len({(p.stored, p.asked) for p in pairs}) == len(pairs)
    assert all(p.stored != p.asked for p in pairs)


def test_low_cosine_paraphrases_are_in_the_set(pairs: list[LookalikePair]) -> None:
    found = {(p.stored, p.asked): p.label for p in pairs}
    assert found[("How do I log out of all sessions?", "Sign me out of every device")] == "must_hit"
    assert found[("Book a table for 8 pm", "Book a table for 8 am")] == "must_miss"


def test_templates_reproduce_the_file(pairs: list[LookalikePair]) -> None:
    assert sorted(template_pairs(), key=repr) == sorted(
        (p for p in pairs if p.source == "template"), key=repr
    )


@pytest.mark.skipif(not DEFAULT_DATA.exists(), reason="needs ../shared/data")
def test_the_generator_reproduces_the_whole_file(pairs: list[LookalikePair]) -> None:
    assert build(DEFAULT_DATA) == pairs


def test_the_workload_serves_only_must_hit_pairs(pairs: list[LookalikePair]) -> None:
    spaces = as_spaces(pairs)
    for pair, space in zip(pairs, spaces, strict=True):
        (label,) = space.entries.values()
        (probe,) = space.probes
        assert space.entries == {pair.stored: label}
        assert probe.text == pair.asked and probe.fit == (pair.half == "fit")
        assert probe.expected == (label if pair.must_hit else None)
