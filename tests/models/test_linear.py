"""LinearModel: solutions against scikit-learn, the duality gap as a certificate, the estimator
protocol and bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mflangevin.models import LinearModel
from mflangevin.models.linear import ConvergenceWarning

N, P = 300, 6


def classification(n=N, p=P, seed=0):
    X, y = make_classification(
        n, p, n_informative=4, n_redundant=1, random_state=seed, class_sep=0.8
    )
    return X, y


def primal(model, X, y_signed, params):
    objective = model.objective(X, y_signed)
    return float(objective.value(params))


def exact_minimum(model, X, y_signed):
    """``P*`` by L-BFGS-B on the smooth split ``w = w⁺ − w⁻`` (exact for L1), in float64."""
    X, y_signed = np.asarray(X), np.asarray(y_signed)
    objective = model.objective(X, y_signed)
    p = X.shape[1]

    def unpack(z):
        params = {"coef": jnp.asarray(z[:p] - z[p : 2 * p])}
        if model.fit_intercept:
            params["intercept"] = jnp.asarray(z[-1])
        return params

    def fun(z):
        value, grad = jax.value_and_grad(
            lambda z: (
                objective.smooth(unpack(z))[0]
                + model.l1 * jnp.sum(z[: 2 * p])
                + 0.5 * model.l2 * jnp.sum((z[:p] - z[p : 2 * p]) ** 2)
            )
        )(jnp.asarray(z))
        return float(value), np.asarray(grad)

    size = 2 * p + model.fit_intercept
    bounds = [(0, None)] * (2 * p) + [(None, None)] * model.fit_intercept
    result = minimize(
        fun, np.zeros(size), jac=True, method="L-BFGS-B", bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )  # fmt: skip
    return result.fun


def test_l2_logistic_matches_lbfgs_with_a_certified_gap():
    with jax.enable_x64(True):
        X, y = classification()
        l2 = 1e-2
        model = LinearModel("logistic", l2=l2, tol=1e-13, max_iter=200).fit(X, y)
        reference = LogisticRegression(C=1 / (N * l2), tol=1e-12, max_iter=10_000).fit(X, y)
        ours = np.append(model.coef_, model.intercept_)
        theirs = np.append(reference.coef_.ravel(), reference.intercept_)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * np.abs(theirs).max())

        y_signed = np.where(y == model.classes_[1], 1.0, -1.0)
        best = {"coef": jnp.asarray(reference.coef_.ravel()),
                "intercept": jnp.asarray(reference.intercept_[0])}  # fmt: skip
        suboptimality = model.objective_ - primal(model, X, y_signed, best)
        assert model.converged_ and model.duality_gap_ <= 1e-8
        assert model.duality_gap_ >= suboptimality - 1e-14
        assert model.duality_gap_ == pytest.approx(model.duality_gap(X, y_signed), abs=1e-15)
        assert model.n_passes_ == pytest.approx(model.history_[-1, 0])


@pytest.mark.parametrize(
    "loss,l1,l2,fit_intercept",
    [
        ("logistic", 0.0, 1e-2, True),
        ("logistic", 2e-2, 0.0, True),  # λ₂ = 0: α rescaled into the dual ball
        ("smoothed_hinge", 1e-2, 1e-2, True),
        ("squared", 5e-2, 1e-2, True),
        ("squared", 5e-2, 0.0, False),
    ],
)
def test_gap_bounds_the_suboptimality_at_any_parameters(loss, l1, l2, fit_intercept):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(120, P)) + 0.5
        signal = X @ np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0]) + 2.0 * rng.normal(size=120)
        y_signed = signal if loss == "squared" else np.where(signal > 0, 1.0, -1.0)
        model = LinearModel(loss, l1=l1, l2=l2, fit_intercept=fit_intercept)
        minimum = exact_minimum(model, X, y_signed)
        for scale in (0.0, 0.01, 0.1, 1.0, 3.0):
            params = {"coef": jnp.asarray(rng.normal(scale=scale, size=P))}
            if fit_intercept:
                params["intercept"] = jnp.asarray(rng.normal(scale=scale))
            gap = model.duality_gap(X, y_signed, params)
            assert gap >= primal(model, X, y_signed, params) - minimum - 1e-9
        # And the fit drives it down (without λ₂ the rescaled gap is first order in the
        # distance to the solution, so it certifies less per pass).
        tol = 1e-9 if l2 > 0 else 1e-4
        fitted = model.set_params(tol=tol, max_iter=500).fit(X, y_signed)
        assert fitted.converged_ and fitted.duality_gap_ <= tol
        assert fitted.objective_ - minimum <= fitted.duality_gap_ + 1e-9


def test_elastic_net_support_matches_sklearn_saga():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        X = rng.normal(size=(400, 10))
        w = np.array([2.0, -2.0, 1.5, 0, 0, 0, 0, 0, 0, 0])
        y = (X @ w + 0.5 * rng.normal(size=400) > 0).astype(int)
        l1, l2 = 2e-2, 1e-2
        model = LinearModel("logistic", l1=l1, l2=l2, tol=1e-10, max_iter=300).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SklearnConvergenceWarning)
            reference = LogisticRegression(
                C=1 / (400 * (l1 + l2)), l1_ratio=l1 / (l1 + l2), solver="saga",
                tol=1e-12, max_iter=20_000,
            ).fit(X, y)  # fmt: skip
        ours = np.flatnonzero(model.coef_)
        theirs = np.flatnonzero(np.abs(reference.coef_.ravel()) > 1e-8)
        assert 0 < len(ours) < 10
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_allclose(model.coef_, reference.coef_.ravel(), atol=1e-5)


def test_ridge_with_intercept_matches_the_closed_form():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(80, 3)) + 2.0
        y = X @ np.array([1.0, 0.0, -1.0]) + 3.0 + 0.1 * rng.normal(size=80)
        l2 = 0.1
        model = LinearModel("squared", l2=l2, tol=1e-12, max_iter=300).fit(X, y)
        Xc, yc = X - X.mean(0), y - y.mean()
        w = np.linalg.solve(Xc.T @ Xc / 80 + l2 * np.eye(3), Xc.T @ yc / 80)
        np.testing.assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-6 * np.abs(w).max())
        assert model.intercept_ == pytest.approx(y.mean() - X.mean(0) @ w, rel=1e-6)
        assert model.score(X, y) > 0.95


def test_scikit_learn_protocol():
    X, y = classification()
    labels = np.array(["no", "yes"])[y]
    model = LinearModel(l2=1e-2, tol=1e-5)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    model.fit(X, labels)
    assert model.classes_.tolist() == ["no", "yes"]
    assert set(model.predict(X)) <= {"no", "yes"} and model.score(X, labels) > 0.65
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X) == "yes", proba[:, 1] > 0.5)
    assert model.n_features_in_ == P and model.n_iter_ == len(model.history_)
    with pytest.raises(AttributeError, match="predict_proba"):
        LinearModel("smoothed_hinge").predict_proba(X)


def test_same_seed_same_fit_and_non_convergence_is_reported():
    X, y = classification()
    fits = [LinearModel(l2=1e-2, tol=1e-5, random_state=4).fit(X, y).coef_ for _ in range(2)]
    np.testing.assert_array_equal(fits[0], fits[1])
    with pytest.warns(ConvergenceWarning, match="duality gap"):
        model = LinearModel(l2=1e-3, tol=1e-9, max_iter=1).fit(X, y)
    assert not model.converged_ and model.duality_gap_ > 1e-9


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"l1": -1.0}, ValueError, "l1: must be non-negative"),
        ({"l2": float("nan")}, ValueError, "l2: must be non-negative"),
        ({"l1": 0.0, "l2": 0.0}, ValueError, "l1, l2: at least one"),
        ({"loss": "hinge"}, ValueError, "loss: expected one of"),
        ({"tol": 0.0}, ValueError, "tol: must be positive"),
        ({"max_iter": 0}, ValueError, "max_iter: must be a positive integer"),
        ({"batch_size": 0}, ValueError, "batch_size: must be a positive integer"),
        ({"inner_steps": -2}, ValueError, "inner_steps: must be a positive integer"),
        ({"step_size": float("inf")}, ValueError, "step_size: must be positive and finite"),
        ({"momentum": 1.5}, ValueError, "momentum: expected None or a number"),
        ({"output": "best"}, ValueError, "output: expected one of"),
        ({"fit_intercept": 1}, TypeError, "fit_intercept: expected True or False"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        LinearModel(**kwargs)


def test_bad_data_are_refused_before_compiling():
    X, y = classification(n=50)
    bad_X = X.copy()
    bad_X[3, 1] = np.nan
    model = LinearModel(l2=1e-2)
    with pytest.raises(ValueError, match="X: has NaN"):
        model.fit(bad_X, y)
    with pytest.raises(ValueError, match="X: expected a"):
        model.fit(X[0], y)
    with pytest.raises(ValueError, match="y: expected shape"):
        model.fit(X, y[:-1])
    with pytest.raises(ValueError, match="y: the logistic loss needs exactly two classes"):
        model.fit(X, np.arange(50) % 3)
    with pytest.raises(ValueError, match="y: must be finite"):
        LinearModel("squared").fit(X, np.full(50, np.nan))
    with pytest.raises(ValueError, match=r"y: the logistic loss needs labels in \{-1, \+1\}"):
        model.objective(X, y)  # {0, 1}: fit maps classes, the objective does not
    with pytest.raises(ValueError, match="batch_size: must be at most"):
        LinearModel(l2=1e-2, batch_size=51).fit(X, y)
    with pytest.raises(ValueError, match="params: expected a dict"):
        model.duality_gap(X, 2.0 * y - 1, {"coef": jnp.zeros(P)})
    with pytest.raises(ValueError, match="params: the model is not fitted"):
        model.duality_gap(X, 2.0 * y - 1)
