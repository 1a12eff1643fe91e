"""Mean-field Langevin dynamics (MFLD), ``docs/theory/mfld.md``.

For every particle, in parallel (noisy gradient descent on the free energy
``G(μ) = F(μ) + λ KL(μ ‖ ν)``)::

    θ_i ← θ_i − η [ ∇_θ δF/δμ(μ_Θ)(θ_i) − λ ∇ log ν(θ_i) ] + √(2λη) ξ_i

References: Nitanda, Wu, Suzuki, *Convex Analysis of the Mean Field Langevin Dynamics*,
AISTATS 2022; Chizat, *Mean-field Langevin dynamics: exponential convergence and annealing*,
TMLR 2022; Suzuki, Wu, Nitanda, NeurIPS 2023 (time and space discretisation; stochastic and
variance-reduced drifts, see :mod:`mflangevin.kernels.gradients`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm

from mflangevin._checks import check_particles, check_positive
from mflangevin.kernels import data
from mflangevin.kernels.diffusions import (
    add_reference_score,
    langevin_update,
    per_particle_sq_norm,
)
from mflangevin.kernels.gradients import GradientEstimator, full
from mflangevin.objectives import as_objective
from mflangevin.schedules import schedule_value
from mflangevin.types import Array, ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["MFLDState", "MFLDInfo", "init", "build_kernel", "as_top_level_api"]


class MFLDState(NamedTuple):
    """State of MFLD: the particles and the step counter that drives the schedules.

    ``gradient_state`` is the state of the drift estimator (``()`` for the full drift; the
    snapshot of SVRG, the previous estimate of SARAH) and ``num_gradient_evaluations`` the number
    of per-sample gradients evaluated so far (see :mod:`mflangevin.kernels.gradients`).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = init(jnp.zeros((16, 2)))
    >>> state.position.shape, int(state.count), state.gradient_state
    ((16, 2), 0, ())
    """

    position: ArrayTree
    count: Array
    gradient_state: ArrayTree = ()
    num_gradient_evaluations: Array | int = 0

    @property
    def particles(self) -> ArrayTree:
        """Alias of ``position``: the particle pytree, leading axis ``N``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> state = init(jnp.zeros((16, 2)))
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
    this step (the cost axis on which estimators compare); ``is_divergent`` is true when the
    proposed particles were non-finite or beyond
    ``divergence_threshold``, in which case the step was not taken and the particles were kept.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> algorithm = mflangevin.mfld(lambda p: 0.5 * jnp.mean(p**2), step_size=0.1, temperature=0.1)
    >>> _, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.ones((16, 2))))
    >>> bool(info.is_divergent), info.step_size, int(info.num_gradient_evaluations)  # n = 1
    (False, Array(0.1, dtype=float32, weak_type=True), 1)
    """

    energy: Array
    drift_norm: Array
    is_divergent: Array
    step_size: Array
    temperature: Array
    num_gradient_evaluations: Array


def init(
    position: ArrayTree,
    rng_key: PRNGKey | None = None,
    *,
    objective=None,
    gradient: GradientEstimator | None = None,
) -> MFLDState:
    """Start MFLD from the particles ``position`` (every leaf with leading axis ``N``).

    A drift estimator other than the full drift needs the ``objective`` to set up its state.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = init({"w": jnp.zeros((16, 3)), "b": jnp.zeros(16)})
    >>> state.particles["w"].shape, int(state.count)
    ((16, 3), 0)
    """
    del rng_key
    check_particles(position)
    gradient_state = ()
    if gradient is not None:
        if objective is None:
            raise ValueError("objective: needed to initialise the state of a drift estimator.")
        gradient_state = gradient.init(objective, position)
    zero = jnp.zeros((), jnp.int32)
    return MFLDState(position, zero, gradient_state, zero)


def build_kernel(
    divergence_threshold: float = 1e6, gradient: GradientEstimator | None = None
) -> Callable:
    """Build the low-level MFLD kernel.

    Parameters
    ----------
    divergence_threshold
        A proposed particle coordinate whose magnitude reaches this value (or is not finite)
        marks the step as divergent; the step is then refused and reported in ``info``.
    gradient
        The drift estimator (default :func:`~mflangevin.kernels.gradients.full`). Its minibatches
        are drawn from a key folded from the step key, so the Langevin noise is the same for
        every estimator.

    Returns
    -------
    ``kernel(rng_key, state, objective, step_size, temperature) -> (state, info)``, where
    ``step_size`` and ``temperature`` are the values for this step.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import EnergyObjective
    >>> objective = EnergyObjective(lambda p: 0.5 * jnp.mean(p**2))
    >>> kernel = build_kernel()
    >>> state, info = kernel(jax.random.key(0), init(jnp.ones((16, 2))), objective, 0.1, 0.1)
    >>> state.position.shape, int(state.count), bool(info.is_divergent)
    ((16, 2), 1, False)
    """
    estimator = full() if gradient is None else gradient

    def kernel(
        rng_key: PRNGKey,
        state: MFLDState,
        objective,
        step_size: ArrayTree,
        temperature: ArrayTree,
    ) -> tuple[MFLDState, MFLDInfo]:
        position = state.position
        energy, drift, gradient_state, evaluations = estimator.estimate(
            jax.random.fold_in(rng_key, 1), objective, position, state.count, state.gradient_state
        )
        drift = add_reference_score(drift, objective.reference, temperature, position)
        new_position, is_divergent = langevin_update(
            rng_key, position, drift, step_size, temperature, divergence_threshold
        )
        info = MFLDInfo(
            energy=energy,
            drift_norm=jnp.sqrt(jnp.mean(per_particle_sq_norm(drift))),
            is_divergent=is_divergent,
            step_size=jnp.asarray(step_size),
            temperature=jnp.asarray(temperature),
            num_gradient_evaluations=state.num_gradient_evaluations + evaluations,
        )
        new_state = MFLDState(
            new_position, state.count + 1, gradient_state, info.num_gradient_evaluations
        )
        return new_state, info

    return kernel


@functools.partial(jax.jit, static_argnums=0)
def _step(settings, rng_key, state, held):
    """One step of :func:`as_top_level_api`, compiled once per settings and data shapes: the
    held data are arguments (see :func:`mflangevin.kernels.data.hold`)."""
    step_size, temperature, divergence_threshold, gradient, static_objective = settings
    return build_kernel(divergence_threshold, gradient)(
        rng_key,
        state,
        data.read(held) if static_objective is None else static_objective,
        schedule_value(step_size, state.count),
        schedule_value(temperature, state.count),
    )


def as_top_level_api(
    objective,
    step_size: ScalarOrSchedule,
    temperature: ScalarOrSchedule,
    *,
    gradient: GradientEstimator | None = None,
    divergence_threshold: float = 1e6,
) -> SamplingAlgorithm:
    """Mean-field Langevin dynamics over ``N`` particles.

    Parameters
    ----------
    objective
        A :class:`~mflangevin.MeanFieldObjective`, an :class:`~mflangevin.EnergyObjective`, or a
        plain callable ``energy_fn(particles) -> F(μ_Θ)`` (no reference measure). Its reference
        measure ν, if any, enters the drift as ``−λ ∇ log ν``.
    step_size
        η > 0, or a schedule ``count -> η``.
    temperature
        λ > 0 (the entropy weight), or a schedule ``count -> λ`` for annealing.
    gradient
        How the drift is formed: :func:`~mflangevin.kernels.gradients.full` (default),
        ``sgd``, ``svrg`` or ``sarah`` from :mod:`mflangevin.gradients`; the minibatch
        estimators need a finite-sum :class:`~mflangevin.MeanFieldObjective`.
    divergence_threshold
        See :func:`build_kernel`.

    Returns
    -------
    A ``blackjax.base.SamplingAlgorithm``: ``init(position, rng_key=None)`` and
    ``step(rng_key, state) -> (state, info)``. The step is compiled on first use, once for all
    algorithms with equal settings and data of equal shapes; the objective's data are inputs of
    the compiled program (see :func:`mflangevin.kernels.data.hold`), so its size and compile time
    do not depend on ``n``, also under ``jax.jit`` and ``blackjax.util.run_inference_algorithm``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> energy_fn = lambda p: 0.5 * jnp.sum(jnp.mean(p, axis=0) ** 2) + 0.5 * jnp.mean(p**2)
    >>> algorithm = mflangevin.mfld(energy_fn, step_size=0.1, temperature=0.1)
    >>> state = algorithm.init(jnp.ones((16, 2)))
    >>> state, info = jax.jit(algorithm.step)(jax.random.key(0), state)
    >>> state.particles.shape, bool(info.is_divergent)
    ((16, 2), False)
    """
    objective = as_objective(objective)
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    check_positive("divergence_threshold", divergence_threshold)
    gradient = full() if gradient is None else gradient
    if not isinstance(gradient, GradientEstimator):
        raise TypeError(
            "gradient: expected an estimator from mflangevin.gradients (full, sgd, svrg, sarah), "
            f"got {type(gradient).__name__}."
        )
    gradient.check(objective)
    held = data.hold(objective)
    settings = (step_size, temperature, divergence_threshold, gradient, None)
    if jax.tree.leaves(objective) == [objective]:  # not a pytree: a static part of the step
        held, settings = None, (*settings[:-1], objective)

    def init_fn(position: ArrayTree, rng_key: PRNGKey | None = None) -> MFLDState:
        check_particles(position, objective)
        return init(position, rng_key, objective=objective, gradient=gradient)

    def step_fn(rng_key: PRNGKey, state: MFLDState) -> tuple[MFLDState, MFLDInfo]:
        return _step(settings, rng_key, state, held)

    return SamplingAlgorithm(init_fn, step_fn)
