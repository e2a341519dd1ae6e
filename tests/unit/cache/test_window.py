"""The semantic window of a last user turn (window.py): what the embedding model reads in full
is matched; the rest must match exactly."""

import pytest

from services.cache.window import QueryWindow, Split, minilm_window, split_turn, word_window

WINDOW = word_window(10)
DOC = "First clause about delivery.\n\nSecond clause about payment terms and fees."


def test_a_short_single_line_turn_is_matched_whole() -> None:
    assert split_turn("what is the capital of france?", WINDOW) == Split(
        "", "what is the capital of france?"
    )


def test_a_question_after_a_document_is_the_window_whatever_the_length() -> None:
    split = split_turn(f"{DOC}\n\nWhat is the delivery time?\n", WINDOW)
    assert split == Split(f"{DOC}\n\n", "What is the delivery time?")


def test_a_last_line_is_the_window_when_there_is_no_blank_line() -> None:
    split = split_turn("Context: the sky is blue today.\nQuestion: what colour is it?", WINDOW)
    assert split == Split("Context: the sky is blue today.\n", "Question: what colour is it?")


def test_a_long_single_line_turn_keeps_its_last_sentence() -> None:
    text = "The contract runs for two years. " * 5 + "Who signed it?"
    assert split_turn(text, WINDOW) == Split(
        "The contract runs for two years. " * 5, "Who signed it?"
    )


@pytest.mark.parametrize(
    "text",
    [
        "word " * 30,  # no boundary at all
        "Who signed it?\n\n" + "clause " * 30 + "ends.",  # question first, last paragraph too long
    ],
)
def test_without_a_window_that_fits_the_turn_is_matched_exactly_only(text: str) -> None:
    assert split_turn(text, WINDOW) == Split(text, None)


def test_a_turn_exactly_at_the_window_is_matched_whole() -> None:
    text = " ".join(f"w{i}" for i in range(10))
    assert split_turn(text, WINDOW) == Split("", text)
    longer = f"{text} w10"
    assert split_turn(longer, WINDOW).window is None


def test_the_cheap_bounds_spare_the_tokenizer() -> None:
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text.split())

    window = QueryWindow(count, 10)
    assert window.fits("a b c")  # 5 characters: fits whatever the tokenizer says
    assert not window.fits("word " * 11)  # 11 words: at least 11 pieces
    assert calls == []
    assert window.fits("abcdefgh ijklmnop")  # neither bound decides: counted
    assert calls == ["abcdefgh ijklmnop"]


def test_the_minilm_window_counts_the_models_own_word_pieces() -> None:
    window = minilm_window()
    assert window.max_tokens == 254  # max_seq_length 256 less [CLS] and [SEP]
    # "unaffordable" is several word pieces, so characters and words both mislead.
    assert window.count("unaffordable housing") > 2
    long = "The parties agree to the following terms and conditions. " * 40
    assert not window.fits(long)
    split = split_turn(long + "\n\nWhen does the agreement expire?", window)
    assert split.window == "When does the agreement expire?"
