"""The named streams of random keys, in one place.

A step of a kernel receives one key. Every random draw of the step comes from a stream derived
from it here, so that adding or removing a draw (a minibatch, a certificate) never changes the
others: the Langevin noise of MFLD is the same whatever the drift estimator, and requesting a
certificate leaves the trajectory unchanged. Tests reproduce a step's draws through these
functions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from mflangevin.types import PRNGKey

__all__ = [
    "ESTIMATOR",
    "DUAL",
    "CERTIFICATE",
    "estimator_key",
    "dual_key",
    "certificate_key",
    "PDAKeys",
    "pda_keys",
    "inner_step_key",
]

ESTIMATOR = 1
"""Fold of an MFLD step key (and of a PDA inner-step key) for the drift estimator's minibatch."""
DUAL = 0x706461
"""Fold of a PDA step key for the draws of ν of the per-step dual bound."""
CERTIFICATE = 0x6D66
"""Fold of a monitored step key for the certificate's draws."""


def estimator_key(step_key: PRNGKey) -> PRNGKey:
    """The key of a step's drift estimator (its minibatch); the step key itself is the noise's.

    Examples
    --------
    >>> import jax
    >>> estimator_key(jax.random.key(0)).shape
    ()
    """
    return jax.random.fold_in(step_key, ESTIMATOR)


def dual_key(step_key: PRNGKey) -> PRNGKey:
    """The key of PDA's per-step dual bound.

    Examples
    --------
    >>> import jax
    >>> dual_key(jax.random.key(0)).shape
    ()
    """
    return jax.random.fold_in(step_key, DUAL)


def certificate_key(step_key: PRNGKey) -> PRNGKey:
    """The key of the certificate that :func:`~mflangevin.certificates.monitor` records.

    Examples
    --------
    >>> import jax
    >>> certificate_key(jax.random.key(0)).shape
    ()
    """
    return jax.random.fold_in(step_key, CERTIFICATE)


class PDAKeys(NamedTuple):
    """The three streams of a PDA outer step: its samples, its inner loop, its output rule.

    Examples
    --------
    >>> import jax
    >>> sorted(pda_keys(jax.random.key(0))._fields)
    ['data', 'inner', 'output']
    """

    data: PRNGKey
    inner: PRNGKey
    output: PRNGKey


def pda_keys(step_key: PRNGKey) -> PDAKeys:
    """Split a PDA outer-step key into its three streams.

    Examples
    --------
    >>> import jax
    >>> keys = pda_keys(jax.random.key(0))
    >>> keys.data.shape
    ()
    """
    return PDAKeys(*jax.random.split(step_key, 3))


def inner_step_key(inner: PRNGKey, k) -> PRNGKey:
    """The key of PDA's inner step ``k``: its noise; ``estimator_key`` of it draws its minibatch.

    Examples
    --------
    >>> import jax
    >>> inner_step_key(pda_keys(jax.random.key(0)).inner, 3).shape
    ()
    """
    return jax.random.fold_in(inner, k)
