"""The guarded and banded verifiers: a veto rejects before the model runs; the model's bar
decides the rest (for `banded`, below 0.90 only); they load from the same ONNX file as
`crossenc` and are chosen by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.cache.config import (
    BANDED_MIN_SIMILARITY,
    DEFAULT_MIN_SIMILARITY,
    GUARDED_MIN_SIMILARITY,
    Settings,
)
from services.cache.server import load_verifier
from services.cache.verifiers import BandedVerifier, GuardedVerifier, VetoVerifier, build_verifier
from services.cache.verifiers.crossenc import CrossEncoder, CrossEncoderVerifier, VerifierFileError
from services.cache.verifiers.guarded import BAND_BAR, BAND_TOP
from services.cache.verifiers.train_crossenc import set_metadata
from services.cache.verify import Pair, ScoresInBatches
from shared.settings import SettingsError
from tests.unit.cache.test_verify_crossenc import tiny_model


def pair(query: str, candidate: str) -> Pair:
    return Pair(query, candidate, 0.9, "ns")


def counting_model(path: Path) -> tuple[CrossEncoder, list[list[tuple[str, str]]]]:
    """The model at `path`, and the pairs of each scores() call it is asked for."""
    model = CrossEncoder(path)
    calls: list[list[tuple[str, str]]] = []
    scores = model.scores

    def counting(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        calls.append(list(pairs))
        return scores(pairs)

    model.scores = counting  # type: ignore[method-assign]
    return model, calls


def counted(path: Path) -> tuple[GuardedVerifier, list[list[tuple[str, str]]]]:
    model, calls = counting_model(path)
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


def test_vetoes_alone_keep_the_old_cosine() -> None:
    settings = Settings.from_env({"SLUICE_CACHE_VERIFY": "vetoes"})
    assert settings.min_similarity == DEFAULT_MIN_SIMILARITY == 0.90
    verifier = load_verifier(settings)
    assert isinstance(verifier, VetoVerifier) and not isinstance(verifier, BandedVerifier)
    # What no veto names passes: the cache's cosine threshold has already decided.
    assert verifier.verify(
        Pair("How can I switch the VPN on?", "How do I turn the VPN on?", 0.9, "ns")
    ).accepted


def test_the_default_is_the_vetoes_with_the_model_below_the_old_cosine() -> None:
    """The default (chosen on the fit halves, benchmarks/cache_quality_band.py): candidates from
    cosine 0.82; the vetoes at every cosine; below 0.90 the cross-encoder must give 0.6 too."""
    settings = Settings.from_env({})
    assert settings.verify == "banded"
    assert settings.min_similarity == BANDED_MIN_SIMILARITY == 0.82
    verifier = load_verifier(settings)
    assert isinstance(verifier, BandedVerifier) and isinstance(verifier, ScoresInBatches)
    assert (verifier.top, verifier.bar) == (BAND_TOP, BAND_BAR) == (DEFAULT_MIN_SIMILARITY, 0.6)
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
        for cosine in (0.95, 0.85):
            verdict = verifier.verify(Pair(asked, stored, cosine, "ns"))
            assert not verdict.accepted and verdict.vetoed, (asked, cosine)
    # At or above 0.90 the vetoes alone decide, as `vetoes` does there.
    assert verifier.verify(
        Pair("Book a table for 8 p.m.", "Book a table for 8 pm", 0.95, "ns")
    ).accepted


def test_in_the_band_the_model_decides_what_no_veto_names() -> None:
    verifier = load_verifier(Settings.from_env({}))
    assert isinstance(verifier, BandedVerifier)
    # A fit-half paraphrase of the look-alike set (cosine 0.85) no veto reads: served in the
    # band (p ~0.68).
    stored = "What is the cheapest way to get to Berlin?"
    paraphrase = Pair("How can I travel to Berlin for the least money?", stored, 0.846, "ns")
    assert verifier.vetoed(paraphrase) == ""
    assert verifier.verify(paraphrase).accepted
    # The long-prompt suite's pair (L-Eval NaturalQuestions, cosine 0.894) no veto reads: the
    # vetoes alone at a floor under 0.90 served it another question's answer; the model does
    # not (its score, ~0.595, sits just under the bar: a test that fails if a new file or an
    # onnxruntime build tips it).
    other = Pair(
        "who has final authority of interpretation of the canadian charter of rights and freedoms",
        "who does the canadian charter of rights apply to",
        0.894,
        "ns",
    )
    assert verifier.vetoed(other) == ""
    verdict = verifier.verify(other)
    assert not verdict.accepted and not verdict.vetoed and verdict.reason == "crossenc_band"
    # The same pair above the band is the vetoes' alone.
    assert verifier.verify(Pair(other.query, other.candidate, 0.95, "ns")).accepted


def test_the_band_scores_only_its_unvetoed_pairs_in_one_batch(tmp_path: Path) -> None:
    model, calls = counting_model(tiny_model(tmp_path / "m.onnx"))
    verifier = BandedVerifier(model)
    above = Pair("Book a table for eight at 8 p.m.", "Book a table for eight at 8 pm", 0.95, "ns")
    vetoed = Pair("Book a table for eight at 8 am", "Book a table for eight at 8 pm", 0.85, "ns")
    band = Pair("Book a table for eight at 8 p.m.", "Book a table for eight at 8 pm", 0.85, "ns")
    verifier.prepare([above, vetoed, band])
    assert calls == [[(band.query, band.candidate)]]
    assert verifier.verify(above).accepted and verifier.verify(band).accepted
    assert verifier.verify(vetoed).vetoed
    assert len(calls) == 1


def test_the_vetoes_turn_away_only_what_rules_would_serve_or_fewer() -> None:
    """Every veto of `rules`' own checks is a veto of `vetoes` and of the default too, so neither
    serves a pair the old default turned away on a check."""
    rules, vetoes, banded = (
        build_verifier("rules"),
        build_verifier("vetoes"),
        build_verifier("banded"),
    )
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
            assert not banded.verify(pair_).accepted, asked
