"""Averaged SGD on an NTK-regime network reaches the predicted rate; the last iterate stalls.

Inputs lie on the circle, ``x = (cos φ, sin φ, 1)/√2`` (the constant is a bias), and the network
is an :class:`~mflangevin.models.NTKNetwork` with ``σ = relu``, whose NTK has a closed form. On
the circle the NTK's eigenfunctions are ``cos kφ, sin kφ`` and its eigenvalues ``μ_k`` (computed
here by an FFT of ``k(φ)``) decay like ``k^{-2}``: ``β = 2`` in the index of the eigenvalue.
The teacher ``f* = Σ_k μ_k^r c_k cos(kφ − ψ_k)`` with ``Σ c_k² < ∞`` satisfies the source
condition ``r``; labels carry Gaussian noise. Each ``T`` is one pass over ``T`` fresh samples with
``λ = T^{−β/(2rβ+1)}`` and a constant step; Nitanda & Suzuki (ICLR 2021) predict an excess risk
``O(T^{−2rβ/(2rβ+1)})`` for the averaged iterate.

Run ``.venv/bin/python examples/ntk_asgd_rate.py`` (under a minute on an idle 2-core CPU), or
``--full`` for larger T and more seeds.
"""

import argparse
import pathlib
import sys


def parse_args():
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="T up to 2^17 and 16 seeds")
    parser.add_argument(
        "--out",
        default="figures/ntk_asgd_rate.png",
        help="where to save the figure, relative to the current directory",
    )
    parser.add_argument("--width", type=int, default=1024, help="M, number of neurons")
    parser.add_argument("--source", type=float, default=0.5, help="r, the source condition")
    parser.add_argument("--noise", type=float, default=0.5, help="label noise standard deviation")
    parser.add_argument(
        "--step-sizes", type=float, nargs="+", default=[1.0, 0.05], help="constant step sizes η"
    )
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from tqdm import tqdm

from mflangevin.kernels import asgd
from mflangevin.models import NTKNetwork

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BETA = 2.0  # eigenvalue decay of the relu NTK on the circle, in the eigenvalue index


def circle_inputs(phi):
    return jnp.stack([jnp.cos(phi), jnp.sin(phi), jnp.ones_like(phi)], axis=1) / jnp.sqrt(2.0)


def ntk_eigenvalues(net, num_frequencies, grid=8192):
    """``μ_k``, ``k = 0..K``: the Fourier coefficients of ``φ ↦ k(x(0), x(φ))``."""
    phi = jnp.arange(grid) * (2 * jnp.pi / grid)
    profile = net.ntk(circle_inputs(jnp.zeros(1)), circle_inputs(phi))[0]
    return np.fft.rfft(np.asarray(profile, np.float64)).real[: num_frequencies + 1] / grid


def make_teacher(key, net, source, num_frequencies=256):
    mu = ntk_eigenvalues(net, num_frequencies)[1:]
    k = np.arange(1, num_frequencies + 1)
    # c_k ∝ k^{-0.55} is square-summable but barely: f* is not much smoother than r says.
    coefficients = mu**source * k**-0.55
    coefficients /= np.sqrt(0.5 * np.sum(coefficients**2))  # unit variance under uniform φ
    phases = jax.random.uniform(key, (num_frequencies,), maxval=2 * np.pi)
    freqs, coefficients = jnp.asarray(k, jnp.float32), jnp.asarray(coefficients, jnp.float32)

    def teacher(phi):
        return jnp.cos(phi[:, None] * freqs[None, :] - phases[None, :]) @ coefficients

    return teacher


def main():
    args = parse_args()
    max_log_T, seeds = (17, 16) if args.full else (14, 8)
    horizons = [2**p for p in range(7, max_log_T + 1)]

    net = NTKNetwork("relu")
    teacher = make_teacher(jax.random.key(0), net, args.source)
    B0 = net.init_params(jax.random.key(1), width=args.width, input_dim=3)
    phi_test = jnp.arange(2048) * (2 * jnp.pi / 2048)
    x_test, f_test = circle_inputs(phi_test), teacher(phi_test)
    kernel = asgd.build_kernel()

    def sampler(key):
        k_phi, k_noise = jax.random.split(key)
        phi = jax.random.uniform(k_phi, (1,), maxval=2 * jnp.pi)
        return circle_inputs(phi), teacher(phi) + args.noise * jax.random.normal(k_noise, (1,))

    def excess_risk(B):
        return jnp.mean((net.apply(B, x_test) - f_test) ** 2)

    def run_one(key, num_steps, step_size, l2):
        def body(t, state):
            batch = sampler(jax.random.fold_in(key, t))
            return kernel(state, batch, net.apply, step_size, l2)[0]

        state = jax.lax.fori_loop(0, num_steps, body, asgd.init(B0))
        return excess_risk(state.average), excess_risk(state.position)

    run = jax.jit(jax.vmap(run_one, in_axes=(0, None, None, None)))

    rate = 2 * args.source * BETA / (2 * args.source * BETA + 1)
    results = {}
    with tqdm(
        total=len(args.step_sizes) * sum(horizons),
        unit="step",
        unit_scale=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        for eta in args.step_sizes:
            rows = []
            for T in horizons:
                l2 = T ** (-BETA / (2 * args.source * BETA + 1))
                keys = jax.random.split(jax.random.key(T), seeds)
                averaged, last = run(keys, T, eta, l2)
                rows.append((T, np.mean(averaged), np.mean(last)))
                bar.update(T)
            results[eta] = np.array(rows)

    print(
        f"relu NTK on the circle: beta = {BETA}, source r = {args.source}, width M = {args.width}"
    )
    print(f"predicted slope of the averaged iterate: {-rate:.3f}")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for eta, rows in results.items():
        T, averaged, last = rows.T
        fit = len(T) // 2  # the asymptotic regime: the larger half of the horizons
        slope_avg = np.polyfit(np.log(T[fit:]), np.log(averaged[fit:]), 1)[0]
        slope_last = np.polyfit(np.log(T[fit:]), np.log(last[fit:]), 1)[0]
        print(
            f"step size {eta}: fitted slope averaged {slope_avg:.3f}, last iterate {slope_last:.3f}"
        )
        for t, a, b in rows:
            print(f"  T = {int(t):6d}  averaged {a:.3e}  last {b:.3e}")
        (line,) = ax.loglog(T, averaged, "o-", label=f"averaged, η={eta} (slope {slope_avg:.2f})")
        ax.loglog(T, last, "x--", color=line.get_color(), label=f"last iterate, η={eta}")
    T = results[args.step_sizes[0]][:, 0]
    anchor = results[args.step_sizes[0]][-1, 1]
    ax.loglog(T, anchor * (T / T[-1]) ** -rate, "k:", label=f"predicted slope {-rate:.2f}")
    ax.set_xlabel("T (samples, one pass)")
    ax.set_ylabel("excess risk")
    ax.set_title(f"Averaged SGD, relu NTK, r={args.source}, β={BETA:g}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
