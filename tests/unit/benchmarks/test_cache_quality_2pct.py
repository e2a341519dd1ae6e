"""`hit_rate_at_2pct_wrong`: the cosine floor is chosen on the fit half, and the figures
reported are the held-back half's, even where that half is over 2% wrong."""

from __future__ import annotations

from benchmarks.cache_quality_lookalike import at_2pct_wrong
from benchmarks.cache_quality_methods import cosine_points
from services.cache.verifiers.replay import Outcome, Probe


def outcomes(n: int, similarity: float, *, right: bool, fit: bool, tag: str) -> list[Outcome]:
    served = "A" if right else "B"
    return [Outcome(Probe(f"{tag}{i}", "A", fit), served, similarity) for i in range(n)]


def test_the_point_is_chosen_on_the_fit_half_and_reported_on_the_held_back_half() -> None:
    # Fit half: floors up to 0.85 serve 5 wrong of 100 (5%); from 0.86 up, 50 right, none wrong.
    # Held back: the chosen floor serves 2 wrong of 42, and misses the 10 right ones at 0.85.
    run = {
        "qqp": [
            *outcomes(50, 0.95, right=True, fit=True, tag="f"),
            *outcomes(45, 0.85, right=True, fit=True, tag="g"),
            *outcomes(5, 0.85, right=False, fit=True, tag="h"),
            *outcomes(40, 0.95, right=True, fit=False, tag="i"),
            *outcomes(2, 0.96, right=False, fit=False, tag="j"),
            *outcomes(10, 0.85, right=True, fit=False, tag="k"),
        ]
    }
    got = at_2pct_wrong(cosine_points(run, 0.80), "service")
    chosen = got["at_2pct_wrong"]
    assert chosen["chosen"] == "cos >= 0.86"  # the lowest floor with the most right fit hits
    assert chosen["fit"] == {"hit_rate": 0.5, "wrong_rate": 0.0, "wrong": "0/50"}
    assert chosen["held_back"] == {"hit_rate": round(40 / 52, 4), "wrong_rate": 0.0476,
                                   "wrong": "2/42"}  # fmt: skip
    assert got["hit_rate_at_2pct_wrong"] == round(40 / 52, 4)


def test_no_floor_within_2pct_on_the_fit_half_gives_null_and_the_closest_floor() -> None:
    # Fit half: 12 wrong of 102 from 0.70 up, 3 of 93 from 0.76, 3 of 5 from 0.81, all wrong
    # from 0.96: never within 2%.
    run = {
        "qqp": [
            *outcomes(2, 0.95, right=True, fit=True, tag="r"),
            *outcomes(3, 0.99, right=False, fit=True, tag="w"),
            *outcomes(88, 0.80, right=True, fit=True, tag="s"),
            *outcomes(9, 0.75, right=False, fit=True, tag="x"),
        ]
    }
    got = at_2pct_wrong(cosine_points(run, 0.70), "service")
    assert got["hit_rate_at_2pct_wrong"] is None
    assert got["at_2pct_wrong"]["chosen"] is None
    closest = got["at_2pct_wrong"]["closest"]
    assert closest["floor"] == "cos >= 0.76"  # the lowest fit-half wrong rate, 3.2%
    assert closest["fit"]["wrong"] == "3/93"
