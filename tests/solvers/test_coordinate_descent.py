"""Coordinate descent: Gap Safe screening never removes a feature of the optimum's support, the
gap (with the extrapolated dual point) is a valid certificate and tighter than the rescaled
residual's, one compiled inner loop for every working-set size, the estimators' solver choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_diabetes, make_classification

from mflangevin.models import LinearClassifier, LinearRegressor
from mflangevin.models._linear_certificate import certified
from mflangevin.solvers import coordinate_descent as cd

N, P = 80, 60


def problem(loss, seed=0):
    """A small problem with a sparse optimum: ``y`` as the loss reads it."""
    X, y = make_classification(N, P, n_informative=5, n_redundant=2, random_state=seed)
    if loss == "squared":
        return X, X[:, :5] @ np.arange(1.0, 6.0) + np.random.default_rng(seed).normal(size=N)
    return X, np.where(y == 1, 1.0, -1.0)


def largest(X, y):
    return np.max(np.abs(X.T @ (y - y.mean()))) / len(y)


@pytest.mark.parametrize(
    "loss, sparse",
    [("squared", False), ("logistic", True), ("smoothed_hinge", False)],
    ids=["squared-dense", "logistic-sparse", "smoothed_hinge-dense"],
)
def test_screening_keeps_the_support_and_the_gap_stays_a_certificate(loss, sparse):
    """Against a solution to a gap of 1e-13 without screening: no screened feature is in its
    support, and the gap after every truncated run bounds ``P − P*``."""
    with jax.enable_x64(True):
        X, y = problem(loss)
        l1 = largest(X, y) / 5
        data = scipy.sparse.csc_matrix(X) if sparse else X
        cols, _ = cd.columns(data, intercept=True)
        exact = cd.solve(loss, cols, y, l1, 0.0, intercept=True, tol=1e-13, screening=False)
        assert exact.why is None
        lowest = exact.primal - exact.gap  # ≤ P*
        support = exact.coef != 0
        assert 0 < np.count_nonzero(support) < P // 2
        screened_any = False
        for max_iter in (1, 2, 3, 100):
            result = cd.solve(loss, cols, y, l1, 0.0, intercept=True, tol=1e-10, max_iter=max_iter)
            assert not np.any(result.screened & support)
            screened_any |= bool(np.any(result.screened))
            assert result.gap >= result.primal - lowest - 1e-12
        assert screened_any and result.gap <= 1e-10
        assert np.array_equal(result.coef != 0, support)


def test_the_extrapolated_dual_point_is_feasible_and_tighter_than_the_residual():
    """At the fitted lasso on raw diabetes the extrapolated dual point certifies a gap orders of
    magnitude below the rescaled residual's (the host certificate at the same parameters); at
    arbitrary kept iterates it stays feasible: ``‖u‖_∞ ≤ λ₁`` and ``D ≤ P*``."""
    with jax.enable_x64(True):
        X, y = load_diabetes(return_X_y=True, scaled=False)
        model = LinearRegressor(l1=1.0, tol=1e-8, solver="cd").fit(X, y)
        assert model.converged_ and model.duality_gap_ <= 1e-8
        residual = model.duality_gap(X, y)  # the rescaled residual alone
        assert model.duality_gap_ < residual / 100
        cols, mean = cd.columns(X, intercept=True)
        best = model.objective_ - model.duality_gap_  # ≤ P*
        rng = np.random.default_rng(0)
        kept = jnp.asarray(rng.normal(size=(6, len(y))) * 100 + y)
        w = jnp.asarray(model.coef_)
        b = jnp.asarray(model.intercept_ + mean @ model.coef_)
        y = jnp.asarray(y)
        primal, dual, u, _, _ = cd._outer("squared", True, cols, y, w, b, kept, 6, 1.0, 0.0)
        assert float(jnp.max(jnp.abs(u))) <= 1.0
        assert float(dual) <= model.objective_ + 1e-9 and float(primal) >= best
        # The certificate's gap holds against the host's float64 objective.
        params = {"coef": model.coef_, "intercept": model.intercept_}
        assert certified("squared", params, X, y, 1.0, 0.0)[0] == pytest.approx(
            model.objective_, abs=1e-9
        )


def test_one_compiled_inner_loop_while_the_working_set_grows(compilations, capsys):
    with jax.enable_x64(True):
        X, y = problem("squared", seed=1)
        cols, _ = cd.columns(X, intercept=True)
        compilations.clear()
        result = cd.solve(
            "squared", cols, y, largest(X, y) / 100, 0.0, intercept=True, tol=1e-9, verbose=1
        )
        assert result.why is None
        sizes = {line.split()[-1] for line in capsys.readouterr().out.splitlines()}
        assert {"16", "32", "60"} <= sizes  # the set grew: 16, 32, then all 60 features
        assert compilations.count("jit(_inner)") <= 1 and compilations.count("jit(_outer)") <= 1


def test_solver_choice_and_bad_solver(compilations):
    """``"auto"`` takes coordinate descent for pure L1 on sparse data (unless its columns are
    very uneven) or on at most 10⁴ dense samples, and Acc-Prox-SVRG otherwise; a bad name is
    refused before compiling."""
    X, y = problem("logistic")
    assert LinearClassifier()._solver(X, 1e-2, 0.0) == "cd"
    assert LinearClassifier()._solver(X, 1e-2, 1e-2) == "acc-prox-svrg"
    assert LinearClassifier()._solver(X, 0.0, 1e-2) == "lbfgs"  # p = 60: more than Newton takes
    assert LinearClassifier(solver="cd")._solver(X, 0.0, 1e-2) == "cd"
    assert LinearClassifier()._solver(np.zeros((10_001, 2)), 1e-2, 0.0) == "acc-prox-svrg"
    assert LinearClassifier()._solver(scipy.sparse.csr_matrix(X), 1e-2, 0.0) == "cd"
    uneven = scipy.sparse.hstack([np.ones((N, 1)), scipy.sparse.eye(N, 30)], format="csr")
    assert cd.padding(uneven) > 2
    assert LinearClassifier()._solver(uneven, 1e-2, 0.0) == "acc-prox-svrg"
    compilations.clear()
    with pytest.raises(ValueError, match="solver"):
        LinearClassifier(l1=1e-2, solver="newton").fit(X, y)
    assert compilations == []


def test_sparse_columns_compile_once_and_give_the_dense_solution(compilations):
    """On sparse columns (one dual point a pass, the first set from the violators, ``Xw`` over
    the support) the solve compiles one outer and one inner program for a growing set, and
    reaches the dense solve's objective within the two gaps."""
    with jax.enable_x64(True):
        X, y = problem("logistic", seed=2)
        X[np.abs(X) < 1.0] = 0.0  # about a third non-zero
        l1 = largest(X, y) / 20
        dense = cd.solve("logistic", cd.columns(X, True)[0], y, l1, 0.0, intercept=True, tol=1e-10)
        cols, _ = cd.columns(scipy.sparse.csr_matrix(X), intercept=False)
        compilations.clear()
        sparse = cd.solve("logistic", cols, y, l1, 0.0, intercept=True, tol=1e-10)
        assert sparse.why is None and dense.why is None
        assert abs(sparse.primal - dense.primal) <= sparse.gap + dense.gap + 1e-12
        assert compilations.count("jit(_inner)") <= 1 and compilations.count("jit(_outer)") <= 1


def test_the_start_certificate_replaces_the_first_pass():
    """``first``, the host certificate's ``(P, D, u)`` at ``w = 0``, gives the same iterates as
    the solver's own first pass (one pass fewer); it is refused away from ``w = 0``."""
    with jax.enable_x64(True):
        X, y = problem("logistic", seed=2)
        X[np.abs(X) < 1.0] = 0.0
        l1 = largest(X, y) / 20
        cols, _ = cd.columns(scipy.sparse.csc_matrix(X), intercept=False)
        start = {"coef": np.zeros(P), "intercept": 0.0}
        primal, gap, u = certified("logistic", start, X, y, l1, 0.0, with_u=True)
        own = cd.solve("logistic", cols, y, l1, 0.0, intercept=True, tol=1e-10)
        handed = cd.solve(
            "logistic", cols, y, l1, 0.0, intercept=True, tol=1e-10, first=(primal, primal - gap, u)
        )
        assert handed.why is None and handed.n_iter == own.n_iter
        assert handed.passes == pytest.approx(own.passes - 1, abs=1e-12)
        np.testing.assert_allclose(handed.coef, own.coef, atol=1e-12)
        with pytest.raises(ValueError, match="first"):
            cd.solve("logistic", cols, y, l1, 0.0, intercept=True, tol=1e-10, coef=own.coef,
                     first=(primal, primal - gap, u))  # fmt: skip
