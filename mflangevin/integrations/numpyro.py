"""Mean-field Langevin dynamics on NumPyro models: an ``MCMCKernel`` (docs/theory/mfld.md).

Swap ``NUTS(model)`` for ``MFLD(model, num_particles, step_size, temperature)`` and keep the rest
of a NumPyro workflow: ``MCMC``, its chain methods, ``get_samples``, ``Predictive``.

Two kinds of model:

* **Bayesian models** (no particle plate): every particle is an independent copy of the model's
  latent sites, moved by Langevin dynamics on ``∝ ν(θ) p(data | θ)^{1/λ}``, where ν is the prior
  pushed to unconstrained space (log-Jacobian included), each move accepted by its own Metropolis
  test (MALA; unadjusted with ``metropolis=False`` or a subsampled plate). ``temperature=1``
  samples the posterior; ``F(μ) = E_μ[−log p(data | θ)]`` is linear, the ``N`` chains do not
  interact.
* **Mean-field models**: the latent sites inside the plate named ``particle_plate`` are the
  particles, their prior is the reference ν, and the observed sites outside the plate give
  ``−F(μ_Θ)``, typically through the particle average. The library scales those sites by ``N/λ``,
  so that the model's density is the MFLD Gibbs measure ``∝ exp(−N F(μ_Θ)/λ) Π_i ν(θ_i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.initialization import init_to_sample, init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from mflangevin._checks import all_finite, check_positive
from mflangevin.integrations import _numpyro_control_variate as control
from mflangevin.integrations import _numpyro_model
from mflangevin.integrations import _numpyro_warmup as warmup
from mflangevin.integrations._numpyro_mcmc import MCMC
from mflangevin.integrations._numpyro_warmup import (
    DualAveraging,
    accept_prob,
    mean_field_accept_prob,
)
from mflangevin.kernels import mfld
from mflangevin.kernels.diffusions import per_particle_sq_norm
from mflangevin.schedules import schedule_value
from mflangevin.types import Array, PRNGKey, ScalarOrSchedule

__all__ = [
    "MCMC",
    "MFLD",
    "MFLDModelState",
    "DualAveraging",
    "accept_prob",
    "mean_field_accept_prob",
]

#: The stream of the subsamples of the model's subsampled plates, folded into the state's key.
SUBSAMPLE = 0x5353
#: The stream of the Metropolis tests' uniforms, folded into the step key.
METROPOLIS = 0x4D48


class MFLDModelState(NamedTuple):
    """State of :class:`MFLD` on a NumPyro model.

    ``z`` holds the particles in unconstrained space, one leading axis of size ``N`` per latent
    site; ``energy`` is ``F(μ_Θ)`` and ``drift_norm`` the root-mean-square drift at ``z``;
    ``diverging`` flags a step that refused a particle's move (its proposal was non-finite or
    beyond ``divergence_threshold``) or met a non-finite energy, and ``num_refused`` counts the
    refused moves; ``step_size`` is the ``η`` of the next step (tuned during warmup when the
    kernel was given none); ``accept_prob`` is the mean over particles of the Metropolis
    acceptance probability of the last moves (with the Metropolis correction, the expected
    fraction of moves accepted; without, a measure of the step's discretisation error, and while
    the warmup tunes the step a move below ``10⁻³`` is undone; for a mean-field model an
    estimate from the whole system's ratio; for a subsampled model measured only while the
    warmup tunes the step, NaN otherwise) and
    ``num_improbable`` the number of moves whose acceptance probability is below ``10⁻²``
    (without the correction, where the step is far too large for the posterior's curvature: a
    funnel's neck; with it, moves almost surely rejected); ``unmoved`` (per particle) counts
    the steps since the particle last moved, and ``num_stuck`` the particles unmoved for
    ``100`` steps or more (with the correction, particles whose moves the test rejects nearly
    always: where the posterior is far narrower than the step).
    ``potential`` and ``loss`` (per particle, ``V`` and ``−log p(data | θ_i)``, Bayesian models;
    ``J(Θ)`` and ``F(μ_Θ)``, mean-field models),
    ``drift``, ``scale`` (the diagonal preconditioner: the per-coordinate spread of the
    particles, tuned with the step size), ``backoff`` (per particle, the factor by which a
    particle's preconditioner shrank during an unadjusted warmup after its moves failed) and
    ``adapt_state`` (the step size's dual averaging) are carried to the next step, and
    ``control_variate`` (the centre of the drift's control variate and the full-data values
    there, for a model with a subsampled plate; ``()`` otherwise). Each step splits ``rng_key``
    into the next state's key and the step key (and folds a stream of the Metropolis tests'
    uniforms out of the step key).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
    >>> state = MFLD(model, num_particles=8, step_size=0.01).init(jax.random.key(0), 0)
    >>> state.z["loc"].shape, int(state.i), bool(state.diverging), int(state.num_refused)
    ((8,), 0, False, 0)
    """

    i: Array
    z: dict
    energy: Array
    drift_norm: Array
    diverging: Array
    num_refused: Array
    step_size: Array
    accept_prob: Array
    num_improbable: Array
    num_stuck: Array
    rng_key: PRNGKey
    potential: Array
    loss: Array
    drift: dict
    scale: dict
    backoff: Array
    unmoved: Array
    adapt_state: tuple
    control_variate: tuple = ()


class _Carried(NamedTuple):
    """The model as an :class:`~mflangevin.objectives.Objective` for one MFLD step, from the
    energy and drift the state carries at its particles (computed at the end of the previous
    step, as NumPyro's HMC carries its gradient); ν is already inside the drift."""

    carried_energy: Array
    carried_drift: dict
    reference: None = None

    def energy_and_drift(self, particles):
        del particles
        return self.carried_energy, self.carried_drift

    def energy(self, particles):
        del particles
        return self.carried_energy


class MFLD(MCMCKernel):
    """Mean-field Langevin dynamics over ``N`` particles of a NumPyro model.

    Each MCMC iteration is one MFLD step of all particles (``θ_i ← θ_i − η[∇δF/δμ(θ_i) −
    λ∇log ν(θ_i)] + √(2λη) ξ_i``, the update of :func:`mflangevin.mfld`), on a Bayesian model
    followed by each particle's Metropolis test (MALA: a refused move keeps the particle where it
    was, see ``metropolis``). A draw is the whole
    particle system: ``get_samples()`` gives ``(draws, N, …)`` per latent site and
    ``get_samples(group_by_chain=True)`` gives ``(chains, draws, N, …)``;
    :class:`mflangevin.numpyro.MCMC` pools the particles of a Bayesian model into draws.

    Parameters
    ----------
    model
        A NumPyro model with continuous latent sites. With a plate named ``particle_plate`` (of
        size ``num_particles``, outermost on every latent site) it is a mean-field model, every
        latent site must sit inside that plate; without one it is an ordinary Bayesian model.
    num_particles
        ``N``.
    step_size
        η > 0, or a schedule ``iteration -> η``, used as given. ``None`` (the default): tuned
        during warmup, as NUTS tunes its step, by dual averaging towards ``target_accept_prob``
        (below), then held fixed.
    temperature
        λ > 0, or a schedule ``iteration -> λ``. For a Bayesian model ``λ = 1`` samples the
        posterior; for a mean-field model the sites outside the plate are scaled by ``N/λ``.
    particle_plate
        Name of the plate whose latent sites are the particles.
    init_strategy
        NumPyro initialisation strategy. ``None`` (the default): for a Bayesian model,
        ``init_to_uniform`` (uniform on ``(−2, 2)`` in unconstrained space, NUTS's default), on
        ``(−4, 4)`` when the warmup tunes the step (see the NumPyro guide, "What the warmup
        tunes"); a draw of the plate from ν (``init_to_sample``) for a mean-field model.
    divergence_threshold
        A particle whose proposal has an unconstrained coordinate that is non-finite or this large
        keeps its position (the others move); the step is flagged in ``diverging`` and the
        particle counted in ``num_refused``.
    target_accept_prob
        With ``step_size=None``: the mean Metropolis acceptance probability of the particles'
        moves that warmup aims at. ``None`` (the default): 0.6 with the Metropolis correction
        (near MALA's optimal 0.574), 0.97 without. Without it no move is rejected after warmup;
        the probability then measures how far the unadjusted step is from reversible, so a
        higher target means a smaller step and a smaller discretisation bias.
    metropolis
        Whether each particle's move is accepted by a Metropolis test (MALA per particle: a
        refused move keeps the particle where it was), which removes the ``O(η)`` bias of the
        unadjusted step: the particles of a Bayesian model are independent, so each is then an
        exact MALA chain of the posterior. ``None`` (the default): ``True`` for a Bayesian model
        without subsampled plates, ``False`` otherwise. ``True`` is refused on a mean-field model
        (a particle's ratio is not that of the interacting system) and on a subsampled one (the
        ratio of noisy potentials and drifts is not that of the posterior).
    control_variate
        For a model with a subsampled plate: estimate the data part of the drift at each particle
        ``θ`` by ``∇E_B(θ) − ∇E_B(θ̂) + ∇E(θ̂)`` on the step's subsample ``B``, with the centre
        ``θ̂`` (the cloud's mean) and the full-data gradient there fixed halfway through the
        warmup and again at its end (one pass over the data each). Unbiased, as the plain
        estimate ``∇E_B(θ)`` (``control_variate=False``), with an error that vanishes at ``θ̂``
        and grows with ``‖θ − θ̂‖`` instead of the spread of the per-datum gradients. A mean-field
        model's centre is the whole system. Ignored without a subsampled plate.

    Notes
    -----
    ``init_params`` given to ``MCMC.run`` are unconstrained particles (leading axis ``N``; under
    ``chain_method="vectorized"`` a further leading chain axis). ``Predictive`` takes the samples
    of a mean-field model as they are, and those of a Bayesian model with ``batch_ndims=2``
    (or as they are from :class:`mflangevin.numpyro.MCMC`).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> def model(y):
    ...     loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
    ...     with numpyro.plate("data", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(loc, 1.0), obs=y)
    >>> kernel = MFLD(model, num_particles=64)
    >>> mcmc = MCMC(kernel, num_warmup=200, num_samples=10, progress_bar=False)
    >>> mcmc.run(jax.random.key(0), jnp.array([1.0, 2.0, 3.0]))
    >>> mcmc.get_samples()["loc"].shape
    (10, 64)
    """

    sample_field = "z"
    default_fields = (
        "z",
        "diverging",
        "num_refused",
        "accept_prob",
        "num_improbable",
        "num_stuck",
    )

    def __init__(
        self,
        model: Callable,
        num_particles: int,
        step_size: ScalarOrSchedule | None = None,
        temperature: ScalarOrSchedule = 1.0,
        particle_plate: str = "particles",
        *,
        init_strategy: Callable | None = None,
        divergence_threshold: float = 1e6,
        target_accept_prob: float | None = None,
        metropolis: bool | None = None,
        control_variate: bool = True,
    ):
        if not callable(model):
            raise TypeError(f"model: expected a NumPyro model (a callable), got {model!r}.")
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"num_particles: expected an int, got {num_particles!r}.")
        if num_particles < 1:
            raise ValueError(f"num_particles: must be >= 1, got {num_particles}.")
        if not isinstance(particle_plate, str):
            raise TypeError(f"particle_plate: expected a plate name, got {particle_plate!r}.")
        if step_size is not None:
            check_positive("step_size", step_size)
        check_positive("temperature", temperature)
        check_positive("divergence_threshold", divergence_threshold)
        if target_accept_prob is not None and not 0.0 < float(target_accept_prob) < 1.0:
            raise ValueError(f"target_accept_prob: must lie in (0, 1), got {target_accept_prob!r}.")
        if metropolis is not None and not isinstance(metropolis, bool):
            raise TypeError(f"metropolis: expected True, False or None, got {metropolis!r}.")
        if not isinstance(control_variate, bool):
            raise TypeError(f"control_variate: expected True or False, got {control_variate!r}.")
        self._model = model
        self.num_particles = num_particles
        self.step_size = step_size
        self.temperature = temperature
        self.particle_plate = particle_plate
        self.target_accept_prob = target_accept_prob
        self.metropolis = metropolis
        self.control_variate = control_variate
        self._init_strategy = init_strategy
        self._divergence_threshold = divergence_threshold
        self._kernel = mfld.build_kernel(divergence_threshold)
        self._mean_field = None
        self._subsampled = False
        self._centred = False
        self._adjusted = None
        self._target = None
        self._vectorized = False
        self._num_warmup = 0
        self._init_cache = {}

    def __getstate__(self) -> dict:
        # The built kernel is a local closure: rebuild it on unpickling (as NUTS pickles).
        state = self.__dict__.copy()
        del state["_kernel"], state["_init_cache"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._kernel = mfld.build_kernel(self._divergence_threshold)
        self._init_cache = {}

    @property
    def model(self) -> Callable:
        """The NumPyro model (read by ArviZ's NumPyro converter).

        Examples
        --------
        >>> import numpyro, numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
        >>> MFLD(model, num_particles=8, step_size=0.01).model is model
        True
        """
        return self._model

    @property
    def is_mean_field(self) -> bool | None:
        """Whether the model declares the particle plate (known after ``init``).

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     with numpyro.plate("particles", 8):
        ...         numpyro.sample("theta", dist.Normal(0.0, 1.0))
        >>> kernel = MFLD(model, num_particles=8, step_size=0.01)
        >>> print(kernel.is_mean_field)
        None
        >>> _ = kernel.init(jax.random.key(0), 0)
        >>> kernel.is_mean_field
        True
        """
        return self._mean_field

    @property
    def is_adjusted(self) -> bool | None:
        """Whether the moves pass a Metropolis test (``metropolis``, resolved for the model;
        known after ``init``).

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
        >>> kernel = MFLD(model, num_particles=8)
        >>> _ = kernel.init(jax.random.key(0), 10)
        >>> kernel.is_adjusted, MFLD(model, 8, metropolis=False).is_adjusted
        (True, None)
        """
        return self._adjusted

    def init(
        self,
        rng_key: PRNGKey,
        num_warmup: int,
        init_params: dict | None = None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
    ) -> MFLDModelState:
        """Check the model and draw the initial particles (from ν unless ``init_params``).

        Examples
        --------
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
        >>> kernel = MFLD(model, num_particles=8, step_size=0.01)
        >>> state = kernel.init(jax.random.key(0), 0, init_params={"loc": jnp.zeros(8)})
        >>> state.z["loc"]
        Array([0., 0., 0., 0., 0., 0., 0., 0.], dtype=float32)
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        self._num_warmup = int(num_warmup)
        self._vectorized = not is_prng_key(rng_key)
        first_key = rng_key[0] if self._vectorized else rng_key
        self._mean_field = _numpyro_model.is_mean_field(
            first_key,
            self._model,
            model_args,
            model_kwargs,
            self.particle_plate,
            self.num_particles,
        )
        self._subsampled = bool(
            _numpyro_model.subsampled_plates(first_key, self._model, model_args, model_kwargs)
        )
        exact = not (self._mean_field or self._subsampled)
        if self.metropolis and not exact:
            kind = "a mean-field" if self._mean_field else "a subsampled"
            raise ValueError(
                f"metropolis: True needs independent particles and exact potentials; {kind} "
                "model has "
                + (
                    "interacting particles, whose moves have no Metropolis ratio of their own."
                    if self._mean_field
                    else "noisy potentials and drifts, whose Metropolis ratio is not the "
                    "posterior's."
                )
                + " Leave metropolis=None (unadjusted there)."
            )
        self._adjusted = exact if self.metropolis is None else self.metropolis
        if self.target_accept_prob is not None:
            self._target = float(self.target_accept_prob)
        elif self._adjusted:
            self._target = warmup.ADJUSTED_TARGET_ACCEPT_PROB
        else:
            self._target = warmup.TARGET_ACCEPT_PROB
        self._centred = self._subsampled and self.control_variate

        if init_params is not None:
            self._check_finite(init_params)
        dynamic, static = _partition((model_args, model_kwargs))
        return self._compiled_init(static)(rng_key, init_params, dynamic)

    def _compiled_init(self, static) -> Callable:
        """The initialisation, compiled once per model, settings and static arguments (and, by
        ``jax.jit``'s own cache, per shapes of the array arguments)."""
        cache_key = (
            static,
            self._vectorized,
            self._mean_field,
            self._subsampled,
            self._target,
            self._centred,
        )
        try:
            compiled = self._init_cache.get(cache_key)
        except TypeError:  # an unhashable non-array argument: initialise without compiling
            return partial(self._init_all, static)
        if compiled is None:
            compiled = self._init_cache[cache_key] = jax.jit(partial(self._init_all, static))
        return compiled

    def _init_all(self, static, rng_key: PRNGKey, params: dict | None, dynamic) -> MFLDModelState:
        model_args, model_kwargs = _combine(dynamic, static)
        one = partial(self._init_one, model_args, model_kwargs)
        return jax.vmap(one)(rng_key, params) if self._vectorized else one(rng_key, params)

    def _init_one(
        self, model_args: tuple, model_kwargs: dict, key: PRNGKey, params: dict | None
    ) -> MFLDModelState:
        key, init_key, trial_key = jax.random.split(key, 3)
        draw = partial(self._initial_particles, init_key, model_args, model_kwargs)
        z = draw() if params is None else self._check_init_params(params, jax.eval_shape(draw))
        temperature = schedule_value(self.temperature, jnp.zeros((), jnp.int32))
        potential_fn = self._potential_fn(model_args, model_kwargs, temperature, key)
        loss, potential, drift = potential_fn(z)
        dtype = jnp.result_type(*jax.tree.leaves(z))
        backoff = jnp.ones(self.num_particles, dtype)
        if self.step_size is None:
            scale = warmup.cloud_scale(z)
            full = warmup.particle_scale(scale, backoff)
            u, drift_u = warmup.whiten(z, drift, full)
            step_size = self._initial_step_size(
                trial_key,
                lambda u: warmup.whitened(potential_fn(warmup.colour(u, full)), full),
                u,
                potential,
                drift_u,
                temperature,
            )
            adapt_state = DualAveraging.start(jnp.log(step_size))
        else:
            scale = jax.tree.map(lambda x: jnp.ones(x.shape[1:], x.dtype), z)
            step_size = schedule_value(self.step_size, jnp.zeros((), jnp.int32))
            adapt_state = ()
        control_variate = ()
        if self._centred:
            data_part = self._data_part(model_args, model_kwargs, key)
            control_variate = control.unset(z, self._mean_field, data_part)
        return MFLDModelState(
            i=jnp.zeros((), jnp.int32),
            z=z,
            energy=jnp.mean(loss),
            drift_norm=jnp.sqrt(jnp.mean(per_particle_sq_norm(drift))),
            diverging=jnp.array(False),
            num_refused=jnp.zeros((), jnp.int32),
            step_size=jnp.asarray(step_size, dtype),
            accept_prob=jnp.full((), jnp.nan, dtype),
            num_improbable=jnp.zeros((), jnp.int32),
            num_stuck=jnp.zeros((), jnp.int32),
            rng_key=key,
            potential=potential,
            loss=loss,
            drift=drift,
            scale=scale,
            backoff=backoff,
            unmoved=jnp.zeros(self.num_particles, jnp.int32),
            adapt_state=adapt_state,
            control_variate=control_variate,
        )

    def sample(
        self, state: MFLDModelState, model_args: tuple, model_kwargs: dict
    ) -> MFLDModelState:
        """One MFLD step of all particles.

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
        >>> kernel = MFLD(model, num_particles=8, step_size=0.01)
        >>> state = kernel.sample(kernel.init(jax.random.key(0), 0), (), {})
        >>> int(state.i), state.z["loc"].shape, bool(state.diverging)
        (1, (8,), False)
        """
        if self._centred:
            # The centring's full-data pass runs at two steps only: a cond on the step count
            # outside the chains' vmap, under which it would run at every step.
            i = state.i[0] if self._vectorized else state.i
            recentre = partial(self._recentre, model_args, model_kwargs)
            recentre = jax.vmap(recentre) if self._vectorized else recentre
            state = jax.lax.cond(self._centring_step(i), recentre, lambda s: s, state)
        if self._vectorized:
            return jax.vmap(self._step, in_axes=(0, None, None))(state, model_args, model_kwargs)
        return self._step(state, model_args, model_kwargs)

    def _centring_step(self, i: Array) -> Array:
        """The steps that start by centring the control variate: halfway through the warmup
        (after a first phase of plain subsampled drifts, while the cloud finds the posterior) and
        at its end (both the first step when there is no warmup)."""
        return (i == self._num_warmup // 2) | (i == self._num_warmup)

    def _recentre(self, model_args: tuple, model_kwargs: dict, state: MFLDModelState):
        """Centre the control variate at the particles' mean (a mean-field model: at the system)
        and re-estimate the carried potential and drift with it, on the step's subsample."""
        full_data_part = self._data_part(model_args, model_kwargs, None)
        at = control.centre(state.z, self._mean_field)
        control_variate = control.centred_at(at, full_data_part)
        temperature = schedule_value(self.temperature, state.i)
        potential_fn = self._potential_fn(
            model_args, model_kwargs, temperature, state.rng_key, control_variate
        )
        loss, potential, drift = potential_fn(state.z)
        return state._replace(
            energy=jnp.mean(loss),
            drift_norm=jnp.sqrt(jnp.mean(per_particle_sq_norm(drift))),
            potential=potential,
            loss=loss,
            drift=drift,
            control_variate=control_variate,
        )

    def postprocess_fn(self, model_args: tuple, model_kwargs: dict) -> Callable:
        """Map unconstrained particles to constrained values, deterministic sites included.

        Examples
        --------
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
        ...     numpyro.deterministic("shifted", loc + 1.0)
        >>> kernel = MFLD(model, num_particles=8, step_size=0.01)
        >>> state = kernel.init(jax.random.key(0), 0, init_params={"loc": jnp.zeros(8)})
        >>> values = kernel.postprocess_fn((), {})(state.z)
        >>> values["loc"].shape, values["shifted"][0]
        ((8,), Array(1., dtype=float32))
        """
        return _numpyro_model.constrain(self._model, model_args, model_kwargs, self._mean_field)

    def get_diagnostics_str(self, state: MFLDModelState) -> str:
        """Progress-bar text: ``F(μ)`` and the drift size at the last step.

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
        >>> kernel = MFLD(model, num_particles=8, step_size=0.01)
        >>> state = kernel.sample(kernel.init(jax.random.key(0), 0), (), {})
        >>> kernel.get_diagnostics_str(state)  # doctest: +ELLIPSIS
        'F(μ) ..., |drift| ...'
        """
        return f"F(μ) {float(state.energy):.4g}, |drift| {float(state.drift_norm):.3g}"

    def _initial_particles(self, key: PRNGKey, model_args: tuple, model_kwargs: dict) -> dict:
        strategy = self._init_strategy
        if strategy is None and self._mean_field:
            strategy = init_to_sample
        elif strategy is None:
            # The wider start needs the warmup's per-particle backoff for its stiff corners.
            radius = warmup.INIT_RADIUS if self.step_size is None else 2.0
            strategy = init_to_uniform(radius=radius)
        return _numpyro_model.initial_particles(
            key,
            self._model,
            model_args,
            model_kwargs,
            strategy,
            self._mean_field,
            self.num_particles,
        )

    @staticmethod
    def _check_finite(params) -> None:
        """NaN or infinite initial particles would make every step a refused one."""
        if not isinstance(params, dict):
            return  # the structure is checked, with the expected sites, in _check_init_params
        for name, value in params.items():
            if isinstance(value, jax.core.Tracer):
                continue
            try:
                finite = all_finite(jnp.asarray(value))
            except TypeError:
                continue  # not numeric: _check_init_params reports the shape or dtype
            if not finite:
                raise ValueError(
                    f"init_params: site {name!r} has NaN or infinite values; every particle "
                    "must start finite (in unconstrained space)."
                )

    def _check_init_params(self, params: dict, prototype: dict) -> dict:
        if not isinstance(params, dict) or set(params) != set(prototype):
            raise ValueError(
                f"init_params: expected unconstrained particles for the sites {sorted(prototype)}."
            )
        for name, value in params.items():
            if jnp.shape(value) != prototype[name].shape:
                raise ValueError(
                    f"init_params: site {name!r} needs shape {prototype[name].shape} "
                    f"(leading axis N = {self.num_particles}), got {jnp.shape(value)}."
                )
        return {name: jnp.asarray(value, prototype[name].dtype) for name, value in params.items()}

    def _potential_fn(
        self, model_args: tuple, model_kwargs: dict, temperature, rng_key, control_variate=None
    ):
        """``z ↦ (F, V, drift)`` on the subsample drawn from ``rng_key``, corrected by the
        control variate when one is given."""
        subsample = self._data_part(model_args, model_kwargs, rng_key, temperature)
        if control_variate is None:
            return subsample
        data_part = self._data_part(model_args, model_kwargs, rng_key)
        at_centre = data_part(control_variate.centre)
        scale = self.num_particles if self._mean_field else 1
        return lambda z: control.corrected(subsample(z), at_centre, control_variate, z, scale)

    def _data_part(self, model_args: tuple, model_kwargs: dict, rng_key, temperature=0.0):
        """``z ↦ (F, V, drift)`` at ``temperature`` (at ``0``, the data part alone), on the
        subsample drawn from ``rng_key`` (``None``: on the whole data)."""
        return _numpyro_model.potential_and_drift_fn(
            self._model,
            model_args,
            model_kwargs,
            self.particle_plate,
            self._mean_field,
            self.num_particles,
            temperature,
            None if rng_key is None else jax.random.fold_in(rng_key, SUBSAMPLE),
        )

    def _initial_step_size(self, rng_key, potential_fn, z, potential, drift, temperature):
        """The largest ``η = 2^{-k}`` whose trial move from ``z`` has mean acceptance probability
        at least ``target_accept_prob`` (the start of the dual averaging, as NUTS's
        ``find_reasonable_step_size``)."""
        noise = warmup.noise_like(rng_key, z)

        def acceptance(step_size):
            scale = jnp.sqrt(2 * temperature * step_size)
            proposal = jax.tree.map(lambda p, d, n: p - step_size * d + scale * n, z, drift, noise)
            _, new_potential, new_drift = potential_fn(proposal)
            refused = jnp.zeros(self.num_particles, bool)
            moves = (z, potential, drift, proposal, new_potential, new_drift)
            return self._acceptance(*moves, step_size, temperature, refused)[0]

        def too_large(step_size):
            return (acceptance(step_size) < self._target) & (step_size > 1e-12)

        dtype = jnp.result_type(*jax.tree.leaves(z))
        return jax.lax.while_loop(too_large, lambda eta: eta / 2, jnp.ones((), dtype))

    def _acceptance(self, *moves) -> tuple[Array, Array | None]:
        """The mean acceptance probability of the moves and, for independent particles, each
        particle's (a mean-field model's particles have none of their own)."""
        if self._mean_field:
            return warmup.mean_field_accept_prob(*moves), None
        probs = accept_prob(*moves)
        return jnp.mean(probs), probs

    def _step(self, state: MFLDModelState, model_args: tuple, model_kwargs: dict) -> MFLDModelState:
        rng_key, step_key = jax.random.split(state.rng_key)
        adapt = self.step_size is None
        step_size = state.step_size if adapt else schedule_value(self.step_size, state.i)
        temperature = schedule_value(self.temperature, state.i)
        # The kernel moves u = z / scale, whose drift is scale · ∇V: Langevin dynamics
        # preconditioned by the diagonal scale² (ones unless the warmup tunes it).
        full = warmup.particle_scale(state.scale, state.backoff)
        u, drift_u = warmup.whiten(state.z, state.drift, full)
        new_state, info = self._kernel(
            step_key,
            mfld.initial_state(u)._replace(count=state.i),
            _Carried(state.energy, drift_u),
            step_size,
            temperature,
        )
        z = warmup.colour(new_state.position, full)
        next_temperature = schedule_value(self.temperature, new_state.count)
        # One gradient per step, at the new particles; with a subsampled plate, on the
        # subsample of the next step (drawn from the next state's key).
        control_variate = state.control_variate if self._centred else None
        potential_fn = self._potential_fn(
            model_args, model_kwargs, next_temperature, rng_key, control_variate
        )
        loss, potential, drift = potential_fn(z)
        dtype = state.step_size.dtype
        adapt_state, scale, backoff = state.adapt_state, state.scale, state.backoff
        next_step_size = jnp.asarray(step_size, dtype)
        new_u = jax.tree.map(jnp.divide, z, full)
        end = (potential, drift)
        tuning = state.i < self._num_warmup
        if self._subsampled and adapt:
            # The ratio needs both ends on one subsample, the step's own: one more gradient, paid
            # while tuning only; otherwise the moves are not measured (NaN).
            same = partial(
                self._potential_fn, model_args, model_kwargs, next_temperature, state.rng_key
            )
            end = jax.lax.cond(tuning, lambda: same(control_variate)(z)[1:], lambda: end)
            # Two subsamples' drifts at the same particles differ by twice the minibatch noise's
            # covariance: the step is held where that noise's variance per step, η²·tr Σ, is
            # MINIBATCH_NOISE times the Langevin noise's, 2λη·p.
            noise = per_particle_sq_norm(
                warmup.colour(jax.tree.map(jnp.subtract, drift, end[1]), full)
            )
            size = sum(x[0].size for x in jax.tree.leaves(z))
            noise_cap = warmup.MINIBATCH_NOISE * 4 * temperature * size / jnp.median(noise)
        new_drift_u = warmup.colour(end[1], full)
        moves = (u, state.potential, drift_u, new_u, end[0], new_drift_u)
        refused = warmup.unmoved(u, new_u)
        mean_accept, probs = self._acceptance(*moves, step_size, temperature, refused)
        if self._subsampled:
            measured = tuning & adapt
            mean_accept = jnp.where(measured, mean_accept, jnp.nan)
            probs = jnp.where(measured, probs, 1.0) if probs is not None else None
        mean_accept = mean_accept.astype(dtype)
        num_improbable = jnp.zeros((), jnp.int32)
        if probs is not None:
            num_improbable = jnp.sum(probs < warmup.IMPROBABLE_MOVE, dtype=jnp.int32)
        # The moves undone. With the Metropolis correction, those its test refuses: each
        # particle's move is then a MALA move of its own chain. Without it, while tuning, those
        # whose acceptance probability is below ABSURD_MOVE (a step tried too large does not
        # fling the particle away, as NUTS rejects a divergent trajectory), and that particle's
        # steps shrink; they grow back while its moves succeed, so particles far out in stiff
        # regions move on their own scale. A mean-field model's particles have no acceptance of
        # their own, and a subsampled model's undone particle would keep a potential of the
        # wrong subsample: none is undone there.
        if self._adjusted:
            uniform = jax.random.uniform(
                jax.random.fold_in(step_key, METROPOLIS), probs.shape, probs.dtype
            )
            undone = uniform >= probs
        elif adapt and probs is not None and not self._subsampled:
            undone = tuning & (probs < warmup.ABSURD_MOVE)
            grown = jnp.minimum(backoff * warmup.BACKOFF_GROWTH, 1.0).astype(dtype)
            backoff = jnp.where(tuning, jnp.where(undone, backoff / 2, grown), backoff)
        else:
            undone = None
        if undone is not None:
            z, loss, potential, drift = jax.tree.map(
                lambda old, new: jnp.where(warmup.per_particle(undone, new), old, new),
                (state.z, state.loss, state.potential, state.drift),
                (z, loss, potential, drift),
            )
        if adapt:
            updated = adapt_state.update(self._target - mean_accept)
            # Windows that double (as Stan's): the averaging restarts from the current step at
            # 16, 32, 64, … steps up to half the warmup, forgetting the far-off start.
            count = new_state.count
            restart = (count >= 16) & ((count & (count - 1)) == 0) & (2 * count <= self._num_warmup)
            updated = jax.tree.map(
                lambda fresh, old: jnp.where(restart, fresh, old),
                DualAveraging.start(updated.log_step_size),
                updated,
            )
            if self._centred:
                # Centring the control variate shrinks the minibatch noise that capped the step,
                # while the averaging, seeing high acceptance under the cap, drove its iterate up:
                # it restarts from the step in use, without the start's pull towards 10 η.
                log_in_use = jnp.log(step_size).astype(dtype)
                updated = jax.tree.map(
                    lambda fresh, old: jnp.where(state.i == self._num_warmup // 2, fresh, old),
                    DualAveraging.start(log_in_use)._replace(centre=log_in_use),
                    updated,
                )
            log_step = jnp.where(count < self._num_warmup, updated[0], updated[1])
            # At the same points, a particle stranded where the potential is far above the
            # cloud's (a minor mode, a region it cannot leave) restarts from another particle.
            if probs is not None:
                stranded = restart & warmup.stranded(potential, temperature, z)
                key = jax.random.fold_in(step_key, warmup.RESAMPLE)
                source = warmup.replacement(key, stranded)
                z, loss, potential, drift, backoff = jax.tree.map(
                    lambda x: jnp.where(warmup.per_particle(stranded, x), x[source], x),
                    (z, loss, potential, drift, backoff),
                )
            adapt_state, scale = jax.tree.map(
                lambda new, old: jnp.where(tuning, new, old),
                (updated, warmup.cloud_scale(z)),
                (adapt_state, scale),
            )
            tuned = jnp.exp(log_step)
            if self._subsampled:
                tuned = jnp.minimum(tuned, noise_cap)
            next_step_size = jnp.where(tuning, tuned.astype(dtype), state.step_size)
        energy = jnp.mean(loss)
        unmoved = jnp.where(warmup.unmoved(state.z, z), state.unmoved + 1, 0)
        return MFLDModelState(
            i=new_state.count,
            z=z,
            energy=energy,
            drift_norm=jnp.sqrt(jnp.mean(per_particle_sq_norm(drift))),
            diverging=info.is_divergent | ~jnp.isfinite(energy),
            num_refused=info.num_refused,
            step_size=next_step_size,
            accept_prob=mean_accept,
            num_improbable=num_improbable,
            num_stuck=jnp.sum(unmoved >= warmup.STUCK_STEPS, dtype=jnp.int32),
            rng_key=rng_key,
            potential=potential,
            loss=loss,
            drift=drift,
            scale=scale,
            backoff=backoff,
            unmoved=unmoved,
            adapt_state=adapt_state,
            control_variate=state.control_variate,
        )


def _partition(tree) -> tuple[list, tuple]:
    """The array leaves of ``tree`` (traced by ``jax.jit``) and the rest, hashable, with the
    structure (static): the model's arguments as a compiled init takes them."""
    leaves, treedef = jax.tree.flatten(tree)
    is_array = tuple(isinstance(x, jax.Array | np.ndarray) for x in leaves)
    dynamic = [x for x, array in zip(leaves, is_array, strict=True) if array]
    static = tuple(None if array else x for x, array in zip(leaves, is_array, strict=True))
    return dynamic, (treedef, is_array, static)


def _combine(dynamic: list, static: tuple):
    """The inverse of :func:`_partition`."""
    treedef, is_array, values = static
    arrays = iter(dynamic)
    leaves = [next(arrays) if array else x for array, x in zip(is_array, values, strict=True)]
    return jax.tree.unflatten(treedef, leaves)
