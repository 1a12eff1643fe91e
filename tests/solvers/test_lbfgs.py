"""L-BFGS with a gradient-only line search: convergence, the certificate's say, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mflangevin.solvers import lbfgs


def quadratic(x, data):  # ∇ of ½ (x − c)ᵀ A (x − c)
    A, c = data
    return A @ (x - c)


def test_minimises_an_ill_conditioned_quadratic_until_certified():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    A = jnp.asarray(Q @ np.diag(np.logspace(0, 4, 20)) @ Q.T, jnp.float32)
    c = jnp.asarray(rng.normal(size=20), jnp.float32)
    seen = []

    def certify(x, g, evaluations):
        seen.append(evaluations)
        return np.linalg.norm(g) < 1e-3

    result = lbfgs.minimize(quadratic, np.zeros(20), (A, c), certify, max_iter=500)
    assert result.certified and result.evaluations == seen[-1]
    assert len(seen) == result.iterations + 1  # asked at the start and after every iteration
    np.testing.assert_allclose(result.x, np.asarray(c), atol=1e-3)


def test_a_numpy_gradient_runs_on_the_host_to_the_same_iterates():
    A, c = np.diag([1.0, 100.0, 1e4]), np.ones(3)

    def certify(x, g, evaluations):
        return np.linalg.norm(g) < 1e-6

    def numpy_quadratic(x, data):
        assert isinstance(x, np.ndarray)  # not traced
        return quadratic(x, data)

    host = lbfgs.minimize(
        numpy_quadratic, np.zeros(3), (A, c), certify, max_iter=100, compiled=False
    )
    with jax.enable_x64(True):
        data = jax.device_put((A, c))
        compiled = lbfgs.minimize(quadratic, np.zeros(3), data, certify, max_iter=100)
    assert host.certified and host.evaluations == compiled.evaluations
    np.testing.assert_allclose(host.x, compiled.x, rtol=1e-12)


def test_stops_at_the_budget_and_at_a_zero_gradient():
    A, c = jnp.diag(jnp.array([1.0, 100.0, 1e4])), jnp.ones(3)
    never = lbfgs.minimize(quadratic, np.zeros(3), (A, c), lambda *_: False, max_iter=2)
    assert not never.certified and never.iterations == 2 and "max_iter" in never.message
    at_optimum = lbfgs.minimize(quadratic, np.ones(3), (A, c), lambda *_: False, max_iter=5)
    assert at_optimum.iterations == 0 and "zero gradient" in at_optimum.message


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="x0: expected a 1-D array"):
        lbfgs.minimize(quadratic, np.zeros((2, 2)), (jnp.eye(2), jnp.ones(2)), None, max_iter=5)
    with pytest.raises(ValueError, match="max_iter: must be a positive integer"):
        lbfgs.minimize(quadratic, np.zeros(2), (jnp.eye(2), jnp.ones(2)), None, max_iter=0)
