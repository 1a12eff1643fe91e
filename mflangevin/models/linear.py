"""Regularised linear models fitted to a certified accuracy, docs/theory/convex-erm.md.

``P(w, b) = (1/n) Σ_i ℓ(⟨x_i, w⟩ + b, y_i) + λ₁‖w‖₁ + (λ₂/2)‖w‖²`` for the losses of
:mod:`mflangevin.models.losses` (squared, logistic, smoothed hinge); the intercept ``b`` is not
penalised. :meth:`LinearModel.objective` gives it as a
:class:`~mflangevin.proximal.CompositeObjective` whose minibatch gradients are one matrix
product, :meth:`LinearModel.duality_gap` the gap ``P(x) − D(α(x)) ≥ P(x) − P*`` of its Fenchel
dual at any parameters, and :meth:`LinearModel.fit` runs :func:`mflangevin.acc_prox_svrg` until
the gap is below ``tol``.

The dual point. ``α_i = −ℓ'(z_i, y_i)`` is moved into the dual-feasible set, exactly, so that the
gap bounds the suboptimality at any parameters, not only near the optimum:

* an unpenalised intercept adds the constraint ``Σ_i α_i = 0``. For the squared loss ``α`` is
  centred; for the margin losses (``y_i α_i ∈ [0, 1]``) the larger of the two class sums
  ``Σ_{y_i = +1} α_i`` and ``−Σ_{y_i = −1} α_i`` is scaled down to the smaller, which keeps every
  ``y_i α_i`` in ``[0, 1]``;
* ``λ₂ = 0`` (lasso, L1-logistic): ``R*`` is the indicator of ``‖u‖_∞ ≤ λ₁``, so ``α`` is scaled by
  ``min(1, λ₁ / ‖u‖_∞)`` with ``u = (1/n) Σ_i α_i x_i``, as lasso solvers do.

At the optimum both maps are the identity, so the gap still tends to zero.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin._checks import all_finite, check_choice, check_count, check_positive
from mflangevin.kernels import acc_prox_svrg
from mflangevin.models.losses import get_loss
from mflangevin.proximal import CompositeObjective, ElasticNet
from mflangevin.types import Array, ArrayTree

__all__ = ["LinearModel", "ConvergenceWarning", "LOSSES", "primal_and_dual"]

LOSSES = {"squared": 1.0, "logistic": 0.25, "smoothed_hinge": 1.0}
"""The losses of :class:`LinearModel` and the smoothness ``L_ℓ`` of each in ``z``."""


class ConvergenceWarning(UserWarning):
    """:meth:`LinearModel.fit` stopped before the duality gap reached ``tol``.

    Examples
    --------
    >>> issubclass(ConvergenceWarning, UserWarning)
    True
    """


@functools.cache
def _value_and_grad(loss_name: str):
    """``(x, (X, y)) -> (mean_i ℓ(⟨x_i, w⟩ + b, y_i), gradient)``: the predictions and the
    gradient are one matrix product each. Cached, so every model with this loss shares it (and
    so the kernel's compiled step)."""
    loss = get_loss(loss_name)

    def value_and_grad(params, batch):
        X, y = batch
        z = X @ params["coef"]
        if "intercept" in params:
            z = z + params["intercept"]
        g = loss.derivative(z, y) / y.shape[0]
        grad = {"coef": g @ X}
        if "intercept" in params:
            grad["intercept"] = jnp.sum(g)
        return jnp.mean(loss.value(z, y)), grad

    return value_and_grad


@functools.partial(jax.jit, static_argnums=0)
def primal_and_dual(loss_name: str, params: ArrayTree, X: Array, y: Array, l1, l2):
    """``P(x)`` and ``D(α(x))`` at ``params = {"coef": w[, "intercept": b]}`` on ``(X, y)``
    (``y ∈ {−1, +1}`` for the classification losses), with the feasible dual point of the module
    docstring: ``P(x) − D(α(x)) ≥ P(x) − P*``. Compiled once per loss and shapes; no checks (see
    :meth:`LinearModel.duality_gap` for the checked version).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> primal, dual = primal_and_dual("squared", {"coef": jnp.zeros(2)}, jnp.eye(2),
    ...                                jnp.ones(2), 0.0, 1.0)
    >>> float(primal), float(dual)  # P(0) = ½, D(α(0)) = ¼ ≤ P* = ⅓
    (0.5, 0.25)
    """
    loss = get_loss(loss_name)
    n = y.shape[0]
    value, _ = _value_and_grad(loss_name)(params, (X, y))
    penalty = ElasticNet(l1, l2)
    primal = value + penalty.value(params["coef"])
    z = X @ params["coef"] + params.get("intercept", 0)
    alpha = -loss.derivative(z, y)
    if "intercept" in params:
        if loss_name == "squared":
            alpha = alpha - jnp.mean(alpha)
        else:
            positive = y > 0
            up = jnp.sum(jnp.where(positive, alpha, 0))
            down = -jnp.sum(jnp.where(positive, 0, alpha))
            common = jnp.minimum(up, down)
            scale = jnp.where(
                positive, common / jnp.where(up > 0, up, 1), common / jnp.where(down > 0, down, 1)
            )
            alpha = alpha * scale
    u = alpha @ X / n
    largest = jnp.max(jnp.abs(u))
    shrink = jnp.where(l2 > 0, 1, jnp.minimum(1, l1 / jnp.where(largest > 0, largest, 1))).astype(
        u.dtype
    )
    dual = -jnp.mean(loss.conjugate(-shrink * alpha, y)) - penalty.conjugate(shrink * u)
    return primal, dual


def _minibatch_smoothness(X: Array, b: int, intercept: bool, seed: int) -> float:
    """``L(b) = δ(b) L_max + (1 − δ(b)) L_F`` per unit of ``L_ℓ``, ``δ(b) = (n − b)/(b(n − 1))``:
    the expected smoothness of a uniform ``b``-subset's average (``L_max`` at ``b = 1``, ``L_F``
    at ``b = n``). ``L_max = max_i ‖x̃_i‖²`` is exact; ``L_F = λ_max(X̃ᵀX̃/n)`` is estimated by
    power iteration on at most 4096 rows, times 1.5 for safety, and capped by the exact bound
    ``mean_i ‖x̃_i‖²`` (``x̃_i = (x_i, 1)`` with an intercept)."""
    n = X.shape[0]
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, 4096), replace=False))
    l_max, l_mean, l_sample = map(float, _smoothness_terms(X, jnp.asarray(rows), intercept))
    l_full = min(l_mean, 1.5 * l_sample)
    delta = (n - b) / (b * (n - 1)) if n > 1 else 1.0
    return delta * l_max + (1 - delta) * l_full


@functools.partial(jax.jit, static_argnums=2)
def _smoothness_terms(X: Array, rows: Array, intercept: bool) -> tuple[Array, Array, Array]:
    """``L_max``, ``mean_i ‖x̃_i‖²`` and the power-iteration estimate of ``λ_max`` on ``rows``,
    as one compiled program (op by op it would be some twenty)."""
    norms = jnp.sum(X**2, axis=1) + float(intercept)
    sample = X[rows]
    if intercept:
        sample = jnp.concatenate([sample, jnp.ones((sample.shape[0], 1), X.dtype)], axis=1)

    def power(v, _):
        v = (sample @ v) @ sample
        return v / jnp.linalg.norm(v), None

    start = jnp.ones(sample.shape[1], X.dtype) / math.sqrt(sample.shape[1])
    v, _ = jax.lax.scan(power, start, None, length=50)
    return jnp.max(norms), jnp.mean(norms), jnp.sum((sample @ v) ** 2) / sample.shape[0]


def _as_matrix(X) -> Array:
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X: expected a (n_samples, n_features) array, got shape {X.shape}.")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X: needs at least one sample and one feature, got shape {X.shape}.")
    if not all_finite(X):
        raise ValueError("X: has NaN or infinite values.")
    return X


class LinearModel:
    """A regularised linear model fitted with a certified duality gap.

    Parameters
    ----------
    loss
        ``"logistic"`` (default) or ``"smoothed_hinge"`` (binary classification, any two class
        labels), or ``"squared"`` (regression).
    l1, l2
        ``λ₁, λ₂ ≥ 0``, not both zero: ``R(w) = λ₁‖w‖₁ + (λ₂/2)‖w‖²``. scikit-learn's
        ``LogisticRegression(C=C, l1_ratio=ρ)`` is ``λ₁ = ρ/(nC)``, ``λ₂ = (1 − ρ)/(nC)``.
    fit_intercept
        Fit an unpenalised intercept ``b``.
    tol
        Stop when the duality gap, an upper bound on ``P(x) − P*``, is at most ``tol``.
    max_iter
        The most outer stages (each ``n + 2bm`` per-sample gradients, ``3n`` by default).
    batch_size
        ``b``; default ``min(n, 64)``.
    inner_steps
        ``m``; default ``max(n // b, ⌈√(L(b)/λ₂)⌉)``: at least one epoch of minibatches a
        stage, and enough steps for the momentum to act before the next restart.
    step_size
        ``η``; default ``1 / L(b)``, the expected smoothness of a minibatch's average:
        ``L(b) = L_ℓ [δ(b) L_max + (1 − δ(b)) L_F]``, ``δ(b) = (n − b)/(b(n − 1))``, from
        ``L_max = max_i ‖x̃_i‖²`` and ``L_F = λ_max(X̃ᵀX̃/n)`` (estimated on a subsample, with a
        safety factor), ``x̃_i = (x_i, 1)`` with an intercept: ``1/L_max`` at ``b = 1``.
    momentum
        ``β``; default ``(1 − √(λ₂η)) / (1 + √(λ₂η))`` (Acc-Prox-SVRG) when ``b`` is at least
        ``b* = n / (1 + (n − 1)/√κ)``, ``κ = L(b)/λ₂``, where acceleration pays; otherwise, and
        when ``λ₂ = 0``, ``0`` (Prox-SVRG).
    output
        ``"last"`` or ``"average"`` iterate of each stage.
    random_state
        The seed of the minibatches: equal seeds give equal fits.
    verbose
        ``> 0`` prints the passes and the gap after every stage.

    Attributes
    ----------
    coef_, intercept_
        The fitted ``w`` (NumPy, ``(n_features,)``) and ``b`` (a float, ``0.0`` without it).
    classes_
        The two class labels (classification); ``classes_[1]`` is the positive class.
    duality_gap_, objective_
        The certified gap and ``P`` at the fitted parameters.
    converged_, n_iter_, n_passes_
        Whether the gap reached ``tol``, the stages run, the passes over the data they cost.
    history_
        ``(passes, gap)`` after every stage, shape ``(n_iter_, 2)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 5, random_state=0)
    >>> model = LinearModel("logistic", l2=1e-2, tol=1e-5).fit(X, y)
    >>> bool(model.converged_), bool(model.duality_gap_ <= 1e-5), model.coef_.shape
    (True, True, (5,))
    >>> float(model.score(X, y)) > 0.9
    True
    """

    def __init__(
        self,
        loss: str = "logistic",
        *,
        l1: float = 0.0,
        l2: float = 1e-4,
        fit_intercept: bool = True,
        tol: float = 1e-6,
        max_iter: int = 100,
        batch_size: int | None = None,
        inner_steps: int | None = None,
        step_size: float | None = None,
        momentum: float | None = None,
        output: str = "last",
        random_state: int = 0,
        verbose: int = 0,
    ):
        self.loss = loss
        self.l1 = l1
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.inner_steps = inner_steps
        self.step_size = step_size
        self.momentum = momentum
        self.output = output
        self.random_state = random_state
        self.verbose = verbose
        self._validate()

    # --- scikit-learn's estimator protocol -------------------------------------------------

    _PARAMS = (
        "loss", "l1", "l2", "fit_intercept", "tol", "max_iter", "batch_size", "inner_steps",
        "step_size", "momentum", "output", "random_state", "verbose",
    )  # fmt: skip

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments, as scikit-learn's ``clone`` and searches use them.

        Examples
        --------
        >>> LinearModel(l2=0.5).get_params()["l2"]
        0.5
        """
        del deep
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> LinearModel:
        """Set constructor arguments (checked at once).

        Examples
        --------
        >>> LinearModel().set_params(l1=0.1).l1
        0.1
        """
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"{name}: not a parameter of LinearModel {self._PARAMS}.")
            setattr(self, name, value)
        self._validate()
        return self

    def __repr__(self) -> str:
        return f"LinearModel(loss={self.loss!r}, l1={self.l1}, l2={self.l2})"

    def _validate(self) -> None:
        check_choice("loss", self.loss, tuple(LOSSES))
        ElasticNet(self.l1, self.l2)  # non-negative and finite
        if not (float(self.l1) > 0 or float(self.l2) > 0):
            raise ValueError("l1, l2: at least one must be positive (a regularised problem).")
        if not isinstance(self.fit_intercept, bool):
            raise TypeError(f"fit_intercept: expected True or False, got {self.fit_intercept!r}.")
        check_positive("tol", self.tol)
        check_count("max_iter", self.max_iter)
        for name in ("batch_size", "inner_steps"):
            if getattr(self, name) is not None:
                check_count(name, getattr(self, name))
        if self.step_size is not None:
            check_positive("step_size", self.step_size)
        m = self.momentum
        if m is not None and not (isinstance(m, int | float) and 0 <= m < 1):
            raise ValueError(f"momentum: expected None or a number in [0, 1), got {m!r}.")
        check_choice("output", self.output, acc_prox_svrg.OUTPUTS)
        check_count("random_state", self.random_state + 1)

    # --- the objective and its certificate -------------------------------------------------

    @property
    def _classifier(self) -> bool:
        return self.loss != "squared"

    def _labels(self, y, n: int, dtype) -> Array:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y: expected shape ({n},) to match X, got {y.shape}.")
        if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y)):
            raise ValueError("y: must be finite numbers.")
        if self._classifier and not np.all(np.abs(y) == 1):
            raise ValueError(
                f"y: the {self.loss} loss needs labels in {{-1, +1}} (fit() maps any two "
                f"classes to them), got the values {np.unique(y)[:5]}."
            )
        return jnp.asarray(y, dtype)

    def _params_in(self, params: ArrayTree) -> ArrayTree:
        keys = {"coef", "intercept"} if self.fit_intercept else {"coef"}
        if not isinstance(params, dict) or set(params) != keys:
            raise ValueError(f"params: expected a dict with the keys {sorted(keys)}.")
        return params

    def objective(self, X, y) -> CompositeObjective:
        """``P = F + R`` on ``(X, y)`` (``y ∈ {−1, +1}`` for the classification losses), for
        :func:`mflangevin.acc_prox_svrg` over the parameters ``{"coef": w, "intercept": b}``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = LinearModel("squared", l2=1.0).objective(jnp.eye(2), jnp.ones(2))
        >>> float(objective.value({"coef": jnp.ones(2), "intercept": jnp.array(0.0)}))  # 0 + 1
        1.0
        """
        self._validate()
        X = _as_matrix(X)
        y = self._labels(y, X.shape[0], X.dtype)
        penalty = {"coef": ElasticNet(self.l1, self.l2)}
        if self.fit_intercept:
            penalty["intercept"] = ElasticNet()
        return CompositeObjective(_value_and_grad(self.loss), (X, y), penalty)

    def duality_gap(self, X, y, params: ArrayTree | None = None) -> float:
        """``P(x) − D(α(x)) ≥ P(x) − P*`` at ``params`` (default: the fitted ones), ``y`` as
        for :meth:`objective`: a certificate that holds at any parameters.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> model = LinearModel("squared", l2=1.0, fit_intercept=False)
        >>> X, y = jnp.eye(2), jnp.ones(2)
        >>> round(model.duality_gap(X, y, {"coef": jnp.zeros(2)}), 4)  # P(0) − D(α(0)) = ½ − ¼
        0.25
        >>> model.duality_gap(X, y, {"coef": jnp.full(2, 1 / 3)}) < 1e-6  # w* = (⅓, ⅓)
        True
        """
        objective = self.objective(X, y)
        params = self._fitted_params(objective.data[0].dtype) if params is None else params
        primal, dual = primal_and_dual(
            self.loss, self._params_in(params), *objective.data, self.l1, self.l2
        )
        return float(primal - dual)

    # --- fitting and predicting ------------------------------------------------------------

    def fit(self, X, y) -> LinearModel:
        """Run Acc-Prox-SVRG until the duality gap is at most ``tol`` (or ``max_iter`` stages).

        A :class:`ConvergenceWarning` says when it stopped short, with the gap reached; a stage
        that diverged (a step size too large) stops the fit with the same warning. In float32
        the gap cannot fall much below ``1e-6 · P``: enable float64 for smaller ``tol``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 3))
        >>> y = X @ np.array([1.0, -2.0, 0.0]) + 0.5
        >>> model = LinearModel("squared", l1=1e-2, l2=1e-3, tol=1e-5).fit(X, y)
        >>> model.coef_.round(1).tolist(), round(model.intercept_, 1), bool(model.converged_)
        ([1.0, -2.0, 0.0], 0.5, True)
        """
        self._validate()
        X = _as_matrix(X)
        n, p = X.shape
        y = np.asarray(y)
        if self._classifier:
            if y.shape != (n,):
                raise ValueError(f"y: expected shape ({n},) to match X, got {y.shape}.")
            self.classes_ = np.unique(y)
            if len(self.classes_) != 2:
                raise ValueError(
                    f"y: the {self.loss} loss needs exactly two classes, got "
                    f"{len(self.classes_)}: {self.classes_[:5]}."
                )
            y = np.where(y == self.classes_[1], 1.0, -1.0)
        objective = self.objective(X, y)
        X, y = objective.data
        b = self.batch_size or min(n, 64)
        lipschitz = _minibatch_smoothness(X, b, self.fit_intercept, self.random_state)
        lipschitz *= LOSSES[self.loss]
        eta = self.step_size or 1 / lipschitz
        restart = math.ceil(math.sqrt(lipschitz / float(self.l2))) if float(self.l2) > 0 else 1
        m = self.inner_steps or max(n // b, restart)
        momentum = self.momentum
        # Acceleration pays only above the minibatch size b* where the variance factor
        # (n − b)/(b(n − 1)) falls to 1/√κ (docs/theory/convex-erm.md#when-acceleration-pays).
        if momentum is None and not (float(self.l2) > 0 and b >= n / (1 + (n - 1) / restart)):
            momentum = 0.0
        algorithm = acc_prox_svrg.as_top_level_api(
            objective, eta, b, m, momentum=momentum,
            strong_convexity=float(self.l2) if float(self.l2) > 0 else None, output=self.output,
        )  # fmt: skip
        params = {"coef": jnp.zeros(p, X.dtype)}
        if self.fit_intercept:
            params["intercept"] = jnp.zeros((), X.dtype)
        state = algorithm.init(params)
        key = jax.random.key(self.random_state)
        history, primal, gap, diverged = [], math.nan, math.inf, False
        for stage in range(1, self.max_iter + 1):
            state, info = algorithm.step(jax.random.fold_in(key, stage), state)
            if bool(info.is_divergent):
                diverged = True
                break
            primal, dual = primal_and_dual(self.loss, state.position, X, y, self.l1, self.l2)
            primal, gap = float(primal), float(primal - dual)
            history.append((int(info.num_gradient_evaluations) / n, gap))
            if self.verbose:
                print(f"stage {stage:4d}  passes {history[-1][0]:8.1f}  gap {gap:.3e}")
            if gap <= self.tol:
                break
        self.converged_ = gap <= self.tol
        if not self.converged_:
            why = "a stage diverged: lower step_size" if diverged else "raise max_iter"
            warnings.warn(
                f"LinearModel.fit stopped after {len(history)} stages with duality gap {gap:.3g} "
                f"> tol = {self.tol:g} ({why}; in float32 the gap stalls near 1e-6 · P).",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.coef_ = np.asarray(state.position["coef"])
        self.intercept_ = float(state.position.get("intercept", 0.0))
        self.n_features_in_ = p
        self.duality_gap_, self.objective_ = gap, primal
        self.n_iter_ = len(history)
        self.n_passes_ = int(state.num_gradient_evaluations) / n
        self.history_ = np.array(history).reshape(-1, 2)
        return self

    def _fitted_params(self, dtype) -> dict:
        if not hasattr(self, "coef_"):
            raise ValueError("params: the model is not fitted; call fit(X, y) or pass params.")
        params = {"coef": jnp.asarray(self.coef_, dtype)}
        if self.fit_intercept:
            params["intercept"] = jnp.asarray(self.intercept_, dtype)
        return params

    def decision_function(self, X) -> np.ndarray:
        """``⟨x, w⟩ + b`` for every row of ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 3))
        >>> y = X @ np.array([1.0, -2.0, 0.0]) + 0.5
        >>> model = LinearModel("squared", l1=1e-2, l2=1e-3).fit(X, y)
        >>> model.decision_function(X[:4]).shape
        (4,)
        """
        X = _as_matrix(X)
        params = self._fitted_params(X.dtype)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X: has {X.shape[1]} features, the model {self.n_features_in_}.")
        return np.asarray(X @ params["coef"] + params.get("intercept", 0))

    def predict(self, X) -> np.ndarray:
        """Class labels (classification) or ``⟨x, w⟩ + b`` (regression).

        Examples
        --------
        >>> import numpy as np
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array(["a", "a", "b", "b"])
        >>> LinearModel(l2=1e-2).fit(X, y).predict(X).tolist()
        ['a', 'a', 'b', 'b']
        """
        scores = self.decision_function(X)
        if not self._classifier:
            return scores
        return self.classes_[(scores > 0).astype(int)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(1 − σ(s), σ(s))`` of the logistic model, ``s = ⟨x, w⟩ + b``.

        Examples
        --------
        >>> import numpy as np
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1])
        >>> proba = LinearModel(l2=1e-2).fit(X, y).predict_proba(X)
        >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1))
        ((4, 2), True)
        """
        if self.loss != "logistic":
            raise AttributeError(
                f"predict_proba: only the logistic loss gives probabilities, not {self.loss!r}."
            )
        positive = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.stack([1 - positive, positive], axis=1)

    def score(self, X, y) -> float:
        """Accuracy (classification) or the coefficient of determination ``R²`` (regression).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 3))
        >>> y = X @ np.array([1.0, -2.0, 0.0]) + 0.5
        >>> model = LinearModel("squared", l1=1e-2, l2=1e-3).fit(X, y)
        >>> model.score(X, y) > 0.99
        True
        """
        y = np.asarray(y)
        predicted = self.predict(X)
        if self._classifier:
            return float(np.mean(predicted == y))
        return float(1 - np.sum((y - predicted) ** 2) / np.sum((y - np.mean(y)) ** 2))
