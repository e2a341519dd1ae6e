"""Duplicate and boilerplate removal with whitespace normalisation: cheap and question-safe.

Long prompts assembled by retrieval or by pasting often hold the same passage twice (two
retrieved chunks that overlap, a document quoted again in a later turn) and page furniture
repeated on every page ("Confidential - do not distribute", "Page 3 of 40"). Dropping a later
copy loses nothing the first copy does not still say, so this runs before the lossy strategies
and on its own as the "dedup" strategy.

Rules, in order, over the whole conversation (earlier turns first):
* Fenced code blocks are copied verbatim: whitespace and repeats are meaningful in code.
* Outside code, runs of spaces and tabs inside a line become one space (indentation is kept,
  since it nests lists), trailing spaces go, and three or more line breaks become two.
* A paragraph (text between blank lines) of at least MIN_PARAGRAPH_CHARS that already appeared,
  compared case- and whitespace-insensitively, is dropped.
* A line of at least MIN_BOILERPLATE_WORDS words seen BOILERPLATE_REPEATS times or more across
  the conversation is boilerplate: its first occurrence stays, the others go. Table rows are
  exempt (a table may legitimately repeat a row).
* The last paragraph of the last user turn, where the question is, is never dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from services.compressor.strategies import StrategyResult
from services.compressor.verbatim import verbatim_only, with_content
from shared.chat import Role, Turn

MIN_PARAGRAPH_CHARS = 40
MIN_BOILERPLATE_WORDS = 3
BOILERPLATE_REPEATS = 3

_FENCE = re.compile(r"^\s*(```|~~~)")
_SPACES = re.compile(r"(?<=\S)(?:[ \t]{2,}|\t)")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANKS = re.compile(r"\n{3,}")


@dataclass
class _Tally:
    """What was dropped, for the strategy's one-line account."""

    paragraphs: int = 0
    lines: int = 0


def _segments(text: str) -> Iterator[tuple[bool, str]]:
    """(is_code, text) pieces in order; an unclosed fence runs to the end."""
    lines = text.split("\n")
    start = 0
    inside = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            if not inside and i > start:
                yield False, "\n".join(lines[start:i])
            if inside:
                yield True, "\n".join(lines[start : i + 1])
            start = i if not inside else i + 1
            inside = not inside
    if start < len(lines):
        yield inside, "\n".join(lines[start:])


def _normalise(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("", text)
    return _BLANKS.sub("\n\n", text)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _boilerplate_lines(turns: Sequence[Turn]) -> set[str]:
    counts: Counter[str] = Counter()
    for turn in turns:
        for is_code, piece in _segments(turn.content):
            if is_code:
                continue
            for line in piece.split("\n"):
                key = _key(line)
                if len(key.split()) >= MIN_BOILERPLATE_WORDS and not key.startswith("|"):
                    counts[key] += 1
    return {key for key, count in counts.items() if count >= BOILERPLATE_REPEATS}


class _Deduplicator:
    def __init__(self, boilerplate: set[str]) -> None:
        self._boilerplate = boilerplate
        self._seen_paragraphs: set[str] = set()
        self._seen_lines: set[str] = set()
        self.tally = _Tally()

    def prose(self, text: str, protect_last: bool) -> str:
        paragraphs = _normalise(text).split("\n\n")
        kept = []
        for n, paragraph in enumerate(paragraphs):
            protected = protect_last and n == len(paragraphs) - 1
            lines = [line for line in paragraph.split("\n") if protected or self._keep_line(line)]
            # Compared without its boilerplate, so a page header glued on does not hide a repeat.
            key = _key("\n".join(x for x in lines if _key(x) not in self._boilerplate))
            if not protected and len(key) >= MIN_PARAGRAPH_CHARS and key in self._seen_paragraphs:
                self.tally.paragraphs += 1
                continue
            self._seen_paragraphs.add(key)
            if lines:
                kept.append("\n".join(lines))
        return "\n\n".join(kept)

    def _keep_line(self, line: str) -> bool:
        key = _key(line)
        if key not in self._boilerplate:
            return True
        if key in self._seen_lines:
            self.tally.lines += 1
            return False
        self._seen_lines.add(key)
        return True


def deduplicate(turns: Sequence[Turn]) -> StrategyResult:
    """Applies the module's rules to every turn; see the module docstring."""
    last_user = max((i for i, t in enumerate(turns) if t.role is Role.USER), default=-1)
    worker = _Deduplicator(_boilerplate_lines(turns))
    out = []
    for index, turn in enumerate(turns):
        if verbatim_only(turn):
            out.append(turn)
            continue
        pieces = list(_segments(turn.content))
        parts = []
        for n, (is_code, piece) in enumerate(pieces):
            protect = index == last_user and n == len(pieces) - 1
            parts.append(piece if is_code else worker.prose(piece, protect))
        content = "\n".join(p for p in parts if p) if len(parts) > 1 else (parts or [""])[0]
        out.append(with_content(turn, content.strip("\n") or turn.content))
    tally = worker.tally
    return StrategyResult(
        tuple(out),
        f"dropped {tally.paragraphs} repeated paragraphs and {tally.lines} boilerplate lines",
    )


class DedupStrategy:
    """The dedup rules as a Strategy; target_ratio does not apply (it is lossless for facts)."""

    name = "dedup"
    ready = True

    async def compress(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        return deduplicate(turns)
