"""The ONNX Runtime embedder gives torch's vectors; the fallback takes over when it cannot load.

The parity test uses the real model (the export in SLUICE_CACHE_MODEL_DIR's default, made on
first use) and torch, so it takes ~10-20 s; it is the proof behind the ONNX default.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from services.cache.config import Settings
from shared.embedding.minilm import MiniLmEmbedder
from shared.embedding.onnx import FallbackEmbedder, OnnxMiniLmEmbedder
from tests.unit.cache.fakes import HashingEmbedder

TEXTS = [
    "What is the capital of France?",
    "What's the capital city of France?",
    "Tell me the capital of France",
    "What is the population of France?",
    "hi",
    "Ünïcödé — emoji 🎉 and 中文字符",
    "Explain the difference between TCP and UDP in detail. " * 30,  # truncated at 256 tokens
    "",
]


@pytest.fixture(scope="module")
def backends() -> tuple[OnnxMiniLmEmbedder, MiniLmEmbedder]:
    model_dir = Settings.from_env(os.environ).model_dir
    onnx = OnnxMiniLmEmbedder(model_dir)
    onnx.load()
    torch = MiniLmEmbedder()
    torch.load()
    return onnx, torch


@pytest.mark.parametrize("batch", [TEXTS[:1], TEXTS[6:7], TEXTS[:4], TEXTS])
def test_onnx_vectors_equal_torch_vectors(backends, batch):
    onnx, torch = backends
    got, expected = onnx.embed(batch), torch.embed(batch)
    assert got.shape == expected.shape == (len(batch), 384)
    assert got.dtype == np.float32
    assert float(np.abs(got - expected).max()) < 1e-5
    assert float((got * expected).sum(axis=1).min()) > 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_a_text_embeds_the_same_alone_and_in_a_padded_batch(backends):
    onnx, _ = backends
    alone = onnx.embed([TEXTS[0]])[0]
    batched = onnx.embed(TEXTS)[0]
    assert float(np.abs(alone - batched).max()) < 1e-5


def test_fallback_is_used_when_the_primary_cannot_load(caplog):
    class Broken(HashingEmbedder):
        def load(self):
            raise RuntimeError("no onnxruntime here")

    primary, fallback = Broken(loaded=False), HashingEmbedder(loaded=False)
    embedder = FallbackEmbedder(primary, fallback)
    assert not embedder.loaded
    embedder.load()
    assert embedder.loaded and embedder.active is fallback
    assert embedder.embed(["a b"]).shape == (1, 512)
    assert "falling back to torch" in caplog.text


def test_primary_is_used_when_it_loads():
    primary, fallback = HashingEmbedder(loaded=False), HashingEmbedder(loaded=False)
    embedder = FallbackEmbedder(primary, fallback)
    embedder.load()
    assert embedder.active is primary and not fallback.loaded


def test_the_int8_export_is_another_vector_space_close_to_fp32(backends):
    onnx, _ = backends
    int8 = OnnxMiniLmEmbedder(Settings.from_env(os.environ).model_dir, variant="int8")
    int8.load()
    got, reference = int8.embed(TEXTS), onnx.embed(TEXTS)
    assert float((got * reference).sum(axis=1).min()) > 0.97
    assert onnx.identity.endswith("/fp32") and int8.identity.endswith("/int8")
    assert onnx.identity.split("/")[0] == int8.identity.split("/")[0]  # the same model digest
    assert MiniLmEmbedder().identity == onnx.identity  # torch gives the fp32 export's vectors


def test_a_fallback_takes_the_identity_of_the_embedder_it_serves_with():
    class Broken(HashingEmbedder):
        identity = "broken/int8"

        def load(self):
            raise RuntimeError("no onnxruntime here")

    class Torch(HashingEmbedder):
        identity = "torch/fp32"

    embedder = FallbackEmbedder(Broken(loaded=False), Torch(loaded=False))
    assert embedder.identity == "broken/int8"  # before loading: the one it means to use
    embedder.load()
    assert embedder.identity == "torch/fp32"


def test_a_mixed_batch_gives_each_text_the_vector_it_has_alone(backends):
    """run_session splits a batch into calls by token count; no text's vector may change."""
    onnx, _ = backends
    texts = [*TEXTS, *(f"Question {n}: {'why ' * n}is the sky blue?" for n in range(0, 60, 3))]
    batched = onnx.embed(texts)
    alone = np.concatenate([onnx.embed([text]) for text in texts])
    assert float(np.abs(batched - alone).max()) < 1e-5
