"""The certificates, ``monitor`` and the kernels in every dtype and layout the package supports.

One small problem (the tanh network, ``N = 8`` particles, ``n = 32`` samples, ``d = 2``) built
once with the default settings, then run in each setting of the matrix: ``jax_enable_x64`` with
float32 and with float64 particles and data, and particles split over 4 (fake) devices on Auto
and on Explicit mesh axes. Each run must give the default run's result: to float32 round-off
where the arithmetic is the same, and, in float64, to float32 round-off for what is
deterministic and within the Monte-Carlo error for the dual bound (whose float64 draws of ν are
other numbers). Each setting compiles its own programs, so the sizes are small.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import sharding

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
        yield net, *jax.tree.map(lambda x: x.astype(dtype), (X, y, particles)), None


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


def assert_same_certificate(got, expected, dtype):
    """Equal to float32 round-off, or in float64 the primal so and the dual within 4 standard
    errors of the two independent Monte-Carlo estimates."""
    assert all(jnp.asarray(value).dtype == dtype for value in got)
    np.testing.assert_allclose(got.primal, expected.primal, rtol=1e-5)
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
