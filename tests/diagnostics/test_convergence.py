"""ESS and R-hat of observables against ArviZ's, on the same arrays."""

import jax
import numpy as np
import pytest
from arviz_stats.base import array_stats

from mflangevin import diagnostics


def _ar1_draws(seed, shape, rho=0.7):
    """Autocorrelated draws with ties in the last column (exercises the tie-averaged ranks)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=shape)
    x = np.zeros(shape)
    x[:, 0] = noise[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    x[..., -1] = np.round(x[..., -1])
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def draws():
    return _ar1_draws(0, (3, 61, 2))


@pytest.mark.parametrize("method", ["bulk", "tail", "mean"])
def test_ess_agrees_with_arviz(draws, method):
    ours = np.asarray(jax.jit(lambda x: diagnostics.ess(x, method=method))(draws))
    kwargs = {"prob": 0.89} if method == "tail" else {}
    reference = array_stats.ess(np.moveaxis(draws, (0, 1), (-2, -1)), method=method, **kwargs)
    # Same algorithm in float32 against float64: agreement to float32 round-off.
    np.testing.assert_allclose(ours, reference, rtol=1e-4)


def _special_draws():
    """Columns: one NaN draw, one infinite draw, constant, and ordinary draws (review 2026-11)."""
    x = np.random.default_rng(1).normal(size=(4, 40, 4)).astype(np.float32)
    x[0, 0, 0] = np.nan
    x[1, 5, 1] = np.inf
    x[..., 2] = 3.5
    return x


@pytest.mark.parametrize("method", ["bulk", "tail", "mean"])
def test_ess_of_nan_and_constant_draws_agrees_with_arviz(method):
    """NaN draws give NaN (not 416.5) and constant draws the draw count (not NaN), as ArviZ."""
    x = _special_draws()
    ours = np.asarray(jax.jit(lambda v: diagnostics.ess(v, method=method))(x))
    kwargs = {"prob": 0.89} if method == "tail" else {}
    with np.errstate(invalid="ignore"):
        reference = array_stats.ess(np.moveaxis(x, (0, 1), (-2, -1)), method=method, **kwargs)
    assert np.isnan(ours[0]) and ours[2] == 4 * 40
    np.testing.assert_allclose(ours, reference, rtol=1e-4)


def test_rhat_agrees_with_arviz_and_flags_a_stuck_chain(draws):
    rhat = jax.jit(diagnostics.rhat)
    ours = np.asarray(rhat(draws))
    reference = array_stats.rhat(np.moveaxis(draws, (0, 1), (-2, -1)))
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    shifted = draws.copy()
    shifted[0] += 5.0
    assert np.all(np.asarray(rhat(shifted)) > 1.5)


def test_ess_rhat_take_pytrees_and_other_axes(draws):
    out = jax.jit(diagnostics.ess)({"a": draws, "b": draws[..., 0]})
    assert out["a"].shape == (2,) and out["b"].shape == ()
    swapped = jax.jit(lambda x: diagnostics.ess(x, chain_axis=2, draw_axis=0))(
        np.moveaxis(draws, 0, 2)
    )
    np.testing.assert_allclose(np.asarray(swapped), np.asarray(out["a"]), rtol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: diagnostics.ess(np.zeros((2, 3))), "at least 4 draws"),
        (lambda: diagnostics.ess(np.zeros(10)), "chain and a draw axis"),
        (lambda: diagnostics.rhat(np.zeros((1, 10))), "at least 2 chains"),
        (lambda: diagnostics.ess(np.zeros((2, 10)), method="median"), "method"),
        (lambda: diagnostics.ess(np.zeros((2, 10)), method="tail", prob=1.5), "prob"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_invariant_diagnostics_of_a_history():
    positions = jax.random.normal(jax.random.key(0), (2, 40, 16, 3))
    out = jax.jit(diagnostics.invariant_diagnostics)(positions)
    assert set(out) == {"ess_bulk", "ess_tail", "rhat"}
    assert set(out["rhat"]) == {"theta_mean", "theta_sd"}
    assert out["ess_bulk"]["theta_mean"].shape == (3,)
