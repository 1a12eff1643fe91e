"""MFLD at its defaults against NUTS on the models NumPyro users write.

For every model, ``mflangevin.numpyro.MFLD(model, num_particles)`` with nothing else given (the
warmup tunes the step and the preconditioner) runs in ``mflangevin.numpyro.MCMC`` for
``--warmup`` steps, then ``--draws`` draws thinned by 10; NUTS runs 500 warmup steps and 2000
draws. MFLD's statistics pool draws × particles. Printed per model:

* ``mean err``: the largest ``|mean_MFLD − mean_NUTS| / sd_NUTS`` over the coordinates of the
  latent sites (constrained space);
* ``sd ratio``: the range of ``sd_MFLD / sd_NUTS`` over the coordinates;
* the wall clock of each (compilation included), MFLD's tuned step and the refused particle moves
  after warmup, and NUTS's divergences.

The reference is NUTS's posterior, except on the centred eight schools, where NUTS diverges and
the reference is NUTS on the non-centred form (the same posterior).

The models: the centred and non-centred eight schools, a centred hierarchical model with
``HalfNormal`` scales (10 groups, 200 points), a mixture of three Gaussians with ``Dirichlet``
weights and a ``HalfNormal`` scale (300 points), the Bayesian linear regression of the NumPyro
guide (200 points, 3 features, ``HalfNormal`` noise) and a logistic regression on scikit-learn's
``load_breast_cancer`` (30 standardised features and an intercept). Run
``.venv/bin/python benchmarks/numpyro_models.py`` (``--models`` to choose, ``--particles``,
``--warmup``, ``--draws`` for the sizes).
"""

from __future__ import annotations

import argparse


def parse_args(argv=None):
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--particles", type=int, default=256, help="N, the particles of MFLD")
    parser.add_argument("--warmup", type=int, default=1000, help="MFLD warmup steps")
    parser.add_argument("--draws", type=int, default=200, help="MFLD draws (thinned by 10)")
    parser.add_argument(
        "--models", help="comma-separated substrings of the model names (default: every model)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC as NumPyroMCMC
from numpyro.infer import NUTS

from mflangevin.numpyro import MCMC, MFLD


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", sigma.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentred(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", sigma.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        numpyro.sample("obs", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)


def hierarchical(group, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("groups", 10):
        alpha = numpyro.sample("alpha", dist.Normal(mu, tau))
    with numpyro.plate("data", group.shape[0]):
        numpyro.sample("y", dist.Normal(alpha[group], sigma), obs=y)


def mixture(y=None, num=300):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    components = dist.Normal(jnp.array([-3.0, 0.0, 3.0]), sigma)
    with numpyro.plate("data", num):
        numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(weights), components), obs=y)


def regression(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ beta, noise), obs=y)


def logistic(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta + b), obs=y)


def problems() -> dict:
    """Each model with its data, as ``(model, args)``."""
    sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    schools = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    keys = jax.random.split(jax.random.key(0), 8)
    group = jnp.arange(200) % 10
    alpha = 1.0 + jax.random.normal(keys[0], (10,))
    grouped = alpha[group] + 1.5 * jax.random.normal(keys[1], (200,))
    component = jax.random.choice(keys[2], 3, (300,), p=jnp.array([0.2, 0.5, 0.3]))
    mixed = jnp.array([-3.0, 0.0, 3.0])[component] + 0.8 * jax.random.normal(keys[3], (300,))
    X = jax.random.normal(keys[4], (200, 3))
    y = X @ jnp.array([1.0, -2.0, 0.5]) + 0.3 * jax.random.normal(keys[5], (200,))
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(0)) / features.std(0)
    cancer = (jnp.asarray(features, jnp.float32), jnp.asarray(labels, jnp.float32))
    return {
        "eight schools, centred": (eight_schools, (sigma, schools)),
        "eight schools, non-centred": (eight_schools_noncentred, (sigma, schools)),
        "hierarchical, HalfNormal scales": (hierarchical, (group, grouped)),
        "Dirichlet mixture": (mixture, (mixed,)),
        "Bayesian regression (guide)": (regression, (X, y)),
        "logistic regression, breast cancer": (logistic, cancer),
    }


def coordinates(samples: dict, batch_ndim: int) -> np.ndarray:
    """Draws × coordinates of every latent site, the batch axes flattened."""
    columns = []
    for value in samples.values():
        value = np.asarray(value)
        columns.append(value.reshape(int(np.prod(value.shape[:batch_ndim])), -1))
    return np.concatenate(columns, axis=1)


def centred(samples: dict) -> dict:
    """Non-centred eight-schools draws as centred ones: ``θ = μ + τ θ̃``."""
    theta = samples["mu"][:, None] + samples["tau"][:, None] * samples.pop("theta_tilde")
    return {"mu": samples["mu"], "tau": samples["tau"], "theta": theta}


def nuts_reference(model, args):
    """NUTS's draws, its wall clock and divergences. On the centred eight schools NUTS diverges
    (about a hundred times in 2000 draws) and misses the funnel's neck, so the reference there is
    NUTS on the non-centred form of the same posterior, mapped back to ``θ``."""
    start = time.perf_counter()
    nuts = NumPyroMCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    nuts.run(jax.random.key(1), *args)
    elapsed = time.perf_counter() - start
    divergences = int(np.sum(nuts.get_extra_fields()["diverging"]))
    if model is not eight_schools:
        return nuts.get_samples(), elapsed, divergences
    exact = NumPyroMCMC(
        NUTS(eight_schools_noncentred), num_warmup=500, num_samples=2000, progress_bar=False
    )
    exact.run(jax.random.key(1), *args)
    return centred(exact.get_samples()), elapsed, divergences


def compare(name, model, args, num_particles, warmup, draws):
    samples, nuts_time, divergences = nuts_reference(model, args)
    reference = coordinates(samples, 1)
    start = time.perf_counter()
    mcmc = MCMC(
        MFLD(model, num_particles),
        num_warmup=warmup,
        num_samples=draws,
        thinning=10,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), *args, extra_fields=("step_size",))
    mfld_time = time.perf_counter() - start
    pooled = coordinates(mcmc.get_samples(), 1)
    sd = reference.std(0)
    error = np.max(np.abs(pooled.mean(0) - reference.mean(0)) / sd)
    ratio = pooled.std(0) / sd
    extra = mcmc.get_extra_fields()
    print(
        f"| {name} | {error:.2f} | {ratio.min():.2f}–{ratio.max():.2f} | {mfld_time:.1f} s "
        f"| {nuts_time:.1f} s | {float(extra['step_size'][-1]):.3g} "
        f"| {int(np.sum(extra['num_refused']))} "
        f"| {divergences} |",
        flush=True,
    )


def main() -> None:
    args = parse_args()
    chosen = problems()
    if args.models:
        wanted = args.models.split(",")
        chosen = {k: v for k, v in chosen.items() if any(w in k for w in wanted)}
    print(
        f"MFLD: N = {args.particles}, {args.warmup} warmup steps, {args.draws} draws thinned by "
        "10; NUTS: 500 warmup steps, 2000 draws. Errors in NUTS posterior sds.\n"
    )
    print("| model | mean err | sd ratio | MFLD | NUTS | MFLD step | refused | NUTS div. |")
    print("|---|---|---|---|---|---|---|---|")
    # NumPyro's Bernoulli log-density mixes bool and float: it needs the standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        for name, (model, model_args) in chosen.items():
            compare(name, model, model_args, args.particles, args.warmup, args.draws)


if __name__ == "__main__":
    main()
