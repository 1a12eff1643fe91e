"""The linear models' data path: the fused L-BFGS gradient, the one-pass moments and the copy
that the device adopts, each against the direct computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mflangevin.models import _linear_data
from mflangevin.models._linear_data import (
    adopted,
    aligned_empty,
    fused_rows,
    host_gradient,
    lbfgs_features,
    moments,
    padded_features,
    smooth_gradient,
)
from mflangevin.models.losses import get_loss
from mflangevin.solvers.lbfgs import _evaluate


@pytest.mark.parametrize("intercept", [True, False])
def test_the_fused_gradient_is_the_gradient_of_the_objective(compilations, monkeypatch, intercept):
    """Blocks of 256 rows and the 32 left over, each read once for both products: ``jax.grad``
    of ``P`` written as one pass over all rows, to round-off (float64), with padded rows of zero
    weight; compiled once for two points."""
    monkeypatch.setattr(_linear_data, "CACHED_VALUES", 0)  # blocks however small X is
    monkeypatch.setattr(_linear_data, "FUSED_VALUES", 256 * 5)
    rows, n, p = 800, 700, 5
    rng = np.random.default_rng(0)
    X = np.zeros((rows, p))
    X[:n] = rng.normal(size=(n, p))
    y, weights = np.zeros(rows), np.zeros(rows)
    y[:n], weights[:n] = np.sign(rng.normal(size=n)), 1 / n
    ridge = rng.uniform(0.1, 1.0, p)
    loss = get_loss("logistic")

    def objective(x):
        z = X @ x[:p] + (x[p] if intercept else 0.0)
        return jnp.sum(weights * loss.value(z, y)) + 0.5 * jnp.sum(ridge * x[:p] ** 2)

    assert fused_rows(rows, p) == 256
    with jax.enable_x64(True):
        data = jax.device_put((X, y, weights, ridge, np.zeros(p), np.ones(p)))
        for seed in (1, 2):
            x = np.random.default_rng(seed).normal(size=p + intercept)
            fused = np.asarray(_evaluate(smooth_gradient("logistic"), x, data))
            np.testing.assert_allclose(fused, jax.grad(objective)(x), rtol=1e-13, atol=1e-15)
    assert compilations.count("jit(_evaluate)") == 1


@pytest.mark.parametrize("loss", ["squared", "logistic", "smoothed_hinge"])
def test_the_host_gradient_is_the_compiled_one(loss):
    """NumPy on the host and the compiled program: the same ``∇P`` to round-off (float64), on
    dense rows and on sparse rows ``(columns, values)``, with and without an intercept."""
    rng = np.random.default_rng(0)
    n, p, k = 40, 6, 3
    columns = np.stack([rng.choice(p, k, replace=False) for _ in range(n)])
    values = rng.normal(size=(n, k))
    dense = np.zeros((n, p))
    np.put_along_axis(dense, columns, values, axis=1)
    y = np.sign(rng.normal(size=n)) if loss != "squared" else rng.normal(size=n)
    weights, ridge = np.full(n, 1 / n), rng.uniform(0.1, 1.0, p)
    with jax.enable_x64(True):
        for X in (dense, (columns, values)):
            data = (X, y, weights, ridge, rng.normal(size=p), rng.uniform(0.5, 2.0, p))
            for size in (p, p + 1):
                x = rng.normal(size=size)
                compiled = np.asarray(_evaluate(smooth_gradient(loss), x, jax.device_put(data)))
                np.testing.assert_allclose(
                    host_gradient(loss)(x, data), compiled, rtol=1e-12, atol=1e-15
                )


def test_blocks_hold_about_the_same_values():
    """About ``2^16`` values a block, 64 to 4096 rows (the rows left over: one more block)."""
    assert fused_rows(106496, 200) == 256 and fused_rows(65536, 20) == 2048
    assert fused_rows(106496, 10**5) == 64 and fused_rows(1 << 20, 1) == 4096
    assert fused_rows(33792, 20) == 2048 and fused_rows(2560, 250) == 256
    assert fused_rows(237 * 10**4, 1) == 4096 and fused_rows(10**6, 200) == 256
    assert fused_rows(8192, 20) == 8192  # X in the cache: one block


def test_the_one_pass_moments_are_the_two_pass_ones(monkeypatch):
    """Blocks of 8 rows merged (Chan, Golub, LeVeque) against NumPy's mean and standard
    deviation of the whole, to round-off, on columns far from zero; float32 input read in
    float64; the input untouched."""
    monkeypatch.setattr(_linear_data, "CACHED_VALUES", 8 * 3)
    X = np.random.default_rng(0).normal(size=(61, 3)) * [1.0, 1e-3, 0.0] + [1e4, -2.0, 7.0]
    before = X.copy()
    mean, scale = moments(X, intercept=True)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(scale[:2], X.std(axis=0)[:2], rtol=1e-9)
    assert scale[2] == 1.0  # a constant column
    mean, scale = moments(X, intercept=False)
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_allclose(scale, np.sqrt(np.mean(X**2, axis=0)), rtol=1e-14)
    mean32, _ = moments(X.astype(np.float32), intercept=True)
    np.testing.assert_allclose(mean32, X.astype(np.float32).mean(axis=0, dtype=np.float64))
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_moments_are_the_root_mean_squares_by_either_format(fmt):
    """Sparse ``X`` (CSR by its column indices, CSC by its contiguous columns): zero means and
    the uncentred root mean squares, to round-off; empty columns, first and last, get ``1``."""
    import scipy.sparse

    X = scipy.sparse.random(40, 6, density=0.3, format="csc", random_state=0)
    X = scipy.sparse.hstack([scipy.sparse.csc_matrix((40, 1)), X, scipy.sparse.csc_matrix((40, 2))])
    dense = X.toarray()
    mean, scale = moments(X.asformat(fmt), intercept=True)
    np.testing.assert_array_equal(mean, 0.0)
    expected = np.sqrt(np.mean(dense**2, axis=0))
    np.testing.assert_allclose(scale, np.where(expected > 0, expected, 1.0), rtol=1e-14)
    assert scale[0] == scale[-1] == scale[-2] == 1.0


def test_the_aligned_copy_is_adopted_by_the_device():
    a = aligned_empty((5, 3), np.float32)
    assert a.shape == (5, 3) and a.dtype == np.float32 and a.ctypes.data % 64 == 0
    a[:] = 1.0
    if jax.default_backend() == "cpu":  # no copy: the device array is this memory
        assert jax.device_put(a).unsafe_buffer_pointer() == a.ctypes.data


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("intercept", [True, False])
def test_the_gradient_of_x_as_it_is_is_the_standardised_copys(monkeypatch, dtype, intercept):
    """``X`` read as it is through the standardisation's affine map, in blocks and the rows left
    over: the gradient of the standardised copy, to round-off of the dtype; means far from zero
    against the spreads (more than one for float32, more than 10⁹ for float64) fall back to the
    copy."""
    monkeypatch.setattr(_linear_data, "CACHED_VALUES", 0)
    monkeypatch.setattr(_linear_data, "SHARED_VALUES", 0)  # X as it is, however small
    n, p = 300, 7  # blocks of 128 rows: two and 44 left over
    monkeypatch.setattr(_linear_data, "FUSED_VALUES", 128 * p)
    monkeypatch.setattr(_linear_data, "HOST_VALUES_PER_BLOCK", 128 * p)
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(n, p)) * rng.uniform(0.5, 2.0, p) + rng.uniform(-1, 1, p) / 2).astype(
        dtype
    )
    y, weights = np.sign(rng.normal(size=n)), np.full(n, 1 / n)
    mean, scale = moments(X, intercept)
    with jax.enable_x64(True):
        features, shift, inverse, _ = lbfgs_features(X, mean, scale, host=False)
        assert features is X and np.array_equal(shift, mean.astype(dtype))
        copy = padded_features(X, mean, scale, n)
        ridge = np.full(p, 1e-3, dtype)
        as_is = jax.device_put((X, y.astype(dtype), weights.astype(dtype), ridge, shift, inverse))
        standardised = (copy, *as_is[1:4], np.zeros(p, dtype), np.ones(p, dtype))
        for seed in (1, 2):
            x = np.random.default_rng(seed).normal(size=p + intercept).astype(dtype)
            got = np.asarray(_evaluate(smooth_gradient("logistic"), x, as_is), np.float64)
            expected = np.asarray(_evaluate(smooth_gradient("logistic"), x, standardised))
            tolerance = 50 * np.finfo(dtype).eps
            np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
            host = host_gradient("logistic")(x, (X, *as_is[1:]))
            np.testing.assert_allclose(host, expected, rtol=tolerance, atol=tolerance)
        far = 2.0 if dtype == np.float32 else 2e9
        features, shift, inverse, _ = lbfgs_features(
            X + far * scale.astype(dtype), mean + far * scale, scale, host=True
        )
        assert features is not X and not np.any(shift) and np.all(inverse == 1)


def test_the_fit_reads_x_where_it_lies(monkeypatch):
    """Over ``SHARED_VALUES`` values, L-BFGS on CPU reads the caller's ``X`` without a copy:
    64-byte aligned float64 ``X`` is the device buffer; NumPy's own (16-byte aligned) is read
    on the host as it is."""
    from mflangevin.models import LinearClassifier, linear

    monkeypatch.setattr(linear, "HOST_VALUES", 0)
    monkeypatch.setattr(_linear_data, "SHARED_VALUES", 0)
    read = []
    minimize = linear.lbfgs.minimize

    def spy(gradient, x0, data, *args, **kwargs):
        read.append(data[0])
        return minimize(gradient, x0, data, *args, **kwargs)

    monkeypatch.setattr(linear.lbfgs, "minimize", spy)
    rng = np.random.default_rng(0)
    X = aligned_empty((200, 4), np.float64)
    X[:] = rng.normal(size=X.shape)
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    with jax.enable_x64(True):
        aligned = LinearClassifier(l2=1e-3, solver="lbfgs").fit(X, y)
        shifted = aligned_empty((X.size + 2,), np.float64)[2:].reshape(X.shape)  # at 16 mod 64
        shifted[:] = X
        unaligned = LinearClassifier(l2=1e-3, solver="lbfgs").fit(shifted, y)
    assert aligned.converged_ and unaligned.converged_
    if jax.default_backend() == "cpu":
        assert read[0].unsafe_buffer_pointer() == X.ctypes.data
        assert read[1] is shifted and not adopted(shifted)
