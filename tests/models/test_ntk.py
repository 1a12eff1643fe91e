"""NTK-regime two-layer network: symmetric initialisation, empirical and closed-form NTK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mflangevin.models import NTKNetwork
from mflangevin.models.ntk import CLOSED_FORM_NTK, NTK_ACTIVATIONS


def _inputs(n, d=3, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, d))


@pytest.mark.parametrize("activation", sorted(NTK_ACTIVATIONS))
def test_symmetric_initialisation_gives_exactly_zero(activation):
    net = NTKNetwork(activation, init_scale=1.3)
    B = net.init_params(jax.random.key(0), width=50, input_dim=3)
    assert B.shape == (50, 3)
    np.testing.assert_array_equal(B[:25], B[25:])
    np.testing.assert_array_equal(net.apply(B, _inputs(40)), np.zeros(40, np.float32))


@pytest.mark.parametrize("activation", ["erf", "tanh", "softplus", "relu"])
def test_empirical_ntk_equals_jacobian_gram(activation):
    net = NTKNetwork(activation)
    B = net.init_params(jax.random.key(0), width=16, input_dim=3)
    # Away from the initialisation too: the identity holds for any weights.
    B = B + 0.3 * jax.random.normal(jax.random.key(2), B.shape)
    X1, X2 = _inputs(5), _inputs(4, seed=3)

    jacobian_of_apply = jax.jit(jax.jacrev(net.apply))  # one program per shape, not per operation

    def jacobian(X):
        return jacobian_of_apply(B, X).reshape(X.shape[0], -1)

    expected = jacobian(X1) @ jacobian(X2).T
    np.testing.assert_allclose(net.empirical_ntk(B, X1, X2), expected, rtol=1e-5, atol=1e-6)
    gram = net.empirical_ntk(B, X1)
    np.testing.assert_allclose(gram, jacobian(X1) @ jacobian(X1).T, rtol=1e-5, atol=1e-6)
    assert np.linalg.eigvalsh(np.asarray(gram, np.float64)).min() > -1e-5 * float(gram.max())


@pytest.mark.parametrize(("activation", "init_scale"), [("relu", 1.0), ("erf", 0.7), ("erf", 2.0)])
def test_closed_form_ntk_is_the_wide_limit(activation, init_scale):
    net = NTKNetwork(activation, init_scale=init_scale)
    width = 20_000
    B = net.init_params(jax.random.key(0), width=width, input_dim=3)
    X = _inputs(6)
    empirical = np.asarray(net.empirical_ntk(B, X), np.float64)
    # At initialisation K_M(x, x') is the mean over the M/2 independent rows b_r of
    # σ'(b_rᵀx)σ'(b_rᵀx') xᵀx' (the second half repeats the first), so its Monte-Carlo standard
    # error is the sample standard deviation of these terms over √(M/2). 21 distinct entries
    # within 5 standard errors each fail together with probability < 21 · 6e-7.
    derivative = jax.vmap(jax.vmap(jax.grad(NTK_ACTIVATIONS[activation])))
    S = np.asarray(derivative(X @ B[: width // 2].T), np.float64)
    terms = S[:, None, :] * S[None, :, :] * np.asarray(X @ X.T, np.float64)[:, :, None]
    standard_error = terms.std(axis=2) / np.sqrt(width // 2)
    np.testing.assert_allclose(empirical, terms.mean(axis=2), rtol=1e-4, atol=1e-6)
    error = np.abs(empirical - np.asarray(net.ntk(X), np.float64))
    assert np.all(error <= 5 * standard_error + 1e-6), (error / standard_error).max()


def test_closed_form_ntk_cross_gram_and_zero_input():
    X1 = jnp.concatenate([_inputs(3), jnp.zeros((1, 3))])
    X2 = _inputs(2, seed=4)
    for activation in CLOSED_FORM_NTK:
        K = NTKNetwork(activation).ntk(X1, X2)
        assert K.shape == (4, 2)
        assert bool(jnp.all(jnp.isfinite(K)))
        np.testing.assert_array_equal(K[3], np.zeros(2, np.float32))
        np.testing.assert_allclose(K[:3], NTKNetwork(activation).ntk(X2, X1[:3]).T, rtol=1e-6)


def test_no_closed_form_ntk_for_other_activations():
    with pytest.raises(ValueError, match="activation"):
        NTKNetwork("tanh").ntk(_inputs(3))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: NTKNetwork("cosine"), ValueError, "activation"),
        (lambda: NTKNetwork(init_scale=-1.0), ValueError, "init_scale"),
        (lambda: NTKNetwork().init_params(jax.random.key(0), 7, 3), ValueError, "width"),
        (lambda: NTKNetwork().init_params(jax.random.key(0), 0, 3), ValueError, "width"),
        (lambda: NTKNetwork().init_params(jax.random.key(0), 8, 0), ValueError, "input_dim"),
        (lambda: NTKNetwork().init_params(jax.random.key(0), 8, 3, jnp.int32), TypeError, "dtype"),
        (lambda: NTKNetwork().apply(jnp.zeros((8, 3)), jnp.zeros(3)), ValueError, "X"),
        (lambda: NTKNetwork().apply(jnp.zeros((8, 3)), jnp.zeros((2, 4))), ValueError, "X"),
        (lambda: NTKNetwork().apply(jnp.zeros((8, 3)), jnp.zeros((2, 3), int)), TypeError, "X"),
        (lambda: NTKNetwork().apply(jnp.zeros(8), jnp.zeros((2, 3))), ValueError, "params"),
        (lambda: NTKNetwork().apply(jnp.zeros((7, 3)), jnp.zeros((2, 3))), ValueError, "params"),
        (
            lambda: NTKNetwork().empirical_ntk(jnp.zeros((8, 3)), jnp.zeros((2, 3)), jnp.zeros(3)),
            ValueError,
            "X2",
        ),
        (lambda: NTKNetwork("relu").ntk(jnp.zeros((2, 3)), jnp.zeros((2, 4))), ValueError, "X2"),
    ],
)
def test_bad_input(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_numpy_integer_width_is_accepted():
    """Review 2026-11: width=np.int64(32) was refused as not an integer."""
    params = NTKNetwork().init_params(jax.random.key(0), width=np.int64(32), input_dim=2)
    assert params.shape == (32, 2)
    with pytest.raises(ValueError, match="^width: "):
        NTKNetwork().init_params(jax.random.key(0), width=np.int64(31), input_dim=2)
