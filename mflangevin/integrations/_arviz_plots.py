"""Plots of particle runs through ``arviz-plots``; public through :mod:`mflangevin.arviz`."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

CERTIFICATE_STATS = ("mean_field_energy", "objective", "dual_bound", "gap")


def _indexed(dataset: xr.Dataset) -> xr.Dataset:
    """Give every dimension without a coordinate an integer one (``arviz-plots`` needs them)."""
    missing = {dim: np.arange(size) for dim, size in dataset.sizes.items() if dim not in dataset}
    return dataset.assign_coords(missing)


def plot_certificates(tree: xr.DataTree, var_names=None, backend: str | None = None, **kwargs):
    """Traces of the energy ``F(μ)``, the primal ``Ĝ``, the dual bound ``D`` and the gap.

    Draws where every certificate is NaN (steps :func:`mflangevin.monitor` skipped) are dropped.
    Extra keyword arguments go to ``arviz.plot_trace``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> stats = xr.Dataset({"mean_field_energy": (("chain", "draw"), np.ones((1, 5)))})
    >>> tree = xr.DataTree.from_dict({"sample_stats": stats})
    >>> type(plot_certificates(tree, backend="none")).__name__
    'PlotCollection'
    """
    stats = _indexed(tree["sample_stats"].to_dataset())
    if var_names is None:
        var_names = [
            name for name in CERTIFICATE_STATS if name in stats and stats[name].notnull().any()
        ]
    if not var_names:
        raise ValueError(f"tree: sample_stats has none of {CERTIFICATE_STATS}.")
    certificates = [name for name in var_names if name != "mean_field_energy"]
    if certificates:
        stats = stats.dropna("draw", how="all", subset=certificates)
    subset = xr.DataTree.from_dict({"sample_stats": stats[list(var_names)]})
    return az.plot_trace(subset, group="sample_stats", backend=backend, **kwargs)


def plot_particle_marginals(
    tree: xr.DataTree, var_names=None, backend: str | None = None, **kwargs
):
    """Marginal densities of the final particles (the ``particle_measure`` group), pooled over
    chains. Extra keyword arguments go to ``arviz.plot_dist``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> w = np.random.default_rng(0).normal(size=(1, 50))
    >>> measure = xr.Dataset({"w": (("chain", "draw"), w)})
    >>> tree = xr.DataTree.from_dict({"particle_measure": measure})
    >>> type(plot_particle_marginals(tree, backend="none")).__name__
    'PlotCollection'
    """
    measure = xr.DataTree.from_dict(
        {"particle_measure": _indexed(tree["particle_measure"].to_dataset())}
    )
    return az.plot_dist(
        measure, group="particle_measure", var_names=var_names, backend=backend, **kwargs
    )


def plot_neurons(tree: xr.DataTree, var_name: str = "w", backend: str | None = None, **kwargs):
    """Scatter of the final input weights ``w ∈ R²`` of the neurons (one point per particle),
    with the marginal density of each coordinate on the diagonal.

    For two-layer networks on two-dimensional inputs: the directions the neurons learned.
    Extra keyword arguments go to ``arviz.plot_pair`` (``marginal=False`` drops the densities).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> w = np.random.default_rng(0).normal(size=(1, 50, 2))
    >>> measure = xr.Dataset({"w": (("chain", "draw", "w_dim_0"), w)})
    >>> tree = xr.DataTree.from_dict({"particle_measure": measure})
    >>> type(plot_neurons(tree, backend="none")).__name__
    'PlotMatrix'
    """
    measure = _indexed(tree["particle_measure"].to_dataset())
    if var_name not in measure:
        raise ValueError(f"var_name: no {var_name!r} in particle_measure.")
    event = [dim for dim in measure[var_name].dims if dim not in ("chain", "draw")]
    if len(event) != 1 or measure[var_name].sizes[event[0]] != 2:
        raise ValueError(
            f"var_name: {var_name!r} must have one event axis of size 2 (two-dimensional inputs)."
        )
    return az.plot_pair(
        xr.DataTree.from_dict({"particle_measure": measure}),
        group="particle_measure",
        var_names=[var_name],
        backend=backend,
        **{"marginal": True, **kwargs},
    )
