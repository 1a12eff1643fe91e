"""Step-size and temperature schedules: a constant, or a function of the step counter."""

from __future__ import annotations

import jax.numpy as jnp

from mflangevin.types import Array, ScalarOrSchedule

__all__ = ["schedule_value"]


def schedule_value(value: ScalarOrSchedule, count: Array) -> Array:
    """A constant, or a schedule evaluated at the step counter.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> count = jnp.asarray(3)
    >>> schedule_value(0.5, count)
    Array(0.5, dtype=float32, weak_type=True)
    >>> schedule_value(lambda t: 1.0 / (1 + t), count)
    Array(0.25, dtype=float32, weak_type=True)
    """
    return value(count) if callable(value) else jnp.asarray(value)
