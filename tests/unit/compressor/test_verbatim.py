"""Tool exchanges and images pass through every strategy byte for byte, and a turn a strategy
shortens keeps its other fields: no tool result loses the call it answers."""

from __future__ import annotations

import pytest
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2

from services.compressor.abstractive import AbstractiveStrategy
from services.compressor.compressor import CompressionResult, Decision
from services.compressor.dedup import DedupStrategy
from services.compressor.history import HistoryStrategy
from services.compressor.servicer import request_from_proto, response_to_proto
from services.compressor.strategies import ExtractiveStrategy
from services.compressor.verbatim import verbatim_only
from shared.chat import ImagePart, Role, ToolCall, Turn
from shared.convert import turns_from_proto, turns_to_proto
from shared.tokens import TokenCounter

from .fakes import FakeSummariser, HashingEmbedder

# Long enough that every strategy would cut it were it plain text; repeated paragraphs, so
# dedup would too.
RECORDS = "\n\n".join(
    f"Depot {i} in district {i % 9} holds {i * 3} crates of pears." for i in range(160)
)
DOUBLED = f"{RECORDS}\n\n{RECORDS}"
CALL = ToolCall("call_1", "depot_records", '{"district": 4}')


def conversation() -> tuple[Turn, ...]:
    return (
        Turn(Role.SYSTEM, "You answer questions about depots."),
        Turn(Role.USER, f"Background, repeated:\n\n{DOUBLED}", name="clerk"),
        Turn(Role.ASSISTANT, "", tool_calls=(CALL,)),
        Turn(Role.TOOL, DOUBLED, tool_call_id="call_1"),
        Turn(
            Role.USER,
            f"{RECORDS}\n\nWhat does this photo show?",
            parts=(f"{RECORDS}\n\nWhat does this photo show?", ImagePart("https://x/y.png")),
        ),
        Turn(Role.ASSISTANT, "A crate.", refusal=""),
        Turn(Role.USER, "How many crates does depot 42 hold?"),
    )


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def strategies(counter: TokenCounter) -> dict[str, object]:
    extractive = ExtractiveStrategy(HashingEmbedder(), counter)
    summariser = FakeSummariser("Depots hold crates.")
    return {
        "extractive": extractive,
        "dedup": DedupStrategy(),
        "abstractive": AbstractiveStrategy(summariser, extractive, counter),
        "history": HistoryStrategy(extractive, counter, summariser),
    }


@pytest.mark.parametrize("name", ["extractive", "dedup", "abstractive", "history"])
async def test_tool_calls_results_and_images_pass_through_untouched(
    counter: TokenCounter, name: str
) -> None:
    turns = conversation()
    strategy = strategies(counter)[name]
    result = await strategy.compress(turns, 0.2)  # type: ignore[attr-defined]
    # The tool call, its result and the turn with an image, each exactly as it came.
    assert all(turn in result.turns for turn in turns[2:5])
    # The strategy did work on the plain context, and kept that turn's other fields.
    clerk = [t for t in result.turns if t.name == "clerk"]
    if name != "history":
        assert clerk and len(clerk[0].content) < len(turns[1].content)
    # Every tool result still follows the call it answers.
    at = {t.tool_call_id: i for i, t in enumerate(result.turns) if t.role is Role.TOOL}
    calls = {c.id: i for i, t in enumerate(result.turns) for c in t.tool_calls}
    assert at and all(calls[i] < position for i, position in at.items())


def test_only_tool_exchanges_and_images_are_verbatim() -> None:
    assert [verbatim_only(turn) for turn in conversation()] == [
        False, False, True, True, True, False, False,
    ]  # fmt: skip


async def test_history_folds_only_the_turns_before_the_first_tool_call(
    counter: TokenCounter,
) -> None:
    turns = conversation()
    history = strategies(counter)["history"]
    result = await history.trim(turns, 0.2, keep_last_turns=1)  # type: ignore[attr-defined]
    # System, the summary of the clerk's turn, then everything from the tool call on.
    assert result.turns[2:] == turns[2:]
    assert result.turns[1].content.endswith("Depots hold crates.")


def test_the_servicer_keeps_every_field_of_a_turn_both_ways() -> None:
    turns = conversation()
    request = compressor_pb2.CompressRequest(messages=turns_to_proto(turns))
    assert request_from_proto(request).turns == turns
    result = CompressionResult(turns, Decision.COMPRESSED, 10, 5, "extractive", "")
    assert turns_from_proto(response_to_proto(result).messages) == turns
