"""MFLD on minibatches handed in by the caller, for streamed data.

The maths: docs/theory/variance-reduction.md.

The SGLD-style counterpart of :func:`mflangevin.gradients.sgd`: instead of drawing indices into
a data set held by the objective, each step takes the minibatch itself, so the data can come
from a stream, a file or a generator the caller controls. The step uses the objective on that
minibatch, whose drift is ``(1/B) Σ_{j∈I} v_j(Θ) + ∇r``::

    θ_i ← θ_i − η [ (1/B) Σ_{j∈I} v_j(Θ)_i + ∇r(θ_i) − λ ∇ log ν(θ_i) ] + √(2λη) ξ_i

an unbiased drift when the minibatch is a uniform draw from the population. As in
``blackjax.sgld`` the step takes the minibatch as an argument, so it does not fit
``blackjax.util.run_inference_algorithm``; drive it with a Python loop or a ``jax.lax.scan``
over stacked minibatches.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm

from mflangevin._checks import check_particles, check_positive, check_state
from mflangevin.kernels import data
from mflangevin.kernels.diffusions import MFLDState, initial_state, langevin_step
from mflangevin.kernels.gradients import Tracked, full
from mflangevin.objectives import StructuredObjective, num_particles
from mflangevin.schedules import schedule_value
from mflangevin.types import ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["init", "build_kernel", "as_top_level_api"]


def init(position: ArrayTree, rng_key: PRNGKey | None = None) -> MFLDState:
    """Start streaming MFLD from the particles ``position`` (every leaf with leading axis ``N``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> int(init(jnp.zeros((8, 2))).count)
    0
    """
    del rng_key
    check_particles(position)
    return initial_state(position)


def build_kernel(divergence_threshold: float = 1e6) -> Callable:
    """Build the low-level streaming kernel.

    Parameters
    ----------
    divergence_threshold
        See :func:`mflangevin.kernels.mfld.build_kernel`.

    Returns
    -------
    ``kernel(rng_key, state, objective, minibatch, step_size, temperature) -> (state, info)``,
    an :class:`~mflangevin.kernels.MFLDState` and
    :class:`~mflangevin.kernels.diffusions.MFLDInfo`; the minibatch replaces ``objective.data``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin.datasets import teacher_student
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y, _ = teacher_student(jax.random.key(0), 64, 3)
    >>> net = MeanFieldNetwork("tanh")
    >>> kernel, objective = build_kernel(), net.objective(X, y)
    >>> state = init(net.init_particles(jax.random.key(1), 16, 3))
    >>> state, info = kernel(jax.random.key(2), state, objective, (X[:8], y[:8]), 0.1, 1e-3)
    >>> int(info.num_gradient_evaluations)
    8
    """
    # The drift of the minibatch's objective, whose energy is an estimate: nothing is tracked
    # for the divergence test (the stream has no epochs), only a non-finite energy is flagged.
    source, exact = data.stream(), full()

    def estimate(*args):
        *estimate, _ = exact.estimate(*args)
        return (*estimate, Tracked.none(estimate[0]))

    estimator = exact._replace(estimate=estimate)

    def kernel(rng_key, state, objective, minibatch, step_size, temperature):
        if minibatch is None:
            raise TypeError(
                "minibatch: every step takes the batch it runs on, step(rng_key, state, "
                "minibatch), with the structure of the objective's data; got None."
            )
        draw, _ = source.draw(rng_key, objective, (), batch=minibatch)
        try:
            new_state, info = langevin_step(
                rng_key,
                state,
                draw.objective,
                estimator,
                step_size,
                temperature,
                divergence_threshold,
            )
        except TypeError as err:  # e.g. inputs of the wrong width for the particles
            raise ValueError(f"minibatch: does not fit the objective and particles: {err}") from err
        # A traced minibatch outside the risk's domain (e.g. labels not ±1): step refused, flagged.
        refused = jnp.logical_not(draw.in_domain)
        position = jax.tree.map(
            lambda new, old: jnp.where(refused, old, new), new_state.position, state.position
        )
        num = jnp.asarray(num_particles(state.position), jnp.int32)
        info = info._replace(
            is_divergent=info.is_divergent | refused,
            num_refused=jnp.where(refused, num, info.num_refused),
        )
        return new_state._replace(position=position), info

    return kernel


def as_top_level_api(
    objective: StructuredObjective,
    step_size: ScalarOrSchedule,
    temperature: ScalarOrSchedule,
    *,
    divergence_threshold: float = 1e6,
) -> SamplingAlgorithm:
    """MFLD whose every step takes an explicit minibatch (SGLD-style, for streamed data).

    Parameters
    ----------
    objective
        A :class:`~mflangevin.MeanFieldObjective` whose risk averages over the leading axis of
        its data (an empirical risk); its ``data`` only fixes the structure the minibatches must
        have and may be ``None``.
    step_size
        η > 0, or a schedule ``count -> η``.
    temperature
        λ > 0, or a schedule ``count -> λ``.
    divergence_threshold
        See :func:`mflangevin.kernels.mfld.build_kernel`.

    Returns
    -------
    A ``blackjax.base.SamplingAlgorithm`` with ``init(position, rng_key=None)`` and
    ``step(rng_key, state, minibatch) -> (state, info)``; ``info.num_gradient_evaluations``
    adds up the minibatch sizes.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, mflangevin
    >>> from mflangevin.datasets import teacher_student
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y, _ = teacher_student(jax.random.key(0), 64, 3)
    >>> net = MeanFieldNetwork("tanh")
    >>> algorithm = mflangevin.streaming_mfld(net.objective(X, y), step_size=0.1, temperature=1e-3)
    >>> state = algorithm.init(net.init_particles(jax.random.key(1), 16, 3))
    >>> step = jax.jit(algorithm.step)
    >>> for k, key in enumerate(jax.random.split(jax.random.key(2), 4)):
    ...     state, info = step(key, state, (X[16 * k : 16 * (k + 1)], y[16 * k : 16 * (k + 1)]))
    >>> int(info.num_gradient_evaluations)
    64
    """
    data.stream().check(objective)
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    check_positive("divergence_threshold", divergence_threshold)
    kernel = build_kernel(divergence_threshold)

    def init_fn(position: ArrayTree, rng_key: PRNGKey | None = None) -> MFLDState:
        check_particles(position, objective if objective.data is not None else None)
        return init(position, rng_key)

    def step_fn(rng_key: PRNGKey, state: MFLDState, minibatch) -> tuple:
        check_state(state, MFLDState)
        return kernel(
            rng_key,
            state,
            objective,
            minibatch,
            schedule_value(step_size, state.count),
            schedule_value(temperature, state.count),
        )

    return SamplingAlgorithm(init_fn, step_fn)
