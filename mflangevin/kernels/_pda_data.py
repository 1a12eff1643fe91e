"""Where the ``g_t`` of particle dual averaging come from: full batch, minibatch or online.

The dual average ``Σ_s s g_s`` is a vector over the coordinates of the feature map. With the full
data or a minibatch of it, these coordinates are fixed (one per datum): a minibatch ``g_t`` is
placed at its indices. Online, every outer step brings new data, so the coordinates are the
samples themselves: the state stores them next to their ``s g_s`` (``math.md`` §4).
"""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp

from mflangevin._checks import check_particles
from mflangevin.objectives import EnergyObjective

_STRUCTURED = ("mean_embedding", "risk_gradient", "first_variation_grad", "mean_penalty")


def check_structured(objective) -> None:
    """PDA needs the first variation at arbitrary θ: only a structured objective has it."""
    if isinstance(objective, EnergyObjective) or not all(
        hasattr(objective, name) for name in _STRUCTURED
    ):
        raise TypeError(
            "objective: PDA needs a MeanFieldObjective (the first variation ⟨g, Φ(θ)⟩ + r(θ) at "
            f"arbitrary θ); a plain energy_fn or EnergyObjective does not give it, got "
            f"{type(objective).__name__}."
        )


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}.")


def _check_count(name: str, value) -> int:
    try:
        value = operator.index(value)
    except TypeError as err:
        raise TypeError(f"{name}: expected an integer, got {value!r}.") from err
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}.")
    return value


def check_inner_steps(num_inner_steps) -> None:
    """``K_t``: a positive integer, or a schedule whose value at step 0 is one."""
    if callable(num_inner_steps):
        first = num_inner_steps(jnp.zeros((), jnp.int32))
        if not jnp.issubdtype(jnp.result_type(first), jnp.integer):
            raise TypeError(f"num_inner_steps: the schedule must return integers, got {first!r}.")
        _check_count("num_inner_steps", int(first))
    else:
        _check_count("num_inner_steps", num_inner_steps)


def num_samples(data, name: str) -> int:
    """The common leading-axis size of a data pytree."""
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(data)}
    if not sizes or None in sizes or len(sizes) != 1:
        raise ValueError(f"{name}: every data leaf needs the same leading sample axis.")
    return int(sizes.pop())


def check_mode(objective, batch_size, data_sampler, num_outer_steps) -> None:
    """The data mode's arguments, checked before anything is traced."""
    if batch_size is not None and data_sampler is not None:
        raise ValueError("batch_size: give a batch size (minibatch) or a data_sampler (online).")
    if batch_size is not None:
        batch_size = _check_count("batch_size", batch_size)
        if objective.data is None:
            raise ValueError("batch_size: the objective has no data to draw minibatches from.")
        n = num_samples(objective.data, "objective")
        if batch_size > n:
            raise ValueError(f"batch_size: {batch_size} exceeds the {n} samples of the data.")
    if data_sampler is not None:
        if not callable(data_sampler):
            raise TypeError(f"data_sampler: expected a callable, got {data_sampler!r}.")
        if num_outer_steps is None:
            raise ValueError("num_outer_steps: the online mode needs it to size the sample store.")
        _check_count("num_outer_steps", num_outer_steps)
        num_samples(jax.eval_shape(data_sampler, jax.random.key(0)), "data_sampler")
    elif num_outer_steps is not None:
        raise ValueError("num_outer_steps: only the online mode (data_sampler) uses it.")


def check_dual(objective, dual_samples) -> None:
    """The dual bound needs ``K ≥ 1`` draws of ν and the conjugate ``R*``."""
    if dual_samples is None:
        return
    _check_count("dual_samples", dual_samples)
    if objective.risk_conjugate is None:
        raise ValueError(
            "dual_samples: the dual bound needs the objective's risk_conjugate R*, and it has none."
        )


def check_fit(position, objective, per_sample: bool) -> None:
    """The particles fit the objective; minibatch and online modes need per-sample features:
    ``Φ(θ, data)`` indexed by the data's leading axis."""
    check_particles(position, objective)
    if per_sample:
        n = num_samples(objective.data, "objective")
        shape = jax.eval_shape(objective.features, position).shape
        if len(shape) < 2 or shape[1] != n:
            raise ValueError(
                "objective: minibatch and online modes need per-sample features Φ(θ, data) "
                f"indexed by the data's leading axis (size {n}); got features of shape "
                f"{shape[1:]} per particle."
            )


def empty_store(rng_key, data_sampler, num_outer_steps: int):
    """Sample store of ``num_outer_steps`` slots, filled with copies of one sample.

    Unused slots carry ``g = 0``; a real sample (rather than zeros) keeps their features finite.
    """
    sample = data_sampler(rng_key)
    return jax.tree.map(lambda x: jnp.concatenate([x] * num_outer_steps, axis=0), sample)


def step_data(rng_key, state, objective, batch_size, data_sampler, num_outer_steps):
    """This step's objective (for ``g_t`` and the energy), the objective of the inner potential,
    ``place(weighted_sum, t g_t) -> (weighted_sum, weight leaving the window)`` and the store."""
    if data_sampler is not None:
        sample = data_sampler(rng_key)
        size = num_samples(sample, "data_sampler")
        t = state.count + 1
        start = (state.count % num_outer_steps) * size
        samples = jax.tree.map(
            lambda store, x: jax.lax.dynamic_update_slice_in_dim(store, x, start, axis=0),
            state.samples,
            sample,
        )
        dropped = jnp.where(t > num_outer_steps, t - num_outer_steps, 0)

        def place(weighted_sum, value):
            new = jax.lax.dynamic_update_slice_in_dim(weighted_sum, value, start, axis=0)
            return new, dropped.astype(weighted_sum.dtype)

        step_objective = dataclasses.replace(objective, data=sample)
        return step_objective, dataclasses.replace(objective, data=samples), place, samples

    if batch_size is not None:
        n = num_samples(objective.data, "objective")
        indices = jax.random.choice(rng_key, n, (batch_size,), replace=False)

        def place(weighted_sum, value):
            return weighted_sum.at[indices].add(value), jnp.zeros((), weighted_sum.dtype)

        return objective.subsample(indices), objective, place, None

    def place(weighted_sum, value):
        return weighted_sum + value, jnp.zeros((), weighted_sum.dtype)

    return objective, objective, place, None
