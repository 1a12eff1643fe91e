"""A NumPyro model read as a particle system (helpers of :mod:`mflangevin.numpyro`).

The model's sample sites split in two:

* the *reference part*: every latent site, and every site inside the particle plate, together with
  the log-Jacobians of the maps to unconstrained space — ``Σ_i log ν(θ_i)``;
* the *energy part*: the observed sites outside the particle plate — ``−F(μ_Θ)``.

A model with a particle plate is a mean-field model (its latent sites are the particles); a model
without one is an ordinary Bayesian model, of which every particle is an independent copy.
"""

from __future__ import annotations

import zlib
from functools import partial

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import compute_log_probs, constrain_fn, initialize_model
from numpyro.primitives import Messenger

from mflangevin.kernels import data
from mflangevin.types import Array, ArrayTree, PRNGKey


def in_plate(site: dict, plate_name: str) -> bool:
    """Whether a trace site sits inside the plate called ``plate_name``."""
    return any(frame.name == plate_name for frame in site["cond_indep_stack"])


def abstract_trace(rng_key: PRNGKey, model, model_args: tuple, model_kwargs: dict) -> dict:
    """The model's trace with the shapes of its values in place of the values: the model runs
    under :func:`jax.eval_shape`, so that reading its sites computes (and compiles) nothing."""
    sites = {}

    def run(key):
        try:
            model_trace = trace(seed(model, key)).get_trace(*model_args, **model_kwargs)
        except NotImplementedError:
            # A latent without a sampler (ImproperUniform): only the sites' shapes matter here.
            substituted = substitute(seed(model, key), substitute_fn=init_to_uniform)
            model_trace = trace(substituted).get_trace(*model_args, **model_kwargs)
        for name, site in model_trace.items():
            value = site.get("value")
            if hasattr(value, "shape"):
                value = jax.ShapeDtypeStruct(value.shape, value.dtype)
            sites[name] = {**site, "value": value}

    jax.eval_shape(run, rng_key)
    return sites


def is_mean_field(
    rng_key: PRNGKey,
    model,
    model_args: tuple,
    model_kwargs: dict,
    plate_name: str,
    num_particles: int,
) -> bool:
    """Check the model's latent sites; true when it declares the particle plate.

    Raises a ``ValueError`` naming the site for what MFLD cannot move (discrete latents), for a
    latent site outside the particle plate of a mean-field model, and for a particle plate that
    does not hold ``num_particles`` particles on the leading axis of every particle site.
    """
    model_trace = abstract_trace(rng_key, model, model_args, model_kwargs)
    latent = {
        name: site
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    if not latent:
        raise ValueError("model: it has no latent sample site for the particles to move.")
    discrete = sorted(name for name, site in latent.items() if site["fn"].support.is_discrete)
    if discrete:
        raise ValueError(
            f"model: latent site(s) {discrete} are discrete; Langevin dynamics needs continuous "
            "latents (marginalise them out, or make them observed)."
        )
    plate = model_trace.get(plate_name)
    if plate is None or plate["type"] != "plate":
        return False
    size, subsample_size = plate["args"]
    if size != num_particles or subsample_size not in (None, size):
        raise ValueError(
            f"particle_plate: the plate {plate_name!r} must hold exactly num_particles = "
            f"{num_particles} particles without subsampling; got size {size}, subsample size "
            f"{subsample_size}."
        )
    outside = sorted(name for name, site in latent.items() if not in_plate(site, plate_name))
    if outside:
        raise ValueError(
            f"model: latent site(s) {outside} sit outside the particle plate {plate_name!r}. In a "
            "mean-field model every latent site is a particle coordinate: move them inside the "
            "plate (one value per particle) or pass them to the model as data."
        )
    for name, site in latent.items():
        frame = next(f for f in site["cond_indep_stack"] if f.name == plate_name)
        batch_ndim = len(site["value"].shape) - len(site["fn"].event_shape)
        if batch_ndim + frame.dim != 0:
            raise ValueError(
                f"particle_plate: the plate {plate_name!r} must be the leading (outermost) batch "
                f"dimension of site {name!r}; give it dim={-batch_ndim}."
            )
    return True


def log_density_parts(
    model, model_args: tuple, model_kwargs: dict, z: dict, plate_name: str
) -> tuple[Array, Array]:
    """``(Σ_i log ν(θ_i), −F)`` at unconstrained values ``z``, Jacobians in the first part."""
    values = constrain_fn(model, model_args, model_kwargs, z)
    log_probs, model_trace = compute_log_probs(model, model_args, model_kwargs, values)
    log_reference, log_outside = 0.0, 0.0
    for name, log_prob in log_probs.items():
        site = model_trace[name]
        if site["is_observed"] and not in_plate(site, plate_name):
            log_outside = log_outside + log_prob
        else:
            log_reference = log_reference + log_prob
    for name, unconstrained in z.items():
        transform = biject_to(model_trace[name]["fn"].support)
        log_det = transform.log_abs_det_jacobian(unconstrained, values[name])
        log_reference = log_reference + jnp.sum(log_det)
    return jnp.asarray(log_reference), jnp.asarray(log_outside)


def subsampled_plates(rng_key: PRNGKey, model, model_args: tuple, model_kwargs: dict) -> list:
    """The names of the model's plates that draw a subsample (``subsample_size`` below size)."""
    model_trace = abstract_trace(rng_key, model, model_args, model_kwargs)
    return sorted(
        name
        for name, site in model_trace.items()
        if site["type"] == "plate" and site["args"][1] not in (None, site["args"][0])
    )


class full_data(Messenger):
    """Every subsampled plate takes all its indices, so that the model reads the whole data set
    (and its sites are not scaled): for the log-likelihood of every datum, as ``az.loo`` needs.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     with numpyro.plate("data", 1000, subsample_size=10) as index:
    ...         return index.shape
    >>> full_data(seed(model, jax.random.key(0)))()
    (1000,)
    """

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["args"][1] not in (None, msg["args"][0]):
            size = msg["args"][0]
            msg["args"] = (size, size)
            msg["value"] = jnp.arange(size)


def subsample_in_o_of_b(rng_key: PRNGKey):
    """A ``substitute_fn`` giving every subsampled plate its indices without replacement in
    ``O(B)`` work, from the project's minibatch source, where NumPyro's own draw on CPU shuffles
    all ``n`` indices (``O(n)`` per step). Each plate's indices come from ``rng_key`` folded with
    a hash of its name."""

    def indices(msg):
        if msg["type"] != "plate":
            return None
        size, subsample_size = msg["args"]
        if subsample_size is None or subsample_size >= size:
            return None
        key = jax.random.fold_in(rng_key, zlib.crc32(msg["name"].encode()))
        source = data.minibatch(subsample_size)
        return source.indices(key, size, data.MinibatchState.start())[0]

    return indices


def potential_and_drift_fn(
    model,
    model_args: tuple,
    model_kwargs: dict,
    plate_name: str,
    mean_field: bool,
    num_particles: int,
    temperature: Array,
    rng_key: PRNGKey | None,
):
    """``z ↦ (F, V, drift)``, the drift ``∇δF/δμ(θ_i) − λ∇log ν(θ_i)`` at every particle.

    The drift comes from one gradient of ``J(Θ) = N·F(μ_Θ) − λ Σ_i log ν(θ_i)``, which is ``−λ``
    times the log density of the model with the energy part scaled by ``N/λ``. In a Bayesian
    model ``F(μ) = E_μ[−log p(data | θ)]`` is linear, the particles are independent copies and
    ``J = Σ_i V(θ_i)`` with the per-particle potential ``V(θ) = −log p(data | θ) − λ log ν(θ)``,
    returned as ``V`` (shape ``(N,)``), and ``F`` is returned per particle, ``−log p(data | θ_i)``
    (its mean is ``F(μ_Θ)``); a mean-field model has no such split (``F(μ_Θ)`` and ``V = J``).

    The model runs seeded with ``rng_key``: a plate with ``subsample_size`` draws its subsample
    from it (one subsample for all particles, see :func:`subsample_in_o_of_b`) and scales its
    sites by ``size / subsample_size``, as NumPyro does, so the drift is the unbiased minibatch
    estimate of stochastic-gradient MFLD. With ``rng_key=None`` every subsampled plate holds all
    its indices, unscaled (:class:`full_data`): the potential on the whole data, in one pass.
    """
    if rng_key is None:
        model = full_data(seed(model, jax.random.key(0)))
    else:
        model = substitute(seed(model, rng_key), substitute_fn=subsample_in_o_of_b(rng_key))
    parts = partial(log_density_parts, model, model_args, model_kwargs, plate_name=plate_name)

    def scaled_potential(z: dict):
        if mean_field:
            log_reference, log_outside = parts(z=z)
            energy = -log_outside
            potential = num_particles * energy - temperature * log_reference
            return potential, (energy, potential)
        log_reference, log_outside = jax.vmap(lambda theta: parts(z=theta))(z)
        potentials = -log_outside - temperature * log_reference
        return jnp.sum(potentials), (-log_outside, potentials)

    def potential_and_drift(z: dict) -> tuple[Array, Array, ArrayTree]:
        (_, (energy, potentials)), drift = jax.value_and_grad(scaled_potential, has_aux=True)(z)
        return energy, potentials, drift

    return potential_and_drift


def initial_particles(
    rng_key: PRNGKey,
    model,
    model_args: tuple,
    model_kwargs: dict,
    init_strategy,
    mean_field: bool,
    num_particles: int,
) -> dict:
    """Unconstrained initial particles: one draw of the plate, or ``N`` of a Bayesian model."""
    keys = rng_key if mean_field else jax.random.split(rng_key, num_particles)
    try:
        model_info = initialize_model(
            keys,
            model,
            init_strategy=init_strategy,
            model_args=model_args,
            model_kwargs=model_kwargs,
            validate_grad=False,
        )
    except NotImplementedError as err:
        # e.g. an ImproperUniform latent under init_to_sample: it has no sampler.
        raise ValueError(
            "init_strategy: cannot draw the initial particles from the model "
            f"({type(err).__name__}: {err or 'a latent site has no sampler'}). A latent with an "
            "improper prior (ImproperUniform) needs init_strategy=init_to_uniform or "
            "init_to_value, or init_params."
        ) from err
    return model_info.param_info.z


def constrain(model, model_args: tuple, model_kwargs: dict, mean_field: bool):
    """``z ↦`` constrained latents and deterministic sites (per particle in Bayesian models).
    The model runs seeded, so that a subsampled plate draws a subsample (deterministic sites
    computed on it)."""
    model = seed(model, jax.random.key(0))
    fn = partial(constrain_fn, model, model_args, model_kwargs, return_deterministic=True)
    return fn if mean_field else jax.vmap(fn)
