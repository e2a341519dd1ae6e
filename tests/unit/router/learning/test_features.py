from __future__ import annotations

import numpy as np

from services.router.learning.features import (
    Kind,
    agreement,
    answer_stats,
    canonical,
    choice_of,
    code_of,
    group_onehot,
    handcrafted,
    handcrafted_names,
    model_onehot,
    prompt_focus,
    read_prompt,
)
from tests.unit.router.learning.fixtures import ARC_PROMPT, CODE_PROMPT, WINO_PROMPT, HashEmbedder

PYTHON_ANSWER = "Here it is:\n```python\ndef f(a, b):\n    return list(set(a) & set(b))\n```\n"


def test_a_choice_prompt_yields_the_last_questions_options() -> None:
    info = read_prompt(ARC_PROMPT)
    assert info.kind is Kind.CHOICE
    assert dict(info.options) == {"A": "Venus", "B": "Mars", "C": "Mercury", "D": "Earth"}


def test_the_focus_is_the_final_question_not_the_shared_examples() -> None:
    focus = prompt_focus(ARC_PROMPT)
    assert focus.startswith("Which planet")
    assert "Which gas" not in focus


def test_a_short_last_block_keeps_the_context_before_it() -> None:
    prompt = "def f(x):\n    return x + 1\n" * 12 + "\n\nWhat is wrong?"
    assert "def f" in prompt_focus(prompt)


def test_two_option_and_code_prompts_are_told_apart() -> None:
    assert read_prompt(WINO_PROMPT).kind is Kind.CHOICE
    assert len(read_prompt(WINO_PROMPT).options) == 2
    assert read_prompt(CODE_PROMPT).kind is Kind.CODE
    assert read_prompt("Tell me a joke.").kind is Kind.FREE
    assert group_onehot(read_prompt(WINO_PROMPT)) == [1.0, 0.0, 0.0, 0.0]
    assert group_onehot(read_prompt(ARC_PROMPT)) == [0.0, 1.0, 0.0, 0.0]


def test_option_letters_are_read_in_the_shapes_models_write_them() -> None:
    options = read_prompt(ARC_PROMPT).options
    for answer in ("C", "C)", " C\n", "(C)", "C. Mercury", "The answer is C", "Mercury"):
        assert choice_of(answer, options) == "C", answer
    assert choice_of("E", options) is None
    assert choice_of("I do not know.", options) is None


def test_python_code_is_found_in_fences_tags_or_bare() -> None:
    assert code_of(PYTHON_ANSWER) is not None
    assert code_of("[PYTHON]\ndef f():\n    return 1\n[/PYTHON]") is not None
    assert code_of("def f():\n    return 1\n") is not None
    assert code_of("```python\ndef f(:\n```") is None
    assert code_of("```javascript\nfunction f() {}\n```") is None


def test_format_validity_follows_the_prompt() -> None:
    arc, code = read_prompt(ARC_PROMPT), read_prompt(CODE_PROMPT)
    assert answer_stats("C", arc)[2:4] == [1.0, 1.0]  # format_ok, exact_format
    assert answer_stats("It is Mercury, clearly", arc)[2] == 0.0
    assert answer_stats(PYTHON_ANSWER, code)[2] == 1.0
    javascript = answer_stats("```javascript\nfunction f() {}\n```", code)
    assert javascript[2] == 0.0 and javascript[5] == 1.0  # not Python, foreign fence
    assert answer_stats("I'm sorry, I cannot help.", arc)[6] == 1.0


def test_canonical_forms_ignore_layout_and_comments() -> None:
    code = read_prompt(CODE_PROMPT)
    other = "```python\n# intersect\ndef f(a,b):\n  return list(set(a)&set(b))\n```"
    assert canonical(PYTHON_ANSWER, code) == canonical(other, code)
    assert canonical("(C)", read_prompt(ARC_PROMPT)) == "C"


def test_agreement_counts_matching_earlier_answers() -> None:
    info = read_prompt(ARC_PROMPT)
    embed = HashEmbedder().embed
    mine = embed(["C"])[0]
    none = agreement("C", info, [], mine, np.zeros((0, 384), dtype=np.float32))
    assert none == [0.0, 0.0, 0.0, 0.0]
    earlier = ["C)", "B"]
    has, fraction, previous, similarity = agreement("C", info, earlier, mine, embed(earlier))
    assert (has, fraction, previous) == (1.0, 0.5, 0.0)
    assert -1.0 <= similarity <= 1.0
    assert agreement("C", info, ["B", "C"], mine, embed(["B", "C"]))[2:] == [1.0, 1.0]


def test_an_unknown_model_sets_the_other_slot() -> None:
    assert model_onehot("b", ["a", "b"]) == [0.0, 1.0, 0.0]
    assert model_onehot("z", ["a", "b"]) == [0.0, 0.0, 1.0]


def test_feature_names_match_the_values() -> None:
    info = read_prompt(WINO_PROMPT)
    vectors = HashEmbedder().embed(["p", "A", "B"])
    values = handcrafted("A", "m1", info, ["B"], (vectors[0], vectors[1], vectors[2:]), ["m1"])
    assert len(values) == len(handcrafted_names(["m1"]))
