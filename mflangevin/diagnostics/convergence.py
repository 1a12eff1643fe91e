"""ESS and R-hat of permutation-invariant observables of particle measures, on device.

The particles inside one system are exchangeable and dependent: per-particle-index R-hat only
checks one particle's marginal, and treating particles as chains breaks the assumptions of
ESS/R-hat. The right objects are functionals of the measure ``μ_Θ`` that do not depend on the
labelling of the particles (moments, the energy, predictions ``f_μ(x)``), followed across
independent *systems* (chains) and iterations (draws).

:func:`ess` and :func:`rhat` follow Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021),
*Rank-normalization, folding, and localization: an improved R-hat*, exactly as ArviZ computes
them (split chains, Blom rank normalisation, Geyer's initial monotone sequence), written in JAX
so that they run jitted where the samples are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from mflangevin._naming import leaf_names
from mflangevin.types import Array, ArrayLike, ArrayTree

__all__ = ["ess", "rhat", "particle_moments", "invariant_diagnostics"]

ESS_METHODS = ("bulk", "tail", "mean")


def _standard_axes(draws: ArrayLike, chain_axis: int, draw_axis: int, need_chains: int) -> Array:
    """``(chain, draw, K)`` with the event axes flattened; shape checks before tracing."""
    x = jnp.asarray(draws)
    if x.ndim < 2:
        raise ValueError(f"draws: need a chain and a draw axis, got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    x = jnp.moveaxis(x, (chain_axis, draw_axis), (0, 1))
    if x.shape[1] < 4:
        raise ValueError(f"draws: need at least 4 draws per chain, got {x.shape[1]}.")
    if x.shape[0] < need_chains:
        raise ValueError(f"draws: R-hat needs at least 2 chains, got {x.shape[0]}.")
    return x.reshape(x.shape[0], x.shape[1], -1)


def _split_chains(x: Array) -> Array:
    """Each chain cut in two halves (the middle draw dropped for an odd count), as ArviZ does."""
    half = x.shape[1] // 2
    return jnp.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x: Array) -> Array:
    """Blom rank normalisation ``Φ⁻¹((r − 3/8)/(S + 1/4))`` over all draws, ties averaged."""
    flat = x.reshape(-1, x.shape[-1])
    size = flat.shape[0]

    def column(values):
        ordered = jnp.sort(values)
        below = jnp.searchsorted(ordered, values, side="left")
        upto = jnp.searchsorted(ordered, values, side="right")
        return (below + upto + 1).astype(values.dtype) / 2

    ranks = jax.vmap(column, in_axes=1, out_axes=1)(flat)
    z = ndtri((ranks - 0.375) / (size + 0.25))
    return z.reshape(x.shape)


def _autocovariance(x: Array) -> Array:
    """Autocovariance of every chain at every lag, by FFT padded past ``2D − 1`` (exact)."""
    num_draws = x.shape[1]
    centred = x - jnp.mean(x, axis=1, keepdims=True)
    spectrum = jnp.fft.rfft(centred, n=2 * num_draws, axis=1)
    power = jnp.fft.irfft(spectrum * jnp.conj(spectrum), n=2 * num_draws, axis=1)
    return power[:, :num_draws] / num_draws


def _ess_core(x: Array) -> Array:
    """Geyer initial-monotone-sequence ESS of ``(chain, draw, K)`` samples, per column."""
    num_chains, num_draws = x.shape[0], x.shape[1]
    acov = _autocovariance(x)
    mean_var = jnp.mean(acov[:, 0], axis=0) * num_draws / (num_draws - 1.0)
    var_plus = mean_var * (num_draws - 1.0) / num_draws
    if num_chains > 1:
        var_plus = var_plus + jnp.var(jnp.mean(x, axis=1), axis=0, ddof=1)
    rho = 1.0 - (mean_var[None, :] - jnp.mean(acov, axis=0)) / var_plus[None, :]
    rho = rho.at[0].set(1.0)
    # Pairs P_k = ρ_2k + ρ_2k+1, k = 0..k_max; ArviZ stops at the first non-positive pair,
    # keeps its even term when positive, and makes the earlier pairs non-increasing.
    k_max = max((num_draws - 3) // 2, 0)
    even = rho[0 : 2 * k_max + 1 : 2]
    odd = rho[1 : 2 * k_max + 2 : 2]
    pairs = even + odd
    k = jnp.arange(k_max + 1)[:, None]
    non_positive = pairs <= 0
    k_star = jnp.where(jnp.any(non_positive, axis=0), jnp.argmax(non_positive, axis=0), k_max)
    monotone = jax.lax.cummin(pairs, axis=0)
    head = jnp.sum(jnp.where(k < k_star[None, :], monotone, 0.0), axis=0)
    even_star = jnp.take_along_axis(even, k_star[None, :], axis=0)[0]
    pair_star = jnp.take_along_axis(pairs, k_star[None, :], axis=0)[0]
    keep_even = (even_star > 0) | ((k_star >= 1) & (pair_star >= 0))
    tau = -1.0 + 2.0 * head + jnp.where(keep_even, even_star, 0.0)
    total = num_chains * num_draws
    tau = jnp.maximum(tau, 1.0 / jnp.log10(jnp.asarray(total, x.dtype)))
    ess_value = total / tau
    ess_value = jnp.where(jnp.any(jnp.isnan(rho), axis=0), jnp.nan, ess_value)
    # Constant draws (zero variance, so ρ is 0/0) have the draw count as ESS, as in ArviZ.
    constant = (jnp.max(x, axis=(0, 1)) - jnp.min(x, axis=(0, 1))) < jnp.finfo(x.dtype).resolution
    return jnp.where(constant, jnp.asarray(total, x.dtype), ess_value)


def _quantile_ess(x: Array, q: float) -> Array:
    below = x <= jnp.quantile(x.reshape(-1, x.shape[-1]), q, axis=0)[None, None, :]
    return _ess_core(_split_chains(below.astype(x.dtype)))


def _rhat_core(x: Array) -> Array:
    num_draws = x.shape[1]
    between = num_draws * jnp.var(jnp.mean(x, axis=1), axis=0, ddof=1)
    within = jnp.mean(jnp.var(x, axis=1, ddof=1), axis=0)
    return jnp.sqrt((between / within + num_draws - 1) / num_draws)


def ess(
    draws: ArrayTree,
    *,
    method: str = "bulk",
    prob: float = 0.89,
    chain_axis: int = 0,
    draw_axis: int = 1,
) -> ArrayTree:
    """Effective sample size of samples shaped ``(chain, draw, *event)``, jittable.

    Parameters
    ----------
    draws
        An array (or a pytree of arrays) with a chain and a draw axis; every other axis is an
        independent quantity.
    method
        ``"bulk"`` (rank-normalised split chains), ``"tail"`` (the smaller ESS of the indicators
        of the ``1 − prob`` and ``prob`` quantiles) or ``"mean"`` (split chains).
    prob
        Quantile of the tail method, as in ArviZ, whose default is ``stats.ci_prob`` = 0.89.
    chain_axis, draw_axis
        Positions of the chain and draw axes.

    Returns
    -------
    The ESS, shaped like the event axes of each leaf; NaN where a draw is NaN.

    Examples
    --------
    >>> import jax
    >>> draws = jax.random.normal(jax.random.key(0), (4, 500))
    >>> bool(ess(draws) > 1000)
    True
    """
    if method not in ESS_METHODS:
        raise ValueError(f"method: expected one of {ESS_METHODS}, got {method!r}.")
    if not 0 < prob < 1:
        raise ValueError(f"prob: must lie in (0, 1), got {prob}.")

    def one(leaf):
        x = _standard_axes(leaf, chain_axis, draw_axis, need_chains=1)
        event_shape = jnp.moveaxis(jnp.asarray(leaf), (chain_axis, draw_axis), (0, 1)).shape[2:]
        return _ess_of(x, method, float(prob)).reshape(event_shape)

    return jax.tree.map(one, draws)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _ess_of(x: Array, method: str, prob: float) -> Array:
    """The ESS of ``(chain, draw, K)`` samples, compiled once per shape (not op by op)."""
    if method == "bulk":
        value = _ess_core(_z_scale(_split_chains(x)))
    elif method == "mean":
        value = _ess_core(_split_chains(x))
    else:
        lower, upper = sorted((1 - prob, prob))
        value = jnp.minimum(_quantile_ess(x, lower), _quantile_ess(x, upper))
    # The rank transform and the quantile indicators hide NaN draws: mask them here.
    return jnp.where(jnp.any(jnp.isnan(x), axis=(0, 1)), jnp.nan, value)


def rhat(draws: ArrayTree, *, chain_axis: int = 0, draw_axis: int = 1) -> ArrayTree:
    """Rank-normalised split R-hat (the larger of the bulk and folded versions), jittable.

    Parameters
    ----------
    draws
        An array (or a pytree of arrays) with at least 2 chains and 4 draws.
    chain_axis, draw_axis
        Positions of the chain and draw axes.

    Returns
    -------
    R-hat, shaped like the event axes of each leaf. Values above 1.01 say the chains disagree.

    Examples
    --------
    >>> import jax
    >>> draws = jax.random.normal(jax.random.key(0), (4, 500))
    >>> bool(rhat(draws) < 1.01)
    True
    """

    def one(leaf):
        x = _standard_axes(leaf, chain_axis, draw_axis, need_chains=2)
        event_shape = jnp.moveaxis(jnp.asarray(leaf), (chain_axis, draw_axis), (0, 1)).shape[2:]
        return _rhat_of(x).reshape(event_shape)

    return jax.tree.map(one, draws)


@jax.jit
def _rhat_of(x: Array) -> Array:
    """R-hat of ``(chain, draw, K)`` samples, compiled once per shape (not op by op)."""
    x = _split_chains(x)
    folded = jnp.abs(x - jnp.median(x.reshape(-1, x.shape[-1]), axis=0)[None, None, :])
    return jnp.maximum(_rhat_core(_z_scale(x)), _rhat_core(_z_scale(folded)))


def particle_moments(particles: ArrayTree) -> dict[str, Array]:
    """Permutation-invariant observables of ``μ_Θ``: mean and standard deviation of every leaf.

    Returns ``{"<leaf>_mean": E_μ θ, "<leaf>_sd": sd_μ θ}``, each with the leaf's event shape;
    leaf names are dict keys joined by ``.`` (a bare array is ``theta``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> moments = particle_moments({"w": jnp.array([[0.0, 1.0], [2.0, 3.0]])})
    >>> moments["w_mean"]
    Array([1., 2.], dtype=float32)
    """
    names = leaf_names(particles)
    out = {}
    for name, leaf in zip(names, jax.tree.leaves(particles), strict=True):
        out[f"{name}_mean"] = jnp.mean(leaf, axis=0)
        out[f"{name}_sd"] = jnp.std(leaf, axis=0)
    return out


def invariant_diagnostics(
    positions: ArrayTree,
    observable: Callable[[ArrayTree], ArrayTree] = particle_moments,
) -> dict[str, ArrayTree]:
    """Bulk/tail ESS and R-hat of a permutation-invariant observable along a particle history.

    Parameters
    ----------
    positions
        Particle histories with leaves shaped ``(chain, draw, N, ...)``, e.g.
        ``states.position`` of ``jax.vmap`` over chains of ``run_inference_algorithm``.
    observable
        A function of one particle set (leaves ``(N, ...)``) that does not depend on the order
        of the particles; default :func:`particle_moments`.

    Returns
    -------
    ``{"ess_bulk": ..., "ess_tail": ..., "rhat": ...}``, each shaped like ``observable``'s output.

    Examples
    --------
    >>> import jax
    >>> positions = jax.random.normal(jax.random.key(0), (2, 100, 16, 3))
    >>> sorted(invariant_diagnostics(positions)["rhat"])
    ['theta_mean', 'theta_sd']
    """
    values = jax.vmap(jax.vmap(observable))(positions)
    return {
        "ess_bulk": ess(values, method="bulk"),
        "ess_tail": ess(values, method="tail"),
        "rhat": rhat(values),
    }
