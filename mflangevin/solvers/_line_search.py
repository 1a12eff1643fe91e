"""The gradient-only line search of :mod:`~mflangevin.solvers.lbfgs` and
:mod:`~mflangevin.solvers.newton` (docs/theory/convex-erm.md#l-bfgs): it reads only the slope
``φ'(α) = ⟨∇P(x + αd), d⟩``, never ``P``. For a convex ``P``, ``φ'`` increases, so a step with
``|φ'(α)| ≤ c₂|φ'(0)|`` (Wolfe's strong curvature condition, ``c₂ = 0.9``) is found by doubling
and then bisecting ``α``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

CURVATURE = 0.9
"""``c₂`` of the strong curvature condition ``|φ'(α)| ≤ c₂|φ'(0)|``."""

TRIALS = 40
"""The most gradients a line search evaluates before it reports that it found no step."""


class MinimizeResult(NamedTuple):
    """Where a run of L-BFGS or Newton's method stopped: the last iterate ``x`` (float64), the
    iterations, the evaluations (gradients, and for Newton's method Hessians: each one pass over
    a linear model's data), and ``certified``, whether ``certify`` stopped it (at the start or
    after an iteration); otherwise ``message`` says why it stopped: the iteration budget, or a
    line search that found no step (the gradient's rounding error was reached).

    Examples
    --------
    >>> MinimizeResult(np.zeros(2), 3, 4, True, "").certified
    True
    """

    x: np.ndarray
    iterations: int
    evaluations: int
    certified: bool
    message: str


def search(
    grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, d: np.ndarray, slope: float,
    alpha: float,
) -> tuple[float, np.ndarray] | None:  # fmt: skip
    """A step ``α`` along the descent direction ``d`` from ``x`` (``slope = ⟨∇P(x), d⟩ < 0``),
    trying ``alpha`` first, with the gradient there; ``None`` when ``TRIALS`` gradients found
    none (the gradient's rounding error was reached).

    Examples
    --------
    >>> grad = lambda x: x - 3.0  # P(x) = ½(x − 3)²
    >>> alpha, g = search(grad, np.zeros(1), np.ones(1), -3.0, 8.0)
    >>> alpha, g.tolist()  # φ'(8) = 5 > 0.9·3: halved once, φ'(4) = 1
    (4.0, [1.0])
    """
    low, high = 0.0, np.inf
    for _ in range(TRIALS):
        g = grad(x + alpha * d)
        slope_new = g @ d
        if abs(slope_new) <= CURVATURE * -slope:
            return alpha, g
        if slope_new < 0:  # still descending: longer
            low = alpha
            alpha = 2 * alpha if high == np.inf else (low + high) / 2
        else:
            high = alpha
            alpha = (low + high) / 2
    return None
