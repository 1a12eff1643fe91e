"""Kozachenko–Leonenko nearest-neighbour entropy of a particle cloud (docs/theory/certificates.md).

``Ĥ = ψ(N) − ψ(k) + log V_p + (p/N) Σ_i log ε_{i,k}``, with ``ψ`` the digamma function,
``V_p = π^{p/2} / Γ(p/2 + 1)`` the volume of the unit ball of ``R^p`` and ``ε_{i,k}`` the distance
from particle ``i`` to its ``k``-th nearest other particle.

The neighbour search runs over row blocks (``jax.lax.map``) and, inside each, over column blocks
(``jax.lax.scan``) with a running top-``k``: memory is ``O(B·(B + k))`` for a block size ``B``, so
``N = 10^5`` particles never materialise an ``N × N`` matrix. Particles split over devices are
searched where they live: each device ranks all ``N`` particles for its own ``N/D``
(``jax.shard_map`` over the particle axis, the cloud all-gathered once).

References: Kozachenko, Leonenko, *Sample estimate of the entropy of a random vector*, Problems
Inform. Transmission 1987; Berrett, Samworth, Yuan, *Efficient multivariate entropy estimation via
k-nearest neighbour distances*, Ann. Statist. 2019.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln
from jax.sharding import NamedSharding, PartitionSpec

from mflangevin.objectives import num_particles
from mflangevin.sharding import constrain, particle_sharding
from mflangevin.types import Array, ArrayTree

__all__ = ["flatten_particles", "check_neighbors", "kth_neighbor_distance", "entropy"]


def flatten_particles(particles: ArrayTree) -> Array:
    """The particle pytree as one ``(N, p)`` matrix (leaves raveled and concatenated).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> flatten_particles({"w": jnp.ones((4, 3)), "b": jnp.zeros(4)}).shape
    (4, 4)
    """
    n = num_particles(particles, "particles")
    leaves = jax.tree.leaves(particles)
    dtype = jnp.result_type(*leaves)
    return jnp.concatenate([jnp.reshape(x, (n, -1)).astype(dtype) for x in leaves], axis=1)


def check_neighbors(n: int, num_neighbors: int, block_size: int) -> None:
    """``k``, the block size and ``N`` allow the k-nearest-neighbour search; raises otherwise."""
    if not isinstance(num_neighbors, int) or num_neighbors < 1:
        raise ValueError(f"num_neighbors: must be a positive integer, got {num_neighbors!r}.")
    if num_neighbors >= n:
        raise ValueError(
            f"num_neighbors: k = {num_neighbors} needs at least k + 1 particles, got N = {n}."
        )
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size: must be a positive integer, got {block_size!r}.")


def kth_neighbor_distance(
    particles: ArrayTree,
    num_neighbors: int = 1,
    block_size: int = 1024,
    *,
    sharding: NamedSharding | None = None,
) -> Array:
    """``ε_{i,k}``: the Euclidean distance from each particle to its ``k``-th nearest other one.

    Candidates are ranked by ``‖a‖² + ‖b‖² − 2a·b`` (one matrix product per block, after
    centring the cloud); the selected neighbours' distances are then recomputed exactly from
    coordinates, so round-off in the expansion cannot make a small distance zero or negative.

    On particles split over devices, each device searches the neighbours of its own particles
    among all ``N`` (gathered once: ``N·p`` numbers), so the ``O(N² p)`` work is split ``D``
    ways and the distances come back split like the particles.

    Parameters
    ----------
    particles
        Particle pytree, leading axis ``N``.
    num_neighbors
        ``k``, with ``1 ≤ k < N``.
    block_size
        Rows and columns handled at once; memory grows as ``block_size · (block_size + k)``.
    sharding
        How the particles are split (see :func:`mflangevin.sharding.particle_sharding`, which
        reads it off the particles by default); give it for particles traced on Auto mesh axes.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> kth_neighbor_distance(jnp.array([[0.0], [1.0], [3.0]]))
    Array([1., 1., 2.], dtype=float32)
    """
    sharding = _checked_sharding(particles, num_neighbors, block_size, sharding)
    return _kth_neighbor_distance(particles, num_neighbors, block_size, sharding)


def _checked_sharding(particles, num_neighbors, block_size, sharding):
    """The search's settings checked (before anything is compiled) and its sharding, read off
    the particles by default."""
    check_neighbors(num_particles(particles, "particles"), num_neighbors, block_size)
    return particle_sharding(particles) if sharding is None else sharding


# Each public function is one compiled program per settings and shapes (op by op, every new
# shape would compile each operation: some thirty programs for an entropy).
@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _kth_neighbor_distance(particles, num_neighbors, block_size, sharding):
    x = flatten_particles(particles)
    x = x - jnp.mean(x, axis=0)[None, :]
    if sharding is None:
        return _search(x, x, 0, num_neighbors, block_size)
    axis = sharding.spec[0]

    def local(rows: Array) -> Array:
        cols = jax.lax.all_gather(rows, axis, tiled=True)
        offset = jax.lax.axis_index(axis) * rows.shape[0]
        return _search(rows, cols, offset, num_neighbors, block_size)

    names = set(axis) if isinstance(axis, tuple) else {axis}
    spec = PartitionSpec(axis)
    x = constrain(x, NamedSharding(sharding.mesh, spec))
    return jax.shard_map(
        local, mesh=sharding.mesh, in_specs=spec, out_specs=spec, axis_names=names, check_vma=False
    )(x)


def _search(rows: Array, cols: Array, offset, k: int, block_size: int) -> Array:
    """The ``k``-th neighbour distance of each of ``rows`` among ``cols`` (row ``i`` of
    ``rows`` is column ``offset + i``, excluded), by blocks of rows and of columns."""
    n, p = cols.shape
    # A device's rows may be fewer than a block: their blocks are no larger than they are.
    b, b_rows = min(block_size, n), min(block_size, rows.shape[0])

    def blocked(x: Array, start, b: int) -> tuple[Array, Array, Array]:
        num_blocks = -(-x.shape[0] // b)
        padded = jnp.pad(x, ((0, num_blocks * b - x.shape[0]), (0, 0)))
        # int32 whatever jax_enable_x64 says, as the running top-k's carry and axis_index are
        index = start + jnp.arange(num_blocks * b, dtype=jnp.int32)
        return (
            jnp.reshape(padded, (num_blocks, b, p)),
            jnp.reshape(jnp.sum(padded**2, axis=1), (num_blocks, b)),
            jnp.reshape(index, (num_blocks, b)),
        )

    col_blocks = blocked(cols, 0, b)

    def row_block(rows_block):
        block, block_sq, block_index = rows_block

        def merge(best, cols_block):
            best_score, best_index = best
            others, others_sq, others_index = cols_block
            sq_dist = block_sq[:, None] + others_sq[None, :] - 2 * (block @ others.T)
            excluded = (others_index[None, :] == block_index[:, None]) | (
                others_index[None, :] >= n
            )
            score = jnp.where(excluded, -jnp.inf, -sq_dist)
            scores = jnp.concatenate([best_score, score], axis=1)
            indices = jnp.concatenate(
                [best_index, jnp.broadcast_to(others_index[None, :], (b_rows, b))], axis=1
            )
            top, position = jax.lax.top_k(scores, k)
            return (top, jnp.take_along_axis(indices, position, axis=1)), None

        start = (jnp.full((b_rows, k), -jnp.inf, cols.dtype), jnp.zeros((b_rows, k), jnp.int32))
        (_, neighbors), _ = jax.lax.scan(merge, start, col_blocks)
        offsets = jnp.take(cols, neighbors, axis=0, mode="clip") - block[:, None, :]
        return jnp.sqrt(jnp.max(jnp.sum(offsets**2, axis=-1), axis=1))

    distances = jax.lax.map(row_block, blocked(rows, offset, b_rows))
    return jnp.reshape(distances, (-1,))[: rows.shape[0]]


def entropy(
    particles: ArrayTree,
    num_neighbors: int = 1,
    block_size: int = 1024,
    *,
    sharding: NamedSharding | None = None,
) -> Array:
    """Kozachenko–Leonenko estimate of the differential entropy ``H(μ) = −E_μ log μ``.

    Consistent for any fixed ``k`` as ``N → ∞``. Its standard deviation is of the order of
    ``sqrt((Var log μ(θ) + ψ'(k)) / N)`` (``ψ'`` the trigamma function), but somewhat larger:
    for Gaussian clouds (``Var log μ = p/2``; 400 replicates each at ``p`` = 1, 2, 3, 5 and
    ``N`` = 256, 1024) the measured standard deviation was 1.01–1.17 times that formula at
    ``k = 1`` (1.08 on average) and 0.97–1.12 times at ``k = 5`` (1.05 on average), each
    ratio known to ±4 %. The ``ψ'(k)`` part does **not** vanish at fixed ``k``, even for
    ``p ≤ 3``: ``N · Var Ĥ − p/2`` measured 1.7–2.8 at ``k = 1`` (``ψ'(1) = 1.64``) and
    0.27–0.46 at ``k = 5`` for ``p ≤ 3`` (``ψ'(5) = 0.22``). For an error band, take
    ``1.2 · sqrt((Var log μ + ψ'(k)) / N)`` as one standard deviation. The bias grows with
    the dimension ``p`` (roughly like ``N^{−2/p}``), so in high dimension the estimate needs many
    more particles. Coincident particles give ``ε = 0`` and an entropy of ``−∞``.

    Parameters
    ----------
    particles
        Particle pytree, leading axis ``N``; ``p`` is the total size of one particle.
    num_neighbors
        ``k``, with ``1 ≤ k < N``. Larger ``k`` lowers the variance and raises the bias.
    block_size, sharding
        See :func:`kth_neighbor_distance`.

    Examples
    --------
    The entropy of ``N(0, I_2)`` is ``1 + log 2π ≈ 2.84``:

    >>> import jax
    >>> theta = jax.random.normal(jax.random.key(0), (4000, 2))
    >>> abs(float(entropy(theta, num_neighbors=3)) - 2.84) < 0.1
    True
    """
    sharding = _checked_sharding(particles, num_neighbors, block_size, sharding)
    return _entropy(particles, num_neighbors, block_size, sharding)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _entropy(particles, num_neighbors, block_size, sharding):
    distances = _kth_neighbor_distance(particles, num_neighbors, block_size, sharding)
    n = distances.shape[0]
    p = flatten_particles(particles).shape[1]
    dtype = distances.dtype
    half_p = jnp.asarray(p / 2, dtype)
    log_unit_ball = half_p * jnp.log(jnp.asarray(jnp.pi, dtype)) - gammaln(half_p + 1)
    return (
        digamma(jnp.asarray(n, dtype))
        - digamma(jnp.asarray(num_neighbors, dtype))
        + log_unit_ball
        + p * jnp.mean(jnp.log(distances))
    )
