"""The Langevin update shared by every Langevin-type kernel: the counterpart of BlackJAX's
``sgmcmc/diffusions.py``.

A step proposes ``θ − η·drift + √(2λη) ξ`` for every particle; a particle whose proposal is not
finite or leaves the box ``|θ| < divergence_threshold`` keeps its position while the others move
(see :func:`refuse_divergent_particles`), and the step is flagged. A step whose energy is not
finite, or whose tracked objective (``F(μ)`` where the drift estimator computes it, an epoch's
mean of minibatch energies for SGD: see :class:`mflangevin.kernels.gradients.Tracked`) exceeds
the running best by more than ``divergence_factor`` times its scale, is flagged too (see
:func:`energy_diverged`).
Particles keep their dtype: the step size, the temperature and the noise are cast to it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mflangevin.keys import estimator_key
from mflangevin.objectives import Objective, num_particles
from mflangevin.sharding import replicate_like_particles
from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = [
    "MFLDState",
    "MFLDInfo",
    "initial_state",
    "langevin_step",
    "langevin_update",
    "refuse_if_divergent",
    "refuse_divergent_particles",
    "add_reference_score",
    "per_particle_sq_norm",
    "energy_diverged",
]


class MFLDState(NamedTuple):
    """State of MFLD: the particles and the step counter that drives the schedules.

    ``gradient_state`` is the state of the drift estimator (``()`` for the full drift; the
    snapshot of SVRG, the previous estimate of SARAH), ``num_gradient_evaluations`` the number
    of per-sample gradients evaluated so far (see :mod:`mflangevin.kernels.gradients`) and
    ``best_energy`` the lowest tracked objective seen so far (``inf`` until the first: ``F(μ)``
    at the first step of the full drift and at SVRG's snapshots and SARAH's refreshes, an
    epoch's mean of minibatch energies for SGD), which :func:`energy_diverged` compares
    against.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = initial_state(jnp.zeros((16, 2)))
    >>> state.position.shape, int(state.count), state.gradient_state, float(state.best_energy)
    ((16, 2), 0, (), inf)
    """

    position: ArrayTree
    count: Array
    gradient_state: ArrayTree
    num_gradient_evaluations: Array
    best_energy: Array

    @property
    def particles(self) -> ArrayTree:
        """Alias of ``position``: the particle pytree, leading axis ``N``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> state = initial_state(jnp.zeros((16, 2)))
        >>> state.particles is state.position
        True
        """
        return self.position


class MFLDInfo(NamedTuple):
    """What one MFLD step saw.

    ``energy`` is ``F(μ)`` at the particles the step started from (it comes free with the drift);
    ``drift_norm`` the root-mean-square over particles of the drift used (reference term
    included); with a minibatch estimator both are estimates from the samples the step used.
    ``num_gradient_evaluations`` counts the per-sample gradients evaluated up to and including
    this step (the cost axis on which estimators compare); ``num_refused`` is the number of
    particles whose proposal was non-finite or beyond ``divergence_threshold`` and which kept
    their position while the others moved (see :func:`refuse_divergent_particles`);
    ``is_divergent`` is true when a move was refused or when the energy diverged (see
    :func:`energy_diverged`; the step is then taken, only flagged).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> algorithm = mflangevin.mfld(lambda p: 0.5 * jnp.mean(p**2), step_size=0.1, temperature=0.1)
    >>> _, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.ones((16, 2))))
    >>> bool(info.is_divergent), int(info.num_refused), info.step_size
    (False, 0, Array(0.1, dtype=float32, weak_type=True))
    >>> int(info.num_gradient_evaluations)  # a plain energy_fn: n = 1
    1
    """

    energy: Array
    drift_norm: Array
    is_divergent: Array
    step_size: Array
    temperature: Array
    num_gradient_evaluations: Array
    num_refused: Array


def initial_state(position: ArrayTree, gradient_state: ArrayTree = ()) -> MFLDState:
    """The state at step 0: the particles, the drift estimator's state, zero counters, no best
    energy yet (``inf`` in the particles' dtype).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> int(initial_state(jnp.zeros((4, 2))).num_gradient_evaluations)
    0
    """
    dtype = jnp.result_type(*jax.tree.leaves(position))
    zero, best = replicate_like_particles(
        (jnp.zeros((), jnp.int32), jnp.full((), jnp.inf, dtype)), position
    )
    return MFLDState(position, zero, gradient_state, zero, best)


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


def energy_diverged(energy, best_energy, temperature, position, factor: float) -> Array:
    """Whether ``energy`` signals a diverging run: it is not finite, or it exceeds the running
    best by more than ``(factor − 1)`` times ``max(|best|, λ·p)``.

    ``p`` is the number of coordinates of one particle. The floor ``λ·p`` is the scale by which
    the entropy lets ``F(μ)`` rise above its running best in a run that converges (for a
    quadratic ``F`` the stationary energy sits ``λp/2`` above the minimum), so a run started
    where ``F`` is near zero is not flagged for spreading out. The test is one-sided and never
    changes the trajectory.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> position = jnp.zeros((4, 2))
    >>> bool(energy_diverged(5.37, 0.195, 1e-3, position, 10.0))  # 27 times the best
    True
    >>> bool(energy_diverged(0.5, 0.195, 1e-3, position, 10.0))
    False
    >>> bool(energy_diverged(jnp.nan, jnp.inf, 1e-3, position, 10.0))
    True
    """
    energy = jnp.asarray(energy)
    best = jnp.asarray(best_energy, energy.dtype)
    num = num_particles(position)
    size = sum(x.size for x in jax.tree.leaves(position)) // max(num, 1)
    scale = jnp.maximum(jnp.abs(best), jnp.asarray(temperature, energy.dtype) * size)
    grew = energy - best > (factor - 1) * scale
    return ~jnp.isfinite(energy) | (jnp.isfinite(best) & grew)


def _bound(threshold: float, dtype) -> Array:
    """The divergence threshold in the particles' dtype, at most its largest finite value."""
    return jnp.asarray(min(float(threshold), float(jnp.finfo(dtype).max)), dtype)


def langevin_update(
    rng_key: PRNGKey,
    position: ArrayTree,
    drift: ArrayTree,
    step_size: Array,
    temperature: Array,
    divergence_threshold: float,
) -> tuple[ArrayTree, Array]:
    """``θ − η·drift + √(2λη) ξ`` for every particle; a particle whose proposal is non-finite or
    explodes keeps its position (:func:`refuse_divergent_particles`).

    Returns the new position and which particles' moves were refused, shape ``(N,)``. The noise
    is drawn as in ``blackjax.sgld``, which makes the two agree.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> position, drift = jnp.zeros((4, 2)), jnp.ones((4, 2))
    >>> new, refused = langevin_update(jax.random.key(0), position, drift, 0.1, 0.0, 1e6)
    >>> new[0], refused  # λ = 0: a plain gradient step
    (Array([-0.1, -0.1], dtype=float32), Array([False, False, False, False], dtype=bool))
    >>> drift = drift.at[1].set(9.0)
    >>> new, refused = langevin_update(jax.random.key(0), position, drift, 0.1, 0.0, 0.5)
    >>> new[:, 0]  # particle 1 beyond the threshold: refused, the others move
    Array([-0.1,  0. , -0.1, -0.1], dtype=float32)
    >>> refused
    Array([False,  True, False, False], dtype=bool)
    """
    # As blackjax.util.generate_gaussian_noise draws it (so that MFLD and blackjax.sgld agree),
    # without its scaling by a Python float, which low-precision dtypes would not survive.
    flat, unravel = ravel_pytree(position)
    noise = unravel(jax.random.normal(rng_key, flat.shape, flat.dtype))
    scale = jnp.sqrt(2 * temperature * step_size)

    def propose(p, d, n):
        return (
            p
            - jnp.asarray(step_size, p.dtype) * d.astype(p.dtype)
            + (jnp.asarray(scale, p.dtype) * n.astype(p.dtype))
        )

    proposal = jax.tree.map(propose, position, drift, noise)
    return refuse_divergent_particles(proposal, position, divergence_threshold)


def refuse_if_divergent(
    proposal: ArrayTree, position: ArrayTree, divergence_threshold: float
) -> tuple[ArrayTree, Array]:
    """The divergence guard of the kernels that move one iterate (not a particle system):
    ``proposal``, or ``position`` kept when a proposed coordinate is not finite or reaches
    ``divergence_threshold`` in magnitude; and that flag.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> new, is_divergent = refuse_if_divergent(jnp.array([1.0, jnp.nan]), jnp.zeros(2), 1e6)
    >>> new, bool(is_divergent)
    (Array([0., 0.], dtype=float32), True)
    """
    leaves = jax.tree.leaves(proposal)
    inside = [jnp.all(jnp.abs(x) < _bound(divergence_threshold, x.dtype)) for x in leaves]
    is_divergent = ~jnp.all(jnp.stack(inside))
    kept = jax.tree.map(lambda new, old: jnp.where(is_divergent, old, new), proposal, position)
    return kept, is_divergent


def refuse_divergent_particles(
    proposal: ArrayTree, position: ArrayTree, divergence_threshold: float
) -> tuple[ArrayTree, Array]:
    """The divergence guard of the particle kernels, particle by particle: a particle whose
    proposed coordinates are not all finite and below ``divergence_threshold`` in magnitude keeps
    its position; the others take their proposal. Returns the particles and the refused mask,
    shape ``(N,)``.

    One bad particle (an extreme start, a region where the drift explodes) thus never freezes the
    others; the bias this rule introduces is described in ``docs/theory/mfld.md``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> proposal = jnp.array([[1.0, 2.0], [jnp.nan, 0.0], [3.0, 1e7]])
    >>> new, refused = refuse_divergent_particles(proposal, jnp.zeros((3, 2)), 1e6)
    >>> new
    Array([[1., 2.],
           [0., 0.],
           [0., 0.]], dtype=float32)
    >>> refused
    Array([False,  True,  True], dtype=bool)
    """

    def outside(x):
        x = jnp.reshape(x, (x.shape[0], -1))
        return ~jnp.all(jnp.abs(x) < _bound(divergence_threshold, x.dtype), axis=1)

    refused = functools.reduce(jnp.logical_or, map(outside, jax.tree.leaves(proposal)))

    def keep(new, old):
        mask = jnp.reshape(refused, refused.shape + (1,) * (new.ndim - 1))
        return jnp.where(mask, old, new)

    return jax.tree.map(keep, proposal, position), refused


def langevin_step(
    rng_key: PRNGKey,
    state: MFLDState,
    objective: Objective,
    estimator,
    step_size,
    temperature,
    divergence_threshold: float,
    divergence_factor: float = 10.0,
) -> tuple[MFLDState, MFLDInfo]:
    """One MFLD step with the drift of ``estimator`` (see :mod:`mflangevin.kernels.gradients`):
    the drift, the reference score, the Langevin update guarded per particle, the divergence test
    (a non-finite energy, or the estimator's tracked objective against the running best, see
    :func:`energy_diverged`), the info.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import EnergyObjective
    >>> from mflangevin.kernels.gradients import full
    >>> objective = EnergyObjective(lambda p: 0.5 * jnp.mean(p**2))
    >>> state, info = langevin_step(
    ...     jax.random.key(0), initial_state(jnp.ones((8, 2))), objective, full(), 0.1, 0.1, 1e6
    ... )
    >>> int(state.count), bool(info.is_divergent)
    (1, False)
    """
    position = state.position
    energy, drift, gradient_state, evaluations, tracked = estimator.estimate(
        estimator_key(rng_key),
        objective,
        position,
        state.count,
        state.gradient_state,
    )
    drift = add_reference_score(drift, objective.reference, temperature, position)
    new_position, refused = langevin_update(
        rng_key, position, drift, step_size, temperature, divergence_threshold
    )
    best = state.best_energy
    is_divergent = jnp.any(refused) | ~jnp.isfinite(energy)
    value = jnp.asarray(tracked.value, best.dtype)
    grew = energy_diverged(value, best, temperature, position, divergence_factor)
    is_divergent |= tracked.ready & grew
    best = jnp.where(tracked.ready, jnp.fmin(best, value), best)
    info = MFLDInfo(
        energy=energy,
        drift_norm=jnp.sqrt(jnp.mean(per_particle_sq_norm(drift))),
        is_divergent=is_divergent,
        step_size=jnp.asarray(step_size),
        temperature=jnp.asarray(temperature),
        num_gradient_evaluations=state.num_gradient_evaluations + evaluations,
        num_refused=jnp.sum(refused, dtype=jnp.int32),
    )
    new_state = MFLDState(
        new_position, state.count + 1, gradient_state, info.num_gradient_evaluations, best
    )
    return new_state, info
