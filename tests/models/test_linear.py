"""LinearClassifier and LinearRegressor: solutions against scikit-learn, the duality gap as a
certificate, scikit-learn's own estimator checks, model selection and bad input."""

import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import scipy.sparse
from scipy.optimize import minimize
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mflangevin.models import LinearClassifier, LinearRegressor, _linear_data, linear
from mflangevin.models.linear import ConvergenceWarning


def model_for(loss, **kwargs):
    if loss == "squared":
        return LinearRegressor(**kwargs)
    return LinearClassifier(loss, **kwargs)


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
    l1, l2 = model.l1, model.l2

    def unpack(z):
        params = {"coef": jnp.asarray(z[:p] - z[p : 2 * p])}
        if model.fit_intercept:
            params["intercept"] = jnp.asarray(z[-1])
        return params

    def fun(z):
        value, grad = jax.value_and_grad(
            lambda z: (
                objective.smooth(unpack(z))[0]
                + l1 * jnp.sum(z[: 2 * p])
                + 0.5 * l2 * jnp.sum((z[:p] - z[p : 2 * p]) ** 2)
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
        model = LinearClassifier(l2=l2, tol=1e-13, max_iter=200).fit(X, y)
        reference = LogisticRegression(C=1 / (N * l2), tol=1e-12, max_iter=10_000).fit(X, y)
        assert model.coef_.shape == reference.coef_.shape
        assert model.intercept_.shape == reference.intercept_.shape
        best = {"coef": jnp.asarray(reference.coef_.ravel()),
                "intercept": jnp.asarray(reference.intercept_[0])}  # fmt: skip
        # λ₂-strong convexity in w: ‖w − w*‖² ≤ 2 gap / λ₂, for both solutions.
        radius = np.sqrt(2 * model.duality_gap_ / l2)
        radius += np.sqrt(2 * model.duality_gap(X, y, best) / l2)
        assert np.linalg.norm(model.coef_ - reference.coef_) <= radius
        assert radius < 1e-5
        suboptimality = model.objective_ - primal(model, X, y, best)
        assert model.converged_ and model.duality_gap_ <= 1e-8
        assert model.duality_gap_ >= suboptimality - 1e-14
        assert model.duality_gap_ == pytest.approx(model.duality_gap(X, y), abs=1e-14)
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
        model = model_for(loss, l1=l1, l2=l2, fit_intercept=fit_intercept)
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
        model = LinearClassifier(l1=l1, l2=l2, tol=1e-10, max_iter=300).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SklearnConvergenceWarning)
            reference = LogisticRegression(
                C=1 / (400 * (l1 + l2)), l1_ratio=l1 / (l1 + l2), solver="saga",
                tol=1e-12, max_iter=20_000,
            ).fit(X, y)  # fmt: skip
        ours = np.flatnonzero(model.coef_[0])
        theirs = np.flatnonzero(np.abs(reference.coef_.ravel()) > 1e-8)
        assert 0 < len(ours) < 10
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-5)


def test_ridge_with_intercept_matches_the_closed_form():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(80, 3)) + 2.0
        y = X @ np.array([1.0, 0.0, -1.0]) + 3.0 + 0.1 * rng.normal(size=80)
        l2 = 0.1
        model = LinearRegressor(l2=l2, tol=1e-12, max_iter=300).fit(X, y)
        Xc, yc = X - X.mean(0), y - y.mean()
        w = np.linalg.solve(Xc.T @ Xc / 80 + l2 * np.eye(3), Xc.T @ yc / 80)
        np.testing.assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-6 * np.abs(w).max())
        assert model.intercept_ == pytest.approx(y.mean() - X.mean(0) @ w, rel=1e-6)
        assert model.score(X, y) > 0.95


# tol = 1e-4 keeps the checks short; some of their data sets are separable, on which the gap
# falls slowly, and a ConvergenceWarning (an error in this suite) would fail the check: as in
# scikit-learn's own tests of its estimators, the warning is ignored here.
CHECKED = [
    LinearClassifier(tol=1e-4),
    LinearClassifier("smoothed_hinge", tol=1e-4),
    LinearRegressor(tol=1e-4),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(CHECKED)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_model_selection_pipelines_and_clone():
    X, y = classification(n=120)
    pipeline = make_pipeline(StandardScaler(), LinearClassifier(l2=1e-2, tol=1e-5))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert np.all(np.isfinite(scores)) and np.all(scores > 0.6)
    search = GridSearchCV(pipeline, {"linearclassifier__l2": [1e-3, 1e-1]}, cv=3).fit(X, y)
    assert np.isfinite(search.best_score_)
    assert search.best_score_ == np.max(search.cv_results_["mean_test_score"])
    assert search.predict(X).shape == (120,) and 0.6 < search.score(X, y) <= 1
    regression = GridSearchCV(LinearRegressor(tol=1e-4), {"l1": [1e-3, 1e-1]}, cv=3)
    regression.fit(X, X @ np.arange(P) + 1.0)
    assert regression.best_params_ == {"l1": 1e-3} and regression.best_score_ > 0.99
    copy = clone(pipeline)
    assert copy.get_params()["linearclassifier__l2"] == 1e-2 and not hasattr(copy[-1], "coef_")
    assert is_classifier(LinearClassifier()) and is_regressor(LinearRegressor())


def test_scikit_learn_protocol():
    X, y = classification()
    labels = np.array(["no", "yes"])[y]
    model = LinearClassifier(l2=1e-2, tol=1e-5)
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, labels)
    assert model.classes_.tolist() == ["no", "yes"]
    assert set(model.predict(X)) <= {"no", "yes"} and model.score(X, labels) > 0.65
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X) == "yes", proba[:, 1] > 0.5)
    assert model.n_features_in_ == P and model.solver_ == "newton"  # few features, on the host
    assert model.n_iter_ >= len(model.history_) - 1  # Newton: a gap at some iterations only
    assert model.duality_gap(X, labels) == pytest.approx(model.duality_gap_, abs=1e-12)
    # Methods follow the loss: probabilities for the logistic loss only, no decision function
    # for a regressor.
    assert not hasattr(LinearClassifier("smoothed_hinge"), "predict_proba")
    assert not hasattr(LinearRegressor(), "decision_function")
    assert not hasattr(LinearRegressor(), "predict_proba")


def test_same_seed_same_fit_and_non_convergence_is_reported():
    X, y = classification()
    fits = [LinearClassifier(l2=1e-2, tol=1e-5, random_state=4).fit(X, y).coef_ for _ in range(2)]
    np.testing.assert_array_equal(fits[0], fits[1])
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        model = LinearClassifier(l2=1e-3, tol=1e-9, max_iter=1).fit(X, y)
    assert not model.converged_ and model.duality_gap_ > 1e-9
    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"l1": -1.0}, ValueError, "l1: must be non-negative"),
        ({"l2": float("nan")}, ValueError, "l2: must be non-negative"),
        ({"l2": "a"}, TypeError, "l2: expected a number"),
        ({"l1": 0.0, "l2": 0.0}, ValueError, "l1, l2: at least one"),
        ({"loss": "hinge"}, ValueError, "loss: expected one of"),
        ({"tol": 0.0}, ValueError, "tol: must be positive"),
        ({"max_iter": 0}, ValueError, "max_iter: must be a positive integer"),
        ({"batch_size": 0}, ValueError, "batch_size: must be a positive integer"),
        ({"batch_size": 51}, ValueError, "batch_size: must be at most"),
        ({"inner_steps": -2}, ValueError, "inner_steps: must be a positive integer"),
        ({"step_size": float("inf")}, ValueError, "step_size: must be positive and finite"),
        ({"momentum": 1.5}, ValueError, "momentum: expected None or a number"),
        ({"momentum": True}, ValueError, "momentum: expected None or a number"),
        ({"momentum": "fast"}, ValueError, "momentum: expected one of"),
        ({"output": "best"}, ValueError, "output: expected one of"),
        ({"fit_intercept": 1}, TypeError, "fit_intercept: expected True or False"),
        ({"random_state": -1}, ValueError, "random_state: must be None or a non-negative"),
    ],
)
def test_bad_settings_are_refused_in_fit(kwargs, error, match):
    X, y = classification(n=50)
    model = LinearClassifier(**kwargs)  # scikit-learn's rule: nothing is checked before fit
    with pytest.raises(error, match=match):
        model.fit(X, y)


def test_momentum_may_be_any_real_scalar():
    X, y = classification(n=50)
    for momentum in (np.float32(0.5), jnp.asarray(0.5), 0):
        model = LinearClassifier(l2=1e-2, momentum=momentum, tol=1e-4).fit(X, y)
        assert model.converged_


def test_bad_data_get_scikit_learn_errors_before_compiling(compilations):
    X, y = classification(n=50)
    bad_X = X.copy()
    bad_X[3, 1] = np.nan
    model = LinearClassifier(l2=1e-2)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.fit(bad_X, y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        model.fit(X[0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(X, y[:-1])
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        model.fit(X, np.arange(50) % 3)
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X, np.linspace(0, 1, 50))
    with pytest.raises(ValueError, match="only one class"):
        model.fit(X, np.ones(50))
    with pytest.raises(ValueError, match="Complex data not supported"):
        model.fit(X + 1j, y)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        LinearRegressor().fit(X, np.full(50, np.nan))
    with pytest.raises(ValueError, match="params: expected a dict"):
        model.duality_gap(X, y, {"coef": np.zeros(P)})
    with pytest.raises(NotFittedError):
        model.duality_gap(X, y)
    assert compilations == []


@pytest.mark.parametrize("on_host", [True, False], ids=["host-gap", "device-gap"])
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16, ml_dtypes.bfloat16], ids=["float32", "float16", "bfloat16"]
)
def test_converged_only_when_the_float64_gap_is_at_most_tol(dtype, on_host, monkeypatch):
    """The reported gap is the float64 gap of the data as given, whatever their dtype (before,
    bfloat16 data reported a gap of 0.0 where the float64 gap was 1.4e-3)."""
    if not on_host:  # the device computes the gap, float64 confirms it
        monkeypatch.setattr(linear, "_HOST_SIZE", 0)
    X, y = classification(n=200)
    X = X.astype(dtype)
    model = LinearClassifier(l2=1e-3, tol=1e-6, max_iter=50).fit(X, y)
    assert model.converged_
    assert model.duality_gap_ == pytest.approx(model.duality_gap(X, y), rel=1e-9)
    assert 0 < model.duality_gap_ <= 1e-6


@pytest.mark.parametrize("on_host", [True, False], ids=["host-gap", "device-gap"])
def test_a_tol_below_the_dtype_warns_of_precision_loss(on_host, monkeypatch):
    """float32 iterates cannot reach a float64 gap of 1e-13: the fit says so and stops, where it
    used to report a negative float32 gap as converged (the compiled gradient: NumPy's float32
    one on the host reaches 8e-14 here)."""
    monkeypatch.setattr(linear, "HOST_VALUES", 0)
    if not on_host:
        monkeypatch.setattr(linear, "_HOST_SIZE", 0)
    X, y = classification(n=200)
    with pytest.warns(ConvergenceWarning, match="precision loss: float32 iterates"):
        model = LinearClassifier(l2=1e-3, tol=1e-13, max_iter=100).fit(X.astype(np.float32), y)
    assert not model.converged_ and model.n_iter_ < 100
    assert model.duality_gap_ == pytest.approx(model.duality_gap(X, y), rel=1e-6)
    assert model.duality_gap_ > 1e-13


def test_a_diverging_fit_says_lower_step_size():
    """η 10³ times too large: the objective grows, the kernel flags it, and fit advises a smaller
    step (it used to advise raising max_iter)."""
    X, y = classification(n=100)
    with pytest.warns(ConvergenceWarning, match="a stage diverged: lower step_size"):
        model = LinearClassifier(l2=1e-2, step_size=1e3).fit(X, y)
    assert not model.converged_ and np.all(np.isfinite(model.coef_))


def test_degenerate_inputs_get_the_right_answer_or_a_clear_error(compilations):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    # All-zero X: w = 0 is optimal and certified at once, with or without an intercept (the
    # intercept alone fits the class balance, here ½ → b = 0); nothing is compiled for it.
    for fit_intercept in (True, False):
        model = LinearClassifier(l2=1e-2, fit_intercept=fit_intercept).fit(np.zeros((60, 4)), y)
        assert model.converged_ and model.n_iter_ == 0 and model.duality_gap_ == 0.0
        np.testing.assert_array_equal(model.coef_, 0.0)
    assert compilations == []
    # A constant feature gets a zero coefficient; the others are unaffected.
    X = rng.normal(size=(60, 3))
    with_constant = np.insert(X, 1, 7.0, axis=1)
    model = LinearRegressor(l2=1e-2, tol=1e-10).fit(with_constant, X @ [1.0, -1.0, 0.5] + 2.0)
    reference = LinearRegressor(l2=1e-2, tol=1e-10).fit(X, X @ [1.0, -1.0, 0.5] + 2.0)
    assert model.coef_[1] == 0.0
    np.testing.assert_allclose(np.delete(model.coef_, 1), reference.coef_, atol=1e-5)
    # One sample: the intercept fits it.
    one = LinearRegressor().fit(np.ones((1, 3)), [2.0])
    assert one.converged_ and one.predict(np.ones((1, 3)))[0] == pytest.approx(2.0, abs=1e-3)
    # Features of scale 1e20 with λ₂ = 1e-2: no float64 gap can certify tol (the gradient's
    # rounding alone exceeds √(2λ₂·tol)); a clear error before anything is compiled, where the
    # old fit raised an OverflowError.
    compilations.clear()
    with pytest.raises(ValueError, match="tol: a duality gap of 1e-06 cannot be certified"):
        LinearClassifier(l2=1e-2).fit(X * 1e20, y)
    assert compilations == []


def test_pure_l1_reaches_a_gap_of_1e_8_with_scikit_learns_support():
    """At the defaults (adaptive momentum): pure-L1 logistic regression on standardised breast
    cancer and the lasso on raw diabetes reach a float64 gap of 1e-8 with the support of
    scikit-learn's solutions. The old defaults stalled at gaps of 3.4e-3 and 49.7."""
    with jax.enable_x64(True):
        X, y = load_breast_cancer(return_X_y=True)
        X = (X - X.mean(0)) / X.std(0)
        C = 0.1
        model = LinearClassifier(l1=1 / (len(y) * C), tol=1e-8).fit(X, y)
        assert model.converged_ and model.duality_gap_ <= 1e-8 and model.l2 is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SklearnConvergenceWarning)
            reference = LogisticRegression(
                C=C, l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=20_000
            ).fit(X, y)
        np.testing.assert_array_equal(
            np.flatnonzero(model.coef_), np.flatnonzero(np.abs(reference.coef_) > 1e-10)
        )

        X, y = load_diabetes(return_X_y=True, scaled=False)
        model = LinearRegressor(l1=1.0, tol=1e-8).fit(X, y)
        reference = Lasso(alpha=1.0, tol=1e-12, max_iter=100_000).fit(X, y)
        assert model.converged_ and model.duality_gap_ <= 1e-8
        np.testing.assert_array_equal(np.flatnonzero(model.coef_), np.flatnonzero(reference.coef_))
        # The gap certifies scikit-learn's solution too: the two objectives agree within it.
        theirs = {"coef": reference.coef_, "intercept": reference.intercept_}
        assert abs(model.objective_ - primal(model, X, y, theirs)) <= 1e-8 + model.duality_gap(
            X, y, theirs
        )


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_data_give_the_dense_fit_without_densifying(fmt):
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        X = scipy.sparse.random(200, 30, density=0.1, format=fmt, random_state=2)
        y = (X @ rng.normal(size=30) + 0.1 * rng.normal(size=200) > 0).astype(int)
        for model in (LinearClassifier(l1=1e-3, tol=1e-10), LinearRegressor(l2=1e-2, tol=1e-10)):
            target = y if is_classifier(model) else X @ np.arange(30.0)
            sparse = clone(model).fit(X, target)
            dense = clone(model).fit(X.toarray(), target)
            assert sparse.converged_ and dense.converged_
            assert sparse.duality_gap(X.toarray(), target) == pytest.approx(
                sparse.duality_gap_, abs=1e-12
            )
            # Both gaps are below 1e-10: the objectives agree within them.
            assert abs(sparse.objective_ - dense.objective_) <= 2e-10
            np.testing.assert_allclose(sparse.predict(X), dense.predict(X.toarray()), atol=1e-3)
    # The data are held as rows of (columns, values) of width k = the most non-zeros of a row,
    # not n × p: a million columns cost nothing.
    wide = scipy.sparse.random(50, 1_000_000, density=5e-6, format="csr", random_state=0)
    columns, values = LinearRegressor().objective(wide, np.ones(50)).data[0]
    k = np.diff(wide.indptr).max()
    assert columns.shape == values.shape == (50, k) and k < 20


def test_a_warm_started_regularisation_path_compiles_once(compilations):
    """The lasso path on raw diabetes, from large to small λ₁, each fit starting from the last:
    fewer stages than cold starts, every fit certified, one compiled stage for the path."""
    with jax.enable_x64(True):
        X, y = load_diabetes(return_X_y=True, scaled=False)
        path = [3.0, 1.0, 0.3]
        warm = LinearRegressor(tol=1e-8, warm_start=True, solver="cd")
        warm_stages, cold_stages = 0, 0
        for l1 in path:
            warm.set_params(l1=l1).fit(X, y)
            cold = LinearRegressor(l1=l1, tol=1e-8, solver="cd").fit(X, y)
            assert warm.converged_ and cold.converged_
            assert abs(warm.objective_ - cold.objective_) <= 2e-8
            warm_stages += warm.n_iter_
            cold_stages += cold.n_iter_
        assert warm_stages < cold_stages
        # One compiled program per solver for the path (0 when an earlier test compiled it).
        assert compilations.count("jit(_inner)") <= 1 and compilations.count("jit(_step)") <= 1


def test_solver_is_validated_and_auto_follows_the_settings():
    X, y = classification(n=50)
    with pytest.raises(ValueError, match="solver: expected one of"):
        LinearClassifier(solver="bfgs").fit(X, y)
    for solver in ("lbfgs", "newton"):
        with pytest.raises(ValueError, match=f"solver: '{solver}' needs a smooth problem"):
            LinearClassifier(l1=1e-2, solver=solver).fit(X, y)
    with pytest.raises(ValueError, match="solver: 'newton' needs dense X"):
        LinearClassifier(solver="newton").fit(scipy.sparse.csr_matrix(X), y)
    chosen = {
        (): "newton",  # few features, on the host
        (("l1", 1e-2),): "acc-prox-svrg",
        (("momentum", 0.0),): "acc-prox-svrg",
        (("solver", "acc-prox-svrg"),): "acc-prox-svrg",
    }
    for settings, solver in chosen.items():
        model = LinearClassifier(l2=1e-2, tol=1e-3, **dict(settings)).fit(X, y)
        assert model.solver_ == solver and model.converged_
        assert model.history_.shape[1] == 2 and model.history_[-1, 1] == model.duality_gap_
        assert model.n_passes_ == model.history_[-1, 0]


@pytest.mark.parametrize(
    "loss,fit_intercept,dtype,sparse",
    [
        ("logistic", True, np.float64, False),
        ("squared", False, np.float64, False),
        ("smoothed_hinge", True, np.float32, False),
        ("logistic", True, np.float64, True),
    ],
    ids=["logistic", "squared-no-intercept", "hinge-float32", "logistic-sparse"],
)
def test_lbfgs_reaches_the_gap_and_acc_prox_svrgs_solution(loss, fit_intercept, dtype, sparse):
    """The solvers (and Newton's method on dense X) certify a gap of 1e-7 on the same problem,
    so their coefficients are within the radii ``√(2 gap/λ₂)`` of the optimum: float32 too
    (L-BFGS and Newton's line search read only gradients)."""
    X, y = classification(n=200)
    if loss == "squared":
        y = X @ np.arange(P) + 0.3
    X = X.astype(dtype)
    if sparse:
        X[np.abs(X) < 0.7] = 0.0
        X = scipy.sparse.csr_matrix(X)
    l2, tol = 1e-2, 1e-7
    solvers = ("lbfgs", "acc-prox-svrg") if sparse else ("lbfgs", "acc-prox-svrg", "newton")
    fits = [
        model_for(loss, l2=l2, tol=tol, fit_intercept=fit_intercept, solver=solver).fit(X, y)
        for solver in solvers
    ]
    radius = sum(np.sqrt(2 * fit.duality_gap_ / l2) for fit in fits)
    assert all(fit.converged_ and fit.duality_gap_ <= tol for fit in fits)
    for fit in fits[1:]:  # (Newton's radius is within both)
        assert np.linalg.norm(fits[0].coef_ - fit.coef_) <= radius
    assert fits[0].duality_gap_ == pytest.approx(fits[0].duality_gap(X, y), rel=1e-9)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_lbfgs_on_the_host_is_the_compiled_fit(monkeypatch, sparse):
    """Small data take the NumPy gradient on the host: the same iterates as the compiled
    gradient on the padded device copy, to round-off."""
    with jax.enable_x64(True):
        X, y = classification(n=200)
        if sparse:
            X[np.abs(X) < 0.7] = 0.0
            X = scipy.sparse.csr_matrix(X)
        host = LinearClassifier(l2=1e-3, tol=1e-9, solver="lbfgs").fit(X, y)
        monkeypatch.setattr(linear, "HOST_VALUES", 0)
        compiled = LinearClassifier(l2=1e-3, tol=1e-9, solver="lbfgs").fit(X, y)
    assert host.solver_ == compiled.solver_ == "lbfgs"
    assert host.n_iter_ == compiled.n_iter_ and host.n_passes_ == compiled.n_passes_
    np.testing.assert_allclose(host.coef_, compiled.coef_, rtol=1e-9, atol=1e-12)


def test_lbfgs_on_padded_rows_is_the_unpadded_fit(monkeypatch):
    """Rows padded to the bucket carry zero weight: the same iterates to round-off."""
    monkeypatch.setattr(linear, "HOST_VALUES", 0)  # the compiled gradient on the device
    with jax.enable_x64(True):
        X, y = classification(n=200)
        exact = LinearClassifier(l2=1e-3, tol=1e-9).fit(X, y)
        monkeypatch.setattr(_linear_data, "bucket", lambda n: n + 37)
        padded = LinearClassifier(l2=1e-3, tol=1e-9).fit(X, y)
    assert padded.n_iter_ == exact.n_iter_
    np.testing.assert_allclose(padded.coef_, exact.coef_, rtol=1e-9, atol=1e-12)


def test_lbfgs_on_x_as_it_is_is_the_fit_on_its_standardised_copy(compilations, monkeypatch):
    """Data over ``SHARED_VALUES`` values are read as they are, means far from zero included:
    the iterates of the fit on the standardised copy to round-off; on CPU, ``X`` that the device
    adopts in one program for two fits, NumPy's own on the host, compiling nothing."""
    monkeypatch.setattr(linear, "HOST_VALUES", 0)  # the compiled gradient on the device
    with jax.enable_x64(True):
        X, y = classification(n=200)
        X = X * np.arange(1, X.shape[1] + 1) + 3.0
        copied = LinearClassifier(l2=1e-3, tol=1e-9).fit(X, y)
        monkeypatch.setattr(_linear_data, "SHARED_VALUES", 0)
        aligned = _linear_data.aligned_empty(X.shape, X.dtype)
        aligned[:] = X
        compiled = compilations.count("jit(_evaluate)")
        fits = [LinearClassifier(l2=1e-3, tol=1e-9).fit(data, y) for data in (aligned, aligned)]
        assert compilations.count("jit(_evaluate)") == compiled + 1
        fits.append(LinearClassifier(l2=1e-3, tol=1e-9).fit(X, y))
        if jax.default_backend() == "cpu":
            assert compilations.count("jit(_evaluate)") == compiled + 1
    for fit in fits:
        assert fit.n_iter_ == copied.n_iter_ and fit.converged_
        np.testing.assert_allclose(fit.coef_, copied.coef_, rtol=1e-9, atol=1e-12)


def test_cross_validation_folds_of_unequal_sizes_compile_one_lbfgs_program(
    compilations, monkeypatch
):
    monkeypatch.setattr(linear, "HOST_VALUES", 0)  # the compiled gradient on the device
    X, y = classification(n=203, seed=3)
    scores = cross_val_score(LinearClassifier(l2=1e-3, tol=1e-6), X, y, cv=5)
    assert np.all(scores > 0.6)
    assert compilations.count("jit(_evaluate)") <= 1  # (0 when an earlier test compiled it)
    assert len({_linear_data.bucket(n) for n in (161, 162, 163)}) == 1


def test_the_default_momentum_restarts_as_prox_svrg_when_the_gap_grows():
    """The stall of 10⁵ samples at λ₂ = 1e-3, b = 64 in small: the accelerated momentum lets
    the gap grow (37 → 29 → 34 here) and, kept, oscillate for 100 stages; on growth the fit
    goes on with momentum 0 and converges."""
    with jax.enable_x64(True):
        X, y = make_classification(
            6000, 100, n_informative=50, n_redundant=25, flip_y=0.05, class_sep=0.5,
            random_state=0,
        )  # fmt: skip
        X = (X - X.mean(0)) / X.std(0)
        model = LinearClassifier(l2=1e-3, max_iter=30, solver="acc-prox-svrg").fit(X, y)
    gaps = model.history_[:, 1]
    assert np.any(gaps[1:] > gaps[:-1])  # the growth that used to stall the fit
    assert model.converged_ and model.n_iter_ <= 15
