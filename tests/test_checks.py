"""The eager argument checks of mflangevin._checks, through the public kernels (review 2026-11)."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import problems
import pytest

import mflangevin
from mflangevin import EnergyObjective, MeanFieldObjective
from mflangevin.models import MeanFieldNetwork

N, D = 16, 3


@pytest.fixture(scope="module")
def problem():
    net, X, y, particles = problems.network_problem(64, D, N)
    return net, net.objective(X, y), particles


def mfld_init(objective, position):
    return mflangevin.mfld(objective, step_size=0.1, temperature=1e-3).init(position)


def pda_init(objective, position):
    return mflangevin.pda(objective, 0.1, 1e-3, 2).init(position)


@pytest.mark.parametrize("init", [mfld_init, pda_init])
def test_leaf_of_the_wrong_rank_is_an_error(problem, init):
    """w of shape (N, d, 1) broadcast the features (n, 1) against y (n,): energy 0.19 → 0.13."""
    _, objective, particles = problem
    bad = {"w": particles["w"][..., None], "b": particles["b"]}
    # The suite raises on rank promotion; users' default allows it, which hid the defect.
    with jax.numpy_rank_promotion("allow"):
        with pytest.raises(ValueError, match=r"^position: .*\(n, n\).*wrong rank"):
            init(objective, bad)


def test_missing_leaf_is_named(problem):
    _, objective, particles = problem
    with pytest.raises(ValueError, match=r"^position: .*the leaf 'b' is missing"):
        mfld_init(objective, {"w": particles["w"]})


def test_extra_leaf_is_an_error(problem):
    _, objective, particles = problem
    with pytest.raises(
        ValueError, match=r"^position: the leaves \['a'\] do not enter the features"
    ):
        mfld_init(objective, {**particles, "a": particles["b"]})
    energy = EnergyObjective(lambda p: jnp.mean(p["x"] ** 2))
    position = {"x": jnp.ones((4, 2)), "unused": jnp.ones(4)}
    with pytest.raises(
        ValueError, match=r"^position: the leaves \['unused'\] do not enter the energy"
    ):
        mflangevin.mfld(energy, 0.1, 0.1).init(position)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
@pytest.mark.parametrize("init", [mfld_init, pda_init])
def test_non_finite_particles_are_an_error(problem, init, bad):
    _, objective, particles = problem
    position = {**particles, "w": particles["w"].at[0, 0].set(bad)}
    with pytest.raises(ValueError, match=r"^position: leaf 'w' has NaN or infinite values"):
        init(objective, position)


def test_nested_lists_say_to_use_arrays():
    energy = EnergyObjective(lambda p: jnp.mean(p**2))
    with pytest.raises(TypeError, match=r"^position: .*jnp.asarray"):
        mflangevin.mfld(energy, 0.1, 0.1).init([[0.0, 1.0], [1.0, 2.0]])


def test_empty_data_is_an_error():
    X, y = jnp.zeros((0, 2)), jnp.zeros(0)
    objective = MeanFieldObjective(
        lambda theta, data: data[0] @ theta,
        lambda z, data: 0.5 * jnp.mean((z - data[1]) ** 2),
        penalty=lambda theta: 1e-3 * jnp.sum(theta**2),
        data=(X, y),
        finite_sum=True,
    )
    with pytest.raises(ValueError, match=r"^objective: the data have no samples \(n = 0\)"):
        mfld_init(objective, jnp.zeros((4, 2)))


def test_reference_of_the_wrong_type_is_an_error():
    with pytest.raises(TypeError, match="^reference: expected None"):
        EnergyObjective(lambda p: jnp.mean(p**2), reference="gaussian")
    with pytest.raises(TypeError, match="^reference: expected None"):
        EnergyObjective(lambda p: jnp.mean(p**2), reference=3.0)

    class OwnObjective(NamedTuple):  # a protocol implementation of one's own
        energy: Callable
        reference: object = "gaussian"

        def energy_and_drift(self, particles):
            return jax.value_and_grad(self.energy)(particles)

    with pytest.raises(TypeError, match="^objective: its reference measure: expected None"):
        mflangevin.mfld(OwnObjective(lambda p: jnp.mean(p**2)), 0.1, 0.1).init(jnp.zeros((4, 2)))


@pytest.mark.parametrize(
    "step_size",
    [jnp.full((N, 1), 0.1), lambda k: jnp.full((2,), 0.1)],
    ids=["array", "vector schedule"],
)
def test_step_size_must_be_a_scalar(problem, step_size):
    _, objective, _ = problem
    with pytest.raises(ValueError, match=r"^step_size: expected .*scalar.*shape"):
        mflangevin.mfld(objective, step_size, 1e-3)


def test_valid_particles_still_pass(problem):
    """What the checks must not refuse: broadcastable leaves, every neuron type, vmapped chains."""
    net, objective, particles = problem
    assert mfld_init(objective, {**particles, "b": particles["b"][:, None]}).particles["w"].shape
    X, y = objective.data
    for network, labels in [
        (MeanFieldNetwork("bounded"), y),
        (MeanFieldNetwork("output_weight", "cross_entropy", num_outputs=3), (y > 0).astype(int)),
    ]:
        position = network.init_particles(jax.random.key(2), N, D)
        assert mfld_init(network.objective(X, labels, l2=1e-3), position).count == 0
    chains = jax.tree.map(lambda x: jnp.stack([x, x]), particles)
    algorithm = mflangevin.mfld(objective, 0.1, 1e-3)
    assert jax.vmap(algorithm.init)(chains).particles["w"].shape == (2, N, D)


def test_checks_run_inside_jit_on_closed_over_particles(problem):
    """A run jitted whole sees concrete closed-over particles: checked, no tracer error."""
    _, objective, particles = problem
    algorithm = mflangevin.mfld(objective, 0.1, 1e-3)
    assert int(jax.jit(lambda: algorithm.init(particles).count)()) == 0
    assert int(jax.jit(lambda p: algorithm.init(p).count)(particles)) == 0
    bad = {**particles, "b": particles["b"].at[2].set(jnp.nan)}
    with pytest.raises(ValueError, match="^position: leaf 'b' has NaN"):
        jax.jit(lambda: algorithm.init(bad).count)()
