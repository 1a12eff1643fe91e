import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mflangevin.models import losses


def _points(loss):
    key_z, key_y = jax.random.split(jax.random.key(0))
    if loss.name == "cross_entropy":
        return 2 * jax.random.normal(key_z, (50, 4)), jax.random.randint(key_y, (50,), 0, 4)
    z = 2 * jax.random.normal(key_z, (50,))
    if loss.name == "squared":
        return z, jax.random.normal(key_y, (50,))
    return z, jnp.where(jax.random.bernoulli(key_y, 0.5, (50,)), 1.0, -1.0)


LOSSES = [losses.squared, losses.logistic, losses.smoothed_hinge, losses.cross_entropy]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_derivative_is_the_gradient(loss):
    z, y = _points(loss)
    autodiff = jax.vmap(jax.grad(loss.value))(z, y)
    np.testing.assert_allclose(loss.derivative(z, y), autodiff, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_fenchel_young_equality(loss):
    """ℓ(z) + ℓ*(ℓ'(z)) = ⟨z, ℓ'(z)⟩ at every point (equality case of Fenchel–Young)."""
    with jax.enable_x64(True):
        z, y = _points(loss)
        z = z.astype(jnp.float64)
        y = y if loss.name == "cross_entropy" else y.astype(jnp.float64)
        g = loss.derivative(z, y)
        inner = g * z if g.ndim == 1 else jnp.sum(g * z, axis=-1)
        np.testing.assert_allclose(loss.value(z, y) + loss.conjugate(g, y), inner, atol=1e-10)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_fenchel_young_inequality(loss):
    """ℓ(z) + ℓ*(g) ≥ ⟨z, g⟩ for any g (+inf outside the conjugate's domain)."""
    z, y = _points(loss)
    g = jax.random.normal(jax.random.key(3), z.shape)
    inner = g * z if g.ndim == 1 else jnp.sum(g * z, axis=-1)
    assert bool(jnp.all(loss.value(z, y) + loss.conjugate(g, y) >= inner - 1e-5))


def test_get_loss():
    assert losses.get_loss("logistic") is losses.logistic
    assert losses.get_loss(losses.squared) is losses.squared
    with pytest.raises(ValueError, match="loss"):
        losses.get_loss("absolute")
