"""Particle measures as ArviZ ``DataTree`` s, and plots through ``arviz-plots``.

Groups of the tree made by :func:`to_datatree`:

* ``posterior``: the particle trajectories (dims ``chain, draw, particle, …``) and
  permutation-invariant observables of the measure ``μ_Θ`` (dims ``chain, draw, …``), computed on
  device. Run ESS and R-hat on the observables: particles inside one system are dependent, so
  per-particle R-hat only checks one particle's marginal. For a Bayesian NumPyro model (no
  particle plate) the particles are independent chains: ``posterior`` then holds the latent sites
  with every (chain, particle) pair as a chain (``chain`` of size ``chains × N``), so that
  ArviZ's defaults (``az.summary``, ``az.ess``, ``az.rhat``) give the pooled posterior.
* ``log_likelihood`` (NumPyro runs): the log-likelihood of every observed site per draw (per
  (chain, particle) pair and draw for a Bayesian model), for ``az.loo`` and ``az.compare``; a
  subsampled plate gives that of every datum (the model run on all its indices).
* ``sample_stats``: what the kernel reported: ``mean_field_energy`` (``F(μ_Θ)``; not called
  ``energy``, which ArviZ reads as the Hamiltonian of HMC), ``drift_norm``, ``diverging``,
  ``num_refused``, ``step_size``, ``temperature`` (and from :class:`mflangevin.numpyro.MFLD`
  ``accept_prob``, ``num_improbable`` and ``num_stuck``); with :func:`mflangevin.monitor` also
  ``objective`` (primal ``Ĝ``), ``dual_bound`` (``D(g_μ)``), ``gap``, ``dual_bound_stderr`` and
  ``dual_bound_ess`` (the effective sample size of the dual's importance weights);
  plus any arrays passed as ``sample_stats``.
* ``particle_measure``: the final particles of every chain as draws (dims ``chain, draw, …``).
* ``prior``: draws of the reference ν shaped like one particle system.

Heavy statistics stay in JAX (:mod:`mflangevin.diagnostics`); ArviZ receives NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import numpy as np
import xarray as xr

from mflangevin._naming import leaf_names
from mflangevin.diagnostics import particle_moments
from mflangevin.integrations._arviz_plots import plot_certificates as plot_certificates
from mflangevin.integrations._arviz_plots import plot_neurons as plot_neurons
from mflangevin.integrations._arviz_plots import plot_particle_marginals as plot_particle_marginals
from mflangevin.types import ArrayTree, PRNGKey

__all__ = ["to_datatree", "plot_certificates", "plot_particle_marginals", "plot_neurons"]

# Field names of kernel infos (and of certificates) as ArviZ expects or as the docs name them.
_STAT_NAMES = {
    "energy": "mean_field_energy",
    "is_divergent": "diverging",
    "certificate.primal": "objective",
    "certificate.dual": "dual_bound",
    "certificate.gap": "gap",
    "certificate.dual_stderr": "dual_bound_stderr",
    "certificate.dual_ess": "dual_bound_ess",
}


def _event_dims(name: str, shape: tuple, dims: Mapping[str, list[str]] | None) -> list[str]:
    if dims is not None and name in dims:
        if len(dims[name]) != len(shape):
            raise ValueError(f"dims: {name!r} has {len(shape)} event axes, got {dims[name]}.")
        return list(dims[name])
    return [f"{name}_dim_{k}" for k in range(len(shape))]


def _stat_name(path: str) -> str:
    short = path.removeprefix("info.")
    return _STAT_NAMES.get(short, _STAT_NAMES.get(path, short.replace(".", "_")))


def _batched(tree: ArrayTree, batch_ndim: int) -> ArrayTree:
    """Add a chain axis of size one to a history without one."""
    return tree if batch_ndim == 2 else jax.tree.map(lambda x: np.asarray(x)[None], tree)


def _reduce_thinned(name: str, value: np.ndarray, thinning: int) -> np.ndarray:
    """``thin_algorithm`` keeps the infos of all ``thinning`` inner steps: keep the last (any
    divergence counts)."""
    if thinning > 1 and value.ndim >= 3 and value.shape[2] == thinning:
        return value.any(axis=2) if name == "diverging" else value[:, :, -1]
    return value


def _infer_batch_ndim(states, infos) -> int:
    count = getattr(states, "count", None)
    if count is not None:
        return np.ndim(count)
    return min(np.ndim(leaf) for leaf in jax.tree.leaves(infos))


def _dataset(variables: dict, coords: dict) -> xr.Dataset:
    """A dataset with an index on every dimension (``arviz-plots`` selects by coordinate)."""
    sizes = {}
    for dims, value in variables.values():
        sizes.update(zip(dims, np.shape(value), strict=True))
    full = {dim: coords.get(dim, np.arange(size)) for dim, size in sizes.items()}
    return xr.Dataset(variables, coords=full)


def _assemble(
    positions: ArrayTree,
    stats: dict[str, np.ndarray],
    draw_coord: np.ndarray,
    observables: Callable | None,
    prior: ArrayTree | None,
    dims: Mapping[str, list[str]] | None,
    coords: Mapping[str, np.ndarray] | None,
    include_trajectories: bool,
) -> xr.DataTree:
    names = leaf_names(positions)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(positions)]
    num_chains, _, n = leaves[0].shape[:3]
    base = {"chain": np.arange(num_chains), "draw": draw_coord, "particle": np.arange(n)}
    base.update(coords or {})
    posterior, final, leaf_dims = {}, {}, {}
    for name, leaf in zip(names, leaves, strict=True):
        event = _event_dims(name, leaf.shape[3:], dims)
        leaf_dims[name] = (event, leaf.shape[3:])
        if include_trajectories:
            posterior[name] = (["chain", "draw", "particle", *event], leaf)
        final[name] = (["chain", "draw", *event], leaf[:, -1])
    reserved = sorted(set(names) & {"chain", "draw", "particle"})
    if reserved:
        raise ValueError(
            f"source: particle leaves may not be named {reserved}: those names are the "
            "dimensions of the tree; rename the leaves."
        )
    if observables is not None:
        values = jax.jit(jax.vmap(jax.vmap(observables)))(positions)
        if not isinstance(values, Mapping):
            raise TypeError(
                f"observables: must return a dict of named arrays, got {type(values).__name__}."
            )
        for name, value in values.items():
            value = np.asarray(value)
            # An observable of a leaf (``w_mean`` of ``w``) shares that leaf's event axes.
            event, shape = leaf_dims.get(name.rsplit("_", 1)[0], (None, None))
            if shape != value.shape[2:]:
                event = _event_dims(name, value.shape[2:], dims)
            posterior[name] = (["chain", "draw", *event], value)
    sample_stats = {
        name: (["chain", "draw", *_event_dims(name, v.shape[2:], dims)], v)
        for name, v in stats.items()
    }
    measure_coords = {k: v for k, v in base.items() if k not in ("draw", "particle")}
    groups = {
        "posterior": _dataset(posterior, base),
        "sample_stats": _dataset(sample_stats, base),
        "particle_measure": _dataset(final, measure_coords),
    }
    if prior is not None:
        prior_vars = {}
        for name, leaf in zip(leaf_names(prior), jax.tree.leaves(prior), strict=True):
            leaf = np.asarray(leaf)[None]
            prior_vars[name] = (["chain", "draw", *_event_dims(name, leaf.shape[2:], dims)], leaf)
        groups["prior"] = _dataset(prior_vars, {**measure_coords, "chain": np.arange(1)})
    return xr.DataTree.from_dict(groups)


def _from_history(history, reference, rng_key, thinning, has_chain_axis):
    if not (isinstance(history, tuple) and len(history) == 2):
        raise TypeError(
            "source: expected a (states, infos) history from run_inference_algorithm or "
            f"jax.lax.scan, or a numpyro.infer.MCMC; got {type(history).__name__}."
        )
    states, infos = history
    if not hasattr(states, "position"):
        raise TypeError("source: the states of the history have no `position` (the particles).")
    batch_ndim = _infer_batch_ndim(states, infos) if has_chain_axis is None else 1 + has_chain_axis
    if batch_ndim not in (1, 2):
        raise ValueError(f"source: cannot tell the (chain, draw) axes apart (found {batch_ndim}).")
    positions = _batched(states.position, batch_ndim)
    stats = {}
    info_leaves = jax.tree.leaves(infos)
    for path, leaf in zip(leaf_names(infos, default="info"), info_leaves, strict=True):
        name = _stat_name(path)
        value = _reduce_thinned(name, np.asarray(_batched(leaf, batch_ndim)), thinning)
        stats[name] = value
    count = getattr(states, "count", None)
    num_draws = jax.tree.leaves(positions)[0].shape[1]
    if count is not None:
        draw_coord = np.asarray(_batched(count, batch_ndim))[0]
    else:
        draw_coord = np.arange(1, num_draws + 1) * thinning
    prior = None
    if reference is not None:
        if rng_key is None:
            raise ValueError("rng_key: needed to draw the prior from `reference`.")
        one_system = jax.tree.map(lambda x: x[0, -1], positions)
        prior = reference.sample(rng_key, one_system)
    return positions, stats, draw_coord, prior


def _from_numpyro(mcmc, rng_key):
    from numpyro.infer import MCMC, Predictive, log_likelihood

    from mflangevin.integrations._numpyro_model import full_data

    # NumPyro's own get_samples: the particle axis in place, whichever MCMC class ran.
    positions = MCMC.get_samples(mcmc, group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {_stat_name(k): np.asarray(v) for k, v in extra.items() if np.ndim(v) >= 2}
    num_draws = jax.tree.leaves(positions)[0].shape[1]
    draw_coord = np.arange(num_draws)
    mean_field = getattr(mcmc.sampler, "is_mean_field", None)
    args, kwargs = getattr(mcmc, "_args", ()), getattr(mcmc, "_kwargs", {})
    # Per draw: a mean-field model's likelihood is that of the whole measure, a Bayesian model's
    # that of every particle; a subsampled plate gives that of every datum, one draw at a time.
    likelihood = log_likelihood(
        full_data(mcmc.sampler.model),
        positions,
        *args,
        batch_ndims=2 if mean_field else 3,
        **kwargs,
    )
    likelihood = {name: np.asarray(value) for name, value in likelihood.items()}
    prior = None
    if rng_key is not None:
        # A mean-field model draws all N particles at once (its plate); a Bayesian model draws one
        # particle per prior sample, so it needs N samples.
        num = 1 if mean_field else jax.tree.leaves(positions)[0].shape[2]
        predictive = Predictive(mcmc.sampler.model, num_samples=num, return_sites=list(positions))
        draws = predictive(rng_key, *args, **kwargs)
        prior = {name: draws[name][0] if mean_field else draws[name] for name in positions}
    return positions, stats, draw_coord, prior, likelihood, not mean_field


def _pooled(
    positions: dict,
    stats: dict,
    likelihood: dict,
    dims: Mapping[str, list[str]] | None,
    coords: Mapping[str, np.ndarray] | None,
) -> dict[str, xr.Dataset]:
    """The ``posterior``, ``log_likelihood`` and ``sample_stats`` of independent particles, each
    (chain, particle) pair a chain; a draw's statistics hold for every particle of its chain."""
    from mflangevin.integrations._numpyro_mcmc import particles_as_chains

    num = jax.tree.leaves(positions)[0].shape[2]
    groups = {}
    for group, values in (
        ("posterior", jax.tree.map(particles_as_chains, positions)),
        ("log_likelihood", jax.tree.map(particles_as_chains, likelihood)),
        ("sample_stats", {k: np.repeat(np.asarray(v), num, axis=0) for k, v in stats.items()}),
    ):
        variables = {
            name: (["chain", "draw", *_event_dims(name, value.shape[2:], dims)], value)
            for name, value in values.items()
        }
        groups[group] = _dataset(variables, dict(coords or {}))
    return groups


def to_datatree(
    source,
    *,
    observables: Callable[[ArrayTree], Mapping] | None = particle_moments,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    reference=None,
    rng_key: PRNGKey | None = None,
    thinning: int = 1,
    has_chain_axis: bool | None = None,
    include_trajectories: bool = True,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, np.ndarray] | None = None,
) -> xr.DataTree:
    """An ArviZ ``DataTree`` of a particle run (groups in the module docstring).

    Parameters
    ----------
    source
        Either ``(states, infos)``, the history of ``blackjax.util.run_inference_algorithm``
        (or of ``jax.lax.scan``) for any kernel of the package, with leaves shaped
        ``(draw, N, …)`` or, for chains run under ``jax.vmap``, ``(chain, draw, N, …)``; or a
        ``numpyro.infer.MCMC`` that ran :class:`mflangevin.numpyro.MFLD` (its extra fields, e.g.
        ``extra_fields=("energy", "drift_norm")``, go to ``sample_stats``).
    observables
        A function of one particle set returning a dict of permutation-invariant arrays; default
        :func:`mflangevin.diagnostics.particle_moments`. ``None``: trajectories only.
    sample_stats
        Further per-draw statistics, shaped ``(chain, draw, …)`` (or ``(draw, …)``), e.g.
        ``{"dual_bound": …, "gap": …}`` from :mod:`mflangevin.certificates`.
    reference, rng_key
        Draw the ``prior`` group (``N`` draws of ν) with ``reference.sample``; for a NumPyro run,
        ``rng_key`` alone draws the particle sites from the model's prior.
    thinning
        The ``thinning`` of ``blackjax.util.thin_algorithm`` when its infos keep all inner
        steps (the last is kept; a divergence in any counts). Without ``state.count``, draws
        are numbered ``thinning, 2·thinning, …``; with it, by the step counter.
    has_chain_axis
        Force the presence of a chain axis (otherwise read from ``state.count`` or the infos).
    include_trajectories
        Store the particle trajectories in ``posterior`` (``draws × N`` values per leaf).
    dims, coords
        Names of the event axes per variable (``{"w": ["input"]}``) and their coordinates.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, blackjax
    >>> import mflangevin
    >>> energy_fn = lambda p: 0.5 * jnp.sum(jnp.mean(p["w"], axis=0) ** 2)
    >>> algorithm = mflangevin.mfld(energy_fn, step_size=0.1, temperature=0.1)
    >>> _, history = blackjax.util.run_inference_algorithm(
    ...     jax.random.key(0), algorithm, 20, initial_position={"w": jnp.ones((8, 2))}
    ... )
    >>> tree = to_datatree(history)
    >>> tree["posterior"]["w"].dims
    ('chain', 'draw', 'particle', 'w_dim_0')
    """
    if int(thinning) < 1:
        raise ValueError(f"thinning: must be >= 1, got {thinning}.")
    if observables is not None and not callable(observables):
        raise TypeError(f"observables: expected a callable or None, got {observables!r}.")
    likelihood, pooled = None, False
    if _is_mcmc(source):
        positions, stats, draw_coord, prior, likelihood, pooled = _from_numpyro(source, rng_key)
    else:
        positions, stats, draw_coord, prior = _from_history(
            source, reference, rng_key, int(thinning), has_chain_axis
        )
    num_chains, num_draws = jax.tree.leaves(positions)[0].shape[:2]
    for name, value in (sample_stats or {}).items():
        value = np.asarray(value)
        if value.shape[:1] == (num_draws,) and value.shape[:2] != (num_chains, num_draws):
            value = value[None]
        if value.shape[:2] != (num_chains, num_draws):
            raise ValueError(
                f"sample_stats: {name!r} has shape {value.shape}, expected leading axes "
                f"({num_chains}, {num_draws})."
            )
        stats[name] = value
    tree = _assemble(
        positions, stats, draw_coord, observables, prior, dims, coords, include_trajectories
    )
    if likelihood is None:
        return tree
    groups = {name: tree[name].to_dataset() for name in tree.children}
    if pooled:
        groups.update(_pooled(positions, stats, likelihood, dims, coords))
    else:
        variables = {
            name: (["chain", "draw", *_event_dims(name, value.shape[2:], dims)], value)
            for name, value in likelihood.items()
        }
        groups["log_likelihood"] = _dataset(variables, {"draw": draw_coord, **(coords or {})})
    return xr.DataTree.from_dict(groups)


def _is_mcmc(source) -> bool:
    from numpyro.infer import MCMC

    return isinstance(source, MCMC)
