"""Convergence certificates of mean-field optimisation (docs/theory/certificates.md).

For a structured objective ``F(μ) = R(E_μΦ) + E_μ r`` and the free energy
``G(μ) = F(μ) + λ KL(μ ‖ ν)``:

* the proximal Gibbs measure ``p_μ ∝ ν exp(−ψ/λ)`` with ``ψ = δF/δμ(μ) = ⟨g, Φ⟩ + r``;
* the dual ``D(g) = −R*(g) − λ log E_ν[exp(−(⟨g, Φ⟩ + r)/λ)] ≤ G(μ*) ≤ G(μ)`` for every ``g``;
* at ``g_μ = ∇R(E_μΦ)`` the duality gap ``G(μ) − D(g_μ) = λ KL(μ ‖ p_μ)`` exactly.

``D`` needs only draws of ν (Monte Carlo with ``logsumexp``); the primal needs an entropy
estimate of the particle cloud (:func:`mflangevin.certificates.entropy.entropy`).

**No reference measure.** With ``reference=None`` the entropy term is ``λ E_μ log μ`` (ν is
Lebesgue) and ``E_ν`` is an integral over ``R^p``, not an expectation. When the penalty is the
L2 penalty ``r(θ) = l2 ‖θ‖²`` of :class:`~mflangevin.models.MeanFieldNetwork`, that integral is
computed exactly by drawing from the Gaussian ``N(0, λ/(2 l2) I)`` that the penalty defines:
``log ∫ e^{−(⟨g,Φ⟩ + l2‖θ‖²)/λ} dθ = log E_{N(0, s²I)} e^{−⟨g,Φ⟩/λ} + (p/2) log(2π s²)``,
``s² = λ/(2 l2)``. Primal and dual are then those of the objective as written; any other
objective without a reference has no dual bound here (``ValueError``).

References: Nitanda, Wu, Suzuki, *Convex Analysis of the Mean Field Langevin Dynamics*,
AISTATS 2022; Chizat, TMLR 2022.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from mflangevin._checks import check_particles, check_positive
from mflangevin.certificates.entropy import check_neighbors, entropy, flatten_particles
from mflangevin.objectives import StructuredObjective, num_particles
from mflangevin.sharding import constrain, particle_sharding
from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = [
    "Certificate",
    "proximal_gibbs_log_density",
    "dual_objective",
    "primal_objective",
    "duality_gap",
    "dual_bound_and_stderr",
    "check_dual_arguments",
    "DUAL_ESS_MIN",
]

DUAL_ESS_MIN = 10
"""Below this effective sample size of the dual's importance weights, ``dual_stderr`` is not
to be trusted (docs/theory/certificates.md): :func:`duality_gap` warns, and ``dual_ess`` in
every :class:`Certificate` lets a run flag it."""


class Certificate(NamedTuple):
    """Primal ``Ĝ(μ)``, dual ``D(g_μ)``, gap ``Ĝ − D`` and the Monte-Carlo standard error of
    ``D`` (delta method on the ``K`` importance weights).

    Returned by :func:`duality_gap`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(
    ...     jnp.ones((8, 2)), jnp.zeros(8), reference=mflangevin.gaussian_reference(1.0)
    ... )
    >>> particles = net.init_particles(jax.random.key(0), 64, input_dim=2)
    >>> certificate = duality_gap(objective, particles, 0.1, jax.random.key(1))
    >>> certificate._fields
    ('primal', 'dual', 'gap', 'dual_stderr', 'dual_ess')
    >>> bool(jnp.allclose(certificate.gap, certificate.primal - certificate.dual))
    True
    """

    primal: Array
    dual: Array
    gap: Array
    dual_stderr: Array
    dual_ess: Array


def _check_structured(objective) -> None:
    if not isinstance(objective, StructuredObjective):
        raise TypeError(
            "objective: the certificates need a MeanFieldObjective (F = R(E_μΦ) + E_μ r), "
            f"got {type(objective).__name__}."
        )


def _particle_dim(particles: ArrayTree) -> int:
    return sum(int(jnp.size(x) // jnp.shape(x)[0]) for x in jax.tree.leaves(particles))


def _check_g(objective: StructuredObjective, g: Array, particles: ArrayTree) -> None:
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), particles)
    feature = jax.eval_shape(objective.feature_map, one, objective.data)
    if jnp.shape(g) != feature.shape:
        raise ValueError(
            f"g: expected the shape {feature.shape} of the features Φ(θ), got {jnp.shape(g)}."
        )


def _reference_log_density(objective: StructuredObjective, theta: ArrayTree) -> Array:
    """Normalised ``log ν(θ)``; ``0`` for Lebesgue (``reference=None``)."""
    reference = objective.reference
    if reference is None:
        return jnp.zeros((), jnp.result_type(*jax.tree.leaves(theta)))
    return reference.log_density(theta) - reference.log_normalizer(theta)


def proximal_gibbs_log_density(
    objective: StructuredObjective, g: Array, temperature: float | Array, theta: ArrayTree
) -> Array:
    """``log ν(θ) − ψ(θ)/λ`` with ``ψ = ⟨g, Φ(θ)⟩ + r(θ)``: the proximal Gibbs log-density
    ``log p_μ(θ)`` up to the constant ``log E_ν e^{−ψ/λ}``, for one particle ``θ``.

    With ``g = g_μ = ∇R(E_μΦ)`` this is the measure ``p_μ`` MFLD relaxes towards;
    ``jax.vmap`` it over particles.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import mflangevin
    >>> objective = mflangevin.MeanFieldObjective(
    ...     feature_map=lambda theta, _: theta,
    ...     risk=lambda z, _: 0.5 * jnp.sum(z**2),
    ...     reference=mflangevin.gaussian_reference(1.0),
    ... )
    >>> float(proximal_gibbs_log_density(objective, jnp.ones(2), 0.5, jnp.zeros(2)))
    -1.837...
    """
    _check_structured(objective)
    psi = objective.first_variation(g, theta)
    return _reference_log_density(objective, theta) - psi / temperature


def _sampling_measure(objective: StructuredObjective, temperature, particles: ArrayTree):
    """The probability measure ν' drawn from, the penalty left in ψ, and the log-normaliser
    ``c`` with ``log ∫ e^{−ψ/λ} dν = log E_{ν'} e^{−ψ'/λ} + c`` (see the module docstring)."""
    _check_sampling_measure(objective)
    reference, penalty = objective.reference, objective.penalty
    dtype = flatten_particles(particles).dtype
    if reference is not None:
        return reference.sample, penalty, jnp.zeros((), dtype)
    gaussian = penalty.as_gaussian(jnp.asarray(temperature, dtype))
    # One particle's shapes, not its values: slicing x[0] off particles split over Explicit
    # mesh axes is a sharding error.
    one = jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), particles)
    return gaussian.sample, None, gaussian.log_normalizer(one).astype(dtype)


def _check_sampling_measure(objective: StructuredObjective) -> None:
    """The objective has a measure to draw ν from: a reference that samples, or an L2 penalty."""
    reference, penalty = objective.reference, objective.penalty
    if reference is not None:
        if not hasattr(reference, "sample"):
            raise TypeError("objective: its reference measure cannot draw samples (no `sample`).")
    elif not (hasattr(penalty, "as_gaussian") and penalty.weight > 0):
        raise ValueError(
            "objective: the dual bound needs a reference measure ν to draw from (E_ν must be an "
            "expectation); this objective has reference=None and no L2 penalty. Give a "
            "reference (e.g. mflangevin.gaussian_reference) or an L2 penalty."
        )


def check_dual_arguments(objective, temperature, num_samples, batch_size, particles) -> None:
    """The arguments of the dual bound, checked eagerly (before anything is traced)."""
    _check_structured(objective)
    if objective.risk_conjugate is None:
        raise ValueError(
            "objective: it has no risk_conjugate R*, which the dual bound needs; build it with "
            "MeanFieldObjective(..., risk_conjugate=R_star)."
        )
    _check_sampling_measure(objective)
    check_positive("temperature", temperature)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: K must be a positive integer, got {num_samples!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}.")
    check_particles(particles, name="particles")


def dual_bound_and_stderr(
    objective,
    g,
    temperature,
    rng_key,
    num_samples,
    particles,
    batch_size,
    *,
    return_ess=False,
    sharding=None,
):
    """``D(g)`` and its Monte-Carlo standard error: the computation behind
    :func:`dual_objective` and :func:`~mflangevin.certificates.monitor`, without the checks.

    With ``return_ess``, also the effective sample size ``(Σ w)² / Σ w²`` of the ``K``
    importance weights (see :data:`DUAL_ESS_MIN`). On particles split over devices (their
    ``sharding``, read off them by default, see :func:`mflangevin.sharding.particle_sharding`)
    the draws are split the same way: each device evaluates ``ψ`` at ``K/D`` of them.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(
    ...     jnp.ones((8, 2)), jnp.zeros(8), reference=mflangevin.gaussian_reference(1.0)
    ... )
    >>> particles = net.init_particles(jax.random.key(0), 64, input_dim=2)
    >>> g = objective.risk_gradient(objective.mean_embedding(particles))
    >>> dual, stderr, ess = dual_bound_and_stderr(
    ...     objective, g, 0.1, jax.random.key(1), 512, particles, 512, return_ess=True
    ... )
    >>> bool(0 < ess <= 512)
    True
    """
    sample, penalty, log_normaliser = _sampling_measure(objective, temperature, particles)
    like = jax.tree.map(lambda x: jnp.zeros((num_samples, *x.shape[1:]), x.dtype), particles)
    draws = sample(rng_key, like)

    sharding = particle_sharding(particles) if sharding is None else sharding
    if sharding is None:
        values = _psi(objective, penalty, g, draws, batch_size)
    else:
        values = _split_draws(objective, penalty, g, draws, batch_size, sharding)
    log_weights = -values / temperature
    log_partition = jax.nn.logsumexp(log_weights) - jnp.log(num_samples) + log_normaliser
    # Delta method: sd(log Ẑ) ≈ sd(w) / (√K · mean(w)); weights rescaled by their max for range.
    weights = jnp.exp(log_weights - jnp.max(log_weights))
    relative_error = jnp.std(weights) / (jnp.mean(weights) * jnp.sqrt(num_samples))
    dual = -objective.risk_conjugate(g, objective.data) - temperature * log_partition
    if not return_ess:
        return dual, temperature * relative_error
    ess = jnp.sum(weights) ** 2 / jnp.sum(weights**2)
    return dual, temperature * relative_error, ess


def _psi(objective, penalty, g: Array, draws: ArrayTree, batch_size: int) -> Array:
    """``ψ'(θ_k) = ⟨g, Φ(θ_k)⟩ + r'(θ_k)`` at every draw, ``batch_size`` draws at a time."""

    def psi(thetas: ArrayTree) -> Array:
        value = objective.pairing(g, thetas)
        return value if penalty is None else value + jax.vmap(penalty)(thetas)

    num = num_particles(draws, "draws")
    size = min(batch_size, num)
    num_full, rest = divmod(num, size)
    blocks = jax.tree.map(
        lambda x: x[: num_full * size].reshape(num_full, size, *x.shape[1:]), draws
    )
    values = [jax.lax.map(psi, blocks).reshape(-1)]
    if rest:
        values.append(psi(jax.tree.map(lambda x: x[num_full * size :], draws)))
    return jnp.concatenate(values)


def _split_draws(objective, penalty, g, draws, batch_size, sharding: NamedSharding) -> Array:
    """:func:`_psi` with the draws split over the particle axis of ``sharding`` (padded to a
    multiple of its size): every device evaluates its share, the values come back split."""
    axis = sharding.spec[0]
    names = set(axis) if isinstance(axis, tuple) else {axis}
    shards = math.prod(sharding.mesh.shape[a] for a in names)
    num = num_particles(draws, "draws")
    padded = jax.tree.map(
        lambda x: jnp.pad(x, [(0, -num % shards)] + [(0, 0)] * (x.ndim - 1)), draws
    )
    split = jax.shard_map(
        lambda o, g, d: _psi(o, penalty, g, d, batch_size),
        mesh=sharding.mesh,
        in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(axis)),
        out_specs=PartitionSpec(axis),
        axis_names=names,
        check_vma=False,
    )
    values = split(
        objective, g, constrain(padded, NamedSharding(sharding.mesh, PartitionSpec(axis)))
    )
    return constrain(values, NamedSharding(sharding.mesh, PartitionSpec()))[:num]


def warn_if_degenerate(ess) -> None:
    """Warn, outside traced code, when the dual's importance weights are degenerate."""
    if isinstance(ess, jax.core.Tracer):
        return
    small = float(ess) < DUAL_ESS_MIN
    if small:
        warnings.warn(
            f"dual_ess: the importance weights of the dual have an effective sample size of "
            f"{float(ess):.3g} (< {DUAL_ESS_MIN}); dual_stderr understates the error of the dual "
            "there. Increase num_samples, or read the dual only as a rough estimate.",
            RuntimeWarning,
            stacklevel=3,
        )


def dual_objective(
    objective: StructuredObjective,
    g: Array,
    temperature: float | Array,
    rng_key: PRNGKey,
    num_samples: int = 4096,
    *,
    particles: ArrayTree,
    batch_size: int = 1024,
) -> Array:
    """The dual ``D(g) = −R*(g) − λ log E_ν[exp(−(⟨g, Φ⟩ + r)/λ)]``, a lower bound on ``G(μ*)``.

    The expectation is a Monte-Carlo average over ``K = num_samples`` draws of ν, taken in log
    space (``logsumexp``). Its error is about ``λ · sd(w)/(√K · mean(w))`` for the weights
    ``w = e^{−ψ/λ}``, and by Jensen's inequality the estimate errs upwards on average by about half
    the square of that relative error: increase ``K`` when ``ψ/λ`` varies a lot under ν.

    Parameters
    ----------
    objective
        A :class:`~mflangevin.MeanFieldObjective` with ``risk_conjugate`` (the two-layer network
        objectives have it) and a reference ν that can ``sample``, or an L2 penalty and no
        reference (see the module docstring).
    g
        Any dual variable with the shape of ``Φ(θ)``; ``g_μ = ∇R(E_μΦ)`` gives the tightest
        bound for the measure ``μ``.
    temperature
        λ > 0.
    rng_key
        Key for the draws of ν.
    num_samples
        ``K ≥ 1``.
    particles
        A particle pytree, used only for the shape of one particle (and ``p``).
    batch_size
        Draws whose features are computed at once (memory ``batch_size × dim Φ``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y = jnp.ones((8, 2)), jnp.zeros(8)
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    >>> particles = net.init_particles(jax.random.key(0), 64, input_dim=2)
    >>> g = objective.risk_gradient(objective.mean_embedding(particles))
    >>> dual = dual_objective(objective, g, 0.1, jax.random.key(1), particles=particles)
    >>> bool(dual <= objective.energy(particles) + 0.1 * 10.0)
    True
    """
    check_dual_arguments(objective, temperature, num_samples, batch_size, particles)
    _check_g(objective, g, particles)
    dual, _ = dual_bound_and_stderr(
        objective, g, temperature, rng_key, num_samples, particles, batch_size
    )
    return dual


def primal_objective(
    objective,
    particles: ArrayTree,
    temperature: float | Array,
    *,
    num_neighbors: int = 1,
    block_size: int = 1024,
    sharding: NamedSharding | None = None,
) -> Array:
    """``Ĝ(μ_Θ) = F(μ_Θ) + λ (−Ĥ(μ) − E_μ log ν)``, with the k-nearest-neighbour entropy ``Ĥ``.

    The particles stand for the measure they are drawn from: ``F`` is evaluated at ``μ_Θ`` and
    the entropy is estimated by :func:`mflangevin.certificates.entropy.entropy` (see its bias and
    variance).
    ``log ν`` must be normalised: it is for Gaussian references and ``reference=None`` (Lebesgue);
    a density reference is used as given.

    Parameters
    ----------
    objective
        Any objective with ``energy`` and ``reference``.
    particles
        Particle pytree, leading axis ``N > num_neighbors``.
    temperature
        λ > 0.
    num_neighbors, block_size, sharding
        ``k``, block size and particle layout of the entropy estimator (see
        :func:`mflangevin.certificates.entropy.kth_neighbor_distance`).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> objective = mflangevin.MeanFieldObjective(
    ...     feature_map=lambda theta, _: theta,
    ...     risk=lambda z, _: 0.5 * jnp.sum(z**2),
    ...     reference=mflangevin.gaussian_reference(1.0),
    ... )
    >>> particles = jax.random.normal(jax.random.key(0), (2000, 2))  # μ = ν: KL(μ‖ν) = 0
    >>> abs(float(primal_objective(objective, particles, 1.0, num_neighbors=3))) < 0.1
    True
    """
    check_positive("temperature", temperature)
    check_neighbors(num_particles(particles, "particles"), num_neighbors, block_size)
    log_reference = jax.vmap(lambda theta: _reference_log_density(objective, theta))(particles)
    negative_entropy = -entropy(particles, num_neighbors, block_size, sharding=sharding)
    return objective.energy(particles) + temperature * (negative_entropy - jnp.mean(log_reference))


def duality_gap(
    objective: StructuredObjective,
    particles: ArrayTree,
    temperature: float | Array,
    rng_key: PRNGKey,
    *,
    num_samples: int = 4096,
    num_neighbors: int = 1,
    block_size: int = 1024,
    sharding: NamedSharding | None = None,
) -> Certificate:
    """Primal ``Ĝ(μ)``, dual ``D(g_μ)`` and the gap ``Ĝ − D = λ KL(μ ‖ p_μ) ≥ G(μ) − G(μ*)``.

    The gap bounds the suboptimality of ``μ`` in free energy: when it is small, so is the
    distance to the optimum (``λ KL(μ ‖ μ*)``). Both estimates carry errors: the entropy estimate
    in the primal (bias growing with the dimension) and the Monte-Carlo normaliser in the dual
    (``dual_stderr``).

    Parameters
    ----------
    objective
        As for :func:`dual_objective`.
    particles
        Particle pytree, leading axis ``N > num_neighbors``.
    temperature
        λ > 0.
    rng_key
        Key for the draws of ν in the dual.
    num_samples
        ``K``, draws of ν.
    num_neighbors, block_size
        As for :func:`primal_objective` (``block_size`` also batches the draws of ν).
    sharding
        How the particles are split over devices (read off them by default; see
        :func:`mflangevin.sharding.particle_sharding`): the neighbour search and the draws of ν
        are then split the same way, each device doing ``1/D`` of the work.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y = jnp.ones((8, 2)), jnp.zeros(8)
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    >>> particles = net.init_particles(jax.random.key(0), 64, input_dim=2)
    >>> certificate = duality_gap(objective, particles, 0.1, jax.random.key(1))
    >>> certificate.gap.shape
    ()
    """
    check_dual_arguments(objective, temperature, num_samples, block_size, particles)
    check_neighbors(num_particles(particles, "particles"), num_neighbors, block_size)
    sharding = particle_sharding(particles) if sharding is None else sharding
    settings = (num_samples, num_neighbors, block_size, sharding)
    if jax.tree.leaves(objective) == [objective]:  # not a pytree: computed op by op
        certificate = _certificate(objective, particles, temperature, rng_key, *settings)
    else:  # one compiled program per settings and shapes, rather than op by op
        certificate = _compiled_certificate(objective, particles, temperature, rng_key, *settings)
    warn_if_degenerate(certificate.dual_ess)
    return certificate


def _certificate(
    objective, particles, temperature, rng_key, num_samples, num_neighbors, block_size, sharding
) -> Certificate:
    g = objective.risk_gradient(objective.mean_embedding(particles))
    primal = primal_objective(
        objective,
        particles,
        temperature,
        num_neighbors=num_neighbors,
        block_size=block_size,
        sharding=sharding,
    )
    dual, dual_stderr, dual_ess = dual_bound_and_stderr(
        objective,
        g,
        temperature,
        rng_key,
        num_samples,
        particles,
        block_size,
        return_ess=True,
        sharding=sharding,
    )
    return Certificate(primal, dual, primal - dual, dual_stderr, dual_ess)


_compiled_certificate = jax.jit(_certificate, static_argnums=(4, 5, 6, 7))
