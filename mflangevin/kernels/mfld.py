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

import jax
from blackjax.base import SamplingAlgorithm

from mflangevin._checks import check_factor, check_particles, check_positive
from mflangevin.kernels import data
from mflangevin.kernels.diffusions import MFLDInfo, MFLDState, initial_state, langevin_step
from mflangevin.kernels.gradients import GradientEstimator, full
from mflangevin.objectives import Objective, as_objective
from mflangevin.schedules import schedule_value
from mflangevin.types import Array, ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["MFLDState", "MFLDInfo", "initial_state", "init", "build_kernel", "as_top_level_api"]


def init(
    position: ArrayTree,
    rng_key: PRNGKey | None = None,
    *,
    objective: Objective | None = None,
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
    return initial_state(position, gradient_state)


def build_kernel(
    divergence_threshold: float = 1e6,
    gradient: GradientEstimator | None = None,
    divergence_factor: float = 10.0,
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
    divergence_factor
        A step whose tracked objective exceeds the running best by more than
        ``(divergence_factor − 1) · max(|best|, λp)`` (``p`` coordinates per particle) is flagged
        in ``info.is_divergent``, without being refused; see
        :func:`~mflangevin.kernels.diffusions.energy_diverged`. The tracked objective is
        ``F(μ)`` at every step of the full drift, at SVRG's snapshots and SARAH's refreshes, and
        for SGD the mean of the minibatch energies over each epoch of ``⌊n/B⌋`` steps
        (:class:`~mflangevin.kernels.gradients.Tracked`): no step makes a pass over the data
        for it.

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
        objective: Objective,
        step_size: ArrayTree,
        temperature: ArrayTree,
    ) -> tuple[MFLDState, MFLDInfo]:
        return langevin_step(
            rng_key,
            state,
            objective,
            estimator,
            step_size,
            temperature,
            divergence_threshold,
            divergence_factor,
        )

    return kernel


@functools.partial(jax.jit, static_argnums=0)
def _step(settings, rng_key, state, held):
    """One step of :func:`as_top_level_api`, compiled once per settings and data shapes: the
    held data are arguments (see :func:`mflangevin.kernels.data.hold`)."""
    step_size, temperature, thresholds, gradient, static_objective = data.thaw(settings)
    return build_kernel(thresholds[0], gradient, thresholds[1])(
        rng_key,
        state,
        held if static_objective is None else static_objective,
        schedule_value(step_size, state.count),
        schedule_value(temperature, state.count),
    )


def as_top_level_api(
    objective: Objective | Callable[[ArrayTree], Array],
    step_size: ScalarOrSchedule,
    temperature: ScalarOrSchedule,
    *,
    gradient: GradientEstimator | None = None,
    divergence_threshold: float = 1e6,
    divergence_factor: float = 10.0,
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
    divergence_threshold, divergence_factor
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
    check_factor(divergence_factor)
    gradient = full() if gradient is None else gradient
    if not isinstance(gradient, GradientEstimator):
        raise TypeError(
            "gradient: expected an estimator from mflangevin.gradients (full, sgd, svrg, sarah), "
            f"got {type(gradient).__name__}."
        )
    gradient.check(objective)
    thresholds = (divergence_threshold, float(divergence_factor))
    settings = (step_size, temperature, thresholds, gradient, None)
    held = objective
    if jax.tree.leaves(objective) == [objective]:  # not a pytree: a static part of the step
        held, settings = None, (*settings[:-1], objective)

    def start(position: ArrayTree, rng_key: PRNGKey | None) -> MFLDState:
        check_particles(position, objective)
        return init(position, rng_key, objective=objective, gradient=gradient)

    return data.held_algorithm(held, start, _step, settings, MFLDState)
