"""Policy rollout: sticky canary splits, and shadow decisions that never change an answer."""

import copy
import time

import pytest

from services.router.admission import Admission, Asked
from services.router.cascade import Cascade
from services.router.pipeline import Pipeline, complete
from services.router.policy import PolicyError, parse_policy
from services.router.rollout import (
    PolicySelector,
    Rollout,
    RolloutMode,
    parse_rollout_spec,
    sticky_bucket,
)
from shared.chat import Role, Sampling, Turn
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import catalogue, policy, policy_doc
from tests.unit.router.test_cascade import TRACER


def candidate_policy():
    doc = copy.deepcopy(policy_doc())
    doc["version"] = "candidate-2"
    doc["tenants"]["acme"]["model_classes"]["chat"]["tiers"] = [{"model": "mid"}, {"model": "top"}]
    return parse_policy(doc, catalogue())


def admit(selector, text):
    return Admission(selector, TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="",
            model_class="",
            turns=(Turn(Role.USER, text),),
            sampling=Sampling(),
            cache_mode=None,
            max_cost_nano_usd=0,
        ),
    )


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("", None),
        ("shadow", (RolloutMode.SHADOW, 0.0)),
        ("canary:12.5", (RolloutMode.CANARY, 12.5)),
    ],
)
def test_rollout_spec(spec, parsed) -> None:
    assert parse_rollout_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["canary", "canary:101", "canary:x", "shadow:5", "blue-green"])
def test_bad_rollout_spec(spec) -> None:
    with pytest.raises(PolicyError, match="SLUICE_ROUTER_ROLLOUT"):
        parse_rollout_spec(spec)


def test_canary_is_sticky_and_close_to_its_share() -> None:
    selector = PolicySelector(policy(), Rollout(candidate_policy(), RolloutMode.CANARY, 20))
    versions = [admit(selector, f"question {i}").policy_version for i in range(2000)]
    share = versions.count("candidate-2") / len(versions)
    assert 0.17 < share < 0.23
    for i in range(50):
        first = admit(selector, f"question {i}").policy_version
        assert all(admit(selector, f"question {i}").policy_version == first for _ in range(3))
    assert sticky_bucket(["a", "b"]) == sticky_bucket(["a", "b"]) != sticky_bucket(["a", "c"])


def test_canary_at_zero_and_hundred_percent() -> None:
    none = PolicySelector(policy(), Rollout(candidate_policy(), RolloutMode.CANARY, 0))
    every = PolicySelector(policy(), Rollout(candidate_policy(), RolloutMode.CANARY, 100))
    assert {admit(none, f"q{i}").policy_version for i in range(50)} == {"test-1"}
    assert {admit(every, f"q{i}").policy_version for i in range(50)} == {"candidate-2"}


async def test_shadow_records_the_candidate_decision_and_never_changes_the_answer() -> None:
    models = FakeModels(
        {"cheap": answer("cheap answer", "cheap"), "mid": answer("mid answer", "mid")}
    )
    pipeline = Pipeline(
        FakeCache(), FakeCompressor(), Cascade(models, TRACER), catalogue(), TokenCounter()
    )
    live = PolicySelector(policy())
    shadowed = PolicySelector(policy(), Rollout(candidate_policy(), RolloutMode.SHADOW))
    for i in range(20):
        plain = await complete(pipeline, admit(live, f"q{i}"), time.monotonic() + 5)
        request = admit(shadowed, f"q{i}")
        with_shadow = await complete(pipeline, request, time.monotonic() + 5)
        assert (with_shadow.content, with_shadow.model, with_shadow.policy_version) == (
            plain.content,
            plain.model,
            plain.policy_version,
        )
        assert request.shadow is not None
        assert request.shadow.policy_version == "candidate-2"
        assert request.shadow.tiers == ("mid", "top") and request.shadow.differs
    assert set(models.calls) == {"cheap"}, "the shadow policy never calls a model"


def test_shadow_notes_a_candidate_that_refuses_the_request() -> None:
    doc = copy.deepcopy(policy_doc())
    doc["version"] = "candidate-3"
    del doc["tenants"]["acme"]
    selector = PolicySelector(policy(), Rollout(parse_policy(doc, catalogue()), RolloutMode.SHADOW))
    shadow = admit(selector, "q").shadow
    assert shadow is not None and shadow.differs and "unknown API key" in shadow.note
