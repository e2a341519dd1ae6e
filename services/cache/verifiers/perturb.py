"""Hard negatives and same-kind paraphrases from real questions, by rule and reproducibly.

`changes(text)` lists edits that change what a question asks while keeping nearly every word
(swap an antonym, a number, a unit, an entity, a direction, am/pm, a weekday, a comparative,
a quantifier, a scope word, or add or drop a negation): look-alikes a cache must not serve
each other's answers. `keeps(text)` lists rewrites of the same kinds that keep the meaning
("8 pm" -> "8 p.m.", "3" -> "three", "US" -> "United States", "do not" -> "don't") plus
style rewrites that leave the kind's words alone: paraphrases that must still hit.

`perturb(text, seed)` picks at most one edit of each kind and direction with a random.Random
seeded from the seed and the text, so the same inputs give the same pairs on any machine. The
verifier's training (train_crossenc.py) and the look-alike set (benchmarks/lookalike_gen.py)
both use it. Tables: perturb_tables.py.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from services.cache.verifiers.perturb_tables import CHANGE, KEEP, KINDS, NEGATED_AUX, STYLE

_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w,]|\.\d)")
_YEAR = re.compile(r"^(19|20)\d\d$")
_CLOCK = re.compile(r"(?<![\w:])(\d{1,2}):(\d{2})(?![\w:])")
_SPACES = re.compile(r"\s+")
# "from A to B": A and B are one to three words; B ends at punctuation, the end, or a word
# that starts another phrase ("... to checking before Monday").
_FROM_TO = re.compile(
    r"\bfrom ((?:[\w$€£.]+ ){0,2}?[\w$€£.]+) to ((?:[\w$€£]+ ){0,2}?[\w$€£]+)"
    r"(?=[?.!,]|$| (?:before|after|on|in|at|by|for|with|without|using|via|and|so|if|when|"
    r"while|today|tomorrow|now|online|instead)\b)",
    re.IGNORECASE,
)
# An auxiliary that starts the question or comes right before its subject ("should I").
_AUXES = "|".join(NEGATED_AUX)
_AUX = re.compile(
    rf"^({_AUXES})\b|(?<!how )\b({_AUXES})(?= (?:I|you|we|they|it|he|she|there)\b)",
    re.IGNORECASE,
)
_NEGATED = re.compile(r"\b(" + "|".join(re.escape(n) for n in NEGATED_AUX.values()) + r")\b", re.I)
_FINAL_ON_OFF = re.compile(r"\b(on|off)(?=[?.!]?$)", re.IGNORECASE)
_THAN = re.compile(r"\b(\w+) (better|worse|bigger|smaller|more \w+|less \w+) than (\w+)\b")


@dataclass(frozen=True)
class Edit:
    """One edit of a question: its kind (perturb_tables.KINDS), the edited text, and whether
    the edit keeps the meaning (a paraphrase that must hit) or changes it (must miss)."""

    kind: str
    text: str
    keeps_meaning: bool
    rule: str  # what was replaced, e.g. "pm -> am"; for provenance and error analysis


@cache
def _pattern(phrase: str) -> re.Pattern[str]:
    # Case-sensitive for capitalised entries (entities, "AM"), case-insensitive otherwise.
    flags = 0 if phrase[:1].isupper() else re.IGNORECASE
    return re.compile(r"(?<![\w'])" + re.escape(phrase) + r"(?![\w'])", flags)


def _match_case(found: str, replacement: str) -> str:
    if found[:1].isupper() and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _tidy(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _swaps(text: str, table: Sequence[tuple[str, str]], kind: str, keeps: bool) -> list[Edit]:
    """One edit per table row that applies, replacing the first occurrence only."""
    edits: list[Edit] = []
    for raw_old, raw_new in table:
        old, new = raw_old.strip(), raw_new.strip()
        match = _pattern(old).search(text)
        # A swap to a word the question already has ("Python or Java" -> "Java or Java")
        # makes nonsense, not a look-alike.
        if match is None or (new and not keeps and _pattern(new).search(text)):
            continue
        edited = _tidy(
            text[: match.start()] + _match_case(match.group(), new) + text[match.end() :]
        )
        if edited != text and edited:
            edits.append(Edit(kind, edited, keeps, f"{old} -> {new or '(dropped)'}"))
    return edits


def _negation_changes(text: str) -> list[Edit]:
    """Add or drop a negation on the question's auxiliary; swap a final "on"/"off"."""
    edits: list[Edit] = []
    negated = _NEGATED.search(text)
    if negated is not None:
        positive = next(k for k, v in NEGATED_AUX.items() if v == negated.group().lower())
        edited = text[: negated.start()] + _match_case(negated.group(), positive)
        edits.append(Edit("negation", edited + text[negated.end() :], False, "n't -> (dropped)"))
    else:
        aux = _AUX.search(text)
        if aux is not None:
            word = aux.group()
            negative = _match_case(word, NEGATED_AUX[word.lower()])
            edited = text[: aux.start()] + negative + text[aux.end() :]
            edits.append(Edit("negation", edited, False, f"{word} -> {negative}"))
    final = _FINAL_ON_OFF.search(text)
    if final is not None:
        other = "off" if final.group().lower() == "on" else "on"
        edited = text[: final.start()] + other + text[final.end() :]
        edits.append(Edit("negation", edited, False, f"{final.group()} -> {other}"))
    return edits


def _other_number(value: str, rng: random.Random) -> str:
    digits = value.replace(",", "")
    number = int(digits) if digits.isdigit() else 0
    if _YEAR.match(digits):
        return str(number + rng.choice((-3, -2, -1, 1, 2, 5)))
    choices = {number + 1, number * 2, max(0, number - 1), number + 5, number * 10}
    choices.discard(number)
    return str(rng.choice(sorted(choices)))


def _number_changes(text: str, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = []
    clock = _CLOCK.search(text)
    if clock is not None:
        hour = (int(clock.group(1)) + rng.choice((1, 2, 3))) % 12 or 12
        edited = text[: clock.start()] + f"{hour}:{clock.group(2)}" + text[clock.end() :]
        edits.append(Edit("time", edited, False, f"{clock.group()} -> {hour}:{clock.group(2)}"))
    for match in _NUMBER.finditer(text):
        if clock is not None and clock.start() <= match.start() < clock.end():
            continue
        value = match.group(1)
        new = _other_number(value, rng)
        kind = "date" if _YEAR.match(value.replace(",", "")) else "number"
        edited = text[: match.start(1)] + new + text[match.end(1) :]
        edits.append(Edit(kind, edited, False, f"{value} -> {new}"))
        break
    return edits


def _order_changes(text: str) -> list[Edit]:
    """Direction and role swaps: "from A to B" -> "from B to A", "A better than B" -> "B ..."."""
    edits: list[Edit] = []
    found = _FROM_TO.search(text)
    if found is not None and found.group(1).lower() != found.group(2).lower():
        a, b = found.group(1), found.group(2)
        edited = text[: found.start()] + f"from {b} to {a}" + text[found.end() :]
        edits.append(Edit("direction", edited, False, "from A to B -> from B to A"))
    than = _THAN.search(text)
    if than is not None and than.group(1).lower() != than.group(3).lower():
        a, rel, b = than.groups()
        edited = text[: than.start()] + f"{b} {rel} than {a}" + text[than.end() :]
        edits.append(Edit("direction", edited, False, "A than B -> B than A"))
    return edits


def _order_keeps(text: str) -> list[Edit]:
    found = _FROM_TO.search(text)
    if found is None:
        return []
    a, b = found.group(1), found.group(2)
    edited = text[: found.start()] + f"to {b} from {a}" + text[found.end() :]
    return [Edit("direction", edited, True, "from A to B -> to B from A")]


def changes(text: str, rng: random.Random | None = None) -> list[Edit]:
    """Every meaning-changing edit the rules find, in KINDS order."""
    rng = rng or random.Random(0)
    edits = [e for kind, table in CHANGE.items() for e in _swaps(text, table, kind, False)]
    edits += _negation_changes(text) + _number_changes(text, rng) + _order_changes(text)
    return sorted(edits, key=lambda e: KINDS.index(e.kind))


def keeps(text: str) -> list[Edit]:
    """Every meaning-keeping rewrite the rules find: same-kind ones, then style ones (kind
    "style", which callers relabel with the kind whose words they leave in place)."""
    edits = [e for kind, table in KEEP.items() for e in _swaps(text, table, kind, True)]
    edits += _order_keeps(text)
    edits = sorted(edits, key=lambda e: KINDS.index(e.kind))
    return edits + _swaps(text, STYLE, "style", True)


def seeded(seed: int, text: str) -> random.Random:
    """A generator seeded by the seed and the text, so no input's result depends on another's."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def perturb(text: str, seed: int = 0) -> list[Edit]:
    """At most one meaning-changing and one meaning-keeping edit per kind, chosen by a
    generator seeded with (seed, text). A kind's keeping edit is a same-kind rewrite if one
    applies, else a style rewrite that leaves that kind's words in place."""
    rng = seeded(seed, text)
    changed = changes(text, rng)
    kept = keeps(text)
    style = [e for e in kept if e.kind == "style"]
    picked: list[Edit] = []
    for kind in KINDS:
        of_kind = [e for e in changed if e.kind == kind]
        if not of_kind:
            continue
        picked.append(rng.choice(of_kind))
        same = [e for e in kept if e.kind == kind]
        if same:
            picked.append(rng.choice(same))
        elif style:
            choice = rng.choice(style)
            picked.append(Edit(kind, choice.text, True, choice.rule))
    return picked
