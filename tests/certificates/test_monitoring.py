"""Recording certificates every k steps around a kernel."""

import blackjax
import jax
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin.certificates import duality_gap
from mflangevin.models import MeanFieldNetwork

LAMBDA, STEP_SIZE, EVERY, NUM_STEPS = 0.05, 0.1, 3, 7


@pytest.fixture(scope="module")
def problem():
    net, X, y, particles = problems.network_problem(40, 2, 128)
    return net.objective(X, y, reference=mflangevin.gaussian_reference(1.0)), particles


def run(algorithm, particles):
    return jax.jit(
        lambda key, position: blackjax.util.run_inference_algorithm(
            key, algorithm, NUM_STEPS, initial_position=position
        )
    )(jax.random.key(2), particles)


def test_records_every_k_steps_without_changing_the_trajectory(problem):
    objective, particles = problem
    inner = mflangevin.mfld(objective, step_size=STEP_SIZE, temperature=LAMBDA)
    algorithm = mflangevin.monitor(inner, objective, LAMBDA, every=EVERY, gap=True, num_samples=512)
    final, (states, infos) = run(algorithm, particles)
    plain_final, (plain_states, _) = run(inner, particles)
    np.testing.assert_array_equal(final.position["w"], plain_final.position["w"])
    np.testing.assert_array_equal(states.position["w"], plain_states.position["w"])
    recorded = np.isfinite(np.asarray(infos.certificate.gap))
    assert recorded.tolist() == [(i + 1) % EVERY == 0 for i in range(NUM_STEPS)]
    # The recorded value is the certificate of the particles after that step: the primal
    # exactly, the dual (other draws of ν) within 4 of its Monte-Carlo standard errors.
    index = EVERY - 1
    position = jax.tree.map(lambda x: x[index], states.position)
    expected = duality_gap(objective, position, LAMBDA, jax.random.key(3), num_samples=512)
    np.testing.assert_allclose(infos.certificate.primal[index], expected.primal, rtol=1e-5)
    tolerance = 4 * np.hypot(infos.certificate.dual_stderr[index], expected.dual_stderr)
    assert abs(infos.certificate.dual[index] - expected.dual) < tolerance


def test_dual_only_leaves_the_primal_empty(problem):
    objective, particles = problem
    inner = mflangevin.mfld(objective, step_size=STEP_SIZE, temperature=LAMBDA)
    _, (_, infos) = run(mflangevin.monitor(inner, objective, LAMBDA, every=EVERY), particles)
    recorded = np.isfinite(np.asarray(infos.certificate.dual))
    assert recorded.sum() == NUM_STEPS // EVERY
    assert not np.isfinite(np.asarray(infos.certificate.primal)).any()
    # The effective sample size of the dual's weights is recorded beside its standard error.
    ess = np.asarray(infos.certificate.dual_ess)
    np.testing.assert_array_equal(np.isfinite(ess), recorded)
    assert ((ess[recorded] >= 1) & (ess[recorded] <= 4096)).all()


def test_step_compiles_once(problem):
    objective, particles = problem
    inner = mflangevin.mfld(objective, step_size=STEP_SIZE, temperature=LAMBDA)
    algorithm = mflangevin.monitor(inner, objective, LAMBDA, every=2)
    count = 0

    def step(key, state):
        nonlocal count
        count += 1
        return algorithm.step(key, state)

    jitted = jax.jit(step)
    state = algorithm.init(particles)
    for i in range(4):
        state, _ = jitted(jax.random.key(i), state)
    assert count == 1
    assert int(state.count) == 4


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"every": 0}, ValueError, "every"),
        ({"every": 1.5}, ValueError, "every"),
        ({"every": 2, "temperature": 0.0}, ValueError, "temperature"),
        ({"every": 2, "algorithm": object()}, TypeError, "algorithm"),
    ],
)
def test_bad_input(problem, kwargs, error, match):
    objective, _ = problem
    arguments = {
        "algorithm": mflangevin.mfld(objective, step_size=STEP_SIZE, temperature=LAMBDA),
        "objective": objective,
        "temperature": LAMBDA,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        mflangevin.monitor(**arguments)


def test_bad_objective_is_caught_at_init(problem):
    objective, particles = problem
    inner = mflangevin.mfld(objective, step_size=STEP_SIZE, temperature=LAMBDA)
    no_reference = MeanFieldNetwork("tanh").objective(*objective.data)
    algorithm = mflangevin.monitor(inner, no_reference, LAMBDA, every=2)
    with pytest.raises(ValueError, match="reference measure"):  # before: at the first step
        algorithm.init(particles)
    with pytest.raises(ValueError, match="num_neighbors"):
        mflangevin.monitor(inner, objective, LAMBDA, every=2, gap=True, num_neighbors=500).init(
            particles
        )
