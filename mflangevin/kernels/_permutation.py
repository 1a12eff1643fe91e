"""Sampling without replacement in ``O(B)``: slices of a keyed pseudo-random permutation.

The law. For a fixed key, :func:`permuted_indices` evaluates a map ``π_key`` from positions to
indices that is a bijection of ``[0, n)``. The slices ``[kB, (k + 1)B)`` of one permutation are
disjoint, so walking it in slices of ``B`` positions (``start = 0, B, 2B, …``) draws minibatches
without replacement within an epoch: every index appears at most once, and exactly once when the
slices cover ``[0, n)``. Over keys, the index at any fixed position has the uniform law on
``[0, n)``, up to the pseudo-randomness of the round function. The joint law of the whole
permutation is not exactly uniform on the ``n!`` permutations (on a domain of ``2^{2h} ≥ 16``
points every Feistel round is an even permutation), which sampling without replacement does not
need.

The construction. ``π_key`` is a balanced Feistel network on the smallest domain ``[0, 2^{2h})``
with ``2^{2h} ≥ n`` and ``h ≥ 1``: a value ``x`` is split into halves ``(L, R)`` of ``h`` bits each
and every round maps ``(L, R) ↦ (R, L ⊕ F(R ⊕ k_i))``, where ``F`` is the ``lowbias32`` integer
finaliser (xor-shift, multiply, xor-shift, multiply, xor-shift) truncated to ``h`` bits and the
``k_i`` are 12 round keys drawn from the key with :func:`jax.random.bits`. Each round is a
bijection of the domain whatever ``F`` is, so the network is one too. Twelve rounds rather than the
usual six: on the smallest domains (``h = 2``, ``5 ≤ n ≤ 16``) six or eight rounds leave a bias
toward fixed points that a million keys detect, twelve do not. Cycle walking then restricts the
network to ``[0, n)``: a value ``≥ n`` is mapped again until it lands below ``n``. The orbit of a
point of ``[0, n)`` under a bijection of a finite set comes back to ``[0, n)``, and this first
return map is a bijection of ``[0, n)``. All the arithmetic is ``uint32``.

The cost. Nothing of length ``n`` is built: the work depends on ``B`` only. One pass applies the
network to the ``B`` slots (a dozen ``uint32`` operations per slot and round) and the
``jax.lax.while_loop`` of cycle walking repeats it, updating only the slots still out of range,
until none is. The domain holds at most ``4n`` values, so a slot stays out of range after a pass
with probability at most ``3/4``: the number of passes is geometric for one slot and ``O(log B)``
for all ``B`` of them, whatever ``n`` is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin._checks import check_count

__all__ = ["permuted_indices"]

_NUM_ROUNDS = 12

# The lowbias32 finaliser (xor-shift 16, multiply, xor-shift 15, multiply, xor-shift 16).
_MUL_1 = np.uint32(0x7FEB352D)
_MUL_2 = np.uint32(0x846CA68B)


def _mix(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash with good avalanche: ``lowbias32``."""
    x = x ^ (x >> np.uint32(16))
    x = x * _MUL_1
    x = x ^ (x >> np.uint32(15))
    x = x * _MUL_2
    return x ^ (x >> np.uint32(16))


def _half_width(num_samples: int) -> int:
    """The smallest ``h ≥ 1`` with ``2^{2h} ≥ num_samples``."""
    bits = max(2, (num_samples - 1).bit_length())
    return (bits + 1) // 2


def _feistel(x: jax.Array, round_keys: jax.Array, half_width: int) -> jax.Array:
    """The balanced Feistel network on ``[0, 2^{2h})``: a bijection for any round keys."""
    shift = np.uint32(half_width)
    mask = np.uint32((1 << half_width) - 1)
    left, right = x >> shift, x & mask
    for i in range(_NUM_ROUNDS):
        left, right = right, left ^ (_mix(right ^ round_keys[i]) & mask)
    return (left << shift) | right


def permuted_indices(rng_key, num_samples: int, start, size: int) -> jax.Array:
    """Entries ``start, …, start + size - 1`` of a pseudo-random permutation π_key of ``[0, n)``.

    For a fixed ``rng_key``, position ``p ↦ π_key(p)`` is a bijection of ``[0, num_samples)``, so
    the calls with ``start = 0, size, 2 size, …`` return disjoint minibatches: sampling without
    replacement within an epoch. The cost is ``O(size)``, whatever ``num_samples`` is.

    Parameters
    ----------
    rng_key
        The key that picks the permutation (a typed key or a raw ``uint32`` key); the same key
        gives the same permutation.
    num_samples
        ``n ≥ 1``, the size of the permuted set (static; at most ``2**31``).
    start
        The first position, an integer scalar that may be traced (e.g. ``k * size`` for the
        ``k``-th minibatch of an epoch). The caller guarantees ``0 ≤ start`` and
        ``start + size ≤ num_samples``; positions are not reduced modulo ``n``.
    size
        The number of positions, ``1 ≤ size ≤ num_samples`` (static).

    Returns
    -------
    jax.Array
        The ``int32`` indices ``π_key(start), …, π_key(start + size - 1)``, of shape ``(size,)``.

    Examples
    --------
    The slices of one permutation cover ``[0, n)`` exactly once:

    >>> import jax, jax.numpy as jnp
    >>> key = jax.random.key(0)
    >>> batches = [permuted_indices(key, 10, start, 5) for start in (0, 5)]
    >>> sorted(int(i) for i in jnp.concatenate(batches))
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

    The start may be traced, so one compiled step serves a whole epoch:

    >>> batch = jax.jit(permuted_indices, static_argnums=(1, 3))(key, 4_000_000, 1024, 256)
    >>> batch.shape, batch.dtype, bool(jnp.all((batch >= 0) & (batch < 4_000_000)))
    ((256,), dtype('int32'), True)
    """
    num_samples = check_count("num_samples", num_samples)
    size = check_count("size", size)
    if num_samples > 2**31:
        raise ValueError(f"num_samples: int32 indices need n <= 2**31, got {num_samples}.")
    if size > num_samples:
        raise ValueError(f"size: {size} exceeds num_samples = {num_samples}.")
    if isinstance(start, int) and not 0 <= start <= num_samples - size:
        raise ValueError(f"start: need 0 <= start <= num_samples - size, got {start}.")

    half_width = _half_width(num_samples)
    round_keys = jax.random.bits(rng_key, (_NUM_ROUNDS,), jnp.uint32)
    bound = np.uint32(num_samples - 1)  # ``x < n`` as ``x <= n - 1``: n = 2**32 never occurs.
    positions = jnp.asarray(start).astype(jnp.uint32) + jnp.arange(size, dtype=jnp.uint32)

    # Every slot is mapped at least once, then again while it is out of range: one copy of the
    # network in the program.
    def pending(carry):
        return jnp.any(carry[1])

    def walk(carry):
        values, todo = carry
        values = jnp.where(todo, _feistel(values, round_keys, half_width), values)
        return values, values > bound

    values, _ = jax.lax.while_loop(pending, walk, (positions, jnp.ones(size, dtype=bool)))
    return values.astype(jnp.int32)
