"""The linear models' data path (docs/theory/convex-erm.md#standardised-coordinates): products
with dense rows or sparse rows ``(columns, values)``, the compiled loss gradients of the solvers,
the column moments and the standardised device copy of ``X`` with its smoothness constants."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.special
import threadpoolctl

from mflangevin._sparse import padded_segments
from mflangevin.models.losses import get_loss
from mflangevin.types import Array


def times(X, w: Array) -> Array:
    """``X w`` for a dense ``X`` or sparse rows ``X = (columns, values)``, both ``(n, k)``: row
    ``i`` holds ``values[i, j]`` at column ``columns[i, j]`` (padded with zeros), in ``O(nk)``."""
    if isinstance(X, tuple):
        columns, values = X
        return jnp.sum(values * w[columns], axis=1)
    return X @ w


def transposed_times(X, g: Array, p: int) -> Array:
    """``Xᵀ g`` (``p`` columns) for a dense ``X`` or sparse rows, in ``O(nk)``."""
    if isinstance(X, tuple):
        columns, values = X
        return jnp.zeros(p, values.dtype).at[columns.ravel()].add((g[:, None] * values).ravel())
    return g @ X


@functools.cache
def value_and_grad_of(loss_name: str):
    """``(x, (X, y)) -> (mean_i ℓ(⟨x_i, w⟩ + b, y_i), gradient)``: the predictions and the
    gradient are one matrix product each. Cached, so every model with this loss shares it (and
    so the kernel's compiled step)."""
    loss = get_loss(loss_name)

    def value_and_grad(params, batch):
        X, y = batch
        z = times(X, params["coef"])
        if "intercept" in params:
            z = z + params["intercept"]
        g = loss.derivative(z, y) / y.shape[0]
        grad = {"coef": transposed_times(X, g, params["coef"].shape[0])}
        if "intercept" in params:
            grad["intercept"] = jnp.sum(g)
        return jnp.mean(loss.value(z, y)), grad

    return value_and_grad


@functools.cache
def smooth_gradient(loss_name: str):
    """``(x, (X, y, weights, ridge, mean, inverse)) -> ∇P(x)`` for L-BFGS, ``x = (v[, c])``
    flat in the standardised coordinates and ``P(x) = Σ_i weights_i ℓ(⟨x̃_i, v⟩ + c, y_i) + ½
    Σ_j ridge_j v_j²`` on the standardised rows ``x̃_i = (x_i − mean) ⊙ inverse``, which are
    never formed: ``⟨x̃_i, v⟩ = ⟨x_i, u⟩ − ⟨mean, u⟩`` with ``u = inverse ⊙ v`` and ``X̃ᵀg =
    inverse ⊙ (Xᵀg − mean Σ_i g_i)`` (``mean = 0``, ``inverse = 1`` when ``X`` is already
    standardised; docs/theory/convex-erm.md#the-data-held-once). The weights are ``1/n`` on the
    samples and ``0`` on rows that pad ``X`` to its bucket, so one compiled program serves every
    ``n`` of a bucket with the same ``P``. Cached, as :func:`value_and_grad_of`.

    A dense ``X`` is read once per gradient: the predictions ``X_B u`` and the product
    ``X_Bᵀ g_B`` of each block ``B`` of :func:`fused_rows` rows are taken while the block is in
    the cache (a ``lax.scan`` over the blocks, then the rows left over), where two
    matrix-vector products over the whole of ``X`` read it twice
    (docs/theory/convex-erm.md#l-bfgs).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> X, y = jnp.eye(3), jnp.array([1.0, -1.0, 1.0])  # labels ±1
    >>> data = (X, y, jnp.full(3, 1 / 3), jnp.full(3, 0.1), jnp.zeros(3), jnp.ones(3))
    >>> [round(float(v), 3) for v in smooth_gradient("logistic")(jnp.zeros(4), data)]
    [-0.167, 0.167, -0.167, -0.167]
    """
    loss = get_loss(loss_name)

    def gradient(x, data):
        X, y, weights, ridge, mean, inverse = data
        n, p = y.shape[0], ridge.shape[0]
        coef = inverse * x[:p]  # u
        intercept = (x[p] if x.shape[0] > p else 0) - mean @ coef

        def block(rows):
            X, y, weights = rows
            g = weights * loss.derivative(times(X, coef) + intercept, y)
            return jnp.append(transposed_times(X, g, p), jnp.sum(g))

        size = n if isinstance(X, tuple) else fused_rows(*X.shape)
        count, rows = n // size, (X, y, weights)
        total = jnp.zeros(p + 1, x.dtype)
        if count > 1:  # blocks sliced in place: X is not copied

            def step(total, start):
                sliced = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size), rows)
                return total + block(sliced), None

            total, _ = jax.lax.scan(step, total, jnp.arange(count) * size)
        if count <= 1 or count * size < n:  # one block, or the rows left over
            start = 0 if count <= 1 else count * size
            total = total + block(jax.tree.map(lambda a: a[start:], rows))
        grad = inverse * (total[:p] - mean * total[p]) + ridge * x[:p]
        return jnp.append(grad, total[p]) if x.shape[0] > p else grad

    return gradient


HOST_VALUES = 1 << 20
"""L-BFGS evaluates the gradient with :func:`host_gradient` on the host when the features hold
at most this many values (on CPU): below it, a compiled program's dispatch costs about as much as
its pass. Measured on a 2-core CPU, logistic loss, p = 30–100, the fastest of 50 gradients in
float64: NumPy took 0.69 times the compiled program's time at 569 × 30 (16 against 23 µs),
0.60 at 2,000 × 50, 0.72 at 10,000 × 100, and 1.06 at 20,000 × 100."""


HOST_DERIVATIVES = {
    "squared": lambda z, y: z - y,
    "logistic": lambda z, y: -y * scipy.special.expit(-y * z),
    "smoothed_hinge": lambda z, y: y * np.clip(y * z - 1, -1.0, 0.0),
}
"""``∂ℓ/∂z`` of :mod:`mflangevin.models.losses` in NumPy, for :func:`host_gradient` and the
float64 certificate on the host."""


def host_gradient(loss_name: str):
    """:func:`smooth_gradient` in NumPy, for data on the host: the same ``P``, the same
    ``(x, (X, y, weights, ridge, mean, inverse))`` (``X`` dense or sparse rows ``(columns,
    values)``), two matrix products (by blocks of :func:`host_rows` rows for dense ``X``) and
    no compiled program to dispatch: for small data (see :data:`HOST_VALUES`) and for dense
    ``X`` that the device could not adopt without a copy (see :func:`lbfgs_features`).

    Examples
    --------
    >>> X, y = np.eye(3), np.array([1.0, -1.0, 1.0])  # labels ±1
    >>> data = (X, y, np.full(3, 1 / 3), np.full(3, 0.1), np.zeros(3), np.ones(3))
    >>> [round(float(v), 3) for v in host_gradient("logistic")(np.zeros(4), data)]
    [-0.167, 0.167, -0.167, -0.167]
    """
    derivative = HOST_DERIVATIVES[loss_name]

    def gradient(x, data):
        X, y, weights, ridge, mean, inverse = data
        p = ridge.shape[0]
        coef = inverse * x[:p]
        intercept = (x[p] if x.shape[0] > p else 0.0) - mean @ coef
        if isinstance(X, tuple):
            columns, values = X
            g = weights * derivative(np.sum(values * coef[columns], axis=1) + intercept, y)
            product = np.bincount(columns.ravel(), (g[:, None] * values).ravel(), minlength=p)
            total = np.sum(g)
        else:  # by blocks of rows, each in the cache for both products
            product, total, size = 0, 0, host_rows(X.shape[1])
            for start in range(0, X.shape[0], size):
                rows = slice(start, start + size)
                g = weights[rows] * derivative(X[rows] @ coef + intercept, y[rows])
                product, total = product + g @ X[rows], total + np.sum(g)
        grad = inverse * (product - mean * total) + ridge * x[:p]
        return np.append(grad, total) if x.shape[0] > p else grad

    return gradient


FUSED_VALUES = 1 << 16
"""Values of a block of the fused gradient pass (512 kB in float64), which stay in a core's
cache between the two products: 256 rows of 200 features."""


HOST_VALUES_PER_BLOCK = 1 << 20
"""Values of a block of :func:`host_gradient`'s pass (8 MB in float64): each block costs NumPy
a few calls of microseconds, so the host's blocks are larger than the compiled pass's. Measured
on a 2-core CPU, float64 logistic gradient: at ``10⁶ × 200`` 141 ms a pass against 195 ms with
blocks of 256 or 1024 rows and 211 ms in one block; at ``10⁵ × 200`` 14 ms against 20 ms."""


def host_rows(p: int) -> int:
    """Rows of a block of :func:`host_gradient` over rows of ``p`` values: the power of two
    nearest below ``HOST_VALUES_PER_BLOCK / p``, at least 64.

    Examples
    --------
    >>> host_rows(200), host_rows(100), host_rows(10**6)
    (4096, 8192, 64)
    """
    return 1 << max((HOST_VALUES_PER_BLOCK // p).bit_length() - 1, 6)


def fused_rows(rows: int, p: int) -> int:
    """Rows of a block of :func:`smooth_gradient` over ``rows`` dense rows of ``p`` values: the
    power of two nearest below ``FUSED_VALUES / p``, at least 64 (fewer blocks, each one loop
    step) and at most 4096; all rows in one block when ``X`` holds at most ``CACHED_VALUES``
    values (it stays in the cache between the two products, and the program has no loop to
    trace and compile)."""
    size = 1 << min(max((FUSED_VALUES // p).bit_length() - 1, 6), 12)
    return size if rows * p > CACHED_VALUES and rows > size else rows


def bucket(n: int) -> int:
    """``n`` rounded up to a multiple of ``2^(⌊log₂ n⌋ − 3)`` (at most 1/8 more rows): the
    training sets of a cross-validation, whose sizes differ by a few rows, share a bucket."""
    step = 1 << max(0, n.bit_length() - 4)
    return -(-n // step) * step


SHARED_VALUES = 1 << 22
"""On the device, data of at most this many values are copied, standardised and padded to
their :func:`bucket` (one compiled gradient for the ``n`` of a bucket: the folds of a
cross-validation); larger data are read as they are (see :func:`lbfgs_features`)."""


def as_is(X, mean: np.ndarray, scale: np.ndarray) -> bool:
    """Whether :func:`smooth_gradient` may read dense ``X`` as it is rather than standardised:
    ``⟨x_i, u⟩ − ⟨mean, u⟩`` rounds with an error ``1 + max_j |mean_j|/scale_j`` times that of
    ``⟨x̃_i, v⟩`` (the cancellation when the means are large against the spreads), allowed when
    it keeps the precision of a standardised float32 pass within a bit, the loss that
    :func:`mflangevin.solvers.gram.gram` allows its products (float32 data: means at most the
    spreads; float64: up to about 10⁹ spreads).

    Examples
    --------
    >>> X = np.ones((4, 2))
    >>> as_is(X, np.array([1.0, 0.0]), np.ones(2)), as_is(X, np.array([1e10, 0.0]), np.ones(2))
    (True, False)
    """
    if scipy.sparse.issparse(X):
        return False
    ratio = float(np.max(np.abs(mean) / scale, initial=0.0))
    precision = np.finfo(jax.dtypes.canonicalize_dtype(X.dtype)).eps
    return bool((1 + ratio) * precision <= 2 * np.finfo(np.float32).eps)


def lbfgs_features(X, mean: np.ndarray, scale: np.ndarray, host: bool, copy: bool = False):
    """``(features, mean, inverse, host)`` for :func:`smooth_gradient`, or for
    :func:`host_gradient` where the returned ``host`` is true. Dense ``X`` itself with its
    moments, no copy, when :func:`as_is` allows it and the data are on the host (``host``) or
    hold over :data:`SHARED_VALUES` values: on CPU, the device adopts ``X``'s memory when it can
    (:func:`adopted`), and otherwise the gradient reads ``X`` on the host where it lies (by
    blocks, measured as fast as the compiled pass) rather than copy it; on an accelerator
    ``jax.device_put`` makes the one copy, on the device. Otherwise, or with ``copy`` (for
    :func:`host_hessian`, whose products of two columns would cancel quadratically),
    :func:`padded_features` (``n`` rows on the host, :func:`bucket` ``(n)`` on the device) with
    ``0`` and ``1``.

    Examples
    --------
    >>> X = np.array([[1.0, -2.0], [-1.0, 2.0], [3.0, 0.0]])
    >>> features, mean, inverse, host = lbfgs_features(X, X.mean(0), X.std(0), host=True)
    >>> features is X, mean.tolist(), host
    (True, [1.0, 0.0], True)
    >>> far = X + 1e10  # means far from zero against the spreads: the standardised copy
    >>> lbfgs_features(far, far.mean(0), X.std(0), host=True)[0] is far
    False
    """
    n, p = X.shape
    dtype = jax.dtypes.canonicalize_dtype(X.dtype)
    if not copy and as_is(X, mean, scale) and (host or n * p > SHARED_VALUES):
        host = host or jax.default_backend() == "cpu" and not adopted(X)
        return X, mean.astype(dtype), (1 / scale).astype(dtype), host
    features = padded_features(X, mean, scale, n if host else bucket(n))
    return features, np.zeros(p, dtype), np.ones(p, dtype), host


def adopted(X) -> bool:
    """Whether ``jax.device_put`` on CPU hands the device the memory of ``X`` rather than a
    copy: a C-contiguous array of the device's dtype whose data start at a multiple of 64
    bytes (:func:`aligned_empty` makes such arrays; NumPy's own start at 16).

    Examples
    --------
    >>> adopted(aligned_empty((3, 2), np.float32)), adopted(np.zeros((3, 2), np.float32)[:, :1])
    (True, False)
    """
    return (
        isinstance(X, np.ndarray)
        and X.flags.c_contiguous
        and X.dtype == jax.dtypes.canonicalize_dtype(X.dtype)
        and X.ctypes.data % 64 == 0
    )


def padded_features(X, mean: np.ndarray, scale: np.ndarray, rows: int):
    """The standardised features ``(X − mean)/scale`` (rows of ``(columns, values)`` for a CSR
    ``X``) followed by zero rows up to ``rows``, standardised on the host by blocks into the
    one copy that goes to the device (on CPU the device array is that copy, see
    :func:`aligned_empty`)."""
    n, p = X.shape
    if scipy.sparse.issparse(X):
        return tuple(np.pad(part, ((0, rows - n), (0, 0))) for part in sparse_rows(X, scale))
    out = aligned_empty((rows, p), jax.dtypes.canonicalize_dtype(X.dtype))
    out[n:] = 0
    shift, inverse = mean.astype(out.dtype), (1 / scale).astype(out.dtype)
    rows = max(1, CACHED_VALUES // p)  # the product reads the block that the difference wrote
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        np.subtract(X[start:stop], shift, out=out[start:stop], casting="unsafe")
        out[start:stop] *= inverse
    return out


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array whose data start at a multiple of 64 bytes: ``jax.device_put``
    on CPU then hands the device this memory instead of copying it (measured on ``10⁵ × 200``
    float64 values: 0.12 s for the copy of an array that NumPy placed)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    memory = np.empty(size + 64, np.uint8)
    start = -memory.ctypes.data % 64
    return memory[start : start + size].view(dtype).reshape(shape)


def moments(X: np.ndarray, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """Column means (zeros without an intercept, which alone could absorb them, and for sparse
    ``X``) and root mean squares about them, in float64, in one pass over ``X`` by blocks of
    rows that stay in the cache (no float64 copy of ``X``): each block's mean and squares about
    it, merged into the running ones (Chan, Golub and LeVeque's update, as accurate as two
    passes); a constant column gets the scale ``1``."""
    n, p = X.shape
    mean, square = np.zeros(p), np.zeros(p)
    if scipy.sparse.issparse(X) and X.format == "csc":  # each column's squares, contiguous
        filled = np.diff(X.indptr) > 0  # (reduceat sums each start to the next one)
        square[filled] = np.add.reduceat(
            np.square(X.data[: X.nnz], dtype=np.float64), X.indptr[:-1][filled]
        )
        scale = np.sqrt(square / n)
        return mean, np.where(scale > 0, scale, 1.0)
    if scipy.sparse.issparse(X):  # not centred: centring would fill the zeros in
        square = np.bincount(X.indices, weights=np.square(X.data, dtype=np.float64), minlength=p)
        scale = np.sqrt(square / n)
        return mean, np.where(scale > 0, scale, 1.0)
    rows = max(1, CACHED_VALUES // p)
    for start in range(0, n, rows):
        block = np.asarray(X[start : start + rows], np.float64)
        if not intercept:
            square += np.einsum("ij,ij->j", block, block)
            continue
        seen, size = start, block.shape[0]
        block_mean = block.mean(axis=0)
        centred = block - block_mean
        delta = block_mean - mean
        square += np.einsum("ij,ij->j", centred, centred) + delta**2 * seen * size / (seen + size)
        mean += delta * size / (seen + size)
    scale = np.sqrt(square / n)
    return mean, np.where(scale > 0, scale, 1.0)


CACHED_VALUES = 1 << 19
"""Float64 values (4 MB) of a block of :func:`moments`: measured on a 2-core CPU, one pass by
such blocks over ``10⁵ × 200`` float64 values took 0.048 s, against 0.14 s for two passes by
blocks of ``2¹⁴`` rows."""


BLOCK = 1 << 14
"""Rows a block of the host-side float64 passes over ``X``."""


def row_blocks(X):
    """``(start, block)`` for the blocks of :data:`BLOCK` rows of a dense or CSR ``X``, without
    copies: slices of a dense ``X``, views of a CSR one's arrays (SciPy's row slicing copies
    them, and so does its constructor for views of a larger array: the views are set on an
    empty block instead).

    Examples
    --------
    >>> X = scipy.sparse.random(2 * BLOCK, 2, density=0.5, format="csr", random_state=0)
    >>> [(start, np.shares_memory(block.data, X.data)) for start, block in row_blocks(X)]
    [(0, True), (16384, True)]
    """
    n, p = X.shape
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        if scipy.sparse.issparse(X):
            first, last = X.indptr[start], X.indptr[stop]
            block = scipy.sparse.csr_matrix((stop - start, p), dtype=X.dtype)
            block.data, block.indices = X.data[first:last], X.indices[first:last]
            block.indptr = X.indptr[start : stop + 1] - first
            yield start, block
        else:
            yield start, X[start:stop]


@functools.partial(jax.jit, static_argnums=4, donate_argnums=0)
def standardised(
    X: Array, mean: Array, scale: Array, rows: Array, intercept: bool
) -> tuple[Array, Array, Array, Array]:
    """``X̃ = (X − mean) / scale`` (in the place of ``X``), and the terms of its smoothness:
    ``L_max = max_i ‖x̃_i‖²``, ``mean_i ‖x̃_i‖²`` and the power-iteration estimate of
    ``λ_max(X̃ᵀX̃/n)`` on ``rows``, as one compiled program (an intercept adds a column of ones)."""
    X = (X - mean[None, :]) / scale[None, :]
    norms = jnp.sum(X**2, axis=1) + float(intercept)
    sample = X[rows]
    if intercept:
        sample = jnp.concatenate([sample, jnp.ones((sample.shape[0], 1), X.dtype)], axis=1)

    def power(v, _):
        v = (sample @ v) @ sample
        return v / jnp.linalg.norm(v), None

    start = jnp.ones(sample.shape[1], X.dtype) / math.sqrt(sample.shape[1])
    v, _ = jax.lax.scan(power, start, None, length=50)
    return X, jnp.max(norms), jnp.mean(norms), jnp.sum((sample @ v) ** 2) / sample.shape[0]


def prepare(
    X: np.ndarray, mean: np.ndarray, scale: np.ndarray, b: int, intercept: bool, seed: int
) -> tuple[Array, float]:
    """The standardised features ``X̃ = (X − mean)/scale`` on the device, and the expected
    smoothness ``L(b) = δ(b) L_max + (1 − δ(b)) L_F`` of a uniform ``b``-subset's average per
    unit of ``L_ℓ``, ``δ(b) = (n − b)/(b(n − 1))`` (``L_max`` at ``b = 1``, ``L_F`` at
    ``b = n``). ``L_max`` is exact; ``L_F = λ_max(X̃ᵀX̃/n)`` is estimated by power iteration
    on at most 4096 rows, times 1.5 for safety, and capped by the exact bound
    ``mean_i ‖x̃_i‖²``."""
    n = X.shape[0]
    if scipy.sparse.issparse(X):
        return prepare_sparse(X, scale, b, intercept, seed)
    data = jax.device_put(X, may_alias=False)  # the one device copy, standardised in place
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, 4096), replace=False))
    data, l_max, l_mean, l_sample = standardised(
        data, jnp.asarray(mean, data.dtype), jnp.asarray(scale, data.dtype), jnp.asarray(rows),
        intercept,
    )  # fmt: skip
    l_full = min(float(l_mean), 1.5 * float(l_sample))
    delta = (n - b) / (b * (n - 1)) if n > 1 else 1.0
    return data, delta * float(l_max) + (1 - delta) * l_full


def sparse_rows(X, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a CSR matrix as ``(columns, values)``, both ``(n, k)`` with ``k`` the most
    non-zeros of a row (padded with zeros at column 0), the values divided by ``scale``: what
    :func:`times` reads, ``O(nk)`` memory instead of ``O(np)``."""
    dtype = jax.dtypes.canonicalize_dtype(X.dtype)
    return padded_segments(X, X.data / scale[X.indices], dtype)


def prepare_sparse(X, scale: np.ndarray, b: int, intercept: bool, seed: int):
    """:func:`prepare` for a CSR matrix: its rows scaled (not centred) as ``(columns,
    values)`` on the device, the smoothness from them and, for ``L_F``, power iteration on the
    sampled rows with SciPy."""
    n, p = X.shape
    columns, values = sparse_rows(X, scale)
    norms = np.sum(values.astype(np.float64) ** 2, axis=1) + float(intercept)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, 4096), replace=False))
    sample = scipy.sparse.csr_matrix(X[rows].multiply(1 / scale[None, :]))
    if intercept:
        sample = scipy.sparse.hstack([sample, np.ones((len(rows), 1))], format="csr")
    v = np.ones(sample.shape[1]) / math.sqrt(sample.shape[1])
    for _ in range(50):
        v = sample.T @ (sample @ v)
        v /= np.linalg.norm(v) or 1.0
    l_full = min(float(np.mean(norms)), 1.5 * float(np.sum((sample @ v) ** 2)) / len(rows))
    delta = (n - b) / (b * (n - 1)) if n > 1 else 1.0
    data = (jax.device_put(columns), jax.device_put(values))
    return data, delta * float(np.max(norms)) + (1 - delta) * l_full


_HOST_CURVATURES = {
    "squared": lambda z, y: np.ones_like(z),
    "logistic": lambda z, y: (sigma := scipy.special.expit(z)) * (1 - sigma),
    "smoothed_hinge": lambda z, y: ((y * z > 0) & (y * z < 1)).astype(z.dtype),
}
"""``∂²ℓ/∂z²`` of :mod:`mflangevin.models.losses` in NumPy (labels ``±1``; the smoothed
hinge's second derivative where it has one), for :func:`host_hessian`."""


def host_hessian(loss_name: str):
    """The Hessian of :func:`host_gradient`'s ``P`` for dense standardised ``X`` (the data's
    ``mean`` and ``inverse``, if given, are ``0`` and ``1``): ``X̃ᵀDX̃ + diag(ridge)`` with ``D =
    diag(weights_i ℓ''(z_i, y_i))`` and ``X̃ = (X, 1)`` with the intercept, one ``O(n·p²)``
    matrix product in the dtype of ``X``, returned in float64.

    Examples
    --------
    >>> X, y = np.eye(2), np.array([1.0, -1.0])
    >>> data = (X, y, np.full(2, 0.5), np.full(2, 0.1))
    >>> host_hessian("logistic")(np.zeros(3), data).tolist()  # ℓ''(0) = ¼
    [[0.225, 0.0, 0.125], [0.0, 0.225, 0.125], [0.125, 0.125, 0.25]]
    """
    curvature = _HOST_CURVATURES[loss_name]

    def hessian(x, data):
        X, y, weights, ridge = data[:4]
        p, dim = ridge.shape[0], x.shape[0]
        z = X @ x[:p].astype(X.dtype) + (x[p] if dim > p else 0.0)
        h = weights * curvature(z, y)
        H = np.empty((dim, dim))
        np.matmul(X.T, h[:, None] * X, out=H[:p, :p])
        if dim > p:
            H[:p, p] = H[p, :p] = h @ X
            H[p, p] = np.sum(h)
        H.flat[: p * (dim + 1) : dim + 1] += ridge  # the diagonal's first p entries
        return H

    return hessian


@functools.cache
def _blas() -> threadpoolctl.ThreadpoolController:
    return threadpoolctl.ThreadpoolController()


def one_blas_thread():
    """A context in which NumPy's BLAS runs on one thread, for the host solvers' small matrix
    products. Measured on a 2-core CPU shared with other processes, ``Xᵀ(h ⊙ X)`` took 188 µs on
    one thread against 326 µs on two at 2,000 × 32, and 5.1 ms against 12 ms at 16,384 × 64
    (and up to 400 times longer on two threads when JAX's own threads were busy); entering the
    context costs about 10 µs."""
    return _blas().limit(limits=1, user_api="blas")
