"""Newton's method: convergence, a singular Hessian, the certificate's say, bad input, and the
estimators' choice of it."""

import jax
import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_breast_cancer

from mflangevin.models import LinearClassifier, linear
from mflangevin.solvers import newton


def quadratic(x, data):  # ∇ of ½ (x − c)ᵀ A (x − c)
    A, c = data
    return A @ (x - c)


def curvature(x, data):
    A, _ = data
    return A


def test_a_quadratic_takes_one_step_and_every_stop_is_certified():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    A, c = Q @ np.diag(np.logspace(0, 6, 10)) @ Q.T, rng.normal(size=10)
    seen = []

    def certify(x, g, evaluations):
        seen.append(evaluations)
        return np.linalg.norm(g) < 1e-8

    result = newton.minimize(quadratic, curvature, np.zeros(10), (A, c), certify, max_iter=10)
    assert result.certified and result.iterations == 1  # the unit step is exact
    assert seen == [1, 3]  # the start's gradient, then a Hessian and the step's gradient
    assert result.evaluations == 3
    np.testing.assert_allclose(result.x, c, rtol=1e-8)


def test_a_singular_hessian_is_regularised_by_the_gradient():
    """``P(x) = Σ_j huber(x_j − 2)``: no curvature beyond one unit from the optimum, where the
    gradient is ``±1``; the regularised step still descends, then Newton's converges."""

    def gradient(x, data):
        return np.clip(x - 2.0, -1.0, 1.0)

    def hessian(x, data):
        return np.diag((np.abs(x - 2.0) < 1).astype(float))

    result = newton.minimize(
        gradient, hessian, np.array([-30.0, 40.0]), None,
        lambda x, g, evaluations: np.max(np.abs(g)) < 1e-12, max_iter=50,
    )  # fmt: skip
    assert result.certified
    np.testing.assert_allclose(result.x, 2.0, atol=1e-12)


def test_stops_at_the_budget_and_at_a_zero_gradient():
    A, c = np.diag([1.0, 100.0]), np.ones(2)
    never = newton.minimize(
        lambda x, data: np.sinh(x - 1), lambda x, data: np.diag(np.cosh(x - 1)), np.full(2, 5.0),
        None, lambda *_: False, max_iter=2,
    )  # fmt: skip
    assert not never.certified and never.iterations == 2 and "max_iter" in never.message
    at_optimum = newton.minimize(quadratic, curvature, c, (A, c), lambda *_: False, max_iter=5)
    assert at_optimum.iterations == 0 and "zero gradient" in at_optimum.message


def test_bad_input_is_refused():
    data = (np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="x0: expected a 1-D array"):
        newton.minimize(quadratic, curvature, np.zeros((2, 2)), data, None, max_iter=5)
    with pytest.raises(ValueError, match="max_iter: must be a positive integer"):
        newton.minimize(quadratic, curvature, np.zeros(2), data, None, max_iter=0)


@pytest.mark.parametrize("loss", ["logistic", "smoothed_hinge"])
def test_breast_cancer_takes_a_few_newton_iterations_where_lbfgs_takes_many(loss, compilations):
    """The small, ill-conditioned problem (standardised breast cancer, ``λ₂ = 1e-5``): the same
    fit as L-BFGS within the radii ``√(2 gap/λ₂)``, certified, in a fraction of the iterations,
    and nothing compiled."""
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    with jax.enable_x64(True):
        newton_fit = LinearClassifier(loss, l2=1e-5, tol=1e-7, max_iter=1000).fit(X, y)
        assert compilations == []  # all on the host
        lbfgs_fit = LinearClassifier(loss, l2=1e-5, tol=1e-7, max_iter=1000, solver="lbfgs")
        lbfgs_fit.fit(X, y)
    assert newton_fit.solver_ == "newton" and newton_fit.converged_
    assert newton_fit.duality_gap_ <= 1e-7 and newton_fit.n_iter_ * 5 < lbfgs_fit.n_iter_
    radius = sum(np.sqrt(2 * fit.duality_gap_ / 1e-5) for fit in (newton_fit, lbfgs_fit))
    assert np.linalg.norm(newton_fit.coef_ - lbfgs_fit.coef_) <= radius
    assert newton_fit.duality_gap_ == pytest.approx(newton_fit.duality_gap(X, y), rel=1e-9)


def test_auto_takes_newton_for_few_features_on_the_host(monkeypatch):
    model = LinearClassifier()
    assert model._solver(np.zeros((100, linear._NEWTON_FEATURES)), 0.0, 1e-3) == "newton"
    assert model._solver(np.zeros((100, linear._NEWTON_FEATURES + 1)), 0.0, 1e-3) == "lbfgs"
    assert model._solver(scipy.sparse.csr_matrix((100, 5)), 0.0, 1e-3) == "lbfgs"
    monkeypatch.setattr(linear, "HOST_VALUES", 0)  # data for the device
    assert model._solver(np.zeros((100, 5)), 0.0, 1e-3) == "lbfgs"
