"""One choice of a scenario model's reply: tool calls, a JSON answer, a refusal or text.

Which one, in order:

1. a packed prompt (packed.py) gets its JSON array of answers;
2. a rule marked `refusal` declines (unless `tool_choice` forces a call): under a json_schema
   format in `message.refusal` with `content: null`, as OpenAI's structured outputs do,
   otherwise as the content;
3. a turn that calls tools (tools.py) gets the calls, `finish_reason: "tool_calls"`;
4. a JSON response format gets a JSON object, fitted to the schema for json_schema;
5. otherwise text: after a tool result, an answer that uses it; else a rule's or synthetic prose.

Rules other than refusals only answer text turns. A malformation (forced by a `malform` rule or
drawn at the model's `malformed_rate`, malform.py) spoils steps 3 and 4. `max_tokens` cuts every
kind, tool-call arguments and JSON included, with `finish_reason: "length"`; `stop` cuts content
before the first stop sequence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import orjson

from services.simulator.answers import Answer, AnswerBook, cap_answer, output_limit, synthetic_text
from services.simulator.json_gen import generate
from services.simulator.malform import broken_document, drawn_malformation
from services.simulator.packed import PackedAnswers
from services.simulator.request import ChatRequest, ToolCall
from services.simulator.scenario import JSON_MALFORMATIONS, TOOL_MALFORMATIONS, ModelSpec, Rule
from services.simulator.tools import make_calls, planned_tools, tool_result_answer
from shared.tokens import TokenCounter


@dataclass(frozen=True)
class Choice:
    index: int
    # None when the model calls tools or refuses under a json_schema format.
    content: str | None
    finish_reason: str
    completion_tokens: int
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    # The answer came from a rule marked unsure: its token logprobs are low.
    unsure: bool = False
    # The stop sequence the content was cut at, named in the choice's `stop_reason` as vLLM
    # does (OpenAI names none).
    stop_sequence: str | None = None

    @property
    def said(self) -> str:
        """The text the model produced, whichever field carries it."""
        return self.content or self.refusal or ""


def variant_of(chat: ChatRequest, index: int) -> str:
    """What makes choices differ: none at temperature 0; otherwise the seed and the choice's
    index, so `n` choices differ and the same seed repeats an answer. Empty for choice 0 of a
    request without a seed, so such answers stay what they always were."""
    if chat.temperature == 0:
        return ""
    parts = ([f"seed={chat.seed}"] if chat.seed is not None else []) + (
        [f"choice={index}"] if index else []
    )
    return ",".join(parts)


def apply_stop(tokens: TokenCounter, choice: Choice, stop: tuple[str, ...]) -> Choice:
    """Cuts the content before the first stop sequence; the answer then finishes with "stop"."""
    if not stop or not choice.content:
        return choice
    cuts = sorted((choice.content.find(s), s) for s in stop if s in choice.content)
    if not cuts:
        return choice
    at, sequence = cuts[0]
    content = choice.content[:at]
    return replace(
        choice,
        content=content,
        finish_reason="stop",
        completion_tokens=tokens.count(content),
        stop_sequence=sequence,
    )


def text_choice(index: int, answer: Answer) -> Choice:
    return Choice(
        index, answer.text, answer.finish_reason, answer.completion_tokens, unsure=answer.unsure
    )


class ChoiceMaker:
    """Builds one choice for a scenario model (replayed models answer in composer.py)."""

    def __init__(self, book: AnswerBook, tokens: TokenCounter) -> None:
        self._book = book
        self._tokens = tokens
        self._packed = PackedAnswers(book, tokens)

    def choice(self, chat: ChatRequest, model: ModelSpec, index: int) -> Choice:
        prompt = chat.last_user_text()
        variant = variant_of(chat, index)
        limit = output_limit(model, chat.max_tokens)
        packed = self._packed.answer(model, prompt, chat.max_tokens)
        if packed is not None:
            return text_choice(index, packed)
        tools = planned_tools(chat)
        rule = self._book.rule_for(model, prompt)
        if rule is not None and rule.refusal and chat.tool_choice.mode in ("auto", "none"):
            return self._refusal(chat, model, rule, index, limit)
        malform = self._book.malformation(model, prompt) or drawn_malformation(
            model, prompt, variant, bool(tools)
        )
        if tools and malform != "skip_tool":
            spoil = malform if malform in TOOL_MALFORMATIONS else None
            return self._calls(index, make_calls(chat, tools, variant, spoil), limit)
        if chat.response_format.wants_json:
            spoil = malform if malform in JSON_MALFORMATIONS else None
            return self._json(chat, model, variant, spoil, index, limit)
        tool_text = tool_result_answer(chat)
        if rule is None and tool_text is not None:
            return text_choice(index, cap_answer(self._tokens, tool_text, limit))
        return text_choice(index, self._book.answer(model, prompt, chat.max_tokens, variant))

    def _refusal(
        self, chat: ChatRequest, model: ModelSpec, rule: Rule, index: int, limit: int | None
    ) -> Choice:
        answer = cap_answer(self._tokens, rule.text_for(model.name), limit, rule.finish_reason)
        if chat.response_format.kind != "json_schema":
            return text_choice(index, answer)
        return Choice(
            index, None, answer.finish_reason, answer.completion_tokens, refusal=answer.text
        )

    def _calls(self, index: int, calls: tuple[ToolCall, ...], limit: int | None) -> Choice:
        """The calls, cut at limit tokens (name and arguments count) with "length"."""
        used = 0
        kept: list[ToolCall] = []
        for call in calls:
            name_tokens = self._tokens.count(call.name)
            cost = name_tokens + self._tokens.count(call.arguments)
            if limit is not None and used + cost > limit:
                room = max(limit - used - name_tokens, 0)
                kept.append(replace(call, arguments=self._tokens.truncate(call.arguments, room)))
                return Choice(index, None, "length", limit, tool_calls=tuple(kept))
            used += cost
            kept.append(call)
        return Choice(index, None, "tool_calls", used, tool_calls=tuple(kept))

    def _json(
        self,
        chat: ChatRequest,
        model: ModelSpec,
        variant: str,
        malform: str | None,
        index: int,
        limit: int | None,
    ) -> Choice:
        prompt = chat.last_user_text()
        schema = chat.response_format.schema
        if schema is None:
            # json_object (or a json_schema without a schema): one short answer in an object.
            first = synthetic_text(self._tokens, model, prompt, variant).split(". ")[0]
            document: object = {"answer": first.rstrip(".") + "."}
        else:
            key = f"{model.name}\0{prompt}\0{variant}\0json".encode()
            seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
            document = generate(schema, seed, prompt)
        if malform is not None:
            text = broken_document(malform, schema, document)
        else:
            text = orjson.dumps(document).decode()
        return text_choice(index, cap_answer(self._tokens, text, limit))
