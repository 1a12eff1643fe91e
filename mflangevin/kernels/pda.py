"""Particle dual averaging (PDA), ``docs/theory/pda.md``.

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
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm

from mflangevin import keys
from mflangevin._checks import (
    check_choice,
    check_count,
    check_factor,
    check_particles,
    check_positive,
)
from mflangevin.kernels import data
from mflangevin.kernels.diffusions import add_reference_score, energy_diverged, langevin_update
from mflangevin.objectives import StructuredObjective, num_samples
from mflangevin.schedules import schedule_value
from mflangevin.sharding import place_like_samples, replicate_like_particles
from mflangevin.types import Array, ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["PDAState", "PDAInfo", "init", "build_kernel", "as_top_level_api"]

NORMALISATIONS = ("paper", "average")
OUTPUTS = ("random", "last")


class PDAState(NamedTuple):
    """State of PDA after ``t = count`` outer steps.

    ``position`` is the current iterate ``Θ̃_{t+1}``, from which the next inner loop starts;
    ``output`` the iterate the output rule selects among ``Θ̃_2 … Θ̃_{t+1}``; ``weighted_sum``
    is ``Σ_{s≤t} s g_s`` and ``weight_sum`` is ``Σ_{s≤t} s``; ``best_energy`` is the lowest
    energy the divergence test has seen: the full data's ``F(μ)`` at every step; in minibatch
    mode ``F(μ_0)`` (one pass over the data, by ``init``), then the mean of the minibatch
    energies over each epoch of ``⌊n/B⌋`` outer steps; ``inf`` in online mode. In online mode
    ``samples`` holds the data the ``g_s`` were computed on (``None`` otherwise); in minibatch
    mode ``batches`` is where the minibatch stream stands and ``energy_sum`` the sum of this
    epoch's minibatch energies (``None`` otherwise).

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
    best_energy: Array
    samples: ArrayTree | None = None
    batches: data.MinibatchState | None = None
    energy_sum: Array | None = None

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
    ``min G`` (``None`` without ``dual_fn``); ``is_divergent`` is true when an inner proposal was
    non-finite or beyond the divergence threshold (that particle kept its position for that
    inner step while the others moved), or when the energy diverged (see
    :func:`~mflangevin.kernels.diffusions.energy_diverged`; flagged only); ``num_refused``
    counts the refused particle moves over the step's ``K_t`` inner steps;
    ``inner_step_size`` is this step's ``η_t``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> objective = mflangevin.MeanFieldObjective(
    ...     lambda theta, _: theta, lambda z, _: 0.5 * jnp.sum(z**2)
    ... )
    >>> algorithm = mflangevin.pda(objective, 0.01, temperature=0.1, num_inner_steps=5)
    >>> _, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros((16, 2))))
    >>> info.dual_bound is None, bool(info.is_divergent), int(info.num_refused)
    (True, False, 0)
    """

    energy: Array
    dual_bound: Array | None
    is_divergent: Array
    inner_step_size: Array
    num_inner_steps: Array
    num_refused: Array


def init(
    position: ArrayTree,
    objective: StructuredObjective,
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
    _check_structured(objective)
    samples = None
    if data_sampler is not None:
        key = jax.random.key(0) if rng_key is None else rng_key
        samples = _empty_store(key, data_sampler, num_outer_steps)
        objective = dataclasses.replace(objective, data=samples)
    per_sample = batch_size is not None or data_sampler is not None
    _check_fit(position, objective, per_sample)
    position = jax.tree.map(jnp.asarray, position)
    embedding = jax.eval_shape(objective.mean_embedding, position)
    dtype = embedding.dtype
    batches = None if batch_size is None else data.minibatch(batch_size).init(objective)
    # Laid out as a compiled step returns them: the full-batch accumulator like the data's
    # samples, the rest replicated over the particles' mesh (if any).
    weighted_sum = jnp.zeros(embedding.shape, dtype)
    if per_sample:
        weighted_sum = replicate_like_particles(weighted_sum, position)
    else:
        weighted_sum = place_like_samples(weighted_sum, objective.data, position)
    best_energy, energy_sum = jnp.full((), jnp.inf, dtype), None
    if batch_size is not None:  # F(μ_0), the first value of the divergence test: one pass
        best_energy = _energy_and_g(objective, position)[0].astype(dtype)
        energy_sum = jnp.zeros((), dtype)
    weight_sum, count, best_energy, batches, energy_sum = replicate_like_particles(
        (jnp.zeros((), dtype), jnp.zeros((), jnp.int32), best_energy, batches, energy_sum),
        position,
    )
    return PDAState(
        position=position,
        output=position,
        weighted_sum=weighted_sum,
        weight_sum=weight_sum,
        count=count,
        best_energy=best_energy,
        samples=samples,
        batches=batches,
        energy_sum=energy_sum,
    )


def build_kernel(
    normalisation: str = "paper",
    output: str = "random",
    batch_size: int | None = None,
    data_sampler: Callable[[PRNGKey], ArrayTree] | None = None,
    num_outer_steps: int | None = None,
    divergence_threshold: float = 1e6,
    dual_fn: Callable | None = None,
    divergence_factor: float = 10.0,
) -> Callable:
    """Build the low-level PDA kernel (one call = one outer step).

    Parameters are those of :func:`as_top_level_api` that fix the algorithm's structure.

    The step key is split into a data key (minibatch indices or the online sample), an inner key
    (inner step ``k`` draws its noise from ``fold_in(inner_key, k)``) and an output key.

    Returns
    -------
    ``kernel(rng_key, state, objective, inner_step_size, temperature, num_inner_steps)
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
    check_choice("normalisation", normalisation, NORMALISATIONS)
    check_choice("output", output, OUTPUTS)
    batches = None if batch_size is None else data.minibatch(batch_size)

    def kernel(rng_key, state, objective, inner_step_size, temperature, num_inner_steps):
        key_data, key_inner, key_output = keys.pda_keys(rng_key)
        t = state.count + 1
        dtype = state.weight_sum.dtype
        weight = t.astype(dtype)
        lam = jnp.asarray(temperature, dtype)

        # g_t on this step's samples, added with weight t to the dual average.
        step = _step_samples(key_data, state, objective, batches, data_sampler, num_outer_steps)
        energy, g = _energy_and_g(step.objective, state.position)
        weighted_sum, weight_sum, samples = _accumulate(state, step, weight * g, num_outer_steps)
        scale = weight_sum / (weight_sum + weight + 1) if normalisation == "paper" else 1.0
        inner_objective = objective if samples is None else step.inner_objective(samples)

        grad_potential = _potential_gradient(
            inner_objective, weighted_sum, weight_sum, scale, lam, batches
        )
        new_position, num_refused, batches_state = _inner_langevin(
            key_inner,
            state.position,
            step.batches,
            grad_potential,
            inner_step_size,
            dtype,
            num_inner_steps,
            divergence_threshold,
        )
        new_output = _output_rule(output, key_output, weight, new_position, state.output)

        dual = None
        if dual_fn is not None:
            dual = dual_fn(
                step.objective, g, temperature, keys.dual_key(rng_key), particles=state.position
            )
        # A refused particle move, or an online sample outside the risk's domain.
        diverged = (num_refused > 0) | jnp.logical_not(step.in_domain) | ~jnp.isfinite(energy)
        best, energy_sum = state.best_energy, state.energy_sum
        tracked, ready = energy.astype(best.dtype), step.sample is None
        if batches is not None:  # each epoch's mean of the minibatch energies
            epoch = max(num_samples(objective.data) // batches.batch_size, 1)
            total = energy_sum + tracked
            tracked, ready = total / epoch, t % epoch == 0
            energy_sum = jnp.where(ready, 0, total)
        grew = energy_diverged(tracked, best, lam, state.position, divergence_factor)
        diverged |= ready & grew
        best = jnp.where(ready, jnp.fmin(best, tracked), best)
        info = PDAInfo(
            energy=energy,
            dual_bound=dual,
            is_divergent=diverged,
            inner_step_size=jnp.asarray(inner_step_size),
            num_inner_steps=jnp.asarray(num_inner_steps),
            num_refused=num_refused,
        )
        new_state = PDAState(
            new_position,
            new_output,
            weighted_sum,
            weight_sum,
            t,
            best,
            samples,
            batches_state,
            energy_sum,
        )
        return new_state, info

    return kernel


class _Step(NamedTuple):
    """This outer step's samples: the objective on them, their indices into the dual average's
    coordinates (minibatch mode), their slot in the sample store (online mode) and the
    minibatch stream's state."""

    objective: object
    indices: Array | None
    start: Array | None
    sample: ArrayTree | None
    batches: data.MinibatchState | None
    in_domain: Array | bool = True

    def inner_objective(self, samples):
        return dataclasses.replace(self.objective, data=samples)


def _step_samples(rng_key, state, objective, batches, data_sampler, num_outer_steps) -> _Step:
    if data_sampler is not None:
        draw, _ = data.stream(data_sampler).draw(rng_key, objective, ())
        size = num_samples(draw.objective.data)
        start = (state.count % num_outer_steps) * size
        return _Step(draw.objective, None, start, draw.objective.data, None, draw.in_domain)
    if batches is not None:
        draw, batches_state = batches.draw(rng_key, objective, state.batches)
        return _Step(draw.objective, draw.indices, None, None, batches_state)
    return _Step(objective, None, None, None, None)


def _energy_and_g(objective, position) -> tuple[Array, Array]:
    """``F(μ)`` on the step's samples and ``g_t = ∇R(E_μΦ)`` there."""
    embedding = objective.mean_embedding(position)
    energy = objective.risk(embedding, objective.data) + objective.mean_penalty(position)
    return energy, objective.risk_gradient(embedding)


def _accumulate(state, step: _Step, weighted_g, num_outer_steps):
    """``Σ_{s≤t} s g_s`` and ``Σ_{s≤t} s`` after adding ``t g_t`` at its coordinates (and, online,
    the sample store with the step's sample in its slot, the oldest step leaving the window)."""
    dtype = state.weight_sum.dtype
    weight = (state.count + 1).astype(dtype)
    if step.sample is not None:
        t = state.count + 1
        dropped = jnp.where(t > num_outer_steps, t - num_outer_steps, 0).astype(dtype)
        weighted_sum = jax.lax.dynamic_update_slice_in_dim(
            state.weighted_sum, weighted_g, step.start, axis=0
        )
        samples = jax.tree.map(
            lambda store, x: jax.lax.dynamic_update_slice_in_dim(store, x, step.start, axis=0),
            state.samples,
            step.sample,
        )
        return weighted_sum, state.weight_sum + weight - dropped, samples
    if step.indices is not None:
        weighted_sum = state.weighted_sum.at[step.indices].add(weighted_g)
    else:
        weighted_sum = state.weighted_sum + weighted_g
    return weighted_sum, state.weight_sum + weight, None


def _potential_gradient(objective, weighted_sum, weight_sum, scale, lam, batches):
    """``rng_key, particles, stream -> (∇V_t, stream)`` with ``ḡ_t = Σ s g_s / Σ s``.

    With minibatches, ``∇⟨ḡ_t, Φ(θ)⟩`` is estimated on ``B`` coordinates drawn from the same
    stream, ``(n/B) Σ_{j∈I} ḡ_{t,j} ∇Φ_j(θ)`` (unbiased), so an inner step costs ``O(B·N·p)``."""

    def finish(drift, particles):
        drift = add_reference_score(drift, objective.reference, lam, particles)
        return jax.tree.map(lambda d: (scale / lam) * d, drift)

    if batches is None:

        def grad_potential(rng_key, particles, stream):
            g_bar = weighted_sum / weight_sum
            return finish(objective.first_variation_grad(g_bar, particles), particles), stream

        return grad_potential

    n = num_samples(objective.data)

    def grad_potential(rng_key, particles, stream):
        draw, stream = batches.draw(rng_key, objective, stream)
        g_batch = weighted_sum[draw.indices] * (n / batches.batch_size) / weight_sum
        drift = draw.objective.first_variation_grad(g_batch, particles)
        return finish(drift, particles), stream

    return grad_potential


def _inner_langevin(
    rng_key, position, stream, grad_potential, inner_step_size, dtype, num_inner_steps, threshold
):
    """``K_t`` unit-temperature Langevin steps on ``V_t``; inner step ``k`` draws its noise (and
    its minibatch) from ``fold_in(rng_key, k)``. A particle whose proposal is non-finite or
    beyond the threshold keeps its position for that inner step. Returns the particles, the
    number of refused particle moves, and the minibatch stream's state."""

    def inner_step(k, carry):
        particles, num_refused, stream = carry
        key = keys.inner_step_key(rng_key, k)
        drift, stream = grad_potential(keys.estimator_key(key), particles, stream)
        particles, refused = langevin_update(
            key, particles, drift, inner_step_size, jnp.ones((), dtype), threshold
        )
        return particles, num_refused + jnp.sum(refused, dtype=jnp.int32), stream

    return jax.lax.fori_loop(
        0, num_inner_steps, inner_step, (position, jnp.zeros((), jnp.int32), stream)
    )


def _output_rule(output, rng_key, weight, new_position, held):
    """``"last"``: the new iterate. ``"random"``: a weighted reservoir of size one, where
    ``Θ̃_{t+1}`` replaces the held iterate with probability ``(t+1) / Σ_{s=2}^{t+1} s``, which
    leaves ``P[t̂ = s] ∝ s`` after every step."""
    if output == "last":
        return new_position
    total = (weight + 1) * (weight + 2) / 2 - 1
    accept = jax.random.uniform(rng_key, dtype=weight.dtype) * total < weight + 1
    return jax.tree.map(lambda new, old: jnp.where(accept, new, old), new_position, held)


def _check_structured(objective) -> None:
    """PDA needs the first variation at arbitrary θ: only a structured objective has it."""
    if not isinstance(objective, StructuredObjective):
        raise TypeError(
            "objective: PDA needs a MeanFieldObjective (the first variation ⟨g, Φ(θ)⟩ + r(θ) at "
            f"arbitrary θ); a plain energy_fn or EnergyObjective does not give it, got "
            f"{type(objective).__name__}."
        )


def _check_inner_steps(num_inner_steps) -> None:
    """``K_t``: a positive integer, or a schedule whose value at step 0 is one."""
    if callable(num_inner_steps):
        first = num_inner_steps(jnp.zeros((), jnp.int32))
        if not jnp.issubdtype(jnp.result_type(first), jnp.integer):
            raise TypeError(f"num_inner_steps: the schedule must return integers, got {first!r}.")
        check_count("num_inner_steps", int(first))
    else:
        check_count("num_inner_steps", num_inner_steps)


def _check_mode(objective, batch_size, data_sampler, num_outer_steps) -> None:
    """The data mode's arguments, checked before anything is traced."""
    if batch_size is not None and data_sampler is not None:
        raise ValueError("batch_size: give a batch size (minibatch) or a data_sampler (online).")
    if batch_size is not None:
        data.minibatch(batch_size).check(objective)
    if data_sampler is not None:
        if not callable(data_sampler):
            raise TypeError(f"data_sampler: expected a callable, got {data_sampler!r}.")
        if num_outer_steps is None:
            raise ValueError("num_outer_steps: the online mode needs it to size the sample store.")
        check_count("num_outer_steps", num_outer_steps)
        data.stream(data_sampler).check(objective)
    elif num_outer_steps is not None:
        raise ValueError("num_outer_steps: only the online mode (data_sampler) uses it.")


def _check_dual_fn(dual_fn, objective, position, temperature, data_sampler) -> None:
    """``dual_fn`` must accept ``(objective, g, λ, rng_key, particles=…)``: traced once, eagerly."""
    if dual_fn is None:
        return
    if data_sampler is not None:
        sample = jax.eval_shape(data_sampler, jax.random.key(0))
        objective = dataclasses.replace(objective, data=sample)

    def probe(objective):
        g = objective.risk_gradient(objective.mean_embedding(position))
        return dual_fn(objective, g, temperature, jax.random.key(0), particles=position)

    try:
        jax.eval_shape(probe, objective)
    except (TypeError, ValueError) as err:
        raise type(err)(f"dual_fn: calling it on the objective and g_t failed: {err}") from err


def _check_fit(position, objective, per_sample: bool) -> None:
    """The particles fit the objective; minibatch and online modes need per-sample features:
    ``Φ(θ, data)`` indexed by the data's leading axis."""
    check_particles(position, objective)
    if per_sample:
        n = num_samples(objective.data)
        shape = jax.eval_shape(objective.features, position).shape
        if len(shape) < 2 or shape[1] != n:
            raise ValueError(
                "objective: minibatch and online modes need per-sample features Φ(θ, data) "
                f"indexed by the data's leading axis (size {n}); got features of shape "
                f"{shape[1:]} per particle."
            )


def _empty_store(rng_key, data_sampler, num_outer_steps: int):
    """Sample store of ``num_outer_steps`` slots, filled with copies of one sample.

    Unused slots carry ``g = 0``; a real sample (rather than zeros) keeps their features finite.
    """
    sample = data_sampler(rng_key)
    return jax.tree.map(lambda x: jnp.concatenate([x] * num_outer_steps, axis=0), sample)


@functools.partial(jax.jit, static_argnums=0)
def _step(settings, rng_key, state, held):
    """One outer step of :func:`as_top_level_api`, compiled once per settings and data shapes:
    the held data are arguments (see :func:`mflangevin.kernels.data.hold`)."""
    structure, inner_step_size, temperature, num_inner_steps = data.thaw(settings)
    return build_kernel(*structure)(
        rng_key,
        state,
        held,
        schedule_value(inner_step_size, state.count),
        temperature,
        num_inner_steps(state.count) if callable(num_inner_steps) else num_inner_steps,
    )


def as_top_level_api(
    objective: StructuredObjective,
    inner_step_size: ScalarOrSchedule,
    temperature: float,
    num_inner_steps: int | Callable[[Array], Array],
    *,
    normalisation: str = "paper",
    output: str = "random",
    batch_size: int | None = None,
    data_sampler: Callable[[PRNGKey], ArrayTree] | None = None,
    num_outer_steps: int | None = None,
    divergence_threshold: float = 1e6,
    divergence_factor: float = 10.0,
    dual_fn: Callable | None = None,
) -> SamplingAlgorithm:
    """Particle dual averaging over ``N`` particles; one ``step`` is one outer iteration.

    Parameters
    ----------
    objective
        A :class:`~mflangevin.MeanFieldObjective`: PDA needs the first variation at arbitrary θ,
        which a plain ``energy_fn`` does not give. Its reference ν enters ``V_t`` as
        ``−c_t log ν``.
    inner_step_size
        Step size ``η_t > 0`` of the inner, unit-temperature Langevin steps on ``V_t``, or a
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
        Minibatch mode: ``g_t`` from ``B`` samples drawn on device
        (:func:`mflangevin.kernels.data.minibatch`), placed at their indices (unbiased for ``g``
        when the risk is a mean over the data's leading axis). Each inner step estimates
        ``∇⟨ḡ_t, Φ(θ)⟩`` on ``B`` coordinates drawn from the same stream,
        ``(n/B) Σ_{j∈I} ḡ_{t,j} ∇Φ_j(θ)`` (unbiased), so every step costs ``O(B·N·p)`` whatever
        ``n`` is: the inner loop is then stochastic-gradient Langevin dynamics on ``V_t``.
    data_sampler
        Online mode: a pure JAX function ``rng_key -> data`` giving a fresh sample (leading axis
        ``B``) each outer step. It is traced once into the compiled step, so the sample must be
        drawn from the key with JAX: a host-side iterator or generator would repeat one batch,
        and a sampler whose batch does not depend on the key is refused. The sample's ``g_t``
        lives on that sample, so the state stores the samples of the last ``num_outer_steps``
        outer steps (memory and inner cost ``O(num_outer_steps · B)``, as the paper's online
        PDA); beyond that the oldest step leaves the dual average (a sliding window). The kernel
        stays pure: same key, same sample.
    num_outer_steps
        Online mode: the number of outer steps whose samples the state keeps.
    divergence_threshold
        A proposed coordinate beyond this magnitude (or non-finite) refuses that inner step.
    divergence_factor
        An outer step whose energy exceeds the running best by more than
        ``(divergence_factor − 1) · max(|best|, λp)`` is flagged in ``info.is_divergent``
        (not refused); see :func:`~mflangevin.kernels.diffusions.energy_diverged`. In
        minibatch mode the energy compared is each epoch's mean of the minibatch energies
        (``⌊n/B⌋`` outer steps), starting from ``F(μ_0)``, which ``init`` computes (see
        :class:`PDAState`); no outer step makes a pass over the data for it. Online, only a
        non-finite energy is flagged.
    dual_fn
        If given, ``info.dual_bound`` is ``dual_fn(objective_t, g_t, λ, key, particles=Θ̃_t)``
        at every outer step, with the objective on the step's data and its ``g_t``, e.g.
        ``functools.partial(mflangevin.dual_objective, num_samples=1024)``: the dual ``D(g_t)``
        with 1024 draws of ν (the objective needs ``risk_conjugate``). With the full data it
        is a lower bound on ``min G``; in minibatch and online modes it is that of the step's
        sample. It leaves the trajectory unchanged (its key is a stream of its own).

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
    >>> algorithm = mflangevin.pda(objective, 0.01, temperature=0.1, num_inner_steps=10)
    >>> state = algorithm.init(jnp.zeros((16, 2)))
    >>> state, info = jax.jit(algorithm.step)(jax.random.key(0), state)
    >>> state.particles.shape, bool(info.is_divergent)
    ((16, 2), False)
    """
    _check_structured(objective)
    check_positive("inner_step_size", inner_step_size)
    if callable(temperature):
        raise TypeError("temperature: PDA needs a constant λ (it defines the objective).")
    check_positive("temperature", temperature)
    check_positive("divergence_threshold", divergence_threshold)
    check_factor(divergence_factor)
    _check_inner_steps(num_inner_steps)
    check_choice("normalisation", normalisation, NORMALISATIONS)
    check_choice("output", output, OUTPUTS)
    _check_mode(objective, batch_size, data_sampler, num_outer_steps)
    if dual_fn is not None and not callable(dual_fn):
        raise TypeError(f"dual_fn: expected a callable or None, got {dual_fn!r}.")
    structure = (
        normalisation,
        output,
        batch_size,
        data_sampler,
        num_outer_steps,
        divergence_threshold,
        dual_fn,
        float(divergence_factor),
    )
    settings = (structure, inner_step_size, temperature, num_inner_steps)

    def start(position: ArrayTree, rng_key: PRNGKey | None) -> PDAState:
        _check_dual_fn(dual_fn, objective, position, temperature, data_sampler)
        return init(
            position,
            objective,
            rng_key,
            batch_size=batch_size,
            data_sampler=data_sampler,
            num_outer_steps=num_outer_steps,
        )

    return data.held_algorithm(objective, start, _step, settings, PDAState)
