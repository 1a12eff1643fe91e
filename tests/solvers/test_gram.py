"""Coordinate descent on the Gram matrix: the same solutions as coordinate descent and L-BFGS,
its gap equal to the exact gap to round-off, a gap that the Gram matrix's cancellation gets wrong
caught by the exact certificate, one compiled program per ``p``, and ``solver="auto"``'s
choice."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_diabetes

from mflangevin.models import LinearClassifier, LinearRegressor
from mflangevin.models._linear_certificate import certified
from mflangevin.models.linear import ConvergenceWarning
from mflangevin.solvers import gram

N, P = 120, 15


def regression(seed=0):
    """Correlated features with means and scales far from 0 and 1, a sparse noisy target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, P)) + 0.5 * rng.normal(size=(N, 1))
    X = X * rng.uniform(0.5, 3, P) + rng.normal(size=P)
    return X, X[:, :4] @ np.array([2.0, -1.0, 0.5, 1.5]) + 3 + 0.3 * rng.normal(size=N)


@pytest.mark.parametrize(
    "l1, l2, intercept, reference",
    [
        (0.05, 0.0, True, "cd"),
        (0.05, 0.0, False, "cd"),
        (0.05, 0.01, True, "cd"),
        (0.0, 0.01, True, "lbfgs"),
        (0.0, 0.01, False, "lbfgs"),
    ],
    ids=["lasso", "lasso-no-intercept", "elastic-net", "ridge", "ridge-no-intercept"],
)
def test_the_solution_is_that_of_coordinate_descent_and_lbfgs(l1, l2, intercept, reference):
    """Both fits certified to 1e-10 in float64: equal objectives and coefficients; float32 X
    (the same numbers) is solved in float64 on the Gram matrix and reaches the same gap."""
    with jax.enable_x64(True):
        X, y = regression()
        settings = dict(l1=l1, l2=l2, fit_intercept=intercept, tol=1e-10, max_iter=1000)
        ours = LinearRegressor(solver="gram", **settings).fit(X, y)
        other = LinearRegressor(solver=reference, **settings).fit(X, y)
        assert ours.solver_ == "gram" and ours.converged_ and other.converged_
        assert ours.duality_gap_ == certified("squared", ours._fitted_params(), X, y, l1, l2)[1]
        assert abs(ours.objective_ - other.objective_) <= 2e-10
        np.testing.assert_allclose(ours.coef_, other.coef_, atol=1e-4)
        assert ours.intercept_ == pytest.approx(other.intercept_, abs=1e-4)
        if intercept:
            assert np.count_nonzero(ours.coef_) < P or l1 == 0
    X32 = X.astype(np.float32)
    single = LinearRegressor(solver="gram", **settings).fit(X32, y.astype(np.float32))
    with jax.enable_x64(True):
        double = LinearRegressor(solver="gram", **settings).fit(X32.astype(np.float64), y)
    assert single.converged_ and single.duality_gap_ <= 1e-10
    np.testing.assert_allclose(single.coef_, double.coef_, rtol=1e-6, atol=1e-6)


def test_the_gram_gap_equals_the_exact_gap_to_round_off():
    """At random coefficients, with and without the intercept and ``λ₂``: ``P`` and the gap
    from the Gram matrix equal those from the residuals to a few ulps of ``P``."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        X, y = regression()
        for intercept in (True, False):
            G = gram.gram(X, y, intercept)
            for l1, l2 in ((0.05, 0.0), (0.05, 0.01), (0.0, 0.01)):
                for scale in (0.1, 1.0):
                    w = scale * rng.normal(size=P)
                    primal, gap = gram._gap(
                        jnp, G.matrix, G.moment, G.energy, w, G.matrix @ w, l1, l2
                    )
                    params = {"coef": w}
                    if intercept:
                        params["intercept"] = G.offset - G.mean @ w
                    exact_primal, exact_gap = certified("squared", params, X, y, l1, l2)
                    assert float(primal) == pytest.approx(exact_primal, rel=1e-12)
                    assert float(gap) == pytest.approx(exact_gap, abs=1e-12 * exact_primal)


def test_a_gap_lost_to_cancellation_is_caught_by_the_exact_certificate():
    """A target of mean 1e8 fitted without an intercept (the mean by a column of ones): the Gram
    gap subtracts numbers of 1e16 and is wrong by far more than ``tol``, so a stop that it
    would certify is confirmed by the exact gap or refused (*precision loss*), never reported
    as converged above ``tol``."""
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        X = np.hstack([rng.normal(size=(N, 3)), np.ones((N, 1))])
        y = X @ np.array([1.0, -2.0, 0.5, 1e8]) + 1e-3 * rng.normal(size=N)
        G = gram.gram(X, y, intercept=False)
        exact, estimates = [], []

        def certify(w, b):
            primal, gap = certified("squared", {"coef": w}, X, y, 0.0, 1e-2)
            estimates.append(
                float(gram._gap(jnp, G.matrix, G.moment, G.energy, w, G.matrix @ w, 0, 1e-2)[1])
            )
            exact.append(gap)
            return primal, gap

        result = gram.solve(G, 0.0, 1e-2, certify, tol=1e-9)
        # The Gram gap is off by orders of magnitude more than tol at the returned point ...
        assert abs(estimates[-1] - exact[-1]) > 100 * 1e-9
        # ... and what is reported is the exact gap, converged or not.
        assert result.gap == exact[-1]
        assert result.gap <= 1e-9 or result.why.startswith("precision loss")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LinearRegressor(l2=1e-2, fit_intercept=False, tol=1e-9).fit(X, y)
        assert model.solver_ == "gram"
        assert model.duality_gap_ == pytest.approx(model.duality_gap(X, y), abs=1e-12)
        assert model.converged_ == (model.duality_gap_ <= 1e-9)


def test_one_compiled_program_for_every_n_and_penalty(compilations):
    """Fits of different ``n``, penalties and tolerances, the same ``p``: ``_epochs`` is
    compiled at most once (0 when an earlier test compiled it)."""
    with jax.enable_x64(True):
        X, y = regression()
        for n, l1, l2 in ((N, 0.05, 0.0), (N - 7, 0.02, 0.01), (N - 20, 0.0, 0.1)):
            model = LinearRegressor(l1=l1, l2=l2, tol=1e-9, solver="gram").fit(X[:n], y[:n])
            assert model.converged_
    assert compilations.count("jit(_epochs)") <= 1


def test_auto_chooses_the_gram_matrix_where_it_is_cheaper_and_bad_uses_are_refused():
    X = np.zeros((50, 10))
    assert LinearRegressor()._solver(X, 0.0, 1e-2) == "gram"
    assert LinearRegressor()._solver(X, 1e-2, 0.0) == "gram"
    assert LinearRegressor()._solver(X, 1e-2, 1e-2) == "gram"
    assert LinearRegressor()._solver(np.zeros((9, 10)), 1e-2, 0.0) == "cd"  # n < p
    assert LinearRegressor()._solver(np.zeros((2100, 2049)), 0.0, 1e-2) == "lbfgs"  # p large
    assert LinearRegressor(batch_size=8)._solver(X, 1e-2, 0.0) == "acc-prox-svrg"
    assert LinearRegressor()._solver(scipy.sparse.csr_matrix(X), 1e-2, 0.0) != "gram"
    assert LinearClassifier()._solver(X, 0.0, 1e-2) == "newton"  # few features, on the host
    with pytest.raises(ValueError, match="solver: 'gram' needs the squared loss"):
        LinearClassifier(solver="gram").fit(X, np.arange(50) % 2)
    with pytest.raises(ValueError, match="solver: 'gram' needs dense X"):
        LinearRegressor(solver="gram").fit(scipy.sparse.csr_matrix(X), np.ones(50))
    # On raw diabetes the default fit takes the Gram matrix and reaches 1e-8 (pure L1).
    with jax.enable_x64(True):
        X, y = load_diabetes(return_X_y=True, scaled=False)
        model = LinearRegressor(l1=1.0, tol=1e-8).fit(X, y)
    assert model.solver_ == "gram" and model.converged_ and model.n_passes_ == 2


@pytest.mark.parametrize("offset", [0.0, 1e4], ids=["small-means", "large-means"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_shifted_pass_gives_the_centred_products(monkeypatch, offset, dtype):
    """Whatever the shift (none, the first rows' means, or a second pass at the exact means when
    the first rows are not typical: rows sorted by a feature), ``A``, ``a``, ``x̄`` equal those
    of the exactly centred data to round-off of the centred scale, and the same lasso is
    certified to 1e-10 with the translated features (the intercept absorbs the translation)."""
    passes = []
    products = gram._products
    monkeypatch.setattr(gram, "_products", lambda *args: passes.append(1) or products(*args))
    monkeypatch.setattr(gram, "_SAMPLE", 16)
    X, y = regression()
    X = (X[np.argsort(X[:, 0])] - X.mean(axis=0) + offset).astype(dtype)
    exact = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    # Sorted, the first rows are not typical: a second pass; shuffled, one.
    for rows, expected in ((np.arange(N), 2), (np.random.default_rng(3).permutation(N), 1)):
        passes.clear()
        G = gram.gram(X[rows], y[rows], intercept=True)
        assert len(passes) == expected
        scale = np.sqrt(np.outer(np.diagonal(G.matrix), np.diagonal(G.matrix)))
        assert np.all(np.abs(G.matrix - exact.T @ exact / N) <= 1e-13 * scale)
        reference = exact[rows].T @ (y[rows] - y.mean()) / N
        assert np.all(np.abs(G.moment - reference) <= 1e-13 * np.sqrt(np.diagonal(scale)))
        mean = X.astype(np.float64).mean(axis=0)
        assert np.all(np.abs(G.mean - mean) <= 1e-14 * (offset + np.sqrt(np.diagonal(G.matrix))))
    with jax.enable_x64(True):
        settings = dict(l1=0.05, tol=1e-10, max_iter=1000, solver="gram")
        far = LinearRegressor(**settings).fit(X, y)
        near = LinearRegressor(**settings).fit(X.astype(np.float64) - offset, y)
    assert far.converged_ and far.duality_gap_ <= 1e-10 and near.converged_
    np.testing.assert_allclose(far.coef_, near.coef_, atol=1e-4)


def test_a_fit_from_zero_takes_its_start_gap_from_the_gram_matrix(monkeypatch):
    """From ``w = 0`` the Gram gap is the exact one (``‖r‖²/n = e``) and only decides to go on:
    a lasso fit computes one exact certificate (its stop), and the start gap equals the exact
    one to round-off; where ``w = 0`` is the solution (``λ₁ ≥ λ_max``), that stop is the exact
    certificate as well."""
    import mflangevin.models.linear as linear

    calls = []
    monkeypatch.setattr(
        linear, "certified", lambda *args, **kwargs: calls.append(1) or certified(*args, **kwargs)
    )
    with jax.enable_x64(True):
        X, y = regression()
        largest = np.max(np.abs(X.T @ (y - y.mean()))) / N
        model = LinearRegressor(l1=0.05, tol=1e-10).fit(X, y)
        assert model.solver_ == "gram" and model.converged_ and len(calls) == 1
        zero = {"coef": np.zeros(P), "intercept": y.mean()}  # (the intercept decouples)
        exact = certified("squared", zero, X, y, 0.05, 0.0)[1]
        assert model.history_[0, 1] == pytest.approx(exact, rel=1e-12)
        calls.clear()
        model = LinearRegressor(l1=1.01 * largest, tol=1e-10).fit(X, y)
    assert model.converged_ and not np.any(model.coef_) and len(calls) == 1
    assert model.duality_gap_ == certified("squared", zero, X, y, 1.01 * largest, 0.0)[1]
