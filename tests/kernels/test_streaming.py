import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import EnergyObjective, gradients
from mflangevin.kernels import data
from mflangevin.keys import estimator_key


def problem():
    net, X, y, particles = problems.network_problem(40, 3, 8)
    return X, y, net.objective(X, y, l2=1e-2), particles


def test_equals_the_sgd_estimator_on_the_same_minibatch():
    """The SGD estimator draws its first epoch from the step key folded with 1; handing the same
    rows to the streaming step gives the same step, bit for bit up to round-off."""
    X, y, objective, particles = problem()
    sgd = mflangevin.mfld(objective, 0.1, 1e-2, gradient=gradients.sgd(8))
    streaming = mflangevin.streaming_mfld(objective, 0.1, 1e-2)
    key = jax.random.key(3)
    source = data.minibatch(8)
    idx, _ = source.indices(estimator_key(key), 40, source.init(objective))
    expected, expected_info = sgd.step(key, sgd.init(particles))
    got, info = streaming.step(key, streaming.init(particles), (X[idx], y[idx]))
    for name in particles:
        np.testing.assert_allclose(got.position[name], expected.position[name], rtol=1e-6)
    assert float(info.energy) == pytest.approx(float(expected_info.energy), rel=1e-6)
    assert int(info.num_gradient_evaluations) == 8


def test_scan_over_a_stream_compiles_once():
    X, y, objective, particles = problem()
    streaming = mflangevin.streaming_mfld(
        objective, 0.1, lambda k: 1e-2 / (1.0 + k.astype(jnp.float32))
    )
    batches = (X.reshape(5, 8, 3), y.reshape(5, 8))
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(state, keys, batches):
        def body(state, inputs):
            key, batch = inputs
            return streaming.step(key, state, batch)

        return jax.lax.scan(body, state, (keys, batches))

    state = streaming.init(particles)
    for seed in range(2):
        state, info = run(state, jax.random.split(jax.random.key(seed), 5), batches)
    assert int(state.count) == 10
    np.testing.assert_array_equal(info.num_gradient_evaluations, 40 + 8 * np.arange(1, 6))
    np.testing.assert_allclose(info.temperature, 1e-2 / (1.0 + np.arange(5, 10)), rtol=1e-6)


def test_bad_input():
    X, y, objective, particles = problem()
    with pytest.raises(TypeError, match="objective"):
        mflangevin.streaming_mfld(EnergyObjective(jnp.sum), 0.1, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        mflangevin.streaming_mfld(objective, 0.1, -1.0)
    streaming = mflangevin.streaming_mfld(objective, 0.1, 0.1)
    state = streaming.init(particles)
    with pytest.raises(ValueError, match="minibatch"):
        streaming.step(jax.random.key(0), state, X[:8])
    with pytest.raises(ValueError, match="sample axis"):
        streaming.step(jax.random.key(0), state, (X[:8], y[:7]))
    # Before: 'NoneType' object is not callable.
    with pytest.raises(TypeError, match="^minibatch: every step takes the batch it runs on"):
        streaming.step(jax.random.key(0), state, None)


def test_minibatch_labels_outside_the_loss_domain():
    """{0, 1} labels for the logistic loss: a clear error on a concrete minibatch; under jit the
    step is refused (particles kept) and flagged."""
    net, X, y, particles = problems.network_problem(40, 3, 8, loss="logistic")
    objective = net.objective(X, jnp.sign(y), l2=1e-2)
    streaming = mflangevin.streaming_mfld(objective, 0.1, 1e-2)
    state = streaming.init(particles)
    bad = (X[:8], (y[:8] > 0).astype(X.dtype))
    with pytest.raises(ValueError, match=r"^minibatch labels: .*logistic.*\{-1, \+1\}"):
        streaming.step(jax.random.key(2), state, bad)
    new, info = jax.jit(streaming.step)(jax.random.key(2), state, bad)
    assert bool(info.is_divergent) and int(info.num_refused) == 8
    chex.assert_trees_all_equal(new.position, state.position)
    new, info = jax.jit(streaming.step)(jax.random.key(2), state, (X[:8], jnp.sign(y[:8])))
    assert not bool(info.is_divergent)
    with pytest.raises(ValueError, match="^minibatch: the inputs contain NaN"):
        streaming.step(jax.random.key(2), state, (X[:8].at[0, 0].set(jnp.nan), jnp.sign(y[:8])))


def test_empty_and_misshapen_minibatches():
    X, y, objective, particles = problem()
    streaming = mflangevin.streaming_mfld(objective, 0.1, 1e-2)
    state = streaming.init(particles)
    with pytest.raises(ValueError, match=r"^minibatch: the data have no samples \(n = 0\)"):
        streaming.step(jax.random.key(2), state, (X[:0], y[:0]))
    structure_only = dataclasses.replace(objective, data=None)
    streaming = mflangevin.streaming_mfld(structure_only, 0.1, 1e-2)
    with pytest.raises(ValueError, match="^minibatch: does not fit the objective and particles"):
        streaming.step(jax.random.key(2), streaming.init(particles), (X[:8, :2], y[:8]))
