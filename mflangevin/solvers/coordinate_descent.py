"""Coordinate descent with working sets and Gap Safe screening for the L1-penalised linear
models, stopped by a certified duality gap (docs/theory/convex-erm.md#coordinate-descent).

It minimises ``P(w, b) = (1/n) Σ_i ℓ(⟨x_i, w⟩ + b, y_i) + λ₁‖w‖₁ + (λ₂/2)‖w‖²`` for the
losses of :mod:`mflangevin.models.losses` (squared, logistic, smoothed hinge) with an
unpenalised intercept ``b``. Every outer iteration, in one pass over the data:

* the duality gap ``P(w) − D(α)`` at the best of two dual points, the rescaled residual
  ``α = −ℓ'(Xw + b)`` and its extrapolation from the last iterates (Massias et al. 2018), and of
  every dual point seen before;
* the Gap Safe rule (Ndiaye et al. 2017): the features with ``|u_j| + ‖x_j − x̄_j‖ √(2 L_ℓ G/n)
  < λ₁``, ``u = Xᵀα/n``, are zero at the optimum and leave the problem;
* a working set (Massias et al. 2018, celer): the support and the features closest to violating
  the dual constraint, ``(λ₁ − |u_j|)/‖x_j − x̄_j‖`` smallest, at least twice the support, its size
  a power of two (a traced size: one compiled inner loop for all of them); on sparse columns
  the first set also holds every feature whose constraint the unscaled first dual point
  violates;

then, over the working set, in one compiled ``lax.while_loop``, epochs of proximal coordinate
descent (step ``1/L_j``, ``L_j = L_ℓ‖x_j‖²/n``; for the squared loss, exact minimisation) or,
for the logistic loss, proximal Newton steps (Lee et al. 2014; glmnet, skglm), until the working
set's own gap is below ``0.3`` of the full one (``0.01`` on sparse columns, whose passes cost
more: there a pass also evaluates one dual point, the one the inner loop's last gap preferred).

The features are held as columns: dense ``X`` transposed, ``(p, n)``, centred with an intercept
(so that ``b`` decouples), or the non-zeros of each column of a sparse ``X``, ``(p, k)`` values
and row indices padded to the longest column, ``O(pk)`` memory and ``O(k)`` a coordinate.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from mflangevin._sparse import padded_segments
from mflangevin.models.losses import get_loss
from mflangevin.solvers._dual import feasible
from mflangevin.types import Array

__all__ = ["Columns", "Result", "columns", "solve", "SMOOTHNESS"]

SMOOTHNESS = {"squared": 1.0, "logistic": 0.25, "smoothed_hinge": 1.0}
"""``L_ℓ``, the smoothness of each loss in ``z`` (its conjugate is ``1/L_ℓ``-strongly convex)."""

_CHECK = 10
"""Epochs between two gap checks of the inner loop."""

_INNER = 0.3
"""The inner loop stops when the working set's gap is this fraction of the full gap."""

_INNER_SPARSE = 0.01
""":data:`_INNER` for sparse columns, whose passes (a gather per non-zero) cost many epochs of
a working set: fewer passes, longer inner loops (L1-logistic at n = 10⁵, p = 10⁴, 1 % dense:
4.8 passes against 6.8 at ``0.3``)."""

_EPOCHS = 1000
"""The most epochs of one inner loop."""

_STALLS = 3
"""Outer iterations in a row without a smaller gap after which the solver stops: the gap has
reached the rounding error of its sums."""

_SMALLEST = 16
"""The smallest working set."""

_KEPT = 6

_NEWTON_EPOCHS = 4
"""Coordinate epochs on the second-order model of one proximal Newton step (logistic loss)."""
"""Iterates ``z = Xw + b`` kept for the extrapolated dual point (five differences)."""


class Columns(NamedTuple):
    """The features by columns: ``values[j]`` are column ``j``'s entries, dense (``rows`` is
    ``None``, ``values`` is ``Xᵀ``) or its non-zeros at the rows ``rows[j]`` (padded with
    zeros).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> Columns(jnp.ones((3, 5))).values.shape
    (3, 5)
    """

    values: Array
    rows: Array | None = None


class Result(NamedTuple):
    """What :func:`solve` returns: the parameters, ``P`` and the certified gap at them, the
    outer iterations, the passes over the data (an epoch over ``K`` of ``p`` features is ``K/p``
    of a pass, a gap one pass), ``(passes, gap)`` after every outer iteration, which features
    the Gap Safe rule removed (a boolean mask), and why it stopped short (``None`` when the gap
    reached ``tol``).

    Examples
    --------
    >>> Result._fields[:4]
    ('coef', 'intercept', 'primal', 'gap')
    """

    coef: np.ndarray
    intercept: float
    primal: float
    gap: float
    n_iter: int
    passes: float
    history: list
    screened: np.ndarray
    why: str | None


@functools.partial(jax.jit, static_argnums=1)
def _dense_columns(X: Array, intercept: bool) -> tuple[Array, Array]:
    mean = jnp.mean(X, axis=0) if intercept else jnp.zeros(X.shape[1], X.dtype)
    return (X - mean[None, :]).T, mean


def columns(X, intercept: bool) -> tuple[Columns, np.ndarray]:
    """The columns of ``X`` on the device and the means they were centred by (zeros for sparse
    ``X`` and without an intercept): dense ``X`` as ``(X − x̄)ᵀ``, sparse ``X`` as the padded
    non-zeros of each column, ``O(nnz + p·max_j nnz_j)``: one conversion to CSC (none for a CSC
    ``X``), and the padded arrays filled from it in one vectorised pass.

    Examples
    --------
    >>> import numpy as np
    >>> cols, mean = columns(np.array([[1.0, 2.0], [3.0, 2.0]]), intercept=True)
    >>> cols.values.tolist(), mean.tolist()
    ([[-1.0, 1.0], [0.0, 0.0]], [2.0, 2.0])
    """
    if not scipy.sparse.issparse(X):
        values, mean = _dense_columns(jax.device_put(X), intercept)
        return Columns(values), np.asarray(mean, np.float64)
    X = X.tocsc()
    rows, values = padded_segments(X, X.data, jax.dtypes.canonicalize_dtype(X.dtype))
    return Columns(jax.device_put(values), jax.device_put(rows)), np.zeros(X.shape[1])


def padding(X) -> float:
    """The stored entries of :func:`columns` per non-zero of a CSR or CSC ``X``: ``p·max_j
    nnz_j / nnz`` (1 for evenly filled columns; large when a few columns are dense), counted
    without converting ``X``.

    Examples
    --------
    >>> import scipy.sparse
    >>> padding(scipy.sparse.eye(4, format="csc"))
    1.0
    """
    p = X.shape[1]
    lengths = np.diff(X.indptr) if X.format == "csc" else np.bincount(X.indices, minlength=p)
    return p * float(lengths.max(initial=1)) / max(X.nnz, 1)


def _times(cols: Columns, w: Array, n: int) -> Array:
    """``X w``; for sparse columns, a sum over the non-zeros of ``w`` alone (``O(k)`` each)."""
    if cols.rows is None:
        return w @ cols.values
    support = jnp.argsort(w == 0, stable=True)  # the non-zeros first

    def add(i, z):
        j = support[i]
        return z.at[cols.rows[j]].add(cols.values[j] * w[j], mode="promise_in_bounds")

    zero = jnp.zeros(n, cols.values.dtype)
    return jax.lax.fori_loop(0, jnp.count_nonzero(w), add, zero)


def _transposed_times(cols: Columns, v: Array) -> Array:
    """``Xᵀ v`` for ``v`` of shape ``(n, m)``: shape ``(p, m)``."""
    if cols.rows is None:
        return cols.values @ v
    gathered = (v[:, i].at[cols.rows].get(mode="promise_in_bounds") for i in range(v.shape[1]))
    return jnp.stack([jnp.sum(cols.values * g, axis=1) for g in gathered], axis=1)


def _extrapolated(kept: Array, count: Array, z: Array) -> Array:
    """``Σ_i c_i z_i`` over the kept iterates, ``c ∝ (UᵀU)⁻¹1`` for the differences ``U`` of
    consecutive iterates (Anderson / Scieur et al.): the limit of a linearly converging
    sequence; ``z`` until ``_KEPT`` iterates are kept or when the system is singular."""
    order = (count + jnp.arange(_KEPT)) % _KEPT  # oldest first
    iterates = kept[order]
    U = jnp.diff(iterates, axis=0)  # (K - 1, n)
    gram = U @ U.T
    gram = gram + 1e-10 * jnp.trace(gram) * jnp.eye(_KEPT - 1, dtype=z.dtype) / (_KEPT - 1)
    c = jnp.linalg.solve(gram, jnp.ones(_KEPT - 1, z.dtype))
    c = c / jnp.sum(c)
    guess = c @ iterates[1:]
    usable = (count >= _KEPT) & jnp.all(jnp.isfinite(guess))
    return jnp.where(usable, guess, z)


def _dual_values(loss_name, intercept, Z: Array, y: Array, U_of, n, l1, l2):
    """``D`` at the dual points ``α = −ℓ'(z)`` of the rows ``z`` of ``Z``, moved onto the
    intercept's constraint and, for ``λ₂ = 0``, scaled into ``‖Xᵀα/n‖_∞ ≤ λ₁``; with the
    points' ``u = Xᵀα/n`` (``U_of(A)`` computes ``XᵀAᵀ/n`` for the features in play) and the
    scale factors."""
    loss = get_loss(loss_name)
    A = -loss.derivative(Z, y[None, :])
    if intercept:
        A = jax.vmap(lambda alpha: feasible(jnp, loss_name, alpha, y))(A)
    U = U_of(A)  # (m, p)
    largest = jnp.max(jnp.abs(U), axis=1, initial=0.0)
    eps = jnp.finfo(U.dtype).eps
    shrink = jnp.where(
        l2 > 0, 1.0, jnp.minimum(1.0, l1 * (1 - 4 * eps) / jnp.where(largest > 0, largest, 1))
    ).astype(U.dtype)
    U = U * shrink[:, None]
    excess = jnp.maximum(jnp.abs(U) - l1, 0)
    penalty = jnp.where(l2 > 0, jnp.sum(excess**2, axis=1) / (2 * jnp.where(l2 > 0, l2, 1)), 0)
    conjugate = jnp.mean(loss.conjugate(-shrink[:, None] * A, y[None, :]), axis=1)
    return -conjugate - penalty, U, shrink


def _primal(loss_name, z, y, w, l1, l2):
    loss = get_loss(loss_name)
    return jnp.mean(loss.value(z, y)) + l1 * jnp.sum(jnp.abs(w)) + 0.5 * l2 * jnp.sum(w**2)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _outer(loss_name, intercept, cols, y, w, b, kept, count, l1, l2, extrapolate=True):
    """``z = Xw + b``, ``P(w, b)``, and the better of the rescaled-residual and extrapolated dual
    points: its ``D``, ``u`` and how many features violate its constraint ``|u_j| ≤ λ₁`` before
    the scaling (those a proximal step would move off zero). One pass over the data. For sparse
    columns, where each dual point is a gather over every non-zero, only one point: the
    extrapolated one when ``extrapolate`` (the inner loop's last gap preferred it), else the
    residual."""
    n = y.shape[0]
    z = _times(cols, w, n) + b
    primal = _primal(loss_name, z, y, w, l1, l2)
    guess = _extrapolated(kept, count, z)
    Z = jnp.stack([z, guess]) if cols.rows is None else jnp.where(extrapolate, guess, z)[None]
    duals, U, shrink = _dual_values(
        loss_name, intercept, Z, y, lambda A: _transposed_times(cols, A.T).T / n, n, l1, l2
    )
    best = jnp.argmax(jnp.where(jnp.isnan(duals), -jnp.inf, duals))
    violators = jnp.count_nonzero(jnp.abs(U[best]) > l1 * shrink[best])
    return primal, duals[best], U[best], violators, z


def _column(cols: Columns, j):
    """Column ``j``: its values and, for sparse columns, their rows."""
    return cols.values[j], None if cols.rows is None else cols.rows[j]


def _dot(column, r):
    """``x_jᵀ r`` (``r`` of shape ``(n,)`` or ``(n, m)``)."""
    values, rows = column
    return values @ (r if rows is None else r[rows])


def _moved(column, step, r, weights=None):
    """``r + step · x_j`` (``⊙ weights`` when given)."""
    values, rows = column
    if rows is None:
        return r + step * values * (1 if weights is None else weights)
    return r.at[rows].add(step * values * (1 if weights is None else weights[rows]))


def _prox(u, step, l1, l2):
    """``prox`` of ``step · (λ₁|·| + λ₂(·)²/2)`` at ``u``."""
    return jnp.sign(u) * jnp.maximum(jnp.abs(u) - step * l1, 0) / (1 + step * l2)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(8,))
def _inner(
    loss_name, intercept, cols, y, ws, size, active, lipschitz, w, b, z, l1, l2, target, epochs
):
    """Minimise ``P`` over the working set ``ws[:size]`` (``ws`` a permutation of the features,
    ``size`` traced: one program for every size) until its gap is at most ``target`` or about
    ``epochs`` epochs ran; the inactive (screened) features of the set are set to zero. The
    squared loss and the smoothed hinge take proximal coordinate steps ``1/L_j``; the logistic
    loss proximal Newton steps, each ``_NEWTON_EPOCHS`` coordinate epochs on the second-order
    model and a backtracking line search (as glmnet and skglm do). Returns ``w, b, z``, the
    epochs run, the kept iterates for the extrapolated dual point and whether that point gave
    the last gap."""
    loss = get_loss(loss_name)
    n, p = y.shape[0], ws.shape[0]
    on = active[ws]
    L = jnp.where(on, lipschitz[ws], 1)
    smoothness = SMOOTHNESS[loss_name]

    def over_set(function, carry):
        return jax.lax.fori_loop(0, size, function, carry)

    def coordinate(k, carry):
        v, z = carry
        values, rows = column = _column(cols, ws[k])
        d = loss.derivative(z if rows is None else z[rows], y if rows is None else y[rows])
        new = jnp.where(on[k], _prox(v[k] - values @ d / n / L[k], 1 / L[k], l1, l2), 0)
        return v.at[k].set(new), _moved(column, new - v[k], z)

    def epoch(_, carry):
        v, b, z = carry
        v, z = over_set(coordinate, (v, z))
        if intercept:
            delta = -jnp.mean(loss.derivative(z, y)) / smoothness
            b, z = b + delta, z + delta
        return v, b, z

    def penalty(x):
        return l1 * jnp.sum(jnp.abs(x)) + 0.5 * l2 * jnp.sum(x**2)

    def newton(v, b, z):
        """One proximal Newton step: the direction by coordinate descent on the second-order
        model ``F + ⟨∇F, δ⟩ + ½ δᵀ∇²F δ + R``, then the longest step ``2^{−i}`` with enough
        decrease (Armijo)."""
        d = loss.derivative(z, y)
        h = jax.vmap(jax.grad(loss.derivative))(z, y)  # ℓ''

        def curvature(k, H):
            values, rows = _column(cols, ws[k])
            return H.at[k].set(values**2 @ (h if rows is None else h[rows]) / n)

        H = over_set(curvature, jnp.zeros(p, z.dtype))
        H = jnp.where(on, jnp.maximum(H, 1e-12 * L), 1)

        def coordinate(k, carry):
            u, q, r = carry  # the model's point, X(u − v), d + h ⊙ q
            column = _column(cols, ws[k])
            new = jnp.where(on[k], _prox(u[k] - _dot(column, r) / n / H[k], 1 / H[k], l1, l2), 0)
            step = new - u[k]
            return u.at[k].set(new), _moved(column, step, q), _moved(column, step, r, h)

        def model_epoch(_, carry):
            u, c, q, r = carry
            u, q, r = over_set(coordinate, (u, q, r))
            if intercept:
                step = -jnp.mean(r) / jnp.maximum(jnp.mean(h), 1e-12)
                c, q, r = c + step, q + step, r + step * h
            return u, c, q, r

        u, c, q, _ = jax.lax.fori_loop(
            0, _NEWTON_EPOCHS, model_epoch, (v, jnp.zeros_like(b), jnp.zeros_like(z), d)
        )
        direction = u - v
        now = jnp.mean(loss.value(z, y)) + penalty(v)
        decrease = jnp.minimum(jnp.mean(d * q) + penalty(u) - penalty(v), 0)

        def objective(t):
            return jnp.mean(loss.value(z + t * q, y)) + penalty(v + t * direction)

        def shorter(state):
            t, _ = state
            return t / 2, objective(t / 2)

        def insufficient(state):
            t, value = state
            return (value > now + 1e-4 * t * decrease) & (t > 2.0**-20)

        t, value = jax.lax.while_loop(insufficient, shorter, (1.0, objective(1.0)))
        t = jnp.where(value <= now, t, 0.0)
        return v + t * direction, b + t * c, z + t * q

    def transposed_times(A):
        def one(k, U):
            return U.at[k].set(_dot(_column(cols, ws[k]), A.T))

        return over_set(one, jnp.zeros((p, A.shape[0]), A.dtype)).T / n

    def gap(v, z, kept, count):
        """The working set's gap and whether the extrapolated dual point gave it."""
        Z = jnp.stack([z, _extrapolated(kept, count, z)])
        duals, *_ = _dual_values(loss_name, intercept, Z, y, transposed_times, n, l1, l2)
        duals = jnp.where(jnp.isnan(duals), -jnp.inf, duals)
        return jnp.mean(loss.value(z, y)) + penalty(v) - jnp.max(duals), duals[1] > duals[0]

    def running(state):
        *_, done, (current, _), _, _ = state
        return (done < epochs) & (current > target)

    def body(state):
        v, b, z, done, _, kept, count = state
        if loss_name == "logistic":
            v, b, z = newton(v, b, z)
            done = done + _NEWTON_EPOCHS + 1
        else:
            v, b, z = jax.lax.fori_loop(0, _CHECK, epoch, (v, b, z))
            done = done + _CHECK
        kept = kept.at[count % _KEPT].set(z)
        count = count + 1
        return v, b, z, done, gap(v, z, kept, count), kept, count

    kept = jnp.zeros((_KEPT, n), z.dtype)
    start = (w[ws], b, z, 0, (jnp.asarray(jnp.inf, z.dtype), False), kept, 0)
    v, b, z, done, (_, extrapolate), kept, count = jax.lax.while_loop(running, body, start)
    return w.at[ws].set(v), b, z, done, kept, count, extrapolate


def _bucket(size: int, p: int) -> int:
    """The working-set size: a power of two (at least ``_SMALLEST``), at most ``p`` (powers of
    two keep the set from growing by a feature at a time)."""
    return min(p, max(_SMALLEST, 1 << max(0, math.ceil(math.log2(max(size, 1))))))


def solve(
    loss_name: str,
    cols: Columns,
    y,
    l1: float,
    l2: float,
    *,
    intercept: bool,
    tol: float,
    max_iter: int = 100,
    coef=None,
    offset: float = 0.0,
    screening: bool = True,
    working_sets: bool = True,
    first: tuple | None = None,
    verbose: int = 0,
) -> Result:
    """Minimise ``P`` by coordinate descent from ``(coef, offset)`` (default zero) until the
    duality gap is at most ``tol`` or ``max_iter`` outer iterations ran, in the dtype of
    ``cols``. ``screening`` and ``working_sets`` switch the Gap Safe rule and the working sets
    off (then every epoch visits every feature). The intercept is ``offset`` in the centred
    coordinates of :func:`columns`: ``b = offset − ⟨x̄, w⟩``. ``first``, ``(P, D, u)`` at a zero
    ``coef`` (``u = Xᵀα/n`` before its scaling, ``D`` at the scaled point), computed by the
    caller (an estimator's start certificate), replaces the first iteration's pass.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> X, y = load_diabetes(return_X_y=True)
    >>> with jax.enable_x64(True):
    ...     cols, mean = columns(X, intercept=True)
    ...     result = solve("squared", cols, y, l1=1.0, l2=0.0, intercept=True, tol=1e-8)
    >>> bool(result.gap <= 1e-8), int(np.count_nonzero(result.coef))
    (True, 3)
    """
    n = len(y)
    p = cols.values.shape[0]
    dtype = cols.values.dtype
    y = jnp.asarray(y, dtype)
    w = jnp.zeros(p, dtype) if coef is None else jnp.asarray(coef, dtype)
    b = jnp.asarray(offset, dtype)
    # Per-coordinate smoothness L_j = L_ℓ‖x_j‖²/n and the centred norms ‖x_j − x̄_j‖ of the
    # screening radius (‖x‖² − (Σx)²/n, with a margin for its rounding).
    squares = np.asarray(jnp.sum(cols.values**2, axis=1), np.float64)
    sums = np.asarray(jnp.sum(cols.values, axis=1), np.float64)
    centred = np.maximum(squares - sums**2 / n, 0) if intercept else squares
    norms = np.sqrt(centred + 4 * np.finfo(np.float64).eps * squares)
    lipschitz = jnp.asarray(SMOOTHNESS[loss_name] * squares / n, dtype)
    active = squares > 0
    kept, count, extrapolate = jnp.zeros((_KEPT, n), dtype), 0, jnp.asarray(False)
    best, best_u = -math.inf, None
    screened = np.zeros(p, bool)
    history, passes, size, why = [], 0.0, 0, "raise max_iter"
    previous, stalls = math.inf, 0
    l1_, l2_ = jnp.asarray(l1, dtype), jnp.asarray(l2, dtype)
    resolution = 8 * float(jnp.finfo(dtype).eps)
    inner = _INNER if cols.rows is None else _INNER_SPARSE
    if first is not None and np.any(np.asarray(w)):
        raise ValueError("first: given only for the start at a zero coef.")
    for iteration in range(max_iter + 1):
        if iteration == 0 and first is not None:  # at w = 0, z = b: no pass
            primal, dual, u = first
            u = np.asarray(u, np.float64)
            largest = float(np.max(np.abs(u), initial=0.0))
            violators = int(np.count_nonzero(np.abs(u) > l1))
            u = u * (min(1.0, l1 / largest) if l2 == 0 and largest > 0 else 1.0)
            z = jnp.full(n, b, dtype)
        else:
            primal, dual, u, violators, z = _outer(
                loss_name, intercept, cols, y, w, b, kept, jnp.asarray(count), l1_, l2_,
                extrapolate,
            )  # fmt: skip
            passes += 1
        primal, dual = float(primal), float(dual)
        if dual > best:
            best, best_u = dual, np.asarray(u, np.float64)
        gap = primal - best
        history.append((passes, gap))
        if verbose:
            print(f"iteration {iteration:4d}  passes {passes:8.1f}  gap {gap:.3e}  set {size}")
        if not math.isfinite(primal):
            why = "the objective is not finite"
            break
        if gap <= tol:
            why = None
            break
        stalls = stalls + 1 if gap >= previous else 0
        if gap <= resolution * (abs(primal) + abs(best)) or stalls >= _STALLS:
            why = f"precision loss: the gap reached the rounding error of {jnp.dtype(dtype).name}"
            break
        if iteration == max_iter:
            break
        if screening and l1 > 0:
            radius = math.sqrt(2 * SMOOTHNESS[loss_name] * gap / n)
            screened |= np.abs(best_u) + radius * norms < l1
            active &= ~screened
        support = np.asarray(w) != 0
        if working_sets and l1 > 0:
            wanted = max(size, 2 * int(np.count_nonzero(support)))
            if cols.rows is not None and iteration == 0:
                # Sparse columns: a pass costs a gather per non-zero, many epochs of a set, so
                # the first set holds every feature that violates its dual constraint.
                wanted = max(wanted, int(violators))
            if gap > previous / 2:  # too little progress: a larger set
                wanted = max(wanted, 2 * size)
            size = _bucket(wanted, p)
            score = np.where(active, (l1 - np.abs(best_u)) / np.where(norms > 0, norms, 1), np.inf)
            score = np.where(support, -np.inf, score)
            ws = np.argsort(score, kind="stable")
        else:
            size, ws = p, np.arange(p)
        previous = gap
        w, b, z, epochs, kept, count, extrapolate = _inner(
            loss_name, intercept, cols, y, jnp.asarray(ws, np.int32), size, jnp.asarray(active),
            lipschitz, w, b, z, l1_, l2_, jnp.asarray(inner * gap, dtype), _EPOCHS,
        )  # fmt: skip
        passes += int(epochs) * size / p
        count = int(count)
    return Result(
        np.asarray(w, np.float64), float(b), primal, gap, iteration, passes, history, screened, why
    )
