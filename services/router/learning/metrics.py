"""Cost/quality trade-off metrics, as RouteLLM defines them.

RouteLLM (Ong et al. 2024) sweeps a router's threshold, plots accuracy against the share of
calls sent to the strong model, and summarises the curve by APGR, the average performance gap
recovered: PGR = (accuracy - weak) / (strong - weak), averaged over the swept budgets, which is
computed as the area under the curve by the trapezoidal rule (RouteLLM's evals/evaluate.py:
(AUC - weak_AUC) / (strong_AUC - weak_AUC), both AUCs over the same x range). A random router
scores about 0.5; a perfect one approaches 1, and above 1 means beating the strong model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pgr(accuracy: float, weak: float, strong: float) -> float:
    """Performance gap recovered at one operating point."""
    if strong == weak:
        return float("nan")
    return (accuracy - weak) / (strong - weak)


def apgr(points: Sequence[tuple[float, float]], weak: float, strong: float) -> float:
    """APGR of operating points (x, accuracy), x being the strong-call share (or the cost).

    The points are sorted by x and integrated over the x range they span; at least two
    distinct x values are needed.
    """
    ordered = sorted(points)
    xs = np.asarray([p[0] for p in ordered], dtype=np.float64)
    ys = np.asarray([p[1] for p in ordered], dtype=np.float64)
    span = float(xs[-1] - xs[0]) if len(xs) else 0.0
    if span <= 0 or strong == weak:
        return float("nan")
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    return (area - weak * span) / ((strong - weak) * span)
