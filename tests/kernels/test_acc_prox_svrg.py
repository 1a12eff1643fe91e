"""Acc-Prox-SVRG: one stage against a hand-written loop, the estimator's law, convergence,
compilation, determinism and bad input."""

import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mflangevin
from mflangevin import keys
from mflangevin.kernels import acc_prox_svrg, data
from mflangevin.models import LinearRegressor
from mflangevin.proximal import CompositeObjective, ElasticNet

N, P = 40, 3


def value_and_grad(x, batch):
    """Least squares ``(1/2)·mean (⟨a_i, x⟩ − y_i)²``."""
    A, y = batch
    residual = A @ x - y
    return 0.5 * jnp.mean(residual**2), residual @ A / y.shape[0]


def problem(dtype=jnp.float32, l1=0.05, l2=0.1, n=N):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n, P))
    y = A @ np.array([1.0, -1.0, 0.0]) + 0.1 * rng.normal(size=n)
    return CompositeObjective(
        value_and_grad, (jnp.asarray(A, dtype), jnp.asarray(y, dtype)), ElasticNet(l1, l2)
    )


def reference_solution(objective, iterations=20_000):
    """Full-batch proximal gradient in float64, run to machine precision."""
    A, y = (np.asarray(a, np.float64) for a in objective.data)
    l1, l2 = objective.penalty.l1, objective.penalty.l2
    eta = 1 / np.linalg.eigvalsh(A.T @ A / len(y)).max()
    x = np.zeros(P)
    for _ in range(iterations):
        v = x - eta * (A.T @ (A @ x - y) / len(y))
        x = np.sign(v) * np.maximum(np.abs(v) - eta * l1, 0) / (1 + eta * l2)
    return x


@pytest.mark.parametrize("momentum,output", [(0.6, "last"), (0.0, "average"), ("adaptive", "last")])
def test_one_stage_equals_the_hand_written_loop(momentum, output):
    """Constant momentum, Prox-SVRG, and Nesterov's schedule with its restarts (m = 40 steps, in
    which the restart test fires)."""
    with jax.enable_x64(True):
        objective = problem(jnp.float64)
        adaptive = momentum == "adaptive"
        b, m, eta = 5, 40 if adaptive else 4, 0.2
        kernel = jax.jit(acc_prox_svrg.build_kernel(b, output, adaptive=adaptive))
        state = acc_prox_svrg.init(jnp.array([0.3, -0.2, 0.1]))
        key = jax.random.key(7)
        new_state, info = kernel(key, state, objective, eta, 0.0 if adaptive else momentum, m)

        A, y = (np.asarray(a) for a in objective.data)
        l1, l2 = 0.05, 0.1
        snapshot = np.asarray(state.position)

        def grad(x, rows):
            return A[rows].T @ (A[rows] @ x - y[rows]) / len(rows)

        full = grad(snapshot, np.arange(N))
        previous, current, total = snapshot, snapshot, np.zeros(P)
        source, batches = data.minibatch(b), state.batches
        draw_rows = jax.jit(lambda k, batches: source.draw(k, objective, batches)[::-1])
        t, restarts = 1.0, 0
        for k in range(m):
            batches, draw = draw_rows(keys.inner_step_key(key, k), batches)
            rows = np.asarray(draw.indices)
            t_next = (1 + np.sqrt(1 + 4 * t**2)) / 2
            beta = (t - 1) / t_next if adaptive else momentum
            extrapolated = current + beta * (current - previous)
            v = grad(extrapolated, rows) - grad(snapshot, rows) + full
            step = extrapolated - eta * v
            previous = current
            current = np.sign(step) * np.maximum(np.abs(step) - eta * l1, 0) / (1 + eta * l2)
            if adaptive and (extrapolated - current) @ (current - previous) > 0:
                t_next, restarts = 1.0, restarts + 1
            t = t_next
            total += current
        assert restarts > 0 or not adaptive
        expected = current if output == "last" else total / m
        np.testing.assert_allclose(np.asarray(new_state.position), expected, rtol=1e-12)
        primal = 0.5 * np.mean((A @ snapshot - y) ** 2) + l1 * np.abs(snapshot).sum()
        primal += 0.5 * l2 * np.sum(snapshot**2)
        assert float(info.objective) == pytest.approx(primal, rel=1e-12)
        assert int(info.num_gradient_evaluations) == N + 2 * b * m
        assert int(info.stage) == 1 and not bool(info.is_divergent)


@pytest.mark.parametrize("b", [1, 13, 40])
def test_estimator_is_unbiased_with_variance_n_minus_b_over_b_n_minus_1(b):
    """Over uniform ``b``-subsets drawn by the data path, the mean of ``v`` is ``∇F(y)`` and its
    total variance is ``(n − b) / (b (n − 1)) σ²`` with ``σ²`` the variance of one sample's
    ``∇f_i(y) − ∇f_i(x̃)``; tolerances are 5 Monte-Carlo standard errors."""
    with jax.enable_x64(True):
        objective = problem(jnp.float64)
        y, snapshot = jnp.array([1.0, 0.5, -0.5]), jnp.array([-0.5, 0.0, 1.0])
        _, snapshot_grad = objective.smooth(snapshot)
        _, exact = objective.smooth(y)
        source = data.minibatch(b)

        def one(key):
            draw, _ = source.draw(key, objective, source.init(objective))  # a fresh permutation
            return acc_prox_svrg.variance_reduced_gradient(
                draw.objective, y, snapshot, snapshot_grad
            )

        draws = 10_000
        v = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(b), draws)))
        A, t = (np.asarray(a) for a in objective.data)
        y, snapshot = np.asarray(y), np.asarray(snapshot)
        per_sample = A * ((A @ y - t) - (A @ snapshot - t))[:, None]  # ∇f_i(y) − ∇f_i(x̃)
        sigma2 = np.mean(np.sum((per_sample - per_sample.mean(0)) ** 2, axis=1))
        factor = (N - b) / (b * (N - 1))

        errors = v - np.asarray(exact)
        coordinate_var = factor * np.var(per_sample, axis=0)
        assert np.all(np.abs(errors.mean(0)) <= 5 * np.sqrt(coordinate_var / draws) + 1e-12)
        squared = np.sum(errors**2, axis=1)
        if b == N:
            assert squared.max() < 1e-24
            return
        standard_error = squared.std() / np.sqrt(draws)
        assert abs(squared.mean() - factor * sigma2) <= 5 * standard_error


def test_converges_to_the_solution():
    with jax.enable_x64(True):
        objective = problem(jnp.float64)
        expected = reference_solution(objective)
        # Acc-Prox-SVRG, and Prox-SVRG with Xiao and Zhang's averaged output.
        for momentum, output in ((None, "last"), (0.0, "average")):
            algorithm = mflangevin.acc_prox_svrg(
                objective, 0.1, 8, 10, momentum=momentum, output=output
            )
            state = algorithm.init(jnp.zeros(P))
            for key in jax.random.split(jax.random.key(0), 150):
                state, info = algorithm.step(key, state)
            np.testing.assert_allclose(state.position, expected, atol=1e-7)
        assert float(info.objective) == pytest.approx(float(objective.value(expected)), abs=1e-12)


ETAS_L2S_AND_INNER_STEPS = [(0.1, 0.2, 5), (0.05, 0.3, 3), (0.2, 0.4, 8)]


def test_compiles_once_for_all_steps_step_sizes_penalties_and_inner_steps(compilations):
    objective = problem()
    algorithm = mflangevin.acc_prox_svrg(objective, 0.1, 4, 5)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(jnp.zeros(P))
    for key in jax.random.split(jax.random.key(0), 5):
        state, info = step(key, state)
    assert int(info.stage) == 5

    # The top-level step: one compilation shared by other η, β, penalty strengths and m (a
    # regularisation path of the linear models changes m with λ₂).
    others = [
        mflangevin.acc_prox_svrg(problem(l2=l2), eta, 4, m)
        for eta, l2, m in ETAS_L2S_AND_INNER_STEPS
    ]
    states = [other.init(jnp.zeros(P)) for other in others]
    compilations.clear()
    for other, state in zip(others, states, strict=True):
        other.step(jax.random.key(1), state)
    assert compilations.count("jit(_step)") <= 1


def test_same_key_same_result_and_pytree_parameters():
    def tree_value_and_grad(x, batch):
        value, grad = value_and_grad(x["w"], batch)
        return value, {"w": grad}

    objective = problem()
    tree_objective = CompositeObjective(tree_value_and_grad, objective.data, objective.penalty)
    runs = []
    for _ in range(2):
        algorithm = mflangevin.acc_prox_svrg(tree_objective, 0.1, 4, 5)
        state = algorithm.init({"w": jnp.zeros(P)})
        for key in jax.random.split(jax.random.key(3), 6):
            state, _ = algorithm.step(key, state)
        runs.append(np.asarray(state.position["w"]))
    np.testing.assert_array_equal(runs[0], runs[1])
    # A flat array gives the same iterates as the pytree, and BlackJAX's driver runs it.
    flat = mflangevin.acc_prox_svrg(objective, 0.1, 4, 5)
    state = flat.init(jnp.zeros(P))
    for key in jax.random.split(jax.random.key(3), 6):
        state, _ = flat.step(key, state)
    np.testing.assert_allclose(state.position, runs[0], rtol=1e-6)
    state, _ = blackjax.util.run_inference_algorithm(
        jax.random.key(3), flat, 6, initial_position=jnp.zeros(P)
    )
    assert int(state.stage) == 6


def test_divergence_is_reported_and_the_position_kept():
    algorithm = mflangevin.acc_prox_svrg(problem(), 50.0, 4, 10, momentum=0.9)
    state = algorithm.init(jnp.ones(P))
    for key in jax.random.split(jax.random.key(0), 3):
        new_state, info = algorithm.step(key, state)
        if bool(info.is_divergent):
            break
        state = new_state
    assert bool(info.is_divergent)
    np.testing.assert_array_equal(new_state.position, state.position)


def test_default_momentum():
    assert acc_prox_svrg.default_momentum(0.0, 1.0) == 1.0
    assert acc_prox_svrg.default_momentum(4.0, 1.0) == 0.0
    eta, mu = 0.1, 0.1
    expected = (1 - np.sqrt(mu * eta)) / (1 + np.sqrt(mu * eta))
    assert acc_prox_svrg.default_momentum(mu, eta) == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"batch_size": 0}, ValueError, "batch_size: must be a positive integer"),
        ({"batch_size": N + 1}, ValueError, "batch_size: must be at most"),
        ({"batch_size": 2.5}, TypeError, "batch_size: expected an integer"),
        ({"inner_steps": 0}, ValueError, "inner_steps: must be a positive integer"),
        ({"step_size": 0.0}, ValueError, "step_size: must be positive and finite"),
        ({"step_size": float("nan")}, ValueError, "step_size: must be positive and finite"),
        ({"step_size": float("inf")}, ValueError, "step_size: must be positive and finite"),
        ({"step_size": lambda k: 0.1}, TypeError, "step_size: expected a number"),
        ({"momentum": 1.0}, ValueError, "momentum: expected None or a number in"),
        ({"momentum": -0.1}, ValueError, "momentum: expected None or a number in"),
        ({"momentum": True}, ValueError, "momentum: expected None or a number in"),
        ({"step_size": None, "momentum": 0.5}, TypeError, "step_size: expected a number"),
        ({"divergence_factor": 1.0}, ValueError, "divergence_factor: must be a number > 1"),
        ({"strong_convexity": -1.0}, ValueError, "strong_convexity: must be positive"),
        ({"output": "best"}, ValueError, "output: expected one of"),
        ({"objective": "f"}, TypeError, "objective: expected a mflangevin.proximal"),
    ],
)
def test_bad_arguments_are_refused_before_compiling(kwargs, error, match):
    arguments = {"objective": problem(), "step_size": 0.1, "batch_size": 4, "inner_steps": 5}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        mflangevin.acc_prox_svrg(**arguments)


def test_adaptive_momentum_converges_without_strong_convexity():
    """Pure L1 (μ = 0): Nesterov's schedule with restarts reaches the solution to round-off."""
    with jax.enable_x64(True):
        objective = problem(jnp.float64, l2=0.0)
        algorithm = mflangevin.acc_prox_svrg(objective, 0.05, 4, 40, momentum="adaptive")
        state = algorithm.init(jnp.zeros(P))
        for key in jax.random.split(jax.random.key(0), 40):
            state, _ = algorithm.step(key, state)
        np.testing.assert_allclose(state.position, reference_solution(objective), atol=1e-9)
    with pytest.raises(ValueError, match="momentum: expected one of"):
        mflangevin.acc_prox_svrg(objective, 0.05, 4, 40, momentum="fast")


def test_default_momentum_needs_strong_convexity():
    with pytest.raises(ValueError, match="momentum: the default momentum needs"):
        mflangevin.acc_prox_svrg(problem(l2=0.0), 0.1, 4, 5)
    mflangevin.acc_prox_svrg(problem(l2=0.0), 0.1, 4, 5, strong_convexity=0.01)
    # An unpenalised intercept makes μ = 0: the message says what to give.
    objective = LinearRegressor(l2=0.1).objective(np.eye(4), np.ones(4))
    with pytest.raises(ValueError, match="unpenalised intercept, makes it 0"):
        mflangevin.acc_prox_svrg(objective, 0.1, 2, 2)


@pytest.mark.parametrize("momentum", [np.float32(0.5), jnp.asarray(0.5), np.int64(0)])
def test_momentum_may_be_a_numpy_or_jax_scalar(momentum):
    algorithm = mflangevin.acc_prox_svrg(problem(), 0.1, 4, 5, momentum=momentum)
    state, _ = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros(P)))
    assert np.all(np.isfinite(state.position))


def test_a_stage_whose_objective_grows_is_flagged():
    """A step size 10⁴ times too large: the objective climbs from one stage to the next while
    every coordinate stays below the divergence threshold; the growth test flags it (the old
    kernel flagged nothing)."""
    objective = problem(l1=0.0, l2=0.01)
    algorithm = mflangevin.acc_prox_svrg(objective, 20.0, 4, 1, momentum=0.0)
    state = algorithm.init(jnp.zeros(P))
    values, flags = [], []
    for k in range(3):
        state, info = algorithm.step(jax.random.key(k), state)
        values.append(float(info.objective))
        flags.append(bool(info.is_divergent))
    assert values[1] > 10 * values[0] and max(np.abs(state.position)) < 1e6
    assert flags == [False, True, True]
    switched_off = mflangevin.acc_prox_svrg(
        objective, 20.0, 4, 1, momentum=0.0, divergence_factor=float("inf")
    )
    state = switched_off.init(jnp.zeros(P))
    for k in range(3):
        state, info = switched_off.step(jax.random.key(k), state)
        assert not bool(info.is_divergent)


def test_bad_positions_are_refused():
    algorithm = mflangevin.acc_prox_svrg(problem(), 0.1, 4, 5)
    with pytest.raises(ValueError, match="position: the parameters do not fit|position: the obj"):
        algorithm.init(jnp.zeros(P + 1))
    with pytest.raises(ValueError, match="position: has NaN"):
        algorithm.init(jnp.array([0.0, jnp.nan, 0.0]))
    with pytest.raises(TypeError, match="position: must be floating point"):
        algorithm.init(jnp.zeros(P, jnp.int32))
