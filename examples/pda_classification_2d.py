"""Particle dual averaging on two moons: learned features and test accuracy against MFLD and a
fixed random-feature (kernel) model.

A mean-field network of ``output_weight`` neurons ``h(θ, x) = a tanh(wᵀx + b)`` is trained with
the logistic loss by PDA and by MFLD (the same number of inner Langevin steps, the same
temperature and the MFLD step ``η`` matched by ``η_t = λη``). The kernel model keeps the first
layer at its random initialisation and trains only the output layer (L2-regularised logistic
regression on the ``N`` random features). The figure shows the first-layer weights ``w_i`` of the
PDA particles at the start, middle and end (colour: sign of ``a_i``): they move away from the
initial Gaussian cloud, which a model in the kernel regime never does.

Run ``.venv/bin/python examples/pda_classification_2d.py`` (under a minute on an idle 2-core CPU),
or ``--full`` for four times more outer steps and particles.
"""

import argparse
import functools
import pathlib
import sys


def parse_args():
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="T = 1200 outer steps, N = 1024")
    parser.add_argument(
        "--out",
        default="figures/pda_classification_2d.png",
        help="where to save the figure, relative to the current directory",
    )
    parser.add_argument("--temperature", type=float, default=1e-3, help="λ")
    parser.add_argument("--inner-steps", type=int, default=10, help="K_t (constant)")
    parser.add_argument("--mfld-step", type=float, default=0.5, help="η; PDA uses η_t = λη")
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from sklearn.datasets import make_moons
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

import mflangevin
from mflangevin.models import MeanFieldNetwork

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def moons(num, seed):
    X, y = make_moons(num, noise=0.2, random_state=seed)
    X = (X - np.array([0.5, 0.25])) / np.array([1.0, 0.5])
    return jnp.asarray(X, jnp.float32), jnp.asarray(2 * y - 1, jnp.float32)


def accuracy(net, particles, X, y):
    return float(jnp.mean(jnp.sign(net.predict(particles, X)) == y))


def main():
    args = parse_args()
    num_outer, num_particles = (1200, 1024) if args.full else (300, 256)

    X, y = moons(200, seed=0)
    X_test, y_test = moons(2000, seed=1)
    net = MeanFieldNetwork("output_weight", loss="logistic", activation="tanh")
    lam = args.temperature
    objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    start = net.init_particles(jax.random.key(0), num_particles, 2)

    dual_fn = functools.partial(mflangevin.dual_objective, num_samples=1024)
    pda = mflangevin.pda(objective, lam * args.mfld_step, lam, args.inner_steps, dual_fn=dual_fn)
    mfld = mflangevin.mfld(objective, step_size=args.mfld_step, temperature=lam)

    @jax.jit
    def run_pda(state, keys):
        return jax.lax.scan(lambda s, k: pda.step(k, s), state, keys)

    @jax.jit
    def run_mfld(state, keys):
        return jax.lax.scan(lambda s, k: mfld.step(k, s), state, keys)

    half = num_outer // 2
    state = pda.init(start)
    snapshots = [start]
    infos = []
    for keys in tqdm(
        jax.random.split(jax.random.key(1), num_outer).reshape(2, half),
        "PDA",
        disable=not sys.stderr.isatty(),
    ):
        state, info = run_pda(state, keys)
        snapshots.append(state.position)
        infos.append(info)
    mfld_state, _ = run_mfld(
        mfld.init(start), jax.random.split(jax.random.key(2), num_outer * args.inner_steps)
    )

    features = np.asarray(jnp.tanh(X @ start["w"].T + start["b"]))
    features_test = np.asarray(jnp.tanh(X_test @ start["w"].T + start["b"]))
    kernel_model = LogisticRegression(max_iter=2000).fit(features, np.asarray(y))

    results = {
        "PDA (output iterate)": accuracy(net, state.output, X_test, y_test),
        "PDA (last iterate)": accuracy(net, state.position, X_test, y_test),
        "MFLD": accuracy(net, mfld_state.position, X_test, y_test),
        "random features (kernel)": float(kernel_model.score(features_test, np.asarray(y_test))),
    }
    print(f"two moons: 200 training, 2000 test points; N = {num_particles}, λ = {lam}")
    print(f"PDA: T = {num_outer} outer steps of K = {args.inner_steps}; MFLD: the same inner steps")
    for name, value in results.items():
        print(f"test accuracy, {name}: {value:.3f}")
    last = infos[-1]
    print(
        f"PDA at the last outer step: objective F = {float(last.energy[-1]):.4f}, "
        f"dual bound D = {float(last.dual_bound[-1]):.4f} (D ≤ min G ≤ G = F + λ KL)"
    )
    moved = float(jnp.mean(jnp.linalg.norm(state.position["w"] - start["w"], axis=1)))
    print(f"mean distance travelled by the first-layer weights w_i: {moved:.2f}")

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.8))
    limit = 1.05 * max(float(np.abs(np.asarray(p["w"])).max()) for p in snapshots)
    stages = ["start", f"middle (t = {half})", f"end (t = {num_outer})"]
    for ax, particles, title in zip(axes[:3], snapshots, stages, strict=True):
        w, a = np.asarray(particles["w"]), np.asarray(particles["a"])
        ax.scatter(*w[a > 0].T, s=4, c="tab:red", label="output weight a_i > 0")
        ax.scatter(*w[a <= 0].T, s=4, c="tab:blue", label="output weight a_i ≤ 0")
        ax.set_title(f"PDA particles, {title}")
        ax.set_xlabel("first-layer weight w_i1 (on x₁)")
        ax.set_ylabel("first-layer weight w_i2 (on x₂)")
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
    axes[0].legend(loc="upper left", fontsize=8, markerscale=3)
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(-2, 2, 150), jnp.linspace(-2.5, 2.5, 150)), -1)
    values = net.predict(state.output, grid.reshape(-1, 2)).reshape(150, 150)
    bound = float(jnp.abs(values).max())
    filled = axes[3].contourf(
        grid[..., 0], grid[..., 1], values, levels=20, cmap="RdBu_r", vmin=-bound, vmax=bound
    )
    fig.colorbar(filled, ax=axes[3], label="network output f(x) (logit)")
    axes[3].contour(grid[..., 0], grid[..., 1], values, levels=[0.0], colors="k", linewidths=1)
    for label, colour, name in [(1, "tab:red", "class +1"), (-1, "tab:blue", "class −1")]:
        points = np.asarray(X)[np.asarray(y) == label]
        axes[3].scatter(*points.T, c=colour, s=14, edgecolors="k", linewidths=0.5, label=name)
    axes[3].legend(loc="lower left", fontsize=8, title="training points", title_fontsize=8)
    axes[3].set_xlabel("input x₁ (standardised)")
    axes[3].set_ylabel("input x₂ (standardised)")
    axes[3].set_title(
        f"PDA decision function, black line f = 0 (test acc. {results['PDA (output iterate)']:.2f})"
    )
    fig.suptitle(
        f"Particle dual averaging on two moons: first-layer weights of the N = {num_particles} "
        "neurons move away from their Gaussian start (features are learned)"
    )
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"figure saved to {out}")


if __name__ == "__main__":
    main()
