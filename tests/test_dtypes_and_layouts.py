"""The certificates, ``monitor`` and every kernel in the dtypes and layouts the package supports.

One small problem (the tanh network, ``N = 8`` particles, ``n = 32`` samples, ``d = 2``) is run in
each setting of the matrix: ``jax_enable_x64`` with float32 and with float64 particles and data,
and (for the certificates) particles split over 4 (fake) devices on Auto and on Explicit mesh
axes; the kernels on meshes are tested in tests/test_sharding.py. Results must equal the default
run's to float32 round-off where the arithmetic is the same; float64 draws random numbers of
its own, so there the tolerance is the Monte-Carlo error (the dual bound) or the Langevin
noise's. Each setting compiles its own programs, so the sizes are small.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import gradients, sharding
from mflangevin.models import MeanFieldNetwork, NTKNetwork

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (fake) devices")

SETTINGS = ["x64-float32", "x64-float64", "auto", "explicit"]
LAMBDA = 0.1  # with l2 = 0.05, ν is the penalty's Gaussian N(0, I): 64 draws have an ESS of 15
NUM_SAMPLES = 64


@contextlib.contextmanager
def setting(name):
    """Within: the default problem ``(net, X, y, particles)`` in the setting ``name``, and the
    particles' layout to tell a traced certificate (``None``: read off the particles)."""
    net, X, y, particles = problems.network_problem(32, 2, 8)
    if name in ("auto", "explicit"):
        mesh = sharding.make_mesh(4, explicit=name == "explicit")
        particles = sharding.shard_particles(particles, mesh)
        # Traced on Auto axes, the particles do not carry their layout: it is told.
        layout = sharding.particle_sharding(particles) if name == "auto" else None
        yield net, X, y, particles, layout
        return
    dtype = jnp.float64 if name == "x64-float64" else jnp.float32
    with jax.enable_x64(True):
        yield net, *cast((X, y, particles), dtype), None


@pytest.fixture(scope="module")
def default_certificate():
    net, X, y, particles = problems.network_problem(32, 2, 8)
    return certify(net.objective(X, y, l2=0.05), particles, None)


def certify(objective, particles, layout):
    return jax.jit(
        lambda p: mflangevin.duality_gap(
            objective, p, LAMBDA, jax.random.key(3), num_samples=NUM_SAMPLES, sharding=layout
        )
    )(particles)


def assert_same_certificate(got, expected, dtype, primal_rtol=1e-5):
    """Equal to float32 round-off; in float64, the primal to ``primal_rtol`` and the dual within
    4 standard errors of the two independent Monte-Carlo estimates."""
    assert all(jnp.asarray(value).dtype == dtype for value in got)
    np.testing.assert_allclose(got.primal, expected.primal, rtol=primal_rtol)
    if dtype == jnp.float32:
        np.testing.assert_allclose(got, expected, rtol=1e-4)
    else:
        error = np.hypot(got.dual_stderr, expected.dual_stderr)
        assert abs(float(got.dual) - float(expected.dual)) < 4 * error


@pytest.mark.parametrize("name", SETTINGS)
def test_duality_gap(name, default_certificate):
    """The gap with ν the L2 penalty's Gaussian (the README's objective). Before, it raised under
    x64 (int64 neighbour indices) and on Explicit axes (a particle sliced off a split leaf)."""
    with setting(name) as (net, X, y, particles, layout):
        got = certify(net.objective(X, y, l2=0.05), particles, layout)
        assert_same_certificate(got, default_certificate, jax.tree.leaves(particles)[0].dtype)


def monitored_step(net, X, y, particles):
    """One step of ``monitor(gap=True)`` around MFLD: the new particles and their certificate.
    The step is small (η = 1e-6): its noise, other numbers in float64, moves the particles by
    about 1e-3 and the primal by about 1e-5 (relative; measured)."""
    objective = net.objective(X, y, l2=0.05)
    algorithm = mflangevin.monitor(
        mflangevin.mfld(objective, 1e-6, LAMBDA),
        objective,
        LAMBDA,
        every=1,
        gap=True,
        num_samples=NUM_SAMPLES,
    )
    state, info = jax.jit(algorithm.step)(jax.random.key(4), algorithm.init(particles))
    return state.position, info.certificate


@pytest.fixture(scope="module")
def default_monitored_step():
    return monitored_step(*problems.network_problem(32, 2, 8))


@pytest.mark.parametrize("name", SETTINGS)
def test_monitor_with_the_gap(name, default_monitored_step):
    _, expected = default_monitored_step
    with setting(name) as (net, X, y, particles, _):
        position, got = monitored_step(net, X, y, particles)
        dtype = jax.tree.leaves(particles)[0].dtype
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(position))
        assert_same_certificate(got, expected, dtype, primal_rtol=1e-3)


# Every kernel's Langevin steps have a noise variance of 2e-7 per coordinate (MFLD: 2ηλ with
# η = 0.1, λ = 1e-6; PDA's inner steps at unit temperature: 2η with η = 1e-7), so that float32 and
# float64 runs, whose noises are other numbers, stay within 6 standard deviations of their
# difference after the 4 Langevin steps the longest run takes: 6·sqrt(2·4·2e-7).
KERNEL_TOLERANCE = 6 * np.sqrt(2 * 4 * 2e-7)


def kernel_runs(X, y, particles):
    """``name -> particles after 2 steps`` of every kernel on the problem (for ASGD: the NTK
    network's averaged parameters, on a fixed batch of the data)."""
    objective = MeanFieldNetwork("tanh").objective(X, y, l2=0.05)
    keys = jax.random.split(jax.random.key(5), 2)
    algorithms = {
        "mfld": mflangevin.mfld(objective, 0.1, 1e-6),
        "mfld-sgd": mflangevin.mfld(objective, 0.1, 1e-6, gradient=gradients.sgd(8)),
        "mfld-svrg": mflangevin.mfld(objective, 0.1, 1e-6, gradient=gradients.svrg(8, 2)),
        "mfld-sarah": mflangevin.mfld(objective, 0.1, 1e-6, gradient=gradients.sarah(8, 2)),
        "pda": mflangevin.pda(objective, 1e-7, 1e-2, 2, output="last"),
        "pda-minibatch": mflangevin.pda(objective, 1e-7, 1e-2, 2, output="last", batch_size=8),
    }
    runs = {}
    for name, algorithm in algorithms.items():
        state = algorithm.init(particles)
        for key in keys:
            state, info = algorithm.step(key, state)
        assert not bool(info.is_divergent), name
        runs[name] = state.position
    streaming = mflangevin.streaming_mfld(objective, 0.1, 1e-6)
    step, state = jax.jit(streaming.step), streaming.init(particles)
    for i, key in enumerate(keys):
        state, _ = step(key, state, (X[16 * i : 16 * (i + 1)], y[16 * i : 16 * (i + 1)]))
    runs["streaming_mfld"] = state.position
    ntk = NTKNetwork("erf")
    params = ntk.init_params(jax.random.key(6), width=8, input_dim=2)
    asgd = mflangevin.asgd(ntk.apply, lambda key: (X[:4], y[:4]), 0.5, 1e-2)
    step, state = jax.jit(asgd.step), asgd.init(cast(params, X.dtype))
    for key in keys:
        state, _ = step(key, state)
    runs["asgd"] = state.average
    return runs


def test_every_kernel_under_x64():
    """Under x64 every kernel keeps the dtype of its particles (or parameters), float32 or
    float64, and the two runs agree to the noise's tolerance (ASGD, without noise: to float32
    round-off)."""
    _, X, y, particles = problems.network_problem(32, 2, 8)
    with jax.enable_x64(True):
        runs = {
            dtype: kernel_runs(*(x.astype(dtype) for x in (X, y)), cast(particles, dtype))
            for dtype in (jnp.float32, jnp.float64)
        }
        for dtype, by_name in runs.items():
            for name, run in by_name.items():
                assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(run)), name
        for name, run in runs[jnp.float64].items():
            expected = cast(runs[jnp.float32][name], jnp.float64)
            atol = 1e-6 if name == "asgd" else KERNEL_TOLERANCE
            for got, want in zip(jax.tree.leaves(run), jax.tree.leaves(expected), strict=True):
                np.testing.assert_allclose(got, want, atol=atol, err_msg=name)


def cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), tree)
