"""Averaged stochastic gradient descent (ASGD) for NTK-regime networks, docs/theory/ntk.md.

One-pass SGD on the squared loss with L2 toward the initialisation ``Θ_0``; each step sees a
fresh example (or minibatch) ``(x_t, y_t)``::

    Θ_{t+1} = Θ_t − η [ (g_{Θ_t}(x_t) − y_t) ∇_Θ g_{Θ_t}(x_t) + λ (Θ_t − Θ_0) ]
    Θ̄_T = (1/(T + 1)) Σ_{t=0}^{T} Θ_t

With a constant step ``η = O(1)`` and ``λ ≍ T^{−β/(2rβ+1)}``, the averaged iterate reaches the
minimax rate ``T^{−2rβ/(2rβ+1)}`` for the excess risk under a source condition ``r`` and
eigenvalue decay ``i^{−β}`` of the NTK (Nitanda & Suzuki, *Optimal Rates for Averaged
Stochastic Gradient Descent under Neural Tangent Kernel Regime*, ICLR 2021). Tail averaging
(``average_from = s``) averages ``Θ_s, …, Θ_T`` only.

Where the sample comes from. The top-level ``step(rng_key, state)`` draws its example on
device from a user ``sampler(rng_key) -> (x, y)``: that keeps the BlackJAX contract, so one-pass
SGD on a stream of fresh samples runs inside ``jax.lax.scan``, ``run_inference_algorithm`` and
``jax.vmap`` over chains without ever materialising the ``T`` samples. For data that arrive
from outside (a stream read on the host), the low-level kernel of :func:`build_kernel` takes
the minibatch explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm

from mflangevin._checks import all_finite, check_positive
from mflangevin.kernels.diffusions import refuse_if_divergent
from mflangevin.schedules import schedule_value
from mflangevin.types import Array, ArrayTree, PRNGKey, ScalarOrSchedule

__all__ = ["ASGDState", "ASGDInfo", "init", "build_kernel", "as_top_level_api"]


class ASGDState(NamedTuple):
    """State of ASGD: last iterate ``Θ_t``, average ``Θ̄_t``, anchor ``Θ_0`` and step count ``t``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = init(jnp.ones(2))
    >>> state.position is state.average is state.initial_position
    True
    """

    position: ArrayTree
    average: ArrayTree
    initial_position: ArrayTree
    count: Array


class ASGDInfo(NamedTuple):
    """What one ASGD step saw.

    ``loss`` is ``½ mean (g_{Θ_t}(x_t) − y_t)²`` on the step's minibatch *before* the update:
    the sample is fresh, so this is an unbiased estimate of the risk of ``Θ_t`` (progressive
    validation). ``grad_norm`` is the Euclidean norm of the full gradient (L2 term included);
    ``is_divergent`` is true when the proposed iterate was non-finite or beyond the divergence
    threshold, in which case the step was refused: ``Θ_{t+1} = Θ_t`` (and so enters the average).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> kernel = build_kernel()
    >>> batch = (jnp.ones((1, 2)), jnp.ones(1))
    >>> _, info = kernel(init(jnp.zeros(2)), batch, lambda w, x: x @ w, 0.1, 0.0)
    >>> float(info.loss), bool(info.is_divergent)
    (0.5, False)
    """

    loss: Array
    grad_norm: Array
    is_divergent: Array
    step_size: Array


def init(position: ArrayTree, rng_key: PRNGKey | None = None) -> ASGDState:
    """Start from ``Θ_0 = position``: the average is ``Θ_0`` and L2 pulls toward it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = init(jnp.zeros((4, 2)))
    >>> int(state.count), state.average.shape
    (0, (4, 2))
    """
    del rng_key
    _check_position(position)
    position = jax.tree.map(jnp.asarray, position)
    return ASGDState(position, position, position, jnp.zeros((), jnp.int32))


def _check_position(position: ArrayTree) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(position)[0]
    if not leaves:
        raise ValueError("position: the parameter pytree has no arrays.")
    for path, leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"position: parameters must be floating point, got {jnp.result_type(leaf)}."
            )
        # A NaN parameter would make every step a refused one (traced ones cannot be checked).
        if not isinstance(leaf, jax.core.Tracer) and not all_finite(leaf):
            where = f"the leaf {jax.tree_util.keystr(path)} has" if path else "the parameters have"
            raise ValueError(f"position: {where} NaN or infinite values.")


def build_kernel(average_from: int = 0, divergence_threshold: float = 1e6) -> Callable:
    """Build the low-level ASGD kernel: one step on an explicit minibatch.

    Parameters
    ----------
    average_from
        ``s``: average the iterates ``Θ_s, Θ_{s+1}, …`` (``0``: uniform averaging from the
        start; ``T // 2``: the last half of a ``T``-step run). Before step ``s`` the average is
        the current iterate.
    divergence_threshold
        A proposed coordinate of this magnitude, or a non-finite one, refuses the step.

    Returns
    -------
    ``kernel(state, batch, apply_fn, step_size, l2) -> (state, info)`` where
    ``batch = (x, y)`` has a leading batch axis (``y`` of shape ``(b,)``) and
    ``apply_fn(params, x)`` returns predictions of shape ``(b,)``.

    Examples
    --------
    Streaming data read outside the compiled step:

    >>> import jax, jax.numpy as jnp
    >>> apply_fn = lambda w, x: x @ w
    >>> kernel = jax.jit(build_kernel(), static_argnums=2)
    >>> state = init(jnp.zeros(2))
    >>> for x, y in [(jnp.ones((1, 2)), jnp.ones(1))] * 3:
    ...     state, info = kernel(state, (x, y), apply_fn, 0.5, 0.0)
    >>> [round(float(v), 3) for v in state.position]
    [0.5, 0.5]
    """
    _check_average_from(average_from)
    check_positive("divergence_threshold", divergence_threshold)

    def kernel(
        state: ASGDState,
        batch: tuple[Array, Array],
        apply_fn: Callable,
        step_size: Array,
        l2: Array,
    ) -> tuple[ASGDState, ASGDInfo]:
        x, y = batch
        position, anchor = state.position, state.initial_position

        def sample_loss(params):
            residual = apply_fn(params, x) - y
            return 0.5 * jnp.mean(residual**2)

        loss, grad = jax.value_and_grad(sample_loss)(position)
        grad = jax.tree.map(lambda g, p, p0: g + l2 * (p - p0), grad, position, anchor)
        proposal = jax.tree.map(lambda p, g: p - step_size * g, position, grad)
        new_position, is_divergent = refuse_if_divergent(proposal, position, divergence_threshold)
        count = state.count + 1
        # Running mean over Θ_s..Θ_count: weight 1/(count − s + 1); before s the weight is 1.
        # Divided in each leaf's dtype: a float32 weight would cost a float64 average 1e-10.
        terms = jnp.maximum(count - average_from + 1, 1)
        average = jax.tree.map(
            lambda a, p: a + (p - a) / terms.astype(a.dtype), state.average, new_position
        )
        sq_norm = sum(jnp.sum(g**2) for g in jax.tree.leaves(grad))
        info = ASGDInfo(loss, jnp.sqrt(sq_norm), is_divergent, jnp.asarray(step_size))
        return ASGDState(new_position, average, anchor, count), info

    return kernel


def _check_average_from(average_from) -> None:
    if isinstance(average_from, bool) or not isinstance(average_from, int) or average_from < 0:
        raise ValueError(f"average_from: must be an integer >= 0, got {average_from!r}.")


def _check_l2(l2) -> None:
    try:
        ok = math.isfinite(float(l2)) and float(l2) >= 0
    except (TypeError, ValueError) as err:
        raise TypeError(f"l2: expected a number, got {l2!r}.") from err
    if not ok:
        raise ValueError(f"l2: must be finite and >= 0, got {l2}.")


def _check_sampler(sampler: Callable) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    if not callable(sampler):
        raise TypeError(f"sampler: expected a callable rng_key -> (x, y), got {sampler!r}.")
    try:
        batch = jax.eval_shape(sampler, jax.random.key(0))
    except Exception as err:
        raise ValueError(f"sampler: calling it on a PRNG key failed: {err}") from err
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise ValueError(f"sampler: must return a pair (x, y), got {batch}.")
    x, y = batch
    if len(y.shape) != 1 or not jnp.issubdtype(y.dtype, jnp.floating):
        raise ValueError(f"sampler: y must be a floating (b,) array, got {y.dtype}{list(y.shape)}.")
    x_leaves = jax.tree.leaves(x)
    if not x_leaves or any(leaf.shape[:1] != y.shape for leaf in x_leaves):
        raise ValueError(f"sampler: x must have the leading batch axis {y.shape} of y.")
    return x, y


def as_top_level_api(
    apply_fn: Callable,
    sampler: Callable,
    step_size: ScalarOrSchedule,
    l2: float = 0.0,
    *,
    average_from: int = 0,
    divergence_threshold: float = 1e6,
) -> SamplingAlgorithm:
    """Averaged one-pass SGD on the squared loss with L2 toward the initialisation.

    Parameters
    ----------
    apply_fn
        The model ``apply_fn(params, x) -> (b,)`` predictions, e.g.
        :meth:`~mflangevin.models.NTKNetwork.apply`.
    sampler
        ``sampler(rng_key) -> (x, y)``: a fresh minibatch (``y`` of shape ``(b,)``; ``b = 1``
        is one-pass SGD proper), drawn on device from the step key.
    step_size
        η > 0, or a schedule ``count -> η``. The theory takes it constant and of order one.
    l2
        λ ≥ 0, the weight of ``(λ/2)‖Θ − Θ_0‖²``; the rate theory takes ``λ ≍ T^{−β/(2rβ+1)}``.
    average_from, divergence_threshold
        See :func:`build_kernel`.

    Returns
    -------
    A ``blackjax.base.SamplingAlgorithm``: ``init(position, rng_key=None)`` and
    ``step(rng_key, state) -> (state, info)``; ``state.average`` is ``Θ̄_t``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import mflangevin
    >>> from mflangevin.models import NTKNetwork
    >>> net = NTKNetwork("erf")
    >>> def sampler(key):
    ...     x = jax.random.normal(key, (1, 2))
    ...     return x, jnp.sin(x[:, 0])
    >>> algorithm = mflangevin.asgd(net.apply, sampler, step_size=1.0, l2=1e-3)
    >>> state = algorithm.init(net.init_params(jax.random.key(0), width=32, input_dim=2))
    >>> state, info = jax.jit(algorithm.step)(jax.random.key(1), state)
    >>> int(state.count), bool(info.is_divergent)
    (1, False)
    """
    if not callable(apply_fn):
        raise TypeError(
            f"apply_fn: expected a callable (params, x) -> predictions, got {apply_fn!r}."
        )
    x_shape, y_shape = _check_sampler(sampler)
    check_positive("step_size", step_size)
    _check_l2(l2)
    kernel = build_kernel(average_from, divergence_threshold)

    def init_fn(position: ArrayTree, rng_key: PRNGKey | None = None) -> ASGDState:
        _check_position(position)
        try:
            out = jax.eval_shape(apply_fn, position, x_shape)
        except Exception as err:
            raise ValueError(f"position: the parameters do not fit apply_fn: {err}") from err
        if out.shape != y_shape.shape:
            raise ValueError(
                f"apply_fn: predictions of shape {out.shape} do not match y {y_shape.shape}."
            )
        return init(position, rng_key)

    def step_fn(rng_key: PRNGKey, state: ASGDState) -> tuple[ASGDState, ASGDInfo]:
        batch = sampler(rng_key)
        return kernel(state, batch, apply_fn, schedule_value(step_size, state.count), l2)

    return SamplingAlgorithm(init_fn, step_fn)
