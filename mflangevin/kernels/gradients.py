"""Drift estimators for finite-sum objectives: full batch, SGD, SVRG and SARAH.

The maths: docs/theory/variance-reduction.md.


For an empirical risk ``R(z) = (1/n) Σ_j ℓ_j(z_j)`` the MFLD drift is an average of per-sample
drifts ``v_j(Θ)_i = ℓ'_j(f_Θ(x_j)) ∇_θ h(θ_i, x_j)`` (plus the penalty ``∇r(θ_i)``). An estimator
forms the drift of one step from a minibatch ``I_k`` of ``B`` samples drawn on device:

* :func:`full` — the exact drift, ``n`` per-sample gradients a step;
* :func:`sgd` — ``(1/B) Σ_{j∈I_k} v_j(Θ_k) + ∇r``, ``B`` a step (SGD-MFLD);
* :func:`svrg` — every ``m`` steps a snapshot ``Θ̃`` with its full drift ``G̃``, then
  ``(1/B) Σ_{j∈I_k} [v_j(Θ_k) − v_j(Θ̃)] + G̃ + ∇r`` (SVRG-MFLD);
* :func:`sarah` — ``v_k = v_{k−1} + (1/B) Σ_{j∈I_k} [v_j(Θ_k) − v_j(Θ_{k−1})]``, refreshed with the
  full drift every ``m`` steps. SARAH/SPIDER for MFLD is an extension of this library, not a
  method of the papers.

The minibatch estimators need a finite-sum objective (``MeanFieldObjective(...,
finite_sum=True)``, as :meth:`MeanFieldNetwork.objective` builds): every leaf of its data has the
sample axis ``n`` first, the features ``Φ(θ)`` too, and the risk averages over it, so that
:meth:`MeanFieldObjective.subsample` is the unbiased minibatch objective. Minibatches cost
``O(B)`` whatever ``n`` is; their law is that of :func:`mflangevin.kernels.data.minibatch`.

Every estimator also reports the objective that the kernels' divergence test watches (see
:class:`Tracked`): ``F(μ)`` itself wherever a step computes it anyway (every step of the full
drift; the snapshots of SVRG and the refreshes of SARAH), and for SGD the mean of the minibatch
energies over an epoch of ``⌊n/B⌋`` steps, which at fixed particles is ``F(μ)`` on the epoch's
samples (all of them, without replacement, but for the ``n mod B`` an epoch skips), compared
from the first epoch on with ``F(μ_0)``, computed once when the estimator's state is initialised
(one pass over the data, without gradients). No step makes a pass over the data for the test: a
step stays at ``O(B)``.

References: Suzuki, Wu, Nitanda, *Convergence of mean-field Langevin dynamics: time and space
discretization, stochastic gradient, and variance reduction*, NeurIPS 2023 (SGD and SVRG).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mflangevin._checks import check_count
from mflangevin.kernels import data
from mflangevin.kernels.data import MinibatchState
from mflangevin.objectives import StructuredObjective, num_samples
from mflangevin.types import Array, ArrayTree

__all__ = [
    "GradientEstimator",
    "Tracked",
    "SGDState",
    "SVRGState",
    "SARAHState",
    "full",
    "sgd",
    "svrg",
    "sarah",
]


class GradientEstimator(NamedTuple):
    """A drift estimator, the ``gradient=`` argument of :func:`mflangevin.mfld`.

    ``init(objective, position)`` gives the estimator's state (it lives in the kernel state);
    ``estimate(rng_key, objective, position, count, state)`` returns
    ``(energy, drift, state, evaluations, tracked)`` for step ``count``: the energy ``F(μ_Θ)``
    estimated on the samples used, the drift without the reference term, the new state, the
    number of per-sample gradients ``v_j(Θ)`` the step evaluated and the objective the kernels'
    divergence test compares with its running best (a :class:`Tracked`, see
    :func:`mflangevin.kernels.diffusions.energy_diverged`); ``check(objective)`` raises on an
    objective the estimator cannot use, before anything is compiled. Minibatches come from
    :func:`mflangevin.kernels.data.minibatch`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> estimator = sgd(batch_size=4)
    >>> objective = MeanFieldObjective(
    ...     feature_map=lambda theta, x: jnp.broadcast_to(theta, x.shape),
    ...     risk=lambda z, x: 0.5 * jnp.mean(jnp.sum((z - x) ** 2, axis=-1)),
    ...     data=jnp.ones((10, 2)),
    ...     finite_sum=True,
    ... )
    >>> estimator.check(objective)
    """

    init: Callable[[StructuredObjective, ArrayTree], ArrayTree]
    estimate: Callable[..., tuple[Array, ArrayTree, ArrayTree, Array, Tracked]]
    check: Callable[[StructuredObjective], None]


class Tracked(NamedTuple):
    """The objective a step reports to the divergence test: ``value`` is ``F(μ)`` (or, for SGD,
    its mean over an epoch) when ``ready``; steps that are not ready are not compared.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> bool(Tracked(jnp.asarray(0.5), True).ready), bool(Tracked.none(jnp.asarray(0.5)).ready)
    (True, False)
    """

    value: Array
    ready: Array | bool

    @classmethod
    def none(cls, energy: Array) -> Tracked:
        """Nothing to compare at this step.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> bool(Tracked.none(jnp.asarray(1.0)).ready)
        False
        """
        return cls(energy, False)


class SGDState(NamedTuple):
    """SGD's minibatch stream, the sum of this epoch's minibatch energies and the energy
    ``F(μ_0)`` of the particles it was initialised with (see :class:`Tracked`).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(
    ...     feature_map=lambda theta, x: jnp.broadcast_to(theta, x.shape),
    ...     risk=lambda z, x: 0.5 * jnp.mean(jnp.sum((z - x) ** 2, axis=-1)),
    ...     data=jnp.ones((10, 2)),
    ...     finite_sum=True,
    ... )
    >>> state = sgd(batch_size=4).init(objective, jnp.zeros((8, 2)))
    >>> float(state.energy_sum), float(state.initial_energy)  # F(μ_0) = ½ E‖0 − x‖² = 1
    (0.0, 1.0)
    """

    batches: MinibatchState
    energy_sum: Array
    initial_energy: Array


class SVRGState(NamedTuple):
    """SVRG snapshot: the particles ``Θ̃``, their full drift ``G̃`` (penalty included) and the
    minibatch stream.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(
    ...     feature_map=lambda theta, x: jnp.broadcast_to(theta, x.shape),
    ...     risk=lambda z, x: 0.5 * jnp.mean(jnp.sum((z - x) ** 2, axis=-1)),
    ...     data=jnp.ones((10, 2)),
    ...     finite_sum=True,
    ... )
    >>> state = svrg(batch_size=4, snapshot_every=5).init(objective, jnp.zeros((8, 2)))
    >>> isinstance(state, SVRGState), state.snapshot_drift.shape
    (True, (8, 2))
    """

    snapshot: ArrayTree
    snapshot_drift: ArrayTree
    batches: MinibatchState


class SARAHState(NamedTuple):
    """SARAH recursion: the previous particles ``Θ_{k−1}``, the previous estimate ``v_{k−1}`` and
    the minibatch stream.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(
    ...     feature_map=lambda theta, x: jnp.broadcast_to(theta, x.shape),
    ...     risk=lambda z, x: 0.5 * jnp.mean(jnp.sum((z - x) ** 2, axis=-1)),
    ...     data=jnp.ones((10, 2)),
    ...     finite_sum=True,
    ... )
    >>> state = sarah(batch_size=4, refresh_every=5).init(objective, jnp.zeros((8, 2)))
    >>> isinstance(state, SARAHState), state.previous_drift.shape
    (True, (8, 2))
    """

    previous: ArrayTree
    previous_drift: ArrayTree
    batches: MinibatchState


def _count(value: int) -> Array:
    return jnp.asarray(value, jnp.int32)


def _cached(factory):
    """Equal arguments give the same estimator object, so that algorithms built with equal
    settings share their compiled step (see :func:`mflangevin.kernels.mfld.as_top_level_api`)."""
    cache = {}
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple((type(value), value) for value in bound.arguments.values())
        try:
            return cache[key]
        except TypeError:
            return factory(*args, **kwargs)
        except KeyError:
            return cache.setdefault(key, factory(*args, **kwargs))

    return wrapper


@_cached
def full() -> GradientEstimator:
    """The exact drift: ``n`` per-sample gradients a step (1 for an objective without data).

    Works with every objective, including :class:`~mflangevin.EnergyObjective`; the default of
    :func:`mflangevin.mfld`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, mflangevin
    >>> energy_fn = lambda p: 0.5 * jnp.sum(jnp.mean(p, axis=0) ** 2)
    >>> algorithm = mflangevin.mfld(energy_fn, 0.1, 0.1, gradient=full())
    >>> state, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.ones((8, 2))))
    >>> int(info.num_gradient_evaluations)
    1
    """

    source = data.full()

    def estimate(rng_key, objective, position, count, state):
        del count
        draw, state = source.draw(rng_key, objective, state)
        energy, drift = objective.energy_and_drift(position)
        return energy, drift, state, draw.num_samples, Tracked(energy, True)

    return GradientEstimator(
        lambda objective, position: source.init(objective), estimate, source.check
    )


@_cached
def sgd(batch_size: int, replace: bool = False) -> GradientEstimator:
    """Minibatch drift (SGD-MFLD): ``(1/B) Σ_{j∈I_k} v_j(Θ_k) + ∇r``, unbiased, ``B`` a step.

    The divergence test watches the mean of the minibatch energies over each epoch of
    ``⌊n/B⌋`` steps, from ``F(μ_0)`` on, which ``init`` computes (one pass over the data; see
    :class:`Tracked`).

    Parameters
    ----------
    batch_size
        ``B``, with ``1 ≤ B ≤ n``.
    replace
        Draw the minibatch with replacement (default: without, in epochs; see
        :func:`mflangevin.kernels.data.minibatch`).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, mflangevin
    >>> from mflangevin.datasets import teacher_student
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y, _ = teacher_student(jax.random.key(0), 100, 3)
    >>> net = MeanFieldNetwork("tanh")
    >>> algorithm = mflangevin.mfld(net.objective(X, y), 0.1, 1e-3, gradient=sgd(10))
    >>> state = algorithm.init(net.init_particles(jax.random.key(1), 32, 3))
    >>> state, info = algorithm.step(jax.random.key(2), state)
    >>> int(info.num_gradient_evaluations)
    10
    """
    source = data.minibatch(batch_size, replace)

    def init(objective, position):
        initial = jnp.asarray(objective.energy(position))
        return SGDState(source.init(objective), jnp.zeros_like(initial), initial)

    def estimate(rng_key, objective, position, count, state):
        draw, batches = source.draw(rng_key, objective, state.batches)
        energy, drift = draw.objective.energy_and_drift(position)
        epoch = max(num_samples(objective.data) // source.batch_size, 1)
        total = state.energy_sum + energy.astype(state.energy_sum.dtype)
        ends = (count + 1) % epoch == 0
        state = state._replace(batches=batches, energy_sum=jnp.where(ends, 0, total))
        # F(μ_0) at the first step, then each epoch's mean.
        tracked = Tracked(
            jnp.where(count == 0, state.initial_energy, total / epoch), ends | (count == 0)
        )
        return energy, drift, state, draw.num_samples, tracked

    return GradientEstimator(init, estimate, source.check)


def _zeros_like(position: ArrayTree) -> ArrayTree:
    return jax.tree.map(jnp.zeros_like, position)


@_cached
def svrg(batch_size: int, snapshot_every: int, replace: bool = False) -> GradientEstimator:
    """Stochastic variance-reduced drift (SVRG-MFLD).

    At steps ``k ≡ 0 (mod m)`` a snapshot ``Θ̃ = Θ_k`` is taken with its full drift ``G̃`` (``n``
    per-sample gradients; the step uses ``G̃``). Between snapshots::

        v_k^i = (1/B) Σ_{j∈I_k} [ v_j(Θ_k)_i − v_j(Θ̃)_i ] + G̃_i + ∇r(θ_i)

    at ``2B`` per-sample gradients; the divergence test watches ``F(μ)`` at the snapshots, where
    the step computes it (see :class:`Tracked`). The control variate
    ``v_j(Θ̃)_i = ℓ'_j(f_Θ̃(x_j)) ∇h(θ̃_i, x_j)`` is taken at the snapshot particle *and* the
    snapshot measure. It is recomputed on the
    minibatch instead of storing ``ℓ'_j(f_Θ̃(x_j))`` for all ``j``: its pullback needs the forward
    pass at ``Θ̃`` on the minibatch anyway, so storing would save nothing.

    Parameters
    ----------
    batch_size
        ``B``, with ``1 ≤ B ≤ n``; ``B ≈ √n`` is the paper's choice.
    snapshot_every
        ``m ≥ 1``; ``m ≈ √n`` (so that snapshots cost about as much as the steps between them).
    replace
        Draw the minibatches with replacement (default: without).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, mflangevin
    >>> from mflangevin.datasets import teacher_student
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y, _ = teacher_student(jax.random.key(0), 100, 3)
    >>> net = MeanFieldNetwork("tanh")
    >>> algorithm = mflangevin.mfld(net.objective(X, y), 0.1, 1e-3, gradient=svrg(10, 10))
    >>> state = algorithm.init(net.init_particles(jax.random.key(1), 32, 3))
    >>> for key in jax.random.split(jax.random.key(2), 2):
    ...     state, info = algorithm.step(key, state)
    >>> int(info.num_gradient_evaluations)  # a snapshot (n) and one corrected step (2B)
    120
    """
    source = data.minibatch(batch_size, replace)
    snapshot_every = check_count("snapshot_every", snapshot_every)

    def init(objective, position):
        return SVRGState(position, _zeros_like(position), source.init(objective))

    def estimate(rng_key, objective, position, count, state):
        def snapshot(_):
            energy, drift = objective.energy_and_drift(position)
            n = _count(num_samples(objective.data))
            new = state._replace(snapshot=position, snapshot_drift=drift)
            return energy, drift, new, n, Tracked(energy, jnp.asarray(True))

        def corrected(_):
            draw, batches = source.draw(rng_key, objective, state.batches)
            energy, drift = draw.objective.energy_and_drift(position)
            _, control = draw.objective.energy_and_drift(state.snapshot)
            drift = jax.tree.map(lambda d, c, g: d - c + g, drift, control, state.snapshot_drift)
            new = state._replace(batches=batches)
            return energy, drift, new, 2 * draw.num_samples, Tracked(energy, jnp.asarray(False))

        return jax.lax.cond(count % snapshot_every == 0, snapshot, corrected, None)

    return GradientEstimator(init, estimate, source.check)


@_cached
def sarah(batch_size: int, refresh_every: int, replace: bool = False) -> GradientEstimator:
    """Recursive variance-reduced drift (SARAH/SPIDER-MFLD) — an extension of this library.

    At steps ``k ≡ 0 (mod m)`` the estimate is refreshed with the full drift (``n`` per-sample
    gradients); between refreshes::

        v_k = v_{k−1} + (1/B) Σ_{j∈I_k} [ v_j(Θ_k) − v_j(Θ_{k−1}) ]

    at ``2B`` per-sample gradients, each ``v_j(Θ_{k−1})`` at the previous particles and measure;
    the divergence test watches ``F(μ)`` at the refreshes (see :class:`Tracked`).
    Unlike SVRG the estimate is biased given the past (its error is a martingale), and its error
    grows with the distance travelled since the refresh rather than since a fixed snapshot.
    Not analysed in the papers: no convergence guarantee is claimed for it.

    Parameters
    ----------
    batch_size
        ``B``, with ``1 ≤ B ≤ n``.
    refresh_every
        ``m ≥ 1``, the period of full refreshes.
    replace
        Draw the minibatches with replacement (default: without).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, mflangevin
    >>> from mflangevin.datasets import teacher_student
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y, _ = teacher_student(jax.random.key(0), 100, 3)
    >>> net = MeanFieldNetwork("tanh")
    >>> algorithm = mflangevin.mfld(net.objective(X, y), 0.1, 1e-3, gradient=sarah(10, 10))
    >>> state = algorithm.init(net.init_particles(jax.random.key(1), 32, 3))
    >>> state, info = algorithm.step(jax.random.key(2), state)
    >>> int(info.num_gradient_evaluations)
    100
    """
    source = data.minibatch(batch_size, replace)
    refresh_every = check_count("refresh_every", refresh_every)

    def init(objective, position):
        return SARAHState(position, _zeros_like(position), source.init(objective))

    def estimate(rng_key, objective, position, count, state):
        def refresh(_):
            energy, drift = objective.energy_and_drift(position)
            n = _count(num_samples(objective.data))
            new = SARAHState(position, drift, state.batches)
            return energy, drift, new, n, Tracked(energy, jnp.asarray(True))

        def recursive(_):
            draw, batches = source.draw(rng_key, objective, state.batches)
            energy, drift = draw.objective.energy_and_drift(position)
            _, previous = draw.objective.energy_and_drift(state.previous)
            drift = jax.tree.map(lambda d, p, v: v + (d - p), drift, previous, state.previous_drift)
            new = SARAHState(position, drift, batches)
            return energy, drift, new, 2 * draw.num_samples, Tracked(energy, jnp.asarray(False))

        return jax.lax.cond(count % refresh_every == 0, refresh, recursive, None)

    return GradientEstimator(init, estimate, source.check)
