"""Particle-count sweeps and power-law fits."""

import jax
import numpy as np
import pytest

from mflangevin import diagnostics


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


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: diagnostics.particle_count_sweep(lambda k, n: 1.0, [8], None), "particle_counts"),
        (lambda: diagnostics.fit_power_law([1, 2], [1.0, -1.0]), "positive"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
