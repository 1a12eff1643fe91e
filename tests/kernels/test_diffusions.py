"""The Langevin core: dtype policy, divergence guard, reference term."""

import jax
import jax.numpy as jnp
import pytest

import mflangevin
from mflangevin import gradients
from mflangevin.datasets import teacher_student
from mflangevin.kernels.diffusions import add_reference_score, langevin_update
from mflangevin.models import MeanFieldNetwork


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_update_keeps_the_particles_dtype(dtype):
    position = jnp.ones((4, 3), dtype)
    new, is_divergent = langevin_update(
        jax.random.key(0), position, jnp.ones((4, 3), jnp.float32), 0.1, 0.01, 1e6
    )
    assert new.dtype == dtype and not bool(is_divergent)


def test_reference_term_keeps_the_drift_dtype():
    drift = jnp.zeros((2, 3), jnp.bfloat16)
    out = add_reference_score(drift, mflangevin.gaussian_reference(1.0), 0.5, jnp.ones((2, 3)))
    assert out.dtype == jnp.bfloat16


def network(dtype, n=64):
    X, y, _ = teacher_student(jax.random.key(0), n, 3)
    net = MeanFieldNetwork("tanh")
    return net.objective(X, y, l2=1e-3), net.init_particles(jax.random.key(1), 16, 3, dtype=dtype)


@pytest.mark.parametrize(
    "make,dtype,x64",
    [
        (lambda o: mflangevin.mfld(o, 0.1, 1e-3), jnp.float32, True),
        (lambda o: mflangevin.mfld(o, 0.1, 1e-3, gradient=gradients.svrg(8, 4)), jnp.float32, True),
        (lambda o: mflangevin.pda(o, 1e-3, 1e-2, 2), jnp.float32, True),
        (lambda o: mflangevin.mfld(o, 0.1, 1e-3), jnp.bfloat16, False),
        (lambda o: mflangevin.pda(o, 1e-3, 1e-2, 2), jnp.bfloat16, True),
    ],
    ids=["mfld-f32-x64", "svrg-f32-x64", "pda-f32-x64", "mfld-bf16", "pda-bf16-x64"],
)
def test_kernels_keep_the_particles_dtype(make, dtype, x64):
    """Particles keep their dtype through every kernel, with x64 on or off (the noise and the
    drift are cast to it), and low precision runs without error."""
    with jax.enable_x64(x64):
        objective, particles = network(dtype)
        algorithm = make(objective)
        state = algorithm.init(particles)
        for key in jax.random.split(jax.random.key(2), 2):
            state, info = algorithm.step(key, state)
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(state.position))
        assert not bool(info.is_divergent)
