"""The fidelity benchmark's own logic: what counts as the same shape, and the summary line."""

from openai.types.chat import ChatCompletion

from benchmarks.fidelity import SCHEMA, ClassTotals, report, shape, workload


def completion(message: dict, finish: str = "stop") -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
    )


def call(name: str, arguments: str) -> dict:
    return {"id": "x", "type": "function", "function": {"name": name, "arguments": arguments}}


SCHEMA_BODY = {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}}


def test_tool_calls_match_by_function_and_parseable_arguments() -> None:
    ours = completion(
        {"role": "assistant", "content": None, "tool_calls": [call("f", '{"a": 1}')]}, "tool_calls"
    )
    theirs = completion(
        {"role": "assistant", "content": None, "tool_calls": [call("f", '{"a": 2}')]}, "tool_calls"
    )
    broken = completion(
        {"role": "assistant", "content": None, "tool_calls": [call("f", '{"a":')]}, "tool_calls"
    )
    text = completion({"role": "assistant", "content": "It is sunny."})
    assert shape(ours, {}) == shape(theirs, {})
    assert shape(broken, {}) != shape(theirs, {})
    assert shape(text, {}) != shape(theirs, {})


def test_json_schema_answers_must_fit() -> None:
    fits = completion(
        {"role": "assistant", "content": '{"intent": "x", "urgent": true, "steps": []}'}
    )
    misfit = completion({"role": "assistant", "content": '{"intent": "x"}'})
    assert shape(fits, SCHEMA_BODY) != shape(misfit, SCHEMA_BODY)
    assert shape(fits, SCHEMA_BODY)[1][0][4] == "fits"


def test_the_summary_counts_classes_that_cost_more() -> None:
    summary = report(
        {
            "cheap": ClassTotals(requests=2, matched=2, sluice_nano=10, direct_nano=100),
            "dear": ClassTotals(requests=2, matched=1, sluice_nano=120, direct_nano=100),
        }
    )
    assert summary["classes_costing_more_than_baseline"] == 1
    assert summary["shape_match_rate"] == 0.75
    assert summary["cost_ratio_vs_baseline"] == 0.65


def test_the_workload_has_every_class_with_distinct_prompts() -> None:
    classes = workload(4)
    assert set(classes) == {
        "plain",
        "json_object",
        "json_schema",
        "tools",
        "tool_round_trip",
        "small_max_tokens",
        "stream",
        "stream_tools",
    }
    prompts = [str(body["messages"]) for bodies in classes.values() for body in bodies]
    assert len(prompts) == len(set(prompts)) == 32
