"""ESS and R-hat of a particle system, the ArviZ way: observables of the measure, not particles.

Four independent MFLD systems (chains) fit a teacher–student regression on two-dimensional
inputs. The run becomes an ArviZ ``DataTree`` (:func:`mflangevin.arviz.to_datatree`) with the
dual bound recorded by :func:`mflangevin.monitor`. We compare R-hat of permutation-invariant
observables (particle means, predictions) with per-particle-index R-hat, measure how far the
chains' final measures are from each other (MMD, sliced Wasserstein), and draw the certificate
traces, the particle marginals and the neurons.

Run ``python examples/arviz_diagnostics.py`` (under a minute) or ``--full``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import arviz as az
import blackjax
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import mflangevin
from mflangevin import arviz as mf_arviz
from mflangevin import diagnostics
from mflangevin.datasets import teacher_student
from mflangevin.models import MeanFieldNetwork

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TEMPERATURE = 0.1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more particles and steps")
    parser.add_argument("--out-dir", default="figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, num_steps, num_chains = (512, 8000, 4) if args.full else (64, 2000, 4)

    key_data, key_init, key_run, key_prior, key_sw = jax.random.split(jax.random.key(args.seed), 5)
    X, y, _ = teacher_student(key_data, 200, input_dim=2)
    net = MeanFieldNetwork("tanh", loss="squared")
    objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    algorithm = mflangevin.monitor(
        mflangevin.mfld(objective, step_size=0.1, temperature=TEMPERATURE),
        objective,
        TEMPERATURE,
        every=50,
    )
    starts = jax.vmap(lambda k: net.init_particles(k, n, input_dim=2))(
        jax.random.split(key_init, num_chains)
    )

    @jax.jit
    def run(keys, starts):
        def one(key, start):
            return blackjax.util.run_inference_algorithm(
                key, algorithm, num_steps, initial_position=start
            )[1]

        return jax.vmap(one)(keys, starts)

    history = run(jax.random.split(key_run, num_chains), starts)
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

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "arviz_certificates.png": (mf_arviz.plot_certificates(tree, backend="matplotlib"), 7),
        "arviz_marginals.png": (mf_arviz.plot_particle_marginals(tree, backend="matplotlib"), 7),
        "arviz_neurons.png": (mf_arviz.plot_neurons(tree, backend="matplotlib"), 4.5),
    }
    for name, (collection, width) in figures.items():
        figure = collection.viz["figure"].item()
        figure.set_size_inches(width, 3.5 if width > 5 else width)
        figure.savefig(out_dir / name, dpi=70)
        plt.close(figure)
        print(f"saved {out_dir / name}")


if __name__ == "__main__":
    main()
