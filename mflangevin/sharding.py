"""Particles and data over a device mesh, with JAX's own SPMD (docs/guides/scaling-out.md).

A :func:`make_mesh` mesh has two axes: ``"particles"`` splits the ``N`` particles (the leading
axis of every leaf of the particle pytree) and ``"data"`` splits the ``n`` samples (the leading
axis of every leaf of an empirical risk's data). :func:`shard_particles` and :func:`shard_data`
place a pytree on it; ``jax.device_put(tree, NamedSharding(mesh, P("particles")))`` does the same
for arrays of one process. The kernels and certificates are then the same code as on one device:
``jax.jit`` partitions them, and the mean embedding ``E_μΦ`` is an all-reduce over the particle
axis (of an ``n``-vector), the drift an all-reduce over the data axis (of the ``(N, p)`` gradient).

:func:`particle_sharding` reads the layout of a particle pytree back, so that the
certificates can split their own work (the nearest-neighbour search, the dual's draws) over the
same devices.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from mflangevin.objectives import num_particles, num_samples
from mflangevin.types import ArrayTree

__all__ = [
    "PARTICLES",
    "DATA",
    "make_mesh",
    "shard_particles",
    "shard_data",
    "particle_sharding",
    "replicate_like_particles",
    "place_like_samples",
    "constrain",
]

PARTICLES = "particles"
"""Name of the mesh axis that splits the particles."""
DATA = "data"
"""Name of the mesh axis that splits the samples of the data."""


def _check_shards(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}.")
    return value


def make_mesh(
    particle_shards: int | None = None,
    data_shards: int = 1,
    *,
    devices=None,
    explicit: bool = True,
) -> Mesh:
    """A ``(particles, data)`` mesh of ``particle_shards × data_shards`` devices.

    Parameters
    ----------
    particle_shards
        Devices along the particle axis; ``None`` (default): all devices not used by the data
        axis (``len(devices) // data_shards``).
    data_shards
        Devices along the data axis (default 1: the data are replicated).
    devices
        The devices to use, in order (default ``jax.devices()``: every device of every process).
    explicit
        ``True`` (default, as ``jax.make_mesh``): Explicit axes, whose shardings are part of the
        arrays' types; ``False``: Auto axes, left to the compiler's propagation.

    Examples
    --------
    >>> mesh = make_mesh(particle_shards=1)
    >>> dict(mesh.shape)
    {'particles': 1, 'data': 1}
    >>> make_mesh(particle_shards=0)
    Traceback (most recent call last):
    ...
    ValueError: particle_shards: expected a positive integer, got 0.
    """
    devices = list(jax.devices() if devices is None else devices)
    data_shards = _check_shards("data_shards", data_shards)
    if particle_shards is None:
        particle_shards = max(1, len(devices) // data_shards)
    particle_shards = _check_shards("particle_shards", particle_shards)
    if not isinstance(explicit, bool):
        raise TypeError(f"explicit: expected True or False, got {explicit!r}.")
    size = particle_shards * data_shards
    if size > len(devices):
        raise ValueError(
            f"particle_shards: {particle_shards} × data_shards {data_shards} = {size} devices, "
            f"but only {len(devices)} are available."
        )
    kind = AxisType.Explicit if explicit else AxisType.Auto
    return jax.make_mesh(
        (particle_shards, data_shards), (PARTICLES, DATA), (kind, kind), devices=devices[:size]
    )


def _check_mesh(mesh, axis: str) -> int:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if axis not in mesh.shape:
        raise ValueError(f"mesh: has no {axis!r} axis (axes {tuple(mesh.axis_names)}).")
    return mesh.shape[axis]


def _place(tree, mesh: Mesh, axis: str, process_local: bool):
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    if not process_local:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), tree)


def _check_split(name: str, size: int, shards: int, axis: str, process_local: bool) -> None:
    if process_local:
        shards //= jax.process_count()
    if size % max(shards, 1):
        raise ValueError(
            f"{name}: {size} rows cannot be split evenly over the {shards} devices of the "
            f"mesh's {axis!r} axis{' in this process' if process_local else ''}."
        )


def shard_particles(particles: ArrayTree, mesh: Mesh, *, process_local: bool = False) -> ArrayTree:
    """The particle pytree split over the ``"particles"`` axis of ``mesh`` (replicated over the
    others).

    Parameters
    ----------
    particles
        Particle pytree, every leaf with leading axis ``N`` (divisible by the axis size).
    mesh
        A mesh with a ``"particles"`` axis, e.g. from :func:`make_mesh`.
    process_local
        ``False`` (default): ``particles`` are all ``N`` particles. ``True`` (several processes,
        ``jax.distributed``): they are this process's consecutive share, and the result is the
        global array assembled from every process's share.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> mesh = make_mesh()
    >>> placed = shard_particles({"w": jnp.zeros((8, 3)), "b": jnp.zeros(8)}, mesh)
    >>> placed["w"].sharding.spec
    P('particles',)
    """
    shards = _check_mesh(mesh, PARTICLES)
    _check_split(
        "particles", num_particles(particles, "particles"), shards, PARTICLES, process_local
    )
    return _place(particles, mesh, PARTICLES, process_local)


def shard_data(data: Any, mesh: Mesh, *, process_local: bool = False) -> Any:
    """The data split over the ``"data"`` axis of ``mesh`` along their sample axis (the leading
    axis of every leaf), replicated over the particle axis.

    Give the result to the objective (e.g. ``MeanFieldNetwork.objective(X, y)``) and the
    algorithm keeps it where it is. ``process_local`` as in :func:`shard_particles`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> X, y = shard_data((jnp.ones((10, 3)), jnp.zeros(10)), make_mesh())
    >>> y.sharding.spec
    P('data',)
    """
    shards = _check_mesh(mesh, DATA)
    _check_split("data", num_samples(data, "data"), shards, DATA, process_local)
    return _place(data, mesh, DATA, process_local)


def particle_sharding(particles: ArrayTree) -> NamedSharding | None:
    """The ``NamedSharding`` that splits the particles' leading axis, or ``None``.

    Read off the first leaf: a concrete array on a mesh, or a traced one whose mesh axes are
    Explicit (its sharding is in its type). ``None`` when the particles are on one device, not
    split (replicated, or an Auto axis of size 1), or traced on Auto axes, where the compiler
    decides the layout.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> particle_sharding(jnp.zeros((8, 2))) is None
    True
    >>> mesh = make_mesh()
    >>> particles = shard_particles(jnp.zeros((8, 2)), mesh)
    >>> particle_sharding(particles).spec  # Explicit axes: split, even over one device
    P('particles',)
    >>> auto = shard_particles(jnp.zeros((8, 2)), make_mesh(1, explicit=False))
    >>> particle_sharding(auto) is None  # an Auto axis of size 1 splits nothing
    True
    """
    leaves = jax.tree.leaves(particles)
    if not leaves:
        return None
    leaf = leaves[0]
    if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
        sharding = leaf.sharding
    else:
        sharding = jax.typeof(leaf).sharding
    if not isinstance(sharding, NamedSharding) or not sharding.spec or sharding.spec[0] is None:
        return None
    axes = sharding.spec[0] if isinstance(sharding.spec[0], tuple) else (sharding.spec[0],)
    mesh = sharding.mesh
    explicit = any(mesh.axis_types[mesh.axis_names.index(a)] == AxisType.Explicit for a in axes)
    # An Explicit axis of size 1 still types the arrays as split: kept, so that the certificates
    # take their split path (one shard) rather than mix split and unsplit operands.
    if math.prod(mesh.shape[a] for a in axes) == 1 and not explicit:
        return None
    return NamedSharding(sharding.mesh, PartitionSpec(sharding.spec[0]))


def _local_named_sharding(tree: Any) -> NamedSharding | None:
    """The ``NamedSharding`` of the first leaf of ``tree``, if it is a concrete array of this
    process laid out on one."""
    leaves = jax.tree.leaves(tree)
    leaf = leaves[0] if leaves else None
    if (
        isinstance(leaf, jax.Array)
        and not isinstance(leaf, jax.core.Tracer)
        and isinstance(leaf.sharding, NamedSharding)
        and leaf.is_fully_addressable
    ):
        return leaf.sharding
    return None


def replicate_like_particles(tree: Any, particles: ArrayTree) -> Any:
    """``tree`` replicated over the mesh that holds ``particles`` (concrete arrays of this
    process on a ``NamedSharding``), as a compiled step returns an algorithm's scalars; unchanged
    otherwise. An initial state laid out this way gives the step the same input layout on its
    first call as on every later one: one compilation, not two.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> mesh = make_mesh()
    >>> particles = shard_particles(jnp.ones(8), mesh)
    >>> count = replicate_like_particles(jnp.zeros((), jnp.int32), particles)
    >>> count.sharding.spec, count.sharding.mesh == mesh
    (P(), True)
    """
    placed = _local_named_sharding(particles)
    if placed is None:
        return tree
    return jax.device_put(tree, NamedSharding(placed.mesh, PartitionSpec()))


def place_like_samples(array: jax.Array, data: ArrayTree, particles: ArrayTree) -> jax.Array:
    """``array``, one entry per sample along its leading axis, laid out as a compiled step
    returns such a quantity (a dual average, say): split like the sample axis of ``data``
    (:func:`particle_sharding` of the data) when the data are concrete arrays of this process on
    a ``NamedSharding``, replicated over their mesh when that axis splits nothing (an Auto axis
    of size 1), and replicated over the particles' mesh otherwise
    (:func:`replicate_like_particles`). An initial state laid out this way compiles its step
    once, not twice.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> mesh = make_mesh(1, len(jax.devices()))  # the samples split over every device
    >>> X = shard_data(jnp.ones((8, 2)), mesh)
    >>> place_like_samples(jnp.zeros(8), X, shard_particles(jnp.ones(4), mesh)).sharding.spec
    P('data',)
    """
    placed = _local_named_sharding(data)
    if placed is None:
        return replicate_like_particles(array, particles)
    split = particle_sharding(data)
    return jax.device_put(array, split or NamedSharding(placed.mesh, PartitionSpec()))


def constrain(tree, sharding: NamedSharding):
    """``tree`` laid out as ``sharding`` inside a program: ``jax.sharding.reshard`` on Explicit
    mesh axes, ``jax.lax.with_sharding_constraint`` on Auto ones.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> mesh = make_mesh(explicit=False)
    >>> replicated = NamedSharding(mesh, PartitionSpec())
    >>> jax.jit(lambda x: constrain(x, replicated))(jnp.ones(4)).sharding.is_fully_replicated
    True
    """
    if AxisType.Explicit in sharding.mesh.axis_types:
        return jax.sharding.reshard(tree, sharding)
    return jax.lax.with_sharding_constraint(tree, sharding)
