"""ESS and R-hat of a particle system, the ArviZ way: observables of the measure, not particles.

Four independent MFLD systems (chains) fit a teacher–student regression on two-dimensional
inputs. The run becomes an ArviZ ``DataTree`` (:func:`mflangevin.arviz.to_datatree`) with the
certificates recorded by :func:`mflangevin.monitor` (the dual bound, the free energy and the
duality gap every 50 steps). We compare R-hat of permutation-invariant
observables (particle means, predictions) with per-particle-index R-hat, measure how far the
chains' final measures are from each other (MMD, sliced Wasserstein), and draw the certificates
(the objective, the free energy and the dual bound in one panel, the gap below), the particle
marginals and the neurons beside the teacher's.

Run ``.venv/bin/python examples/arviz_diagnostics.py`` (under a minute on an idle 2-core CPU) or
``--full``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args():
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="more particles and steps")
    parser.add_argument(
        "--out",
        default="figures/arviz.png",
        help="base path of the figures, relative to the current directory: "
        "<stem>_certificates.png, <stem>_marginals.png, <stem>_neurons.png",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the chains")
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from tqdm import tqdm

import mflangevin
from mflangevin import arviz as mf_arviz
from mflangevin import diagnostics
from mflangevin.datasets import teacher_student
from mflangevin.models import MeanFieldNetwork

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TEMPERATURE = 0.1


def run_chains(algorithm, key, starts, num_chains, num_steps, num_chunks):
    """Independent chains from ``starts``, in ``num_chunks`` compiled pieces so that long runs show
    progress; the same keys as ``blackjax.util.run_inference_algorithm`` on each chain."""
    chain_keys = jax.random.split(key, num_chains)
    keys_step, keys_init = jax.vmap(jax.random.split, out_axes=1)(chain_keys)
    states = jax.vmap(algorithm.init)(starts, keys_init)
    keys_step = jax.vmap(lambda k: jax.random.split(k, num_steps))(keys_step)

    @jax.jit
    def advance(states, keys):
        def one(state, keys):
            def step(state, key):
                state, info = algorithm.step(key, state)
                return state, (state, info)

            return jax.lax.scan(step, state, keys)

        return jax.vmap(one)(states, keys)

    pieces = []
    for keys in tqdm(
        jnp.split(keys_step, num_chunks, axis=1),
        desc="MFLD chains",
        disable=not sys.stderr.isatty(),
    ):
        states, piece = advance(states, keys)
        pieces.append(piece)
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *pieces)


def main():
    args = parse_args()
    n, num_steps, num_chains = (512, 8000, 4) if args.full else (64, 2000, 4)

    key_data, key_init, key_run, key_prior, key_sw = jax.random.split(jax.random.key(args.seed), 5)
    X, y, teacher = teacher_student(key_data, 200, input_dim=2)
    net = MeanFieldNetwork("tanh", loss="squared")
    objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    algorithm = mflangevin.monitor(
        mflangevin.mfld(objective, step_size=0.1, temperature=TEMPERATURE),
        objective,
        TEMPERATURE,
        every=50,
        gap=True,
    )
    starts = jax.vmap(lambda k: net.init_particles(k, n, input_dim=2))(
        jax.random.split(key_init, num_chains)
    )
    history = run_chains(algorithm, key_run, starts, num_chains, num_steps, num_chunks=10)
    X_grid = jnp.linspace(-2.0, 2.0, 5)[:, None] * jnp.array([[1.0, 0.0]])

    def observables(particles):
        return {**diagnostics.particle_moments(particles), "f": net.predict(particles, X_grid)}

    tree = mf_arviz.to_datatree(
        history, observables=observables, reference=objective.reference, rng_key=key_prior
    )
    # Statistics on the second half of the run (the first half is burn-in).
    second_half = tree.isel(draw=slice(num_steps // 2, None))
    summary = az.summary(second_half, var_names=["w_mean", "b_mean", "f"], kind="diagnostics")
    print(summary.to_string())
    per_particle = az.rhat(second_half, var_names=["w"])["w"].values
    invariant = summary["r_hat"].to_numpy(dtype=float)
    print(f"R-hat of invariant observables: max {invariant.max():.3f}")
    print(
        f"R-hat per particle index (w): median {np.median(per_particle):.3f}, "
        f"max {per_particle.max():.3f}"
    )
    final = [jax.tree.map(lambda x, c=c: x[c, -1], history[0].position) for c in range(num_chains)]
    prior = {name: jnp.asarray(tree["prior"][name].values[0]) for name in ("w", "b")}
    print(
        f"chain 0 vs chain 1: MMD² {float(diagnostics.mmd(final[0], final[1])):.4f}, "
        f"sliced W2 {float(diagnostics.sliced_wasserstein(final[0], final[1], key_sw)):.3f}"
    )
    print(
        f"chain 0 vs prior ν: MMD² {float(diagnostics.mmd(final[0], prior)):.4f}, "
        f"sliced W2 {float(diagnostics.sliced_wasserstein(final[0], prior, key_sw)):.3f}"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "certificates": plot_certificates(tree, n, num_chains),
        "marginals": mf_arviz.plot_particle_marginals(tree, backend="matplotlib"),
        "neurons": mf_arviz.plot_neurons(tree, backend="matplotlib", marginal=False),
    }
    sizes = {"marginals": (10, 3.8), "neurons": (6, 5.5)}
    for name, figure in figures.items():
        if name in sizes:
            figure = figure.viz["figure"].item()
            figure.set_size_inches(*sizes[name])
            LABEL[name](figure, tree, n, num_chains, teacher)
        path = out.with_name(f"{out.stem}_{name}{out.suffix}")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        print(f"saved {path}")


def plot_certificates(tree, n, num_chains):
    """Per chain, on the steps ``monitor`` recorded: the objective F(μ), the free energy
    Ĝ = F + λ KL(μ‖ν) and the dual bound D(g_μ) ≤ G(μ*) in one panel, so that D can be read
    against both; the duality gap Ĝ − D below. Ĝ and the gap use a nearest-neighbour entropy
    estimate, noisy at N = 64: a gap below zero is that noise."""
    stats = tree["sample_stats"]
    steps = np.flatnonzero(np.isfinite(stats["dual_bound"].values[0]))
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": (2, 1)}
    )
    curves = {"mean_field_energy": "-", "objective": "--", "dual_bound": ":"}
    for c in range(num_chains):
        for name, style in curves.items():
            top.plot(steps, stats[name].values[c, steps], style, color=f"C{c}", lw=1.2)
        bottom.plot(steps, stats["gap"].values[c, steps], color=f"C{c}", lw=1.2)
    bottom.axhline(0.0, color="k", lw=0.8)
    lines = [plt.Line2D([], [], color="k", ls=style) for style in curves.values()]
    lines += [plt.Line2D([], [], color=f"C{c}") for c in range(num_chains)]
    names = ["objective F(μ)", "free energy Ĝ = F + λ KL(μ‖ν)", "dual bound D(g_μ)"]
    top.legend(lines, names + [f"chain {c}" for c in range(num_chains)], ncol=2, fontsize=8)
    top.set_ylabel("units of ½ squared error")
    bottom.set_ylabel("duality gap Ĝ − D")
    bottom.set_xlabel("MFLD step")
    top.set_title(
        f"Certificates recorded every 50 steps: {num_chains} chains of N = {n} particles, "
        f"λ = {TEMPERATURE}\nD ≤ min G ≤ Ĝ: D lies below the free energy Ĝ (it may lie above F), "
        "and the gap Ĝ − D bounds how far Ĝ is from its minimum",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def label_marginals(figure, tree, n, num_chains, teacher):
    """Readable panel titles and axis labels."""
    for ax in figure.axes:
        title = ax.get_title()
        if not title:
            continue
        variable, _, index = title.partition("\n")
        names = {"w": f"input weight w[{index}]", "b": "bias b"}
        ax.set_title(names.get(variable, title))
        ax.set_xlabel("parameter value")
    figure.axes[0].set_ylabel("density of the particles")
    figure.suptitle(
        f"Final particles pooled over {num_chains} chains: marginal density, mean and "
        f"{az.rcParams['stats.ci_prob']:.0%} interval"
    )
    figure.tight_layout()


def label_neurons(figure, tree, n, num_chains, teacher):
    """Keep the one scatter panel of the pair grid, labelled, beside draws of ν and the teacher's
    neurons."""
    scatter = next(ax for ax in figure.axes if ax.collections)
    for ax in list(figure.axes):
        if ax is not scatter:
            ax.remove()
    scatter.set_position([0.14, 0.11, 0.8, 0.78])
    prior = tree["prior"]["w"].values.reshape(-1, 2)
    scatter.scatter(prior[:, 0], prior[:, 1], s=6, c="0.6", zorder=0)
    for c, points in enumerate(scatter.collections[:num_chains]):
        points.set_color(f"C{c}")
    w_star = np.asarray(teacher["w"])
    scatter.scatter(w_star[:, 0], w_star[:, 1], s=220, marker="*", c="k", zorder=3)
    labels = [f"chain {c}, final particles" for c in range(num_chains)]
    labels += ["draws of the reference ν = N(0, I)", "teacher neurons w*"]
    scatter.legend(scatter.collections, labels, fontsize=8)
    scatter.set_xlabel("w[0], weight on input x₁")
    scatter.set_ylabel("w[1], weight on input x₂")
    scatter.set_title("Input weights w of the neurons")


LABEL = {"marginals": label_marginals, "neurons": label_neurons}


if __name__ == "__main__":
    main()
