"""Plausible token logprobs for simulated answers, when a request asks for them.

A "token" here is one word with its trailing space (the pieces a stream sends are whole
words), which is enough for a gateway that summarises them. Values are seeded by the model, the
prompt and the answer, so a request gets the same logprobs every time. A confident answer's
tokens sit close to 0 (mean about -0.13); an answer a rule marks `unsure` gets low ones (mean
about -1.5), as a model guessing would.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from services.simulator.wire import stream_pieces

CONFIDENT_RANGE = (-0.25, -0.005)
UNSURE_RANGE = (-2.5, -0.6)


def token_logprobs(model: str, prompt: str, text: str, unsure: bool) -> list[tuple[str, float]]:
    """(token, logprob) for every word of text, in order; the tokens concatenate to text."""
    seed = hashlib.sha256(f"{model}\0{prompt}\0{text}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    low, high = UNSURE_RANGE if unsure else CONFIDENT_RANGE
    tokens = [t for t in stream_pieces(text, words_per_piece=1) if t]
    return [(token, round(rng.uniform(low, high), 4)) for token in tokens]


def logprobs_json(entries: list[tuple[str, float]]) -> dict[str, Any]:
    """OpenAI's `choices[].logprobs` object for these tokens."""
    return {
        "content": [
            {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": []}
            for token, value in entries
        ],
        "refusal": None,
    }
