"""The Langevin update shared by every Langevin-type kernel: the counterpart of BlackJAX's
``sgmcmc/diffusions.py``.

A step proposes ``θ − η·drift + √(2λη) ξ`` for every particle; a proposal that is not finite or
leaves the box ``|θ| < divergence_threshold`` is refused (the particles are kept) and flagged.
Particles keep their dtype: the step size, the temperature and the noise are cast to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from blackjax.util import generate_gaussian_noise

from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = ["langevin_update", "add_reference_score", "per_particle_sq_norm"]


def per_particle_sq_norm(tree: ArrayTree) -> Array:
    """Per-particle squared norm of a particle pytree, shape ``(N,)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> per_particle_sq_norm({"w": jnp.ones((3, 2)), "b": jnp.ones(3)})
    Array([3., 3., 3.], dtype=float32)
    """
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(jnp.reshape(x, (x.shape[0], -1)) ** 2, axis=1) for x in leaves)


def add_reference_score(drift: ArrayTree, reference, temperature, position: ArrayTree):
    """``drift − λ ∇log ν(θ_i)``: the reference measure's term of the MFLD drift.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import gaussian_reference
    >>> add_reference_score(jnp.zeros((2, 1)), gaussian_reference(1.0), 0.5, jnp.ones((2, 1)))
    Array([[0.5],
           [0.5]], dtype=float32)
    """
    if reference is None:
        return drift
    score = reference.score(position)
    return jax.tree.map(lambda d, s: d - (temperature * s).astype(d.dtype), drift, score)


def langevin_update(
    rng_key: PRNGKey,
    position: ArrayTree,
    drift: ArrayTree,
    step_size: Array,
    temperature: Array,
    divergence_threshold: float,
) -> tuple[ArrayTree, Array]:
    """``θ − η·drift + √(2λη) ξ``, refused (particles kept) if it is non-finite or explodes.

    Returns the new position and the divergence flag. The noise is drawn as in
    ``blackjax.sgld``, which makes the two agree.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> position, drift = jnp.zeros((4, 2)), jnp.ones((4, 2))
    >>> new, is_divergent = langevin_update(jax.random.key(0), position, drift, 0.1, 0.0, 1e6)
    >>> new[0], bool(is_divergent)  # λ = 0: a plain gradient step
    (Array([-0.1, -0.1], dtype=float32), False)
    >>> new, is_divergent = langevin_update(jax.random.key(0), position, drift, 0.1, 0.0, 0.05)
    >>> bool(jnp.all(new == position)), bool(is_divergent)  # beyond the threshold: refused
    (True, True)
    """
    noise = generate_gaussian_noise(rng_key, position)
    scale = jnp.sqrt(2 * temperature * step_size)

    def propose(p, d, n):
        return (
            p
            - jnp.asarray(step_size, p.dtype) * d.astype(p.dtype)
            + (jnp.asarray(scale, p.dtype) * n.astype(p.dtype))
        )

    proposal = jax.tree.map(propose, position, drift, noise)
    leaves = jax.tree.leaves(proposal)
    inside = [jnp.all(jnp.abs(x) < jnp.asarray(divergence_threshold, x.dtype)) for x in leaves]
    is_divergent = ~jnp.all(jnp.stack(inside))
    new_position = jax.tree.map(
        lambda new, old: jnp.where(is_divergent, old, new), proposal, position
    )
    return new_position, is_divergent
