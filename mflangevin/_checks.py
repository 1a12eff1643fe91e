"""Argument checks shared by the kernels, run eagerly before anything is traced."""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

from mflangevin.objectives import EnergyObjective, MeanFieldObjective, num_particles, num_samples
from mflangevin.references import check_reference
from mflangevin.types import Array, ArrayTree


def check_positive(name: str, value) -> None:
    """A constant must be a positive finite scalar; a schedule must be one at step 0.

    Examples
    --------
    >>> check_positive("step_size", 0.1)
    >>> check_positive("step_size", jnp.full((2,), 0.1))
    Traceback (most recent call last):
    ...
    ValueError: step_size: expected a scalar (one value for all particles), got an array ...
    >>> check_positive("step_size", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: step_size: must be positive and finite, got inf.
    """
    if type(value) is float and 0 < value < np.inf:  # the common case, without NumPy's cost
        return
    schedule = callable(value)
    if schedule:
        value = value(jnp.zeros((), jnp.int32))
    if isinstance(value, jax.core.Tracer):
        return  # a traced value: checked by the caller's own validation, if any
    array = np.asarray(value)  # checked on the host: nothing is compiled for a scalar
    if array.dtype.kind not in "biuf" and array.dtype != jnp.bfloat16:
        raise TypeError(f"{name}: expected a number or a schedule, got {value!r}.")
    with np.errstate(invalid="ignore"):
        ok = bool(np.all(np.isfinite(array)) & np.all(array > 0))
    shape = np.shape(value)
    if shape != ():
        what = "a schedule returning a scalar" if schedule else "a scalar"
        raise ValueError(
            f"{name}: expected {what} (one value for all particles), got an array of shape {shape}."
        )
    if not ok:
        raise ValueError(f"{name}: must be positive and finite, got {value}.")


def check_factor(value, name: str = "divergence_factor") -> None:
    """A growth factor: a real number ``> 1``, or ``inf`` to switch the test off.

    Examples
    --------
    >>> check_factor(10.0)
    >>> check_factor(1.0)
    Traceback (most recent call last):
    ...
    ValueError: divergence_factor: must be a number > 1 (inf switches the test off), got 1.0.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name}: expected a number > 1, got {value!r}.")
    if not float(value) > 1:
        raise ValueError(f"{name}: must be a number > 1 (inf switches the test off), got {value}.")


def check_particles(position: ArrayTree, objective=None, name: str = "position") -> int:
    """Check the particle pytree (and, given an objective, that it fits); returns ``N``.

    Eagerly and before anything is compiled (shapes by tracing, no allocation):

    * every leaf is a floating-point array with the leading particle axis ``N ≥ 1``, and
      concrete leaves are finite (a NaN particle would make every step a refused one);
    * given an objective: its reference measure has the right type, a finite-sum objective has
      at least one sample, the energy is a scalar, no leaf is missing, every leaf enters the
      objective (through the features ``Φ`` of a :class:`MeanFieldObjective`, or the energy of
      an :class:`EnergyObjective`), and a finite-sum objective never forms an array over the
      sample axis twice (a leaf of the wrong rank broadcasts the features against the labels).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin.models import MeanFieldNetwork
    >>> net = MeanFieldNetwork("tanh")
    >>> objective = net.objective(jnp.ones((5, 3)), jnp.zeros(5))
    >>> check_particles({"w": jnp.zeros((8, 3)), "b": jnp.zeros(8)}, objective)
    8
    >>> check_particles({"w": jnp.zeros((8, 3, 1)), "b": jnp.zeros(8)}, objective)
    Traceback (most recent call last):
    ...
    ValueError: position: the particles do not fit the objective: ...
    """
    _check_leaf_types(position, name)
    n = num_particles(position, name)
    for leaf in jax.tree.leaves(position):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"{name}: particles must be floating point, got {jnp.result_type(leaf)}."
            )
    _check_finite(position, name)
    if objective is not None:
        _check_reference(objective)
        _check_has_samples(objective)
        shapes = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), position
        )
        try:
            out = jax.eval_shape(objective.energy, shapes)
        except KeyError as err:
            raise ValueError(
                f"{name}: the particles do not fit the objective: the leaf {err} is missing "
                f"(the particles have the leaves {_leaf_shapes(position)})."
            ) from err
        except (TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"{name}: the particles do not fit the objective: {err}") from err
        if out.shape != ():
            raise ValueError(f"objective: the energy must be a scalar, got shape {out.shape}.")
        _check_leaves_used(objective, shapes, position, name)
        _check_sample_axis(objective, shapes, position, name)
    return n


def _path_name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _leaf_shapes(position: ArrayTree) -> dict[str, tuple]:
    paths = jax.tree_util.tree_flatten_with_path(position)[0]
    return {_path_name(path) or "particles": jnp.shape(leaf) for path, leaf in paths}


def _check_leaf_types(position: ArrayTree, name: str) -> None:
    for leaf in jax.tree.leaves(position):
        if isinstance(leaf, bool | int | float | complex):
            raise TypeError(
                f"{name}: particle leaves must be arrays with a leading particle axis, got a "
                f"Python {type(leaf).__name__} (nested lists? convert them with jnp.asarray)."
            )


_FINITE_BLOCK = 1 << 20
"""Entries a block of :func:`all_finite`'s host-side pass reads at a time."""


def to_device(x) -> jax.Array:
    """``x`` as a device array: a JAX array (or a traced one) as it is, anything else (NumPy,
    lists) transferred once. ``jnp.asarray`` of a NumPy array briefly holds a second copy of it
    (measured by ``benchmarks/memory.py``); ``jax.device_put`` does not.

    Examples
    --------
    >>> x = jnp.ones(3)
    >>> to_device(x) is x, to_device(np.ones(2)).dtype, to_device([1, 2]).shape
    (True, dtype('float32'), (2,))
    """
    if isinstance(x, jax.Array):
        return x
    return jax.device_put(np.asarray(x))


def all_finite(x) -> bool:
    """Whether a concrete array has no NaN or infinite value: read with NumPy in host memory (no
    compilation), else by one compiled program per shape.

    Examples
    --------
    >>> all_finite(np.ones(3)), all_finite(jnp.array([1.0, jnp.nan]))
    (True, False)
    """
    if on_host(x):
        x = np.asarray(x)
        if x.ndim == 0:
            return bool(np.isfinite(x))
        # By blocks of rows: np.isfinite of the whole array would hold n·d booleans.
        rows = max(1, _FINITE_BLOCK // max(1, x[:1].size))
        return all(np.all(np.isfinite(x[i : i + rows])) for i in range(0, len(x), rows))
    with jax.ensure_compile_time_eval():  # concrete values, even inside another trace
        return bool(_all_finite(x))


def _check_finite(position: ArrayTree, name: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(position)[0]:
        if isinstance(leaf, jax.core.Tracer):
            continue
        if not all_finite(leaf):
            where = f"leaf {_path_name(path)!r}" if path else "the particles"
            raise ValueError(
                f"{name}: {where} has NaN or infinite values; every particle must start finite."
            )


def on_host(x) -> bool:
    """Whether ``x`` is a concrete array in host memory (NumPy, or a JAX array on CPU devices
    only): a check reads it there with NumPy and compiles nothing.

    Examples
    --------
    >>> on_host(np.ones(3)), on_host(jnp.ones(3))  # this machine's JAX arrays are on its CPU
    (True, True)
    >>> jax.jit(lambda x: on_host(x) or x)(jnp.ones(1))  # a traced value is not
    Array([1.], dtype=float32)
    """
    if isinstance(x, np.ndarray | np.generic):
        return True
    return (
        isinstance(x, jax.Array)
        and not isinstance(x, jax.core.Tracer)
        and x.is_fully_addressable
        and all(device.platform == "cpu" for device in x.devices())
    )


@jax.jit
def _all_finite(x: Array) -> Array:
    # On an accelerator, one compiled program per shape (op by op it would be two).
    return jnp.all(jnp.isfinite(x))


def _check_reference(objective) -> None:
    check_reference(getattr(objective, "reference", None), "objective: its reference measure")


def _check_has_samples(objective) -> None:
    if getattr(objective, "finite_sum", False):
        num_samples(objective.data)  # raises on n = 0


def _used_inputs(jaxpr) -> list[bool]:
    """Which inputs of a jaxpr reach its outputs. A compiled call (``jax.jit`` inside, as the
    objectives' methods are) uses the inputs its own jaxpr uses; other sub-jaxprs (loops,
    branches) count as using all their inputs."""
    live = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in live for v in eqn.outvars):
            called = eqn.params.get("jaxpr") if eqn.primitive.name == "jit" else None
            used = _used_inputs(called.jaxpr) if called is not None else [True] * len(eqn.invars)
            live.update(
                v for v, u in zip(eqn.invars, used, strict=True) if u and not isinstance(v, Literal)
            )
    return [v in live for v in jaxpr.invars]


def _check_leaves_used(objective, shapes: ArrayTree, position: ArrayTree, name: str) -> None:
    if isinstance(objective, MeanFieldObjective):
        fn, what = objective.features, "the features Φ(θ) of the objective"
    elif isinstance(objective, EnergyObjective):
        fn, what = objective.energy, "the energy"
    else:
        return
    try:
        closed = jax.make_jaxpr(fn)(shapes)
    except Exception:  # the energy traced above; leave other failures to the run
        return
    paths = [_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(position)[0]]
    unused = [
        path for path, used in zip(paths, _used_inputs(closed.jaxpr), strict=True) if not used
    ]
    if unused:
        raise ValueError(
            f"{name}: the leaves {unused} do not enter {what}; they would only diffuse. "
            f"Remove them (the particles have the leaves {_leaf_shapes(position)})."
        )


_SENTINELS = (7919, 7907, 7901, 7883, 7877)


def _sub_jaxprs(value):
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _sub_jaxprs(item)


def _shapes_in(jaxpr):
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield getattr(v.aval, "shape", ())
        for param in eqn.params.values():
            for sub in _sub_jaxprs(param):
                yield from _shapes_in(sub)


def _check_sample_axis(objective, shapes: ArrayTree, position: ArrayTree, name: str) -> None:
    """A finite-sum objective, traced with a sample count of its own: no array may carry it
    twice (an ``(n, n)`` array means a leaf of the wrong rank broadcast the features against
    the data)."""
    if not isinstance(objective, MeanFieldObjective) or not objective.finite_sum:
        return
    data_leaves = jax.tree.leaves(objective.data)
    if not data_leaves:
        return
    dims = {d for leaf in (*data_leaves, *jax.tree.leaves(position)) for d in jnp.shape(leaf)}
    sentinel = next((s for s in _SENTINELS if s not in dims), None)
    if sentinel is None:
        return
    abstract = dataclasses.replace(
        objective,
        data=jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((sentinel, *jnp.shape(a)[1:]), jnp.result_type(a)),
            objective.data,
        ),
        finite_sum=False,
    )
    try:
        features = jax.eval_shape(lambda o, p: o.features(p), abstract, shapes)
        closed = jax.make_jaxpr(lambda o, p: o.energy(p))(abstract, shapes)
    except Exception:  # the energy traced above at the real sizes
        return

    def shown(shape) -> str:
        names = ["n" if d == sentinel else str(d) for d in shape]
        return f"({', '.join(names)}{',' if len(names) == 1 else ''})"

    per_particle = shown(features.shape[1:])
    if features.shape[1:2] != (sentinel,):
        return  # features without the sample axis first: the minibatch modes say so themselves
    for shape in _shapes_in(closed.jaxpr):
        if list(shape).count(sentinel) >= 2:
            raise ValueError(
                f"{name}: the particles do not fit the objective: with the leaves "
                f"{_leaf_shapes(position)}, one particle's features have shape {per_particle} "
                f"and the risk forms an array of shape {shown(shape)} over the n samples; a leaf "
                "probably has the wrong rank."
            )


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


def check_state(state, expected: type) -> None:
    """The state handed to ``step`` is the one its algorithm's ``init`` makes.

    Examples
    --------
    >>> from typing import NamedTuple
    >>> class State(NamedTuple):
    ...     count: int
    >>> check_state(State(0), State)
    >>> check_state((0,), State)
    Traceback (most recent call last):
    ...
    TypeError: state: expected the State of this algorithm's init, got tuple.
    """
    if not isinstance(state, expected):
        raise TypeError(
            f"state: expected the {expected.__name__} of this algorithm's init, "
            f"got {type(state).__name__}."
        )


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """One of the allowed strings."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}.")
