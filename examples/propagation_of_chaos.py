"""Propagation of chaos: the stationary objective gap of ``N`` particles against ``N``.

The ``N``-particle system approximates the mean-field limit up to ``O(1/N)`` uniformly in time
(Suzuki, Nitanda, Wu, ICLR 2023). We measure the gap ``G(μ*) − D(g_{μ_Θ}) ≥ 0`` between the
optimal free energy and the dual bound at the particles (docs/theory/certificates.md), averaged
over the stationary regime of MFLD, for the objective ``F(μ) = ½‖E_μθ − m‖²`` with reference
``ν = N(0, σ² I)``. Here everything is closed-form: ``D(g) = −½‖g‖² − g·m − σ²‖g‖²/(2λ)``,
``G(μ*) = max_g D(g)``, and the gap is ``½(1 + σ²/λ)‖g_μ − g*‖²``; at stationarity its mean is
``d σ² / (2N)`` in continuous time and ``d σ² / (2N (1 − aη/2))``, ``a = 1 + λ/σ²``, for the
Euler–Maruyama scheme — a slope of exactly −1 on log–log axes.

Run ``.venv/bin/python examples/propagation_of_chaos.py`` (under a minute on an idle 2-core CPU) or
``--full``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args():
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="more particles, chains and steps")
    parser.add_argument(
        "--out",
        default="figures/propagation_of_chaos.png",
        help="where to save the figure, relative to the current directory",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import blackjax
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import mflangevin
from mflangevin.diagnostics import particle_count_sweep

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TEMPERATURE = 0.5  # λ
SCALE = 1.0  # σ of ν
STEP_SIZE = 0.05  # η


def build(dim: int):
    """The quadratic objective with its closed-form dual gap ``G(μ*) − D(g)``."""
    m = jnp.linspace(1.0, -1.0, dim)
    objective = mflangevin.MeanFieldObjective(
        feature_map=lambda theta, _: theta,
        risk=lambda z, _: 0.5 * jnp.sum((z - m) ** 2),
        reference=mflangevin.gaussian_reference(SCALE),
        risk_conjugate=lambda g, _: 0.5 * jnp.sum(g**2) + jnp.sum(g * m),
    )
    curvature = 1 + SCALE**2 / TEMPERATURE
    g_star = -m / curvature

    def gap(particles):
        g = objective.risk_gradient(objective.mean_embedding(particles))
        return 0.5 * curvature * jnp.sum((g - g_star) ** 2)

    return objective, gap


def make_measure(dim: int, num_chains: int, burn_in: int, num_steps: int):
    """``measure(key, N)``: the time-averaged stationary gap of each of ``num_chains`` chains."""
    objective, gap = build(dim)
    algorithm = mflangevin.mfld(objective, step_size=STEP_SIZE, temperature=TEMPERATURE)

    def one_chain(key, n):
        init_key, burn_key, run_key = jax.random.split(key, 3)
        start = SCALE * jax.random.normal(init_key, (n, dim))
        state, _ = blackjax.util.run_inference_algorithm(
            burn_key, algorithm, burn_in, initial_position=start, transform=lambda s, i: None
        )
        _, gaps = blackjax.util.run_inference_algorithm(
            run_key,
            algorithm,
            num_steps,
            initial_state=state,
            transform=lambda s, i: gap(s.position),
        )
        return jnp.mean(gaps)

    def measure(key, n):
        keys = jax.random.split(key, num_chains)
        return jax.jit(jax.vmap(one_chain, in_axes=(0, None)), static_argnums=1)(keys, n)

    return measure


def main():
    args = parse_args()

    if args.full:
        dim, counts, num_chains, num_steps = (
            10,
            [8, 16, 32, 64, 128, 256, 512, 1024, 2048],
            256,
            8000,
        )
    else:
        dim, counts, num_chains, num_steps = 2, [8, 16, 32, 64, 128, 256, 512], 64, 2000
    burn_in = 300  # (1 − aη)^300 ≈ 1e-10: the mean has forgotten the start
    measure = make_measure(dim, num_chains, burn_in, num_steps)
    result = particle_count_sweep(measure, counts, jax.random.key(args.seed))

    a = 1 + TEMPERATURE / SCALE**2
    theory = dim * SCALE**2 / (2 * np.asarray(counts) * (1 - a * STEP_SIZE / 2))
    print(f"d = {dim}, λ = {TEMPERATURE}, σ = {SCALE}, η = {STEP_SIZE}, {num_chains} chains")
    print(f"{'N':>6} {'gap':>12} {'± s.e.':>10} {'theory':>12} {'ratio':>7}")
    for n, value, error, exact in zip(
        counts, result.values, result.standard_errors, theory, strict=True
    ):
        print(f"{n:>6} {value:>12.3e} {error:>10.1e} {exact:>12.3e} {value / exact:>7.3f}")
    print(f"fitted slope {result.slope:.3f} ± {result.slope_standard_error:.3f} (theory −1)")

    fig, ax = plt.subplots(figsize=(6, 4.4))
    ax.errorbar(counts, result.values, yerr=2 * result.standard_errors, fmt="o", label="measured")
    fit = np.exp(result.intercept) * np.asarray(counts, float) ** result.slope
    ax.plot(counts, fit, "-", label=f"fit: slope {result.slope:.3f}")
    ax.plot(counts, theory, "k--", lw=1, label=r"$d\sigma^2 / (2N(1 - a\eta/2))$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of particles N")
    ax.set_ylabel(r"stationary gap $G(\mu^*) - D(g_\mu)$")
    ax.set_title("Propagation of chaos: the gap of N particles falls like 1/N", fontsize=10)
    ax.legend(title="error bars: ±2 s.e.", title_fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
