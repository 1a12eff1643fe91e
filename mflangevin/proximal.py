"""Proximal maps, the penalties that own them, and the composite objective ``F + R``.

The maths: docs/theory/convex-erm.md.

A proximal method minimises ``P(x) = F(x) + R(x)`` with ``F`` smooth and ``R`` convex with a
cheap proximal map ``prox_{ηR}(v) = argmin_x R(x) + ‖x − v‖² / (2η)``:

* :func:`prox_l1` — ``R = λ₁‖x‖₁``: soft-thresholding ``S_{ηλ₁}(v)``;
* :func:`prox_l2` — ``R = (λ₂/2)‖x‖²``: shrinkage ``v / (1 + ηλ₂)``;
* :func:`prox_elastic_net` — both: ``S_{ηλ₁}(v) / (1 + ηλ₂)``;
* :func:`prox_box` — the indicator of ``[lower, upper]``: clipping, whatever ``η`` is.

Every map acts leaf by leaf on a pytree ``v``. The penalties :class:`ElasticNet` (L1, L2 and
elastic net) and :class:`Box` carry their value, proximal map and convex conjugate ``R*``; a
pytree of penalties that is a prefix of the parameters is a separable penalty, one per subtree
(``{"coef": ElasticNet(l1, l2), "intercept": ElasticNet()}`` leaves an intercept unpenalised), and
:func:`value`, :func:`prox`, :func:`conjugate` and :func:`strong_convexity` act on it.
:class:`CompositeObjective` is a finite sum ``F(x) = (1/n) Σ_i f_i(x)`` given by the value and
gradient of ``f_i`` averaged over any batch of samples, with such a penalty.

Parameters are checked when they are concrete (not traced): strengths, thresholds and step
sizes are real numbers ``≥ 0`` (thresholds and step sizes may be ``+inf``, strengths are
finite), bounds are not NaN and ``lower ≤ upper``; anything else raises an error naming the
parameter. Under ``jax.jit`` a traced parameter cannot be checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin.objectives import num_samples
from mflangevin.types import Array, ArrayLike, ArrayTree

__all__ = [
    "soft_threshold",
    "prox_l1",
    "prox_l2",
    "prox_elastic_net",
    "prox_box",
    "ElasticNet",
    "Box",
    "value",
    "prox",
    "conjugate",
    "strong_convexity",
    "CompositeObjective",
]


def _like(value, leaf: Array) -> Array:
    """A parameter in the dtype of the leaf it acts on (strict promotion never mixes them)."""
    return jnp.asarray(value, jnp.result_type(leaf))


def _map(fn: Callable, x: ArrayTree, *params) -> ArrayTree:
    """``fn`` leaf by leaf; a parameter is a scalar for all leaves or a pytree like ``x``."""
    trees = [p if jax.tree.structure(p) == jax.tree.structure(x) else None for p in params]
    leaves, treedef = jax.tree.flatten(x)
    columns = [
        jax.tree.leaves(t) if t is not None else [p] * len(leaves)
        for t, p in zip(trees, params, strict=True)
    ]
    out = [fn(leaf, *(_like(c[i], leaf) for c in columns)) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(treedef, out)


def _shrink(x: Array, t: Array) -> Array:
    return x - jnp.clip(x, -t, t)  # exactly +0 on [−t, t]


def soft_threshold(v: ArrayTree, threshold: ArrayLike | ArrayTree) -> ArrayTree:
    """``S_t(v) = sign(v) max(|v| − t, 0)``, leaf by leaf: the proximal map of ``t‖·‖₁``.

    ``t ≥ 0`` (``+inf`` gives ``0``); a concrete threshold that is negative, NaN or not a real
    number raises an error naming it (a traced one cannot be checked).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0)
    Array([-1.,  0.,  2.], dtype=float32)
    >>> soft_threshold(jnp.array([1.0]), -1.0)
    Traceback (most recent call last):
    ...
    ValueError: threshold: must be non-negative (or +inf), got -1.0.
    """
    _check_nonnegative("threshold", threshold, infinite=True)
    return _map(_shrink, v, threshold)


def prox_l1(v: ArrayTree, step_size: ArrayLike, l1: ArrayLike | ArrayTree) -> ArrayTree:
    """``prox_{ηR}(v)`` for ``R(x) = λ₁‖x‖₁``: soft-thresholding at ``ηλ₁``.

    ``η ≥ 0`` (or ``+inf``) and finite ``λ₁ ≥ 0``, checked when concrete, as in every map here.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> prox_l1({"w": jnp.array([-2.0, 0.5])}, 0.5, 2.0)
    {'w': Array([-1.,  0.], dtype=float32)}
    """
    _check_nonnegative("step_size", step_size, infinite=True)
    _check_nonnegative("l1", l1)
    return _map(lambda x, eta, a: _shrink(x, eta * a), v, step_size, l1)


def prox_l2(v: ArrayTree, step_size: ArrayLike, l2: ArrayLike | ArrayTree) -> ArrayTree:
    """``prox_{ηR}(v)`` for ``R(x) = (λ₂/2)‖x‖²``: ``v / (1 + ηλ₂)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> prox_l2(jnp.array([2.0, -4.0]), 0.5, 2.0)
    Array([ 1., -2.], dtype=float32)
    """
    _check_nonnegative("step_size", step_size, infinite=True)
    _check_nonnegative("l2", l2)
    return _map(lambda x, eta, b: x / (1 + eta * b), v, step_size, l2)


def prox_elastic_net(
    v: ArrayTree, step_size: ArrayLike, l1: ArrayLike | ArrayTree, l2: ArrayLike | ArrayTree
) -> ArrayTree:
    """``prox_{ηR}(v)`` for ``R(x) = λ₁‖x‖₁ + (λ₂/2)‖x‖²``: ``S_{ηλ₁}(v) / (1 + ηλ₂)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> prox_elastic_net(jnp.array([3.0, 0.5]), 1.0, 1.0, 1.0)
    Array([1., 0.], dtype=float32)
    """
    _check_nonnegative("step_size", step_size, infinite=True)
    _check_nonnegative("l1", l1)
    _check_nonnegative("l2", l2)
    return _elastic_net(v, step_size, l1, l2)


def _elastic_net(v, step_size, l1, l2) -> ArrayTree:
    def one(x, eta, a, b):
        return _shrink(x, eta * a) / (1 + eta * b)

    return _map(one, v, step_size, l1, l2)


def prox_box(v: ArrayTree, lower: ArrayLike | ArrayTree, upper: ArrayLike | ArrayTree) -> ArrayTree:
    """The projection onto ``[lower, upper]`` (the proximal map of its indicator, any ``η``).

    Bounds may be ``±inf``, scalars for every leaf, or pytrees like ``v`` (arrays that
    broadcast against their leaf); concrete bounds must not be NaN, and ``lower ≤ upper``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> prox_box(jnp.array([-2.0, 0.5, 3.0]), 0.0, 1.0)
    Array([0. , 0.5, 1. ], dtype=float32)
    >>> prox_box(jnp.array([0.5]), 1.0, 0.0)
    Traceback (most recent call last):
    ...
    ValueError: lower: must not exceed upper, got 1.0 > 0.0.
    """
    _check_bounds(lower, upper)
    return _map(jnp.clip, v, lower, upper)


def _real_leaves(name: str, value) -> list[np.ndarray] | None:
    """The leaves of a parameter (a number, an array or a pytree of them) as float NumPy
    arrays; ``None`` when one is traced (nothing can be checked then). Anything but real numbers
    raises a ``TypeError`` naming the parameter."""
    leaves = jax.tree.leaves(value)
    if not leaves:
        raise TypeError(f"{name}: expected a real number or an array of them, got {value!r}.")
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return None
    arrays = [np.asarray(leaf) for leaf in leaves]
    for leaf, array in zip(leaves, arrays, strict=True):
        if not (
            jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(array.dtype, jnp.floating)
        ):
            raise TypeError(f"{name}: expected a real number or an array of them, got {leaf!r}.")
    return [array.astype(float) for array in arrays]


def _check_nonnegative(name: str, value, *, infinite: bool = False) -> None:
    """A concrete ``value`` is ``≥ 0`` and finite (or also ``+inf`` when ``infinite``)."""
    arrays = _real_leaves(name, value)
    if arrays is not None and not all(
        np.all(a >= 0) and (infinite or np.all(np.isfinite(a))) for a in arrays
    ):
        bound = "non-negative (or +inf)" if infinite else "non-negative and finite"
        raise ValueError(f"{name}: must be {bound}, got {value}.")


def _check_bounds(lower, upper) -> None:
    """Concrete bounds are not NaN and ``lower ≤ upper`` (a scalar pairs with every leaf)."""
    bounds = []
    for name, value in (("lower", lower), ("upper", upper)):
        arrays = _real_leaves(name, value)
        if arrays is not None and any(np.any(np.isnan(a)) for a in arrays):
            raise ValueError(f"{name}: must not be NaN, got {value}.")
        bounds.append(arrays)
    lows, highs = bounds
    if lows is None or highs is None:
        return
    if len(lows) == 1:
        lows = lows * len(highs)
    elif len(highs) == 1:
        highs = highs * len(lows)
    if len(lows) == len(highs) and any(np.any(lo > hi) for lo, hi in zip(lows, highs, strict=True)):
        raise ValueError(f"lower: must not exceed upper, got {lower} > {upper}.")


def _register(cls, fields: tuple[str, ...]) -> None:
    """``cls`` as a pytree of ``fields``, rebuilt without ``__post_init__``: JAX's
    transformations fill the fields with tracers and placeholders that are not parameters, so
    only what a user constructs is checked."""

    def flatten_with_keys(penalty):
        return [(jax.tree_util.GetAttrKey(f), getattr(penalty, f)) for f in fields], None

    def flatten(penalty):
        return [getattr(penalty, f) for f in fields], None

    def unflatten(_, children):
        penalty = object.__new__(cls)
        for field, child in zip(fields, children, strict=True):
            object.__setattr__(penalty, field, child)
        return penalty

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)


def _sum(tree: ArrayTree) -> Array:
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class ElasticNet:
    """``R(x) = λ₁‖x‖₁ + (λ₂/2)‖x‖²`` over every leaf: L1 (``l2=0``), L2 (``l1=0``), or none.

    Parameters
    ----------
    l1
        ``λ₁ ≥ 0``.
    l2
        ``λ₂ ≥ 0``; ``R`` is ``λ₂``-strongly convex.

    Notes
    -----
    A pytree whose leaves are ``l1`` and ``l2``: it enters compiled code as an argument, so
    penalties of equal structure share one compilation.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> penalty = ElasticNet(l1=1.0, l2=2.0)
    >>> x = jnp.array([1.0, -2.0])
    >>> float(penalty.value(x)), penalty.prox(x, 0.5)
    (8.0, Array([ 0.25, -0.75], dtype=float32))
    >>> float(penalty.conjugate(jnp.array([3.0, 0.5])))  # ‖S_λ₁(u)‖² / (2λ₂)
    1.0
    """

    l1: ArrayLike = 0.0
    l2: ArrayLike = 0.0

    def __post_init__(self):
        _check_nonnegative("l1", self.l1)
        _check_nonnegative("l2", self.l2)

    def value(self, x: ArrayTree) -> Array:
        """``R(x)``, summed over every leaf."""
        return _sum(_map(lambda v, a, b: a * jnp.abs(v) + 0.5 * b * v**2, x, self.l1, self.l2))

    def prox(self, v: ArrayTree, step_size: ArrayLike) -> ArrayTree:
        """``prox_{ηR}(v)``: :func:`prox_elastic_net`."""
        _check_nonnegative("step_size", step_size, infinite=True)
        return _elastic_net(v, step_size, self.l1, self.l2)

    def conjugate(self, u: ArrayTree) -> Array:
        """``R*(u) = ‖S_{λ₁}(u)‖² / (2λ₂)``; for ``λ₂ = 0``, ``0`` on ``‖u‖_∞ ≤ λ₁`` (up to a few
        ulps of round-off) and ``+inf`` outside."""

        def one(v, a, b):
            excess = jnp.maximum(jnp.abs(v) - a, 0)
            slack = 8 * jnp.finfo(v.dtype).eps * a
            inside = jnp.all(excess <= slack)
            quadratic = jnp.sum(excess**2) / (2 * jnp.where(b > 0, b, 1))
            return jnp.where(b > 0, quadratic, jnp.where(inside, 0, jnp.inf).astype(v.dtype))

        return _sum(_map(one, u, self.l1, self.l2))

    @property
    def strong_convexity(self) -> ArrayLike:
        """``λ₂``, the modulus of strong convexity."""
        return self.l2


@dataclasses.dataclass(frozen=True)
class Box:
    """The indicator of ``[lower, upper]`` (``0`` inside, ``+inf`` outside), leaf by leaf.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> box = Box(lower=0.0, upper=1.0)
    >>> box.prox(jnp.array([-1.0, 0.3, 2.0]), 0.1)
    Array([0. , 0.3, 1. ], dtype=float32)
    >>> float(box.value(jnp.array([0.5]))), float(box.conjugate(jnp.array([2.0, -1.0])))
    (0.0, 2.0)
    """

    lower: ArrayLike = -np.inf
    upper: ArrayLike = np.inf

    def __post_init__(self):
        _check_bounds(self.lower, self.upper)

    def value(self, x: ArrayTree) -> Array:
        """``0`` when every entry is within its bounds, ``+inf`` otherwise."""
        outside = _map(lambda v, lo, hi: jnp.sum((v < lo) | (v > hi)), x, self.lower, self.upper)
        dtype = jnp.result_type(*jax.tree.leaves(x))
        return jnp.where(_sum(outside) > 0, jnp.inf, 0).astype(dtype)

    def prox(self, v: ArrayTree, step_size: ArrayLike) -> ArrayTree:
        """The projection :func:`prox_box` (the step size plays no part)."""
        del step_size
        return _map(jnp.clip, v, self.lower, self.upper)

    def conjugate(self, u: ArrayTree) -> Array:
        """The support function ``Σ_j max(lower_j u_j, upper_j u_j)``."""

        def one(v, lo, hi):
            return jnp.where(v > 0, hi * v, jnp.where(v < 0, lo * v, 0))

        return _sum(_map(one, u, self.lower, self.upper))

    @property
    def strong_convexity(self) -> float:
        """``0``: an indicator is not strongly convex."""
        return 0.0


_register(ElasticNet, ("l1", "l2"))
_register(Box, ("lower", "upper"))


def _is_penalty(node) -> bool:
    return callable(getattr(node, "prox", None)) and callable(getattr(node, "value", None))


def _per_penalty(fn: Callable, penalty, x: ArrayTree) -> ArrayTree:
    try:
        return jax.tree.map(fn, penalty, x, is_leaf=_is_penalty)
    except ValueError as err:
        raise ValueError(
            "penalty: expected a penalty (with value and prox) or a pytree of penalties that is "
            f"a prefix of the parameters, got {penalty!r} for parameters "
            f"{jax.tree.structure(x)}."
        ) from err


def value(penalty, x: ArrayTree) -> Array:
    """``R(x)`` for a penalty or a pytree of penalties (their sum over the subtrees of ``x``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = {"coef": jnp.array([1.0, -1.0]), "intercept": jnp.array(5.0)}
    >>> float(value({"coef": ElasticNet(l1=1.0), "intercept": ElasticNet()}, x))
    2.0
    """
    return _sum(_per_penalty(lambda r, sub: r.value(sub), penalty, x))


def prox(penalty, v: ArrayTree, step_size: ArrayLike) -> ArrayTree:
    """``prox_{ηR}(v)`` for a penalty or a pytree of penalties (separable: subtree by subtree).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> v = {"coef": jnp.array([2.0, -0.5]), "intercept": jnp.array(2.0)}
    >>> out = prox({"coef": ElasticNet(l1=1.0), "intercept": ElasticNet()}, v, 1.0)
    >>> out["coef"], out["intercept"]
    (Array([1., 0.], dtype=float32), Array(2., dtype=float32))
    """
    return _per_penalty(lambda r, sub: r.prox(sub, step_size), penalty, v)


def conjugate(penalty, u: ArrayTree) -> Array:
    """``R*(u)``: the sum of the subtrees' conjugates for a separable penalty.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(conjugate(ElasticNet(l2=2.0), jnp.array([2.0, 2.0])))  # ‖u‖² / (2λ₂)
    2.0
    """
    return _sum(_per_penalty(lambda r, sub: r.conjugate(sub), penalty, u))


def strong_convexity(penalty) -> ArrayLike:
    """The modulus of strong convexity of a penalty: the least over a pytree of penalties.

    Examples
    --------
    >>> strong_convexity({"coef": ElasticNet(l2=0.1), "intercept": ElasticNet()})
    0.0
    """
    moduli = [
        getattr(r, "strong_convexity", 0.0) for r in jax.tree.leaves(penalty, is_leaf=_is_penalty)
    ]
    return min(moduli) if moduli else 0.0


@dataclasses.dataclass(frozen=True)
class CompositeObjective:
    """``P(x) = F(x) + R(x)`` with ``F(x) = (1/n) Σ_i f_i(x)`` a finite sum over ``data``.

    Parameters
    ----------
    value_and_grad
        ``value_and_grad(x, batch) -> (F_I(x), ∇F_I(x))``: the average of ``f_i`` over the
        samples ``i`` of ``batch`` (rows of ``data``) and its gradient, a pytree like ``x``.
    data
        A pytree whose leaves have the sample axis ``n`` first.
    penalty
        ``R``: a penalty with ``value`` and ``prox`` (:class:`ElasticNet`, :class:`Box`, or one
        of one's own) or a pytree of them that is a prefix of the parameters.

    Notes
    -----
    A pytree whose leaves are ``data`` and the penalty's numbers; ``value_and_grad`` is static.
    :meth:`subsample` gives the minibatch objective, unbiased for ``F``.

    Examples
    --------
    Least squares ``(1/2n)‖Ax − y‖² + (λ₂/2)‖x‖²``:

    >>> import jax.numpy as jnp
    >>> def value_and_grad(x, batch):
    ...     A, y = batch
    ...     residual = A @ x - y
    ...     return 0.5 * jnp.mean(residual**2), A.T @ residual / y.shape[0]
    >>> objective = CompositeObjective(value_and_grad, (jnp.eye(3), jnp.ones(3)),
    ...                                ElasticNet(l2=1.0))
    >>> objective.num_samples, float(objective.value(jnp.zeros(3)))
    (3, 0.5)
    >>> objective.subsample(jnp.array([0, 2])).num_samples
    2
    """

    value_and_grad: Callable[[ArrayTree, Any], tuple[Array, ArrayTree]]
    data: Any
    penalty: Any = dataclasses.field(default_factory=ElasticNet)

    def __post_init__(self):
        if not callable(self.value_and_grad):
            raise TypeError(
                f"value_and_grad: expected a callable, got {type(self.value_and_grad).__name__}."
            )
        if not any(_is_penalty(r) for r in jax.tree.leaves(self.penalty, is_leaf=_is_penalty)):
            raise TypeError(
                "penalty: expected a penalty with value and prox methods (ElasticNet, Box) or a "
                f"pytree of them, got {self.penalty!r}."
            )

    @property
    def num_samples(self) -> int:
        """``n``, the leading axis of the data."""
        return num_samples(self.data, "data")

    def smooth(self, x: ArrayTree) -> tuple[Array, ArrayTree]:
        """``F(x)`` and ``∇F(x)`` over all ``n`` samples."""
        return self.value_and_grad(x, self.data)

    def value(self, x: ArrayTree) -> Array:
        """``P(x) = F(x) + R(x)``."""
        return self.smooth(x)[0] + value(self.penalty, x)

    def subsample(self, indices: Array) -> CompositeObjective:
        """The objective on the rows ``indices`` of every data leaf."""
        return dataclasses.replace(self, data=jax.tree.map(lambda a: a[indices], self.data))


jax.tree_util.register_dataclass(
    CompositeObjective, data_fields=["data", "penalty"], meta_fields=["value_and_grad"]
)
