"""Cache keys: the exact key of a request and the namespace its semantic matches live in.

Both are SHA-256 digests of a canonical JSON document (sorted keys, no whitespace, UTF-8), so
two requests that differ only in dict ordering or float formatting of the same value still get
the same key, and the keys are stable across processes and restarts (a later snapshot/WAL and a
shared Redis entry store rely on that).

- The exact key covers everything that can change the answer: tenant, model class, every
  message (role, content, name, image parts, tool calls, tool-call ids, refusals), the
  sampling parameters (with seed, n, logprobs and penalties), the required response format
  (a JSON answer must never serve a free-text request, nor the reverse) and the tools offered
  with their tool choice.
- The namespace key covers the same fields except the text of the last user turn, which is the
  only part matched semantically. Earlier turns, the system prompt and any turn after the last
  user turn must therefore match exactly, and tenants never share a namespace.
- Only what the embedding model reads in full is matched semantically (window.py): a last user
  turn longer than the model's window is split, its trailing window is the semantic query and
  everything before it joins the namespace key, so it must match exactly; a turn with no window
  that fits is matched exactly only.
- Some requests are matched exactly only (no semantic query): a request with an image, whose
  picture the embedding never sees; one that offers tools, where a look-alike question would
  get a tool call with another question's arguments; and one that asks for several choices or
  for logprobs, which belong to one exact text.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.cache.window import QueryWindow, split_turn
from shared.chat import (
    NO_TOOLS,
    TEXT_FORMAT,
    FormatKind,
    ResponseFormat,
    Role,
    Sampling,
    ToolSet,
    Turn,
)
from shared.errors import InvalidRequest

# Bumped whenever the canonical document changes, so that old and new keys never collide.
# 2: the response format joined both keys. 3: tools, image parts, tool calls and the sampling
# fields beyond temperature/top_p/max_tokens/stop joined them. 4: the part of a long last user
# turn before its semantic window joined the namespace key. 5: top_k joined the sampling fields.
KEY_VERSION = 5
# Without a model's own window (tests, tools), count every non-blank character as a word piece:
# a piece covers at least one character, so this never lets the model drop a word unseen.
CHARACTER_BOUND = QueryWindow(lambda text: sum(not c.isspace() for c in text), 254)


@dataclass(frozen=True)
class RequestKeys:
    """The keys of one request and the text its semantic match is computed from."""

    exact: str
    namespace: str
    # The semantic query: the last user turn, or its trailing window when the turn is longer
    # than the embedding model reads (window.py). None when the request has no user turn, is
    # matched exactly only (semantic_allowed) or has no window that fits, which makes it
    # cacheable by exact key only.
    query: str | None


def request_keys(
    tenant_id: str,
    model_class: str,
    turns: Sequence[Turn],
    sampling: Sampling,
    response_format: ResponseFormat = TEXT_FORMAT,
    tools: ToolSet = NO_TOOLS,
    window: QueryWindow = CHARACTER_BOUND,
) -> RequestKeys:
    """Computes the exact key, the namespace key and the semantic query of a request; `window`
    is what the embedding model reads of a text."""
    last_user = _last_user_index(turns) if semantic_allowed(turns, sampling, tools) else None
    if last_user is not None and not turns[last_user].content.strip():
        # An empty query embeds to a vector that is "similar" to other short texts; matching
        # on it would serve an answer to a question nobody asked.
        raise InvalidRequest(
            f"messages[{last_user}].content is empty: the last user turn needs some text"
        )
    messages: list[dict[str, object]] = [_message(turn) for turn in turns]
    head = _head(tenant_id, model_class, sampling, response_format) | {"tools": _tools(tools)}
    exact = _digest({**head, "kind": "exact", "messages": messages})
    split = None if last_user is None else split_turn(turns[last_user].content, window)
    if last_user is None or split is None or split.window is None:
        return RequestKeys(
            exact, _digest({**head, "kind": "namespace", "messages": messages}), None
        )
    # The slot keeps the turn's position and name: the window's text may vary, its place and
    # everything before it in the turn may not.
    slot = {"role": Role.USER.value, "name": turns[last_user].name, "slot": True}
    if split.prefix:
        slot["prefix"] = split.prefix
    namespace_messages = [*messages[:last_user], slot, *messages[last_user + 1 :]]
    namespace = _digest({**head, "kind": "namespace", "messages": namespace_messages})
    return RequestKeys(exact=exact, namespace=namespace, query=split.window)


def semantic_allowed(turns: Sequence[Turn], sampling: Sampling, tools: ToolSet) -> bool:
    """False for the requests matched exactly only (see the module docstring)."""
    return not (
        tools.offered
        or sampling.n > 1
        or sampling.logprobs
        or any(turn.has_image for turn in turns)
    )


def _last_user_index(turns: Sequence[Turn]) -> int | None:
    for index in range(len(turns) - 1, -1, -1):
        if turns[index].role is Role.USER:
            return index
    return None


def _head(
    tenant_id: str, model_class: str, sampling: Sampling, response_format: ResponseFormat
) -> dict[str, Any]:
    for field, value in (
        ("temperature", sampling.temperature),
        ("top_p", sampling.top_p),
        ("presence_penalty", sampling.presence_penalty),
        ("frequency_penalty", sampling.frequency_penalty),
    ):
        # NaN is not equal to itself, so it could never be matched again; refuse it up front.
        if value is not None and not math.isfinite(value):
            raise InvalidRequest(f"sampling.{field}={value} is not a finite number")
    return {
        "v": KEY_VERSION,
        "tenant": tenant_id,
        "model_class": model_class,
        # None ("use the policy default") stays distinct from an explicit 0.0.
        "sampling": {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "stop": list(sampling.stop),
            "seed": sampling.seed,
            "n": sampling.n,
            "logprobs": [sampling.logprobs, sampling.top_logprobs],
            "penalties": [sampling.presence_penalty, sampling.frequency_penalty],
            "top_k": sampling.top_k,
        },
        "format": _format(response_format),
    }


def _format(response_format: ResponseFormat) -> dict[str, Any]:
    if response_format.kind is not FormatKind.JSON_SCHEMA:
        return {"kind": response_format.kind.value}
    return {
        "kind": response_format.kind.value,
        "schema": _json_or_text(response_format.json_schema),
        "name": response_format.schema_name,
        "strict": response_format.strict,
    }


def _tools(tools: ToolSet) -> dict[str, Any] | None:
    if not tools.offered:
        return None
    return {
        "functions": [
            [f.name, f.description, _json_or_text(f.parameters_json), f.strict]
            for f in tools.functions
        ],
        "choice": [tools.choice.value, tools.function_name],
        "parallel": tools.parallel_tool_calls,
    }


def _json_or_text(text: str) -> Any:
    """A JSON document parsed, so that whitespace or key order do not split one document into
    several keys; the raw text when it does not parse."""
    try:
        return json.loads(text, parse_constant=_no_constants) if text else None
    except ValueError:
        return text


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON and could not be written canonically; keep the raw text.
    raise ValueError(f"{name} is not JSON")


def _message(turn: Turn) -> dict[str, object]:
    message: dict[str, object] = {
        "role": turn.role.value,
        "content": turn.content,
        "name": turn.name,
    }
    if turn.parts:
        message["parts"] = [
            part if isinstance(part, str) else {"image": part.url, "detail": part.detail}
            for part in turn.parts
        ]
    if turn.tool_calls:
        message["tool_calls"] = [[c.id, c.name, c.arguments] for c in turn.tool_calls]
    if turn.tool_call_id:
        message["tool_call_id"] = turn.tool_call_id
    if turn.refusal:
        message["refusal"] = turn.refusal
    return message


def _digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
