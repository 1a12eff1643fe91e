"""The keyed permutation behind sampling without replacement: a bijection, walked in O(B)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mflangevin.kernels._permutation import permuted_indices

# As callers use it: compiled once per (n, size), the start traced.
_jitted = jax.jit(permuted_indices, static_argnums=(1, 3))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _whole_and_epoch(key, n, size):
    """The whole permutation in one call, and the slices start = 0, size, 2 size, … of it.

    The slices come from one program vmapped over the (traced) starts. When ``size`` does not
    divide ``n``, the shorter last slice is the tail of a full-size slice ending at ``n``.
    """
    starts = list(range(0, n - size + 1, size))
    remainder = n % size
    if remainder:
        starts.append(n - size)
    slices = jax.vmap(lambda start: permuted_indices(key, n, start, size))(
        jnp.asarray(starts, jnp.int32)
    )
    epoch = slices.reshape(-1)
    if remainder:
        epoch = jnp.concatenate([epoch[: n - remainder], slices[-1, size - remainder :]])
    return permuted_indices(key, n, 0, n), epoch


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 1000, 4099])
def test_slices_of_one_epoch_cover_every_index_once(n):
    # Slices of one for tiny n; otherwise a size that divides n (16, 1000) or leaves a remainder.
    size = {16: 4, 17: 5, 1000: 250, 4099: 1000}.get(n, 1)
    whole, epoch = _whole_and_epoch(jax.random.key(n), n, size)
    assert whole.shape == epoch.shape == (n,) and whole.dtype == epoch.dtype == jnp.int32
    np.testing.assert_array_equal(np.sort(whole), np.arange(n))
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
    # The slices are the entries of the whole permutation at those positions.
    np.testing.assert_array_equal(epoch, whole)


def test_keys_pick_the_permutation():
    n = 1000
    first, _ = _whole_and_epoch(jax.random.key(0), n, 250)
    again, _ = _whole_and_epoch(jax.random.key(0), n, 250)
    other, _ = _whole_and_epoch(jax.random.key(1), n, 250)
    np.testing.assert_array_equal(first, again)
    assert np.mean(np.asarray(first) != np.asarray(other)) > 0.9
    # A raw uint32 key works too.
    raw = _jitted(jax.random.PRNGKey(0), n, 0, n)
    np.testing.assert_array_equal(np.sort(raw), np.arange(n))


def test_marginals_are_uniform_over_keys():
    n, num_keys = 10, 4000
    keys = jax.random.split(jax.random.key(42), num_keys)
    perms = np.asarray(jax.jit(jax.vmap(lambda key: permuted_indices(key, n, 0, n)))(keys))
    threshold = stats.chi2.ppf(1 - 1e-4, n - 1)
    for position in (0, n - 1):
        counts = np.bincount(perms[:, position], minlength=n)
        expected = num_keys / n
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert chi2 < threshold, (position, counts)
    # Positions 0 and 1 never share an index.
    assert not np.any(perms[:, 0] == perms[:, 1])


def test_traced_start_compiles_once():
    n, size = 1000, 100
    traces = []

    @jax.jit
    def batch(key, start):
        traces.append(None)
        return permuted_indices(key, n, start, size)

    key = jax.random.key(3)
    epoch = [batch(key, jnp.asarray(start, jnp.int32)) for start in range(0, n, size)]
    assert len(traces) == 1
    np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(n))
    np.testing.assert_array_equal(np.concatenate(epoch), _jitted(key, n, 0, n))


def _shapes(jaxpr):
    """Every array shape in a jaxpr, its sub-jaxprs (loop bodies, branches) included."""
    for var in (*jaxpr.invars, *jaxpr.outvars, *jaxpr.constvars):
        yield getattr(var.aval, "shape", ())
    for eqn in jaxpr.eqns:
        for var in (*eqn.invars, *eqn.outvars):
            yield getattr(var.aval, "shape", ())
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _shapes(sub)


def test_cost_does_not_scale_with_n():
    n, size = 10**7, 100

    def batch(key, start):
        return permuted_indices(key, n, start, size)

    closed = jax.make_jaxpr(batch)(jax.random.key(0), jnp.int32(5 * size))
    shapes = list(_shapes(closed.jaxpr))
    assert (size,) in shapes
    assert not any(n in shape for shape in shapes), sorted(set(shapes))
    # The walk does find a length-n intermediate where there is one.
    dense = jax.make_jaxpr(lambda key: jax.random.permutation(key, n)[:size])(jax.random.key(0))
    assert any(n in shape for shape in _shapes(dense.jaxpr))


def test_works_with_x64():
    key = jax.random.key(17)
    with jax.enable_x64(True):
        whole = jax.jit(permuted_indices, static_argnums=(1, 3))(
            key, 17, jnp.asarray(0, jnp.int64), 17
        )
        assert whole.dtype == jnp.int32
    # The same permutation as without x64.
    np.testing.assert_array_equal(whole, _jitted(key, 17, 0, 17))


@pytest.mark.parametrize(
    ("num_samples", "start", "size", "error"),
    [
        (0, 0, 1, ValueError),
        (10, 0, 0, ValueError),
        (10, 0, 11, ValueError),
        (10, 6, 5, ValueError),
        (2**31 + 1, 0, 1, ValueError),
        (10.0, 0, 1, TypeError),
    ],
)
def test_rejects_bad_sizes(num_samples, start, size, error):
    with pytest.raises(error):
        permuted_indices(jax.random.key(0), num_samples, start, size)
