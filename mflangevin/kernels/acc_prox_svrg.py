"""Accelerated proximal SVRG (Acc-Prox-SVRG) for regularised finite sums, docs/theory/convex-erm.md.

Minimises ``P(x) = F(x) + R(x)``, ``F(x) = (1/n) Σ_i f_i(x)`` with every ``f_i`` convex and smooth
and ``R`` convex with a cheap proximal map (a :class:`~mflangevin.proximal.CompositeObjective`).
One step of the kernel is one outer stage ``s``::

    x̃ = x̃_{s−1},  ṽ = ∇F(x̃)                          (one full pass: n gradients)
    x_0 = y_1 = x̃
    for k = 1..m:  I_k ⊂ [n], |I_k| = b, without replacement
        v_k     = ∇f_{I_k}(y_k) − ∇f_{I_k}(x̃) + ṽ       (2b gradients, one batched product)
        x_k     = prox_{ηR}(y_k − η v_k)
        y_{k+1} = x_k + β (x_k − x_{k−1})
    x̃_s = x_m  (output "last")  or  (1/m) Σ_k x_k  (output "average")

``β = 0`` is minibatch Prox-SVRG (Xiao & Zhang 2014, who output the average); ``"adaptive"``
momentum replaces the constant ``β`` by Nesterov's schedule with gradient-mapping restarts
(O'Donoghue & Candès 2015), which needs no strong convexity. The default
momentum is ``β = (1 − √(μη)) / (1 + √(μη))`` for a ``μ``-strongly convex ``P``; ``η ≤ 1/L`` is
the caller's choice (a parameter: the papers' constants are not confirmed here). A stage costs
``n + 2bm`` per-sample gradients; an inner step ``O(b)`` of them, never ``O(n)``.

Minibatches come from :func:`mflangevin.kernels.data.minibatch` (epochs of disjoint batches of a
keyed permutation, ``O(b)`` each); inner step ``k`` draws with
:func:`mflangevin.keys.inner_step_key` of the stage key.

References: Nitanda, *Stochastic Proximal Gradient Descent with Acceleration Techniques*, NeurIPS
2014; Nitanda, *Accelerated Stochastic Gradient Descent for Minimizing Finite Sums*, AISTATS 2016;
Xiao, Zhang, *A Proximal Stochastic Gradient Method with Progressive Variance Reduction*, SIAM J.
Optim. 2014; O'Donoghue, Candès, *Adaptive Restart for Accelerated Gradient Schemes*, Found.
Comput. Math. 2015.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

from mflangevin import keys, proximal
from mflangevin._checks import (
    all_finite,
    check_choice,
    check_count,
    check_factor,
    check_positive,
)
from mflangevin.kernels import data
from mflangevin.kernels.data import MinibatchState
from mflangevin.kernels.diffusions import refuse_if_divergent
from mflangevin.proximal import CompositeObjective
from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = [
    "AccProxSVRGState",
    "AccProxSVRGInfo",
    "default_momentum",
    "variance_reduced_gradient",
    "init",
    "build_kernel",
    "as_top_level_api",
]

OUTPUTS = ("last", "average")


class AccProxSVRGState(NamedTuple):
    """State after ``s = stage`` outer stages: the stage output ``x̃_s``, the count of per-sample
    gradients evaluated so far, where the minibatch stream stands and the smallest objective
    ``P(x̃)`` seen at the start of a stage (``+inf`` before the first).

    ``num_gradient_evaluations`` is an ``int32``, enough for ``2 × 10⁹`` evaluations.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> state = init({"coef": jnp.zeros(3)})
    >>> state.position["coef"].shape, int(state.stage), int(state.num_gradient_evaluations)
    ((3,), 0, 0)
    """

    position: ArrayTree
    stage: Array
    num_gradient_evaluations: Array
    batches: MinibatchState
    best_objective: Array


class AccProxSVRGInfo(NamedTuple):
    """What one stage saw.

    ``objective`` is ``P(x̃)`` at the snapshot the stage started from, exact (it comes free with
    the full gradient ``ṽ``); ``num_gradient_evaluations`` counts the per-sample gradients up to
    and including this stage; ``stage`` is ``s``. ``is_divergent`` is true when the stage output
    was not finite or reached ``divergence_threshold``, in which case the stage was refused and
    the position kept; and when ``objective`` is not finite or exceeds the best earlier one by
    more than ``(divergence_factor − 1) · |best|``: the previous stage moved uphill, a step
    size too large (this flag does not change the trajectory).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin.proximal import CompositeObjective, ElasticNet
    >>> def value_and_grad(x, y):
    ...     return 0.5 * jnp.mean((x - y) ** 2), jnp.mean(x - y, keepdims=True)
    >>> objective = CompositeObjective(value_and_grad, jnp.ones(8), ElasticNet(l2=1.0))
    >>> kernel = build_kernel(batch_size=2)
    >>> _, info = kernel(jax.random.key(0), init(jnp.zeros(1)), objective, 0.5, 0.0, 4)
    >>> float(info.objective), int(info.num_gradient_evaluations), int(info.stage)
    (0.5, 24, 1)
    """

    objective: Array
    num_gradient_evaluations: Array
    stage: Array
    is_divergent: Array


def default_momentum(strong_convexity: float, step_size: float) -> float:
    """``β = (1 − √(μη)) / (1 + √(μη))``, the momentum for a ``μ``-strongly convex objective.

    Zero when ``μη ≥ 1`` (a step that large needs no momentum).

    Examples
    --------
    >>> round(default_momentum(0.01, 1.0), 4)
    0.8182
    """
    root = math.sqrt(strong_convexity * step_size)
    return max(0.0, (1 - root) / (1 + root))


def init(position: ArrayTree, rng_key: PRNGKey | None = None) -> AccProxSVRGState:
    """Start from ``x̃_0 = position`` (any pytree of floating-point arrays).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> int(init(jnp.zeros(4)).stage)
    0
    """
    del rng_key
    _check_position(position)
    position = jax.tree.map(jnp.asarray, position)
    zero = jnp.zeros((), jnp.int32)
    best = jnp.full((), jnp.inf, jnp.result_type(*jax.tree.leaves(position)))
    return AccProxSVRGState(position, zero, zero, MinibatchState.start(), best)


def check_momentum(momentum) -> float | None:
    """``None``, or a real number ``β ∈ [0, 1)`` (a Python, NumPy or JAX scalar); returns it as a
    ``float``.

    Examples
    --------
    >>> import numpy as np
    >>> check_momentum(np.float32(0.5)), check_momentum(None)
    (0.5, None)
    """
    if momentum is None:
        return None
    array = np.asarray(momentum)
    if isinstance(momentum, bool) or array.shape != () or array.dtype.kind not in "iuf":
        raise ValueError(f"momentum: expected None or a number in [0, 1), got {momentum!r}.")
    if not 0 <= float(array) < 1:
        raise ValueError(f"momentum: expected None or a number in [0, 1), got {momentum!r}.")
    return float(array)


def _check_position(position: ArrayTree) -> None:
    leaves = jax.tree.leaves(position)
    if not leaves:
        raise ValueError("position: the parameter pytree has no arrays.")
    for leaf in leaves:
        if isinstance(leaf, bool | int | float | complex):
            raise TypeError("position: leaves must be arrays; convert them with jnp.asarray.")
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"position: must be floating point, got {jnp.result_type(leaf)}.")
        if not isinstance(leaf, jax.core.Tracer) and not all_finite(leaf):
            raise ValueError("position: has NaN or infinite values.")


def variance_reduced_gradient(
    batch: CompositeObjective, y: ArrayTree, snapshot: ArrayTree, snapshot_grad: ArrayTree
) -> ArrayTree:
    """``v = ∇f_I(y) − ∇f_I(x̃) + ṽ`` on the minibatch objective ``batch`` (rows ``I``).

    Unbiased for ``∇F(y)`` when ``I`` is a uniform ``b``-subset, with covariance
    ``(n − b) / (b (n − 1))`` times that of one sample's ``∇f_i(y) − ∇f_i(x̃)``. The gradients at
    ``y`` and ``x̃`` come from one call of ``value_and_grad`` batched over the two points (one
    matrix product for a linear model).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from mflangevin.proximal import CompositeObjective
    >>> def value_and_grad(x, y):
    ...     return 0.5 * jnp.mean((x - y) ** 2), jnp.mean(x - y, keepdims=True)
    >>> objective = CompositeObjective(value_and_grad, jnp.arange(4.0))
    >>> snapshot = jnp.zeros(1)
    >>> _, full = objective.smooth(snapshot)
    >>> batch = objective.subsample(jnp.array([0, 3]))
    >>> variance_reduced_gradient(batch, jnp.ones(1), snapshot, full)  # ∇F(y) = y − 1.5
    Array([-0.5], dtype=float32)
    """
    stacked = jax.tree.map(lambda u, v: jnp.stack([u, v]), y, snapshot)
    _, grads = jax.vmap(batch.value_and_grad, in_axes=(0, None))(stacked, batch.data)
    return jax.tree.map(lambda g, g0: g[0] - g[1] + g0, grads, snapshot_grad)


def _vdot(a: ArrayTree, b: ArrayTree) -> Array:
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def build_kernel(
    batch_size: int,
    output: str = "last",
    divergence_threshold: float = 1e6,
    divergence_factor: float = 10.0,
    adaptive: bool = False,
) -> Callable:
    """Build the low-level kernel: one outer stage.

    Parameters
    ----------
    batch_size
        ``b``, with ``1 ≤ b ≤ n``.
    output
        ``"last"`` (``x̃_s = x_m``) or ``"average"`` (``(1/m) Σ_k x_k``, Prox-SVRG's output).
    divergence_threshold
        A stage output with a coordinate of this magnitude, or a non-finite one, is refused.
    divergence_factor
        A stage whose starting objective exceeds the best earlier one by more than
        ``(divergence_factor − 1) · |best|`` is flagged (``inf`` switches the test off).
    adaptive
        Nesterov's momentum schedule ``β_k = (t_k − 1)/t_{k+1}``, ``t_{k+1} = (1 + √(1 +
        4t_k²))/2``, restarted (``t = 1``) whenever the step opposes the momentum,
        ``⟨y_k − x_k, x_k − x_{k−1}⟩ > 0`` (O'Donoghue & Candès 2015), instead of the constant
        ``momentum``: acceleration without knowing ``μ``, for problems that are not (or barely)
        strongly convex.

    Returns
    -------
    ``kernel(rng_key, state, objective, step_size, momentum, inner_steps) -> (state, info)``,
    for a :class:`~mflangevin.proximal.CompositeObjective` and the values ``η``, ``β`` and
    ``m ≥ 1``, the inner steps of the stage (``n // b`` walks one epoch of minibatches). All
    three may be traced: one compiled stage serves every value.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mflangevin.proximal import CompositeObjective, ElasticNet
    >>> A, y = jnp.eye(4), jnp.arange(4.0)
    >>> def value_and_grad(x, batch):
    ...     r = batch[0] @ x - batch[1]
    ...     return 0.5 * jnp.mean(r**2), batch[0].T @ r / r.shape[0]
    >>> objective = CompositeObjective(value_and_grad, (A, y), ElasticNet(l2=0.1))
    >>> kernel = jax.jit(build_kernel(batch_size=2))
    >>> state = init(jnp.zeros(4))
    >>> for key in jax.random.split(jax.random.key(0), 200):
    ...     state, info = kernel(key, state, objective, 1.0, 0.5, 2)
    >>> [round(float(v), 3) for v in state.position]  # y_j / (1 + 4 λ₂)
    [0.0, 0.714, 1.429, 2.143]
    """
    source = data.minibatch(batch_size)
    check_choice("output", output, OUTPUTS)
    check_positive("divergence_threshold", divergence_threshold)
    check_factor(divergence_factor)
    adaptive = bool(adaptive)

    def kernel(
        rng_key: PRNGKey,
        state: AccProxSVRGState,
        objective: CompositeObjective,
        step_size: Array,
        momentum: Array,
        inner_steps: Array,
    ) -> tuple[AccProxSVRGState, AccProxSVRGInfo]:
        snapshot = state.position
        dtype = jnp.result_type(*jax.tree.leaves(snapshot))
        eta, beta = jnp.asarray(step_size, dtype), jnp.asarray(momentum, dtype)
        m = jnp.asarray(inner_steps, state.num_gradient_evaluations.dtype)
        smooth_value, snapshot_grad = objective.smooth(snapshot)
        value = smooth_value + proximal.value(objective.penalty, snapshot)

        def inner(k, carry):
            previous, current, total, batches, t = carry
            t_next = (1 + jnp.sqrt(1 + 4 * t**2)) / 2
            b_k = (t - 1) / t_next if adaptive else beta
            y = jax.tree.map(lambda x, xp: x + b_k * (x - xp), current, previous)
            draw, batches = source.draw(keys.inner_step_key(rng_key, k), objective, batches)
            v = variance_reduced_gradient(draw.objective, y, snapshot, snapshot_grad)
            x = proximal.prox(objective.penalty, jax.tree.map(lambda a, d: a - eta * d, y, v), eta)
            if adaptive:  # restart when the step opposes the momentum: ⟨y − x, x − x_prev⟩ > 0
                opposed = _vdot(
                    jax.tree.map(jnp.subtract, y, x), jax.tree.map(jnp.subtract, x, current)
                )
                t_next = jnp.where(opposed > 0, jnp.ones_like(t), t_next)
            return current, x, jax.tree.map(jnp.add, total, x), batches, t_next

        zeros = jax.tree.map(jnp.zeros_like, snapshot)
        _, last, total, batches, _ = jax.lax.fori_loop(
            0, m, inner, (snapshot, snapshot, zeros, state.batches, jnp.ones((), dtype))
        )
        proposal = last if output == "last" else jax.tree.map(lambda t: t / m.astype(dtype), total)

        position, is_divergent = refuse_if_divergent(proposal, snapshot, divergence_threshold)
        best = state.best_objective.astype(value.dtype)
        grew = value - best > (divergence_factor - 1) * jnp.abs(best)
        is_divergent |= ~jnp.isfinite(value) | (jnp.isfinite(best) & grew)
        n = objective.num_samples
        evaluations = state.num_gradient_evaluations + n + 2 * batch_size * m
        stage = state.stage + 1
        best = jnp.minimum(best, value).astype(state.best_objective.dtype)
        new_state = AccProxSVRGState(position, stage, evaluations, batches, best)
        return new_state, AccProxSVRGInfo(value, evaluations, stage, is_divergent)

    return kernel


@functools.partial(jax.jit, static_argnums=0)
def _step(settings, rng_key, state, held, step_size, momentum, inner_steps):
    """One stage of :func:`as_top_level_api`, compiled once per settings and data shapes: the
    held data, the penalty, ``η``, ``β`` and ``m`` are arguments."""
    kernel = build_kernel(*data.thaw(settings))
    return kernel(rng_key, state, held, step_size, momentum, inner_steps)


def _check_objective(objective, position: ArrayTree) -> None:
    """The parameters fit the objective: ``value_and_grad`` gives a scalar and a gradient of the
    parameters' shapes, and the penalty's proximal map keeps them (traced, nothing computed)."""
    shapes = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), position
    )
    try:
        out, grad = jax.eval_shape(objective.smooth, shapes)
        proxed = jax.eval_shape(lambda x: proximal.prox(objective.penalty, x, 1.0), shapes)
    except (TypeError, ValueError, IndexError, KeyError) as err:
        raise ValueError(f"position: the parameters do not fit the objective: {err}") from err
    if out.shape != ():
        raise ValueError(f"objective: value_and_grad must give a scalar value, got {out.shape}.")
    expected = jax.tree.map(lambda s: s.shape, shapes)
    for what, tree in (("gradient", grad), ("proximal map", proxed)):
        if jax.tree.map(lambda s: s.shape, tree) != expected:
            raise ValueError(
                f"position: the objective's {what} has shapes {jax.tree.map(jnp.shape, tree)}, "
                f"the parameters {expected}."
            )


def as_top_level_api(
    objective: CompositeObjective,
    step_size: float,
    batch_size: int,
    inner_steps: int,
    *,
    momentum: float | None = None,
    strong_convexity: float | None = None,
    output: str = "last",
    divergence_threshold: float = 1e6,
    divergence_factor: float = 10.0,
) -> SamplingAlgorithm:
    """Accelerated proximal SVRG; ``momentum=0`` is minibatch Prox-SVRG.

    Parameters
    ----------
    objective
        A :class:`~mflangevin.proximal.CompositeObjective` ``F + R`` (for linear models,
        :meth:`mflangevin.models.LinearClassifier.objective`).
    step_size
        ``η > 0``; ``η ≤ 1/L`` for ``L``-smooth ``f_i``.
    batch_size
        ``b``, with ``1 ≤ b ≤ n``.
    inner_steps
        ``m ≥ 1``; ``n // b`` makes a stage one epoch of minibatches (``3n`` gradients).
    momentum
        ``β ∈ [0, 1)``; default :func:`default_momentum` of ``μ`` and ``η``; ``"adaptive"``:
        Nesterov's schedule with restarts (see :func:`build_kernel`), which needs no ``μ``.
    strong_convexity
        ``μ > 0`` for the default momentum; default: the penalty's modulus (``λ₂`` of an
        :class:`~mflangevin.proximal.ElasticNet`), which must then be positive.
    output
        ``"last"`` or ``"average"``, see :func:`build_kernel`.
    divergence_threshold, divergence_factor
        See :func:`build_kernel`.

    Returns
    -------
    A ``blackjax.base.SamplingAlgorithm``: ``init(position, rng_key=None)`` and
    ``step(rng_key, state) -> (state, info)``, one outer stage a step. The step is compiled once
    for all algorithms with equal ``batch_size``, ``output``, threshold and data shapes (the
    data, held without a copy, see :func:`mflangevin.kernels.data.hold`, ``η``, ``β``, ``m``
    and the penalty are arguments).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, mflangevin
    >>> from mflangevin.proximal import CompositeObjective, ElasticNet
    >>> def value_and_grad(x, batch):
    ...     r = batch[0] @ x - batch[1]
    ...     return 0.5 * jnp.mean(r**2), batch[0].T @ r / r.shape[0]
    >>> A = jax.random.normal(jax.random.key(0), (64, 3))
    >>> objective = CompositeObjective(value_and_grad, (A, A @ jnp.ones(3)), ElasticNet(l2=0.01))
    >>> algorithm = mflangevin.acc_prox_svrg(objective, 0.1, batch_size=8, inner_steps=8)
    >>> state = algorithm.init(jnp.zeros(3))
    >>> for key in jax.random.split(jax.random.key(1), 30):
    ...     state, info = algorithm.step(key, state)
    >>> [round(float(v), 2) for v in state.position], int(info.num_gradient_evaluations)
    ([0.99, 0.99, 0.99], 5760)
    """
    if not isinstance(objective, CompositeObjective):
        raise TypeError(
            "objective: expected a mflangevin.proximal.CompositeObjective (F + R), got "
            f"{type(objective).__name__}."
        )
    n = objective.num_samples
    batch_size = check_count("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(
            f"batch_size: must be at most the number of samples n = {n}, got {batch_size}."
        )
    inner_steps = check_count("inner_steps", inner_steps)
    if step_size is None:
        raise TypeError("step_size: expected a number η > 0 (η ≤ 1/L), got None.")
    for name, value in (("step_size", step_size), ("strong_convexity", strong_convexity)):
        if callable(value):
            raise TypeError(f"{name}: expected a number, got a callable.")
        if value is not None:
            check_positive(name, value)
    check_choice("output", output, OUTPUTS)
    check_positive("divergence_threshold", divergence_threshold)
    check_factor(divergence_factor)
    adaptive = isinstance(momentum, str)
    if adaptive:
        check_choice("momentum", momentum, ("adaptive",))
        momentum = 0.0
    momentum = check_momentum(momentum)
    if momentum is None:
        mu = (
            proximal.strong_convexity(objective.penalty)
            if strong_convexity is None
            else strong_convexity
        )
        if not float(mu) > 0:
            raise ValueError(
                "momentum: the default momentum needs a strongly convex objective, and the "
                f"penalty's modulus is μ = {float(mu):g} (a block without λ₂ > 0, such as an "
                "unpenalised intercept, makes it 0); give strong_convexity=μ (e.g. the λ₂ of "
                "the penalised block) or momentum=β (0 for Prox-SVRG)."
            )
        momentum = default_momentum(float(mu), float(step_size))
    settings = (
        batch_size, output, float(divergence_threshold), float(divergence_factor), adaptive
    )  # fmt: skip

    def start(position: ArrayTree, rng_key: PRNGKey | None) -> AccProxSVRGState:
        state = init(position, rng_key)
        _check_objective(objective, state.position)
        return state

    return data.held_algorithm(
        objective, start, _step, settings, AccProxSVRGState, step_size, momentum, inner_steps
    )
