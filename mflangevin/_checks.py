"""Argument checks shared by the kernels, run eagerly before anything is traced."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from mflangevin.objectives import num_particles
from mflangevin.types import ArrayTree


def check_positive(name: str, value) -> None:
    """A constant must be a positive finite number; a schedule must be positive at step 0."""
    if callable(value):
        value = value(jnp.zeros((), jnp.int32))
    try:
        ok = bool(jnp.all(jnp.isfinite(value)) & jnp.all(jnp.asarray(value) > 0))
    except jax.errors.ConcretizationTypeError:
        return  # a traced value: checked by the caller's own validation, if any
    except TypeError as err:
        raise TypeError(f"{name}: expected a number or a schedule, got {value!r}.") from err
    if not ok:
        raise ValueError(f"{name}: must be positive and finite, got {value}.")


def check_particles(position: ArrayTree, objective=None, name: str = "position") -> int:
    """Check the particle pytree (and, given an objective, that it fits); returns ``N``."""
    n = num_particles(position, name)
    for leaf in jax.tree.leaves(position):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"{name}: particles must be floating point, got {jnp.result_type(leaf)}."
            )
    if objective is not None:
        shapes = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), position
        )
        try:
            out = jax.eval_shape(objective.energy, shapes)
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{name}: the particles do not fit the objective: {err}") from err
        if out.shape != ():
            raise ValueError(f"objective: the energy must be a scalar, got shape {out.shape}.")
    return n


def check_count(name: str, value) -> int:
    """A positive integer (``bool`` excluded); returns it as an ``int``."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got {value!r}.")
    try:
        value = operator.index(value)
    except TypeError as err:
        raise TypeError(f"{name}: expected an integer, got {value!r}.") from err
    if value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value}.")
    return value


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """One of the allowed strings."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}.")
