"""A mean-field two-layer network written as a NumPyro model: MFLD against NumPyro's SVGD.

The model puts ``N`` neurons ``θ_i = (w_i, b_i, a_i)`` in a plate named ``"particles"`` with a
Gaussian prior (the reference ν) and classifies two moons through the particle average
``f_Θ(x) = (1/N) Σ_i a_i tanh(w_iᵀx + b_i)`` with a Bernoulli likelihood. The same model is fitted

* by :class:`mflangevin.numpyro.MFLD` inside ``numpyro.infer.MCMC``, which scales the likelihood by
  ``N/λ``: ``λ = N`` leaves the model's own posterior, a smaller λ sharpens it (the mean-field
  regime of MFLD);
* by ``numpyro.contrib.einstein.SVGD`` with ``K`` Stein particles, each a whole network of ``N``
  neurons, on the model's posterior.

Printed: test error of each fit and wall-clock times (compilation included) with their ratio.

Run ``.venv/bin/python examples/numpyro_mean_field.py`` (under two minutes on an idle 2-core CPU),
or ``--full`` for a wider network, more data and more steps.
"""

import argparse
import pathlib
import time


def parse_args():
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="wider network, more data and steps")
    parser.add_argument(
        "--out",
        default="figures/numpyro_mean_field.png",
        help="where to save the figure, relative to the current directory",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="λ of the sharp MFLD fit")
    parser.add_argument("--step-size", type=float, default=2e-3, help="η of MFLD")
    parser.add_argument("--svgd-step-size", type=float, default=0.05, help="Adagrad step of SVGD")
    parser.add_argument("--stein-particles", type=int, default=8, help="K, networks in SVGD")
    parser.add_argument("--draws", type=int, default=50, help="MFLD draws kept for prediction")
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()


import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.einstein import SVGD, RBFKernel
from numpyro.infer import MCMC
from numpyro.optim import Adagrad
from sklearn.datasets import make_moons

from mflangevin.models import MeanFieldNetwork
from mflangevin.numpyro import MFLD

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NETWORK = MeanFieldNetwork(neuron="output_weight", activation="tanh", loss="logistic")
PRIOR_SCALE = {"w": 2.0, "b": 1.0, "a": 4.0}


def network_model(X, y=None, num_particles=128):
    """Neurons in the particle plate (prior ν), a Bernoulli likelihood of the particle average."""
    with numpyro.plate("particles", num_particles):
        w = numpyro.sample("w", dist.Normal(0.0, PRIOR_SCALE["w"]).expand([X.shape[1]]).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, PRIOR_SCALE["b"]))
        a = numpyro.sample("a", dist.Normal(0.0, PRIOR_SCALE["a"]))
    logits = NETWORK.predict({"w": w, "b": b, "a": a}, X)
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def moons(num_train, num_test, seed=0):
    X, y = make_moons(num_train + num_test, noise=0.2, random_state=seed)
    X, y = jnp.asarray(X - X.mean(0), jnp.float32), jnp.asarray(y, jnp.float32)
    return (X[:num_train], y[:num_train]), (X[num_train:], y[num_train:])


def test_error(probabilities, y):
    return float(jnp.mean((probabilities > 0.5) != (y > 0.5)))


def fit_mfld(key, train, X_eval, args, temperature, step_size):
    """MFLD in ``MCMC``; predicts with the average over the kept draws of the particle system."""
    kernel = MFLD(network_model, args.num_particles, step_size, temperature)
    mcmc = MCMC(kernel, num_warmup=args.steps - args.draws, num_samples=args.draws)
    start = time.perf_counter()
    mcmc.run(key, *train, num_particles=args.num_particles)
    samples = jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - start
    logits = jax.vmap(NETWORK.predict, in_axes=(0, None))(samples, X_eval)
    return jnp.mean(jax.nn.sigmoid(logits), axis=0), seconds


def fit_svgd(key, train, X_eval, args):
    """SVGD with ``K`` Stein particles (whole networks); predicts with their average."""
    svgd = SVGD(network_model, Adagrad(args.svgd_step_size), RBFKernel(), args.stein_particles)
    start = time.perf_counter()
    result = svgd.run(key, args.steps, *train, num_particles=args.num_particles)
    params = jax.block_until_ready(svgd.get_params(result.state))
    seconds = time.perf_counter() - start
    networks = {name: params[f"{name}_auto_loc"] for name in PRIOR_SCALE}
    logits = jax.vmap(NETWORK.predict, in_axes=(0, None))(networks, X_eval)
    return jnp.mean(jax.nn.sigmoid(logits), axis=0), seconds


def main():
    args = parse_args()
    args.num_particles, args.steps, num_train = (
        (512, 10_000, 1000) if args.full else (128, 2000, 200)
    )

    train, (X_test, y_test) = moons(num_train, 2000)
    grid = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 120), np.linspace(-1.8, 1.8, 90)), -1)
    X_eval = jnp.concatenate([X_test, jnp.asarray(grid.reshape(-1, 2), jnp.float32)])
    keys = jax.random.split(jax.random.key(0), 3)
    # Pay the one-off start-up costs of JAX and NumPyro before anything is timed, so that they are
    # not charged to whichever fit runs first: a few steps of each method.
    warm_up = argparse.Namespace(**{**vars(args), "steps": 4, "draws": 2})
    fit_mfld(keys[0], train, X_eval, warm_up, 1.0, args.step_size)
    fit_svgd(keys[0], train, X_eval, warm_up)

    N = args.num_particles
    fits = {
        f"MFLD, λ = N = {N} (model posterior)": fit_mfld(keys[0], train, X_eval, args, N, 1e-2),
        f"MFLD, λ = {args.temperature:g}": fit_mfld(
            keys[1], train, X_eval, args, args.temperature, args.step_size
        ),
        f"SVGD, K = {args.stein_particles}": fit_svgd(keys[2], train, X_eval, args),
    }

    print(
        f"two moons: {num_train} training / {len(y_test)} test points, N = {N} neurons, "
        f"{args.steps} steps each"
    )
    num_test = len(y_test)
    svgd_seconds = fits[f"SVGD, K = {args.stein_particles}"][1]
    for name, (probabilities, seconds) in fits.items():
        error = test_error(probabilities[:num_test], y_test)
        print(
            f"  {name:38s} test error {error:.3f}   wall clock {seconds:6.2f} s   "
            f"SVGD / this {svgd_seconds / seconds:5.2f}"
        )

    fig, axes = plt.subplots(
        1, len(fits), figsize=(5 * len(fits) + 1, 4.6), sharey=True, layout="constrained"
    )
    Xtr, ytr = np.asarray(train[0]), np.asarray(train[1])
    for ax, (name, (probabilities, _)) in zip(axes, fits.items(), strict=True):
        field = np.asarray(probabilities[num_test:]).reshape(grid.shape[:2])
        levels = np.linspace(0, 1, 21)
        filled = ax.contourf(grid[..., 0], grid[..., 1], field, levels=levels, cmap="RdBu_r")
        ax.contour(grid[..., 0], grid[..., 1], field, levels=[0.5], colors="k", linewidths=1)
        for label, colour, marker in [(1, "tab:red", "o"), (0, "tab:blue", "s")]:
            points = Xtr[ytr == label]
            ax.scatter(
                *points.T,
                c=colour,
                marker=marker,
                s=14,
                edgecolors="white",
                linewidths=0.6,
                label=f"training point, class {label}",
            )
        error = test_error(probabilities[:num_test], y_test)
        ax.set_title(f"{name}\ntest error {error:.3f}", fontsize=10)
        ax.set_xlabel("input x₁")
    axes[0].set_ylabel("input x₂")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.colorbar(filled, ax=axes, label="predicted probability of class 1", shrink=0.9)
    fig.suptitle(
        "Two moons: predictive probability of three fits of the same mean-field network "
        "(black line: probability 0.5)"
    )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
