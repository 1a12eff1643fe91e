"""Newton's method with a gradient-only line search, stopped by a certificate,
docs/theory/convex-erm.md#newtons-method.

For a smooth convex ``P`` over vectors ``x`` of small dimension, on the host in NumPy. Each
iteration solves ``∇²P(x) d = −∇P(x)`` by a Cholesky factorisation (``O(dim³)``; for a linear
model the Hessian ``X̃ᵀDX̃ + Λ`` is one ``O(n·p²)`` matrix product) and takes the step ``αd``
of the line search of :mod:`~mflangevin.solvers.lbfgs` (:mod:`~mflangevin.solvers._line_search`),
which tries ``α = 1`` first: near the optimum that step is accepted and the convergence is
quadratic, so a few iterations reach a gap that L-BFGS needs tens of passes for. Where the
Hessian is singular (the smoothed hinge has no curvature where every margin is outside
``(0, 1)``), the system is regularised by ``‖∇P(x)‖`` on the diagonal, a step that tends to
Newton's as the gradient vanishes.

After every iteration the caller's ``certify(x, gradient, evaluations)`` says whether to stop;
there is no other tolerance.

References: Nocedal, Wright, *Numerical Optimization*, 2nd ed., Springer 2006, ch. 3;
Mishchenko, *Regularized Newton method with global O(1/k²) convergence*, SIAM J. Optim. 2023.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg.lapack

from mflangevin._checks import check_count
from mflangevin.solvers._line_search import MinimizeResult, search
from mflangevin.types import ArrayTree

__all__ = ["minimize"]


def minimize(
    gradient: Callable,
    hessian: Callable,
    x0: np.ndarray,
    data: ArrayTree,
    certify: Callable[[np.ndarray, np.ndarray, int], bool],
    *,
    max_iter: int,
) -> MinimizeResult:
    """Minimise a smooth convex ``P`` by Newton's method from ``x0``, given its gradient
    ``x ↦ gradient(x, data)`` and Hessian ``x ↦ hessian(x, data)`` (NumPy functions), until
    ``certify(x, ∇P(x), evaluations)`` is true; it is asked at the start and after every
    iteration.

    Parameters
    ----------
    gradient, hessian
        ``(x, data) -> ∇P(x)`` and ``(x, data) -> ∇²P(x)``, float64 NumPy arrays of shapes
        ``(dim,)`` and ``(dim, dim)``.
    x0
        The start, a 1-D array.
    data
        The data that both read.
    certify
        ``certify(x, g, evaluations) -> bool``: stop at ``x`` where the gradient is ``g`` (both
        float64), after that many evaluations.
    max_iter
        The most iterations.

    Examples
    --------
    >>> def gradient(x, c):  # P(x) = Σ_j cosh(x_j − c_j), minimised at c
    ...     return np.sinh(x - c)
    >>> def hessian(x, c):
    ...     return np.diag(np.cosh(x - c))
    >>> result = minimize(gradient, hessian, np.zeros(2), np.array([1.0, -2.0]),
    ...                   lambda x, g, evaluations: np.max(np.abs(g)) < 1e-12, max_iter=20)
    >>> result.certified, result.iterations, np.round(result.x, 12).tolist()
    (True, 5, [1.0, -2.0])
    """
    check_count("max_iter", max_iter)
    x = np.array(x0, np.float64)
    if x.ndim != 1:
        raise ValueError(f"x0: expected a 1-D array, got shape {x.shape}.")
    evaluations = 0

    def grad(point: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        evaluations += 1
        return np.asarray(gradient(point, data), np.float64)

    g = grad(x)
    if certify(x.copy(), g.copy(), evaluations):
        return MinimizeResult(x, 0, evaluations, True, "certified")
    message, iteration = "max_iter iterations", 0
    for iteration in range(1, max_iter + 1):
        if not np.any(g):
            iteration -= 1
            message = "a zero gradient"
            break
        H = np.asarray(hessian(x, data), np.float64)
        evaluations += 1
        d = _newton_step(H, g)
        found = search(grad, x, d, g @ d, 1.0)
        if found is None:
            iteration -= 1
            message = "the line search found no step (the gradient's rounding error)"
            break
        alpha, g = found
        x = x + alpha * d
        if certify(x.copy(), g.copy(), evaluations):
            return MinimizeResult(x, iteration, evaluations, True, "certified")
    return MinimizeResult(x, iteration, evaluations, False, message)


def _newton_step(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``−H⁻¹g`` by Cholesky (LAPACK's ``potrf`` and ``potrs``: SciPy's checked wrappers cost
    more than the factorisation at this size), or ``−(H + ‖g‖I)⁻¹g`` where ``H`` is not positive
    definite in float64 (a descent direction either way), or ``−g`` where neither is."""
    factor, info = scipy.linalg.lapack.dpotrf(H)
    if info != 0:
        factor, info = scipy.linalg.lapack.dpotrf(H + np.linalg.norm(g) * np.eye(g.shape[0]))
    return -scipy.linalg.lapack.dpotrs(factor, g)[0] if info == 0 else -g
