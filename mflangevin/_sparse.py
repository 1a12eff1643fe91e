"""Compressed sparse matrices as padded dense arrays, the layout the compiled programs read."""

from __future__ import annotations

import numpy as np


def padded_segments(X, data: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The segments of a compressed sparse ``X`` (the rows of a CSR matrix, the columns of a CSC
    one) as ``(indices, values)``, both ``(m, k)`` for ``m`` segments of at most ``k`` non-zeros,
    padded with zeros at index 0; ``data`` holds the values in the order of ``X.data``.

    ``O(nnz + mk)`` and vectorised: the stored entries are already in segment order, so they
    fill the slots ``slot < length`` of the ``(m, k)`` arrays row by row, each array written
    once (no index arrays of the non-zeros' size).

    Examples
    --------
    >>> import scipy.sparse
    >>> X = scipy.sparse.csr_matrix([[0.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    >>> indices, values = padded_segments(X, X.data, np.float64)
    >>> indices.tolist(), values.tolist()
    ([[1, 2], [0, 0]], [[2.0, 3.0], [4.0, 0.0]])
    """
    lengths = np.diff(X.indptr)
    k = max(1, int(lengths.max(initial=0)))
    filled = np.arange(k) < lengths[:, None]
    indices = np.zeros(filled.shape, np.int32)
    values = np.zeros(filled.shape, dtype)
    indices[filled] = X.indices[: X.nnz]
    values[filled] = data[: X.nnz]
    return indices, values
