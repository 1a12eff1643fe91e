"""Type aliases shared by the package."""

from collections.abc import Callable
from typing import Any

import jax
from jax.typing import ArrayLike

Array = jax.Array
"""A JAX array."""
PRNGKey = jax.Array
"""A JAX random key, as made by ``jax.random.key``."""
ArrayTree = Any
"""A pytree of arrays; for particles every leaf has a leading axis of size ``N``."""
Schedule = Callable[[Array], Array]
"""A map from the step counter to a value (a step size, a temperature)."""
ScalarOrSchedule = float | ArrayLike | Schedule
"""A constant, or a :data:`Schedule` evaluated at the step counter."""

__all__ = ["Array", "ArrayLike", "ArrayTree", "PRNGKey", "Schedule", "ScalarOrSchedule"]
