"""Regularised linear models fitted to a certified accuracy, docs/theory/convex-erm.md.

``P(w, b) = (1/n) Σ_i ℓ(⟨x_i, w⟩ + b, y_i) + λ₁‖w‖₁ + (λ₂/2)‖w‖²`` for the losses of
:mod:`mflangevin.models.losses` (squared, logistic, smoothed hinge); the intercept ``b`` is not
penalised. Two scikit-learn estimators fit it: :class:`LinearRegressor` (squared loss) and
:class:`LinearClassifier` (logistic or smoothed hinge, binary). Their ``objective`` gives it as a
:class:`~mflangevin.proximal.CompositeObjective` whose minibatch gradients are one matrix
product, ``duality_gap`` the gap ``P(x) − D(α(x)) ≥ P(x) − P*`` of its Fenchel dual at any
parameters, and ``fit`` runs a solver until the gap is below ``tol``: coordinate descent on the
Gram matrix (:mod:`mflangevin.solvers.gram`) for the squared loss on dense ``X`` with ``n ≥ p``,
Newton's method (:mod:`mflangevin.solvers.newton`, few features) or L-BFGS
(:mod:`mflangevin.solvers.lbfgs`) for a smooth problem (``λ₁ = 0``), coordinate descent
(:mod:`mflangevin.solvers.coordinate_descent`) or :func:`mflangevin.acc_prox_svrg` for
``λ₁ > 0``.

The gap's dual point ``α_i = −ℓ'(z_i, y_i)`` is moved into the dual-feasible set exactly
(:func:`primal_and_dual`; docs/theory/convex-erm.md#the-certificate), so the gap bounds the
suboptimality at any parameters, not only near the optimum. It is computed in the dtype of the
data and again in float64 once rounding could decide: a fit is ``converged_`` only when the
float64 gap is at most ``tol``.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import sklearn.exceptions
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_array, check_consistent_length, column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from mflangevin._checks import check_choice, check_count, check_positive, to_device
from mflangevin.kernels import acc_prox_svrg
from mflangevin.models._linear_certificate import certified, primal_and_dual, resolution
from mflangevin.models._linear_data import (
    HOST_VALUES,
    host_gradient,
    host_hessian,
    lbfgs_features,
    moments,
    one_blas_thread,
    prepare,
    smooth_gradient,
    sparse_rows,
    value_and_grad_of,
)
from mflangevin.proximal import CompositeObjective, ElasticNet
from mflangevin.solvers import coordinate_descent, gram, lbfgs, newton
from mflangevin.types import Array, ArrayTree

__all__ = [
    "LinearClassifier",
    "LinearRegressor",
    "ConvergenceWarning",
    "LOSSES",
    "primal_and_dual",
]

LOSSES = {"squared": 1.0, "logistic": 0.25, "smoothed_hinge": 1.0}
"""The losses of the linear models and the smoothness ``L_ℓ`` of each in ``z``."""

CLASSIFICATION_LOSSES = ("logistic", "smoothed_hinge")

SOLVERS = ("auto", "newton", "lbfgs", "cd", "gram", "acc-prox-svrg")
"""The values of the estimators' ``solver``: Newton's method (:mod:`mflangevin.solvers.newton`,
smooth problems on dense ``X``), L-BFGS (:mod:`mflangevin.solvers.lbfgs`, smooth problems),
coordinate descent (:mod:`mflangevin.solvers.coordinate_descent`), coordinate descent
on the Gram matrix (:mod:`mflangevin.solvers.gram`, the squared loss on dense ``X``),
Acc-Prox-SVRG (:mod:`mflangevin.kernels.acc_prox_svrg`), or ``"auto"``: Acc-Prox-SVRG when one
of its own settings is given; otherwise the Gram matrix for the squared loss on dense ``X`` with
at most ``_GRAM_FEATURES`` features and at least as many samples, Newton's method for ``λ₁ =
0`` on dense ``X`` of at most ``_NEWTON_FEATURES`` features on the host, L-BFGS for ``λ₁ = 0``,
coordinate descent for pure L1 (``λ₁ > 0 = λ₂``) on sparse ``X`` (unless its columns are very
uneven, see ``_CD_PADDING``) or dense ``X`` of at most ``_CD_SAMPLES`` samples, and
Acc-Prox-SVRG otherwise (measured on a 2-core CPU, the elastic net of ``benchmarks/erm.py``,
whose solution is dense and whose features are correlated: coordinate descent took 1.7 and 1.4
times Acc-Prox-SVRG's time at n = 1,000 and 5,000, p = 100, λ₁ = λ₂ = 1e-4, though 0.56 times
on standardised breast cancer, n = 569, p = 30, λ₁ = λ₂ = 1e-3)."""

_NEWTON_FEATURES = 32
"""Under ``solver="auto"``, smooth problems (``λ₁ = 0``) on dense ``X`` with at most this many
features and at most ``HOST_VALUES`` values, on CPU, go to Newton's method: its iteration costs
``O(n·p²)`` against L-BFGS's ``O(n·p)``, but it needs 3–22 iterations where L-BFGS needs
11–500. Measured on a shared 2-core CPU, logistic loss, gap 1e-6: Newton took 0.85 and 0.17
times L-BFGS's time on standardised breast cancer (569 × 30, ``λ₂ = 1e-3`` and ``1e-5``), 0.79
and 0.13 with the smoothed hinge, 1.1–1.2 times on well-conditioned ``make_classification``
data (2,000 × 16–32), 0.97 at 20,000 × 32 and 1.4 at 2,000 × 64."""

_SVRG_SETTINGS = ("batch_size", "inner_steps", "step_size", "momentum")
"""Settings of Acc-Prox-SVRG alone: ``solver="auto"`` runs it when one of them is given."""

_LBFGS_CHECK = 50
"""L-BFGS computes the float64 gap when the gradient predicts that it is at most ``tol/2`` (see
``_solve_lbfgs``), and at least every this many iterations."""

_CD_SAMPLES = 10_000
"""Under ``solver="auto"``, dense pure-L1 problems with at most this many samples go to
coordinate descent. Measured on a 2-core CPU (``benchmarks/erm.py``, L1 logistic regression on
standardised ``make_classification`` data, p = 100–200): coordinate descent took 0.38 times
Acc-Prox-SVRG's time at n = 5,000 and 7.8 times at n = 100,000, where a coordinate's epoch
over the dense columns costs more than Acc-Prox-SVRG's matrix products."""

_GRAM_FEATURES = 2048
"""Under ``solver="auto"``, the squared loss on dense ``X`` with ``p`` at most this and ``n ≥ p``
goes to the Gram matrix: its ``O(n·p²)`` product against the ``O(n·p)`` passes of the other
solvers, and at most ``8p²`` = 32 MiB. Measured on a shared 2-core CPU, ridge (``λ₂ = 1e-3``)
on standardised correlated features, n = 20,000: the Gram matrix as fast as L-BFGS at p = 200
and 500 (28 and 31 passes), 3.4 and 3.1 times faster at p = 1,000 and 2,000 (47 and 89)."""

_CD_PADDING = 2.0
"""Under ``solver="auto"``, sparse ``X`` goes to coordinate descent when its padded columns hold
at most this many entries per non-zero (:func:`~mflangevin.solvers.coordinate_descent.padding`):
the memory and the time of a coordinate stay ``O(nnz)``."""


class ConvergenceWarning(sklearn.exceptions.ConvergenceWarning):
    """A fit stopped before the duality gap reached ``tol``; scikit-learn's warning filters
    catch it.

    Examples
    --------
    >>> issubclass(ConvergenceWarning, sklearn.exceptions.ConvergenceWarning)
    True
    """


def _number(name: str, value) -> float:
    """A real number (a Python, NumPy or JAX scalar), as a ``float``."""
    array = np.asarray(value) if value is not None else np.asarray(None)
    if isinstance(value, bool) or array.shape != () or array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a number, got {value!r}.")
    return float(array)


_ADAPTIVE_EPOCH = 16
"""The default momentum is ``"adaptive"`` when an epoch is at most this many minibatches
(measured: on standardised make_classification data, 30000 × 200, b = 64, it diverged; with
b = n/16 it converged where Prox-SVRG did not)."""

_ADAPTIVE_STEPS = 128
"""The fewest inner steps of a stage with adaptive momentum: enough for the momentum to build up
between restarts (measured on pure-L1 breast cancer: 16, 32, 64 and 128 steps take 4553, 2410,
1247 and 655 passes to a gap of 1e-8)."""

_HOST_SIZE = 1 << 18
"""Up to this many entries of ``X``, the fit computes its gap in float64 on the host every stage
(faster than compiling the device's program for small data)."""


class _LinearModel(BaseEstimator):
    """The objective, its certificate and the fit shared by :class:`LinearClassifier` and
    :class:`LinearRegressor` (they differ in the loss, the labels and the predictions)."""

    def __init__(
        self,
        *,
        l1: float = 0.0,
        l2: float | None = None,
        fit_intercept: bool = True,
        tol: float = 1e-6,
        max_iter: int = 100,
        solver: str = "auto",
        batch_size: int | None = None,
        inner_steps: int | None = None,
        step_size: float | None = None,
        momentum: float | None = None,
        output: str = "last",
        random_state: int | None = 0,
        warm_start: bool = False,
        verbose: int = 0,
    ):
        self.l1 = l1
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.batch_size = batch_size
        self.inner_steps = inner_steps
        self.step_size = step_size
        self.momentum = momentum
        self.output = output
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")  # not n_features_in_, which a failed fit may leave

    # --- settings ----------------------------------------------------------------------------

    @property
    def _loss_name(self) -> str:
        raise NotImplementedError

    def _strengths(self) -> tuple[float, float]:
        """``(λ₁, λ₂)`` with ``l2=None`` resolved: ``0`` beside a positive ``λ₁``, else ``1e-4``."""
        l1 = _number("l1", self.l1)
        l2 = _number("l2", self.l2) if self.l2 is not None else (0.0 if l1 > 0 else 1e-4)
        for name, value in (("l1", l1), ("l2", l2)):  # (ElasticNet's check, without its cost)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name}: must be non-negative and finite, got {value}.")
        if not (l1 > 0 or l2 > 0):
            raise ValueError("l1, l2: at least one must be positive (a regularised problem).")
        return l1, l2

    def _validate(self) -> tuple[float, float]:
        """Check every setting (in ``fit``, as scikit-learn does); returns ``(λ₁, λ₂)``."""
        strengths = self._strengths()
        if not isinstance(self.fit_intercept, bool | np.bool_):
            raise TypeError(f"fit_intercept: expected True or False, got {self.fit_intercept!r}.")
        check_positive("tol", self.tol)
        check_count("max_iter", self.max_iter)
        check_choice("solver", self.solver, SOLVERS)
        if self.solver == "gram" and self._loss_name != "squared":
            raise ValueError(
                f"solver: 'gram' needs the squared loss (LinearRegressor), got {self._loss_name!r}."
            )
        if self.solver in ("newton", "lbfgs") and strengths[0] > 0:
            raise ValueError(
                f"solver: {self.solver!r} needs a smooth problem (l1 = 0), got l1 = "
                f"{strengths[0]:g}; use solver='auto' or 'acc-prox-svrg'."
            )
        for name in ("batch_size", "inner_steps"):
            if getattr(self, name) is not None:
                check_count(name, getattr(self, name))
        if self.step_size is not None:
            check_positive("step_size", self.step_size)
        if isinstance(self.momentum, str):
            check_choice("momentum", self.momentum, ("adaptive",))
        else:
            acc_prox_svrg.check_momentum(self.momentum)
        check_choice("output", self.output, acc_prox_svrg.OUTPUTS)
        seed = self.random_state
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise ValueError(f"random_state: must be None or a non-negative integer, got {seed!r}.")
        return strengths

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.default_rng().integers(2**31))
        return int(self.random_state)

    # --- the objective and its certificate -------------------------------------------------

    def _signed(self, y, n: int) -> np.ndarray:
        """The labels as the loss reads them (``±1`` for a classifier, reals for a regressor)."""
        raise NotImplementedError

    def _problem(self, X, y):
        X = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32])
        return X, self._signed(y, X.shape[0])

    def objective(self, X, y) -> CompositeObjective:
        """``P = F + R`` on ``(X, y)``, for :func:`mflangevin.acc_prox_svrg` over the parameters
        ``{"coef": w, "intercept": b}`` (``"coef"`` alone without an intercept).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = LinearRegressor(l2=1.0).objective(np.eye(2), np.ones(2))
        >>> float(objective.value({"coef": jnp.ones(2), "intercept": jnp.array(0.0)}))  # 0 + 1
        1.0
        """
        l1, l2 = self._validate()
        X, y = self._problem(X, y)
        if scipy.sparse.issparse(X):
            data = tuple(map(jnp.asarray, sparse_rows(X, np.ones(X.shape[1]))))
        else:
            data = to_device(X)
        dtype = jax.dtypes.canonicalize_dtype(X.dtype)
        return self._objective(data, jnp.asarray(y, dtype), l1, l2)

    def _objective(self, X: Array, y: Array, l1: float, l2: float) -> CompositeObjective:
        penalty = {"coef": ElasticNet(l1, l2)}
        if self.fit_intercept:
            penalty["intercept"] = ElasticNet()
        return CompositeObjective(value_and_grad_of(self._loss_name), (X, y), penalty)

    def duality_gap(self, X, y, params: ArrayTree | None = None) -> float:
        """``P(x) − D(α(x)) ≥ P(x) − P*`` at ``params`` (default: the fitted ones), computed in
        float64: a certificate that holds at any parameters. It uses the rescaled residual
        alone, so it may exceed the ``duality_gap_`` of a coordinate-descent fit, whose dual
        point is the best seen during the fit.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> model = LinearRegressor(l2=1.0, fit_intercept=False)
        >>> X, y = np.eye(2), np.ones(2)
        >>> round(model.duality_gap(X, y, {"coef": np.zeros(2)}), 4)  # P(0) − D(α(0)) = ½ − ¼
        0.25
        >>> model.duality_gap(X, y, {"coef": np.full(2, 1 / 3)}) < 1e-12  # w* = (⅓, ⅓)
        True
        """
        l1, l2 = self._validate()
        X, y = self._problem(X, y)
        if params is None:
            check_is_fitted(self)
            params = self._fitted_params()
        keys = {"coef", "intercept"} if self.fit_intercept else {"coef"}
        if not isinstance(params, dict) or set(params) != keys:
            raise ValueError(f"params: expected a dict with the keys {sorted(keys)}.")
        if np.shape(params["coef"]) != (X.shape[1],):
            raise ValueError(
                f"params: coef must have shape ({X.shape[1]},), got {np.shape(params['coef'])}."
            )
        return certified(self._loss_name, params, X, y, l1, l2)[1]

    # --- fitting ---------------------------------------------------------------------------

    def _fit(self, X: np.ndarray, y: np.ndarray, strengths: tuple[float, float]):
        """Run Acc-Prox-SVRG on the validated ``(X, y)`` until the float64 duality gap is at most
        ``tol``, and set the fitted attributes.

        The solver works on the standardised features ``(x_j − m_j)/s_j`` (centred only with an
        intercept) with the coefficients ``v = s ⊙ w`` and the penalty ``λ₁|v_j|/s_j +
        λ₂v_j²/(2s_j²)``: the same problem, well conditioned whatever the features' scales and
        means (the device copy of ``X`` is standardised in place)."""
        l1, l2 = strengths
        n, p = X.shape
        if scipy.sparse.issparse(X) and not X.has_canonical_format:
            X = X.copy()  # duplicate entries summed, indices sorted (the caller's X untouched)
            X.sum_duplicates()
        b = self.batch_size or min(n, 64)
        if b > n:
            raise ValueError(f"batch_size: must be at most the number of samples n = {n}, got {b}.")
        seed = self._seed()
        # Sparse X that coordinate descent may take, by columns: one conversion, which also
        # gives the padding and the column scales (a pass over contiguous columns).
        by_columns = X
        if scipy.sparse.issparse(X) and l1 > 0 and l2 == 0 and self.solver in ("auto", "cd"):
            by_columns = X.tocsc()
        self.solver_, iterations = self._solver(by_columns, l1, l2), None
        data = gram.gram(X, y, self.fit_intercept) if self.solver_ == "gram" else None
        if data is None:
            mean, scale = moments(by_columns, self.fit_intercept)
        else:  # the same moments, from the Gram matrix's pass: its diagonal is mean squares
            mean, scale = data.mean, np.sqrt(np.diagonal(data.matrix))
            scale = np.where(scale > 0, scale, 1.0)
        # ∇F is known to about ε·max_j s_j in float64; the gap holds ‖∇F‖²/(2λ₂), and without
        # λ₂ it needs ‖∇F‖_∞ ≤ λ₁ to be small.
        rounding = float(np.finfo(np.float64).eps * np.max(scale))
        if rounding > max(math.sqrt(2 * l2 * self.tol), l1):
            raise ValueError(
                f"tol: a duality gap of {self.tol:g} cannot be certified in float64 for features "
                f"of scale up to {np.max(scale):.3g} with l1 = {l1:g}, l2 = {l2:g} (the "
                f"gradient's rounding, about {rounding:.2g}, must stay below √(2·l2·tol) or "
                "l1); rescale X (e.g. with sklearn.preprocessing.StandardScaler) or raise tol."
            )
        warm = self.warm_start and self.__sklearn_is_fitted__() and np.size(self.coef_) == p
        start = self._fitted_params() if warm else {"coef": np.zeros(p)}
        if self.fit_intercept and not warm:  # (the Gram problem's intercept at w = 0 is ȳ)
            start["intercept"] = np.float64(0.0 if data is None else data.offset)
        if data is not None and not warm:  # at w = 0 the Gram gap is exact (‖r‖²/n = e): no pass
            primal, gap = gram.gap(data, start["coef"], l1, l2)
        if data is None or warm or gap <= self.tol:  # (a stop is confirmed by the exact pass)
            primal, gap, u = certified(self._loss_name, start, X, y, l1, l2, with_u=True)
        history, params, passes, why = [(0.0, gap)], start, 0.0, None
        if self.verbose:
            print(f"stage    0  passes      0.0  gap {gap:.3e}")
        if gap > self.tol and self.solver_ == "gram":
            params, primal, gap, passes, why, iterations = self._gram(
                X, y, data, strengths, history, start
            )
        elif gap > self.tol and self.solver_ == "cd":
            first = None if warm or by_columns is X else (primal, primal - gap, u)
            columns = coordinate_descent.columns(by_columns, self.fit_intercept)
            del by_columns  # a CSC copy is not held through the solve
            params, primal, gap, passes, why = self._coordinate_descent(
                X, y, strengths, history, start, columns, first
            )
        elif gap > self.tol and self.solver_ in ("newton", "lbfgs"):
            params, primal, gap, passes, why, iterations = self._solve_lbfgs(
                X, y, mean, scale, l2, history, start, primal
            )
        elif gap > self.tol:  # (all-zero X, say, is certified at w = 0 without compiling)
            params, primal, gap, passes, why = self._solve(
                X, y, mean, scale, strengths, b, seed, history, start, primal
            )
        self.converged_ = gap <= self.tol
        self.n_iter_ = len(history) - 1 if iterations is None else iterations
        if not self.converged_:
            steps = {
                "acc-prox-svrg": "stages",
                "newton": "Newton iterations",
                "lbfgs": "L-BFGS iterations",
                "cd": "working-set iterations",
                "gram": "Gram iterations",
            }[self.solver_]
            warnings.warn(
                f"{type(self).__name__}.fit stopped after {self.n_iter_} {steps} with the "
                f"duality gap {gap:.3g} > tol = {self.tol:g} ({why}).",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_coef(params["coef"], float(params.get("intercept", 0.0)))
        self.duality_gap_, self.objective_ = gap, primal
        self.n_passes_ = passes
        self.history_ = np.array(history)
        return self

    def _solver(self, X, l1: float, l2: float) -> str:
        """The solver that ``fit`` runs: ``self.solver``, or the rule of :data:`SOLVERS`."""
        dense = not scipy.sparse.issparse(X)
        if self.solver in ("gram", "newton") and not dense:
            raise ValueError(
                f"solver: {self.solver!r} needs dense X; use solver='auto' for sparse X."
            )
        if self.solver != "auto":
            return self.solver
        if any(getattr(self, name) is not None for name in _SVRG_SETTINGS):
            return "acc-prox-svrg"
        n, p = X.shape
        if self._loss_name == "squared" and dense and p <= min(n, _GRAM_FEATURES):
            return "gram" if self.output == "last" else "acc-prox-svrg"
        if l1 == 0 and self.output != "last":
            return "acc-prox-svrg"
        if l1 == 0:
            host = jax.default_backend() == "cpu" and n * p <= HOST_VALUES
            return "newton" if dense and host and p <= _NEWTON_FEATURES else "lbfgs"
        if l1 > 0 and l2 == 0 and scipy.sparse.issparse(X):
            return "cd" if coordinate_descent.padding(X) <= _CD_PADDING else "acc-prox-svrg"
        if l1 > 0 and l2 == 0:
            return "cd" if X.shape[0] <= _CD_SAMPLES else "acc-prox-svrg"
        return "acc-prox-svrg"

    def _gram(self, X, y, data, strengths, history, start: dict):
        """:func:`mflangevin.solvers.gram.solve` on the Gram ``data`` of ``X`` (from ``start``, or
        for ``λ₁ = 0`` from the Cholesky solution), every stop confirmed by the float64 gap of
        one exact pass over the data; returns what :meth:`_solve_lbfgs` returns, the passes
        being the Gram matrix's and one per exact gap."""
        l1, l2 = strengths

        def certify(coef, intercept):
            params = {"coef": coef}
            if self.fit_intercept:
                params["intercept"] = np.float64(intercept)
            primal, gap = certified("squared", params, X, y, l1, l2)
            history.append((float(len(history) + 1), gap))  # the Gram matrix's pass and these
            if self.verbose:
                print(f"passes {len(history):6d}  gap {gap:.3e}")
            return primal, gap

        result = gram.solve(
            data, l1, l2, certify, tol=self.tol, max_iter=self.max_iter,
            coef=None if l1 == 0 else start["coef"],
        )  # fmt: skip
        params = {"coef": result.coef}
        if self.fit_intercept:
            params["intercept"] = np.float64(result.intercept)
        passes = float(1 + result.certificates)
        return params, result.primal, result.gap, passes, result.why, result.n_iter

    def _coordinate_descent(self, X, y, strengths, history, start: dict, columns, first):
        """:func:`mflangevin.solvers.coordinate_descent.solve` from ``start`` on the ``columns``
        of ``X`` (:func:`~mflangevin.solvers.coordinate_descent.columns`), in the dtype of
        ``X`` (``first``: the start certificate's ``(P, D, u)`` for sparse ``X`` at ``w = 0``,
        which spares the solver its first pass); unless the dtype is float64, its gap is
        confirmed in float64 on the host, and when the device's gap was too optimistic the
        solver resumes with its ``tol`` lowered by the factor it missed by (three times at
        most, then *precision loss*). The same returns as :meth:`_solve`."""
        l1, l2 = strengths
        cols, mean = columns
        params, target, passes = start, self.tol, 0.0
        for _ in range(3):
            result = coordinate_descent.solve(
                self._loss_name, cols, y, l1, l2, intercept=self.fit_intercept, tol=target,
                max_iter=self.max_iter, coef=params["coef"],
                offset=float(params.get("intercept", 0.0) + mean @ params["coef"]),
                first=first if params is start else None, verbose=self.verbose,
            )  # fmt: skip
            history.extend(result.history[1:])
            passes += result.passes
            params = {"coef": result.coef}
            if self.fit_intercept:
                params["intercept"] = np.float64(result.intercept - mean @ result.coef)
            primal, gap, why = result.primal, result.gap, result.why
            if cols.values.dtype == jnp.float64 or why is not None:
                break
            primal, gap = certified(self._loss_name, params, X, y, l1, l2)
            history[-1] = (history[-1][0], gap)
            if gap <= self.tol:
                break
            target = max(result.gap, 0.0) * self.tol / gap / 2
        if gap > self.tol and why is None:
            why = (
                f"precision loss: {cols.values.dtype.name} iterates no longer reduce the float64 "
                "gap; fit float64 data with jax_enable_x64, or raise tol"
            )
        return params, primal, gap, passes, why

    def _solve(self, X, y, mean, scale, strengths, b, seed, history, start: dict, scale_of_p):
        """Acc-Prox-SVRG in the standardised coordinates from the parameters ``start`` (where
        ``P = scale_of_p``), stage by stage, until the float64 gap is at most ``tol``; appends
        ``(passes, gap)`` to ``history``. Returns the parameters (original coordinates,
        float64), ``P``, the gap, the passes and why it stopped short (``None`` when it did
        not)."""
        l1, l2 = strengths
        n, p = X.shape
        features, lipschitz = prepare(X, mean, scale, b, self.fit_intercept, seed)
        dtype = jax.tree.leaves(features)[-1].dtype
        scaled = jnp.asarray(scale, dtype)
        penalty = {
            "coef": ElasticNet(jnp.asarray(l1 / scale, dtype), jnp.asarray(l2 / scale**2, dtype))
        }
        if self.fit_intercept:
            penalty["intercept"] = ElasticNet()
        objective = CompositeObjective(
            value_and_grad_of(self._loss_name), (features, jnp.asarray(y, dtype)), penalty
        )

        def original(position) -> dict:
            """``w = v / s`` and ``b = c − ⟨m, w⟩``, in float64."""
            coef = np.asarray(position["coef"], np.float64) / scale
            params = {"coef": coef}
            if self.fit_intercept:
                params["intercept"] = np.float64(position["intercept"]) - mean @ coef
            return params

        # Small data: the float64 gap on the host every stage (no compilation); large data: the
        # gap on the device, confirmed in float64 once rounding may decide.
        on_host = X.size <= _HOST_SIZE
        # Below the rounding error of the fit's dtype, progress is watched in float64: three
        # stages without halving the best float64 gap mean the dtype cannot go further.
        precision = {"best": math.inf, "misses": 0, "stalled": False}

        def certify(position, passes):
            """``P`` and the gap at ``position``, in float64 when it may be at most ``tol``."""
            exact = on_host or dtype == jnp.float64
            if on_host:
                primal, gap = certified(self._loss_name, original(position), X, y, l1, l2)
            else:
                primal, dual = primal_and_dual(
                    self._loss_name, position, *objective.data, l1, l2, scaled
                )
                primal, gap = float(primal), float(primal - dual)
            seen = gap
            if not exact and gap <= max(self.tol, resolution(dtype, primal, gap, scale_of_p)):
                primal, gap = certified(self._loss_name, original(position), X, y, l1, l2)
                exact = True
            if exact and gap > self.tol and seen <= resolution(dtype, primal, seen, scale_of_p):
                if gap < precision["best"] / 2:
                    precision.update(best=gap, misses=0)
                else:
                    precision["misses"] += 1
                precision["stalled"] = precision["misses"] >= 3
            history.append((passes, gap))
            if self.verbose:
                print(f"stage {len(history) - 1:4d}  passes {passes:8.1f}  gap {gap:.3e}")
            return primal, gap, exact

        lipschitz *= LOSSES[self._loss_name]
        mu = l2 / float(np.max(scale)) ** 2
        algorithm, momentum = self._algorithm(objective, lipschitz, n, b, mu)
        position = {"coef": jnp.asarray(start["coef"] * scale, dtype)}  # v = s ⊙ w
        if self.fit_intercept:  # c = b + ⟨m, w⟩
            position["intercept"] = jnp.asarray(start["intercept"] + mean @ start["coef"], dtype)
        state = algorithm.init(position)
        key = jax.random.key(seed)
        primal, gap, exact, passes, why = math.nan, math.inf, True, 0.0, "raise max_iter"
        restarted, earlier = False, 0.0
        for stage in range(1, self.max_iter + 1):
            state, info = algorithm.step(jax.random.fold_in(key, stage), state)
            passes = earlier + int(info.num_gradient_evaluations) / n
            if bool(info.is_divergent):
                why = "a stage diverged: lower step_size"
                break
            last, (primal, gap, exact) = gap, certify(state.position, passes)
            if gap <= self.tol:
                why = None
                break
            constant = not isinstance(momentum, str) and momentum > 0
            if gap > last and self.momentum is None and constant and not restarted:
                # The default constant momentum amplified the minibatches' noise (it stalled on
                # 10⁵ samples, λ₂ = 1e-3, b = 64): Prox-SVRG from here, which converges.
                algorithm, momentum = self._algorithm(objective, lipschitz, n, b, mu, 0.0)
                restarted = True
                state, earlier = algorithm.init(state.position), passes
            if precision["stalled"]:
                why = (
                    f"precision loss: {jnp.dtype(dtype).name} iterates no longer reduce the "
                    "float64 gap; fit float64 data with jax_enable_x64, or raise tol"
                )
                break
        params = original(state.position)
        if not exact or why is not None and why.startswith("a stage"):
            primal, gap = certified(self._loss_name, params, X, y, l1, l2)
        return params, primal, gap, passes, why

    def _solve_lbfgs(self, X, y, mean, scale, l2: float, history, start: dict, scale_of_p):
        """L-BFGS (:func:`mflangevin.solvers.lbfgs.minimize`), or with ``solver_ == "newton"``
        Newton's method (:func:`mflangevin.solvers.newton.minimize`, on the host, its Hessian
        from :func:`host_hessian` on one BLAS thread), in the standardised coordinates
        of :meth:`_fit` from ``start``, the gradient reading ``X`` itself or its standardised
        copy padded to a bucket of rows with zero weights (:func:`lbfgs_features`; for at most
        ``HOST_VALUES`` values on CPU, or ``X`` that the CPU device could not adopt, the
        gradient in NumPy on the host; Newton's Hessian reads the copy), until the float64 gap
        is at most ``tol``; returns
        what :meth:`_solve` returns, the passes being the gradients evaluated (one pass over the
        data each).

        Without an intercept the gap at ``w`` is ``‖∇P(w)‖²/(2λ₂)`` exactly (the dual point
        ``α = −ℓ'(z)`` makes Fenchel-Young an equality for the loss), so the gradient that
        L-BFGS holds predicts the gap for free; the float64 gap is computed on the host when
        the prediction (plus ``(∂P/∂b)²`` for the intercept's correction) is at most ``tol/2``,
        a quarter of that after each miss, and every ``_LBFGS_CHECK`` iterations."""
        n, p = X.shape
        by_newton = self.solver_ == "newton"
        host = by_newton or jax.default_backend() == "cpu" and n * p <= HOST_VALUES
        features, shift, inverse, host = lbfgs_features(X, mean, scale, host, copy=by_newton)
        dtype, rows = inverse.dtype, jax.tree.leaves(features)[0].shape[0]
        weights, labels = np.zeros(rows, dtype), np.zeros(rows, dtype)
        weights[:n], labels[:n] = 1 / n, y
        data = (features, labels, weights, np.asarray(l2 / scale**2, dtype), shift, inverse)
        data = data if host else jax.device_put(data)
        x0 = start["coef"] * scale  # v = s ⊙ w, c = b + ⟨m, w⟩
        if self.fit_intercept:
            x0 = np.append(x0, start["intercept"] + mean @ start["coef"])
        found = {"x": x0, "params": start, "primal": scale_of_p, "gap": history[-1][1]}
        trigger = {"level": self.tol / 2, "last": 0}

        def certify(x, g, evaluations) -> bool:
            predicted = np.sum((g[:p] * scale) ** 2) / (2 * l2) + np.sum(g[p:] ** 2)
            trigger["last"] += 1
            if predicted > trigger["level"] and trigger["last"] < _LBFGS_CHECK:
                return False
            return measure(x, evaluations) <= self.tol

        def measure(x, evaluations) -> float:
            """The float64 gap at ``x``, recorded."""
            coef = x[:p] / scale
            params = {"coef": coef}
            if self.fit_intercept:
                params["intercept"] = np.float64(x[p] - mean @ coef)
            primal, gap = certified(self._loss_name, params, X, y, 0.0, l2)
            found.update(x=x, params=params, primal=primal, gap=gap)
            history.append((float(evaluations), gap))
            if self.verbose:
                print(f"passes {evaluations:6d}  gap {gap:.3e}")
            trigger.update(last=0, level=trigger["level"] / 4)
            return gap

        if by_newton:
            with one_blas_thread():
                result = newton.minimize(
                    host_gradient(self._loss_name), host_hessian(self._loss_name), x0, data,
                    certify, max_iter=self.max_iter,
                )  # fmt: skip
        else:
            gradient = (host_gradient if host else smooth_gradient)(self._loss_name)
            result = lbfgs.minimize(
                gradient, x0, data, certify, max_iter=self.max_iter, compiled=not host
            )
        why = None
        if not result.certified and result.iterations >= self.max_iter:
            why = "raise max_iter"
        elif not result.certified:
            why = (
                f"precision loss: {jnp.dtype(dtype).name} iterates no longer reduce the float64 "
                "gap; fit float64 data with jax_enable_x64, or raise tol"
            )
        if not np.array_equal(found["x"], result.x):  # the last iterate's gap
            measure(result.x, result.evaluations)
        passes = float(result.evaluations)
        return found["params"], found["primal"], found["gap"], passes, why, result.iterations

    def _algorithm(self, objective, lipschitz: float, n: int, b: int, mu: float, momentum=None):
        """Acc-Prox-SVRG with the default ``η``, ``m`` and ``β`` (see the class), or the given
        ``momentum``, and its momentum; ``μ`` is the strong convexity in the solver's
        coordinates."""
        eta = self.step_size or 1 / lipschitz
        epoch = max(n // b, 1)
        momentum = self.momentum if momentum is None else momentum
        restart = math.ceil(math.sqrt(lipschitz / mu)) if mu > 0 else 1
        if momentum is None and epoch <= _ADAPTIVE_EPOCH:
            # Minibatches of at least n/16: accelerate with the adaptive momentum, which needs
            # no μ. With more, smaller minibatches its momentum amplifies their noise.
            momentum = "adaptive"
        elif momentum is None:
            # Acceleration pays only above the minibatch size b* where the variance factor
            # (n − b)/(b(n − 1)) falls to 1/√κ (docs/theory/convex-erm.md#when-acceleration-pays).
            momentum = None if mu > 0 and b >= n / (1 + (n - 1) / restart) else 0.0
        if isinstance(momentum, str):  # "adaptive"
            m = self.inner_steps or max(epoch, _ADAPTIVE_STEPS)
        else:  # √κ steps, at most 100 epochs
            m = self.inner_steps or max(epoch, min(restart, 100 * epoch))
        if momentum is None:
            momentum = acc_prox_svrg.default_momentum(mu, eta)
        algorithm = acc_prox_svrg.as_top_level_api(
            objective, eta, b, m, momentum=momentum, output=self.output
        )
        return algorithm, momentum

    def _fitted_params(self) -> dict:
        params = {"coef": np.ravel(self.coef_)}
        if self.fit_intercept:
            params["intercept"] = np.asarray(self.intercept_).reshape(())
        return params


class LinearRegressor(RegressorMixin, _LinearModel):
    """Least squares with an elastic-net penalty (ridge, lasso, elastic net), fitted to a
    certified duality gap: a scikit-learn regressor.

    ``P(w, b) = (1/2n) Σ_i (⟨x_i, w⟩ + b − y_i)² + λ₁‖w‖₁ + (λ₂/2)‖w‖²``. scikit-learn's
    ``Lasso(alpha=α)`` is ``l1=α, l2=0``, ``ElasticNet(alpha=α, l1_ratio=ρ)`` is ``l1=αρ,
    l2=α(1 − ρ)`` and ``Ridge(alpha=α)`` is ``l2=α/n``.

    Parameters
    ----------
    l1, l2
        ``λ₁, λ₂ ≥ 0``, not both zero: ``R(w) = λ₁‖w‖₁ + (λ₂/2)‖w‖²``. ``l2=None`` (default) is
        ``0`` when ``l1 > 0`` (a pure L1 fit stays one) and ``1e-4`` otherwise.
    fit_intercept
        Fit an unpenalised intercept ``b``.
    tol
        Stop when the duality gap, an upper bound on ``P(x) − P*``, is at most ``tol``. The gap
        is confirmed in float64 whatever the dtype of the fit.
    max_iter
        The most iterations: Acc-Prox-SVRG's outer stages (each ``n + 2bm`` per-sample
        gradients, ``3n`` by default), Newton's or L-BFGS's iterations (about one pass each,
        Newton's two: a gradient and a Hessian), coordinate
        descent's working-set iterations or, on the Gram matrix, blocks of 100 epochs.
    solver
        ``"newton"``: Newton's method (:mod:`mflangevin.solvers.newton`) on the host, smooth
        problems (``l1 = 0``) on dense ``X`` only: an ``O(n·p²)`` Hessian and an ``O(p³)``
        solve an iteration, few iterations; ``"lbfgs"``: L-BFGS (:mod:`mflangevin.solvers.lbfgs`),
        smooth problems only; ``"cd"``: coordinate descent with working sets and Gap Safe screening
        (:mod:`mflangevin.solvers.coordinate_descent`; its gap also uses an extrapolated dual
        point, far tighter than the rescaled residual); ``"gram"``: coordinate descent on the
        Gram matrix ``XᵀX`` (:mod:`mflangevin.solvers.gram`), dense ``X`` only: one ``O(n·p²)``
        product, then epochs of ``O(p²)`` (ridge: a Cholesky solve), every stop confirmed by one
        exact pass over the data; ``"acc-prox-svrg"``:
        :func:`mflangevin.acc_prox_svrg`, which the parameters ``batch_size`` to ``output``
        and ``random_state`` tune. ``"auto"`` (default): Acc-Prox-SVRG when one of
        ``batch_size``, ``inner_steps``, ``step_size``, ``momentum`` is given (or ``output`` is
        ``"average"``); otherwise the Gram matrix for dense ``X`` with ``p ≤ min(n, 2048)``
        (as fast as L-BFGS on ridge at p = 200–500 and 3 times faster at p = 1,000–2,000,
        measured at n = 20,000); when ``l1 = 0``, Newton's method for dense ``X`` of at most
        32 features and 2²⁰ values on CPU (8 iterations against L-BFGS's 30 on standardised
        breast cancer, ``l2 = 1e-3``), L-BFGS otherwise; coordinate descent for pure L1 (``l1
        > 0``, ``l2 = 0``) on sparse ``X`` (unless its columns are so uneven that padding them
        to the longest would more than double their storage) or on dense ``X`` of at most
        10,000 samples; Acc-Prox-SVRG otherwise. Measured on a 2-core CPU
        (docs/guides/convex-erm.md): L-BFGS reached the certified gap in fewer passes and less
        time on every smooth problem tried (19 passes against 746 on a sparse 200 × 30 ridge
        problem, gap 1e-10; 23 against 30 on 10⁵ × 200 logistic data, ``λ₂ = 1e-4``, gap
        1e-6); coordinate descent 7 times faster than Acc-Prox-SVRG on the sparse L1-logistic
        problem of ``benchmarks/erm.py`` (10⁵ × 10⁴, 1 % dense) and 2.6 times faster at n =
        5,000 dense, but 7.8 times slower at n = 10⁵ dense and slower on the elastic net. All
        stop on the same float64 gap.
    batch_size
        ``b``; default ``min(n, 64)``.
    inner_steps
        ``m``; default ``max(n // b, 128)`` with the adaptive momentum (at least one epoch of
        minibatches a stage, and enough steps for the momentum to build up), otherwise
        ``max(n // b, ⌈√(L(b)/μ)⌉)``, at most 100 epochs.
    step_size
        ``η``; default ``1 / L(b)``, the expected smoothness of a minibatch's average:
        ``L(b) = L_ℓ [δ(b) L_max + (1 − δ(b)) L_F]``, ``δ(b) = (n − b)/(b(n − 1))``, from
        ``L_max = max_i ‖x̃_i‖²`` and ``L_F = λ_max(X̃ᵀX̃/n)`` (estimated on a subsample, with a
        safety factor), ``x̃_i = (x_i, 1)`` with an intercept: ``1/L_max`` at ``b = 1``.
    momentum
        ``"adaptive"``: Nesterov's schedule restarted whenever a step opposes the momentum
        (O'Donoghue & Candès 2015), which needs no strong convexity, so pure L1 converges as L2
        does; or a constant ``β ∈ [0, 1)`` (``0`` is Prox-SVRG). Default: ``"adaptive"`` when
        an epoch is at most 16 minibatches (``n ≤ 16b``); otherwise ``(1 − √(μη)) / (1 +
        √(μη))`` (Acc-Prox-SVRG, ``μ`` the strong convexity in the standardised coordinates)
        when ``b`` is at least ``b* = n / (1 + (n − 1)/√κ)``, ``κ = L(b)/μ``, where
        acceleration pays, and ``0`` (Prox-SVRG) below it or without ``λ₂``; the constant
        default becomes ``0`` if the certified gap grows over a stage.
    output
        ``"last"`` or ``"average"`` iterate of each stage.
    random_state
        The seed of the minibatches (an integer ``≥ 0``): equal seeds give equal fits;
        ``None`` draws one.
    warm_start
        Start from the fitted coefficients (of the same number of features) rather than zero:
        a regularisation path fitted from large to small penalties, each fit starting from the
        last (the stage is compiled once for the whole path).
    verbose
        ``> 0`` prints the passes and the gap after every stage.
    Attributes
    ----------
    coef_, intercept_
        The fitted ``w``, shape ``(n_features,)``, and ``b`` (a float, ``0.0`` without it).
    duality_gap_, objective_
        The certified gap (computed in float64) and ``P`` at the fitted parameters.
    solver_
        The solver that ran, ``"newton"``, ``"lbfgs"``, ``"cd"``, ``"gram"`` or
        ``"acc-prox-svrg"`` (``"auto"`` resolved).
    converged_, n_iter_, n_passes_
        Whether the gap reached ``tol``, the iterations run (stages of Acc-Prox-SVRG,
        iterations of Newton's method or L-BFGS, working-set iterations of coordinate descent,
        Gram gaps of the Gram solver: one at each start and one per 100 epochs) and the passes
        over the data they cost (``n`` per-sample gradients each: L-BFGS's gradients
        evaluated, Newton's gradients and Hessians; for the Gram solver its matrix product and
        its exact certificates).
    history_
        ``(passes, gap)`` at the start and at every float64 gap computed: after every stage
        of Acc-Prox-SVRG or working-set iteration of coordinate descent, shape ``(n_iter_ +
        1, 2)``; for Newton's method and L-BFGS once the gradient predicts a gap below
        ``tol`` (and every 50 iterations), and for the Gram solver at each exact certificate,
        so fewer rows.
    n_features_in_, feature_names_in_
        As in scikit-learn.
    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.0]) + 0.5
    >>> model = LinearRegressor(l1=1e-2, l2=1e-3, tol=1e-5).fit(X, y)
    >>> (model.coef_.round(1) + 0.0).tolist(), round(model.intercept_, 1), bool(model.converged_)
    ([1.0, -2.0, 0.0], 0.5, True)
    >>> bool(model.duality_gap_ <= 1e-5), model.score(X, y) > 0.99
    (True, True)
    """

    _loss_name = "squared"

    def _signed(self, y, n: int) -> np.ndarray:
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=[np.float64, np.float32]))
        check_consistent_length(np.empty(n), y)
        return y

    def fit(self, X, y) -> LinearRegressor:
        """Run the ``solver`` until the duality gap is at most ``tol`` (or ``max_iter``
        iterations).

        A :class:`ConvergenceWarning` says when it stopped short, with the gap reached and why:
        a stage diverged (lower ``step_size``), the gap reached the rounding error of the data's
        dtype (fit in float64), or ``max_iter`` ran out. When the certified gap of Acc-Prox-SVRG
        grows from one stage to the next under the default constant momentum, the fit goes on
        with momentum ``0`` (Prox-SVRG): that momentum amplifies the noise of small minibatches.

        Examples
        --------
        >>> X = np.random.default_rng(0).normal(size=(50, 2))
        >>> [round(float(c), 2) for c in LinearRegressor(l2=1e-2).fit(X, X[:, 0]).coef_]
        [0.99, 0.0]
        """
        strengths = self._validate()
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32], y_numeric=True
        )
        return self._fit(X, y.astype(X.dtype), strengths)

    def _set_coef(self, coef: np.ndarray, intercept: float) -> None:
        self.coef_, self.intercept_ = coef, intercept

    def predict(self, X) -> np.ndarray:
        """``⟨x, w⟩ + b`` for every row of ``X``.

        Examples
        --------
        >>> X = np.random.default_rng(0).normal(size=(50, 2))
        >>> LinearRegressor(l2=1e-2).fit(X, X[:, 0]).predict(X[:3]).shape
        (3,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse="csr", dtype=[np.float64, np.float32])
        return X @ self.coef_.astype(X.dtype) + X.dtype.type(self.intercept_)


class LinearClassifier(ClassifierMixin, _LinearModel):
    """A binary linear classifier — logistic regression or a smoothed-hinge SVM — with an
    elastic-net penalty, fitted to a certified duality gap: a scikit-learn classifier.

    ``P(w, b) = (1/n) Σ_i ℓ(⟨x_i, w⟩ + b, y_i) + λ₁‖w‖₁ + (λ₂/2)‖w‖²`` with the labels mapped to
    ``y_i = ±1`` (``classes_[1]`` is ``+1``). scikit-learn's ``LogisticRegression(C=C,
    l1_ratio=ρ)`` is ``l1 = ρ/(nC)``, ``l2 = (1 − ρ)/(nC)``. Binary only: for more classes, wrap
    it in ``sklearn.multiclass.OneVsRestClassifier``. The parameters after ``loss`` are those of
    :class:`LinearRegressor`.

    Parameters
    ----------
    loss
        ``"logistic"`` (default; it has :meth:`predict_proba`) or ``"smoothed_hinge"``.

    Attributes
    ----------
    classes_
        The two class labels.
    coef_, intercept_
        ``w`` of shape ``(1, n_features)`` and ``b`` of shape ``(1,)``, as scikit-learn's
        binary linear classifiers have them.
    duality_gap_, objective_, solver_, converged_, n_iter_, n_passes_, history_
        As in :class:`LinearRegressor`.
    n_features_in_, feature_names_in_
        As in scikit-learn.
    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 5, random_state=0)
    >>> model = LinearClassifier(l2=1e-2, tol=1e-5).fit(X, y)
    >>> bool(model.converged_), bool(model.duality_gap_ <= 1e-5), model.coef_.shape
    (True, True, (1, 5))
    >>> float(model.score(X, y)) > 0.9
    True
    """

    def __init__(
        self,
        loss: str = "logistic",
        *,
        l1: float = 0.0,
        l2: float | None = None,
        fit_intercept: bool = True,
        tol: float = 1e-6,
        max_iter: int = 100,
        solver: str = "auto",
        batch_size: int | None = None,
        inner_steps: int | None = None,
        step_size: float | None = None,
        momentum: float | None = None,
        output: str = "last",
        random_state: int | None = 0,
        warm_start: bool = False,
        verbose: int = 0,
    ):
        self.loss = loss
        super().__init__(
            l1=l1, l2=l2, fit_intercept=fit_intercept, tol=tol, max_iter=max_iter, solver=solver,
            batch_size=batch_size, inner_steps=inner_steps, step_size=step_size,
            momentum=momentum, output=output, random_state=random_state, warm_start=warm_start,
            verbose=verbose,
        )  # fmt: skip

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    @property
    def _loss_name(self) -> str:
        return self.loss

    def _validate(self) -> tuple[float, float]:
        check_choice("loss", self.loss, CLASSIFICATION_LOSSES)
        return super()._validate()

    def _signed(self, y, n: int) -> np.ndarray:
        y = column_or_1d(y)
        check_consistent_length(np.empty(n), y)
        classes = self.classes_ if hasattr(self, "classes_") else np.unique(y)
        if len(classes) != 2 or not np.all(np.isin(y, classes)):
            raise ValueError(f"y: expected labels among two classes {classes[:5]}.")
        return np.where(y == classes[1], 1.0, -1.0)

    def fit(self, X, y) -> LinearClassifier:
        """Run the ``solver`` until the duality gap is at most ``tol`` (or ``max_iter``
        iterations).

        A :class:`ConvergenceWarning` says when it stopped short, as for
        :meth:`LinearRegressor.fit`.

        Examples
        --------
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array(["a", "a", "b", "b"])
        >>> LinearClassifier(l2=1e-2).fit(X, y).predict(X).tolist()
        ['a', 'a', 'b', 'b']
        """
        strengths = self._validate()
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32])
        kind = type_of_target(y, input_name="y")  # (check_classification_targets, once)
        if kind in ("continuous", "continuous-multioutput", "unknown"):
            raise ValueError(
                f"Unknown label type: {kind}. Maybe you are trying to fit a classifier, which "
                "expects discrete classes on a regression target with continuous values."
            )
        if kind != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {kind}; "
                "wrap the model in sklearn.multiclass.OneVsRestClassifier for more classes."
            )
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                "y: needs samples of at least 2 classes in the data, but the data contains only "
                f"one class: {classes[0]!r}."
            )
        self.classes_ = classes  # (y validated: no _signed's checks)
        return self._fit(X, np.where(y == classes[1], 1.0, -1.0).astype(X.dtype), strengths)

    def _set_coef(self, coef: np.ndarray, intercept: float) -> None:
        self.coef_, self.intercept_ = coef[None, :], np.array([intercept])

    def decision_function(self, X) -> np.ndarray:
        """``⟨x, w⟩ + b`` for every row of ``X``: positive for ``classes_[1]``.

        Examples
        --------
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1])
        >>> LinearClassifier(l2=1e-2).fit(X, y).decision_function(X).shape
        (4,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse="csr", dtype=[np.float64, np.float32])
        return X @ self.coef_[0].astype(X.dtype) + X.dtype.type(self.intercept_[0])

    def predict(self, X) -> np.ndarray:
        """The class of every row of ``X``.

        Examples
        --------
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1])
        >>> LinearClassifier(l2=1e-2).fit(X, y).predict([[-3.0], [3.0]]).tolist()
        [0, 1]
        """
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def _has_probabilities(self) -> bool:
        return self.loss == "logistic"

    @available_if(_has_probabilities)
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(1 − σ(s), σ(s))``, ``s = ⟨x, w⟩ + b``: the logistic loss only
        (the smoothed hinge has no such method).

        Examples
        --------
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1])
        >>> proba = LinearClassifier(l2=1e-2).fit(X, y).predict_proba(X)
        >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1))
        ((4, 2), True)
        >>> hasattr(LinearClassifier("smoothed_hinge"), "predict_proba")
        False
        """
        s = self.decision_function(X)
        return np.stack([expit(-s), expit(s)], axis=1)

    @available_if(_has_probabilities)
    def predict_log_proba(self, X) -> np.ndarray:
        """``log predict_proba(X)``.

        Examples
        --------
        >>> X, y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1])
        >>> LinearClassifier(l2=1e-2).fit(X, y).predict_log_proba(X).shape
        (4, 2)
        """
        return np.log(self.predict_proba(X))
