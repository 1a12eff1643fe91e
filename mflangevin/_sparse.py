"""Compressed sparse matrices as padded dense arrays, the layout the compiled programs read."""

from __future__ import annotations

import numpy as np


def padded_segments(X, data: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The segments of a compressed sparse ``X`` (the rows of a CSR matrix, the columns of a CSC
    one) as ``(indices, values)``, both ``(m, k)`` for ``m`` segments of at most ``k`` non-zeros,
    padded with zeros at index 0; ``data`` holds the values in the order of ``X.data``.

    Examples
    --------
    >>> import scipy.sparse
    >>> X = scipy.sparse.csr_matrix([[0.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    >>> indices, values = padded_segments(X, X.data, np.float64)
    >>> indices.tolist(), values.tolist()
    ([[1, 2], [0, 0]], [[2.0, 3.0], [4.0, 0.0]])
    """
    m = X.indptr.shape[0] - 1
    lengths = np.diff(X.indptr)
    k = max(1, int(lengths.max(initial=0)))
    segment = np.repeat(np.arange(m), lengths)
    slot = np.arange(X.nnz) - np.repeat(X.indptr[:-1], lengths)
    indices = np.zeros((m, k), np.int32)
    values = np.zeros((m, k), dtype)
    indices[segment, slot] = X.indices[: X.nnz]
    values[segment, slot] = data[: X.nnz]
    return indices, values
