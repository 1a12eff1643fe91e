"""Record convergence certificates during a run, every ``k`` steps, around any kernel.

:func:`monitor` wraps a ``SamplingAlgorithm``: its step runs the inner step and then, under
``jax.lax.cond`` on every ``k``-th step, the dual bound ``D(g_μ)`` (and optionally the primal and
the duality gap) of :mod:`mflangevin.certificates`; on the other steps the certificate is NaN and
costs nothing. The wrapped algorithm keeps the BlackJAX contract, so it runs in
``blackjax.util.run_inference_algorithm`` and the certificates come back in the info history.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from jax.sharding import NamedSharding

from mflangevin._checks import check_positive
from mflangevin.certificates.duality import (
    Certificate,
    check_dual_arguments,
    dual_bound_and_stderr,
    duality_gap,
)
from mflangevin.certificates.entropy import check_neighbors, flatten_particles
from mflangevin.keys import certificate_key
from mflangevin.objectives import StructuredObjective
from mflangevin.schedules import schedule_value
from mflangevin.sharding import particle_sharding
from mflangevin.types import Array, ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["MonitorState", "MonitorInfo", "monitor"]


class MonitorState(NamedTuple):
    """The inner kernel's state and the number of steps taken.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(jnp.ones((8, 2)), jnp.zeros(8), l2=1e-3)
    >>> algorithm = monitor(mflangevin.mfld(objective, 0.1, 0.1), objective, 0.1, every=5)
    >>> state = algorithm.init(net.init_particles(jax.random.key(0), 16, input_dim=2))
    >>> type(state.state).__name__, int(state.count)
    ('MFLDState', 0)
    """

    state: Any
    count: Array

    @property
    def position(self) -> ArrayTree:
        """The particles of the inner state.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from mflangevin.kernels import mfld
        >>> state = MonitorState(mfld.init(jnp.zeros((16, 2))), jnp.zeros((), jnp.int32))
        >>> state.position is state.state.position
        True
        """
        return self.state.position

    @property
    def particles(self) -> ArrayTree:
        """Alias of ``position``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from mflangevin.kernels import mfld
        >>> state = MonitorState(mfld.init(jnp.zeros((16, 2))), jnp.zeros((), jnp.int32))
        >>> state.particles.shape
        (16, 2)
        """
        return self.state.position


class MonitorInfo(NamedTuple):
    """The inner kernel's info and the certificate after this step (NaN when not recorded).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(
    ...     jnp.ones((8, 2)), jnp.zeros(8), reference=mflangevin.gaussian_reference(1.0)
    ... )
    >>> algorithm = monitor(
    ...     mflangevin.mfld(objective, 0.1, 0.1), objective, 0.1, every=1, num_samples=64
    ... )
    >>> state = algorithm.init(net.init_particles(jax.random.key(0), 16, input_dim=2))
    >>> _, info = algorithm.step(jax.random.key(1), state)
    >>> type(info.info).__name__, bool(jnp.isfinite(info.certificate.dual))
    ('MFLDInfo', True)
    >>> bool(jnp.isnan(info.certificate.gap))  # the gap only with ``gap=True``
    True
    """

    info: Any
    certificate: Certificate


def monitor(
    algorithm: SamplingAlgorithm,
    objective: StructuredObjective,
    temperature: ScalarOrSchedule,
    every: int,
    *,
    gap: bool = False,
    num_samples: int = 1024,
    num_neighbors: int = 1,
    block_size: int = 1024,
) -> SamplingAlgorithm:
    """Wrap ``algorithm`` so that every ``every``-th step also records the dual bound.

    Parameters
    ----------
    algorithm
        Any ``SamplingAlgorithm`` whose state has ``position`` (e.g. ``mflangevin.mfld(...)``).
    objective
        The :class:`~mflangevin.MeanFieldObjective` the algorithm optimises (with
        ``risk_conjugate``).
    temperature
        λ, or the same schedule ``count -> λ`` as the algorithm's; the certificate after a step
        uses the λ of that step.
    every
        ``k ≥ 1``: the certificate is computed after steps ``k, 2k, …`` and is NaN otherwise.
    gap
        Also estimate the primal (k-nearest-neighbour entropy, ``O(N² p)`` work, blockwise) and
        the gap; otherwise only ``dual`` and ``dual_stderr`` are filled.
    num_samples, num_neighbors, block_size
        As in :func:`mflangevin.certificates.duality_gap`.

    Returns
    -------
    A ``SamplingAlgorithm`` with state :class:`MonitorState` and info :class:`MonitorInfo`.
    Under ``jax.vmap`` (several chains) ``lax.cond`` evaluates both branches, so there the
    certificate costs its full price at every step: vectorise over chains outside, or use a
    large ``every``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import blackjax
    >>> import mflangevin
    >>> from mflangevin.models import MeanFieldNetwork
    >>> X, y = jnp.ones((8, 2)), jnp.zeros(8)
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    >>> algorithm = mflangevin.monitor(
    ...     mflangevin.mfld(objective, step_size=0.1, temperature=0.1),
    ...     objective, temperature=0.1, every=5,
    ... )
    >>> particles = net.init_particles(jax.random.key(0), 64, input_dim=2)
    >>> _, (states, infos) = blackjax.util.run_inference_algorithm(
    ...     jax.random.key(1), algorithm, num_steps=10, initial_position=particles
    ... )
    >>> jnp.isfinite(infos.certificate.dual).tolist()
    [False, False, False, False, True, False, False, False, False, True]
    """
    if not (hasattr(algorithm, "init") and hasattr(algorithm, "step")):
        raise TypeError(f"algorithm: expected a SamplingAlgorithm, got {type(algorithm).__name__}.")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every: must be a positive integer, got {every!r}.")
    check_positive("temperature", temperature)
    # The particles' layout, seen by init on concrete particles: the certificate's work is
    # split over the same devices even when the step is traced on Auto mesh axes.
    layout: dict[str, NamedSharding | None] = {}

    def certificate(position: ArrayTree, lam: Array, rng_key: PRNGKey) -> Certificate:
        if gap:
            return duality_gap(
                objective,
                position,
                lam,
                rng_key,
                num_samples=num_samples,
                num_neighbors=num_neighbors,
                block_size=block_size,
                sharding=layout.get("sharding"),
            )
        g = objective.risk_gradient(objective.mean_embedding(position))
        dual, stderr, ess = dual_bound_and_stderr(
            objective,
            g,
            lam,
            rng_key,
            num_samples,
            position,
            block_size,
            return_ess=True,
            sharding=layout.get("sharding"),
        )
        nan = jnp.full_like(dual, jnp.nan)
        return Certificate(nan, dual, nan, stderr, ess.astype(dual.dtype))

    def init_fn(position: ArrayTree, rng_key: PRNGKey | None = None) -> MonitorState:
        check_dual_arguments(objective, temperature, num_samples, block_size, position)
        if gap:
            check_neighbors(flatten_particles(position).shape[0], num_neighbors, block_size)
        layout["sharding"] = particle_sharding(position)
        return MonitorState(algorithm.init(position, rng_key), jnp.zeros((), jnp.int32))

    def step_fn(rng_key: PRNGKey, state: MonitorState) -> tuple[MonitorState, MonitorInfo]:
        inner_state, info = algorithm.step(rng_key, state.state)
        count = state.count + 1
        position = inner_state.position
        lam = schedule_value(temperature, state.count)
        key = certificate_key(rng_key)
        dtype = flatten_particles(position).dtype
        skipped = Certificate(*(jnp.full((), jnp.nan, dtype) for _ in Certificate._fields))
        recorded = jax.lax.cond(
            count % every == 0,
            lambda: certificate(position, lam, key),
            lambda: skipped,
        )
        return MonitorState(inner_state, count), MonitorInfo(info, recorded)

    return SamplingAlgorithm(init_fn, step_fn)
