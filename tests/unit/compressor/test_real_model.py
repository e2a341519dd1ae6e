"""With the real all-MiniLM-L6-v2, the answer-bearing sentence survives 4x compression.

Loads the packaged model once for the module (~5 s, mostly importing sentence_transformers).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from services.compressor.embedder import Embedder, build_embedder
from services.compressor.strategies import ExtractiveStrategy
from shared.chat import Role, Turn
from shared.embedding.onnx import default_model_dir
from shared.tokens import TokenCounter

pytest.importorskip("sentence_transformers")

FACTS = [
    "The Amazon river discharges more water than any other river in the world.",
    "Mount Kilimanjaro is the highest mountain on the African continent.",
    "The Great Barrier Reef lies off the coast of Queensland in Australia.",
    "Honey found in ancient Egyptian tombs was still edible thousands of years later.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Octopuses have three hearts and blue, copper-based blood.",
    "The Sahara is the largest hot desert on Earth.",
    "Venus rotates in the opposite direction to most planets in the solar system.",
    "Bananas are botanically classified as berries, while strawberries are not.",
    "The Pacific Ocean covers roughly a third of the planet's surface.",
    "Johann Sebastian Bach wrote more than a thousand musical compositions.",
    "The human skeleton of an adult contains 206 bones.",
    "Lake Baikal in Siberia is the deepest freshwater lake in the world.",
    "The printing press with movable type spread across Europe in the fifteenth century.",
    "Penguins live almost exclusively in the Southern Hemisphere.",
    "The speed of sound in dry air at 20 degrees Celsius is about 343 metres per second.",
    "The Great Wall of China was built and rebuilt over many dynasties.",
    "Saturn's density is lower than that of water.",
    "The Rosetta Stone helped scholars decipher Egyptian hieroglyphs.",
    "Bamboo is among the fastest-growing plants on the planet.",
    "The first modern Olympic Games were held in Athens in 1896.",
    "Antarctica holds about seventy percent of the world's fresh water as ice.",
    "Chess originated in India around the sixth century.",
    "The Danube flows through ten countries before reaching the Black Sea.",
    "Koalas sleep for up to twenty hours a day.",
    "The periodic table was first published by Dmitri Mendeleev in 1869.",
    "Iceland has no mosquitoes in the wild.",
    "The Panama Canal connects the Atlantic and Pacific oceans.",
    "A day on Mars lasts about 24 hours and 39 minutes.",
    "Shakespeare's Globe Theatre burned down in 1613 during a performance.",
    "The blue whale is the largest animal known to have ever lived.",
    "Coffee beans are the seeds of a cherry-like fruit.",
    "The Andes is the longest continental mountain range in the world.",
    "Glass is made mostly from silica sand melted at high temperature.",
    "The Magna Carta was sealed by King John of England in 1215.",
    "Hummingbirds can hover and even fly backwards.",
    "Tokyo was formerly known as Edo.",
    "The Dead Sea is so salty that swimmers float easily on its surface.",
    "Light from the Sun takes about eight minutes to reach Earth.",
    "The violin family also includes the viola, cello and double bass.",
]
CASES = [
    (
        5,
        "The lighthouse keeper Elena Vasquez painted the tower door bright green in 1931.",
        "What colour did Elena Vasquez paint the lighthouse door?",
    ),
    (
        20,
        "The village bakery in Oberwil sells its famous walnut bread only on Thursdays.",
        "On which day of the week can you buy the walnut bread in Oberwil?",
    ),
    (
        38,
        "Engineer Tomas Berg designed the Norrvik suspension bridge, whose main span is 412 m.",
        "How long is the main span of the Norrvik bridge?",
    ),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    # The service's own wiring: ONNX Runtime, falling back to torch when ONNX cannot load.
    model = build_embedder("onnx", default_model_dir(os.environ), threads=1, cache_size=0)
    model.load()
    return model


@pytest.fixture(scope="module")
def strategy(embedder: Embedder) -> ExtractiveStrategy:
    return ExtractiveStrategy(embedder, TokenCounter())


def test_vectors_are_normalised_float32(embedder: Embedder) -> None:
    assert embedder.loaded
    vectors = embedder.embed(["a cat sat on the mat", "stock markets fell"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(("position", "answer", "question"), CASES)
def test_answer_survives_quarter_ratio(
    strategy: ExtractiveStrategy, position: int, answer: str, question: str
) -> None:
    sentences = [*FACTS[:position], answer, *FACTS[position:]]
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    text = "\n\n".join(paragraphs) + f"\n\n{question}"
    result = strategy.compress_blocking((Turn(Role.USER, text),), 0.25)
    content = result.turns[0].content
    assert answer in content
    assert content.endswith(question)
    assert len(content) < 0.4 * len(text)
