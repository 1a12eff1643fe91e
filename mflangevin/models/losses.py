"""Convex losses ``ℓ(z, y)`` with derivative and convex conjugate (docs/theory/networks.md).

Each loss acts elementwise over samples: ``z`` has shape ``(n,)`` (``(n, k)`` for the
multi-class cross-entropy) and ``y`` shape ``(n,)``. The conjugate ``ℓ*(g, y) = sup_z gz − ℓ(z, y)``
is ``+inf`` outside its domain; with it the empirical risk ``R(z) = (1/n) Σ_j ℓ(z_j, y_j)`` has
``R*(g) = (1/n) Σ_j ℓ*(n g_j, y_j)``, which the dual bound of the certificates uses.

Each function is compiled (one program per shapes, rather than one per operation when called
outside ``jax.jit``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from mflangevin.types import Array

__all__ = ["Loss", "squared", "logistic", "smoothed_hinge", "cross_entropy", "get_loss"]


class Loss(NamedTuple):
    """A convex loss: ``value(z, y)``, ``derivative(z, y) = ∂ℓ/∂z`` and ``conjugate(g, y)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z, y = jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0])
    >>> squared.name, squared.value(z, y), squared.derivative(z, y)
    ('squared', Array([0.5, 2. ], dtype=float32), Array([1., 2.], dtype=float32))
    >>> squared.conjugate(jnp.array([1.0, 2.0]), y)  # ½g² + gy
    Array([0.5, 4. ], dtype=float32)
    """

    name: str
    value: Callable[[Array, Array], Array]
    derivative: Callable[[Array, Array], Array]
    conjugate: Callable[[Array, Array], Array]


@jax.jit
def _sq_value(z, y):
    return 0.5 * (z - y) ** 2


@jax.jit
def _sq_derivative(z, y):
    return z - y


@jax.jit
def _sq_conjugate(g, y):
    return 0.5 * g**2 + g * y


@jax.jit
def _logistic_value(z, y):
    return jnp.logaddexp(0.0, -y * z)


@jax.jit
def _logistic_derivative(z, y):
    return -y * jax.nn.sigmoid(-y * z)


@jax.jit
def _logistic_conjugate(g, y):
    u = -y * g
    inside = (u >= 0) & (u <= 1)
    u = jnp.clip(u, 0.0, 1.0)
    return jnp.where(inside, xlogy(u, u) + xlogy(1 - u, 1 - u), jnp.inf)


@jax.jit
def _hinge_value(z, y):
    t = y * z
    return jnp.where(t >= 1, 0.0, jnp.where(t <= 0, 0.5 - t, 0.5 * (1 - t) ** 2))


@jax.jit
def _hinge_derivative(z, y):
    t = y * z
    return y * jnp.where(t >= 1, 0.0, jnp.where(t <= 0, -1.0, t - 1))


@jax.jit
def _hinge_conjugate(g, y):
    s = y * g
    return jnp.where((s >= -1) & (s <= 0), s + 0.5 * s**2, jnp.inf)


def _one_hot(z, y):
    return jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)


@jax.jit
def _ce_value(z, y):
    return jax.nn.logsumexp(z, axis=-1) - jnp.sum(z * _one_hot(z, y), axis=-1)


@jax.jit
def _ce_derivative(z, y):
    return jax.nn.softmax(z, axis=-1) - _one_hot(z, y)


@jax.jit
def _ce_conjugate(g, y):
    # ℓ*(g, y) = Σ_k p_k log p_k with p = g + e_y, finite only on the probability simplex.
    p = g + _one_hot(g, y)
    tol = 1e-5
    feasible = jnp.all(p >= -tol, axis=-1) & (jnp.abs(jnp.sum(p, axis=-1) - 1) <= tol)
    p = jnp.clip(p, 0.0, 1.0)
    return jnp.where(feasible, jnp.sum(xlogy(p, p), axis=-1), jnp.inf)


squared = Loss("squared", _sq_value, _sq_derivative, _sq_conjugate)
"""``ℓ(z, y) = ½(z − y)²``; ``ℓ*(g, y) = ½g² + gy``."""

logistic = Loss("logistic", _logistic_value, _logistic_derivative, _logistic_conjugate)
"""``ℓ(z, y) = log(1 + e^{−yz})`` for ``y ∈ {−1, +1}``; with ``u = −yg ∈ [0, 1]``,
``ℓ* = u log u + (1 − u) log(1 − u)``."""

smoothed_hinge = Loss("smoothed_hinge", _hinge_value, _hinge_derivative, _hinge_conjugate)
"""Smoothed hinge of the margin ``t = yz``: ``0`` for ``t ≥ 1``, ``½(1 − t)²`` for ``0 < t < 1``,
``½ − t`` for ``t ≤ 0``; with ``s = yg ∈ [−1, 0]``, ``ℓ* = s + s²/2``."""

cross_entropy = Loss("cross_entropy", _ce_value, _ce_derivative, _ce_conjugate)
"""Multi-class cross-entropy ``logsumexp(z) − z_y`` for integer labels ``y``; ``ℓ*(g, y) =
Σ_k p_k log p_k`` with ``p = g + e_y`` on the probability simplex."""

_LOSSES = {loss.name: loss for loss in (squared, logistic, smoothed_hinge, cross_entropy)}


def get_loss(loss: str | Loss) -> Loss:
    """Look a loss up by name (``"squared"``, ``"logistic"``, ``"smoothed_hinge"``,
    ``"cross_entropy"``), or pass a :class:`Loss` through.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> ell = get_loss("squared")
    >>> z, y = jnp.array(2.0), jnp.array(0.5)
    >>> float(ell.value(z, y) + ell.conjugate(ell.derivative(z, y), y) - z * ell.derivative(z, y))
    0.0
    """
    if isinstance(loss, Loss):
        return loss
    if loss not in _LOSSES:
        raise ValueError(f"loss: unknown loss {loss!r}; choose one of {sorted(_LOSSES)}.")
    return _LOSSES[loss]
