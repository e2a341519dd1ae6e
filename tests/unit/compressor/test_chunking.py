"""Chunking keeps structure whole and splits prose into real sentences."""

from __future__ import annotations

import time

import pytest

from services.compressor.chunking import (
    MAX_SENTENCE_CHARS,
    RUN_CHARS,
    ChunkKind,
    join_chunks,
    split_chunks,
    split_sentences,
)

CODE = """```python
def area(r):
    # Not a sentence. Not one either.
    return 3.14 * r * r

print(area(2))
```"""

TABLE = """| city | population |
|:-----|-----------:|
| Oslo. | 700k. Approx. |
| Bergen | 290k |"""

DOCUMENT = f"""# Report

Intro one. Intro two.

{CODE}

{TABLE}

- first item. It has two sentences.
  and a continuation line.
- second item
1. numbered item

Closing words? Yes.
"""


def kinds(text: str) -> list[tuple[ChunkKind, str]]:
    return [(chunk.kind, chunk.text) for chunk in split_chunks(text)]


def test_document_structure_becomes_whole_units_in_order() -> None:
    assert kinds(DOCUMENT) == [
        (ChunkKind.HEADING, "# Report"),
        (ChunkKind.SENTENCE, "Intro one."),
        (ChunkKind.SENTENCE, "Intro two."),
        (ChunkKind.CODE, CODE),
        (ChunkKind.TABLE, TABLE),
        (ChunkKind.LIST_ITEM, "- first item. It has two sentences.\n  and a continuation line."),
        (ChunkKind.LIST_ITEM, "- second item"),
        (ChunkKind.LIST_ITEM, "1. numbered item"),
        (ChunkKind.SENTENCE, "Closing words?"),
        (ChunkKind.SENTENCE, "Yes."),
    ]
    assert [c.index for c in split_chunks(DOCUMENT)] == list(range(10))


def test_joining_every_chunk_reproduces_the_text() -> None:
    assert join_chunks(split_chunks(DOCUMENT)) == DOCUMENT.rstrip()


def test_chunks_of_one_paragraph_share_a_block() -> None:
    chunks = split_chunks(DOCUMENT)
    assert chunks[1].block == chunks[2].block
    assert len({chunks[0].block, chunks[1].block, chunks[3].block, chunks[4].block}) == 4
    assert chunks[5].block == chunks[6].block == chunks[7].block


@pytest.mark.parametrize(
    "fence",
    [
        "```\nx = 1\n\ny = 2. Z = 3.\n```",
        "~~~~js\nconst a = '```';\n~~~~",
        "````\n```\nnested fence text\n```\n````",
    ],
)
def test_fenced_code_stays_whole(fence: str) -> None:
    assert kinds(f"Before. After.\n\n{fence}\n\nTail.") == [
        (ChunkKind.SENTENCE, "Before."),
        (ChunkKind.SENTENCE, "After."),
        (ChunkKind.CODE, fence),
        (ChunkKind.SENTENCE, "Tail."),
    ]


def test_unclosed_fence_runs_to_the_end() -> None:
    text = "Look:\n```\ncode line. More.\n\nstill code"
    assert kinds(text)[-1] == (ChunkKind.CODE, "```\ncode line. More.\n\nstill code")


def test_table_without_delimiter_row_stays_whole() -> None:
    text = "Data follows.\n| a | b |\n| 1 | 2 |\nAfter the table."
    assert kinds(text) == [
        (ChunkKind.SENTENCE, "Data follows."),
        (ChunkKind.TABLE, "| a | b |\n| 1 | 2 |"),
        (ChunkKind.SENTENCE, "After the table."),
    ]


def test_a_lone_pipe_in_prose_is_not_a_table() -> None:
    assert kinds("Use a | b here. Then stop.") == [
        (ChunkKind.SENTENCE, "Use a | b here."),
        (ChunkKind.SENTENCE, "Then stop."),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Smith met Mrs. Jones at 3.45 p.m. today. They talked.",
            ["Dr. Smith met Mrs. Jones at 3.45 p.m. today.", "They talked."],
        ),
        (
            "Use a fruit, e.g. Apples or pears, i.e. Fruit. Then eat it.",
            ["Use a fruit, e.g. Apples or pears, i.e. Fruit.", "Then eat it."],
        ),
        ("Pi is 3.14159 exactly. Not really!", ["Pi is 3.14159 exactly.", "Not really!"]),
        ("J. R. R. Tolkien wrote it. Done.", ["J. R. R. Tolkien wrote it.", "Done."]),
        ("See Fig. 3 and No. 12. Next one.", ["See Fig. 3 and No. 12.", "Next one."]),
        ("She said no. Then she left.", ["She said no.", "Then she left."]),
        ("Apples, pears, etc. are fruit. Yes.", ["Apples, pears, etc. are fruit.", "Yes."]),
        ('He asked "Why?" Nobody knew.', ['He asked "Why?"', "Nobody knew."]),
        ("Wait... What happened? Tell me (now).", ["Wait...", "What happened?", "Tell me (now)."]),
        ("No final stop here", ["No final stop here"]),
        (
            "Version 2.0.1 shipped on 1.2.2024. Users cheered.",
            ["Version 2.0.1 shipped on 1.2.2024.", "Users cheered."],
        ),
    ],
)
def test_sentence_splitting(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_soft_wrapped_prose_is_one_paragraph() -> None:
    text = "This sentence is wrapped\nacross two lines. And this one\nis too."
    assert kinds(text) == [
        (ChunkKind.SENTENCE, "This sentence is wrapped\nacross two lines."),
        (ChunkKind.SENTENCE, "And this one\nis too."),
    ]


def test_a_long_multiline_run_without_stops_splits_at_lines() -> None:
    lines = [
        f"2024-01-01 12:00:{i:02d} worker {i} finished job {i} without error" for i in range(40)
    ]
    text = "\n".join(lines)
    assert len(text) > MAX_SENTENCE_CHARS
    assert [c.text for c in split_chunks(text)] == lines


def test_join_of_a_subset_separates_paragraphs() -> None:
    chunks = split_chunks("A one. A two. A three.\n\nB one. B two.")
    assert join_chunks([chunks[0], chunks[2]]) == "A one. A three."
    assert join_chunks([chunks[0], chunks[4]]) == "A one.\n\nB two."
    assert join_chunks([chunks[1], chunks[3]]) == "A two.\n\nB one."


def test_empty_and_blank_text_have_no_chunks() -> None:
    assert split_chunks("") == []
    assert split_chunks("  \n\n \n") == []


def test_a_long_line_without_boundaries_is_cut_between_words() -> None:
    cells = " ".join(f"<Td> cell {i} </Td>" for i in range(300))
    chunks = split_chunks(cells)
    assert len(chunks) > 5
    assert all(len(c.text) <= RUN_CHARS + 40 for c in chunks)
    assert join_chunks(chunks) == cells


def test_a_huge_paragraph_is_chunked_in_linear_time() -> None:
    # A quadratic scan took seconds on a 110 kB one-line page; this one is three times larger.
    paragraph = " ".join(f"Fact number {i} is stated here. See e.g. Fig. {i}." for i in range(6000))
    started = time.perf_counter()
    chunks = split_chunks(paragraph)
    assert time.perf_counter() - started < 2.0
    assert len(chunks) == 12000
