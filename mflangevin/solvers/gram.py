"""Coordinate descent on the Gram matrix for the squared loss with many more samples than
features (glmnet's covariance updates), stopped by a duality gap that one exact pass over the
data confirms (docs/theory/convex-erm.md#the-gram-matrix).

It minimises ``P(w, b) = (1/2n) ‖y − Xw − b‖² + λ₁‖w‖₁ + (λ₂/2)‖w‖²`` (ridge, lasso, elastic
net; ``b`` unpenalised). One ``O(n·p²)`` pass builds, in float64 by blocks of rows,

    ``A = X_cᵀX_c / n``,  ``a = X_cᵀy_c / n``,  ``e = y_cᵀy_c / n``

(``X_c, y_c`` centred with an intercept, which then decouples: ``b = ȳ − ⟨x̄, w⟩``; the
products are taken on shifted rows and centred afterwards, see :func:`gram`). The problem
is then ``½ wᵀAw − aᵀw + e/2 + R(w)``, whatever ``n``: a coordinate's exact minimisation costs
``O(p)`` with ``q = Aw`` kept up to date, an epoch ``O(p²)`` (the coordinates that stay at zero
cost ``O(1)`` of arithmetic), and the duality gap at the rescaled residual ``O(p)`` from
``‖r‖²/n = e − 2aᵀw + wᵀq`` and ``Xᵀr/n = a − q``. With ``λ₁ = 0`` (ridge) the solver starts from
the Cholesky solution of ``(A + λ₂I) w = a``; with ``λ₁ > 0`` and few features, from the exact
solution of an active-set method on the host (:mod:`mflangevin.solvers.active_set`), which the
epochs only refine when the certificate rejects it or the method stops short.

The gap from ``A`` subtracts numbers of the size of ``e`` to get ``‖r‖²/n``: when the fit
explains almost all of ``y``, its rounding can exceed the gap and certify one that is not there.
So the gap that stops the solver is computed by the caller's ``certify(w, b)``, one exact pass
over the data (the estimators' float64 residuals); when it is above ``tol`` the epochs go on
with the Gram gap's target lowered by the factor that it missed by.

The ``p × p`` problem is solved in float64 whatever the dtype of ``X``: its cost does not depend
on ``n``, and float32 data then reach the float64 gaps of float64 data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mflangevin._checks import check_count, check_positive
from mflangevin.solvers import active_set

__all__ = ["Gram", "GramResult", "gap", "gram", "solve"]

_BLOCK = 1 << 22
"""Entries of a block of rows of the ``O(n·p²)`` float64 pass over ``X`` (32 MiB): large blocks
keep the matrix products efficient."""

_SAMPLE = 1024
"""First rows whose means and spreads choose the shift of :func:`gram`."""

_CHECK = 100
"""Epochs between two Gram gaps (and refreshes of ``q = Aw``, which removes the drift of its
updates): an iteration. Epochs are cheap (``O(p²)``, nothing of ``n``) and correlated features
need many: the lasso on raw ``load_diabetes`` (``λ₁ = 1``) takes about 1,400 to a gap of
``1e-8``."""

_ACTIVE_FEATURES = 32
"""Features up to which a lasso or elastic net is first solved exactly on the host by
:func:`mflangevin.solvers.active_set.solve` (an iteration per coefficient that enters, each a
dozen small NumPy calls, no dispatch of the epochs' program). Measured on a loaded 2-core CPU,
correlated features, ``λ₁ = λ_max/10`` (a third to a fifth of the coefficients nonzero): 62 µs
against the epochs' call 107 µs at ``p = 10``, 106 against 155 at ``p = 32``; with every
coefficient nonzero (``λ_max/1000``) 172 against 127 at ``p = 10`` and 560 against 581 at
``p = 32``."""

_CONFIRMATIONS = 4
"""Exact certificates that may miss ``tol`` before the solver reports precision loss."""


_IMPRECISE = "precision loss: the Gram matrix's gap no longer tracks the exact gap"


class Gram(NamedTuple):
    """The data of the squared loss in ``O(p²)``: ``matrix = X_cᵀX_c/n``, ``moment = X_cᵀy_c/n``,
    ``energy = y_cᵀy_c/n``, the means ``x̄`` and ``ȳ`` that centred them (zero without an
    intercept), all float64.

    Examples
    --------
    >>> G = gram(np.array([[1.0], [3.0]]), np.array([0.0, 4.0]), intercept=True)
    >>> G.matrix.tolist(), G.moment.tolist(), G.energy, G.offset
    ([[1.0]], [2.0], 4.0, 2.0)
    """

    matrix: np.ndarray
    moment: np.ndarray
    energy: float
    mean: np.ndarray
    offset: float


class GramResult(NamedTuple):
    """What :func:`solve` returns: ``w`` and ``b`` (float64), ``P`` and the gap of the last
    exact certificate, the iterations (Gram gaps computed: one at every start and one after
    every ``_CHECK`` epochs; one for an active-set solution that the first certificate
    confirms), the exact certificates computed and why it stopped short
    (``None`` when the certified gap reached ``tol``).

    Examples
    --------
    >>> GramResult._fields
    ('coef', 'intercept', 'primal', 'gap', 'n_iter', 'certificates', 'why')
    """

    coef: np.ndarray
    intercept: float
    primal: float
    gap: float
    n_iter: int
    certificates: int
    why: str | None


def gram(X, y, intercept: bool) -> Gram:
    """:class:`Gram` of a dense ``X`` (any float dtype) and ``y``, in float64 by blocks of rows
    (no float64 copy of ``X``): one ``O(n·p²)`` pass that also sums the columns and forms
    ``Xᵀy``.

    With an intercept, the rows are shifted by ``c`` (nothing for float64 ``X`` whose columns'
    means are small against their spreads or which has at most ``_SAMPLE`` rows, else the means
    of the first rows) and the products centred afterwards, ``X_cᵀX_c = X_sᵀX_s − n·d dᵀ`` with
    ``d = x̄ − c``; a column whose ``d`` is not small against its root mean square (``d_j² >
    ‖x_s,j‖²/(2n)``, which would cost more than a bit of ``A_jk``) makes a second pass shift by
    the exact means.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> G = gram(X, X[:, 0], intercept=False)
    >>> bool(np.allclose(G.matrix, X.T @ X / 100)), bool(np.allclose(G.moment, G.matrix[0]))
    (True, True)
    >>> G = gram(X + 1e6, X[:, 0], intercept=True)  # means far from 0: the exact shift
    >>> bool(np.allclose(G.matrix, np.cov(X.T, bias=True))), bool(np.allclose(G.mean, 1e6))
    (True, True)
    """
    n, p = X.shape
    y = np.asarray(y, np.float64)
    offset = float(np.mean(y)) if intercept else 0.0
    centred = y - offset
    shift = np.zeros(p)
    if intercept and (X.dtype != np.float64 or n > _SAMPLE):  # (else a second pass is cheap)
        first = np.asarray(X[:_SAMPLE], np.float64)
        mean = np.mean(first, axis=0)
        small = mean**2 <= np.mean((first - mean) ** 2, axis=0) / 4
        if X.dtype != np.float64 or not np.all(small):  # (float32 X is copied by blocks anyway)
            shift = mean
    matrix, total, moment = _products(X, centred, shift)
    drift = total / n  # d = x̄ − c
    if intercept and np.any(drift**2 > np.diagonal(matrix) / (2 * n)):
        shift = shift + drift
        matrix, total, moment = _products(X, centred, shift)
        drift = total / n
    if not intercept:
        drift = np.zeros(p)
    # (X − c)ᵀ y_c = X_cᵀ y_c as Σ y_c = 0.
    matrix = matrix / n - np.outer(drift, drift)
    return Gram(matrix, moment / n, float(centred @ centred) / n, shift + drift, offset)


def _products(X, centred, shift):
    """``X_sᵀX_s``, the column sums of ``X_s = X − shift`` and ``X_sᵀ centred``, in float64 by
    blocks of rows, each block read once (a float64 copy of a block only when ``X`` is not
    float64 or ``shift`` is not zero)."""
    n, p = X.shape
    rows = max(1, _BLOCK // max(p, 1))
    shifted = X.dtype != np.float64 or shift.any()
    if n <= rows and not shifted:  # one block, read in place
        return X.T @ X, X.sum(axis=0), X.T @ centred
    matrix, total, moment = np.zeros((p, p)), np.zeros(p), np.zeros(p)
    for start in range(0, n, rows):
        block = X[start : start + rows]
        if shifted:
            block = np.subtract(block, shift, dtype=np.float64)
        matrix += block.T @ block  # (NumPy's matmul takes BLAS syrk for a product AᵀA)
        total += np.sum(block, axis=0)
        moment += block.T @ centred[start : start + rows]
    return matrix, total, moment


def _gap(xp, A, a, energy, w, q, l1, l2):
    """``P(w)`` and the duality gap at the rescaled residual ``r = y_c − X_c w``, from the Gram
    data: ``‖r‖²/n = e − 2aᵀw + wᵀq``, ``u = X_cᵀr/n = a − q``, ``rᵀy/n = e − aᵀw``; in the
    array namespace ``xp`` (``jax.numpy`` or ``numpy``)."""
    residual = energy - 2 * a @ w + w @ q
    u = a - q
    largest = xp.max(xp.abs(u), initial=0.0)
    shrink = xp.where(l2 > 0, 1.0, xp.minimum(1.0, l1 / xp.where(largest > 0, largest, 1)))
    excess = xp.maximum(xp.abs(shrink * u) - l1, 0)
    conjugate = xp.where(l2 > 0, xp.sum(excess**2) / (2 * xp.where(l2 > 0, l2, 1)), 0.0)
    primal = residual / 2 + l1 * xp.sum(xp.abs(w)) + l2 / 2 * (w @ w)
    dual = -(shrink**2) * residual / 2 + shrink * (energy - a @ w) - conjugate
    return primal, primal - dual


def gap(G: Gram, coef, l1: float, l2: float) -> tuple[float, float]:
    """``P`` and the duality gap at ``coef`` (the intercept ``ȳ − ⟨x̄, w⟩``) from the Gram data
    ``G`` in ``O(p²)``: the exact gap to round-off of ``e`` at ``coef = 0`` (``‖r‖²/n = e``),
    elsewhere subject to the cancellation of the module docstring.

    Examples
    --------
    >>> G = gram(np.array([[1.0], [3.0]]), np.array([0.0, 4.0]), intercept=True)
    >>> gap(G, np.zeros(1), 1.0, 0.0)  # P(0) = e/2 = 2; the dual at s = ½: 2 − ½
    (2.0, 0.5)
    """
    w = np.asarray(coef, np.float64)
    if not w.any():  # r = y_c, u = a: P = e/2 and the gap in O(p) of scalars
        excess = np.abs(G.moment) - l1
        if l2 > 0:
            return G.energy / 2, float(excess @ np.maximum(excess, 0)) / (2 * l2)
        largest = float(excess.max(initial=-l1)) + l1
        shrink = 1.0 if largest <= l1 else l1 / largest
        return G.energy / 2, G.energy * (1 - shrink) ** 2 / 2
    primal, value = _gap(np, G.matrix, G.moment, G.energy, w, G.matrix @ w, l1, l2)
    return float(primal), float(value)


@jax.jit
def _epochs(A, a, energy, w, l1, l2, target, iterations):
    """Epochs of exact coordinate minimisation, ``_CHECK`` between two Gram gaps, until the Gram
    gap is at most ``target`` or ``iterations`` such checks ran: ``w``, the checks run and the
    last Gram gap. One program per ``p``."""
    diagonal = jnp.diagonal(A)
    active = diagonal > 0
    curvature = jnp.where(active, diagonal + l2, 1)

    def coordinate(j, carry):
        w, q = carry
        u = a[j] - q[j] + diagonal[j] * w[j]
        new = jnp.where(active[j], jnp.sign(u) * jnp.maximum(jnp.abs(u) - l1, 0) / curvature[j], 0)
        step = new - w[j]
        q = jax.lax.cond(step != 0, lambda q: q + step * A[j], lambda q: q, q)
        return w.at[j].set(new), q

    def epoch(_, carry):
        return jax.lax.fori_loop(0, w.shape[0], coordinate, carry)

    def running(state):
        _, done, gap = state
        return (done < iterations) & (gap > target)

    def body(state):
        w, done, _ = state
        w, _ = jax.lax.fori_loop(0, _CHECK, epoch, (w, A @ w))
        return w, done + 1, _gap(jnp, A, a, energy, w, A @ w, l1, l2)[1]

    start = (w, 0, _gap(jnp, A, a, energy, w, A @ w, l1, l2)[1])
    return jax.lax.while_loop(running, body, start)


def _float64():
    """JAX's float64 for the epochs: ``jax.enable_x64``, unless it is on already (entering it
    costs a small fit's dispatch about 40 µs)."""
    return contextlib.nullcontext() if jax.config.jax_enable_x64 else jax.enable_x64(True)


def solve(
    G: Gram,
    l1: float,
    l2: float,
    certify: Callable[[np.ndarray, float], tuple[float, float]],
    *,
    tol: float,
    max_iter: int = 100,
    coef=None,
) -> GramResult:
    """Minimise ``P`` on the Gram data ``G`` from ``coef`` (default: zero, or for ``λ₁ = 0`` the
    Cholesky solution; for ``λ₁ > 0`` and at most ``_ACTIVE_FEATURES`` features, the active-set
    solution of :func:`mflangevin.solvers.active_set.solve`, or its last iterate) until
    ``certify(w, b) -> (P, gap)``, the caller's exact certificate, says that the gap is at most
    ``tol``, or ``max_iter`` times ``_CHECK`` epochs ran.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> X, y = load_diabetes(return_X_y=True)
    >>> def certify(w, b):  # the exact gap of the lasso at (w, b), from the residuals
    ...     r = y - X @ w - b
    ...     u = X.T @ r / len(y)
    ...     s = min(1.0, 1.0 / np.max(np.abs(u)))
    ...     primal = r @ r / (2 * len(y)) + np.sum(np.abs(w))
    ...     return primal, primal + s**2 * (r @ r) / (2 * len(y)) - s * (r @ y) / len(y)
    >>> result = solve(gram(X, y, intercept=True), 1.0, 0.0, certify, tol=1e-8)
    >>> bool(result.gap <= 1e-8), int(np.count_nonzero(result.coef)), result.why
    (True, 3, None)
    """
    check_positive("tol", tol)
    check_count("max_iter", max_iter)
    A, a = G.matrix, G.moment
    p = a.shape[0]
    if coef is not None:
        w = np.asarray(coef, np.float64)
    elif l1 == 0:
        try:
            w = scipy.linalg.cho_solve(scipy.linalg.cho_factor(A + l2 * np.eye(p)), a)
        except np.linalg.LinAlgError:  # not positive definite in float64: from zero
            w = np.zeros(p)
    else:
        w = np.zeros(p)
    target, iterations, epochs, why, spent = tol, 0, 0, "raise max_iter", 0
    if l1 > 0 and p <= _ACTIVE_FEATURES:  # the exact solution, if the active set reaches it
        w, optimal, _ = active_set.solve(A, a, l1, l2, w)
        if optimal:
            b = G.offset - float(G.mean @ w)
            primal, gap = certify(w, b)
            if gap <= tol:
                return GramResult(w, b, primal, gap, 1, 1, None)
            spent = 1  # a certificate, which rejected it
    # A Cholesky, warm or active-set start may need no epoch: its Gram gap says. From zero the
    # epochs' program tests the start's gap itself (a host gap there is a small fit's fixed cost).
    estimate = float(_gap(np, A, a, G.energy, w, A @ w, l1, l2)[1]) if np.any(w) else math.inf
    if spent:  # its Gram gap was optimistic by gap/estimate (its rounding): aim that much lower
        target = max(estimate, 0.0) * tol / gap / 2
    for certificates in range(1 + spent, _CONFIRMATIONS + 2 + spent):
        done = 0
        if estimate > target:
            with _float64():
                w, done, estimate = _epochs(
                    A, a, G.energy, w, l1, l2, target, max(max_iter - epochs, 0)
                )
                w, done, estimate = jax.device_get((w, done, estimate))
                done, estimate = int(done), float(estimate)
        iterations, epochs = iterations + 1 + done, epochs + done
        b = G.offset - float(G.mean @ w)
        primal, gap = certify(w, b)
        if gap <= tol:
            why = None
            break
        if not math.isfinite(primal):
            why = "the objective is not finite"
            break
        if estimate > target or epochs >= max_iter:
            why = "raise max_iter" if target == tol else _IMPRECISE
            break
        if certificates > _CONFIRMATIONS:
            why = _IMPRECISE
            break
        # The Gram gap was optimistic by gap/estimate (its rounding): aim that much lower.
        target = max(estimate, 0.0) * tol / gap / 2
    return GramResult(w, b, primal, gap, iterations, certificates, why)
