"""Averaged SGD: exact updates, averaging, the rate's qualitative claims, the BlackJAX contract."""

import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mflangevin
from mflangevin.kernels import asgd
from mflangevin.models import NTKNetwork


def _linear(w, x):
    return x @ w


def _linear_sampler(key):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (2, 3))
    return x, x @ jnp.array([1.0, -2.0, 0.5]) + 0.1 * jax.random.normal(ky, (2,))


def test_two_steps_match_the_hand_written_update():
    kernel = asgd.build_kernel()
    w0 = jnp.array([0.3, -0.1, 0.2])
    state = asgd.init(w0)
    eta, lam = 0.1, 0.5
    w, average = np.asarray(w0, np.float64), np.asarray(w0, np.float64)
    for t, seed in enumerate([1, 2]):
        x, y = _linear_sampler(jax.random.key(seed))
        state, info = kernel(state, (x, y), _linear, eta, lam)
        xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
        residual = xn @ w - yn
        grad = xn.T @ residual / 2 + lam * (w - np.asarray(w0, np.float64))
        np.testing.assert_allclose(info.loss, 0.5 * np.mean(residual**2), rtol=1e-5)
        np.testing.assert_allclose(info.grad_norm, np.linalg.norm(grad), rtol=1e-5)
        w = w - eta * grad
        average = average + (w - average) / (t + 2)
        np.testing.assert_allclose(state.position, w, rtol=1e-5)
        np.testing.assert_allclose(state.average, average, rtol=1e-5)
        np.testing.assert_array_equal(state.initial_position, w0)
    assert int(state.count) == 2


@pytest.mark.parametrize("average_from", [0, 1, 7])
def test_average_equals_the_mean_of_the_iterates(average_from):
    net = NTKNetwork("tanh")

    def sampler(key):
        x = jax.random.normal(key, (1, 2))
        return x, jnp.cos(2 * x[:, 0])

    algorithm = mflangevin.asgd(net.apply, sampler, 0.5, 0.01, average_from=average_from)
    B0 = net.init_params(jax.random.key(0), width=8, input_dim=2)

    def one_step(state, key):
        state, _ = algorithm.step(key, state)
        return state, state.position

    state, iterates = jax.lax.scan(
        one_step, algorithm.init(B0), jax.random.split(jax.random.key(1), 20)
    )
    iterates = jnp.concatenate([B0[None], iterates])  # Θ_0, Θ_1, …, Θ_20
    np.testing.assert_allclose(state.average, iterates[average_from:].mean(0), atol=1e-6)
    np.testing.assert_array_equal(state.position, iterates[-1])


def test_a_float64_average_is_the_mean_of_the_iterates_to_round_off():
    """Under x64, float64 parameters are averaged with float64 weights: 300 steps agree with
    NumPy's mean to 7e-16 (relative to the largest entry; before, the weights were float32:
    2e-10)."""
    with jax.enable_x64(True):
        net = NTKNetwork("tanh")

        def sampler(key):
            x = jax.random.normal(key, (1, 2), jnp.float64)
            return x, jnp.cos(2 * x[:, 0])

        algorithm = mflangevin.asgd(net.apply, sampler, 0.5, 0.01, average_from=3)
        B0 = net.init_params(jax.random.key(0), width=8, input_dim=2).astype(jnp.float64)

        def one_step(state, key):
            state, _ = algorithm.step(key, state)
            return state, state.position

        keys = jax.random.split(jax.random.key(1), 300)
        state, iterates = jax.lax.scan(one_step, algorithm.init(B0), keys)
        iterates = np.concatenate([np.asarray(B0)[None], np.asarray(iterates)])
        expected = iterates[3:].mean(0)
        assert state.average.dtype == jnp.float64
        error = np.max(np.abs(np.asarray(state.average) - expected)) / np.max(np.abs(expected))
        assert error < 1e-14


def test_averaging_beats_the_last_iterate_and_improves_with_T():
    """On a teacher linear in the NTK features, averaged SGD at a constant step converges and
    the last iterate stalls at its noise floor."""
    net = NTKNetwork("erf")
    width, dim, noise, seeds = 64, 3, 0.5, 16
    B0 = net.init_params(jax.random.key(0), width=width, input_dim=dim)
    direction = jax.random.normal(jax.random.key(1), B0.shape)

    def teacher(x):  # ⟨∇_B g_{B0}(x), V⟩: linear in the features ∇_B g_{B0}(x)
        return jax.jvp(lambda B: net.apply(B, x), (B0,), (direction,))[1]

    def sampler(key):
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (1, dim))
        x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
        return x, teacher(x) + noise * jax.random.normal(ky, (1,))

    x_test = jax.vmap(lambda k: sampler(k)[0][0])(jax.random.split(jax.random.key(2), 2000))
    target = teacher(x_test)
    algorithm = mflangevin.asgd(net.apply, sampler, step_size=1.0, l2=0.0)

    def excess_risk(B):
        return jnp.mean((net.apply(B, x_test) - target) ** 2)

    def run(key, num_steps, state):
        state, _ = jax.lax.scan(
            lambda s, k: (algorithm.step(k, s)[0], None), state, jax.random.split(key, num_steps)
        )
        return state

    @jax.jit
    @jax.vmap
    def curves(key):
        k1, k2 = jax.random.split(key)
        early = run(k1, 200, algorithm.init(B0))
        late = run(k2, 2000, early)
        return jnp.stack(
            [excess_risk(early.average), excess_risk(late.average), excess_risk(late.position)]
        )

    averaged_early, averaged_late, last_late = np.asarray(
        curves(jax.random.split(jax.random.key(3), seeds)), np.float64
    ).T
    # Both claims compare per-seed differences, independent across seeds. Under the null of no
    # improvement their mean over 16 seeds, divided by its standard error, is t-distributed
    # with 15 degrees of freedom: it exceeds 3 with probability below 0.5%.
    for gain in (averaged_early - averaged_late, last_late - averaged_late):
        assert gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(seeds), (gain.mean(), gain.std())


def test_blackjax_contract_run_inference_and_chains():
    algorithm = mflangevin.asgd(_linear, _linear_sampler, step_size=0.05, l2=0.1)
    final, (states, info) = blackjax.util.run_inference_algorithm(
        jax.random.key(0),
        algorithm,
        30,
        initial_position=jnp.zeros(3),
        transform=lambda s, i: (s, i),
    )
    assert int(final.count) == 30 and info.loss.shape == (30,)
    assert not bool(info.is_divergent.any())
    init_states = jax.vmap(algorithm.init)(jnp.zeros((2, 3)))
    chains, _ = jax.vmap(algorithm.step)(jax.random.split(jax.random.key(1), 2), init_states)
    assert chains.average.shape == (2, 3)
    again, _ = jax.vmap(algorithm.step)(jax.random.split(jax.random.key(1), 2), init_states)
    np.testing.assert_array_equal(chains.position, again.position)


def test_divergence_is_reported_and_the_step_refused():
    algorithm = mflangevin.asgd(_linear, _linear_sampler, step_size=1e9, divergence_threshold=1e3)
    state = algorithm.init(jnp.ones(3))
    new_state, info = algorithm.step(jax.random.key(0), state)
    assert bool(info.is_divergent)
    np.testing.assert_array_equal(new_state.position, state.position)
    np.testing.assert_array_equal(new_state.average, state.average)


def test_step_compiles_once():
    algorithm = mflangevin.asgd(
        _linear, _linear_sampler, step_size=lambda t: 0.1 / (1 + t).astype(jnp.float32)
    )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(jnp.zeros(3))
    for key in jax.random.split(jax.random.key(0), 4):
        state, _ = step(key, state)
    assert int(state.count) == 4
    chex.clear_trace_counter()


def _bad_sampler(key):
    return jnp.zeros((2, 3)), jnp.zeros((2, 1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"step_size": -1.0}, ValueError, "step_size"),
        ({"step_size": float("nan")}, ValueError, "step_size"),
        ({"l2": -0.1}, ValueError, "l2"),
        ({"l2": "big"}, TypeError, "l2"),
        ({"average_from": -1}, ValueError, "average_from"),
        ({"average_from": 2.5}, ValueError, "average_from"),
        ({"divergence_threshold": 0.0}, ValueError, "divergence_threshold"),
        ({"sampler": 3}, TypeError, "sampler"),
        ({"sampler": _bad_sampler}, ValueError, "sampler"),
        ({"sampler": lambda key: jnp.zeros(3)}, ValueError, "sampler"),
        ({"apply_fn": None}, TypeError, "apply_fn"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"apply_fn": _linear, "sampler": _linear_sampler, "step_size": 0.1} | kwargs
    with pytest.raises(error, match=match):
        mflangevin.asgd(**arguments)


@pytest.mark.parametrize(
    ("position", "error", "match"),
    [
        (jnp.zeros(3, jnp.int32), TypeError, "position"),
        (jnp.zeros(4), ValueError, "position"),
        (jnp.zeros((3, 2)), ValueError, "apply_fn"),
        ({}, ValueError, "position"),
    ],
)
def test_bad_initial_position(position, error, match):
    algorithm = mflangevin.asgd(_linear, _linear_sampler, step_size=0.1)
    with pytest.raises(error, match=match):
        algorithm.init(position)


@pytest.mark.parametrize(
    ("position", "match"),
    [
        (jnp.array([0.0, jnp.nan, 0.0]), "position: the parameters have NaN"),
        ({"w": jnp.array([jnp.inf, 0.0, 0.0])}, r"position: the leaf \['w'\] has NaN"),
    ],
)
def test_non_finite_initial_parameters(position, match):
    """Before, accepted: every step was refused and the parameters stayed NaN."""
    algorithm = mflangevin.asgd(lambda p, x: x @ jax.tree.leaves(p)[0], _linear_sampler, 0.1)
    for init in (algorithm.init, asgd.init):
        with pytest.raises(ValueError, match=match):
            init(position)
