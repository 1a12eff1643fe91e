"""The warmup of :class:`mflangevin.numpyro.MFLD` on a Bayesian model (a helper of
:mod:`mflangevin.numpyro`): the particles' Metropolis acceptance probabilities, the dual averaging
of the step, the diagonal preconditioner read from the cloud, and the restart of stranded
particles. See the NumPyro guide, "What the warmup tunes"."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mflangevin.kernels.diffusions import per_particle_sq_norm
from mflangevin.types import Array, PRNGKey

#: While tuning without the Metropolis correction, a move less likely than this to be accepted
#: by a Metropolis test is undone.
ABSURD_MOVE = 1e-3
#: A move less likely than this to be accepted by a Metropolis test is counted in
#: ``num_improbable``: there the step is far too large for the posterior's curvature.
IMPROBABLE_MOVE = 1e-2
#: With a subsampled plate, the warmup's step is at most the one at which the minibatch noise's
#: variance per step is this fraction of the Langevin noise's (the stationary spread then grows
#: by about half this, 5 %).
MINIBATCH_NOISE = 0.1
#: A particle that has not moved for this many steps is counted in ``num_stuck``: with the
#: Metropolis correction at an acceptance of 0.6 a particle of the posterior's bulk stays put
#: that long with probability about ``0.4¹⁰⁰``.
STUCK_STEPS = 100
#: While tuning, a particle's step factor grows by this after a move that was not undone.
BACKOFF_GROWTH = 1.1
#: The half-width of the uniform start of a Bayesian model's particles in unconstrained space,
#: twice NUTS's: a cloud started wider than the posterior contracts along the drift in a few
#: steps, one started narrower spreads only by the noise, in about ``(σ_post / s)² / η`` steps
#: (the preconditioner ``s`` being the cloud's own spread), which on a funnel outlasts the warmup.
INIT_RADIUS = 4.0
#: The stream of the warmup's restarts of stranded particles, folded into the step key.
RESAMPLE = 0x5253
#: The mean acceptance probability that the warmup's step-size adaptation aims at, unadjusted.
TARGET_ACCEPT_PROB = 0.97
#: The same with the Metropolis correction (MALA per particle): near MALA's optimal 0.574
#: (Roberts and Rosenthal). On the centred eight schools 0.5, 0.6 and 0.7 did about as well,
#: 0.8 widened the sd ratios, and 0.9 and 0.95, whose smaller steps left the cloud short of the
#: funnel's neck after a 1000-step warmup, did worse (the NumPyro guide, "What the warmup tunes").
ADJUSTED_TARGET_ACCEPT_PROB = 0.6


def per_particle(mask: Array, x: Array) -> Array:
    """``mask`` (shape ``(N,)``) broadcast against ``x`` (leading axis ``N``)."""
    return jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(x) - 1))


def stranded(potential: Array, temperature, z: dict) -> Array:
    """Particles whose potential lies more than ``10 + 4√(p/2)`` (in units of λ) above the
    cloud's median, ``p`` coordinates per particle: near a posterior's mode ``V/λ`` exceeds its
    minimum by a ``Gamma(p/2)`` variable, so a particle of the posterior's bulk lies there with
    probability below ``10⁻⁵``."""
    size = sum(x[0].size for x in jax.tree.leaves(z))
    excess = (potential - jnp.median(potential)) / temperature
    return excess > 10.0 + 4.0 * (size / 2) ** 0.5


def replacement(rng_key: PRNGKey, stranded: Array) -> Array:
    """For every particle, the index of a particle drawn uniformly among those not stranded."""
    weights = jnp.where(stranded, 0.0, 1.0)
    return jax.random.choice(rng_key, stranded.shape[0], stranded.shape, p=weights / weights.sum())


def whiten(z: dict, drift: dict, scale: dict) -> tuple[dict, dict]:
    """``z / scale`` and ``scale · drift`` (``scale`` per particle): the particles and their drift
    in the coordinates in which the kernel takes its (unpreconditioned) step."""
    return jax.tree.map(jnp.divide, z, scale), colour(drift, scale)


def colour(u: dict, scale: dict) -> dict:
    return jax.tree.map(jnp.multiply, u, scale)


def whitened(potential_and_drift: tuple, scale: dict) -> tuple:
    energy, potential, drift = potential_and_drift
    return energy, potential, colour(drift, scale)


def particle_scale(scale: dict, backoff: Array) -> dict:
    """The preconditioner of every particle: the cloud's ``scale`` times the particle's
    ``backoff`` factor."""
    return jax.tree.map(lambda s: s[None] * per_particle(backoff, s[None]), scale)


def cloud_scale(z: dict) -> dict:
    """Per-coordinate spread of the particle cloud: ``1.4826 × median |θ − median θ|`` (the
    standard deviation for a Gaussian cloud, unmoved by a few stragglers), at least ``10⁻⁶``."""

    def scale(x):
        deviation = jnp.abs(x - jnp.median(x, axis=0, keepdims=True))
        return jnp.maximum(1.4826 * jnp.median(deviation, axis=0), 1e-6).astype(x.dtype)

    return jax.tree.map(scale, z)


class DualAveraging(NamedTuple):
    """Dual averaging of ``log η`` (Nesterov 2009, as Hoffman and Gelman tune NUTS's step):
    ``x_t = μ − √t/γ · ḡ_t`` with ``ḡ_t`` the running mean of ``target − accept_prob`` (offset by
    ``t0``), and the weighted average ``x̄_t`` (weights ``t^{−κ}``) that warmup ends with.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = DualAveraging.start(jnp.log(jnp.float32(0.1)))
    >>> below = state.update(jnp.float32(0.5))  # accepted less than the target
    >>> above = state.update(jnp.float32(-0.02))  # accepted more
    >>> bool(below.log_step_size < above.log_step_size)
    True
    """

    log_step_size: Array
    log_step_size_avg: Array
    mean_error: Array
    count: Array
    centre: Array

    @classmethod
    def start(cls, log_step_size: Array) -> DualAveraging:
        """Start at ``log η``, pulled towards ``log(10 η)`` as NUTS's tuning starts.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> float(DualAveraging.start(jnp.float32(0.0)).count)
        0.0
        """
        zero = jnp.zeros_like(log_step_size)
        return cls(log_step_size, zero, zero, zero, log_step_size + jnp.log(10.0))

    def update(self, error: Array, t0: float = 10.0, kappa: float = 0.75, gamma: float = 0.05):
        """One step with ``error = target − accept_prob``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> state = DualAveraging.start(jnp.float32(0.0)).update(jnp.float32(-0.1))
        >>> float(state.count)
        1.0
        """
        t = self.count + 1
        mean_error = (1 - 1 / (t + t0)) * self.mean_error + error / (t + t0)
        log_step_size = self.centre - jnp.sqrt(t) / gamma * mean_error
        weight = t ** (-kappa)
        average = weight * log_step_size + (1 - weight) * self.log_step_size_avg
        return DualAveraging(log_step_size, average, mean_error, t, self.centre)


def noise_like(rng_key: PRNGKey, tree: dict) -> dict:
    flat, unravel = ravel_pytree(tree)
    return unravel(jax.random.normal(rng_key, flat.shape, flat.dtype))


def unmoved(old: dict, new: dict) -> Array:
    """Particles whose every coordinate stayed put: a refused move (per particle, ``(N,)``)."""
    same = [
        jnp.all(jnp.reshape(a == b, (a.shape[0], -1)), axis=1)
        for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True)
    ]
    return functools.reduce(jnp.logical_and, same)


def accept_prob(
    z, potential, drift, proposal, new_potential, new_drift, step_size, temperature, refused
) -> Array:
    """Per-particle Metropolis acceptance probability of the Langevin moves ``z → proposal`` on
    ``∝ exp(−V/λ)``, shape ``(N,)``; ``0`` for a refused move.

    With ``q(θ'|θ) = N(θ − η∇V(θ), 2λη I)``, ``log α = −(V(θ') − V(θ))/λ + log q(θ|θ') −
    log q(θ'|θ)``. MFLD never rejects: ``1 − α`` measures how far the unadjusted step is from
    reversible, its discretisation error.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z, proposal = {"x": jnp.zeros(2)}, {"x": jnp.array([0.1, 3.0])}
    >>> V = lambda x: 0.5 * x**2
    >>> drift = {"x": z["x"]}
    >>> prob = accept_prob(
    ...     z, V(z["x"]), drift, proposal, V(proposal["x"]), proposal, 0.01, 1.0,
    ...     jnp.array([False, False]),
    ... )
    >>> [round(float(p), 3) for p in prob]  # a move against the drift is less reversible
    [1.0, 0.978]
    """
    log_ratio = -(new_potential - potential) / temperature + proposal_log_ratio(
        z, drift, proposal, new_drift, step_size, temperature
    )
    prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    return jnp.where(refused | ~jnp.isfinite(log_ratio), 0.0, prob)


def proposal_log_ratio(z, drift, proposal, new_drift, step_size, temperature) -> Array:
    """``log q(θ|θ') − log q(θ'|θ)`` per particle, shape ``(N,)``, for the Langevin proposal
    ``q(θ'|θ) = N(θ − η∇V(θ), 2λη I)``."""
    forward = jax.tree.map(lambda a, b, d: b - a + step_size * d, z, proposal, drift)
    backward = jax.tree.map(lambda a, b, d: a - b + step_size * d, z, proposal, new_drift)
    return -(per_particle_sq_norm(backward) - per_particle_sq_norm(forward)) / (
        4 * temperature * step_size
    )


def mean_field_accept_prob(
    z, potential, drift, proposal, new_potential, new_drift, step_size, temperature, refused
) -> Array:
    """An estimate of the mean acceptance probability of the particles' moves in a mean-field
    model, a scalar. The particles interact, so only the whole system's move ``Θ → Θ'`` on
    ``π_N ∝ exp(−J/λ)`` has a Metropolis ratio, ``log r = −(J(Θ') − J(Θ))/λ + Σ_i [log q(θ_i|Θ')
    − log q(θ'_i|Θ)]``. For ``N`` independent particles whose log ratios are ``N(−σ²/2, σ²)``
    (MALA's at small steps; near the stationary law the mean is small against the spread),
    ``log r`` has spread ``√N σ``, so ``σ̂ = √(π/2) |log r| / √N`` estimates ``σ`` without bias,
    and a particle's acceptance probability ``E min(1, e^X) = 2Φ(−σ/2)`` is estimated by
    ``2Φ(−σ̂/2)`` (exact to first order in ``σ``, which is all the warmup's averaging needs).
    ``0`` when a move was refused.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z, proposal = {"x": jnp.zeros(2)}, {"x": jnp.array([0.5, -1.0])}
    >>> J = lambda x: 0.5 * jnp.sum(x**2)  # two independent N(0, 1) particles
    >>> prob = mean_field_accept_prob(
    ...     z, J(z["x"]), z, proposal, J(proposal["x"]), proposal, 0.1, 1.0,
    ...     jnp.array([False, False]),
    ... )
    >>> round(float(prob), 3)
    0.989
    """
    log_ratio = -(new_potential - potential) / temperature + jnp.sum(
        proposal_log_ratio(z, drift, proposal, new_drift, step_size, temperature)
    )
    sigma = jnp.sqrt(jnp.pi / 2) * jnp.abs(log_ratio) / jnp.sqrt(refused.shape[0])
    prob = 2 * jax.scipy.stats.norm.cdf(-sigma / 2)
    return jnp.where(jnp.any(refused) | ~jnp.isfinite(log_ratio), 0.0, prob)
