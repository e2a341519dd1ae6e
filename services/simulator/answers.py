"""What a simulated model says: a scripted rule's answer, or deterministic synthetic prose.

Synthetic answers are seeded by a hash of the model and the prompt, so the same request gets
the same answer on every run and in every region, which keeps replays and cache tests stable.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace

from services.simulator.scenario import ModelSpec, Rule
from shared.tokens import TokenCounter

_MARKER = re.compile(r"\[sim:[^\]]*\]")
_TOPIC_WORDS = 8
_PARAGRAPH_SENTENCES = 4

_OPENERS = (
    "{model} here: this is a considered answer about {topic}.",
    "Speaking as {model}, the short answer on {topic} depends on a few factors.",
    "Here is how {model} would approach {topic}.",
    "{model} has looked at the question of {topic} from several angles.",
)
_BODY = (
    "The first thing to weigh is the context in which the question arises.",
    "In most practical settings the simplest explanation turns out to be the right one.",
    "It helps to separate what is known for certain from what is only likely.",
    "A careful reader will notice that the details matter more than the headline.",
    "Experience suggests starting small and checking each step before moving on.",
    "There are trade-offs here, and none of them comes for free.",
    "Evidence from similar cases points in the same general direction.",
    "Where the data is thin, it is wise to state the assumptions openly.",
    "The answer also changes with scale, so the numbers deserve a second look.",
    "Good practice is to write the conclusion down and test it against examples.",
    "Several common misconceptions make this topic seem harder than it is.",
    "A worked example usually makes the general principle much easier to see.",
    "Costs and benefits should be compared over the whole lifetime, not one step.",
    "When two explanations fit the facts equally well, prefer the one with fewer parts.",
    "It is worth checking the edge cases, because that is where mistakes hide.",
    "Most experts would agree on the broad outline, if not on every detail.",
)
_CLOSERS = (
    "In summary, {model} recommends a measured approach to {topic}.",
    "That is the gist of it; {model} is happy to go deeper on any part of {topic}.",
    "To conclude, the key points about {topic} are the ones above.",
)


@dataclass(frozen=True)
class Answer:
    """A model's reply after any cap was applied."""

    text: str
    finish_reason: str
    completion_tokens: int
    # A rule marked the answer weak: its token logprobs, when asked for, are low.
    unsure: bool = False


def output_limit(model: ModelSpec | None, max_tokens: int | None) -> int | None:
    """The tighter of the request's max_tokens and the model's own cap."""
    limits = [n for n in (max_tokens, model.max_output_tokens if model else None) if n]
    return min(limits) if limits else None


def cap_answer(
    tokens: TokenCounter, text: str, limit: int | None, finish_reason: str = "stop"
) -> Answer:
    """Cuts text to limit tokens; a cut answer finishes with "length", as real providers do."""
    count = tokens.count(text)
    if limit is not None and count > limit:
        cut = tokens.truncate(text, limit)
        return Answer(cut, "length", min(tokens.count(cut), limit))
    return Answer(text, finish_reason, count)


def _topic(prompt: str) -> str:
    words = [w.strip(".,;:!?\"'()[]") for w in _MARKER.sub(" ", prompt).split()]
    words = [w for w in words if w]
    if not words:
        return "your question"
    suffix = "..." if len(words) > _TOPIC_WORDS else ""
    return '"' + " ".join(words[:_TOPIC_WORDS]) + suffix + '"'


def synthetic_text(tokens: TokenCounter, model: ModelSpec, prompt: str, variant: str = "") -> str:
    """Plausible prose of roughly model.mean_output_tokens tokens that names the model; a
    variant (a sampling seed and choice index) gives another answer to the same prompt."""
    key = f"{model.name}\0{prompt}" + (f"\0{variant}" if variant else "")
    digest = hashlib.sha256(key.encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    target = max(1, round(model.mean_output_tokens * rng.uniform(0.75, 1.25)))
    fill = {"model": model.name, "topic": _topic(prompt)}
    closer = rng.choice(_CLOSERS).format(**fill)
    sentences = [rng.choice(_OPENERS).format(**fill)]
    used = tokens.count(sentences[0]) + tokens.count(closer)
    while used < target:
        sentence = rng.choice(_BODY)
        sentences.append(sentence)
        used += tokens.count(sentence) + 1
    sentences.append(closer)
    paragraphs = [
        " ".join(sentences[i : i + _PARAGRAPH_SENTENCES])
        for i in range(0, len(sentences), _PARAGRAPH_SENTENCES)
    ]
    return "\n\n".join(paragraphs)


class AnswerBook:
    """Answers for the scenario's models: the first matching rule, else synthetic prose.

    Rules with `malform` never answer text; they only spoil tool calls and JSON answers."""

    def __init__(self, rules: tuple[Rule, ...], tokens: TokenCounter) -> None:
        self._rules = tuple(rule for rule in rules if rule.malform is None)
        self._malform_rules = tuple(rule for rule in rules if rule.malform is not None)
        self._tokens = tokens

    def rule_for(self, model: ModelSpec, prompt: str) -> Rule | None:
        """The first answering rule that applies, if any."""
        return next((r for r in self._rules if r.applies(model.name, prompt)), None)

    def malformation(self, model: ModelSpec, prompt: str) -> str | None:
        """The malformation the first applying `malform` rule forces, if any."""
        rule = next((r for r in self._malform_rules if r.applies(model.name, prompt)), None)
        return None if rule is None else rule.malform

    def answer(
        self, model: ModelSpec, prompt: str, max_tokens: int | None, variant: str = ""
    ) -> Answer:
        limit = output_limit(model, max_tokens)
        rule = self.rule_for(model, prompt)
        if rule is not None:
            answer = cap_answer(self._tokens, rule.text_for(model.name), limit, rule.finish_reason)
            return replace(answer, unsure=rule.unsure)
        text = synthetic_text(self._tokens, model, prompt, variant)
        return cap_answer(self._tokens, text, limit)
