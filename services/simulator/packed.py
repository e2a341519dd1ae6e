"""Packed prompts: answering several requests in one call, as an instruction-following model would.

The Sluice batcher packs small requests that share a system prompt into one call whose last user
message ends with a line `REQUESTS:` followed by a JSON array of `{"id": "...", "request": "..."}`
objects, and asks for a JSON array of `{"id": "...", "answer": "..."}` objects back (the format
is services/batcher/packing.py's). When a prompt has that shape, the simulator replies with such
an array, each answer being exactly what the model would have said to that request on its own
(scripted rules, else synthetic prose), so a test can check a packed answer against an unpacked
one. `max_tokens` and the model's output cap apply to the whole reply, as they would upstream:
a reply cut short is no longer valid JSON.

Markers in one request's text make the reply go wrong on purpose, to exercise the batcher's
fallback to individual calls:

| marker             | the reply                                               |
|--------------------|---------------------------------------------------------|
| `[sim:pack-drop]`  | leaves this request out of the array                    |
| `[sim:pack-extra]` | adds an element with an id that was never asked         |
| `[sim:pack-dup]`   | answers this request twice                              |
| `[sim:pack-bad]`   | is cut in the middle, so it is not valid JSON at all    |
"""

from __future__ import annotations

from typing import Any

import orjson

from services.simulator.answers import Answer, AnswerBook, cap_answer, output_limit
from services.simulator.scenario import ModelSpec
from shared.tokens import TokenCounter

REQUESTS_MARKER = "\nREQUESTS:\n"


def packed_requests(prompt: str) -> list[tuple[str, str]] | None:
    """The (id, request) pairs of a packed prompt, or None when the prompt is not packed."""
    start = prompt.rfind(REQUESTS_MARKER)
    if start < 0:
        return None
    try:
        listing = orjson.loads(prompt[start + len(REQUESTS_MARKER) :])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(listing, list) or not listing:
        return None
    pairs = []
    for element in listing:
        if not isinstance(element, dict):
            return None
        item_id, request = element.get("id"), element.get("request")
        if not isinstance(item_id, str) or not isinstance(request, str):
            return None
        pairs.append((item_id, request))
    return pairs


class PackedAnswers:
    """Answers packed prompts; everything else is left to the AnswerBook."""

    def __init__(self, book: AnswerBook, tokens: TokenCounter) -> None:
        self._book = book
        self._tokens = tokens

    def answer(self, model: ModelSpec, prompt: str, max_tokens: int | None) -> Answer | None:
        """The packed reply, or None when the prompt is not a packed one."""
        pairs = packed_requests(prompt)
        if pairs is None:
            return None
        elements: list[dict[str, Any]] = []
        for item_id, request in pairs:
            element = {"id": item_id, "answer": self._book.answer(model, request, None).text}
            if "[sim:pack-drop]" not in request:
                elements.append(element)
            if "[sim:pack-dup]" in request:
                elements.append(element)
            if "[sim:pack-extra]" in request:
                elements.append({"id": f"{item_id}-extra", "answer": element["answer"]})
        text = orjson.dumps(elements).decode()
        if any("[sim:pack-bad]" in request for _, request in pairs):
            text = text[: len(text) // 2]
        return cap_answer(self._tokens, text, output_limit(model, max_tokens))
