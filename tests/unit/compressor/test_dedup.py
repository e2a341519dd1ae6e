"""Dedup drops repeats and boilerplate, normalises whitespace, and leaves code and the question."""

from __future__ import annotations

from services.compressor.dedup import deduplicate
from shared.chat import Role, Turn

PARAGRAPH = "The warehouse in Leeds ships every order placed before noon on the same day."
FOOTER = "Acme Corp confidential - do not distribute"
CODE = "```python\nx  =  1\nx  =  1\n```"


def test_repeated_paragraph_across_turns_is_dropped_once() -> None:
    turns = (
        Turn(Role.SYSTEM, f"Policy:\n\n{PARAGRAPH}"),
        Turn(Role.USER, f"{PARAGRAPH}\n\nAnother fact that is stated only once in here.\n\nWhen?"),
    )
    result = deduplicate(turns)
    assert result.turns[0].content.count(PARAGRAPH) == 1
    assert PARAGRAPH not in result.turns[1].content
    assert "Another fact" in result.turns[1].content
    assert "dropped 1 repeated paragraphs" in result.detail


def test_boilerplate_keeps_its_first_occurrence_only() -> None:
    pages = "\n\n".join(f"{FOOTER}\nPage {n} says something different: item {n}." for n in range(4))
    result = deduplicate((Turn(Role.USER, f"{pages}\n\nWhat does page 2 say?"),))
    content = result.turns[0].content
    assert content.count(FOOTER) == 1
    assert all(f"item {n}." in content for n in range(4))
    assert "3 boilerplate lines" in result.detail


def test_whitespace_is_normalised_outside_code_and_code_is_verbatim() -> None:
    text = f"Some   text\twith  gaps.   \n\n\n\n  - an indented item\n\n{CODE}\n\nWhy?"
    content = deduplicate((Turn(Role.USER, text),)).turns[0].content
    assert "Some text with gaps." in content
    assert "\n\n\n" not in content
    assert "  - an indented item" in content  # indentation nests lists, so it stays
    assert CODE in content


def test_the_question_is_never_dropped_even_when_repeated() -> None:
    question = "Which warehouse ships orders on the same day if placed before noon?"
    turns = (Turn(Role.USER, question), Turn(Role.ASSISTANT, "Leeds."), Turn(Role.USER, question))
    result = deduplicate(turns)
    assert result.turns[-1].content == question
