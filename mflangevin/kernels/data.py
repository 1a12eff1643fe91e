"""Where a step's samples come from: the one data path of every kernel.

A kernel step evaluates its objective on the samples of a :class:`DataSource`:

* :func:`full` — all ``n`` samples of ``objective.data``;
* :func:`minibatch` — ``B`` of them, drawn on device at a cost of ``O(B)`` whatever ``n`` is.
  Without replacement (the default), epochs walk pseudo-random permutations of ``[0, n)`` in
  slices of ``B``: within an epoch the minibatches are disjoint, every minibatch is marginally a
  uniform ``B``-subset, and a new permutation (keyed by the step key) starts every ``⌊n/B⌋``
  minibatches, so the last ``n mod B`` positions of each permutation are skipped. With
  replacement, ``B`` independent uniform indices;
* :func:`stream` — a batch that is not in ``objective.data``: handed to the step by the caller
  (:func:`mflangevin.streaming_mfld`), or drawn by a user function ``sampler(rng_key)``
  (online PDA).

Each source counts the per-sample gradients a step evaluates and checks its arguments once,
eagerly, before anything is compiled.

The data held by an algorithm are arguments of its compiled step, never constants: :func:`hold`
puts them on the device once (device arrays are held as they are, without a copy), and the step
takes the objective as an argument. Under ``jax.jit``, ``lax.scan`` and ``jax.vmap`` of a step,
the arrays it closes over are passed to the program as inputs as well (JAX's
``jax_use_simplified_jaxpr_constants``, on by default from JAX 0.12), so a program's size and
compile time do not depend on ``n``, and the data are in memory once: the caller's device arrays
are the algorithm's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm

from mflangevin._checks import check_count, check_state, to_device
from mflangevin.kernels._permutation import permuted_indices
from mflangevin.objectives import MeanFieldObjective, StructuredObjective, num_samples
from mflangevin.types import Array, PRNGKey

__all__ = [
    "DataSource",
    "Draw",
    "MinibatchState",
    "full",
    "minibatch",
    "stream",
    "hold",
    "Holder",
    "held_algorithm",
    "freeze",
    "thaw",
]


class Draw(NamedTuple):
    """The samples of one step: the objective on them, their indices into ``objective.data``
    (``None`` for the full data and for streamed batches), how many there are, and whether they
    lie in the domain of the objective's risk (its ``check_data``; always true unless streamed).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
    ...                                data=jnp.ones((10, 2)), finite_sum=True)
    >>> draw, _ = full().draw(jax.random.key(0), objective, ())
    >>> draw.indices is None, int(draw.num_samples)
    (True, 10)
    """

    objective: Any
    indices: Array | None
    num_samples: Array
    in_domain: Array | bool = True


class MinibatchState(NamedTuple):
    """Where a without-replacement minibatch stream stands: the key of this epoch's
    permutation and the number of minibatches already drawn in the epoch.

    Examples
    --------
    >>> int(minibatch(4).init(None).position)
    0
    """

    key: Array
    position: Array

    @classmethod
    def start(cls) -> MinibatchState:
        """A stream that has drawn nothing yet.

        Examples
        --------
        >>> int(MinibatchState.start().position)
        0
        """
        return cls(jax.random.key(0), jnp.zeros((), jnp.int32))


def _count(value) -> Array:
    return jnp.asarray(value, jnp.int32)


def _typed(rng_key: PRNGKey) -> PRNGKey:
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        return rng_key
    return jax.random.wrap_key_data(rng_key)


def _check_finite_sum(objective, name: str) -> int:
    if not getattr(objective, "finite_sum", False) or not isinstance(
        objective, StructuredObjective
    ):
        got = type(objective).__name__
        if isinstance(objective, StructuredObjective):
            got += " with finite_sum=False"
        raise TypeError(
            f"{name}: minibatches need a finite-sum MeanFieldObjective (an empirical risk whose "
            "data and features have the sample axis first, built with finite_sum=True as "
            f"MeanFieldNetwork.objective does), got {got}."
        )
    if objective.data is None:
        raise ValueError(f"{name}: the objective has no data to draw minibatches from.")
    return num_samples(objective.data)


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Base of the data sources; see the module docstring.

    ``init(objective)`` gives the source's state (it lives in the kernel state),
    ``draw(rng_key, objective, state, batch=None) -> (Draw, state)`` the samples of one step and
    ``check(objective)`` raises, eagerly, on an objective the source cannot use.

    Examples
    --------
    >>> isinstance(minibatch(8), DataSource)
    True
    """

    def check(self, objective) -> None:
        num_samples(getattr(objective, "data", None))

    def init(self, objective) -> Any:
        return ()

    def draw(self, rng_key, objective, state, batch=None) -> tuple[Draw, Any]:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class _Full(DataSource):
    def draw(self, rng_key, objective, state, batch=None):
        n = num_samples(getattr(objective, "data", None))
        return Draw(objective, None, _count(n)), state


@dataclasses.dataclass(frozen=True)
class _Minibatch(DataSource):
    batch_size: int
    replace: bool = False

    def check(self, objective) -> None:
        n = _check_finite_sum(objective, "batch_size")
        if self.batch_size > n:
            raise ValueError(
                f"batch_size: must be at most the number of samples n = {n}, got {self.batch_size}."
            )

    def init(self, objective) -> MinibatchState:
        return MinibatchState.start()

    def indices(self, rng_key, n: int, state: MinibatchState) -> tuple[Array, MinibatchState]:
        """``B`` indices into ``[0, n)`` and the next state; ``O(B)`` work."""
        if self.replace:
            return jax.random.randint(rng_key, (self.batch_size,), 0, n), state
        new_epoch = state.position == 0
        key = jnp.where(new_epoch, _typed(rng_key), state.key)
        start = state.position * self.batch_size
        indices = permuted_indices(key, n, start, self.batch_size)
        position = (state.position + 1) % (n // self.batch_size)
        return indices, MinibatchState(key, position.astype(jnp.int32))

    def draw(self, rng_key, objective, state, batch=None):
        indices, state = self.indices(rng_key, num_samples(objective.data), state)
        return Draw(objective.subsample(indices), indices, _count(self.batch_size)), state


@dataclasses.dataclass(frozen=True)
class _Stream(DataSource):
    sampler: Callable[[PRNGKey], Any] | None = None

    def check(self, objective) -> None:
        if not isinstance(objective, StructuredObjective):
            raise TypeError(
                "objective: streamed batches need a MeanFieldObjective whose risk averages over "
                f"the leading axis of its data (an empirical risk), got {type(objective).__name__}."
            )
        if self.sampler is not None:
            if not callable(self.sampler):
                raise TypeError(f"data_sampler: expected a callable, got {self.sampler!r}.")
            try:
                program, batch = jax.make_jaxpr(self.sampler, return_shape=True)(jax.random.key(0))
            except Exception as err:  # the user's function, called on a key
                raise ValueError(f"data_sampler: calling it on a PRNG key failed: {err}") from err
            (key,) = program.jaxpr.invars
            if key not in program.jaxpr.outvars and not any(
                key in equation.invars for equation in program.jaxpr.eqns
            ):
                raise ValueError(
                    "data_sampler: its batch does not depend on the key it is given. It is traced "
                    "once, so a host-side iterator or generator (next(it)) would give every step "
                    "the same batch: draw the batch from the key with JAX (e.g. rows at "
                    "jax.random.randint indices), or hand host batches to streaming_mfld's step."
                )
            self.on_batch(objective, batch, "data_sampler")

    def on_batch(self, objective, batch, name: str = "minibatch") -> MeanFieldObjective:
        """The objective on ``batch``, after checking it against ``objective.data``."""
        if objective.data is not None:
            if jax.tree.structure(batch) != jax.tree.structure(objective.data):
                raise ValueError(
                    f"{name}: must have the structure of the objective's data, "
                    f"{jax.tree.structure(objective.data)}; got {jax.tree.structure(batch)}."
                )
            for given, expected in zip(
                jax.tree.leaves(batch), jax.tree.leaves(objective.data), strict=True
            ):
                if jnp.shape(given)[1:] != jnp.shape(expected)[1:] or jnp.result_type(
                    given
                ) != jnp.result_type(expected):
                    raise ValueError(
                        f"{name}: a leaf of shape {jnp.shape(given)} and dtype "
                        f"{jnp.result_type(given)} does not match the objective's data "
                        f"(rows of shape {jnp.shape(expected)[1:]}, dtype "
                        f"{jnp.result_type(expected)})."
                    )
        batch_objective = dataclasses.replace(objective, data=batch)
        num_samples(batch, name)
        return batch_objective

    def draw(self, rng_key, objective, state, batch=None):
        if batch is None:
            batch = self.sampler(rng_key)
        batch_objective = self.on_batch(objective, batch)
        in_domain = True
        if getattr(objective, "check_data", None) is not None:
            in_domain = objective.check_data(batch, "minibatch")
        return Draw(batch_objective, None, _count(num_samples(batch)), in_domain), state


def full() -> DataSource:
    """Every step uses all ``n`` samples of ``objective.data`` (1 for an objective without data).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
    ...                                data=jnp.ones((10, 2)), finite_sum=True)
    >>> draw, _ = full().draw(jax.random.key(0), objective, ())
    >>> int(draw.num_samples)
    10
    """
    return _Full()


def minibatch(batch_size: int, replace: bool = False) -> DataSource:
    """Every step uses ``B = batch_size`` samples drawn on device in ``O(B)``.

    Parameters
    ----------
    batch_size
        ``B``, with ``1 ≤ B ≤ n``.
    replace
        ``False`` (default): epochs of disjoint minibatches, slices of a pseudo-random
        permutation (see the module docstring); ``True``: independent uniform indices.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
    ...                                data=jnp.arange(20.0).reshape(10, 2), finite_sum=True)
    >>> source = minibatch(5)
    >>> source.check(objective)
    >>> state = source.init(objective)
    >>> first, state = source.draw(jax.random.key(0), objective, state)
    >>> second, state = source.draw(jax.random.key(1), objective, state)
    >>> sorted(int(i) for i in jnp.concatenate([first.indices, second.indices]))  # one epoch
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    batch_size = check_count("batch_size", batch_size)
    if not isinstance(replace, bool):
        raise TypeError(f"replace: expected True or False, got {replace!r}.")
    return _Minibatch(batch_size, replace)


def stream(sampler: Callable[[PRNGKey], Any] | None = None) -> DataSource:
    """Every step uses a batch that is not in ``objective.data``.

    Without ``sampler`` the caller hands the batch to ``draw`` (the step's argument); with it,
    ``sampler(rng_key)`` draws the batch on device. The sampler is a pure JAX function of the
    key, traced once into the compiled step: a batch that does not depend on the key (a
    host-side iterator would give the same one at every step) is refused. Batches must have the
    structure, row shapes and dtypes of ``objective.data`` (when it has data); their leading
    axis is the batch size.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
    ...                                data=jnp.ones((10, 2)), finite_sum=True)
    >>> draw, _ = stream().draw(jax.random.key(0), objective, (), batch=jnp.ones((3, 2)))
    >>> int(draw.num_samples), draw.objective.data.shape
    (3, (3, 2))
    """
    return _Stream(sampler)


def hold(objective):
    """The objective with its data on the device: NumPy leaves copied there once, device arrays
    kept as they are (the algorithm holds the caller's arrays, not a copy).

    A compiled step that takes the held objective as an argument has the data as inputs of its
    program, not constants. Objectives without array data (and data that are already being
    traced) are returned as they are.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> X = jnp.ones((1000, 2))
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z), data=X)
    >>> held = hold(objective)
    >>> held.data is X  # no copy
    True
    >>> energy = jax.jit(lambda p: held.energy(p))
    >>> len(energy.lower(jnp.ones((4, 2))).as_text()) < 4000  # the data are not in the program
    True
    """
    data = getattr(objective, "data", None)
    leaves = jax.tree.leaves(data)
    if not leaves or any(isinstance(x, jax.core.Tracer) for x in leaves):
        return objective
    if all(isinstance(x, jax.Array) for x in leaves):
        return objective
    return dataclasses.replace(objective, data=jax.tree.map(to_device, data))


class Holder:
    """The data of an algorithm, held (see :func:`hold`) where its particles are.

    ``held`` is the objective with its data on the device; :meth:`place_like` moves them next to
    the particles given to ``init``: when those live on other devices (particles sharded over a
    mesh, data on one device), the data are replicated over the particles' mesh once, as a
    compiled-in constant would have been.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin import MeanFieldObjective
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
    ...                                data=jnp.ones((5, 2)))
    >>> holder = Holder(objective)
    >>> holder.place_like(jnp.zeros((4, 2)))
    >>> holder.held.data.shape
    (5, 2)
    """

    def __init__(self, objective):
        self.held = hold(objective)

    def _arrays(self) -> list:
        leaves = jax.tree.leaves(getattr(self.held, "data", None))
        return [
            x for x in leaves if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
        ]

    def place_like(self, position) -> None:
        """Re-hold the data on the devices of the (concrete) particles ``position``."""
        arrays = self._arrays()
        leaves = [
            x
            for x in jax.tree.leaves(position)
            if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
        ]
        if not arrays or not leaves:
            return
        target, held = leaves[0].sharding, arrays[0].sharding
        if target.device_set == held.device_set and _meshes_differ(target, held):
            # One program cannot take inputs on two meshes of the same devices.
            raise ValueError(
                f"position: the particles are on the mesh ({_axes(target.mesh)}) and the "
                f"objective's data on another ({_axes(held.mesh)}); place both on one mesh "
                "(mflangevin.sharding.shard_particles and shard_data with the same mesh)."
            )
        if target.device_set == held.device_set:
            return
        if isinstance(target, jax.sharding.NamedSharding):
            target = jax.sharding.NamedSharding(target.mesh, jax.sharding.PartitionSpec())
        elif not _on_one_device(target):
            return
        data = jax.device_put(self.held.data, target)
        self.held = dataclasses.replace(self.held, data=data)

    def commit(self, state):
        """``state`` with its uncommitted arrays (``jnp.zeros`` of an ``init``, say) committed to
        the device of the held data, when they are on one device. The step's outputs are
        committed there, and a compiled step is specialised to whether its inputs are: an
        uncommitted initial state would compile the step a second time at the second step. (Over
        a mesh, where each output's layout is the compiler's choice, the state is left as it is.)

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> from mflangevin import MeanFieldObjective
        >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
        ...                                data=jnp.ones((5, 2)))
        >>> Holder(objective).commit(jnp.zeros(3)).committed
        True
        """
        arrays = self._arrays()
        if not arrays:
            return state
        target = arrays[0].sharding
        if not _on_one_device(target):
            return state

        def one(x):
            if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and not x.committed:
                return jax.device_put(x, target)
            return x

        return jax.tree.map(one, state)


def _on_one_device(sharding) -> bool:
    """Whether ``sharding`` places an array whole on one device, outside any mesh (the layout of
    an array made without one). Read from its devices rather than its class: JAX is replacing the
    single-device sharding class by a one-device ``NamedSharding``."""
    return not isinstance(sharding, jax.sharding.NamedSharding) and len(sharding.device_set) == 1


def held_algorithm(
    objective, init: Callable, step: Callable, settings: tuple, state_type: type, *step_args
) -> SamplingAlgorithm:
    """The top-level ``SamplingAlgorithm`` of a kernel whose data are held (see :class:`Holder`).

    ``init(position, rng_key)`` is the kernel's checked initialisation; the data follow the
    particles of the state it returns. ``step(settings, rng_key, state, held, *step_args)`` is
    the kernel's module-level compiled step, given the frozen ``settings`` (see :func:`freeze`)
    and the held objective; ``step`` first checks that the state is a ``state_type``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from typing import NamedTuple
    >>> from mflangevin import MeanFieldObjective
    >>> class State(NamedTuple):
    ...     position: jax.Array
    >>> objective = MeanFieldObjective(lambda t, x: x @ t, lambda z, _: jnp.mean(z),
    ...                                data=jnp.ones((5, 2)))
    >>> @jax.jit
    ... def step(settings, rng_key, state, held):
    ...     (scale,) = thaw(settings)
    ...     return State(state.position - scale * held.data.sum()), None
    >>> algorithm = held_algorithm(objective, lambda p, k: State(p), step, (0.1,), State)
    >>> state, _ = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros(2)))
    >>> state.position
    Array([-1., -1.], dtype=float32)
    """
    holder, settings = Holder(objective), freeze(settings)
    fitting = set()  # the states' shapes known to fit: those init made or step checked

    def init_fn(position, rng_key=None):
        state = init(position, rng_key)
        fitting.add(_shapes(state))
        holder.place_like(state.position)
        return holder.commit(state)

    def step_fn(rng_key, state):
        check_state(state, state_type)
        shapes = _shapes(state)
        if shapes not in fitting:
            # A state this algorithm did not start (a checkpoint): its particles are checked as
            # init checks them, and the state against the one init would make from them, by
            # tracing init (nothing is computed).
            try:
                expected = _shapes(jax.eval_shape(init, state.position, None))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"state: its particles do not fit this algorithm (a checkpoint of another "
                    f"problem?): {err}"
                ) from err
            if shapes != expected:
                raise ValueError(
                    "state: it is not a state of this algorithm: its parts differ from those "
                    "init makes (made with other settings, e.g. another drift estimator?)."
                )
            fitting.add(shapes)
        return step(settings, rng_key, state, holder.held, *step_args)

    return SamplingAlgorithm(init_fn, step_fn)


def _meshes_differ(a: jax.sharding.Sharding, b: jax.sharding.Sharding) -> bool:
    named = jax.sharding.NamedSharding
    return isinstance(a, named) and isinstance(b, named) and a.mesh != b.mesh


def _axes(mesh) -> str:
    return ", ".join(
        f"{name}: {size} {kind.name}"
        for (name, size), kind in zip(mesh.shape.items(), mesh.axis_types, strict=True)
    )


def _shapes(tree) -> tuple:
    """The structure, shapes and dtypes of a pytree (hashable)."""
    leaves, structure = jax.tree.flatten(tree)
    return structure, tuple((jnp.shape(x), getattr(x, "dtype", None)) for x in leaves)


class _ByIdentity:
    """A setting that cannot be hashed (an array step size), compared by identity."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def freeze(settings: tuple) -> tuple:
    """The static settings of a compiled step, hashable: values that cannot be hashed (arrays)
    are compared by identity, so only equal hashable settings share a compilation.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> settings = freeze((0.1, jnp.asarray(0.5)))
    >>> hash(settings) == hash(settings), thaw(settings)[0]
    (True, 0.1)
    """

    def one(value):
        try:
            hash(value)
        except TypeError:
            return _ByIdentity(value)
        return value

    return tuple(one(value) for value in settings)


def thaw(settings: tuple) -> tuple:
    """The settings given to :func:`freeze`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(thaw(freeze((jnp.asarray(0.5),)))[0])
    0.5
    """
    return tuple(v.value if isinstance(v, _ByIdentity) else v for v in settings)
