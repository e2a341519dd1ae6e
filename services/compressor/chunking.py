"""Splits prompt text into the units that extractive compression keeps or drops.

Markdown structure decides the units. A fenced code block or a table is one unit, because half a
function or half a table misleads more than it helps. A list item and a heading are one unit
each. Prose paragraphs are split into sentences by a rule-based splitter in the spirit of Punkt
(Kiss & Strunk, 2006) without its trained model: a full stop ends a sentence unless the token
before it is a known abbreviation or an initial, or the next word starts in lower case.

Every chunk keeps the whitespace that preceded it and the block (paragraph, list, code block,
table) it came from, so `join_chunks` can rebuild readable text from any ordered subset, and
joining all chunks reproduces the original text minus trailing whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

# A prose "sentence" longer than this that spans several lines is more likely a log, a data dump
# or a poem than one sentence; it is split at line breaks so that selection stays fine-grained.
MAX_SENTENCE_CHARS = 1200
# A line that is still longer has no usable boundary at all (HTML on one line, minified data):
# it is cut between words into runs of about this many characters (~100 tokens).
RUN_CHARS = 400

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_LIST_ITEM = re.compile(r"^\s{0,12}(?:[-*+]|\d{1,9}[.)])\s+\S")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
# Candidate sentence ends: terminal punctuation, optional closing quotes or brackets, then space.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
_NEXT_CHAR = re.compile(r"\s*(\S)")
_WORD_RUN = re.compile(r"\S+")
_INITIAL = re.compile(r"^[A-Z]\.$")
# Abbreviations that (almost) never end a sentence, even before a capitalised word
# ("Dr. Smith", "e.g. Paris"). Words like "etc." or "Inc." often do end one, so they are left
# to the capitalisation rule.
_NON_TERMINAL = frozenset(
    {
        "mr.", "mrs.", "ms.", "dr.", "prof.", "sr.", "jr.", "st.", "mt.", "rev.", "hon.",
        "gen.", "col.", "capt.", "lt.", "sgt.", "gov.", "sen.", "rep.", "pres.",
        "e.g.", "i.e.", "cf.", "vs.", "viz.", "approx.", "ca.", "al.", "op.", "ed.",
    }
)  # fmt: skip
# Abbreviations that only abbreviate before a number ("No. 5", "p. 12"); before a capitalised
# word "no." is more likely the word "no" ending a sentence.
_BEFORE_NUMBER = frozenset(
    {"no.", "nos.", "vol.", "pp.", "p.", "ch.", "sec.", "art.", "fig.", "figs.", "eq."}
)


class ChunkKind(StrEnum):
    SENTENCE = "sentence"
    LIST_ITEM = "list_item"
    HEADING = "heading"
    CODE = "code"
    TABLE = "table"

    @property
    def structural(self) -> bool:
        """Code blocks and tables, which are only ever kept or dropped whole."""
        return self in (ChunkKind.CODE, ChunkKind.TABLE)


@dataclass(frozen=True)
class Chunk:
    """One unit of text, in original order."""

    index: int
    # Chunks of the same paragraph, list, code block or table share a block number.
    block: int
    kind: ChunkKind
    text: str
    # Whitespace between the previous chunk and this one in the original text.
    prefix: str


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: ChunkKind


def split_chunks(text: str) -> list[Chunk]:
    """Splits text into chunks; see the module docstring for the rules."""
    lines = [(m.start(), m.group()) for m in _LINE.finditer(text)]
    chunks: list[Chunk] = []
    previous_end = 0
    for block, spans in enumerate(_blocks(text, lines)):
        for span in spans:
            start, end = _trim(text, span.start, span.end)
            if start == end:
                continue
            chunks.append(
                Chunk(len(chunks), block, span.kind, text[start:end], text[previous_end:start])
            )
            previous_end = end
    return chunks


def join_chunks(chunks: Iterable[Chunk]) -> str:
    """Rebuilds text from an ordered subset of one text's chunks.

    Adjacent chunks keep their original separator. Across a gap, a chunk that starts a new block
    gets a paragraph break so that sentences of different paragraphs never run together.
    """
    parts: list[str] = []
    previous: Chunk | None = None
    for chunk in chunks:
        if previous is None:
            parts.append(chunk.prefix if chunk.index == 0 else "")
        elif chunk.index == previous.index + 1 or chunk.block == previous.block:
            parts.append(chunk.prefix)
        else:
            parts.append(chunk.prefix if chunk.prefix.count("\n") >= 2 else "\n\n")
        parts.append(chunk.text)
        previous = chunk
    return "".join(parts)


def split_sentences(text: str) -> list[str]:
    """Splits prose into sentences, keeping abbreviations, initials and decimals intact."""
    return [text[start:end] for start, end in _sentence_bounds(text, 0, len(text))]


def _blocks(text: str, lines: Sequence[tuple[int, str]]) -> Iterable[list[_Span]]:
    """Yields the chunk spans of each block, one block at a time."""
    i = 0
    while i < len(lines):
        start, line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _FENCE.match(line):
            j = _fence_end(lines, i)
            yield [_Span(start, _line_end(lines, j), ChunkKind.CODE)]
        elif _HEADING.match(line):
            j = i
            yield [_Span(start, _line_end(lines, j), ChunkKind.HEADING)]
        elif _is_table_start(lines, i):
            j = _extend(lines, i, lambda ln: "|" in ln)
            yield [_Span(start, _line_end(lines, j), ChunkKind.TABLE)]
        elif _LIST_ITEM.match(line):
            j = _extend(lines, i, _continues_list)
            yield _list_items(lines, i, j)
        else:
            j = _prose_end(lines, i)
            yield _sentence_spans(text, start, _line_end(lines, j))
        i = j + 1


def _line_end(lines: Sequence[tuple[int, str]], j: int) -> int:
    start, line = lines[j]
    return start + len(line)


def _extend(lines: Sequence[tuple[int, str]], i: int, keep: Callable[[str], bool]) -> int:
    """Index of the last line of the run starting at i whose lines satisfy keep."""
    j = i
    while j + 1 < len(lines) and lines[j + 1][1].strip() and keep(lines[j + 1][1]):
        j += 1
    return j


def _fence_end(lines: Sequence[tuple[int, str]], i: int) -> int:
    """Index of the closing fence line, or the last line when the fence is never closed."""
    opening = _FENCE.match(lines[i][1])
    assert opening is not None
    marker = opening.group(1)
    closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
    for j in range(i + 1, len(lines)):
        if closing.match(lines[j][1]):
            return j
    return len(lines) - 1


def _is_table_start(lines: Sequence[tuple[int, str]], i: int) -> bool:
    line = lines[i][1]
    if "|" not in line or i + 1 >= len(lines):
        return False
    following = lines[i + 1][1]
    if _TABLE_DELIMITER.match(following):
        return True
    # Tables without a delimiter row still show as a run of pipe-led lines.
    return line.lstrip().startswith("|") and following.lstrip().startswith("|")


def _continues_list(line: str) -> bool:
    """A list goes on with further items and with indented continuation lines."""
    if _FENCE.match(line) or _HEADING.match(line):
        return False
    return bool(_LIST_ITEM.match(line)) or line[:1] in {" ", "\t"}


def _list_items(lines: Sequence[tuple[int, str]], i: int, j: int) -> list[_Span]:
    starts = [k for k in range(i, j + 1) if _LIST_ITEM.match(lines[k][1])]
    ends = [*(k - 1 for k in starts[1:]), j]
    return [
        _Span(lines[s][0], _line_end(lines, e), ChunkKind.LIST_ITEM)
        for s, e in zip(starts, ends, strict=True)
    ]


def _prose_end(lines: Sequence[tuple[int, str]], i: int) -> int:
    """Index of the last line of a prose paragraph: it ends at a blank line or a structure."""
    j = i
    while j + 1 < len(lines):
        line = lines[j + 1][1]
        structure = (
            _FENCE.match(line) or _HEADING.match(line) or _LIST_ITEM.match(line)
        ) is not None
        if not line.strip() or structure or _is_table_start(lines, j + 1):
            break
        j += 1
    return j


def _sentence_spans(text: str, start: int, end: int) -> list[_Span]:
    spans: list[_Span] = []
    for s, e in _sentence_bounds(text, start, end):
        if e - s <= MAX_SENTENCE_CHARS:
            spans.append(_Span(s, e, ChunkKind.SENTENCE))
            continue
        for line in _LINE.finditer(text[s:e]):
            ls, le = s + line.start(), s + line.end()
            if le - ls <= MAX_SENTENCE_CHARS:
                spans.append(_Span(ls, le, ChunkKind.SENTENCE))
            else:
                spans.extend(_word_runs(text, ls, le))
    return spans


def _word_runs(text: str, start: int, end: int) -> list[_Span]:
    """Cuts a long line with no sentence ends (markup, data) into runs of whole words."""
    spans: list[_Span] = []
    run_start = run_end = -1
    for word in _WORD_RUN.finditer(text, start, end):
        if run_start < 0:
            run_start = word.start()
        elif word.end() - run_start > RUN_CHARS:
            spans.append(_Span(run_start, run_end, ChunkKind.SENTENCE))
            run_start = word.start()
        run_end = word.end()
    if run_start >= 0:
        spans.append(_Span(run_start, run_end, ChunkKind.SENTENCE))
    return spans


def _sentence_bounds(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences in text[start:end]."""
    bounds: list[tuple[int, int]] = []
    segment = text[start:end]
    begin = 0
    for match in _SENTENCE_END.finditer(segment):
        if _ends_sentence(segment, match):
            bounds.append((start + begin, start + match.end()))
            begin = match.end()
    if segment[begin:].strip():
        bounds.append((start + begin, end))
    return [_trim(text, s, e) for s, e in bounds]


def _ends_sentence(segment: str, match: re.Match[str]) -> bool:
    # Offsets, not slices: slicing the rest of a long paragraph at every full stop is quadratic.
    following = _NEXT_CHAR.match(segment, match.end())
    if following is None or following.group(1).islower():
        # A lower-case continuation ("e.g. the", "etc. and", "Yahoo! is") is the same sentence;
        # at the very end of the segment the remainder closes the sentence anyway.
        return False
    if not match.group().startswith("."):
        return True
    token_start = match.start()
    while token_start > 0 and not segment[token_start - 1].isspace():
        token_start -= 1
    raw = segment[token_start : match.end()].lstrip("\"'(\u201c\u2018[")
    word = raw.lower()
    if word in _NON_TERMINAL or _INITIAL.match(raw):
        return False
    return not (word in _BEFORE_NUMBER and following.group(1).isdigit())


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrows [start, end) to exclude surrounding whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
