"""Packing: several small requests that share a system prompt become one upstream prompt.

The shared system prompt is sent once, as the system turn. The user turn lists the requests as
a JSON array of `{"id", "request"}` objects after a fixed instruction asking for a JSON array of
`{"id", "answer"}` objects. The reply is then split by id and validated. Validation is strict,
because the one thing packing must never do is give a caller another caller's answer:

- the reply is not a JSON array (after removing a Markdown code fence), an element is not an
  object with a string id and a string answer, an id is not one that was asked, or an id comes
  twice: nothing in the reply is trusted, and every request falls back to its own call;
- some asked ids are missing: the answered ones are used, the missing ones fall back.

The wire format is documented in services/batcher/README.md; the provider simulator recognises
it (services/simulator/packed.py) so the mesh can be tested without a real model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from shared.chat import Role, Turn

# The line after which the machine-readable request list starts; the simulator looks for it.
REQUESTS_MARKER = "REQUESTS:"
INSTRUCTION = (
    "You will answer several independent requests at once. Answer each one on its own, exactly "
    "as you would if it were the only request, following the system prompt above. Reply with "
    'only a JSON array and no other text: one object {"id": <the request\'s id>, "answer": '
    "<your complete answer as a string>} per request, each id exactly once."
)


@dataclass(frozen=True)
class PackItem:
    """One request inside a pack: a short id, unique within the pack, and its user turn."""

    id: str
    request: str


def pack_turns(system: str, items: Sequence[PackItem]) -> tuple[Turn, ...]:
    """The packed conversation: the shared system prompt once, then every request."""
    listing = orjson.dumps([{"id": item.id, "request": item.request} for item in items])
    user = f"{INSTRUCTION}\n\n{REQUESTS_MARKER}\n{listing.decode()}"
    return (Turn(Role.SYSTEM, system), Turn(Role.USER, user))


@dataclass(frozen=True)
class Split:
    """A packed reply split by id: the answers to trust, and the ids that need their own call."""

    answers: dict[str, str] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()
    # Why anything fell back; empty when every id was answered.
    problem: str = ""


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ```json fence although asked not to."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and "\n" in stripped:
        return stripped[stripped.index("\n") + 1 : -3].strip()
    return stripped


def _parse(text: str, asked: set[str]) -> dict[str, str] | str:
    """The answers by id, or the reason the reply cannot be trusted at all."""
    try:
        parsed = orjson.loads(_strip_fence(text))
    except orjson.JSONDecodeError as error:
        return f"the packed reply is not valid JSON ({error})"
    if not isinstance(parsed, list):
        return "the packed reply is not a JSON array"
    answers: dict[str, str] = {}
    for position, element in enumerate(parsed):
        if not isinstance(element, dict):
            return f"element {position} of the packed reply is not an object"
        item_id, answer = element.get("id"), element.get("answer")
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)  # a model may drop the quotes of a numeric-looking id
        if not isinstance(item_id, str) or not isinstance(answer, str):
            return f"element {position} of the packed reply lacks a string id and answer"
        if item_id not in asked:
            return f"the packed reply answers an id that was not asked: {item_id!r}"
        if item_id in answers:
            return f"the packed reply answers id {item_id!r} twice"
        answers[item_id] = answer
    return answers


def split_reply(text: str, ids: Sequence[str], *, complete: bool = True) -> Split:
    """Splits a packed reply into answers for the asked ids.

    complete is False when the upstream call was cut short (finish_reason "length" or a content
    filter): then nothing is trusted, since a cut reply may still parse as a shorter array.
    """
    if not complete:
        return Split(fallback=tuple(ids), problem="the packed reply was cut short")
    parsed = _parse(text, set(ids))
    if isinstance(parsed, str):
        return Split(fallback=tuple(ids), problem=parsed)
    missing = tuple(i for i in ids if i not in parsed)
    problem = (
        f"the packed reply has no answer for {len(missing)} of {len(ids)} ids" if missing else ""
    )
    return Split(parsed, missing, problem)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Splits an integer total in proportion to weights, exactly (largest remainder), so the
    members' shares of a packed call's tokens and cost add up to what the call cost."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    shares = [total * w // weight_sum for w in weights]
    remainders = sorted(
        range(len(weights)), key=lambda i: (total * weights[i] % weight_sum, -i), reverse=True
    )
    for index in remainders[: total - sum(shares)]:
        shares[index] += 1
    return shares
