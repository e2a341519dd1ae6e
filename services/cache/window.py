"""Which part of the last user turn a semantic match reads, so that every word is compared.

The embedding model reads at most `max_tokens` word pieces of a text and silently drops the
rest (all-MiniLM-L6-v2: 256 with [CLS] and [SEP], so 254 of the text). Two requests that share
a long document and then ask different questions would embed to the same vector and serve each
other's answers. So the last user turn is split (`split_turn`):

- everything before a trailing window goes into the namespace key, so it must match exactly;
- only the window, which the model reads in full, is embedded and matched semantically.

The window is the turn's last paragraph, else its last line (whenever the turn has more than
one, whatever its length: a document or an instruction followed by a question compares the
question alone, so a shared document cannot make two questions look alike), else, for a
single-line turn longer than the window, its last sentence: the first of these that fits. The
cut follows the text's own structure rather than a length, so a paraphrased question after the
same document is cut at the same place and lands in the same namespace. A question placed
before the document, or in the middle of it, ends up in the exact part: those requests match
only when the question is the same. When no such window fits, nothing is matched semantically
(`Split.window` is None): the request is cached by its exact key only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Boundaries, coarsest first. Each pattern's match ends where a candidate window starts.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),  # a blank line: paragraphs
    re.compile(r"\n\s*"),  # a line break
    re.compile(r"(?<=[.!?…])[\"')\]]*\s+"),  # a sentence end
)
# The embedding model's [CLS] and [SEP] take two of its positions.
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class Split:
    """A last user turn cut into the part matched exactly and the part matched semantically."""

    prefix: str  # goes into the namespace key; "" when the whole turn fits the window
    window: str | None  # embedded and matched; None: the request is matched exactly only


@dataclass
class QueryWindow:
    """How many word pieces of a text the embedding model reads, and how to count them.

    `count` must never give fewer pieces than the model's tokenizer makes; `minilm_window` uses
    that tokenizer itself. Counting a long document piece by piece costs ~150 ms per 100k
    characters, so two cheap bounds answer first: a text of at most `max_tokens` non-blank
    characters fits (a word piece covers at least one character), and one of more than
    `max_tokens` words does not (every word is at least one piece).
    """

    count: Callable[[str], int]
    max_tokens: int

    def fits(self, text: str) -> bool:
        if sum(not c.isspace() for c in text) <= self.max_tokens:
            return True
        if len(text.split()) > self.max_tokens:
            return False
        return self.count(text) <= self.max_tokens


def split_turn(text: str, window: QueryWindow) -> Split:
    """Cuts a last user turn into its exact part and the window matched semantically."""
    body = text.rstrip()
    paragraph, line, sentence = _BOUNDARIES
    for boundary in (paragraph, line):
        start = _last_boundary(boundary, body)
        if start is not None and window.fits(body[start:]):
            return Split(text[:start], body[start:])
    if window.fits(text):
        return Split("", text)
    start = _last_boundary(sentence, body)
    if start is not None and window.fits(body[start:]):
        return Split(text[:start], body[start:])
    return Split(text, None)


def _last_boundary(boundary: re.Pattern[str], body: str) -> int | None:
    """Where the text after the last match of `boundary` starts, if text precedes it."""
    ends = [
        match.end()
        for match in boundary.finditer(body)
        if body[: match.start()].strip() and match.end() < len(body)
    ]
    return ends[-1] if ends else None


@dataclass
class _MiniLmCounter:
    """Counts word pieces with all-MiniLM-L6-v2's own tokenizer, loaded on first use (most
    turns are settled by QueryWindow's bounds, so a test or a short-question workload never
    loads it)."""

    folder: Any
    _tokenizer: Any = field(default=None, repr=False)

    def __call__(self, text: str) -> int:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def minilm_window() -> QueryWindow:
    """The window of the installed all-MiniLM-L6-v2: its configured max_seq_length (256) less
    the two special tokens."""
    from shared.embedding.files import model_path

    folder = model_path()
    config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return QueryWindow(_MiniLmCounter(folder), int(config["max_seq_length"]) - SPECIAL_TOKENS)


def word_window(max_tokens: int) -> QueryWindow:
    """A window counted in whitespace-separated words: for tests with a word-based embedder."""
    return QueryWindow(lambda text: len(text.split()), max_tokens)
