"""The Langevin core: dtype policy, divergence guard, reference term."""

import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import gradients
from mflangevin.kernels.diffusions import add_reference_score, energy_diverged, langevin_update


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_update_keeps_the_particles_dtype(dtype):
    position = jnp.ones((4, 3), dtype)
    new, refused = langevin_update(
        jax.random.key(0), position, jnp.ones((4, 3), jnp.float32), 0.1, 0.01, 1e6
    )
    assert new.dtype == dtype and refused.shape == (4,) and not bool(jnp.any(refused))


def test_reference_term_keeps_the_drift_dtype():
    drift = jnp.zeros((2, 3), jnp.bfloat16)
    out = add_reference_score(drift, mflangevin.gaussian_reference(1.0), 0.5, jnp.ones((2, 3)))
    assert out.dtype == jnp.bfloat16


def network(dtype, n=64):
    net, X, y, particles = problems.network_problem(n, 3, 16, dtype=dtype)
    return net.objective(X, y, l2=1e-3), particles


@pytest.mark.parametrize(
    "make,dtype,x64",
    [
        (lambda o: mflangevin.mfld(o, 0.1, 1e-3), jnp.bfloat16, False),
        (lambda o: mflangevin.pda(o, 1e-3, 1e-2, 2), jnp.bfloat16, True),
    ],
    ids=["mfld-bf16", "pda-bf16-x64"],
)
def test_kernels_keep_the_particles_dtype(make, dtype, x64):
    """Low-precision particles keep their dtype (the noise and the drift are cast to it), with
    x64 on or off, and run without error; float32 and float64 under x64, for every kernel, are
    in tests/test_dtypes_and_layouts.py."""
    with jax.enable_x64(x64):
        objective, particles = network(dtype)
        algorithm = make(objective)
        state = algorithm.init(particles)
        for key in jax.random.split(jax.random.key(2), 2):
            state, info = algorithm.step(key, state)
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(state.position))
        assert not bool(info.is_divergent)


def test_energy_divergence_is_relative_to_the_running_best():
    position = jnp.zeros((4, 2))
    assert bool(energy_diverged(5.37, 0.195, 1e-3, position, 10.0))  # the 27-fold rise
    assert not bool(energy_diverged(1.5, 0.195, 1e-3, position, 10.0))
    assert not bool(energy_diverged(0.5, jnp.inf, 1e-3, position, 10.0))  # no best yet
    assert bool(energy_diverged(jnp.nan, jnp.inf, 1e-3, position, 10.0))
    assert not bool(energy_diverged(5.37, 0.195, 1e-3, position, jnp.inf))  # switched off
    # From a best near zero, the entropy's scale λp is the floor: spreading out is not divergence.
    assert not bool(energy_diverged(0.5, 0.0, 0.1, position, 10.0))
    assert bool(energy_diverged(2.0, 0.0, 0.1, position, 10.0))


def _teacher_student_run(step_size, num_steps=60, **kwargs):
    net, X, y, particles = problems.network_problem(64, 3, 16)
    algorithm = mflangevin.mfld(net.objective(X, y, l2=1e-3), step_size, 1e-3, **kwargs)
    state = algorithm.init(particles)
    keys = jax.random.split(jax.random.key(2), num_steps)
    return jax.lax.scan(lambda s, k: algorithm.step(k, s), state, keys)


def test_a_rising_objective_is_flagged_without_changing_the_trajectory():
    """η = 500 on teacher–student regression: no particle leaves the box, but the objective rises
    many-fold; the steps are flagged. The flag never changes the particles."""
    state, info = _teacher_student_run(500.0)
    assert float(jnp.max(info.energy)) > 10 * float(info.energy[0])
    assert bool(jnp.any(info.is_divergent))
    unflagged, _ = _teacher_student_run(500.0, divergence_factor=float("inf"))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, state.position, unflagged.position))
    state, info = _teacher_student_run(0.1)
    assert not bool(jnp.any(info.is_divergent))
    assert float(state.best_energy) == pytest.approx(float(jnp.min(info.energy)))


@pytest.mark.parametrize(
    "gradient, first",
    [(gradients.sgd(8), 7), (gradients.svrg(8, 10), 10), (gradients.sarah(8, 10), 10)],
    ids=["sgd", "svrg", "sarah"],
)
def test_a_rising_objective_is_flagged_with_minibatch_drifts(gradient, first):
    """η = 500 with minibatch drifts: the objective rises many-fold with every particle finite
    and inside the box. SGD is flagged at the end of its first epoch (n/B = 8 steps: the epoch's
    mean of minibatch energies against F(μ_0)), SVRG and SARAH at their first snapshot/refresh
    after the start (step 10, where they compute F(μ)). η = 0.1 is never flagged, and its running
    best is a value the run saw: F(μ_0) or an epoch's mean."""
    net, X, y, _ = problems.network_problem(64, 3, 16)
    state, info = _teacher_student_run(500.0, num_steps=40, gradient=gradient)
    assert int(jnp.sum(info.num_refused)) == 0
    assert float(net.objective(X, y, l2=1e-3).energy(state.position)) > 5 * float(info.energy[0])
    assert int(jnp.argmax(info.is_divergent)) == first
    state, info = _teacher_student_run(0.1, num_steps=40, gradient=gradient)
    assert not bool(jnp.any(info.is_divergent))
    assert float(state.best_energy) <= float(info.energy[0]) * 1.001


def test_sgd_tracks_the_epoch_mean_of_its_minibatch_energies():
    """The tracked objective of SGD: F(μ_0) at step 0, then at each epoch's last step the mean
    of the epoch's minibatch energies (here n/B = 4), to round-off; no other step is compared."""
    net, X, y, particles = problems.network_problem(64, 3, 16)
    objective = net.objective(X, y, l2=1e-3)
    estimator = gradients.sgd(16)
    state = estimator.init(objective, particles)
    estimate = jax.jit(estimator.estimate)
    energies, tracked = [], []
    for count, key in enumerate(jax.random.split(jax.random.key(3), 8)):
        energy, _, state, _, watch = estimate(key, objective, particles, count, state)
        energies.append(float(energy))
        tracked.append((float(watch.value), bool(watch.ready)))
    assert [ready for _, ready in tracked] == [True, False, False, True, False, False, False, True]
    assert tracked[0][0] == pytest.approx(float(objective.energy(particles)), rel=1e-6)
    assert tracked[3][0] == pytest.approx(np.mean(energies[:4]), rel=1e-6)
    assert tracked[7][0] == pytest.approx(np.mean(energies[4:]), rel=1e-6)
    # Without replacement, an epoch at fixed particles sees every sample once: F(μ) itself.
    assert tracked[7][0] == pytest.approx(float(objective.energy(particles)), rel=1e-5)


@pytest.mark.parametrize("factor, error", [(1.0, ValueError), (0.5, ValueError), ("10", TypeError)])
def test_bad_divergence_factor(factor, error):
    with pytest.raises(error, match="^divergence_factor: "):
        mflangevin.mfld(lambda p: jnp.sum(p**2), 0.1, 0.1, divergence_factor=factor)
