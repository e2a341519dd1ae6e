"""Cost math: exact integer nano-USD from the catalogue's per-million prices."""

from pathlib import Path

import pytest

from shared.pricing import (
    CatalogueError,
    TokenUsage,
    UnknownModel,
    load_catalogue,
    parse_catalogue,
)


def test_cost_is_exact_nano_usd() -> None:
    catalogue = parse_catalogue({"models": {"m": {"input": "0.06", "output": "0.24"}}})
    # 1,000 input tokens at $0.06/M = $0.00006 = 60,000 nano; 500 output at $0.24/M = 120,000.
    assert catalogue.cost_nano_usd("m", TokenUsage(1000, 500)) == 180_000


def test_sub_micro_dollar_costs_are_kept() -> None:
    catalogue = parse_catalogue({"models": {"m": {"input": 0.06, "output": 0.24}}})
    assert catalogue.cost_nano_usd("m", TokenUsage(7, 3)) == 420 + 720


def test_cached_input_and_batch_discount() -> None:
    catalogue = parse_catalogue(
        {"models": {"m": {"input": 2.0, "output": 8.0, "cached_input": 0.5, "batch_discount": 0.5}}}
    )
    price = catalogue.price("m")
    usage = TokenUsage(input_tokens=1000, output_tokens=100, cached_input_tokens=400)
    assert price.cost_nano_usd(usage) == 600 * 2000 + 400 * 500 + 100 * 8000
    assert price.cost_nano_usd(usage, batch=True) == (600 * 2000 + 400 * 500 + 100 * 8000) // 2


def test_region_override_falls_back_to_base_fields() -> None:
    catalogue = parse_catalogue(
        {"models": {"m": {"input": 1.0, "output": 2.0, "regions": {"eu": {"input": 1.5}}}}}
    )
    assert catalogue.cost_nano_usd("m", TokenUsage(1_000_000, 0), "eu") == 1_500_000_000
    assert catalogue.cost_nano_usd("m", TokenUsage(0, 1_000_000), "eu") == 2_000_000_000
    assert catalogue.cost_nano_usd("m", TokenUsage(1_000_000, 0), "us") == 1_000_000_000


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "non-empty 'models'"),
        ({"models": {"m": {"input": 1}}}, "needs both"),
        ({"models": {"m": {"input": "x", "output": 1}}}, "input='x' is not a number"),
        ({"models": {"m": {"input": -1, "output": 1}}}, "must not be negative"),
        ({"models": {"m": {"input": 1, "output": 1, "batch_discount": 1.5}}}, "batch_discount"),
    ],
)
def test_bad_catalogue_names_the_problem(document: dict, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(document)


def test_unknown_model() -> None:
    with pytest.raises(UnknownModel):
        parse_catalogue({"models": {"m": {"input": 1, "output": 1}}}).price("other")


def test_shipped_catalogue_has_the_seed_models() -> None:
    catalogue = load_catalogue()
    for model in ("Qwen/Qwen3-8B", "deepseek-v4-flash", "deepseek-reasoner", "gpt-4o"):
        assert catalogue.knows(model)
    cheap = catalogue.cost_nano_usd("Qwen/Qwen3-8B", TokenUsage(1000, 1000))
    baseline = catalogue.cost_nano_usd("gpt-4o", TokenUsage(1000, 1000))
    assert cheap * 10 < baseline


def test_unreadable_catalogue(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.yaml")


def test_images_is_a_per_model_capability_off_by_default() -> None:
    catalogue = parse_catalogue(
        {
            "models": {
                "seeing": {"input": 1, "output": 1, "images": True},
                "blind": {"input": 1, "output": 1},
            }
        }
    )
    assert catalogue.accepts_images("seeing")
    assert not catalogue.accepts_images("blind") and not catalogue.accepts_images("unknown")


def test_top_k_is_a_per_model_capability_off_by_default() -> None:
    catalogue = parse_catalogue(
        {
            "models": {
                "claude": {"input": 1, "output": 1, "top_k": True},
                "gpt": {"input": 1, "output": 1},
            }
        }
    )
    assert catalogue.accepts_top_k("claude") and not catalogue.accepts_top_k("gpt")
    with pytest.raises(CatalogueError, match="'m': top_k must be true or false"):
        parse_catalogue({"models": {"m": {"input": 1, "output": 1, "top_k": 1}}})
    shipped = load_catalogue()
    assert shipped.accepts_top_k("claude-haiku-4-5") and not shipped.accepts_top_k("gpt-4o")


def test_images_must_be_a_boolean() -> None:
    with pytest.raises(CatalogueError, match="'m': images must be true or false"):
        parse_catalogue({"models": {"m": {"input": 1, "output": 1, "images": "yes"}}})


def test_shipped_catalogue_marks_only_vision_models() -> None:
    catalogue = load_catalogue()
    assert catalogue.accepts_images("gpt-4o")
    assert not catalogue.accepts_images("Qwen/Qwen3-8B")
    assert not catalogue.accepts_images("deepseek-v4-flash")
