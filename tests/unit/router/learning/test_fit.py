from __future__ import annotations

import numpy as np
import pytest

from services.router.learning.fit import (
    Standardiser,
    auc,
    fit_logistic,
    log_loss,
    principal_directions,
)


def test_logistic_regression_finds_the_informative_feature() -> None:
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((400, 3))
    labels = (rows[:, 1] + 0.3 * rng.standard_normal(400) > 0).astype(np.int64)
    weights, _ = fit_logistic(rows, labels, l2=1.0)
    assert np.argmax(np.abs(weights)) == 1
    again, _ = fit_logistic(rows, labels, l2=1.0)
    assert np.array_equal(weights, again)


def test_auc_counts_ties_as_half() -> None:
    assert auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert log_loss(np.array([1]), np.array([0.5])) == pytest.approx(np.log(2))


def test_principal_directions_are_reproducible() -> None:
    data = np.random.default_rng(2).standard_normal((50, 6))
    center, basis = principal_directions(data, 2)
    again = principal_directions(data.copy(), 2)
    assert np.array_equal(basis, again[1]) and np.allclose(center, data.mean(axis=0))
    assert basis.shape == (6, 2)


def test_constant_columns_do_not_divide_by_zero() -> None:
    rows = np.array([[1.0, 5.0], [3.0, 5.0]])
    assert np.all(np.isfinite(Standardiser.fit(rows)(rows)))
