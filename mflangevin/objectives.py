"""Mean-field objectives ``F(μ)`` over particle measures (docs/theory/mfld.md).

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
import math
import operator
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from mflangevin.references import DensityReference, GaussianReference, check_reference
from mflangevin.types import Array, ArrayTree

__all__ = [
    "Objective",
    "StructuredObjective",
    "MeanFieldObjective",
    "EnergyObjective",
    "as_objective",
    "num_particles",
    "num_samples",
    "BLOCK_ELEMENTS",
    "BLOCK_ROWS",
    "BLOCK_MAX_ELEMENTS",
    "L2Penalty",
]

Reference = GaussianReference | DensityReference | None

BLOCK_ELEMENTS = 1 << 20
"""Default target for the elements of one block of features (4 MiB in float32).

A finite-sum :class:`MeanFieldObjective` without ``chunk_size`` walks its data in blocks of

``B = min(max(BLOCK_ELEMENTS // (N · k), lo), hi, max(1, BLOCK_MAX_ELEMENTS // (N · k)))``

samples, ``(lo, hi) =`` :data:`BLOCK_ROWS`, for ``N`` particles and ``k`` feature entries per
sample: blocks of features small enough to stay in the caches, with enough rows that the block's
matrix products are not thin, and never more than :data:`BLOCK_MAX_ELEMENTS` features, so that a
step's working set is a few such blocks whatever ``n`` is. When the whole ``(N, n, k)`` array fits
in one block (``n ≤ B``) there is one block and no loop. On devices, ``N`` and ``n`` are each
device's share, where their split is known (see :meth:`MeanFieldObjective.block_size`).
Measured with ``benchmarks/block_size.py`` on a 2-core CPU (see the scaling guide).
"""

BLOCK_ROWS = (128, 512)
"""The fewest and the most samples of a default block (see :data:`BLOCK_ELEMENTS`)."""

BLOCK_MAX_ELEMENTS = 1 << 23
"""The most elements of a default block of features (32 MiB in float32), whatever its rows."""


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


@runtime_checkable
class Objective(Protocol):
    """What every kernel needs of an objective: ``F(μ_Θ)``, the drift at every particle, and the
    reference measure ν (``None``: Lebesgue, entropy only).

    :class:`MeanFieldObjective` and :class:`EnergyObjective` implement it, and so does the NumPyro
    model objective of :mod:`mflangevin.numpyro`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> isinstance(EnergyObjective(lambda p: jnp.sum(p**2)), Objective)
    True
    """

    reference: Any

    def energy(self, particles: ArrayTree) -> Array: ...

    def energy_and_drift(self, particles: ArrayTree) -> tuple[Array, ArrayTree]: ...


@runtime_checkable
class StructuredObjective(Objective, Protocol):
    """An objective ``F(μ) = R(E_μΦ) + E_μ r`` that exposes its structure: the first variation
    ``⟨g, Φ(θ)⟩ + r(θ)`` at arbitrary θ, which PDA, variance reduction and the certificates need.

    ``isinstance(objective, StructuredObjective)`` is the library's one test of structure.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> quadratic = MeanFieldObjective(lambda theta, _: theta, lambda z, _: jnp.sum(z**2))
    >>> isinstance(quadratic, StructuredObjective)
    True
    >>> isinstance(EnergyObjective(lambda p: jnp.sum(p**2)), StructuredObjective)
    False
    """

    data: Any
    penalty: Any
    risk_conjugate: Any

    def features(self, particles: ArrayTree) -> Array: ...

    def mean_embedding(self, particles: ArrayTree) -> Array: ...

    def mean_penalty(self, particles: ArrayTree) -> Array: ...

    def risk(self, embedding: Array, data: Any) -> Array: ...

    def risk_gradient(self, embedding: Array) -> Array: ...

    def first_variation(self, g: Array, theta: ArrayTree) -> Array: ...

    def first_variation_grad(self, g: Array, particles: ArrayTree) -> ArrayTree: ...

    def pairing(self, g: Array, particles: ArrayTree) -> Array: ...

    def subsample(self, indices: Array) -> StructuredObjective: ...


def num_samples(data: Any, name: str = "objective") -> int:
    """``n``, the common leading axis of every leaf of ``data``; 1 for ``data=None``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> num_samples((jnp.ones((7, 3)), jnp.zeros(7)))
    7
    """
    leaves = jax.tree.leaves(data)
    if not leaves:
        return 1
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"{name}: every data leaf needs the same leading sample axis, got leading "
            f"sizes {sorted(sizes, key=str)}."
        )
    (n,) = sizes
    if n < 1:
        raise ValueError(f"{name}: the data have no samples (n = 0); at least one is needed.")
    return int(n)


def _scale(tree: ArrayTree, factor: float | Array) -> ArrayTree:
    return jax.tree.map(lambda x: factor * x, tree)


def _tree_add(a: ArrayTree, b: ArrayTree) -> ArrayTree:
    return jax.tree.map(jnp.add, a, b)


@dataclasses.dataclass(frozen=True)
class L2Penalty:
    """The per-particle penalty ``r(θ) = weight · ‖θ‖²`` (summed over all leaves).

    :meth:`MeanFieldNetwork.objective <mflangevin.models.MeanFieldNetwork.objective>` uses it
    for ``l2 > 0``; the certificates use its Gaussian form.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> L2Penalty(0.5)({"w": jnp.array([1.0, 2.0]), "b": jnp.array(1.0)})
    Array(3., dtype=float32)
    """

    weight: float

    def __call__(self, theta: ArrayTree) -> Array:
        return self.weight * sum(jnp.sum(x**2) for x in jax.tree.leaves(theta))

    def as_gaussian(self, temperature) -> GaussianReference:
        """The Gaussian ``∝ exp(−r/λ)``: ``N(0, λ / (2 weight) I)``.

        Examples
        --------
        >>> L2Penalty(0.5).as_gaussian(1.0).scale
        1.0
        """
        return GaussianReference((temperature / (2 * self.weight)) ** 0.5)


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
        A pytree passed to ``feature_map`` and ``risk``.
    finite_sum
        Declares an empirical risk: every leaf of ``data`` and the features ``Φ(θ, data)`` have
        the sample axis ``n`` first, and ``R(z, data) = (1/n) Σ_j ℓ(z_j, data_j)`` is an average
        over it. Then :meth:`subsample` is the unbiased minibatch objective, the minibatch drift
        estimators apply, and the energy, the drift and the first variation are computed over
        blocks of samples in one pass, in bounded memory (see ``chunk_size``).
        :meth:`MeanFieldNetwork.objective <mflangevin.models.MeanFieldNetwork.objective>` sets it.
    chunk_size
        Samples per block of a finite-sum objective (of each device's samples, where the data
        are split over devices: see :meth:`block_size`); ``None`` (default) chooses
        about ``BLOCK_ELEMENTS // (N · k)`` for ``N`` particles and ``k`` feature entries per
        sample, between 128 and 512 samples (see :data:`BLOCK_ELEMENTS`). Results equal the
        unblocked computation up to float round-off. Ignored unless ``finite_sum``.
    check_data
        Optional ``check_data(data, name) -> in_domain``: the domain of the risk (e.g. finite
        inputs and labels ±1 for the logistic loss). On concrete data it raises ``ValueError``
        naming ``name`` when a sample lies outside; it returns the same test as a boolean scalar,
        so that the data path can refuse and flag a traced batch outside it (streamed
        minibatches are checked with it).

    Notes
    -----
    The objective is a pytree whose only leaves are ``data``: it can be passed through
    ``jax.jit`` and ``jax.vmap`` as an argument. Its methods are compiled: called outside
    ``jax.jit``, each is one program per objective and shapes rather than one per operation
    (``benchmarks/compiled_calls.py``: a network's ``energy_and_drift`` about 4 times faster at
    new shapes and hundreds of times faster per later call, on a 2-core CPU).

    Examples
    --------
    The quadratic objective ``½‖E_μθ − m‖² + λ' E_μ‖θ‖²`` of the MFLD theory page:

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
    finite_sum: bool = False
    chunk_size: int | None = None
    check_data: Callable[[Any, str], Array] | None = None

    def __post_init__(self):
        for name in ("feature_map", "risk"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name}: expected a callable, got {getattr(self, name)!r}.")
        check_reference(self.reference)
        for name in ("penalty", "risk_conjugate", "check_data"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name}: expected a callable or None, got {value!r}.")
        if not isinstance(self.finite_sum, bool):
            raise TypeError(f"finite_sum: expected True or False, got {self.finite_sum!r}.")
        size = self.chunk_size
        if size is not None:  # any integer type (np.int64 too), kept as an int
            if isinstance(size, bool) or not hasattr(size, "__index__") or operator.index(size) < 1:
                raise ValueError(f"chunk_size: expected a positive integer or None, got {size!r}.")
            object.__setattr__(self, "chunk_size", operator.index(size))

    @jax.jit
    def features(self, particles: ArrayTree) -> Array:
        """``Φ(θ_i)`` for every particle, shape ``(N, *feature_shape)`` (never blocked).

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

    def block_size(self, particles: ArrayTree) -> int:
        """Samples per block for these particles: ``n`` when the objective is not blocked.

        Where the data's sample axis is split over ``D`` devices and the split is known (concrete
        arrays placed with a ``NamedSharding``, or Explicit mesh axes under ``jit``), a block is
        this many samples of each device's ``n / D``, taken at the same offset on every device,
        so that no sample leaves its device; the default size then counts each device's share of
        the particles and of the samples.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     feature_map=lambda theta, X: X @ theta,
        ...     risk=lambda z, _: 0.5 * jnp.mean(z**2),
        ...     data=jnp.ones((10, 2)),
        ...     finite_sum=True,
        ...     chunk_size=4,
        ... )
        >>> objective.block_size(jnp.ones((3, 2)))
        4
        """
        n = num_samples(self.data)
        if not self.finite_sum:
            return n
        local = n // self._sample_shards()
        if self.chunk_size is not None:
            return min(self.chunk_size, local)
        theta = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x)[1:], x.dtype), particles)
        shape = jax.eval_shape(self.feature_map, theta, self.data).shape
        num = num_particles(particles)
        per_device = num // _num_shards(particles, num) * math.prod(shape[1:])
        lo, hi = BLOCK_ROWS
        rows = min(max(BLOCK_ELEMENTS // per_device, lo), hi, BLOCK_MAX_ELEMENTS // per_device)
        return max(1, min(local, rows))

    def _fold_blocks(self, particles: ArrayTree, fn: Callable, init):
        """``fn(block_objective, rows, carry)`` over the sample blocks, in order (``rows`` a
        :class:`_Rows`, the block's samples of any array with the sample axis first; ``None``
        when the one block is the whole objective).

        The full blocks run in a ``fori_loop`` (one trace); a last, shorter block runs after it.
        """
        n, size = num_samples(self.data), self.block_size(particles)
        shards = self._sample_shards()
        local = n // shards
        if size >= local:
            return fn(self, None, init)
        num_full, rest = divmod(local, size)

        def step(rows, carry):
            block = dataclasses.replace(self, data=jax.tree.map(rows.take, self.data))
            return fn(block, rows, carry)

        carry = jax.lax.fori_loop(
            0, num_full, lambda i, c: step(_Rows(shards, i * size, size), c), init
        )
        if rest:
            carry = step(_Rows(shards, num_full * size, rest), carry)
        return carry

    @jax.jit
    def mean_embedding(self, particles: ArrayTree) -> Array:
        """``E_μ Φ = (1/N) Σ_i Φ(θ_i)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(lambda theta, _: theta, lambda z, _: jnp.sum(z))
        >>> objective.mean_embedding(jnp.array([[1.0, 0.0], [3.0, 2.0]]))
        Array([2., 1.], dtype=float32)
        """

        def fn(block, rows, z):
            z_block = jnp.mean(block.features(particles), axis=0)
            return z_block if z is None else rows.put(z, z_block)

        if not self._is_blocked(particles):
            return fn(self, None, None)
        shape = jax.eval_shape(lambda p: jnp.mean(self.features(p), axis=0), particles)
        return self._fold_blocks(particles, fn, jnp.zeros(shape.shape, shape.dtype))

    @jax.jit
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

    @jax.jit
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
        n = num_samples(self.data)

        def fn(block, rows, risk):
            z = jnp.mean(block.features(particles), axis=0)
            return risk + _weight(rows, n) * block.risk(z, block.data)

        risk = self._fold_blocks(particles, fn, self._zero(particles))
        return risk + self.mean_penalty(particles)

    @jax.jit
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

    @jax.jit
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

    @jax.jit
    def pairing(self, g: Array, particles: ArrayTree) -> Array:
        """``⟨g, Φ(θ_i)⟩`` at every particle, shape ``(N,)``, over blocks of samples.

        The first variation without the penalty, for many particles at once (the dual bound
        evaluates it at draws of ν).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> objective = MeanFieldObjective(
        ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
        ... )
        >>> objective.pairing(jnp.array([2.0, 1.0]), jnp.array([[1.0, 3.0], [0.0, 1.0]]))
        Array([5., 1.], dtype=float32)
        """

        def fn(block, rows, total):
            features = block.features(particles)
            axes = tuple(range(1, features.ndim))
            g_block = g if rows is None else rows.take(g)
            return total + jnp.sum(g_block[None] * features, axis=axes)

        n = num_particles(particles)
        return self._fold_blocks(particles, fn, jnp.zeros((n,), jnp.result_type(g)))

    @jax.jit
    def first_variation_grad(self, g: Array, particles: ArrayTree) -> ArrayTree:
        """``∇_θ δF/δμ(θ_i)`` at every particle for a given ``g``, as one pullback.

        The pullback of the mean embedding at ``g`` is ``(1/N) ∇⟨g, Φ(θ_i)⟩``; under ``vmap`` it
        is a matrix product (for a network: ``O(n·d·N)``), never a per-(datum, particle) loop.
        A finite-sum objective pulls back each block of samples in turn.

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
        n = num_particles(particles)

        def fn(block, rows, drift):
            g_block = g if rows is None else rows.take(g)
            _, pullback = jax.vjp(block._block_embedding, particles)
            (grad,) = pullback(n * g_block)
            return grad if drift is None else _tree_add(drift, grad)

        if not self._is_blocked(particles):
            drift = fn(self, None, None)
        else:
            drift = self._fold_blocks(particles, fn, jax.tree.map(jnp.zeros_like, particles))
        return self._add_penalty_grad(drift, particles)

    @jax.jit
    def energy_and_drift(self, particles: ArrayTree) -> tuple[Array, ArrayTree]:
        """``F(μ_Θ)`` and the drift ``∇_θ δF/δμ(μ_Θ)(θ_i)`` at every particle.

        One forward pass of the features and one pullback: ``g = ∇R(E_μΦ)`` is formed explicitly,
        then pulled back through the mean embedding. A finite-sum objective does both block by
        block: each block's ``g`` only needs that block's embedding, so the working set is one
        block, never the ``(N, n)`` features.

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
        n, num = num_samples(self.data), num_particles(particles)

        def fn(block, rows, carry):
            risk, drift = carry
            weight = _weight(rows, n)
            z, pullback = jax.vjp(block._block_embedding, particles)
            block_risk, g = jax.value_and_grad(block.risk)(z, block.data)
            (grad,) = pullback((weight * num) * g)
            drift = grad if drift is None else _tree_add(drift, grad)
            return risk + weight * block_risk, drift

        if not self._is_blocked(particles):
            risk, drift = fn(self, None, (self._zero(particles), None))
        else:
            zeros = jax.tree.map(jnp.zeros_like, particles)
            risk, drift = self._fold_blocks(particles, fn, (self._zero(particles), zeros))
        energy = risk + self.mean_penalty(particles)
        return energy, self._add_penalty_grad(drift, particles)

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
        return dataclasses.replace(self, data=jax.tree.map(lambda a: _rows(a, indices), self.data))

    def _is_blocked(self, particles: ArrayTree) -> bool:
        n = num_samples(self.data)
        return self.block_size(particles) < n // self._sample_shards()

    def _sample_shards(self) -> int:
        return _num_shards(self.data, num_samples(self.data))

    def _block_embedding(self, particles: ArrayTree) -> Array:
        return jnp.mean(self.features(particles), axis=0)

    def _zero(self, particles: ArrayTree) -> Array:
        return jnp.zeros((), jnp.result_type(*jax.tree.leaves(particles)))

    def _add_penalty_grad(self, drift: ArrayTree, particles: ArrayTree) -> ArrayTree:
        if self.penalty is None:
            return drift
        return _tree_add(drift, jax.vmap(jax.grad(self.penalty))(particles))


@dataclasses.dataclass(frozen=True)
class _Rows:
    """The samples ``start + [0, length)`` of each of ``shards`` equal, consecutive parts of
    the sample axis: with the data split over ``shards`` devices, a block of every device's own
    samples (``shards = 1``: the rows ``start + [0, length)``)."""

    shards: int
    start: Any
    length: int

    @property
    def size(self) -> int:
        return self.shards * self.length

    def take(self, a: Array) -> Array:
        """The block's rows of ``a`` (sample axis first), in shard order."""
        parts = _split(a, self.shards)
        block = jax.lax.dynamic_slice_in_dim(parts, self.start, self.length, axis=1)
        return block.reshape(self.size, *a.shape[1:])

    def put(self, whole: Array, block: Array) -> Array:
        """``whole`` with the block's rows replaced by ``block``."""
        parts = _split(whole, self.shards)
        block = _laid_out_like(block.reshape(self.shards, self.length, *block.shape[1:]), parts)
        parts = jax.lax.dynamic_update_slice_in_dim(parts, block, self.start, axis=1)
        return parts.reshape(whole.shape)


def _weight(rows: _Rows | None, n: int) -> float:
    """The block's share of the samples."""
    return 1.0 if rows is None else rows.size / n


def _split(a: Array, shards: int) -> Array:
    return a.reshape(shards, a.shape[0] // shards, *a.shape[1:])


def _num_shards(tree: ArrayTree, size: int) -> int:
    """Devices that split the leading axis of the leaves of ``tree`` (of length ``size``) where
    the split is known: concrete arrays with a ``NamedSharding``, or Explicit mesh axes in a
    traced value's type. 1 when it is not (Auto axes under ``jit``) or does not divide ``size``."""
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(jax.typeof(leaf), "sharding", None)
        if not isinstance(leaf, jax.core.Tracer) and isinstance(leaf, jax.Array):
            sharding = leaf.sharding
        spec = getattr(sharding, "spec", ())
        if isinstance(sharding, jax.sharding.NamedSharding) and spec and spec[0] is not None:
            names = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
            shards = math.prod(sharding.mesh.shape[name] for name in names)
            return shards if size % shards == 0 else 1
    return 1


def _laid_out_like(x: Array, like: Array) -> Array:
    """``x`` with the layout of ``like`` where layouts are part of the types (Explicit mesh axes:
    a block of the mean embedding, split like the data, written into the whole vector)."""
    sharding = jax.typeof(like).sharding
    if jax.sharding.AxisType.Explicit not in getattr(sharding.mesh, "axis_types", ()):
        return x
    return jax.sharding.reshard(x, sharding)


def _rows(a: Array, indices: Array) -> Array:
    """``a[indices]``; rows of data split over Explicit mesh axes come back replicated (a
    minibatch is small: one all-reduce of its rows)."""
    sharding = jax.typeof(a).sharding
    explicit = jax.sharding.AxisType.Explicit in getattr(sharding.mesh, "axis_types", ())
    if explicit and any(axis is not None for axis in sharding.spec):
        return a.at[indices].get(
            out_sharding=jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        )
    return a[indices]


jax.tree_util.register_dataclass(
    MeanFieldObjective,
    data_fields=["data"],
    meta_fields=[
        "feature_map",
        "risk",
        "penalty",
        "reference",
        "risk_conjugate",
        "finite_sum",
        "chunk_size",
        "check_data",
    ],
)


@dataclasses.dataclass(frozen=True)
class EnergyObjective:
    """Generic objective: any symmetric ``F_N(Θ) = F(μ_Θ)`` of the particle pytree.

    The mean-field drift is ``N · ∇_{θ_i} F_N(Θ)`` (docs/theory/mfld.md#two-ways-to-give-f).
    Only MFLD works with this form; PDA, variance reduction and the certificates need a
    :class:`MeanFieldObjective`.

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
        check_reference(self.reference)

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


jax.tree_util.register_dataclass(
    EnergyObjective, data_fields=[], meta_fields=["energy_fn", "reference"]
)


def as_objective(objective) -> Objective:
    """Accept a structured objective, an :class:`EnergyObjective`, or a plain ``energy_fn``.

    A plain callable becomes ``EnergyObjective(energy_fn)`` with no reference measure.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> type(as_objective(lambda p: jnp.sum(p))).__name__
    'EnergyObjective'
    """
    if isinstance(objective, Objective):
        return objective
    if callable(objective):
        return EnergyObjective(objective)
    raise TypeError(
        "objective: expected a MeanFieldObjective, an EnergyObjective or a callable "
        f"energy_fn(particles) -> scalar, got {type(objective).__name__}."
    )
