"""The Kozachenko–Leonenko entropy estimator and its blockwise neighbour search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import polygamma

import mflangevin
from mflangevin.certificates.entropy import entropy, flatten_particles, kth_neighbor_distance


@pytest.mark.parametrize("num_neighbors, block_size", [(1, 64), (3, 100), (4, 1024)])
def test_kth_neighbor_distance_matches_brute_force(num_neighbors, block_size):
    # 300 points: the blocks of 64 and 100 leave padded rows and columns to mask.
    x = jax.random.normal(jax.random.key(0), (300, 3))
    distances = np.asarray(kth_neighbor_distance(x, num_neighbors, block_size))
    pairwise = np.linalg.norm(np.asarray(x)[:, None, :] - np.asarray(x)[None, :, :], axis=-1)
    expected = np.sort(pairwise, axis=1)[:, num_neighbors]  # column 0 is the point itself
    np.testing.assert_allclose(distances, expected, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_neighbor_search_under_x64(dtype):
    # The running top-k's indices stay int32 when jax_enable_x64 makes jnp.arange int64 (before,
    # the scan's carry and its update disagreed and every certificate raised under x64).
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (40, 2), dtype)
        distances = kth_neighbor_distance(x, 2, 16)
        assert distances.dtype == dtype
        pairwise = np.linalg.norm(np.asarray(x)[:, None, :] - np.asarray(x)[None, :, :], axis=-1)
        np.testing.assert_allclose(distances, np.sort(pairwise, axis=1)[:, 2], rtol=1e-6)


def test_the_public_name_is_the_function():
    # Before, mflangevin.entropy (in __all__) was the module mflangevin.certificates.entropy.
    assert mflangevin.entropy is entropy


def test_pytree_particles_are_flattened():
    particles = {"w": jnp.ones((5, 2, 3)), "b": jnp.zeros(5)}
    assert flatten_particles(particles).shape == (5, 7)


@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_entropy_of_gaussians(p):
    # θ = A ξ with ξ ~ N(0, I_p): H = ½ p (1 + log 2π) + log|det A|.
    n, k = 2000, 3
    key_a, key_x = jax.random.split(jax.random.key(p))
    A = jnp.eye(p) + 0.3 * jax.random.normal(key_a, (p, p))
    theta = jax.random.normal(key_x, (n, p)) @ A.T
    expected = 0.5 * p * (1 + np.log(2 * np.pi)) + np.linalg.slogdet(np.asarray(A))[1]
    # Near-neighbour counts are locally Gamma(k): Var Ĥ ≈ (Var log μ(θ) + ψ'(k)) / N with
    # Var log μ(θ) = p/2 for a Gaussian (ψ' the trigamma function); the measured standard
    # deviation is up to 1.17 times that at fixed k, hence the factor 1.2 (see the docstring of
    # entropy). 4σ, which also absorbs the estimator's bias at this N (≈ 1.7σ at p = 5).
    sigma = 1.2 * np.sqrt((p / 2 + polygamma(1, k)) / n)
    estimate = float(jax.jit(entropy, static_argnums=(1, 2))(theta, k, 512))
    assert abs(estimate - expected) < 4 * sigma


def test_no_quadratic_memory():
    # N = 20 000 particles: an N × N float32 matrix would take 1.6 GB; blocks of 512 need
    # about 512 · (512 + k) floats per live buffer.
    n, block = 20_000, 512
    x = jax.ShapeDtypeStruct((n, 3), jnp.float32)
    compiled = jax.jit(lambda p: entropy(p, 1, block)).lower(x).compile()
    memory = compiled.memory_analysis()
    assert memory.temp_size_in_bytes < 50 * block * block * 4


def test_compiles_once():
    count = 0

    def estimate(x):
        nonlocal count
        count += 1
        return entropy(x, 2, 64)

    jitted = jax.jit(estimate)
    for seed in range(3):
        jitted(jax.random.normal(jax.random.key(seed), (200, 2)))
    assert count == 1


def test_a_call_outside_jit_is_one_program(compilations):
    """Called eagerly, the estimator and the search compile one program each per shapes, not
    one per operation (some thirty), and none on a second call."""
    x = {"w": jnp.ones((40, 2)), "b": jnp.arange(40.0)}
    compilations.clear()
    first = entropy(x, 2, 16)
    kth_neighbor_distance(x, 2, 16)
    assert [name.split("(")[1] for name in compilations] == ["_entropy)", "_kth_neighbor_distance)"]
    moved = {"w": x["w"] + 1, "b": x["b"]}  # a translation leaves the entropy unchanged
    compilations.clear()
    np.testing.assert_allclose(entropy(moved, 2, 16), first, rtol=1e-6)
    assert compilations == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_neighbors": 10}, "num_neighbors"),
        ({"num_neighbors": 0}, "num_neighbors"),
        ({"block_size": 0}, "block_size"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        entropy(jnp.ones((10, 2)), **kwargs)
