"""Lexical signals of a question that a sentence embedding blurs.

MiniLM puts "Is it safe to eat raw eggs?" and "Is it not safe to eat raw eggs?" at a cosine of
about 0.95, and "capital of France" next to "capital of Spain": an embedding encodes topic far
better than polarity, quantities or which entity is asked about. These helpers pull exactly
those details out of the text, so a verifier can compare them one by one. Everything here is
deterministic, regex and table based (no model, no I/O), and costs tens of microseconds per
question, which matters because it runs on the event loop for every candidate above the
threshold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _words_in_order(text: str) -> list[str]:
    return text.split()


# Numbers (with ordinal suffixes, decimals, dates, times and percentages), words in any script
# (with apostrophes, straight or curly), degree units, currency signs and sentence ends.
_TOKEN = re.compile(
    r"\d+(?:[.,/:]\d+)*(?:st|nd|rd|th)?%?|[^\W\d_][^\W\d_'\u2019]*(?:['\u2019][^\W\d_]+)*"
    r"|°[CcFf]\b|[$€£¥%.?!]"
)
_ORDINAL = re.compile(r"(?<=\d)(st|nd|rd|th)$")
_SENTENCE_END = frozenset(".?!")
_DIGITS = re.compile(r"\d")

# Negation cues, including the apostrophe-less spellings common in typed queries ("dont").
_NEGATIONS = _words(
    "non not no never none nobody nothing neither nor without cannot cant dont doesnt didnt "
    "isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt aint mustnt"
)
# Words whose swap flips the answer while leaving the topic (and the embedding) in place.
_OPPOSITE_PAIRS = (
    "best worst",
    "buy sell",
    "before after",
    "increase decrease",
    "advantage disadvantage",
    "maximum minimum",
    "max min",
    "more less",
    "most least",
    "start stop",
    "win lose",
    "hot cold",
    "first last",
    "add remove",
    "upload download",
    "import export",
    "male female",
    "men women",
    "cheap expensive",
    "cheapest expensive",
    "high low",
    "highest lowest",
    "open close",
    "enable disable",
    "lock unlock",
    "activate deactivate",
    "accept decline",
    "deposit withdraw",
    "receive send",
    "long short",
    "old new",
    "give receive",
    "given received",
    "gave received",
    "boy girl",
    "boys girls",
    "husband wife",
    "father mother",
    "son daughter",
)
_OPPOSITES: Mapping[str, str] = MappingProxyType(
    {a: b for pair in _OPPOSITE_PAIRS for a, b in (pair.split(), pair.split()[::-1])}
)

# Small number words are spelled out as often as written as digits ("two days" / "2 days").
_SMALL_NUMBERS = tuple(
    _words_in_order(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
    )
)
_NUMBER_WORDS: Mapping[str, str] = MappingProxyType(
    {word: str(value) for value, word in enumerate(_SMALL_NUMBERS)}
    | {"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100"}
    | {"thousand": "1000", "million": "1000000", "billion": "1000000000"}
)

_MONTHS: Mapping[str, str] = MappingProxyType(
    {
        name[:3]: name
        for name in _words(
            "january february march april may june july august september october november december"
        )
    }
)
_WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
_RELATIVE_DAYS = _words("today tomorrow yesterday tonight weekend")
_RELATIVE_PERIODS = _words("week month year")
_PERIOD_MODIFIERS = _words("this next last previous coming past")

# Unit spellings mapped to one canonical name per unit. "pound" stays its own unit because it
# is both a currency and a weight; "in" and "m" are left out because they are mostly words.
_UNIT_SPELLINGS: Mapping[str, str] = MappingProxyType(
    {
        "km": "km kms kilometer kilometers kilometre kilometres",
        "mile": "mi mile miles",
        "meter": "meter meters metre metres",
        "cm": "cm centimeter centimeters centimetre centimetres",
        "mm": "mm millimeter millimeters",
        "foot": "ft foot feet",
        "inch": "inch inches",
        "kg": "kg kgs kilo kilos kilogram kilograms",
        "gram": "g gram grams",
        "lb": "lb lbs",
        "pound": "pound pounds £ gbp",
        "ounce": "oz ounce ounces",
        "liter": "l liter liters litre litres",
        "gallon": "gallon gallons",
        "celsius": "celsius centigrade °c",
        "fahrenheit": "fahrenheit °f",
        "usd": "$ usd dollar dollars",
        "eur": "€ eur euro euros",
        "yen": "¥ jpy yen",
        "inr": "inr rupee rupees rs",
        "mph": "mph",
        "kph": "kph kmh",
        "percent": "% percent percentage",
        "gb": "gb gigabyte gigabytes",
        "mb": "mb megabyte megabytes",
        "tb": "tb terabyte terabytes",
    }
)
_UNITS: Mapping[str, str] = MappingProxyType(
    {s: unit for unit, spellings in _UNIT_SPELLINGS.items() for s in spellings.split()}
)

# Question words whose answers are of different kinds: a person, a time, a place, a reason, a
# quantity. "what", "how" and "which" are left out: paraphrases swap them freely ("What is the
# best way to ..." / "How do I ...").
_ANSWER_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "who": "person",
        "whom": "person",
        "whose": "person",
        "when": "time",
        "where": "place",
        "why": "reason",
    }
)
_QUANTITY_AFTER_HOW = _words("many much long old far often big tall")

# Words that give the content words around them roles: "boys about girls" is not "girls about
# boys". "and"/"or"/"with" swap freely ("men and women"), and "to"/"from"/"into" cost more
# paraphrases than they caught on the fit half ("a library to build X" / "build X to ...").
_RELATIONS = _words("about than against vs versus")
_ROLE_WINDOW = 3

STOPWORDS = _words(
    "a an the is are was were be been being am do does did doing have has had having i me "
    "my mine we us our you your he him his she her it its they them their this that these "
    "those what which who whom whose when where why how of in on at to for from by with "
    "about as into through over under between and or but if so than then there here can "
    "could should would will shall may might must get got any some all each every also "
    "just very really please tell know like want way one many much s t i'm it's what's im "
    "whats there's"
)


# Capitalised for other reasons than naming something the question is about.
_NOT_ENTITIES = STOPWORDS | _WEEKDAYS | frozenset(_MONTHS.values()) | frozenset(_UNITS)


def stem(word: str) -> str:
    """A deliberately crude suffix stripper: enough to match "cards"/"card", "using"/"use"."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    return word


def _normalise_number(token: str) -> str:
    token = _ORDINAL.sub("", token)
    if token.endswith("%"):
        return _normalise_number(token[:-1]) + "%"
    if re.fullmatch(r"\d{1,3}(,\d{3})+", token):
        token = token.replace(",", "")
    if re.fullmatch(r"\d+\.\d+", token):
        return str(float(token))
    return token.lstrip("0") or "0"


@dataclass(frozen=True)
class Signals:
    """What the checks compare, extracted once per question text."""

    text: str

    @cached_property
    def raw_tokens(self) -> tuple[str, ...]:
        return tuple(_TOKEN.findall(self.text))

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        return tuple(t.lower().replace("\u2019", "'") for t in self.raw_tokens)

    @cached_property
    def words(self) -> frozenset[str]:
        return frozenset(self.tokens)

    @cached_property
    def content(self) -> frozenset[str]:
        """Stemmed words that carry the question's topic (no stopwords, no negation)."""
        return frozenset(
            stem(t.removesuffix("'s"))
            for t in self.tokens
            if t[0].isalpha() and t not in STOPWORDS and not _is_negation(t)
        )

    @cached_property
    def relations(self) -> tuple[tuple[frozenset[str], str, frozenset[str]], ...]:
        """(content words before, relation word, content words after), a few words each side."""
        stems = [
            stem(t.removesuffix("'s")) if t[0].isalpha() and t not in STOPWORDS else ""
            for t in self.tokens
        ]
        found = []
        for i, token in enumerate(self.tokens):
            if token in _RELATIONS:
                left = [s for s in stems[:i] if s][-_ROLE_WINDOW:]
                right = [s for s in stems[i + 1 :] if s][:_ROLE_WINDOW]
                found.append((frozenset(left), token, frozenset(right)))
        return tuple(found)

    @cached_property
    def negated(self) -> bool:
        """Odd number of negation cues: "not never" reads as positive, one "not" as negative."""
        count = sum(1 for t in self.tokens if _is_negation(t))
        return count % 2 == 1

    @cached_property
    def numbers(self) -> frozenset[str]:
        """Normalised numbers, years excluded (those are dates)."""
        found = set()
        for token in self.tokens:
            if token in _NUMBER_WORDS:
                found.add(_NUMBER_WORDS[token])
            elif token[0].isdigit() and not _is_date_token(token):
                found.add(_normalise_number(token))
        # "1,000" and "1000" must land on the same side of the year/number line.
        return frozenset(n for n in found if not _is_date_token(n))

    @cached_property
    def dates(self) -> frozenset[str]:
        """Years, months, weekdays, numeric dates and relative days/periods."""
        found = set()
        tokens = self.tokens
        for i, token in enumerate(tokens):
            if token[0].isdigit():
                if _is_date_token(_normalise_number(token)):
                    found.add(_normalise_number(token))
            elif token in _WEEKDAYS or token in _RELATIVE_DAYS:
                found.add(token)
            elif token[:3] in _MONTHS and token in (_MONTHS[token[:3]], token[:3] + "."):
                found.add(_MONTHS[token[:3]])
            elif token in _RELATIVE_PERIODS and i and tokens[i - 1] in _PERIOD_MODIFIERS:
                found.add(f"{tokens[i - 1]} {token}")
        # "may" is far more often the verb than the month.
        found.discard("may")
        return frozenset(found)

    @cached_property
    def units(self) -> tuple[str, ...]:
        """Units in order of appearance (order matters: "km to miles" vs "miles to km")."""
        seen: list[str] = []
        for token in self.tokens:
            unit = _UNITS.get(token)
            if unit is not None and unit not in seen:
                seen.append(unit)
        return tuple(seen)

    @cached_property
    def entities(self) -> frozenset[str]:
        """Lower-cased words written capitalised, in capitals or camelCase mid-sentence."""
        found = set()
        previous = "."
        for raw in self.raw_tokens:
            lower = raw.lower()
            sentence_start = previous in _SENTENCE_END
            previous = raw
            if not raw[0].isalpha() or lower in _NOT_ENTITIES or _is_negation(lower):
                continue
            capitalised = raw[0].isupper() and not sentence_start
            # Inner capitals (iPhone), digits (A320), or a script without case (CJK terms).
            shaped = (
                any(c.isupper() for c in raw[1:])
                or bool(_DIGITS.search(raw))
                or not (raw.upper() != raw or raw.lower() != raw)
            )
            if capitalised or shaped:
                found.add(lower.removesuffix("'s"))
        return frozenset(found)

    @cached_property
    def answer_type(self) -> str:
        """The kind of answer asked for: person, time, place, reason, quantity, or ""."""
        tokens = self.tokens
        for i, token in enumerate(tokens):
            if token in _ANSWER_TYPES:
                return _ANSWER_TYPES[token]
            if token == "how" and i + 1 < len(tokens) and tokens[i + 1] in _QUANTITY_AFTER_HOW:
                return "quantity"
        return ""

    @cached_property
    def opposites(self) -> frozenset[str]:
        return frozenset(t for t in self.tokens if t in _OPPOSITES)


def _is_negation(token: str) -> bool:
    return token in _NEGATIONS or token.endswith("n't")


def _is_date_token(token: str) -> bool:
    """A year (1000-2099) or a numeric date such as 12/05/2020."""
    if re.fullmatch(r"(1\d{3}|20\d{2})", token):
        return True
    return bool(re.fullmatch(r"\d{1,4}[/.]\d{1,2}[/.]\d{2,4}", token))


def unit_of(word: str) -> str | None:
    """The canonical unit a word names ("kilometres" -> "km"), or None."""
    return _UNITS.get(word.lower())


def opposite_swapped(a: Signals, b: Signals) -> bool:
    """One side uses a word and the other its opposite, and neither uses both."""
    for word in a.opposites - b.opposites:
        if _OPPOSITES[word] in b.opposites and _OPPOSITES[word] not in a.opposites:
            return True
    return False


def roles_swapped(a: Signals, b: Signals) -> bool:
    """Around the same relation word, one word moves from before it to after it and another
    the other way: "Is a cat bigger than a dog?" / "Is a dog bigger than a cat?"."""
    for left_a, relation, right_a in a.relations:
        for left_b, other, right_b in b.relations:
            if relation == other and left_a & right_b and right_a & left_b:
                return True
    return False


def entity_substituted(a: Signals, b: Signals) -> bool:
    """Each side names something the other never mentions ("France" vs "Spain").

    Compared against all of the other side's words, lower-cased, so "donald trump" written
    without capitals still matches "Donald Trump".
    """
    return bool(a.entities - b.words) and bool(b.entities - a.words)


def entity_extra(a: Signals, b: Signals) -> int:
    """How many named things appear on one side only."""
    return len(a.entities - b.words) + len(b.entities - a.words)
