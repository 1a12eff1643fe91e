"""Tests of mflangevin.diagnostics: ESS/R-hat against ArviZ, MMD, sliced Wasserstein, KSD."""

import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from arviz_stats.base import array_stats

import mflangevin
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
        (lambda: diagnostics.mmd(np.zeros((5, 2)), np.zeros((5, 3))), "other"),
        (lambda: diagnostics.mmd(np.zeros((5, 2)), np.zeros((5, 2)), bandwidth=-1.0), "bandwidth"),
        (
            lambda: diagnostics.kernel_stein_discrepancy(
                np.zeros((5, 2)), lambda p: p, exponent=-2
            ),
            "exponent",
        ),
        (lambda: diagnostics.particle_count_sweep(lambda k, n: 1.0, [8], None), "particle_counts"),
        (lambda: diagnostics.fit_power_law([1, 2], [1.0, -1.0]), "positive"),
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


def _gaussian_kernel(a, b, h):
    return np.exp(-np.sum((a - b) ** 2, axis=-1) / (2 * h**2))


def test_mmd_null_and_shift_against_sampling_distribution():
    n, d, h = 400, 2, 1.0
    keys = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(keys[0], (n, d))
    y = jax.random.normal(keys[1], (n, d))
    shift = jnp.array([[0.8, 0.0]])
    same = float(diagnostics.mmd(x, y, bandwidth=h))
    shifted = float(diagnostics.mmd(x, y + shift, bandwidth=h))
    # Sampling distribution: MMD²_u is a U-statistic with kernel
    # h(z, z') = k(x,x') + k(y,y') − k(x,y') − k(x',y). Under the null it is degenerate, so
    # Var = 2 E[h²] / (n(n−1)); in general Var ≤ (2/n) Var h (Hoeffding). E[h²] and Var h are
    # estimated from 20000 independent pairs (relative error ~1%).
    rng = np.random.default_rng(2)
    za, zb = rng.normal(size=(2, 20000, 2, d))

    def h_stat(offset):
        xa, ya = za[:, 0], za[:, 1] + offset
        xb, yb = zb[:, 0], zb[:, 1] + offset
        return (
            _gaussian_kernel(xa, xb, h)
            + _gaussian_kernel(ya, yb, h)
            - _gaussian_kernel(xa, yb, h)
            - _gaussian_kernel(xb, ya, h)
        )

    null_sd = np.sqrt(2 * np.mean(h_stat(0.0) ** 2) / (n * (n - 1)))
    assert abs(same) < 5 * null_sd
    # Closed form under the shift δ: MMD² = 2 (h²/(h²+2))^{d/2} (1 − exp(−‖δ‖²/(2(h²+2)))).
    expected = 2 * (h**2 / (h**2 + 2)) ** (d / 2) * (1 - np.exp(-(0.8**2) / (2 * (h**2 + 2))))
    shifted_sd = np.sqrt(2 * np.var(h_stat(np.array([0.8, 0.0]))) / n)
    assert shifted > 5 * null_sd
    assert abs(shifted - expected) < 4 * shifted_sd
    # The blockwise sums (with a padded last block) give the same number.
    np.testing.assert_allclose(
        float(diagnostics.mmd(x, y + shift, bandwidth=h, block_size=37)), shifted, rtol=1e-4
    )


def test_sliced_wasserstein_matches_gaussian_closed_form():
    n, d, num_projections = 4000, 2, 256
    keys = jax.random.split(jax.random.key(3), 3)
    delta, sigma = np.array([1.0, 0.0], np.float32), 2.0
    x = {"a": jax.random.normal(keys[0], (n, d))}
    y = {"a": sigma * jax.random.normal(keys[1], (n, d)) + delta[None, :]}
    sw2 = float(diagnostics.sliced_wasserstein(x, y, keys[2], num_projections)) ** 2
    # Projected on ω the laws are N(ω·0, 1) and N(ω·δ, σ²): W₂² = (ω·δ)² + (σ − 1)², and
    # E_ω (ω·δ)² = ‖δ‖²/d. Errors: directions, sd ‖δ‖² √(2(d−1)/(d²(d+2))) / √L; samples, the
    # sd of 2(σ−1)(σ̂−σ) and of 2(ω·δ)(mean error), ≈ 2|σ−1|σ/√(2n) and 2‖δ‖√((1+σ²)/(dn)).
    expected = float(np.sum(delta**2)) / d + (sigma - 1) ** 2
    sd_directions = np.sum(delta**2) * np.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / num_projections)
    sd_samples = 2 * abs(sigma - 1) * sigma / np.sqrt(2 * n) + 2 * np.sqrt((1 + sigma**2) / (d * n))
    assert abs(sw2 - expected) < 4 * (sd_directions + sd_samples)


def test_sliced_wasserstein_of_a_translation_with_unequal_sizes():
    x = jax.random.normal(jax.random.key(4), (300, 3))
    y = x[:200] + 0.5
    # Sizes differ, so the merged-breakpoint quantile integral is exercised; a translation by
    # c·1 moves every projection by ω·c1, so SW₂² = E_ω(ω·c1)² + W₂²(x, x[:200]) ≥ 0.25·3/3.
    assert float(diagnostics.sliced_wasserstein(x, y, jax.random.key(5))) > 0.45


def test_ksd_matches_the_pairwise_formula():
    x = jax.random.normal(jax.random.key(6), (50, 3)) + 0.3
    target = mflangevin.gaussian_reference(1.0)
    ours = float(diagnostics.kernel_stein_discrepancy({"t": x}, target.score, block_size=16))
    xs, s = np.asarray(x, np.float64), -np.asarray(x, np.float64)
    r = xs[:, None] - xs[None]
    sq = np.sum(r**2, axis=-1)
    u, b, d = 1.0 + sq, -0.5, 3
    stein = (
        u**b * (s @ s.T)
        + 2 * b * u ** (b - 1) * np.einsum("ijk,ijk->ij", s[None] - s[:, None], r)
        - 2 * b * d * u ** (b - 1)
        - 4 * b * (b - 1) * u ** (b - 2) * sq
    )
    np.testing.assert_allclose(ours, np.sqrt(stein.mean()), rtol=1e-4)


def test_ksd_falls_as_mfld_converges_to_its_gaussian():
    # F(μ) = ½‖E_μθ − m‖² + λ' E_μ‖θ‖² has stationary law N(m/(1+2λ'), λ/(2λ') I) (math.md §2).
    n, d, lam, l2 = 256, 2, 0.5, 0.5
    m = jnp.array([1.0, -1.0])
    mean, var = m / (1 + 2 * l2), lam / (2 * l2)
    objective = mflangevin.MeanFieldObjective(
        feature_map=lambda theta, _: theta,
        risk=lambda z, _: 0.5 * jnp.sum((z - m) ** 2),
        penalty=lambda theta: l2 * jnp.sum(theta**2),
    )
    algorithm = mflangevin.mfld(objective, step_size=0.02, temperature=lam)
    start = jax.random.normal(jax.random.key(7), (n, d)) + 4.0
    _, positions = blackjax.util.run_inference_algorithm(
        jax.random.key(8), algorithm, 750, initial_position=start, transform=lambda s, i: s.position
    )

    def score(p):
        return (mean[None, :] - p) / var

    ksd = jax.jit(
        chex.assert_max_traces(n=1)(lambda p: diagnostics.kernel_stein_discrepancy(p, score))
    )
    values = [float(ksd(positions[t])) for t in (0, 50, 150, 749)]
    assert values[0] > values[1] > values[2] > values[3]
    # At stationarity N·KSD² (V-statistic) = mean_i k_π(θ_i, θ_i) + (1/N)Σ_{i≠j} k_π: mean
    # E k_π(X,X) = (d/σ²) c^{2β} − 2βd c^{2β−2} (c = 1), and the degenerate part has sd
    # ≈ √(2 E k_π(X,X')²), estimated from 20000 pairs of the target. Allow 6 sd (the O(η)
    # discretisation inflates the variance by 1/(1 − η/2) ≈ 1.01, a negligible shift).
    beta = -0.5
    expected = d / var + (-2 * beta * d)
    rng = np.random.default_rng(9)
    xa, xb = np.asarray(mean) + np.sqrt(var) * rng.normal(size=(2, 20000, d))
    sa, sb = (np.asarray(mean) - xa) / var, (np.asarray(mean) - xb) / var
    r, sq = xa - xb, np.sum((xa - xb) ** 2, axis=1)
    u = 1 + sq
    pair = (
        u**beta * np.sum(sa * sb, axis=1)
        + 2 * beta * u ** (beta - 1) * np.sum((sb - sa) * r, axis=1)
        - 2 * beta * d * u ** (beta - 1)
        - 4 * beta * (beta - 1) * u ** (beta - 2) * sq
    )
    assert n * values[3] ** 2 < expected + 6 * np.sqrt(2 * np.mean(pair**2))


def test_particle_count_sweep_recovers_a_power_law():
    def measure(key, n):
        return (1.0 + 0.05 * jax.random.normal(key, (64,))) * 3.0 / n

    result = diagnostics.particle_count_sweep(
        measure, [8, 32, 128, 512], jax.random.key(10), progress=False
    )
    # log v = log 3 − log N + O(0.05/√64): the slope is −1 within a few standard errors.
    assert abs(result.slope + 1) < 4 * result.slope_standard_error
    assert result.values.shape == result.standard_errors.shape == (4,)
    slope, intercept, _ = diagnostics.fit_power_law([1, 10, 100], [2.0, 0.2, 0.02])
    assert slope == pytest.approx(-1.0) and intercept == pytest.approx(np.log(2.0))
