"""Comparing a served cache hit with a fresh answer: short text, JSON, or no verdict."""

import pytest

from services.router.audit_compare import HitVerdict, compare, same_json, words
from shared.chat import TEXT_FORMAT, FormatKind, ResponseFormat

JSON = ResponseFormat(FormatKind.JSON_OBJECT)
RIGHT, WRONG = HitVerdict.RIGHT, HitVerdict.WRONG


def test_words_casefold_collapse_whitespace_and_strip_surrounding_punctuation() -> None:
    assert words("  The  Capital\nis\t*Paris*. ") == ("the", "capital", "is", "paris")
    # Signs, units and inner punctuation change what a short answer says; they stay.
    assert words("-1") == ("-1",) and words("50%") == ("50%",) and words("3.14") == ("3.14",)


@pytest.mark.parametrize(
    ("served", "fresh", "verdict"),
    [
        ("Yes.", "yes", RIGHT),
        ("POSITIVE", " positive\n", RIGHT),
        ("42", "42.", RIGHT),
        ("B", "(B)", RIGHT),
        ("Yes", "No", WRONG),
        ("42", "-42", WRONG),
        ("Lyon.", "The capital of France is Paris.", WRONG),
        ("billing_issue", "card_lost", WRONG),
    ],
)
def test_short_answers_compare_their_normalised_text(
    served: str, fresh: str, verdict: HitVerdict
) -> None:
    assert compare(served, fresh, TEXT_FORMAT).verdict is verdict


def test_a_short_answer_inside_the_other_is_no_evidence_either_way() -> None:
    found = compare("Paris.", "The capital of France is Paris.", TEXT_FORMAT)
    assert found.verdict is None and "contains" in found.reason


def test_free_text_worded_differently_is_undecided() -> None:
    served = "DNS maps names to addresses, using a hierarchy of servers and caches."
    fresh = "The domain name system turns host names into IP addresses for clients."
    found = compare(served, fresh, TEXT_FORMAT)
    assert found.verdict is None and "wording" in found.reason


def test_identical_long_answers_agree() -> None:
    text = "DNS maps names to addresses, using a hierarchy of servers and caches."
    assert compare(text, text.upper() + "\n", TEXT_FORMAT).verdict is RIGHT


def test_an_empty_answer_is_undecided() -> None:
    assert compare("", "Paris", TEXT_FORMAT).verdict is None


def test_json_answers_compare_the_parsed_documents() -> None:
    assert compare('{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1.0}', JSON).verdict is RIGHT
    assert compare('```json\n{"a": 1}\n```', '{"a": 1}', JSON).verdict is RIGHT
    assert compare('{"label": "spam"}', '{"label": "ham"}', JSON).verdict is WRONG
    # A long JSON answer still gets a verdict: the parsed document is what counts.
    long = '{"summary": "' + "word " * 40 + '"}'
    assert compare(long, long.replace("word", "other"), JSON).verdict is WRONG


def test_json_that_does_not_parse_is_undecided() -> None:
    found = compare('{"a": 1}', "Here is the JSON you asked for.", JSON)
    assert found.verdict is None and "not valid JSON" in found.reason


def test_json_true_is_not_one_but_one_is_one_point_zero() -> None:
    assert not same_json({"ok": True}, {"ok": 1})
    assert same_json([1, {"x": None}], [1.0, {"x": None}])
    assert not same_json([1], {"0": 1}) and not same_json({"a": 1}, {"a": 1, "b": 2})
