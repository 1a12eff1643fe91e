"""Particle dual averaging on teacher–student regression: the objective against outer iteration.

A mean-field tanh network learns a three-neuron teacher (docs/theory/pda.md) by PDA with the
paper's normalisation. The figure shows the excess objective ``F(μ̃_t) − F_ref`` on log–log axes
with a ``1/T`` guide, where ``F_ref`` is the mean objective over the last tenth of the run; the
slope is fitted by least squares on ``t ∈ [10, T/10]``, before the excess reaches the particle
noise floor.

Run ``.venv/bin/python examples/pda_regression.py`` (under a minute on an idle 2-core CPU), or
``--full`` for ten times more outer steps and twice the particles.
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
    parser.add_argument("--full", action="store_true", help="T = 20000 outer steps, N = 1024")
    parser.add_argument(
        "--out",
        default="figures/pda_regression.png",
        help="where to save the figure, relative to the current directory",
    )
    parser.add_argument("--temperature", type=float, default=1e-3, help="λ")
    parser.add_argument("--inner-steps", type=int, default=5, help="K_t (constant)")
    parser.add_argument(
        "--mfld-step", type=float, default=0.2, help="η; the inner step size is η_t = λη"
    )
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import jax
import matplotlib
import numpy as np
from tqdm import tqdm

import mflangevin
from mflangevin.datasets import teacher_similarity, teacher_student
from mflangevin.models import MeanFieldNetwork

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    args = parse_args()
    num_outer, num_particles = (20000, 1024) if args.full else (2000, 512)
    chunk = num_outer // 20

    X, y, teacher = teacher_student(jax.random.key(0), 200, 5)
    net = MeanFieldNetwork("tanh", loss="squared")
    objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    lam = args.temperature
    algorithm = mflangevin.pda(
        objective,
        inner_step_size=lam * args.mfld_step,
        temperature=lam,
        num_inner_steps=args.inner_steps,
    )
    state = algorithm.init(net.init_particles(jax.random.key(1), num_particles, 5))

    @jax.jit
    def run(state, keys):
        return jax.lax.scan(lambda s, k: algorithm.step(k, s), state, keys)

    energies = []
    for keys in tqdm(
        jax.random.split(jax.random.key(2), num_outer).reshape(20, chunk),
        "PDA",
        disable=not sys.stderr.isatty(),
    ):
        state, info = run(state, keys)
        energies.append(np.asarray(info.energy))
    energy = np.concatenate(energies)

    t = np.arange(1, num_outer + 1)
    reference = energy[-num_outer // 10 :].mean()
    excess = energy - reference
    window = (t >= 10) & (t <= num_outer // 10)
    slope, intercept = np.polyfit(np.log(t[window]), np.log(excess[window]), 1)
    print(f"outer steps T = {num_outer}, particles N = {num_particles}, λ = {lam}")
    print(f"objective F at t = 1: {energy[0]:.4g}, F_ref (last tenth): {reference:.4g}")
    print(f"fitted slope of log(F − F_ref) against log t on [10, {num_outer // 10}]: {slope:.2f}")
    similarity = float(teacher_similarity(state.output, teacher))
    print(f"teacher similarity of the output particles: {similarity:.3f}")

    fig, ax = plt.subplots(figsize=(5, 4))
    positive = excess > 0
    ax.loglog(t[positive], excess[positive], lw=1, label="PDA: F(μ̃_t) − F_ref")
    ax.loglog(
        t[window], np.exp(intercept) * t[window] ** slope, "k--", label=f"fit, slope {slope:.2f}"
    )
    anchor = np.exp(intercept) * 10.0**slope
    ax.loglog(t[window], anchor * 10.0 / t[window], ":", color="gray", label="1/T guide")
    ax.set_xlabel("outer iteration t")
    ax.set_ylabel("excess objective F − F_ref (½ squared error)")
    ax.set_title(f"PDA on teacher–student regression, N = {num_particles}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    print(f"figure saved to {out}")


if __name__ == "__main__":
    main()
