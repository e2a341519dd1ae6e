"""Vetoes: the words that decide an answer, compared one category at a time.

A look-alike differs from the stored question in one word that matters ("8 pm" / "8 am",
"faster" / "slower", "before" / "during", "from Chicago to Madrid" / "from Madrid to
Chicago"); a paraphrase says the same things in other words ("8 p.m.", "quicker", "prior to",
"to Madrid from Chicago"). `vetoes(asked, stored)` first rewrites both questions into one
spelling (number words to digits, unit, day and time synonyms to one name), then reads each
category of deciding word on both sides and names the categories where the two differ. Any
named category rejects the candidate whatever a model would score it; everything else is left
to the learned verifier (guarded.py).

The checks of text.py and features.py (negation, opposites, role order, numbers, dates, units,
named entities, answer type) run on the rewritten text; the tables here add what they do not
read: times of day, durations, currencies, comparatives and superlatives, quantifiers, scope
words, directions and particles, family roles, arithmetic, and the order of "from A to B".
Deterministic, table and regex based, tens of microseconds per question.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cached_property
from types import MappingProxyType

from services.cache.verifiers.features import CHECKS, mismatches
from services.cache.verifiers.text import STOPWORDS, Signals, stem, unit_of

# Spellings rewritten to one form before anything is compared. Case-insensitive unless the
# pattern starts with a capital (abbreviated weekdays and months are also ordinary words).
_REWRITES: tuple[tuple[str, str], ...] = (
    (r"\ba\.m\.?(?!\w)", "am"),
    (r"\bp\.m\.?(?!\w)", "pm"),
    (r"(?<=\d)(am|pm)\b", r" \1"),
    (r"\bnoon\b", "12 pm"),
    (r"\bmidday\b", "12 pm"),
    (r"\bmidnight\b", "12 am"),
    (r"\bthis evening\b", "tonight"),
    (r"\bthe next day\b", "tomorrow"),
    (r"\bthis day\b", "today"),
    (r"\b(today|tomorrow|yesterday|tonight)['\u2019]s\b", r"\1"),
    (r"\bprior to\b", "before"),
    (r"\bfollowing\b", "after"),
    (r"\btill\b", "until"),
    (r"\bwith no\b", "without"),
    (r"\bless expensive\b", "cheaper"),
    (r"\bleast expensive\b", "cheapest"),
    (r"\bmore expensive\b", "pricier"),
    (r"\bmost expensive\b", "priciest"),
    (r"\bnot ever\b", "never"),
    (r"\bno one\b", "nobody"),
    (r"\ba hundred\b", "100"),
    (r"\ba thousand\b", "1000"),
    (r"\bmiles per hour\b", "mph"),
    (r"\bdegrees? (celsius|fahrenheit)\b", r"\1"),
    (r"\b(\d+) ?c\b", r"\1 celsius"),
    (r"\b(\d+) ?f\b", r"\1 fahrenheit"),
    (r"\bus dollars?\b", "usd"),
    (r"\bUnited States( of America)?\b", "USA"),
    (r"\bUS\b", "USA"),
    (r"\bUnited Kingdom\b", "UK"),
    (r"\bNew York City\b", "NYC"),
    (r"\bEuropean Union\b", "EU"),
    (r"\bUnited Nations\b", "UN"),
    (r"\bTues?\b\.?", "tuesday"),
    (r"\bMon\b\.?", "monday"),
    (r"\bWed\b\.?", "wednesday"),
    (r"\bThu(rs?)?\b\.?", "thursday"),
    (r"\bFri\b\.?", "friday"),
    (r"\bSat\b\.?", "saturday"),
    (r"\bSun\b\.?", "sunday"),
    (r"\bSept?\b\.?", "september"),
    (r"\bJan\b\.?", "january"),
    (r"\bFeb\b\.?", "february"),
    (r"\bOct\b\.?", "october"),
    (r"\bNov\b\.?", "november"),
    (r"\bDec\b\.?", "december"),
)
_COMPILED = tuple(
    (re.compile(p, 0 if p.lstrip("\\b(")[:1].isupper() else re.IGNORECASE), r) for p, r in _REWRITES
)
# For each rewrite, words one of which its match always contains, lower-cased (empty: run it
# always): a pattern whose words are absent from the text cannot match, so its pass is skipped.
# Checked on ASCII texts only, where lower() is exactly what IGNORECASE folds (elsewhere the
# dotless i, U+0131, matches "i", and U+0130 lowers to two characters). The 46 passes cost
# ~0.1 ms a question, and few of them match.
_HINTS: tuple[tuple[str, ...], ...] = (
    ("a.m",), ("p.m",), ("am", "pm"), ("noon",), ("midday",), ("midnight",),
    ("this evening",), ("the next day",), ("this day",), ("'s", "\u2019s"), ("prior to",),
    ("following",), ("till",), ("with no",), ("less expensive",), ("least expensive",),
    ("more expensive",), ("most expensive",), ("not ever",), ("no one",), ("a hundred",),
    ("a thousand",), ("miles per hour",), ("degree",), (), (), ("us dollar",),
    ("united states",), ("us",), ("united kingdom",), ("new york city",), ("european union",),
    ("united nations",), ("tue",), ("mon",), ("wed",), ("thu",), ("fri",), ("sat",), ("sun",),
    ("sep",), ("jan",), ("feb",), ("oct",), ("nov",), ("dec",),
)  # fmt: skip


def normalise(text: str) -> str:
    """The question with its deciding words in one spelling (see _REWRITES)."""
    ascii_only = text.isascii()
    lowered = text.lower()
    for (pattern, replacement), hints in zip(_COMPILED, _HINTS, strict=True):
        if ascii_only and hints and not any(hint in lowered for hint in hints):
            continue
        rewritten = pattern.sub(replacement, text)
        if rewritten != text:
            text, lowered = rewritten, rewritten.lower()
    return " ".join(text.split())


def _table(groups: str) -> Mapping[str, str]:
    """'a b c, d e' -> every word mapped to its group's first word (a, a, a, d, d)."""
    table = {}
    for group in groups.split(","):
        words = group.split()
        table.update({w.replace("_", " "): words[0] for w in words})
    return MappingProxyType(table)


# Category -> word -> canonical value. Two questions that both use a category's words must use
# the same values; one side using none is rewording ("cheapest way" / "how to go cheaply").
_CATEGORIES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "time": _table("am morning, pm evening afternoon tonight night"),
        "duration": _table(
            "second seconds secs sec, minute minutes mins min, hour hours hrs hr, "
            "day days, week weeks, month months, year years"
        ),
        "currency": _table(
            "usd dollar dollars $, eur euro euros €, gbp £, yen jpy ¥, inr rupee rupees, "
            "peso pesos, yuan rmb, ruble rubles, franc francs, won, bitcoin btc"
        ),
        "comparative": _table(
            "better, best top, worse, worst, faster quicker, fastest quickest, slower, "
            "slowest, cheaper, cheapest, pricier, priciest, bigger larger, biggest largest, "
            "smaller tinier, smallest tiniest, higher, highest, lower, lowest, longer, longest, "
            "shorter, shortest, older, oldest, younger, youngest, richer, richest, poorer, "
            "poorest, stronger, strongest, weaker, weakest, easier, easiest, harder, hardest, "
            "heavier, heaviest, lighter, lightest, hotter, hottest, colder, coldest, warmer, "
            "warmest, greater, greatest, lesser, safer, safest, healthier, healthiest"
        ),
        "quantifier": _table(
            "all every each everyone everybody everything always, some, "
            "any anyone anybody anything, many, few, most, none nobody nothing, never, "
            "often frequently, rarely seldom, sometimes, usually, both, neither, either, several"
        ),
        "scope": _table(
            "before, after, during throughout while, until, since, inside within, outside, "
            "above, below, over, under, beyond, including, excluding except, first, last, "
            "early earlier, late later, domestic, international abroad, online, offline, "
            "daily, weekly, monthly, yearly annually annual"
        ),
        "direction": _table(
            "north northern, south southern, east eastern, west western, left, right, "
            "incoming inbound, outgoing outbound, upstairs, downstairs, forward forwards, "
            "backward backwards, lend, borrow, teach, learn, debit, credit, deposit, withdraw, "
            "sender, recipient receiver, employer, employee, parent, child, buyer, seller, "
            "send, request receive, into, top, bottom"
        ),
        "family": _table(
            "mom mother mum mommy, dad father daddy, brother, sister, wife, husband, son, "
            "daughter, friend, boss, grandma grandmother, grandpa grandfather, aunt, uncle, "
            "cousin, boyfriend, girlfriend, partner, wife_and_husband"
        ),
        "operation": _table(
            "plus add added, minus subtract subtracted, times multiplied, divided over_by"
        ),
    }
)
# Particles whose swap reverses an action ("turn it on" / "off", "log in" / "out"): one side
# has the word and lacks its opposite, the other the reverse. Too common to compare as a set.
# Categories whose word on one side only still narrows or shifts the question ("at 8" /
# "at 8 pm", "tourists" / "all tourists", "after a fight" / "a fight", "call" / "call mom");
# for the others a word on one side only is usually rewording (fit half, benchmarks/README.md).
_ONE_SIDED = frozenset(("time", "quantifier", "scope", "family"))
# ... except the quantifiers that paraphrases add and drop freely ("What are some good books?"
# / "What are good books?", "how many").
_WEAK = frozenset(("some", "any", "many", "several"))
_PARTICLES = (("on", "off"), ("in", "out"), ("up", "down"), ("into", "out"))
# Opposites text.py's table lacks, compared the same way.
_ANTONYMS = (
    ("accepted", "declined"), ("accept", "decline"), ("accepted", "rejected"), ("take", "avoid"),
    ("open", "closed"), ("allowed", "banned"), ("allow", "block"), ("approved", "denied"),
    ("include", "exclude"), ("pass", "fail"), ("true", "false"), ("right", "wrong"),
    ("safe", "dangerous"), ("good", "bad"), ("love", "hate"), ("arrive", "depart"),
    ("arrival", "departure"), ("success", "failure"), ("succeeded", "failed"), ("win", "lose"),
    ("positive", "negative"), ("rise", "fall"), ("push", "pull"), ("remember", "forget"),
)  # fmt: skip
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non")
_BEFORE_AM = frozenset(("the", "in", "at", "by", *map(str, range(13))))
_WORD = re.compile(r"[a-z0-9$€£¥]+(?:'[a-z]+)?")
_TARGET = re.compile(r"\b(?:to|in|into) (\S+?)\??$|\bhow many (\w+)")
_FROM_TO = re.compile(r"\b(from|to)\s+((?:my |the |a |an |his |her |our |their )?[\w$.-]+)")


@dataclass(frozen=True)
class Reading:
    """One question as the vetoes read it; built once per text (cheap, cached properties)."""

    text: str

    @cached_property
    def normalised(self) -> str:
        return normalise(self.text)

    @cached_property
    def signals(self) -> Signals:
        return Signals(self.normalised)

    @cached_property
    def words(self) -> tuple[str, ...]:
        return tuple(_WORD.findall(self.normalised.lower()))

    @cached_property
    def categories(self) -> Mapping[str, frozenset[str]]:
        words = self.words
        phrases = set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}
        phrases.discard("am")  # the verb too ("I am"): a time only after a number or "the"
        # The question's phrases looked up in each table (a few dozen), not the other way.
        found = {
            name: frozenset(table[p] for p in phrases if p in table)
            for name, table in _CATEGORIES.items()
        }
        if any(w == "am" and i and words[i - 1] in _BEFORE_AM for i, w in enumerate(words)):
            found["time"] = found["time"] | {"am"}
        return MappingProxyType(found)

    @cached_property
    def target_unit(self) -> str | None:
        """The unit asked for: after "to", "in" or "into", or after "how many"."""
        match = _TARGET.search(self.normalised.lower())
        return unit_of(match.group(1) or match.group(2)) if match else None

    @cached_property
    def roles(self) -> Mapping[str, str]:
        """The word after "from" and after "to" (its determiner kept): the ends of a move."""
        found: dict[str, str] = {}
        for match in _FROM_TO.finditer(self.normalised.lower()):
            found.setdefault(match.group(1), match.group(2))
        return MappingProxyType(found)


def _swapped(a: Reading, b: Reading, table: tuple[tuple[str, str], ...]) -> bool:
    """One side has x and not y, the other y and not x, for some (x, y) of the table."""
    wa, wb = set(a.words), set(b.words)
    for x, y in table:
        if (x in wa and y not in wa and y in wb and x not in wb) or (
            y in wa and x not in wa and x in wb and y not in wb
        ):
            return True
    return False


def _prefix_negated(a: Reading, b: Reading) -> bool:
    """One side has a word, the other the same word with a negating prefix ("safe"/"unsafe")."""
    only_a, only_b = set(a.words) - set(b.words), set(b.words) - set(a.words)
    for x, y in ((only_a, only_b), (only_b, only_a)):
        for word in x:
            if any(p + word in y for p in _NEGATING_PREFIXES):
                return True
    return False


def _roles_reversed(a: Reading, b: Reading) -> bool:
    """An end of the move changes sides: "from A to B" / "from B to A", "send to Anna" /
    "request from Anna", "travel to Ireland" / "travel from Ireland"; "to B from A" keeps."""
    ra, rb = a.roles, b.roles
    for x, y in (("from", "to"), ("to", "from")):
        end = ra.get(x)
        if end is not None and rb.get(y) == end and rb.get(x) != end:
            return True
    return False


def _units_differ(a: Reading, b: Reading) -> bool:
    """Two different unit sequences, unless they are the same units converted the same way
    ("How many miles is 42 km?" / "Convert 42 kilometers to miles": both ask for miles)."""
    ua, ub = a.signals.units, b.signals.units
    if not (ua and ub and ua != ub):
        return False
    return set(ua) != set(ub) or a.target_unit is None or a.target_unit != b.target_unit


def _order_swapped(a: Reading, b: Reading) -> bool:
    """Same words, two of them swapped, with no from/to to say the roles stayed ("Does Tom owe
    Mary" / "Does Mary owe Tom"); a reordering that moves a phrase keeps relative order."""
    if sorted(a.words) != sorted(b.words) or a.words == b.words:
        return False
    if a.roles and a.roles == b.roles:
        return False
    diff = [i for i, (x, y) in enumerate(zip(a.words, b.words, strict=True)) if x != y]
    return len(diff) == 2


def _equivalent(x: str, y: str) -> bool:
    """Two words any table here or in text.py reads as the same value ("mom" / "mother")."""
    if stem(x) == stem(y) or (unit_of(x) is not None and unit_of(x) == unit_of(y)):
        return True
    sx, sy = Signals(x), Signals(y)
    if (sx.numbers and sx.numbers == sy.numbers) or (sx.negated and sy.negated):
        return True  # "two" / "2", "can't" / "cannot"
    return any(t.get(x) is not None and t.get(x) == t.get(y) for t in _CATEGORIES.values())


def _substituted(a: Reading, b: Reading) -> bool:
    """Everything alike but one content word swapped for another that is no equivalent of it
    ("the capital of Canada" / "the currency of Canada", "send it to John" / "to Sam"): a
    rewording changes more than one word, a look-alike exactly the one that matters."""
    # Such a pair has the same words in the same places but one, so a pair that has not cannot
    # pass; checked first, as it is most pairs and much cheaper than the matcher.
    if len(a.words) != len(b.words):
        return False
    if sum(x != y for x, y in zip(a.words, b.words, strict=True)) != 1:
        return False
    ops = [o for o in SequenceMatcher(a=a.words, b=b.words, autojunk=False).get_opcodes()
           if o[0] != "equal"]  # fmt: skip
    if len(ops) != 1 or ops[0][0] != "replace":
        return False
    _, i1, i2, j1, j2 = ops[0]
    old, new = a.words[i1:i2], b.words[j1:j2]
    if len(old) != 1 or len(new) != 1 or old[0] in STOPWORDS or new[0] in STOPWORDS:
        return False
    return not _equivalent(old[0], new[0])


VETOES = (
    *CHECKS,
    "time",
    "duration",
    "currency",
    "comparative",
    "quantifier",
    "scope",
    "direction",
    "family",
    "operation",
    "particle",
    "antonym",
    "prefix_negation",
    "roles_reversed",
    "order",
    "substitution",
)


def reading_vetoes(a: Reading, b: Reading) -> tuple[str, ...]:
    """Names of the categories where the two questions differ (VETOES order); () if none."""
    if a.normalised.lower() == b.normalised.lower():
        return ()
    found: list[str] = []
    rules = tuple(r for r in mismatches(a.signals, b.signals) if r != "unit" or _units_differ(a, b))
    found += rules
    for name in _CATEGORIES:
        ca, cb = a.categories[name], b.categories[name]
        if ca != cb and ((ca and cb) or (name in _ONE_SIDED and (ca | cb) - _WEAK)):
            found.append(name)
    checks = (
        ("particle", lambda a, b: _swapped(a, b, _PARTICLES)),
        ("antonym", lambda a, b: _swapped(a, b, _ANTONYMS)),
        ("prefix_negation", _prefix_negated),
        ("roles_reversed", _roles_reversed),
        ("order", _order_swapped),
        ("substitution", _substituted),
    )
    found += [name for name, check in checks if check(a, b)]
    return tuple(found)


def vetoes(asked: str, stored: str) -> tuple[str, ...]:
    return reading_vetoes(Reading(asked), Reading(stored))
