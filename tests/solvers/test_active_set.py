"""The active-set solve of small Gram problems: the epochs' solution, the optimality conditions
to round-off, ``w = 0`` above ``λ_max``, the epochs taking over from a singular active set, and
nothing compiled on its path."""

import jax
import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from mflangevin.models import LinearRegressor
from mflangevin.models._linear_certificate import certified
from mflangevin.solvers import active_set, gram


def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def correlated(seed=0):
    """Ten features with a common factor (correlations about 0.5), a sparse noisy target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 10)) + rng.normal(size=(200, 1))
    return X, X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.5 * rng.normal(size=200)


def kkt(A, a, l1, l2, w):
    """The largest violation of the optimality conditions of ``½wᵀ(A + λ₂I)w − aᵀw + λ₁‖w‖₁``,
    relative to ``max|a|``."""
    g = A @ w + l2 * w - a
    violation = np.where(w != 0, np.abs(g + l1 * np.sign(w)), np.maximum(np.abs(g) - l1, 0))
    return violation.max() / np.abs(a).max()


@pytest.mark.parametrize("data", [diabetes, correlated])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_the_solution_is_the_epochs_and_satisfies_the_optimality_conditions(data, l2):
    """At ``λ₁ = λ_max/10`` and ``/100``: the optimality conditions to round-off, the Gram gap at
    round-off of ``e``, and the coefficients of the epochs run to a Gram gap of ``1e-12``."""
    X, y = data()
    G = gram.gram(X, y, intercept=True)
    largest = np.abs(G.moment).max()
    for l1 in (largest / 10, largest / 100):
        result = active_set.solve(G.matrix, G.moment, l1, l2)
        assert result.optimal and 0 < result.n_iter <= 4 * 10 + 8
        assert kkt(G.matrix, G.moment, l1, l2, result.coef) <= 1e-13
        assert gram.gap(G, result.coef, l1, l2)[1] <= 1e-12 * G.energy
        with jax.enable_x64(True):
            epochs, _, _ = gram._epochs(
                G.matrix, G.moment, G.energy, np.zeros(10), l1, l2, 1e-12, 1000
            )
        np.testing.assert_allclose(result.coef, epochs, atol=1e-6 * np.abs(epochs).max())
        assert np.array_equal(result.coef != 0, np.asarray(epochs) != 0)


def test_zero_is_the_solution_above_the_largest_correlation():
    """``λ₁ ≥ max|a|``: ``w = 0`` without an iteration; from a warm start, back to zero."""
    X, y = diabetes()
    G = gram.gram(X, y, intercept=True)
    l1 = np.abs(G.moment).max()
    result = active_set.solve(G.matrix, G.moment, l1, 0.0)
    assert result == (pytest.approx(np.zeros(10), abs=0), True, 0)
    result = active_set.solve(G.matrix, G.moment, 2 * l1, 0.0, np.ones(10))
    assert result.optimal and not result.coef.any()


def test_a_singular_active_set_hands_over_to_the_epochs():
    """Duplicated features, both nonzero in the start: the active system is singular, so the
    active set stops short and the epochs, from its ``w``, reach the certified gap."""
    X, y = correlated()
    X = np.column_stack([X, X[:, 0]])  # feature 10 duplicates feature 0
    G = gram.gram(X, y, intercept=True)
    l1 = np.abs(G.moment).max() / 10
    start = np.zeros(11)
    start[[0, 10]] = 0.5
    assert not active_set.solve(G.matrix, G.moment, l1, 0.0, start).optimal

    def certify(w, b):
        return certified("squared", {"coef": w, "intercept": b}, X, y, l1, 0.0)

    result = gram.solve(G, l1, 0.0, certify, tol=1e-9, coef=start)
    assert result.why is None and result.gap <= 1e-9
    assert result.n_iter > 1  # the epochs ran


def test_the_lasso_on_few_features_compiles_nothing(compilations, monkeypatch):
    """A default lasso fit on diabetes: the active set's solution is certified at the first
    exact pass, so neither the epochs nor anything else is compiled or called."""

    def refuse(*args):
        raise AssertionError("the epochs ran")

    monkeypatch.setattr(gram, "_epochs", refuse)
    X, y = diabetes()
    model = LinearRegressor(l1=np.abs(X.T @ (y - y.mean())).max() / len(y) / 10, tol=1e-9)
    with jax.enable_x64(True):
        model.fit(X, y)
    assert model.solver_ == "gram" and model.converged_ and model.n_passes_ == 2
    assert compilations == []


def test_a_rejected_solution_is_refined_by_the_epochs():
    """A certificate that rejects the active set's solution (as rounding of the Gram matrix
    could): the epochs go on from it, with a lower target, to the next certificate."""
    X, y = diabetes()
    G = gram.gram(X, y, intercept=True)
    l1 = np.abs(G.moment).max() / 10
    calls = []

    def certify(w, b):
        primal, gap = certified("squared", {"coef": w, "intercept": b}, X, y, l1, 0.0)
        calls.append(gap)
        return primal, (1.0 if len(calls) == 1 else gap)

    result = gram.solve(G, l1, 0.0, certify, tol=1e-9)
    assert result.why is None and result.certificates == 2 == len(calls)
    assert result.n_iter > 1 and result.gap == calls[-1] <= 1e-9
