"""Particle-count sweeps for propagation of chaos (experiment 5 of docs/theory/experiments.md).

Uniform-in-time propagation of chaos (Suzuki, Nitanda, Wu, ICLR 2023) says that the
``N``-particle system differs from the mean-field limit by ``O(1/N)`` in objective gap.
:func:`particle_count_sweep` measures any such quantity at several ``N`` and fits
``log value = intercept + slope · log N``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from mflangevin.types import Array, PRNGKey

__all__ = ["SweepResult", "particle_count_sweep", "fit_power_law"]


class SweepResult(NamedTuple):
    """Mean and standard error of a measured quantity at each particle count, and a log–log fit.

    ``slope_standard_error`` is the least-squares standard error of the slope, propagated from
    the per-``N`` standard errors (delta method: ``se(log v) = se(v)/v``).

    Returned by :func:`particle_count_sweep`.

    Examples
    --------
    >>> import jax
    >>> def measure(key, n):  # a quantity with mean 1/N and 100 replicates
    ...     return (1 + 0.01 * jax.random.normal(key, (100,))) / n
    >>> result = particle_count_sweep(measure, [10, 100], jax.random.key(0), progress=False)
    >>> result.particle_counts.tolist(), result.values.shape, result.standard_errors.shape
    ([10, 100], (2,), (2,))
    """

    particle_counts: np.ndarray
    values: np.ndarray
    standard_errors: np.ndarray
    slope: float
    intercept: float
    slope_standard_error: float


def fit_power_law(
    particle_counts: Sequence[int], values: Sequence[float], standard_errors=None
) -> tuple[float, float, float]:
    """Weighted least squares of ``log value`` on ``log N``: ``(slope, intercept, slope_se)``.

    Weights are ``(value / se)²`` (inverse variances of ``log value``); without standard errors
    the fit is unweighted and ``slope_se`` comes from the residuals.

    Examples
    --------
    >>> slope, intercept, _ = fit_power_law([10, 100, 1000], [0.1, 0.01, 0.001])
    >>> round(slope, 6)
    -1.0
    """
    n = np.asarray(particle_counts, dtype=float)
    v = np.asarray(values, dtype=float)
    if n.shape != v.shape or n.ndim != 1 or n.size < 2:
        raise ValueError("values: need one value per particle count, at least two of each.")
    if np.any(v <= 0) or np.any(n <= 0):
        raise ValueError("values: a power law needs positive values and particle counts.")
    design = np.stack([np.ones_like(n), np.log(n)], axis=1)
    if standard_errors is None:
        coef, *_ = np.linalg.lstsq(design, np.log(v), rcond=None)
        dof = max(n.size - 2, 1)
        sigma2 = np.sum((np.log(v) - design @ coef) ** 2) / dof
        cov = sigma2 * np.linalg.inv(design.T @ design)
    else:
        weights = (v / np.asarray(standard_errors, dtype=float)) ** 2
        gram = design.T @ (weights[:, None] * design)
        coef = np.linalg.solve(gram, design.T @ (weights * np.log(v)))
        cov = np.linalg.inv(gram)
    return float(coef[1]), float(coef[0]), float(np.sqrt(cov[1, 1]))


def particle_count_sweep(
    measure: Callable[[PRNGKey, int], Array],
    particle_counts: Sequence[int],
    rng_key: PRNGKey,
    progress: bool = True,
) -> SweepResult:
    """Run ``measure(key, N)`` for every ``N`` and fit a power law in ``N``.

    Parameters
    ----------
    measure
        ``measure(rng_key, N)`` returns replicated measurements at ``N`` particles, e.g. the gap
        of independent chains at stationarity, shape ``(R,)`` (any shape; all entries are
        replicates). Their mean is the value at ``N`` and ``std/√R`` its standard error, so
        replicates should be independent (average correlated draws first).
    particle_counts
        The values of ``N``, at least two.
    rng_key
        Split into one key per ``N``.
    progress
        Show a progress bar over ``N`` (each new ``N`` compiles anew: shapes change).

    Examples
    --------
    >>> import jax
    >>> def measure(key, n):  # a quantity with mean 1/N and 100 replicates
    ...     return (1 + 0.01 * jax.random.normal(key, (100,))) / n
    >>> result = particle_count_sweep(measure, [10, 100, 1000], jax.random.key(0), progress=False)
    >>> round(result.slope, 2)
    -1.0
    """
    counts = [int(n) for n in particle_counts]
    if len(counts) < 2 or min(counts) < 1:
        raise ValueError(f"particle_counts: need at least two positive counts, got {counts}.")
    keys = jax.random.split(rng_key, len(counts))
    means, errors = [], []
    for key, n in tqdm(list(zip(keys, counts, strict=True)), disable=not progress, desc="N"):
        replicates = np.asarray(measure(key, n), dtype=float).ravel()
        means.append(replicates.mean())
        errors.append(
            replicates.std(ddof=1) / np.sqrt(replicates.size) if replicates.size > 1 else np.nan
        )
    means, errors = np.asarray(means), np.asarray(errors)
    weighted = bool(np.all(np.isfinite(errors)) and np.all(errors > 0))
    slope, intercept, slope_se = fit_power_law(counts, means, errors if weighted else None)
    return SweepResult(np.asarray(counts), means, errors, slope, intercept, slope_se)
