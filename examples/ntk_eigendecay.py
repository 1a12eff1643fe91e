"""Eigenvalue decay of the NTK Gram matrix for several sample sizes.

Inputs are uniform on the sphere ``S^{d−1}`` with a bias coordinate, ``x = (u, 1)/√2``. For
``σ = relu`` the NTK of :class:`~mflangevin.models.NTKNetwork` is a dot-product kernel with a
square-root singularity at ``uᵀu' = 1``; its eigenvalues on ``S^{d−1}`` decay like ``i^{−β}`` with
``β = d/(d − 1)``. The eigenvalues of the Gram matrix ``K/n`` estimate them: we fit ``β`` on the
leading part of the spectrum for each ``n``, compare the finite-width empirical NTK of a
network at initialisation with the closed form, and show the much faster decay of a smooth
activation (``erf``).

Run ``.venv/bin/python examples/ntk_eigendecay.py`` (under a minute on an idle 2-core CPU), or
``--full`` for larger ``n``.
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
    parser.add_argument("--full", action="store_true", help="n up to 4000")
    parser.add_argument(
        "--out",
        default="figures/ntk_eigendecay.png",
        help="where to save the figure, relative to the current directory",
    )
    parser.add_argument("--dim", type=int, default=3, help="d, inputs on the sphere S^{d-1}")
    parser.add_argument("--width", type=int, default=4096, help="M of the empirical NTK")
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from tqdm import tqdm

from mflangevin.models import NTKNetwork

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sphere_inputs(key, n, dim):
    u = jax.random.normal(key, (n, dim))
    u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    return jnp.concatenate([u, jnp.ones((n, 1))], axis=1) / jnp.sqrt(2.0)


def spectrum(gram):
    """Eigenvalues of ``K/n`` in decreasing order (float64 for the small ones)."""
    n = gram.shape[0]
    return np.linalg.eigvalsh(np.asarray(gram, np.float64) / n)[::-1]


def fitted_decay(eigenvalues, low=10, high_fraction=0.1):
    """``β`` from a least-squares line through ``log λ_i`` against ``log i``, ``low ≤ i ≤ n/10``.

    The range skips the first few eigenvalues (constants, degree-one harmonics) and stops well
    before the Gram matrix's tail, where ``K/n`` no longer estimates the operator's spectrum.
    """
    index = np.arange(1, len(eigenvalues) + 1)
    keep = (index >= low) & (index <= high_fraction * len(eigenvalues))
    return -np.polyfit(np.log(index[keep]), np.log(eigenvalues[keep]), 1)[0]


def main():
    args = parse_args()
    sizes = [1000, 2000, 4000] if args.full else [250, 500, 1000]
    predicted = args.dim / (args.dim - 1)

    relu, erf = NTKNetwork("relu"), NTKNetwork("erf")
    B = relu.init_params(jax.random.key(0), width=args.width, input_dim=args.dim + 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    print(f"relu NTK, inputs on S^{args.dim - 1}: predicted decay exponent beta = {predicted:.3f}")
    for n in tqdm(sizes, desc="Gram spectra", disable=not sys.stderr.isatty()):
        X = sphere_inputs(jax.random.key(n), n, args.dim)
        eigenvalues = spectrum(relu.ntk(X))
        beta = fitted_decay(eigenvalues)
        tqdm.write(f"  n = {n:5d}: fitted beta = {beta:.3f}")
        ax.loglog(np.arange(1, n + 1), eigenvalues, label=f"relu, n={n} (β̂={beta:.2f})")
    empirical = spectrum(relu.empirical_ntk(B, X))
    beta_empirical = fitted_decay(empirical)
    print(
        f"  n = {n:5d}, empirical NTK at width M = {args.width}: fitted beta = {beta_empirical:.3f}"
    )
    ax.loglog(np.arange(1, n + 1), empirical, ":", label=f"relu, empirical NTK, M={args.width}")
    smooth = spectrum(erf.ntk(X))
    print(f"  n = {n:5d}, erf NTK (smooth): fitted beta = {fitted_decay(smooth):.3f}")
    ax.loglog(np.arange(1, n + 1), smooth, "--", label=f"erf, n={n}")
    index = np.arange(1, n + 1)
    ax.loglog(
        index,
        eigenvalues[9] * (index / 10) ** -predicted,
        "k:",
        lw=1,
        label=f"slope −{predicted:.2f} (predicted)",
    )
    ax.set_ylim(max(eigenvalues[-1], 1e-9), 1.0)
    ax.set_xlabel("index i")
    ax.set_ylabel("eigenvalue of K/n")
    ax.set_title(f"NTK eigenvalue decay, inputs on S^{args.dim - 1}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
