"""The cross-encoder verifier: loading its ONNX file (refusing a missing or bad one by name),
batch scoring through `prepare`, the namespace bar, and the cache awaiting `prepare`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from services.cache.config import Settings
from services.cache.model import HitKind
from services.cache.server import load_verifier
from services.cache.verifiers import build_verifier
from services.cache.verifiers.crossenc import (
    CROSSENC_FORMAT,
    DEFAULT_CROSSENC_PATH,
    CrossEncoder,
    CrossEncoderVerifier,
    VerifierFileError,
)
from services.cache.verify import ACCEPT, Pair, ScoresInBatches, Verdict
from shared.settings import SettingsError
from tests.unit.cache.fakes import answer, ask, make_cache


def tiny_model(path: Path, *, threshold: float = 0.5, fmt: str = CROSSENC_FORMAT) -> Path:
    """logit = (tokens of the stored question, [SEP] included) - 4: a model whose scores are
    known without training, so p >= 0.5 exactly when the stored side has 4+ tokens."""
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    nodes = [
        helper.make_node("Mul", ["token_type_ids", "attention_mask"], ["second"]),
        helper.make_node("Cast", ["second"], ["second_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["second_f", "axes"], ["count"], keepdims=0),
        helper.make_node("Sub", ["count", "four"], ["logit"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch"])],
        [
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("four", TensorProto.FLOAT, [], [4.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"format": fmt, "threshold": str(threshold), "min_similarity": "0.5",
            "max_tokens": "64"}  # fmt: skip
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def pair(query: str, candidate: str, namespace: str = "ns") -> Pair:
    return Pair(query, candidate, 0.9, namespace)


def test_scores_follow_the_model(tmp_path: Path) -> None:
    model = CrossEncoder(tiny_model(tmp_path / "m.onnx"))
    scores = model.scores([("a", "b"), ("a", "b c d e")])
    # "b [SEP]" is 2 tokens, "b c d e [SEP]" 5: logits -2 and 1.
    assert scores == pytest.approx(1 / (1 + np.exp([2.0, -1.0])), abs=1e-6)
    assert model.info.threshold == 0.5 and model.info.max_tokens == 64


def test_verify_uses_the_threshold_and_prepare_scores_in_one_batch(tmp_path: Path) -> None:
    model = CrossEncoder(tiny_model(tmp_path / "m.onnx"))
    calls: list[int] = []
    scores = model.scores

    def counting(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        calls.append(len(pairs))
        return scores(pairs)

    model.scores = counting  # type: ignore[method-assign]
    verifier = CrossEncoderVerifier(model)
    assert isinstance(verifier, ScoresInBatches)
    long, short = pair("q", "one two three four"), pair("q", "one")
    verifier.prepare([long, short, long])
    assert calls == [2]
    assert verifier.verify(long).accepted
    assert not verifier.verify(short).accepted
    assert calls == [2]  # verify read what prepare scored
    assert verifier.verify(pair("same", "same")).accepted  # the exact text needs no model
    assert verifier.vetoed(short) == ""


def test_feedback_moves_a_namespace_bar(tmp_path: Path) -> None:
    verifier = CrossEncoderVerifier(CrossEncoder(tiny_model(tmp_path / "m.onnx")))
    assert verifier.feedback_scale.startswith("crossenc:")
    score = verifier.record_feedback(pair("q", "one two three four"), False)
    assert score is not None and 0.5 < score < 1.0


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(VerifierFileError, match=r"nowhere\.onnx"):
        build_verifier("crossenc", crossenc_path=missing)


def test_corrupt_file_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(VerifierFileError, match=r"bad\.onnx"):
        CrossEncoder(bad)


def test_an_onnx_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    other = tiny_model(tmp_path / "other.onnx", fmt="something-else/1")
    with pytest.raises(VerifierFileError, match=r"other\.onnx.*format"):
        CrossEncoder(other)


def test_the_service_stops_at_start_naming_variable_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x00" * 64)
    settings = Settings.from_env(
        {"SLUICE_CACHE_VERIFY": "crossenc", "SLUICE_CACHE_CROSSENC_MODEL": str(bad)}
    )
    with pytest.raises(SettingsError, match=r"SLUICE_CACHE_CROSSENC_MODEL.*corrupt\.onnx"):
        load_verifier(settings)


def test_the_shipped_file_loads_and_reads_the_words_that_matter() -> None:
    verifier = build_verifier("crossenc")
    assert isinstance(verifier, CrossEncoderVerifier)
    info = verifier.model.info
    assert 0.0 < info.threshold < 1.0 and info.min_similarity == 0.5
    stored = "Book a table for 8 pm"
    assert not verifier.verify(pair("Book a table for 8 am", stored)).accepted
    assert verifier.verify(pair("Book a table for 8 p.m.", stored)).accepted
    stored = "How do I turn the VPN on?"
    assert not verifier.verify(pair("How do I turn the VPN off?", stored)).accepted
    # The paraphrase sits at the file's own bar (0.6999 against 0.70 here, which the onnxruntime
    # build can tip either way), so this checks the order of the two scores instead, with room.
    paraphrase = verifier.score(pair("How can I switch the VPN on?", stored))
    assert paraphrase > verifier.score(pair("How do I turn the VPN off?", stored)) + 0.1
    # Behind the vetoes (the default `guarded` verifier) its bar is 0.3, well below it.
    assert paraphrase > 0.5
    lookalike = pair("Convert 100 euros to dollars", "Convert 100 dollars to euros")
    assert not verifier.verify(lookalike).accepted


def test_the_lean_session_scores_as_the_session_from_bytes_did() -> None:
    """The session is built from the path with the arena and memory patterns off (less memory);
    the scores must be those of the session built from the file's bytes with ORT's defaults."""
    import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type information

    lean = CrossEncoder(DEFAULT_CROSSENC_PATH)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    before = CrossEncoder(DEFAULT_CROSSENC_PATH)
    before._session = ort.InferenceSession(  # the session as it was built
        DEFAULT_CROSSENC_PATH.read_bytes(), options, providers=["CPUExecutionProvider"]
    )
    stored = [
        "Book a table for 8 pm",
        "How do I turn the VPN on?",
        "What is the capital of France?",
    ]
    asked = ["Book a table for 8 am", "How can I switch the VPN on?", "capital of france",
             "Convert 100 euros to dollars, and then tell me the rate history " * 4]  # fmt: skip
    pairs = [(a, s) for a in asked for s in stored]
    for batch in (pairs[:1], pairs[:8], pairs):  # padded batches of several lengths, truncation
        assert np.allclose(lean.scores(batch), before.scores(batch), rtol=0.0, atol=1e-6)


class BatchRecorder:
    """A ScoresInBatches verifier that notes the thread and the pairs of each prepare call and
    accepts only the pairs prepare has seen."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[str]]] = []
        self.prepared: set[tuple[str, str]] = set()

    def prepare(self, pairs: Sequence[Pair]) -> None:
        self.batches.append((threading.get_ident(), [p.candidate for p in pairs]))
        self.prepared |= {(p.query, p.candidate) for p in pairs}

    def verify(self, pair: Pair) -> Verdict:
        return ACCEPT if (pair.query, pair.candidate) in self.prepared else Verdict(False, "x")


async def test_the_cache_scores_a_lookups_candidates_in_one_batch_off_the_loop() -> None:
    cache = await make_cache(min_similarity=0.5)
    stored = ["what is the capital of france today please", "the capital of france"]
    for text in stored:
        await cache.store(ask(text), answer())
    recorder = BatchRecorder()
    cache._verifier = recorder  # a constructor argument; swapped here to record
    result = await cache.lookup(ask("what is the capital of france"))
    assert result.kind is HitKind.SEMANTIC
    ((thread, candidates),) = recorder.batches
    assert sorted(candidates) == sorted(stored)
    assert thread != threading.get_ident()  # a worker thread, not the event loop's
