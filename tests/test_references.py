import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mflangevin
from mflangevin import gaussian_reference


def test_references():
    theta = jax.random.normal(jax.random.key(0), (5, 3))
    nu = gaussian_reference(2.0)
    np.testing.assert_allclose(nu.score(theta), -theta / 4.0, rtol=1e-6)
    by_density = mflangevin.density_reference(nu.log_density)
    np.testing.assert_allclose(by_density.score(theta), nu.score(theta), rtol=1e-6)
    draws = nu.sample(jax.random.key(1), {"w": jnp.zeros((4000, 2)), "b": jnp.zeros(4000)})
    assert draws["w"].shape == (4000, 2) and draws["b"].shape == (4000,)
    # std of 4000 draws of N(0, 4): the estimate has standard error ≈ 2/√(2·4000) ≈ 0.022.
    assert abs(float(jnp.std(draws["b"])) - 2.0) < 5 * 0.023
    with pytest.raises(ValueError, match="sampler"):
        by_density.sample(jax.random.key(0), theta)


def test_gaussian_normaliser_makes_a_probability_density():
    """∫ exp(log ν − log Z) = 1 in p = 1, by quadrature on a grid wide enough for scale 1.5."""
    nu = gaussian_reference(1.5)
    grid = jnp.linspace(-15.0, 15.0, 30001)
    density = jnp.exp(jax.vmap(nu.log_density)(grid) - nu.log_normalizer(jnp.zeros(())))
    integral = np.sum(np.asarray(density, np.float64)) * 30.0 / 30000
    assert integral == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: gaussian_reference(0.0), ValueError, "^scale: "),
        (lambda: gaussian_reference(float("inf")), ValueError, "^scale: "),
        (lambda: gaussian_reference(float("nan")), ValueError, "^scale: "),
        (lambda: gaussian_reference("1"), TypeError, "^scale: "),
        (lambda: gaussian_reference(True), TypeError, "^scale: "),
        (lambda: mflangevin.density_reference(3.0), TypeError, "log_density"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
