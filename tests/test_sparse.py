"""The padded layout of compressed sparse matrices against a row-by-row reference: empty
segments, a full one, float32 values, and the columns of coordinate descent built from CSR or
CSC."""

import jax
import numpy as np
import pytest
import scipy.sparse

from mflangevin._sparse import padded_segments
from mflangevin.solvers import coordinate_descent as cd


def reference(X):
    """Segment by segment, in a Python loop: ``(indices, values)`` padded with zeros."""
    m = X.indptr.shape[0] - 1
    k = max(1, int(np.diff(X.indptr).max(initial=0)))
    indices, values = np.zeros((m, k), np.int32), np.zeros((m, k))
    for i in range(m):
        start, stop = X.indptr[i], X.indptr[i + 1]
        indices[i, : stop - start] = X.indices[start:stop]
        values[i, : stop - start] = X.data[start:stop]
    return indices, values


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_padded_segments_equal_the_reference_with_empty_and_full_segments(fmt):
    dense = scipy.sparse.random(30, 12, density=0.2, random_state=0).toarray()
    dense[:, 3] = 0.0  # an empty column
    dense[:, 7] = np.arange(1.0, 31.0)  # a column with every row
    X = scipy.sparse.csr_matrix(dense) if fmt == "csr" else scipy.sparse.csc_matrix(dense)
    indices, values = padded_segments(X, X.data, np.float64)
    expected_indices, expected_values = reference(X)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(values, expected_values)
    assert indices.dtype == np.int32
    # float32 values stay float32; an all-empty matrix gets one zero slot per segment.
    assert padded_segments(X, X.data.astype(np.float32), np.float32)[1].dtype == np.float32
    empty = scipy.sparse.csc_matrix((4, 3))
    assert [part.tolist() for part in padded_segments(empty, empty.data, np.float64)] == [
        [[0]] * 3,
        [[0.0]] * 3,
    ]


def test_columns_from_csr_and_csc_hold_each_column_and_the_padding_counts_them():
    dense = scipy.sparse.random(40, 9, density=0.3, random_state=1).toarray()
    dense[:, 2] = 0.0
    dense[:, 4] = 1.0
    for X in (scipy.sparse.csr_matrix(dense), scipy.sparse.csc_matrix(dense)):
        with jax.enable_x64(True):
            cols, mean = cd.columns(X, intercept=True)
        rows, values = np.asarray(cols.rows), np.asarray(cols.values)
        rebuilt = np.zeros_like(dense)
        for j in range(dense.shape[1]):
            np.add.at(rebuilt[:, j], rows[j], values[j])
        np.testing.assert_array_equal(rebuilt, dense)
        assert not mean.any()
        assert cd.padding(X) == pytest.approx(9 * 40 / np.count_nonzero(dense))
