"""MMD, sliced Wasserstein and KSD against closed forms and sampling distributions."""

import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mflangevin
from mflangevin import diagnostics


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: diagnostics.mmd(np.zeros((5, 2)), np.zeros((5, 3))), "other"),
        (lambda: diagnostics.mmd(np.zeros((5, 2)), np.zeros((5, 2)), bandwidth=-1.0), "bandwidth"),
        (
            lambda: diagnostics.kernel_stein_discrepancy(
                np.zeros((5, 2)), lambda p: p, exponent=-2
            ),
            "exponent",
        ),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


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
    # F(μ) = ½‖E_μθ − m‖² + λ' E_μ‖θ‖² has stationary law N(m/(1+2λ'), λ/(2λ') I)
    # (docs/theory/mfld.md).
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
