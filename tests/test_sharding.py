"""Particles and data over a device mesh: the sharded runs equal the single-device runs.

In-process tests use the suite's 4 fake CPU devices (tests/conftest.py); one test runs
tests/sharding_check.py with 8 devices in a process of its own, one the 2-process example.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from sharding_check import collective_sizes, compare

import mflangevin
from mflangevin import sharding
from mflangevin.certificates.entropy import kth_neighbor_distance
from mflangevin.models import MeanFieldNetwork

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (fake) devices")

NET = MeanFieldNetwork("tanh")
N, n, D = 64, 256, 5


def problem():
    X = jax.random.normal(jax.random.key(0), (n, D))
    return NET.init_particles(jax.random.key(1), N, D), X, jnp.tanh(X[:, 0])


def relative_error(got, expected) -> float:
    flat = [np.ravel(np.asarray(x)) for x in jax.tree.leaves(got)]
    ref = [np.ravel(np.asarray(x)) for x in jax.tree.leaves(expected)]
    return float(
        np.linalg.norm(np.concatenate(flat) - np.concatenate(ref))
        / np.linalg.norm(np.concatenate(ref))
    )


def gathers(hlo: str) -> int:
    """The largest all-gather or all-to-all of a compiled program (elements)."""
    return max(
        (s for op, s in collective_sizes(hlo) if op in ("all-gather", "all-to-all")), default=0
    )


def test_mfld_100_steps_on_4_devices_matches_one_device():
    """Particles split 4 ways, data split 4 ways, on Auto and on Explicit axes: 100 steps equal
    the single-device run to 1e-5, the particles stay split, no (N, n) array is gathered."""
    records = list(compare(100, ("particles", "data")))
    assert len(records) == 4
    for record in records:
        assert record["relative_error"] < 1e-5, record
        assert record["num_devices"] == 4, record
        assert record["largest_gather"] < record["num_particles_times_samples"], record
        assert record["largest_collective"] < record["num_particles_times_samples"], record
        if record["layout"] == "particles":
            assert record["spec"][0] == "particles", record


@pytest.mark.parametrize(
    ("estimator", "explicit"), [("sgd", False), ("sgd", True), ("svrg", True), ("sarah", True)]
)
def test_drift_estimators_on_a_2x2_mesh(estimator, explicit):
    """Minibatches of data split over the data axis (gathered rows: B·d numbers)."""
    particles, X, y = problem()
    gradient = getattr(mflangevin.gradients, estimator)(32, *(() if estimator == "sgd" else (4,)))

    def run(particles, X, y):
        algorithm = mflangevin.mfld(NET.objective(X, y, l2=1e-3), 0.1, 1e-3, gradient=gradient)
        state = algorithm.init(particles)
        step = jax.jit(algorithm.step)
        for key in jax.random.split(jax.random.key(2), 3):
            state, _ = step(key, state)
        return state.position, step.lower(jax.random.key(0), state).compile().as_text()

    expected, _ = run(particles, X, y)
    mesh = sharding.make_mesh(2, 2, explicit=explicit)
    got, hlo = run(sharding.shard_particles(particles, mesh), *sharding.shard_data((X, y), mesh))
    assert relative_error(got, expected) < 1e-5
    assert sharding.particle_sharding(got).spec == PartitionSpec("particles")
    assert gathers(hlo) < N * n


def test_pda_and_streaming_on_a_2x2_mesh():
    particles, X, y = problem()
    mesh = sharding.make_mesh(2, 2)
    placed, (Xs, ys) = sharding.shard_particles(particles, mesh), sharding.shard_data((X, y), mesh)

    def pda(particles, X, y):
        algorithm = mflangevin.pda(NET.objective(X, y, l2=1e-3), 0.05, 1e-3, 3)
        state = algorithm.init(particles)
        for key in jax.random.split(jax.random.key(2), 3):
            state, _ = algorithm.step(key, state)
        return state.position

    assert relative_error(pda(placed, Xs, ys), pda(particles, X, y)) < 1e-5

    def streaming(particles, data, place):
        algorithm = mflangevin.streaming_mfld(NET.objective(*data, l2=1e-3), 0.1, 1e-3)
        state = algorithm.init(particles)
        step = jax.jit(algorithm.step)
        for i, key in enumerate(jax.random.split(jax.random.key(2), 3)):
            batch = (X[i * 64 : (i + 1) * 64], y[i * 64 : (i + 1) * 64])
            state, _ = step(key, state, place(batch))
        return state.position

    got = streaming(placed, (Xs, ys), lambda batch: sharding.shard_data(batch, mesh))
    assert relative_error(got, streaming(particles, (X, y), lambda batch: batch)) < 1e-5
    assert sharding.particle_sharding(got).spec == PartitionSpec("particles")


def certified_problem():
    particles, X, y = problem()
    objective = NET.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    return objective, particles


@pytest.mark.parametrize("explicit", [False, True])
def test_duality_gap_splits_the_search_and_the_draws(explicit):
    """The gap on particles split 4 ways equals the single-device gap; under jit the compiled
    certificate gathers the (N, p) cloud once and nothing larger."""
    objective, particles = certified_problem()
    mesh = sharding.make_mesh(4, 1, explicit=explicit)
    placed = sharding.shard_particles(particles, mesh)
    expected = mflangevin.duality_gap(objective, particles, 0.1, jax.random.key(3), num_samples=250)
    with jax.set_mesh(mesh):  # eager operations on Explicit axes need the mesh in context
        got = mflangevin.duality_gap(objective, placed, 0.1, jax.random.key(3), num_samples=250)
    for name in ("primal", "dual", "dual_stderr", "dual_ess"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-5)
    distances = kth_neighbor_distance(placed, 2, 16)
    assert distances.sharding.spec[0] == "particles"
    np.testing.assert_allclose(distances, kth_neighbor_distance(particles, 2, 16), rtol=1e-6)
    layout = sharding.particle_sharding(placed)
    certify = jax.jit(
        lambda p: mflangevin.duality_gap(
            objective, p, 0.1, jax.random.key(3), num_samples=250, block_size=16, sharding=layout
        )
    )
    np.testing.assert_allclose(certify(placed).gap, expected.gap, rtol=1e-4)
    hlo = certify.lower(placed).compile().as_text()
    p = sum(x.size // N for x in jax.tree.leaves(particles))
    assert gathers(hlo) <= N * p


def test_monitor_records_the_layout_at_init():
    """On Auto axes the traced step does not know the layout: the monitor reads it at init,
    and the certificate equals the single-device one."""
    objective, particles = certified_problem()
    mesh = sharding.make_mesh(4, 1, explicit=False)

    def run(particles):
        algorithm = mflangevin.monitor(
            mflangevin.mfld(objective, 0.1, 0.1),
            objective,
            0.1,
            every=1,
            gap=True,
            num_samples=256,
        )
        state = algorithm.init(particles)
        state, info = jax.jit(algorithm.step)(jax.random.key(4), state)
        return state.position, info.certificate

    expected_position, expected = run(particles)
    position, got = run(sharding.shard_particles(particles, mesh))
    assert relative_error(position, expected_position) < 1e-5
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4)


def test_same_key_same_particles_on_1_2_and_4_devices():
    """The noise does not depend on the layout (partitionable threefry)."""
    assert jax.config.jax_threefry_partitionable
    particles, X, y = problem()
    objective = NET.objective(X, y, l2=1e-3)
    results = []
    for shards in (1, 2, 4):
        mesh = sharding.make_mesh(shards, 1, devices=jax.devices()[:shards])
        algorithm = mflangevin.mfld(objective, 0.1, 1e-3)
        state = algorithm.init(sharding.shard_particles(particles, mesh))
        for key in jax.random.split(jax.random.key(5), 3):
            state, _ = algorithm.step(key, state)
        results.append(state.position)
    for other in results[1:]:
        assert relative_error(other, results[0]) < 1e-6


def test_plain_device_put_works_too():
    particles, X, y = problem()
    mesh = jax.make_mesh((4,), ("a",))
    placed = jax.device_put(particles, NamedSharding(mesh, PartitionSpec("a")))
    assert sharding.particle_sharding(placed).spec == PartitionSpec("a")
    distances = kth_neighbor_distance(placed, 1, 16)
    np.testing.assert_allclose(distances, kth_neighbor_distance(particles, 1, 16), rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sharding.make_mesh(8, 1), "particle_shards: 8 × data_shards 1 = 8 devices"),
        (lambda: sharding.make_mesh(2, 0), "data_shards: expected a positive integer"),
        (lambda: sharding.make_mesh(2, 2, explicit="yes"), "explicit: expected True or False"),
        (
            lambda: sharding.shard_particles(jnp.zeros((6, 2)), sharding.make_mesh(4, 1)),
            "particles: 6 rows cannot be split evenly over the 4 devices",
        ),
        (
            lambda: sharding.shard_data(jnp.zeros((6, 2)), sharding.make_mesh(1, 4)),
            "data: 6 rows cannot be split evenly",
        ),
        (lambda: sharding.shard_data(jnp.zeros((4, 2)), "mesh"), "mesh: expected a jax.sharding"),
        (
            lambda: sharding.shard_data(jnp.zeros((4, 2)), jax.make_mesh((4,), ("a",))),
            "mesh: has no 'data' axis",
        ),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_8_devices_in_a_process_of_their_own():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sharding_check.py"), "8", "20", "both"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["mesh"] == {"particles": 4, "data": 2}
        assert record["num_devices"] == 8
        assert record["relative_error"] < 1e-5
        assert record["spec"][0] == "particles"
        assert record["largest_collective"] < record["num_particles_times_samples"]


def test_two_processes_give_the_one_process_objective(tmp_path):
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
    except OSError as err:  # pragma: no cover - only where the OS forbids local sockets
        pytest.skip(f"no local sockets for jax.distributed: {err}")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "distributed_mfld.py"),
            "--num-particles=64",
            "--num-samples=200",
            "--steps=10",
            f"--out={tmp_path / 'objectives.jsonl'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    values = {
        line.split()[0]: float(line.split("objective=")[1])
        for line in result.stdout.splitlines()
        if "objective=" in line
    }
    assert set(values) == {"processes=2", "processes=1"}
    np.testing.assert_allclose(values["processes=2"], values["processes=1"], rtol=1e-5)
