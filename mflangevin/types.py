"""Type aliases shared by the package."""

from collections.abc import Callable
from typing import Any

import jax
from jax.typing import ArrayLike

Array = jax.Array
PRNGKey = jax.Array
ArrayTree = Any  # a pytree of arrays; for particles every leaf has a leading axis of size N
Schedule = Callable[[Array], Array]  # step counter -> value (step size, temperature)
ScalarOrSchedule = float | ArrayLike | Schedule

__all__ = ["Array", "ArrayLike", "ArrayTree", "PRNGKey", "Schedule", "ScalarOrSchedule"]
