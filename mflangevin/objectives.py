"""Mean-field objectives ``F(μ)`` over particle measures (``math.md`` §1).

Two forms, with one interface used by every kernel:

* :class:`MeanFieldObjective`, the structured form ``F(μ) = R(E_μ Φ) + E_μ r``. It exposes the
  mean embedding ``E_μ Φ``, the vector ``g = ∇R(E_μ Φ)``, and the first variation
  ``δF/δμ(μ)(θ) = ⟨g, Φ(θ)⟩ + r(θ)`` at arbitrary θ, which PDA, variance reduction and the
  certificates need.
* :class:`EnergyObjective`, any symmetric function ``F_N(Θ) = F(μ_Θ)`` of the particle array. Its
  mean-field drift is ``N · ∇_{θ_i} F_N(Θ)``: autodiff of the finite-N loss is ``1/N`` of the drift.

Both give ``energy(particles)`` and ``energy_and_drift(particles)``, where the drift is
``∇_θ δF/δμ(μ_Θ)(θ_i)`` at every particle (without the reference term, which the kernels add).
Particles are pytrees whose leaves share a leading axis of size ``N``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mflangevin.references import DensityReference, GaussianReference
from mflangevin.types import Array, ArrayTree

__all__ = [
    "MeanFieldObjective",
    "EnergyObjective",
    "as_objective",
    "num_particles",
]

Reference = GaussianReference | DensityReference | None


def num_particles(particles: ArrayTree, name: str = "position") -> int:
    """The common leading-axis size ``N`` of a particle pytree, with a clear error otherwise.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> num_particles({"w": jnp.zeros((8, 3)), "b": jnp.zeros(8)})
    8
    """
    leaves = jax.tree.leaves(particles)
    if not leaves:
        raise ValueError(f"{name}: the particle pytree has no array leaves.")
    sizes = set()
    for leaf in leaves:
        shape = jnp.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{name}: every leaf needs a leading particle axis; got a scalar leaf."
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(
            f"{name}: all leaves must share the leading particle axis, got sizes {sorted(sizes)}."
        )
    (n,) = sizes
    if n < 1:
        raise ValueError(f"{name}: needs at least one particle, got N = {n}.")
    return int(n)


def _scale(tree: ArrayTree, factor: float | Array) -> ArrayTree:
    return jax.tree.map(lambda x: factor * x, tree)


def _tree_add(a: ArrayTree, b: ArrayTree) -> ArrayTree:
    return jax.tree.map(jnp.add, a, b)


@dataclasses.dataclass(frozen=True)
class MeanFieldObjective:
    """Structured objective ``F(μ) = R(E_μ Φ(θ); data) + E_μ r(θ)`` with reference ν.

    Parameters
    ----------
    feature_map
        ``Φ(θ, data)``: one particle (pytree without the particle axis) to an array of any shape,
        e.g. a network's outputs on all inputs.
    risk
        ``R(z, data)``, convex in ``z`` (same shape as ``Φ``).
    penalty
        Optional per-particle penalty ``r(θ)``.
    reference
        The reference measure ν (``None``: entropy only).
    risk_conjugate
        Optional convex conjugate ``R*(g, data)``, needed by the dual bound.
    data
        A pytree passed to ``feature_map`` and ``risk``. When ``R`` is an average over the leading
        axis of every leaf of ``data`` (an empirical risk), :meth:`subsample` gives the
        unbiased minibatch objective.

    Notes
    -----
    The objective is a pytree whose only leaves are ``data``: it can be passed through
    ``jax.jit`` and ``jax.vmap`` as an argument.

    Examples
    --------
    The quadratic objective ``½‖E_μθ − m‖² + λ' E_μ‖θ‖²`` of ``math.md`` §2:

    >>> import jax.numpy as jnp
    >>> m = jnp.array([1.0, -1.0])
    >>> objective = MeanFieldObjective(
    ...     feature_map=lambda theta, _: theta,
    ...     risk=lambda z, _: 0.5 * jnp.sum((z - m) ** 2),
    ...     penalty=lambda theta: 0.1 * jnp.sum(theta**2),
    ... )
    >>> objective.energy(jnp.zeros((4, 2)))
    Array(1., dtype=float32)
    """

    feature_map: Callable[[ArrayTree, Any], Array]
    risk: Callable[[Array, Any], Array]
    penalty: Callable[[ArrayTree], Array] | None = None
    reference: Reference = None
    risk_conjugate: Callable[[Array, Any], Array] | None = None
    data: Any = None

    def __post_init__(self):
        for name in ("feature_map", "risk"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name}: expected a callable, got {getattr(self, name)!r}.")
        for name in ("penalty", "risk_conjugate"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name}: expected a callable or None, got {value!r}.")

    def features(self, particles: ArrayTree) -> Array:
        """``Φ(θ_i)`` for every particle, shape ``(N, *feature_shape)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     feature_map=lambda theta, X: X @ theta,
        ...     risk=lambda z, _: 0.5 * jnp.sum(z**2),
        ...     data=jnp.ones((5, 2)),
        ... )
        >>> objective.features(jnp.ones((4, 2))).shape
        (4, 5)
        """
        return jax.vmap(self.feature_map, in_axes=(0, None))(particles, self.data)

    def mean_embedding(self, particles: ArrayTree) -> Array:
        """``E_μ Φ = (1/N) Σ_i Φ(θ_i)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(lambda theta, _: theta, lambda z, _: jnp.sum(z))
        >>> objective.mean_embedding(jnp.array([[1.0, 0.0], [3.0, 2.0]]))
        Array([2., 1.], dtype=float32)
        """
        return jnp.mean(self.features(particles), axis=0)

    def mean_penalty(self, particles: ArrayTree) -> Array:
        """``E_μ r``; zero without a penalty.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     feature_map=lambda theta, _: theta,
        ...     risk=lambda z, _: jnp.sum(z),
        ...     penalty=lambda theta: jnp.sum(theta**2),
        ... )
        >>> objective.mean_penalty(jnp.array([[1.0, 0.0], [3.0, 2.0]]))
        Array(7., dtype=float32)
        """
        if self.penalty is None:
            return jnp.zeros((), jnp.result_type(*jax.tree.leaves(particles)))
        return jnp.mean(jax.vmap(self.penalty)(particles))

    def energy(self, particles: ArrayTree) -> Array:
        """``F(μ_Θ)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
        ... )
        >>> objective.energy(jnp.array([[1.0, 0.0], [3.0, 2.0]]))  # ½‖(2, 1)‖²
        Array(2.5, dtype=float32)
        """
        return self.risk(self.mean_embedding(particles), self.data) + self.mean_penalty(particles)

    def risk_gradient(self, embedding: Array) -> Array:
        """``g = ∇R(z)`` at a mean embedding ``z``; ``g_μ = risk_gradient(mean_embedding(Θ))``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
        ... )
        >>> objective.risk_gradient(jnp.array([2.0, 1.0]))
        Array([2., 1.], dtype=float32)
        """
        return jax.grad(self.risk)(embedding, self.data)

    def first_variation(self, g: Array, theta: ArrayTree) -> Array:
        """``δF/δμ(θ) = ⟨g, Φ(θ)⟩ + r(θ)`` for one particle, given ``g``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
        ... )
        >>> objective.first_variation(jnp.array([2.0, 1.0]), jnp.array([1.0, 3.0]))
        Array(5., dtype=float32)
        """
        value = jnp.sum(g * self.feature_map(theta, self.data))
        if self.penalty is not None:
            value = value + self.penalty(theta)
        return value

    def first_variation_grad(self, g: Array, particles: ArrayTree) -> ArrayTree:
        """``∇_θ δF/δμ(θ_i)`` at every particle for a given ``g``, as one pullback.

        The pullback of the mean embedding at ``g`` is ``(1/N) ∇⟨g, Φ(θ_i)⟩``; under ``vmap`` it
        is a matrix product (for a network: ``O(n·d·N)``), never a per-(datum, particle) loop.

        Examples
        --------
        With ``Φ(θ) = θ`` the gradient is ``g`` at every particle:

        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
        ... )
        >>> grad = objective.first_variation_grad(jnp.array([2.0, 1.0]), jnp.zeros((3, 2)))
        >>> grad.shape, grad[0]
        ((3, 2), Array([2., 1.], dtype=float32))
        """
        _, pullback = self._linearize(particles)
        return pullback(g)

    def energy_and_drift(self, particles: ArrayTree) -> tuple[Array, ArrayTree]:
        """``F(μ_Θ)`` and the drift ``∇_θ δF/δμ(μ_Θ)(θ_i)`` at every particle.

        One forward pass of the features and one pullback: ``g = ∇R(E_μΦ)`` is formed explicitly,
        then pulled back through the mean embedding.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
        ... )
        >>> energy, drift = objective.energy_and_drift(jnp.array([[1.0, 0.0], [3.0, 2.0]]))
        >>> energy, drift[0]  # drift = g = E_μθ at every particle
        (Array(2.5, dtype=float32), Array([2., 1.], dtype=float32))
        """
        embedding, pullback = self._linearize(particles)
        energy = self.risk(embedding, self.data) + self.mean_penalty(particles)
        return energy, pullback(self.risk_gradient(embedding))

    def subsample(self, indices: Array) -> MeanFieldObjective:
        """The objective on ``data[indices]`` (every leaf indexed on its leading axis).

        Unbiased for ``F`` when the risk is an average over that axis, as for empirical risks.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> X, y = jnp.ones((6, 2)), jnp.zeros(6)
        >>> objective = MeanFieldObjective(
        ...     feature_map=lambda theta, data: data[0] @ theta,
        ...     risk=lambda z, data: 0.5 * jnp.mean((z - data[1]) ** 2),
        ...     data=(X, y),
        ... )
        >>> batch = objective.subsample(jnp.array([0, 2, 5]))
        >>> batch.data[0].shape, batch.features(jnp.ones((4, 2))).shape
        ((3, 2), (4, 3))
        """
        if self.data is None:
            raise ValueError("indices: this objective has no data to subsample.")
        return dataclasses.replace(self, data=jax.tree.map(lambda a: a[indices], self.data))

    def _linearize(self, particles: ArrayTree):
        n = num_particles(particles)
        embedding, vjp = jax.vjp(self.mean_embedding, particles)

        def pullback(g: Array) -> ArrayTree:
            (grad,) = vjp(g)
            drift = _scale(grad, n)
            if self.penalty is not None:
                drift = _tree_add(drift, jax.vmap(jax.grad(self.penalty))(particles))
            return drift

        return embedding, pullback


jax.tree_util.register_dataclass(
    MeanFieldObjective,
    data_fields=["data"],
    meta_fields=["feature_map", "risk", "penalty", "reference", "risk_conjugate"],
)


@dataclasses.dataclass(frozen=True)
class EnergyObjective:
    """Generic objective: any symmetric ``F_N(Θ) = F(μ_Θ)`` of the particle pytree.

    The mean-field drift is ``N · ∇_{θ_i} F_N(Θ)`` (``math.md`` §1). Only MFLD works with this
    form; PDA, variance reduction and the certificates need a :class:`MeanFieldObjective`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> objective = EnergyObjective(lambda p: 0.5 * jnp.sum(jnp.mean(p, axis=0) ** 2))
    >>> energy, drift = objective.energy_and_drift(jnp.ones((4, 2)))
    >>> drift[0]  # N · ∇F_N = E_μθ, not E_μθ / N
    Array([1., 1.], dtype=float32)
    """

    energy_fn: Callable[[ArrayTree], Array]
    reference: Reference = None

    def __post_init__(self):
        if not callable(self.energy_fn):
            raise TypeError(f"energy_fn: expected a callable, got {self.energy_fn!r}.")

    def energy(self, particles: ArrayTree) -> Array:
        """``F(μ_Θ) = F_N(Θ)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> EnergyObjective(lambda p: jnp.sum(jnp.mean(p, axis=0) ** 2)).energy(jnp.ones((4, 2)))
        Array(2., dtype=float32)
        """
        return self.energy_fn(particles)

    def energy_and_drift(self, particles: ArrayTree) -> tuple[Array, ArrayTree]:
        """``F(μ_Θ)`` and ``N · ∇_{θ_i} F_N(Θ)`` at every particle.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = EnergyObjective(lambda p: 0.5 * jnp.mean(p**2))
        >>> energy, drift = objective.energy_and_drift(jnp.ones((4, 2)))
        >>> drift.shape, drift[0]  # δF/δμ(θ) = ½‖θ‖²/2, whose gradient is θ/2
        ((4, 2), Array([0.5, 0.5], dtype=float32))
        """
        n = num_particles(particles)
        energy, grad = jax.value_and_grad(self.energy_fn)(particles)
        return energy, _scale(grad, n)


def as_objective(objective) -> MeanFieldObjective | EnergyObjective:
    """Accept a structured objective, an :class:`EnergyObjective`, or a plain ``energy_fn``.

    A plain callable becomes ``EnergyObjective(energy_fn)`` with no reference measure.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> type(as_objective(lambda p: jnp.sum(p))).__name__
    'EnergyObjective'
    """
    if isinstance(objective, MeanFieldObjective | EnergyObjective):
        return objective
    if hasattr(objective, "energy_and_drift") and hasattr(objective, "reference"):
        return objective
    if callable(objective):
        return EnergyObjective(objective)
    raise TypeError(
        "objective: expected a MeanFieldObjective, an EnergyObjective or a callable "
        f"energy_fn(particles) -> scalar, got {type(objective).__name__}."
    )
