"""The linear models' certificate (docs/theory/convex-erm.md#the-certificate): ``P(x)`` and the
dual value ``D(α(x))`` at a feasible dual point, on the device (:func:`primal_and_dual`) and in
float64 on the host (:func:`certified`, what the estimators report).

The dual point. ``α_i = −ℓ'(z_i, y_i)`` is moved into the dual-feasible set, exactly, so that the
gap bounds the suboptimality at any parameters, not only near the optimum:

* an unpenalised intercept adds the constraint ``Σ_i α_i = 0``. For the squared loss ``α`` is
  centred; for the margin losses (``y_i α_i ∈ [0, 1]``) the larger of the two class sums
  ``Σ_{y_i = +1} α_i`` and ``−Σ_{y_i = −1} α_i`` is scaled down to the smaller, which keeps every
  ``y_i α_i`` in ``[0, 1]``;
* ``λ₂ = 0`` (lasso, L1-logistic): ``R*`` is the indicator of ``‖u‖_∞ ≤ λ₁``, so ``α`` is scaled by
  ``min(1, λ₁ / ‖u‖_∞)`` with ``u = (1/n) Σ_i α_i x_i``, as lasso solvers do.

At the optimum both maps are the identity, so the gap still tends to zero. The fit computes the
gap in the dtype of the data, and again in float64 once it is small enough that rounding could
decide: a fit is ``converged_`` only when the float64 gap is at most ``tol``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import xlogy

from mflangevin.models._linear_data import (
    BLOCK,
    HOST_DERIVATIVES,
    row_blocks,
    times,
    transposed_times,
    value_and_grad_of,
)
from mflangevin.models.losses import get_loss
from mflangevin.proximal import ElasticNet
from mflangevin.solvers._dual import feasible as _feasible
from mflangevin.types import Array, ArrayTree


@functools.partial(jax.jit, static_argnums=0)
def primal_and_dual(loss_name: str, params: ArrayTree, X: Array, y: Array, l1, l2, scale=None):
    """``P(x)`` and ``D(α(x))`` at ``params = {"coef": w[, "intercept": b]}`` on ``(X, y)``
    (``y ∈ {−1, +1}`` for the classification losses), with the feasible dual point of the module
    docstring: ``P(x) − D(α(x)) ≥ P(x) − P*``. Compiled once per loss and shapes; no checks (see
    ``duality_gap`` of the estimators for the checked, float64 version).

    With ``scale = s``, ``X`` holds the features standardised, ``(x_j − m_j)/s_j`` (centred only
    with an intercept), and ``coef`` is ``s ⊙ w``: the same problem in other coordinates, the
    same gap.

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
    value, _ = value_and_grad_of(loss_name)(params, (X, y))
    penalty = ElasticNet(l1, l2)
    coef = params["coef"] if scale is None else params["coef"] / scale
    primal = value + penalty.value(coef)
    z = times(X, params["coef"]) + params.get("intercept", 0)
    alpha = -loss.derivative(z, y)
    if "intercept" in params:
        alpha = _feasible(jnp, loss_name, alpha, y)
    u = transposed_times(X, alpha, params["coef"].shape[0]) / n  # Σα = 0: centring drops out
    if scale is not None:
        u = u * scale
    largest = jnp.max(jnp.abs(u))
    shrink = jnp.where(l2 > 0, 1, jnp.minimum(1, l1 / jnp.where(largest > 0, largest, 1))).astype(
        u.dtype
    )
    dual = -jnp.mean(loss.conjugate(-shrink * alpha, y)) - penalty.conjugate(shrink * u)
    return primal, dual


def _hinge_value(z, y):
    t = y * z
    return np.where(t >= 1, 0.0, np.where(t <= 0, 0.5 - t, 0.5 * (1 - t) ** 2))


def _hinge_conjugate(g, y):
    s = y * g
    return np.where((s >= -1) & (s <= 0), s + 0.5 * s**2, np.inf)


def _logistic_conjugate(g, y):
    u = -y * g
    inside = (u >= 0) & (u <= 1)
    u = np.clip(u, 0.0, 1.0)
    return np.where(inside, xlogy(u, u) + xlogy(1 - u, 1 - u), np.inf)


_EPS = float(np.finfo(np.float64).eps)


def _squared_value(z, y):
    residual = z - y
    return residual @ residual / 2


_HOST_LOSSES = {
    "squared": (_squared_value, HOST_DERIVATIVES["squared"], lambda g, y: g @ g / 2 + g @ y),
    "logistic": (
        lambda z, y: np.sum(np.logaddexp(0, -y * z)),
        HOST_DERIVATIVES["logistic"],
        lambda g, y: np.sum(_logistic_conjugate(g, y)),
    ),
    "smoothed_hinge": (
        lambda z, y: np.sum(_hinge_value(z, y)),
        HOST_DERIVATIVES["smoothed_hinge"],
        lambda g, y: np.sum(_hinge_conjugate(g, y)),
    ),
}
"""The losses of :mod:`mflangevin.models.losses` in NumPy (the value summed over the samples,
the derivative, the conjugate summed), for the float64 certificate on the host; the squared
loss's sums are dot products."""


def certified(loss_name: str, params: ArrayTree, X, y, l1: float, l2: float, *, with_u=False):
    """``P(x)`` and the gap ``P(x) − D(α(x))`` in float64 with NumPy on the host, by blocks of
    rows (no float64 copy of ``X``, nothing compiled), whatever the dtype of the fit: the
    certificate the estimators report. The same dual point as :func:`primal_and_dual`. With
    ``with_u``, also ``u = Xᵀα/n`` before the scaling into ``‖u‖_∞ ≤ λ₁`` (what a solver's
    first iteration would compute again)."""
    value, derivative, conjugate = _HOST_LOSSES[loss_name]
    coef = np.asarray(params["coef"], np.float64)
    n = X.shape[0]
    y = np.asarray(y, np.float64)
    blocks = [(0, X)] if n <= BLOCK else list(row_blocks(X))  # (one block: no copies)
    if coef.any():
        z = np.concatenate([block @ coef for _, block in blocks])
    else:  # the start of a fit: no pass over X
        z = np.zeros(n)
    if "intercept" in params:
        z = z + np.float64(params["intercept"])
    primal = value(z, y) / n + l1 * np.abs(coef).sum() + 0.5 * l2 * (coef @ coef)
    alpha = -derivative(z, y)
    if "intercept" in params:
        alpha = _feasible(np, loss_name, alpha, y)
    u = sum(block.T @ alpha[start : start + block.shape[0]] for start, block in blocks) / n
    largest = np.abs(u).max()
    shrink = 1.0 if l2 > 0 or largest <= l1 else l1 / largest
    excess = np.maximum(np.abs(shrink * u) - l1, 0)
    if l2 > 0:
        penalty = np.sum(excess**2) / (2 * l2)
    else:  # the indicator of ‖u‖_∞ ≤ λ₁, up to a few ulps of round-off
        penalty = 0.0 if (excess <= 8 * _EPS * l1).all() else np.inf
    dual = -conjugate(-shrink * alpha, y) / n - penalty
    if with_u:
        return float(primal), float(primal - dual), u
    return float(primal), float(primal - dual)


def resolution(dtype, primal: float, gap: float, start: float) -> float:
    """The rounding error of a gap ``P − D`` computed in ``dtype`` (or of iterates in ``dtype``):
    a few ulps of ``|P| + |D|`` or of ``P(0)``, the scale of the terms that cancel in it (sums
    over the samples are pairwise, their error grows like their depth)."""
    return 8 * float(jnp.finfo(dtype).eps) * max(abs(primal) + abs(primal - gap), start)
