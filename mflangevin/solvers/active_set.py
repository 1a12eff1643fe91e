"""The exact solution of a small Gram problem on the host by an active-set method (feature-sign
search, Lee, Battle, Raina and Ng 2007; docs/theory/convex-erm.md#the-gram-matrix).

It minimises ``f(w) = ½ wᵀMw − aᵀw + λ₁‖w‖₁`` with ``M = A + λ₂I`` positive semi-definite. On
the set ``S`` of the nonzero coordinates, with their signs ``θ``, ``f`` is the quadratic whose
minimiser solves ``M_SS x = a_S − λ₁θ``; outside it, ``w = 0`` is optimal when
``|g_j| ≤ λ₁`` for the gradient ``g = Mw − a`` of the smooth part. One iteration:

* when the signs of ``S`` are consistent (the last step reached its system's solution), the zero
  coordinate that violates ``|g_j| ≤ λ₁`` most joins ``S`` with ``θ_j = −sign(g_j)``; none: the
  optimality conditions hold and the method stops;
* the system of ``S`` is solved by Cholesky, and the segment from ``w`` to its solution ``x`` is
  searched at ``x`` and at the points where a coordinate changes sign: ``w`` moves to the lowest
  ``f``, and the coordinates at zero leave ``S``.

Every step lowers ``f``, so no active set repeats; each costs ``O(p²)`` to ``O(|S|³)``, and the
method takes a few times as many iterations as there are nonzero coefficients. A singular system
(duplicated features without ``λ₂``) or too many iterations (round-off) stop it short: the caller
then goes on from ``w`` with another solver.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs

__all__ = ["ActiveSetResult", "solve"]

_EPS = float(np.finfo(np.float64).eps)


class ActiveSetResult(NamedTuple):
    """What :func:`solve` returns: ``w`` (float64), whether the optimality conditions hold to
    round-off (``False``: stopped short, ``w`` is the last iterate) and the iterations.

    Examples
    --------
    >>> ActiveSetResult._fields
    ('coef', 'optimal', 'n_iter')
    """

    coef: np.ndarray
    optimal: bool
    n_iter: int


def solve(A, a, l1: float, l2: float, coef=None, *, max_iter: int | None = None) -> ActiveSetResult:
    """Minimise ``½ wᵀ(A + λ₂I)w − aᵀw + λ₁‖w‖₁`` (``λ₁ > 0``) from ``coef`` (default zero) by
    feature-sign search, in NumPy, until the optimality conditions hold to round-off, a system
    is singular, or ``max_iter`` iterations ran (default ``4p + 8``).

    Examples
    --------
    >>> A = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> result = solve(A, np.array([1.0, 0.5]), 0.1, 0.0)  # w₂ = 0: |0.5·0.9 − 0.5| ≤ 0.1
    >>> result.coef.tolist(), result.optimal
    ([0.9, 0.0], True)
    """
    A, a = np.asarray(A, np.float64), np.asarray(a, np.float64)
    p = a.shape[0]
    M = A + l2 * np.eye(p) if l2 else A
    w = np.zeros(p) if coef is None else np.array(coef, np.float64)
    max_iter = 4 * p + 8 if max_iter is None else max_iter
    if p == 0:
        return ActiveSetResult(w, True, 0)
    # |g_j| is known to a few ulps of the terms that make it: a violation below that is noise.
    noise = 16 * p * _EPS
    size, largest = float(np.abs(a).max()) + l1, float(np.abs(M).max())  # (≥ every pivot)
    consistent = False  # (a warm start's active system is solved first)
    for iteration in range(max_iter + 1):
        active = w.nonzero()[0]
        signs = np.sign(w[active])
        if consistent or not active.size:  # (an empty active set is solved)
            g = M @ w - a
            violation = np.abs(g)
            violation[active] = 0.0
            j = int(violation.argmax())
            if violation[j] - l1 <= noise * (size + largest * float(np.abs(w).sum())):
                return ActiveSetResult(w, True, iteration)
            active = np.concatenate((active, (j,)))
            signs = np.concatenate((signs, (-1.0 if g[j] > 0 else 1.0,)))
        if iteration == max_iter:
            break
        factor, info = _potrf(M[active][:, active], lower=True)
        if info or factor.diagonal().min() ** 2 <= 4 * active.size * _EPS * largest:
            break  # not positive definite, or singular to round-off: the solution would be noise
        x = _potrs(factor, a[active] - l1 * signs, lower=True)[0]
        w, consistent = _segment(M, a, l1, w, active, signs, x)
    return ActiveSetResult(w, False, iteration)


def _segment(M, a, l1, w, active, signs, x):
    """The lowest ``f`` on the segment from ``w`` to ``w`` with ``x`` on ``active``, at ``x`` and
    at the points where a coordinate of ``active`` changes sign (set to zero exactly there), and
    whether it is ``x`` with the ``signs`` that its system assumed (then ``x`` is optimal on
    ``active``)."""
    start = w[active]
    consistent = bool((np.sign(x) == signs).all())
    crossing = (start * x < 0).nonzero()[0]
    w = np.zeros(w.shape[0])
    if crossing.size == 0:
        w[active] = x
        return w, consistent
    steps = start[crossing] / (start - x)[crossing]
    candidates = start + np.append(steps, 1.0)[:, None] * (x - start)
    candidates[np.arange(steps.size), crossing] = 0.0
    sub = M[active][:, active]
    values = (
        0.5 * ((candidates @ sub) * candidates).sum(axis=1)
        - candidates @ a[active]
        + l1 * np.abs(candidates).sum(axis=1)
    )
    best = int(values.argmin())
    w[active] = candidates[best]
    return w, consistent and best == steps.size
