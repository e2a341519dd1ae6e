"""The training-only QQP rows: outside the evaluated prefix, fit half only, no evaluated text."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.cache_quality_data import _qqp, evaluated_texts, extra_qqp, select_extra_qqp
from benchmarks.common import hash_order, is_fit
from services.cache.verifiers.replay import Probe, Space

Row = dict[str, object]


def row(a: str, b: str, label: int = 1) -> Row:
    return {"text_a": a, "text_b": b, "label": label}


def fit_rows(count: int, fit: bool, prefix: str) -> list[Row]:
    """`count` rows whose pair hash puts them in the fit half (or, fit=False, held back)."""
    rows: list[Row] = []
    i = 0
    while len(rows) < count:
        a, b = f"{prefix} a {i}", f"{prefix} b {i}"
        if is_fit(f"{a}\n{b}") == fit:
            rows.append(row(a, b, i % 2))
        i += 1
    return rows


def test_only_fit_half_rows_after_the_evaluated_prefix_are_taken() -> None:
    evaluated = fit_rows(3, True, "evaluated")
    held, fit = fit_rows(4, False, "held"), fit_rows(4, True, "fit")
    rows = evaluated + [r for pair in zip(held, fit, strict=True) for r in pair]

    spaces = select_extra_qqp(rows, skip=3, exclude=set(), count=100)

    assert [s.probes[0].text for s in spaces] == [r["text_b"] for r in fit]
    for space, source in zip(spaces, fit, strict=True):
        assert space.entries == {source["text_a"]: space.key}
        (probe,) = space.probes
        assert probe.fit  # training pairs: labelled_pairs only collects fit probes
        assert probe.expected == (space.key if source["label"] == 1 else None)


def test_rows_sharing_either_text_with_an_evaluated_text_are_excluded() -> None:
    fit = fit_rows(4, True, "fit")
    exclude = {str(fit[0]["text_a"]), str(fit[2]["text_b"])}

    spaces = select_extra_qqp(fit, skip=0, exclude=exclude, count=100)

    assert [s.probes[0].text for s in spaces] == [fit[1]["text_b"], fit[3]["text_b"]]


def test_count_caps_the_rows_taken() -> None:
    fit = fit_rows(5, True, "fit")
    assert len(select_extra_qqp(fit, skip=0, exclude=set(), count=2)) == 2
    assert len(select_extra_qqp(fit, skip=0, exclude=set(), count=0)) == 0


def test_evaluated_texts_cover_both_halves_stored_and_looked_up() -> None:
    workloads = {
        "d": [
            Space("ns", {"stored": "A"}, [Probe("fit q", "A", True), Probe("held q", None, False)])
        ]
    }
    assert evaluated_texts(workloads) == {"stored", "fit q", "held q"}


def test_extra_qqp_never_shares_a_text_with_the_evaluated_pairs(tmp_path: Path) -> None:
    rows = fit_rows(6, True, "p") + fit_rows(6, False, "q")
    rows.sort(key=lambda r: hash_order(f"{r['text_a']}\n{r['text_b']}"))
    # A fit-half row that reuses a text of an evaluated pair must not be trained on; it sorts
    # after the evaluated prefix, so only the text rule can keep it out.
    reused, last = str(rows[0]["text_b"]), hash_order(f"{rows[3]['text_a']}\n{rows[3]['text_b']}")
    new = next(
        f"new {i}"
        for i in range(1000)
        if is_fit(f"{reused}\nnew {i}") and hash_order(f"{reused}\nnew {i}") > last
    )
    (tmp_path / "qqp-gptcache").mkdir()
    (tmp_path / "qqp-gptcache" / "similiar_qqp_full.json").write_text(
        json.dumps([*rows, row(reused, new)])
    )
    workloads = {"qqp": _qqp(tmp_path, 4)}
    assert reused in evaluated_texts(workloads)

    spaces = extra_qqp(tmp_path, workloads, skip=4, count=100)

    evaluated = evaluated_texts(workloads)
    trained = {t for s in spaces for t in (*s.entries, *(p.text for p in s.probes))}
    assert spaces and not trained & evaluated
    assert all(is_fit(f"{next(iter(s.entries))}\n{s.probes[0].text}") for s in spaces)
    assert new not in trained
    assert extra_qqp(tmp_path, workloads, skip=4, count=0) == []
