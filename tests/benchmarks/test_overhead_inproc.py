"""The in-process exact-hit benchmark: the router's own app answers its bodies from its copies."""

from __future__ import annotations

import orjson

from benchmarks.overhead_inproc import call, keep_copies, measure, router_app


async def test_every_body_is_answered_from_a_router_copy() -> None:
    app, admission, copies = router_app()
    bodies = keep_copies(admission, copies)
    for body in bodies[:5]:
        start, reply = await call(app, body)
        stages = orjson.loads(reply["body"])["sluice"]["stages"]
        assert start["status"] == 200 and stages[0]["detail"] == "exact hit (router copy)"


async def test_the_figures_are_cpu_microseconds_per_call() -> None:
    figures = await measure(calls=20, rounds=2)
    assert len(figures) == 2 and all(us > 0 for us in figures)
