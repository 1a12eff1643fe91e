"""Mean-field Langevin dynamics on NumPyro models: an ``MCMCKernel`` (docs/theory/mfld.md).

Swap ``NUTS(model)`` for ``MFLD(model, num_particles, step_size, temperature)`` and keep the rest
of a NumPyro workflow: ``MCMC``, its chain methods, ``get_samples``, ``Predictive``.

Two kinds of model:

* **Bayesian models** (no particle plate): every particle is an independent copy of the model's
  latent sites, moved by unadjusted Langevin dynamics on ``∝ ν(θ) p(data | θ)^{1/λ}``, where ν is
  the prior pushed to unconstrained space (log-Jacobian included). ``temperature=1`` samples the
  posterior; ``F(μ) = E_μ[−log p(data | θ)]`` is linear, the ``N`` chains do not interact.
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
from numpyro.infer.initialization import init_to_sample
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from mflangevin._checks import all_finite, check_positive
from mflangevin.integrations import _numpyro_model
from mflangevin.kernels import mfld
from mflangevin.schedules import schedule_value
from mflangevin.types import Array, PRNGKey, ScalarOrSchedule

__all__ = ["MFLD", "MFLDModelState"]


class MFLDModelState(NamedTuple):
    """State of :class:`MFLD` on a NumPyro model.

    ``z`` holds the particles in unconstrained space, one leading axis of size ``N`` per latent
    site; ``energy`` is ``F(μ_Θ)`` and ``drift_norm`` the root-mean-square drift at the particles
    the last step started from; ``diverging`` flags a refused step. Each step splits ``rng_key``
    into the next state's key and the step key.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     numpyro.sample("loc", dist.Normal(0.0, 1.0))
    >>> state = MFLD(model, num_particles=8, step_size=0.01).init(jax.random.key(0), 0)
    >>> state.z["loc"].shape, int(state.i), bool(state.diverging)
    ((8,), 0, False)
    """

    i: Array
    z: dict
    energy: Array
    drift_norm: Array
    diverging: Array
    rng_key: PRNGKey


class _ModelObjective(NamedTuple):
    """The model as an :class:`~mflangevin.objectives.Objective` for the MFLD kernel; ν is
    already inside its drift, so its own reference is ``None``."""

    energy_and_drift: Callable
    reference: None = None

    def energy(self, particles):
        return self.energy_and_drift(particles)[0]


class MFLD(MCMCKernel):
    """Mean-field Langevin dynamics over ``N`` particles of a NumPyro model.

    Each MCMC iteration is one MFLD step of all particles (``θ_i ← θ_i − η[∇δF/δμ(θ_i) −
    λ∇log ν(θ_i)] + √(2λη) ξ_i``, the update of :func:`mflangevin.mfld`). A draw is the whole
    particle system: ``get_samples()`` gives ``(draws, N, …)`` per latent site and
    ``get_samples(group_by_chain=True)`` gives ``(chains, draws, N, …)``. Warmup is burn-in (there
    is nothing to adapt).

    Parameters
    ----------
    model
        A NumPyro model with continuous latent sites. With a plate named ``particle_plate`` (of
        size ``num_particles``, outermost on every latent site) it is a mean-field model, every
        latent site must sit inside that plate; without one it is an ordinary Bayesian model.
    num_particles
        ``N``.
    step_size
        η > 0, or a schedule ``iteration -> η``.
    temperature
        λ > 0, or a schedule ``iteration -> λ``. For a Bayesian model ``λ = 1`` samples the
        posterior; for a mean-field model the sites outside the plate are scaled by ``N/λ``.
    particle_plate
        Name of the plate whose latent sites are the particles.
    init_strategy
        NumPyro initialisation strategy; the default draws the particles from the prior ν.
    divergence_threshold
        A step that makes an unconstrained coordinate non-finite or this large is refused and
        flagged in ``diverging``.

    Notes
    -----
    ``init_params`` given to ``MCMC.run`` are unconstrained particles (leading axis ``N``; under
    ``chain_method="vectorized"`` a further leading chain axis). ``Predictive`` takes the samples
    of a mean-field model as they are, and those of a Bayesian model with ``batch_ndims=2``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> def model(y):
    ...     loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
    ...     with numpyro.plate("data", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(loc, 1.0), obs=y)
    >>> kernel = MFLD(model, num_particles=64, step_size=0.01, temperature=1.0)
    >>> mcmc = MCMC(kernel, num_warmup=200, num_samples=10, progress_bar=False)
    >>> mcmc.run(jax.random.key(0), jnp.array([1.0, 2.0, 3.0]))
    >>> mcmc.get_samples()["loc"].shape
    (10, 64)
    """

    sample_field = "z"
    default_fields = ("z", "diverging")

    def __init__(
        self,
        model: Callable,
        num_particles: int,
        step_size: ScalarOrSchedule,
        temperature: ScalarOrSchedule = 1.0,
        particle_plate: str = "particles",
        *,
        init_strategy: Callable = init_to_sample,
        divergence_threshold: float = 1e6,
    ):
        if not callable(model):
            raise TypeError(f"model: expected a NumPyro model (a callable), got {model!r}.")
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"num_particles: expected an int, got {num_particles!r}.")
        if num_particles < 1:
            raise ValueError(f"num_particles: must be >= 1, got {num_particles}.")
        if not isinstance(particle_plate, str):
            raise TypeError(f"particle_plate: expected a plate name, got {particle_plate!r}.")
        check_positive("step_size", step_size)
        check_positive("temperature", temperature)
        check_positive("divergence_threshold", divergence_threshold)
        self._model = model
        self.num_particles = num_particles
        self.step_size = step_size
        self.temperature = temperature
        self.particle_plate = particle_plate
        self._init_strategy = init_strategy
        self._divergence_threshold = divergence_threshold
        self._kernel = mfld.build_kernel(divergence_threshold)
        self._mean_field = None
        self._vectorized = False

    def __getstate__(self) -> dict:
        # The built kernel is a local closure: rebuild it on unpickling (as NUTS pickles).
        state = self.__dict__.copy()
        del state["_kernel"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._kernel = mfld.build_kernel(self._divergence_threshold)

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
        del num_warmup
        model_kwargs = {} if model_kwargs is None else model_kwargs
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

        def init_one(key: PRNGKey, params: dict | None) -> MFLDModelState:
            key, init_key = jax.random.split(key)
            draw = partial(self._initial_particles, init_key, model_args, model_kwargs)
            z = draw() if params is None else self._check_init_params(params, jax.eval_shape(draw))
            zero = jnp.zeros((), jnp.result_type(*jax.tree.leaves(z)))
            return MFLDModelState(jnp.zeros((), jnp.int32), z, zero, zero, jnp.array(False), key)

        if init_params is not None:
            self._check_finite(init_params)
        if self._vectorized:
            return jax.vmap(init_one)(rng_key, init_params)
        return init_one(rng_key, init_params)

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
        if self._vectorized:
            return jax.vmap(self._step, in_axes=(0, None, None))(state, model_args, model_kwargs)
        return self._step(state, model_args, model_kwargs)

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
        return _numpyro_model.initial_particles(
            key,
            self._model,
            model_args,
            model_kwargs,
            self._init_strategy,
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

    def _step(self, state: MFLDModelState, model_args: tuple, model_kwargs: dict) -> MFLDModelState:
        rng_key, step_key = jax.random.split(state.rng_key)
        step_size = schedule_value(self.step_size, state.i)
        temperature = schedule_value(self.temperature, state.i)
        energy_and_drift = _numpyro_model.energy_and_drift_fn(
            self._model,
            model_args,
            model_kwargs,
            self.particle_plate,
            self._mean_field,
            self.num_particles,
            temperature,
        )
        new_state, info = self._kernel(
            step_key,
            mfld.initial_state(state.z)._replace(count=state.i),
            _ModelObjective(energy_and_drift),
            step_size,
            temperature,
        )
        return MFLDModelState(
            new_state.count,
            new_state.position,
            info.energy,
            info.drift_norm,
            info.is_divergent,
            rng_key,
        )
