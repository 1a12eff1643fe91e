"""Particle dual averaging (PDA), ``math.md`` §4.

Dual averaging over measures for ``G(μ) = F(μ) + λ KL(μ ‖ ν)`` with a structured
``F(μ) = R(E_μ Φ) + E_μ r``. Outer step ``t`` freezes ``g_t = ∇R(E_{μ(Θ̃_t)} Φ)``, adds it with
weight ``t`` to the dual average, and runs ``K_t`` Langevin steps at unit temperature on the
potential

    V_t(θ) = c_t [ ⟨ḡ_t, Φ(θ)⟩ + r(θ) ] / λ − c_t log ν(θ),   ḡ_t = Σ_{s≤t} s g_s / Σ_{s≤t} s,

    θ_i ← θ_i − η_t ∇V_t(θ_i) + √(2η_t) ξ_i.

With ``normalisation="paper"`` (default) the entropy is weighted by ``Σ_{s≤t+1} s`` and the rest
by ``Σ_{s≤t} s``, so ``c_t = t / (t + 2)``; for ``ν`` Lebesgue and ``r = λ₁‖θ‖²`` this is the
potential of the paper. With ``normalisation="average"``, ``c_t = 1``: ``exp(−V_t)`` is the
proximal Gibbs measure of the averaged first variation. The state keeps ``Σ s g_s`` (an
``m``-vector), never past particle sets.

Reference: Nitanda, Wu, Suzuki, *Particle Dual Averaging: Optimization of Mean Field Neural
Networks with Global Convergence Rate Analysis*, NeurIPS 2021.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm

from mflangevin._checks import check_positive
from mflangevin.certificates import dual_objective
from mflangevin.kernels import _pda_data
from mflangevin.kernels.mfld import langevin_update, schedule_value
from mflangevin.types import Array, ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["PDAState", "PDAInfo", "init", "build_kernel", "as_top_level_api"]

NORMALISATIONS = ("paper", "average")
# The dual bound draws ν with a key folded from the step key, so requesting it leaves the
# trajectory unchanged.
_DUAL_STREAM = 0x706461
OUTPUTS = ("random", "last")


class PDAState(NamedTuple):
    """State of PDA after ``t = count`` outer steps.

    ``position`` is the current iterate ``Θ̃_{t+1}``, from which the next inner loop starts;
    ``output`` the iterate the output rule selects among ``Θ̃_2 … Θ̃_{t+1}``; ``weighted_sum``
    is ``Σ_{s≤t} s g_s`` and ``weight_sum`` is ``Σ_{s≤t} s``. In online mode ``samples`` holds the
    data the ``g_s`` were computed on (``None`` otherwise).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2))
    >>> state = init(jnp.ones((8, 2)), objective)
    >>> state.output is state.position, state.weighted_sum.shape, state.samples is None
    (True, (2,), True)
    """

    position: ArrayTree
    output: ArrayTree
    weighted_sum: Array
    weight_sum: Array
    count: Array
    samples: ArrayTree | None = None

    @property
    def particles(self) -> ArrayTree:
        """Alias of ``position``: the particle pytree, leading axis ``N``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from mflangevin import MeanFieldObjective
        >>> objective = MeanFieldObjective(lambda theta, _: theta, lambda z, _: jnp.sum(z))
        >>> state = init(jnp.ones((8, 2)), objective)
        >>> state.particles is state.position
        True
        """
        return self.position


class PDAInfo(NamedTuple):
    """What one outer PDA step saw.

    ``energy`` is ``F(μ)`` at the particles the step started from, on the step's data (the full
    data, the minibatch or the fresh sample); ``dual_bound`` is ``D(g_t)``, a lower bound on
    ``min G`` (``None`` unless requested); ``is_divergent`` is true when an inner proposal was
    non-finite or beyond the divergence threshold (that inner step was refused).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> objective = mflangevin.MeanFieldObjective(
    ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
    ... )
    >>> algorithm = mflangevin.pda(objective, step_size=0.01, temperature=0.1, num_inner_steps=5)
    >>> _, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros((16, 2))))
    >>> info.dual_bound is None, bool(info.is_divergent), int(info.num_inner_steps)
    (True, False, 5)
    """

    energy: Array
    dual_bound: Array | None
    is_divergent: Array
    step_size: Array
    num_inner_steps: Array


def init(
    position: ArrayTree,
    objective,
    rng_key: PRNGKey | None = None,
    *,
    batch_size: int | None = None,
    data_sampler: Callable[[PRNGKey], ArrayTree] | None = None,
    num_outer_steps: int | None = None,
) -> PDAState:
    """Start PDA from the particles ``position`` with an empty dual average.

    Parameters
    ----------
    position
        The initial particles ``Θ̃_1`` (every leaf with leading axis ``N``).
    objective
        The structured objective (it sizes the dual average ``Σ s g_s``).
    rng_key
        Online mode only: draws the sample that fills the not yet used slots of the sample
        store (they carry zero weight); defaults to ``jax.random.key(0)``.
    batch_size, data_sampler, num_outer_steps
        The data mode, see :func:`as_top_level_api`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2))
    >>> state = init(jnp.ones((8, 2)), objective)
    >>> state.weighted_sum.shape, int(state.count)
    ((2,), 0)
    """
    _pda_data.check_structured(objective)
    samples = None
    if data_sampler is not None:
        key = jax.random.key(0) if rng_key is None else rng_key
        samples = _pda_data.empty_store(key, data_sampler, num_outer_steps)
        objective = dataclasses.replace(objective, data=samples)
    per_sample = batch_size is not None or data_sampler is not None
    _pda_data.check_fit(position, objective, per_sample)
    position = jax.tree.map(jnp.asarray, position)
    embedding = jax.eval_shape(objective.mean_embedding, position)
    dtype = embedding.dtype
    return PDAState(
        position=position,
        output=position,
        weighted_sum=jnp.zeros(embedding.shape, dtype),
        weight_sum=jnp.zeros((), dtype),
        count=jnp.zeros((), jnp.int32),
        samples=samples,
    )


def build_kernel(
    normalisation: str = "paper",
    output: str = "random",
    batch_size: int | None = None,
    data_sampler: Callable[[PRNGKey], ArrayTree] | None = None,
    num_outer_steps: int | None = None,
    divergence_threshold: float = 1e6,
    dual_samples: int | None = None,
) -> Callable:
    """Build the low-level PDA kernel (one call = one outer step).

    Parameters are those of :func:`as_top_level_api` that fix the algorithm's structure.

    The step key is split into a data key (minibatch indices or the online sample), an inner key
    (inner step ``k`` draws its noise from ``fold_in(inner_key, k)``) and an output key.

    Returns
    -------
    ``kernel(rng_key, state, objective, step_size, temperature, num_inner_steps)
    -> (state, info)``, with this outer step's ``η_t``, ``λ`` and ``K_t``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2))
    >>> kernel = build_kernel(output="last")
    >>> state = init(jnp.ones((8, 2)), objective)
    >>> state, info = kernel(jax.random.key(0), state, objective, 0.01, 0.1, 5)
    >>> int(state.count), int(info.num_inner_steps)
    (1, 5)
    """
    _pda_data.check_choice("normalisation", normalisation, NORMALISATIONS)
    _pda_data.check_choice("output", output, OUTPUTS)

    def kernel(rng_key, state, objective, step_size, temperature, num_inner_steps):
        key_data, key_inner, key_output = jax.random.split(rng_key, 3)
        t = state.count + 1
        dtype = state.weight_sum.dtype
        position = state.position

        # g_t on this step's data, placed in the dual average's coordinates.
        step_objective, inner_objective, place, samples = _pda_data.step_data(
            key_data, state, objective, batch_size, data_sampler, num_outer_steps
        )
        embedding = step_objective.mean_embedding(position)
        energy = step_objective.risk(embedding, step_objective.data)
        energy = energy + step_objective.mean_penalty(position)
        g = step_objective.risk_gradient(embedding)
        weight = t.astype(dtype)
        weighted_sum, dropped = place(state.weighted_sum, weight * g)
        weight_sum = state.weight_sum + weight - dropped

        g_bar = weighted_sum / weight_sum
        scale = weight_sum / (weight_sum + weight + 1) if normalisation == "paper" else 1.0
        lam = jnp.asarray(temperature, dtype)

        def grad_potential(particles):
            drift = inner_objective.first_variation_grad(g_bar, particles)
            if inner_objective.reference is not None:
                score = inner_objective.reference.score(particles)
                drift = jax.tree.map(lambda d, s: d - lam * s, drift, score)
            return jax.tree.map(lambda d: (scale / lam) * d, drift)

        def inner_step(k, carry):
            particles, diverged = carry
            particles, is_divergent = langevin_update(
                jax.random.fold_in(key_inner, k),
                particles,
                grad_potential(particles),
                step_size,
                jnp.ones((), dtype),
                divergence_threshold,
            )
            return particles, diverged | is_divergent

        new_position, diverged = jax.lax.fori_loop(
            0, num_inner_steps, inner_step, (position, jnp.zeros((), bool))
        )

        if output == "random":
            # Weighted reservoir of size one: Θ̃_{t+1} replaces the held iterate with probability
            # (t+1) / Σ_{s=2}^{t+1} s, which leaves P[t̂ = s] ∝ s after every step.
            total = (weight + 1) * (weight + 2) / 2 - 1
            accept = jax.random.uniform(key_output, dtype=dtype) * total < weight + 1
            new_output = jax.tree.map(
                lambda new, old: jnp.where(accept, new, old), new_position, state.output
            )
        else:
            new_output = new_position

        dual = None
        if dual_samples is not None:
            key_dual = jax.random.fold_in(rng_key, _DUAL_STREAM)
            dual = dual_objective(
                step_objective, g, temperature, key_dual, dual_samples, particles=position
            )
        info = PDAInfo(
            energy=energy,
            dual_bound=dual,
            is_divergent=diverged,
            step_size=jnp.asarray(step_size),
            num_inner_steps=jnp.asarray(num_inner_steps),
        )
        new_state = PDAState(new_position, new_output, weighted_sum, weight_sum, t, samples)
        return new_state, info

    return kernel


def as_top_level_api(
    objective,
    step_size: ScalarOrSchedule,
    temperature: float,
    num_inner_steps: int | Callable[[Array], Array],
    *,
    normalisation: str = "paper",
    output: str = "random",
    batch_size: int | None = None,
    data_sampler: Callable[[PRNGKey], ArrayTree] | None = None,
    num_outer_steps: int | None = None,
    divergence_threshold: float = 1e6,
    dual_samples: int | None = None,
) -> SamplingAlgorithm:
    """Particle dual averaging over ``N`` particles; one ``step`` is one outer iteration.

    Parameters
    ----------
    objective
        A :class:`~mflangevin.MeanFieldObjective`: PDA needs the first variation at arbitrary θ,
        which a plain ``energy_fn`` does not give. Its reference ν enters ``V_t`` as
        ``−c_t log ν``.
    step_size
        Inner step size ``η_t > 0`` of the unit-temperature Langevin steps on ``V_t``, or a
        schedule ``t − 1 -> η_t``. ``V_t`` is ``1/λ`` times the MFLD potential, so ``η_t = λη``
        matches an MFLD step size ``η``.
    temperature
        λ > 0, the entropy weight (a constant: it is part of the objective).
    num_inner_steps
        ``K_t ≥ 1``: an integer (the inner loop is a ``jax.lax.scan``), or a schedule
        ``t − 1 -> K_t`` returning an integer (then a ``jax.lax.while_loop``).
    normalisation
        ``"paper"`` (entropy weighted by ``Σ_{s≤t+1} s``, ``c_t = t/(t+2)``) or ``"average"``
        (``c_t = 1``); see the module docstring.
    output
        ``"random"``: ``state.output`` is ``Θ̃_t̂`` with ``P[t̂ = s] ∝ s`` over ``s = 2 … t+1``,
        drawn on the fly (a weighted reservoir of one particle set); ``"last"``: the last iterate.
    batch_size
        Minibatch mode: ``g_t`` from ``B`` samples drawn without replacement on device, placed at
        their indices (unbiased for ``g`` when the risk is a mean over the data's leading axis).
    data_sampler
        Online mode: a pure JAX function ``rng_key -> data`` giving a fresh sample (leading axis
        ``B``) each outer step. The sample's ``g_t`` lives on that sample, so the state stores the
        samples of the last ``num_outer_steps`` outer steps (memory and inner cost
        ``O(num_outer_steps · B)``, as the paper's online PDA); beyond that the oldest step leaves
        the dual average (a sliding window). The kernel stays pure: same key, same sample.
    num_outer_steps
        Online mode: the number of outer steps whose samples the state keeps.
    divergence_threshold
        A proposed coordinate beyond this magnitude (or non-finite) refuses that inner step.
    dual_samples
        If given, ``info.dual_bound`` is the dual ``D(g_t)`` of
        :func:`~mflangevin.certificates.dual_objective` at the step's ``g_t``, with this many
        draws of ν (the objective needs ``risk_conjugate``). With the full data it is a lower
        bound on ``min G``; in minibatch and online modes it is that of the step's sample.

    Returns
    -------
    A ``blackjax.base.SamplingAlgorithm``: ``init(position, rng_key=None)`` and
    ``step(rng_key, state) -> (state, info)``.

    Notes
    -----
    Minibatch and online modes need per-sample features: ``Φ(θ, data)`` indexed by the data's
    leading axis, as for the objectives of ``MeanFieldNetwork``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> objective = mflangevin.MeanFieldObjective(
    ...     feature_map=lambda theta, _: theta,
    ...     risk=lambda z, _: 0.5 * jnp.sum((z - 1.0) ** 2),
    ...     penalty=lambda theta: 0.5 * jnp.sum(theta**2),
    ... )
    >>> algorithm = mflangevin.pda(objective, step_size=0.01, temperature=0.1, num_inner_steps=10)
    >>> state = algorithm.init(jnp.zeros((16, 2)))
    >>> state, info = jax.jit(algorithm.step)(jax.random.key(0), state)
    >>> state.particles.shape, bool(info.is_divergent)
    ((16, 2), False)
    """
    _pda_data.check_structured(objective)
    check_positive("step_size", step_size)
    if callable(temperature):
        raise TypeError("temperature: PDA needs a constant λ (it defines the objective).")
    check_positive("temperature", temperature)
    check_positive("divergence_threshold", divergence_threshold)
    _pda_data.check_inner_steps(num_inner_steps)
    _pda_data.check_mode(objective, batch_size, data_sampler, num_outer_steps)
    _pda_data.check_dual(objective, dual_samples)
    kernel = build_kernel(
        normalisation,
        output,
        batch_size,
        data_sampler,
        num_outer_steps,
        divergence_threshold,
        dual_samples,
    )

    def init_fn(position: ArrayTree, rng_key: PRNGKey | None = None) -> PDAState:
        return init(
            position,
            objective,
            rng_key,
            batch_size=batch_size,
            data_sampler=data_sampler,
            num_outer_steps=num_outer_steps,
        )

    def step_fn(rng_key: PRNGKey, state: PDAState) -> tuple[PDAState, PDAInfo]:
        return kernel(
            rng_key,
            state,
            objective,
            schedule_value(step_size, state.count),
            temperature,
            num_inner_steps(state.count) if callable(num_inner_steps) else num_inner_steps,
        )

    return SamplingAlgorithm(init_fn, step_fn)
