"""Control variates for the subsampled plates of a NumPyro model, a helper of
:mod:`mflangevin.numpyro` (docs/theory/variance-reduction.md#subsampled-plates-of-a-numpyro-model).

Write the potential as ``U_λ = E − λ R``, with ``E`` the data part (the observed sites, the only
part a subsampled plate scales) and ``R`` the reference part (prior and log-Jacobians). On one
subsample ``E_B`` is an unbiased estimate of ``E``; with a centre ``θ̂`` fixed, so is

    ``Ẽ(θ) = E_B(θ) + [E(θ̂) − E_B(θ̂)] + [∇E(θ̂) − ∇E_B(θ̂)]·(θ − θ̂)``

(both brackets have mean zero), whose gradient is the control-variate drift
``∇E_B(θ) − ∇E_B(θ̂) + ∇E(θ̂)`` (Baker, Fearnhead, Fox and Nemeth 2019): its error vanishes at
``θ = θ̂`` and grows with ``‖θ − θ̂‖``, that of ``Ẽ`` with ``‖θ − θ̂‖²``. The kernel's potential,
loss and drift are estimated so, the reference part exactly; ``E`` and its gradient at ``θ̂``
come from one pass over the whole data (every subsampled plate holding all its indices),
``E_B(θ̂)`` from the step's own subsample. The data part is the potential at ``λ = 0``, so a
temperature schedule leaves the estimates unbiased.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mflangevin.types import Array


class ControlVariate(NamedTuple):
    """The centre ``θ̂`` and the full-data ``(loss, E, ∇E)`` there; ``weight`` is ``0`` until the
    first centring (the plain subsampled estimate) and ``1`` after.

    A Bayesian model's particles share one centre (leading axis 1: the cloud's mean, where the
    error, growing with ``‖θ_i − θ̂‖``, is smallest on average); a mean-field model's energy
    depends on the whole system, whose snapshot is the centre (leading axis ``N``), as in SVRG.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z = {"x": jnp.arange(6.0).reshape(3, 2)}
    >>> centre(z, mean_field=False)["x"]
    Array([[2., 3.]], dtype=float32)
    """

    centre: dict
    loss: Array
    potential: Array
    drift: dict
    weight: Array


def centre(z: dict, mean_field: bool) -> dict:
    """The centre for particles ``z``: their mean (Bayesian models) or the system itself."""
    return z if mean_field else jax.tree.map(lambda x: jnp.mean(x, 0, keepdims=True), z)


def unset(z: dict, mean_field: bool, data_part) -> ControlVariate:
    """A control variate of weight 0, shaped for particles ``z`` (nothing is computed)."""
    at = centre(z, mean_field)
    shapes = jax.eval_shape(data_part, at)
    loss, potential, drift = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return ControlVariate(at, loss, potential, drift, jnp.zeros((), potential.dtype))


def centred_at(at: dict, full_data_part) -> ControlVariate:
    """The control variate centred at ``at``: one pass of the data part over the whole data."""
    loss, potential, drift = full_data_part(at)
    return ControlVariate(at, loss, potential, drift, jnp.ones((), potential.dtype))


def corrected(
    at_particles: tuple, at_centre: tuple, control_variate: ControlVariate, z: dict, scale
) -> tuple:
    """``(loss, V, ∇V)`` at the particles ``z`` on a subsample, corrected by ``weight ×`` the
    brackets of ``Ẽ`` (``at_centre``: the data part at the centre on the same subsample).
    ``scale`` is ``∂V/∂loss``: ``1`` for a Bayesian model, ``N`` for a mean-field one."""
    loss, potential, drift = at_particles
    weight = control_variate.weight
    slope = jax.tree.map(lambda e, b: weight * (e - b), control_variate.drift, at_centre[2])
    products = [
        jnp.reshape(s * (x - c), (x.shape[0], -1))
        for s, x, c in zip(
            jax.tree.leaves(slope),
            jax.tree.leaves(z),
            jax.tree.leaves(control_variate.centre),
            strict=True,
        )
    ]
    linear = sum(jnp.sum(p, axis=1) for p in products)
    if jnp.ndim(potential) == 0:  # a mean-field model's J(Θ): one value for the system
        linear = jnp.sum(linear)
    offset = weight * (control_variate.potential - at_centre[1])
    return (
        loss + (offset + linear) / scale,
        potential + offset + linear,
        jax.tree.map(jnp.add, drift, slope),
    )
