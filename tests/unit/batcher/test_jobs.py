"""The job state machine, the JSONL lines sent and reading the provider's results."""

from __future__ import annotations

import itertools

import orjson
import pytest

from services.batcher.jobs import (
    TRANSITIONS,
    IllegalTransition,
    InvalidJob,
    ItemRequest,
    ItemResult,
    JobState,
    check_transition,
    request_line,
    results_for,
    validate_items,
)
from shared.chat import (
    Finish,
    FormatKind,
    ResponseFormat,
    Role,
    Sampling,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    Turn,
)
from shared.pricing import TokenUsage


def item(custom_id: str = "a", model: str = "gpt-4o", text: str = "hi") -> ItemRequest:
    return ItemRequest(custom_id, model, (Turn(Role.USER, text),))


def price(model: str, region: str, usage: TokenUsage, batch: bool) -> int:
    full = usage.input_tokens * 10 + usage.output_tokens * 40
    return full // 2 if batch else full


def out_line(custom_id: str, content: str = "ok", status: int = 200, **usage: object) -> bytes:
    body = {
        "model": "gpt-4o",
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, **usage},
    }
    return orjson.dumps(
        {"custom_id": custom_id, "response": {"status_code": status, "body": body}, "error": None}
    )


def test_the_happy_path_and_every_early_exit_are_legal():
    path = [
        JobState.PENDING,
        JobState.UPLOADING,
        JobState.UPLOADED,
        JobState.CREATING,
        JobState.SUBMITTED,
        JobState.COMPLETED,
    ]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)
    for state in TRANSITIONS:
        check_transition(state, JobState.FAILED)
        check_transition(state, JobState.CANCELLED)
    check_transition(JobState.SUBMITTED, JobState.CANCELLING)
    check_transition(JobState.CANCELLING, JobState.COMPLETED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobState.PENDING, JobState.SUBMITTED),
        (JobState.UPLOADING, JobState.CREATING),
        (JobState.CREATING, JobState.CANCELLING),
        (JobState.COMPLETED, JobState.FAILED),
        (JobState.CANCELLED, JobState.PENDING),
        (JobState.SUBMITTED, JobState.UPLOADING),
    ],
)
def test_skipping_or_leaving_a_terminal_state_is_refused(current: JobState, target: JobState):
    with pytest.raises(IllegalTransition):
        check_transition(current, target)


def test_terminal_states_have_no_way_out():
    assert {s for s in JobState if s.terminal} == {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
    }
    assert all(not s.terminal for s in TRANSITIONS)


def test_a_request_line_is_openais_batch_format():
    line = orjson.loads(
        request_line(
            ItemRequest(
                "q1",
                "gpt-4o",
                (Turn(Role.SYSTEM, "be brief"), Turn(Role.USER, "hi")),
                Sampling(temperature=0.0, max_tokens=50, stop=("END",)),
                ResponseFormat(FormatKind.JSON_OBJECT),
            )
        )
    )
    assert line == {
        "custom_id": "q1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ],
            "max_tokens": 50,
            "temperature": 0.0,
            "stop": ["END"],
            "response_format": {"type": "json_object"},
        },
    }


def test_a_request_line_carries_tools_and_choices():
    tools = ToolSet((ToolFunction("lookup", "", '{"type": "object"}'),), ToolChoiceMode.REQUIRED)
    body = orjson.loads(
        request_line(
            ItemRequest(
                "q2", "gpt-4o", (Turn(Role.USER, "hi"),), Sampling(n=2, seed=3), tools=tools
            )
        )
    )["body"]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    ]
    assert (body["tool_choice"], body["n"], body["seed"]) == ("required", 2, 3)


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([], "at least one"),
        ([item("a"), item("a")], "used twice"),
        ([item("a"), item("b", model="other")], "every item must call"),
        ([item("x" * 65)], "longer than 64"),
        ([ItemRequest("a", "gpt-4o", ())], "required"),
    ],
)
def test_invalid_jobs_are_refused_naming_the_item(items: list[ItemRequest], problem: str):
    with pytest.raises(InvalidJob, match=problem):
        validate_items(items)


def test_results_come_in_submission_order_priced_at_the_batch_rate():
    results = results_for(
        ["b", "a"], [out_line("a", "A") + b"\n" + out_line("b", "B")], "us-east", price
    )
    assert [(r.custom_id, r.content, r.finish) for r in results] == [
        ("b", "B", Finish.STOP),
        ("a", "A", Finish.STOP),
    ]
    assert results[0].usage == TokenUsage(3, 2)
    assert results[0].cost_nano_usd == 55 and results[0].interactive_cost_nano_usd == 110


def test_a_provider_reported_cost_wins():
    [result] = results_for(["a"], [out_line("a", cost=0.000000123)], "us-east", price)
    assert result.cost_nano_usd == 123


def test_bad_jsonl_gives_a_clear_error_per_affected_item_and_the_rest_are_delivered():
    output = out_line("a") + b"\n" + out_line("b")[:30] + b"\n" + out_line("c")
    errors = out_line("d", status=400)
    results = {
        r.custom_id: r for r in results_for(["a", "b", "c", "d"], [output, errors], "", price)
    }
    assert results["a"].ok and results["c"].ok
    assert "no result" in results["b"].error and "line 2" in results["b"].error
    assert "answered 400" in results["d"].error


def test_a_malformed_answer_body_is_an_item_error():
    broken = orjson.dumps({"custom_id": "a", "response": {"status_code": 200, "body": {}}})
    [result] = results_for(["a"], [broken], "", price)
    assert "malformed" in result.error


def test_item_results_round_trip_through_json():
    result = ItemResult("a", "text", Finish.LENGTH, "gpt-4o", TokenUsage(5, 6), 7, 14)
    assert ItemResult.from_json(result.to_json()) == result
    failed = ItemResult("b", error="boom")
    assert ItemResult.from_json(failed.to_json()) == failed and not failed.ok
