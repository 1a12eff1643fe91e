"""L-BFGS with a gradient-only line search, stopped by a certificate,
docs/theory/convex-erm.md#l-bfgs.

For a smooth convex ``P`` over vectors ``x``. The two-loop recursion (Nocedal 1980) turns the
last ``memory`` pairs ``(s_k, y_k) = (x_{k+1} − x_k, ∇P(x_{k+1}) − ∇P(x_k))`` into a direction
``d = −H∇P(x)``, on the host in float64 (``O(memory · dim)``); the gradient is one compiled JAX
program on the data where they live (``O(n·p)`` for a linear model, compiled once per function
and shapes), or for small data a NumPy function on the host. The line search reads only the
slope ``φ'(α) = ⟨∇P(x + αd), d⟩``, never ``P``: ``φ'`` increases (``P`` is convex), so a
step with ``|φ'(α)| ≤ c₂|φ'(0)|`` (Wolfe's strong curvature condition, ``c₂ = 0.9``) is found
by doubling and then bisecting ``α`` (:mod:`~mflangevin.solvers._line_search`). A value of
``P`` in float32 cannot resolve the decrease near the optimum that a tight duality gap needs;
the gradient can, so float32 data reach the gap that float64 data do.

After every iteration the caller's ``certify(x, gradient, evaluations)`` says whether to stop
(for the linear models: the float64 duality gap is at most ``tol``, computed only when the
gradient says that it may be); there is no other tolerance.

References: Nocedal, *Updating quasi-Newton matrices with limited storage*, Math. Comp. 1980;
Liu, Nocedal, *On the limited memory BFGS method for large scale optimization*, Math. Program.
1989; Wilke, Kok, Snyman, Groenwold, *Gradient-only approaches to avoid spurious local minima in
unconstrained optimization*, Optim. Eng. 2013.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable

import jax
import numpy as np

from mflangevin._checks import check_count
from mflangevin.solvers._line_search import MinimizeResult, search
from mflangevin.types import Array, ArrayTree

__all__ = ["MinimizeResult", "minimize"]


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(gradient: Callable, x: Array, data: ArrayTree) -> Array:
    """``gradient(x, data)``, compiled once per function, dtype and shapes."""
    return gradient(x, data)


def _direction(g: np.ndarray, pairs) -> np.ndarray:
    """``−H g`` by the two-loop recursion over ``pairs = [(s, y, 1/⟨s, y⟩), …]``, oldest first,
    with ``H₀ = ⟨s, y⟩/⟨y, y⟩`` of the newest pair (the identity without pairs)."""
    q = g.copy()
    coefficients = []
    for s, y, rho in reversed(pairs):
        a = rho * (s @ q)
        q -= a * y
        coefficients.append(a)
    if pairs:
        s, y, rho = pairs[-1]
        q *= 1 / (rho * (y @ y))
    for (s, y, rho), a in zip(pairs, reversed(coefficients), strict=True):
        q += (a - rho * (y @ q)) * s
    return -q


def minimize(
    gradient: Callable,
    x0: np.ndarray,
    data: ArrayTree,
    certify: Callable[[np.ndarray, np.ndarray, int], bool],
    *,
    max_iter: int,
    memory: int = 10,
    compiled: bool = True,
) -> MinimizeResult:
    """Minimise a smooth convex ``P`` given its gradient ``x ↦ gradient(x, data)``, by L-BFGS
    from ``x0``, until ``certify(x, ∇P(x), evaluations)`` is true; it is asked at the start and
    after every iteration.

    Parameters
    ----------
    gradient
        A JAX function ``(x, data) -> ∇P(x)``, ``x`` of the shape of ``x0`` in the dtype of
        ``data``'s floating-point arrays; the same function object reuses its compiled program.
    x0
        The start, a 1-D array.
    data
        A pytree of arrays, an argument of the compiled program (not a constant in it).
    certify
        ``certify(x, g, evaluations) -> bool``: stop at ``x`` where the gradient is ``g`` (both
        float64), after that many gradients.
    max_iter, memory
        The most iterations and the pairs ``(s, y)`` kept.
    compiled
        ``False``: ``gradient`` is a NumPy function, called as it is on the host (for data so
        small that dispatching a compiled program costs more than the pass).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> def gradient(x, a):  # P(x) = ½ Σ_j a_j (x_j − 1)²
    ...     return a * (x - 1.0)
    >>> result = minimize(gradient, np.zeros(3), jnp.array([1.0, 10.0, 100.0]),
    ...                   lambda x, g, evaluations: np.max(np.abs(g)) < 1e-6, max_iter=100)
    >>> result.certified, np.round(result.x, 4).tolist()
    (True, [1.0, 1.0, 1.0])
    """
    check_count("max_iter", max_iter)
    check_count("memory", memory)
    x = np.array(x0, np.float64)
    if x.ndim != 1:
        raise ValueError(f"x0: expected a 1-D array, got shape {x.shape}.")
    floats = [leaf for leaf in jax.tree.leaves(data) if np.issubdtype(leaf.dtype, np.floating)]
    dtype = np.result_type(*(leaf.dtype for leaf in floats)) if floats else np.float32
    evaluations = 0

    def grad(point: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        evaluations += 1
        point = np.asarray(point, dtype)
        return np.asarray(
            _evaluate(gradient, point, data) if compiled else gradient(point, data), np.float64
        )

    g = grad(x)
    if certify(x.copy(), g.copy(), evaluations):
        return MinimizeResult(x, 0, evaluations, True, "certified")
    pairs = collections.deque(maxlen=memory)
    message, iteration = "max_iter iterations", 0
    for iteration in range(1, max_iter + 1):
        d = _direction(g, pairs)
        slope = g @ d
        if not slope < 0:  # a zero gradient, or a direction spoilt by rounding: start afresh
            if not np.any(g):
                iteration -= 1
                message = "a zero gradient"
                break
            pairs.clear()
            d, slope = -g, -(g @ g)
        found = search(grad, x, d, slope, 1.0 if pairs else 1 / max(np.sqrt(-slope), 1.0))
        if found is None:
            iteration -= 1
            message = "the line search found no step (the gradient's rounding error)"
            break
        alpha, g_new = found
        s, y = alpha * d, g_new - g
        x, g = x + s, g_new
        if s @ y > 0:
            pairs.append((s, y, 1 / (s @ y)))
        if certify(x.copy(), g.copy(), evaluations):
            return MinimizeResult(x, iteration, evaluations, True, "certified")
    return MinimizeResult(x, iteration, evaluations, False, message)
