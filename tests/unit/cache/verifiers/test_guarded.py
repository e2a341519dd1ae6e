"""The guarded verifier: a veto rejects before the model runs; the model's bar decides the
rest; it loads from the same ONNX file as `crossenc` and is chosen by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.cache.config import GUARDED_MIN_SIMILARITY, Settings
from services.cache.server import load_verifier
from services.cache.verifiers import GuardedVerifier, VetoVerifier, build_verifier
from services.cache.verifiers.crossenc import CrossEncoder, CrossEncoderVerifier, VerifierFileError
from services.cache.verifiers.train_crossenc import set_metadata
from services.cache.verify import Pair, ScoresInBatches
from shared.settings import SettingsError
from tests.unit.cache.test_verify_crossenc import tiny_model


def pair(query: str, candidate: str) -> Pair:
    return Pair(query, candidate, 0.9, "ns")


def counted(path: Path) -> tuple[GuardedVerifier, list[list[tuple[str, str]]]]:
    model = CrossEncoder(path)
    calls: list[list[tuple[str, str]]] = []
    scores = model.scores

    def counting(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        calls.append(list(pairs))
        return scores(pairs)

    model.scores = counting  # type: ignore[method-assign]
    return GuardedVerifier(CrossEncoderVerifier(model)), calls


def test_a_vetoed_pair_is_rejected_and_never_scored(tmp_path: Path) -> None:
    verifier, calls = counted(tiny_model(tmp_path / "m.onnx"))
    assert isinstance(verifier, ScoresInBatches)
    lookalike = pair("Book a table for eight at 8 am", "Book a table for eight at 8 pm")
    paraphrase = pair("Book a table for eight at 8 p.m.", "Book a table for eight at 8 pm")
    verifier.prepare([lookalike, paraphrase])
    assert calls == [[(paraphrase.query, paraphrase.candidate)]]
    verdict = verifier.verify(lookalike)
    assert not verdict.accepted and verdict.vetoed and verdict.reason == "time"
    assert verifier.verify(paraphrase).accepted  # the tiny model: 4+ stored tokens pass
    assert len(calls) == 1  # verify read what prepare scored


def test_the_models_bar_decides_what_no_veto_names(tmp_path: Path) -> None:
    verifier, _ = counted(tiny_model(tmp_path / "m.onnx"))
    short = pair("Where is it?", "Where?")  # 2 stored tokens: p < 0.5
    assert verifier.vetoed(short) == ""
    verdict = verifier.verify(short)
    assert not verdict.accepted and not verdict.vetoed
    assert verifier.verify(pair("same", "same")).accepted
    assert verifier.feedback_scale.startswith("guarded:")
    assert verifier.calibrator is verifier.model.calibrator


def test_built_by_name_at_the_bar_its_file_names(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx", threshold=0.9)
    set_metadata(path, {"guarded_threshold": "0.2", "guarded_min_similarity": "0.5"})
    verifier = build_verifier("guarded", crossenc_path=path)
    assert isinstance(verifier, GuardedVerifier)
    assert verifier.calibrator.threshold("ns") == pytest.approx(0.2)
    assert verifier.model.model.info.guarded_min_similarity == 0.5
    # "where [SEP]": p = 0.12, under 0.2; "where now ? [SEP]": p = 0.5, over it, under 0.9.
    assert not verifier.verify(pair("Where is it", "Where")).accepted
    assert verifier.verify(pair("Where is it now?", "Where now?")).accepted


def test_a_file_without_the_guarded_bar_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(VerifierFileError, match=r"m\.onnx.*guarded_threshold"):
        build_verifier("guarded", crossenc_path=tiny_model(tmp_path / "m.onnx"))


def test_a_bad_file_stops_the_service_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x00" * 64)
    settings = Settings.from_env(
        {"SLUICE_CACHE_VERIFY": "guarded", "SLUICE_CACHE_CROSSENC_MODEL": str(bad)}
    )
    with pytest.raises(SettingsError, match=r"SLUICE_CACHE_CROSSENC_MODEL.*corrupt\.onnx"):
        load_verifier(settings)


def test_guarded_reads_from_the_floor_its_shipped_file_was_tuned_behind() -> None:
    settings = Settings.from_env({"SLUICE_CACHE_VERIFY": "guarded"})
    assert settings.min_similarity == GUARDED_MIN_SIMILARITY
    assert Settings.from_env({"SLUICE_CACHE_VERIFY": "rules"}).min_similarity == 0.90
    verifier = load_verifier(settings)
    assert isinstance(verifier, GuardedVerifier)
    info = verifier.model.model.info
    assert info.guarded_min_similarity == GUARDED_MIN_SIMILARITY
    assert info.guarded_threshold is not None and 0.0 <= info.guarded_threshold < 1.0
    lookalike = Pair("Book a table for 8 am", "Book a table for 8 pm", 0.95, "ns")
    verdict = verifier.verify(lookalike)
    assert not verdict.accepted and verdict.vetoed


def test_the_default_is_the_vetoes_alone_at_the_old_cosine() -> None:
    settings = Settings.from_env({})
    assert settings.verify == "vetoes"
    assert settings.min_similarity == 0.90
    verifier = load_verifier(settings)
    assert isinstance(verifier, VetoVerifier)
    assert verifier.feedback_scale == "cosine"
    for asked, stored in (
        ("Book a table for 8 am", "Book a table for 8 pm"),
        ("How do I turn the VPN off?", "How do I turn the VPN on?"),
        ("Convert 100 euros to dollars", "Convert 100 dollars to euros"),
        (
            "Which vitamins should I avoid while pregnant?",
            "Which vitamins should I take while pregnant?",
        ),
    ):
        verdict = verifier.verify(Pair(asked, stored, 0.95, "ns"))
        assert not verdict.accepted and verdict.vetoed, asked
    # What no veto names passes: the cache's cosine threshold has already decided.
    assert verifier.verify(
        Pair("Book a table for 8 p.m.", "Book a table for 8 pm", 0.95, "ns")
    ).accepted
    assert verifier.verify(
        Pair("How can I switch the VPN on?", "How do I turn the VPN on?", 0.9, "ns")
    ).accepted


def test_the_vetoes_turn_away_only_what_rules_would_serve_or_fewer() -> None:
    """Every veto of `rules`' own checks is a veto here too, so the default never serves a pair
    the old default turned away on a check."""
    rules, vetoes = build_verifier("rules"), build_verifier("vetoes")
    pairs = [
        ("What is the capital of France?", "What is the capital of Germany?"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
        ("How far is 5 km in miles?", "How far is 7 km in miles?"),
        ("What happened in 1999?", "What happened in 2001?"),
    ]
    for asked, stored in pairs:
        pair_ = Pair(asked, stored, 0.95, "ns")
        if not rules.verify(pair_).accepted:
            assert not vetoes.verify(pair_).accepted, asked
