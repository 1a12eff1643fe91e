"""MFLD at its defaults against NUTS and SVGD on the models NumPyro users write.

For every model, ``mflangevin.numpyro.MFLD(model, num_particles)`` with nothing else given (the
warmup tunes the step and the preconditioner) runs in ``mflangevin.numpyro.MCMC`` for
``--warmup`` steps, then ``--draws`` draws thinned by 10; NUTS runs 500 warmup steps and 2000
draws; NumPyro's ``SVGD`` (``numpyro.contrib.einstein``, the nearest particle method: Adagrad 0.05,
RBF kernel, as NumPyro's docs set it) moves ``--stein-particles`` particles for ``--stein-steps``
steps. MFLD's statistics pool draws × particles. Printed per model, for MFLD and SVGD:

* ``mean err``: the largest ``|mean − mean_NUTS| / sd_NUTS`` over the coordinates of the
  latent sites (constrained space);
* ``sd ratio``: the range of ``sd / sd_NUTS`` over the coordinates;
* ``MC se`` (MFLD): the Monte-Carlo standard error of the mean error, the largest over the
  coordinates of ``√(var/ESS + var_NUTS/ESS_NUTS) / sd_NUTS``, each ESS (for the mean, by
  :func:`mflangevin.diagnostics.ess`) over the chains × draws of its sampler (MFLD's chains being
  its (chain, particle) pairs on a Bayesian model): a mean error within about
  ``√(2 ln 2K)`` of it (``K`` coordinates; 2.2 for 20) is what Monte-Carlo error alone gives;
* the wall clock of each (compilation included), MFLD's tuned step and the refused particle moves
  after warmup, and NUTS's divergences.

The reference is NUTS's posterior, except on the centred eight schools, where NUTS diverges and
the reference is NUTS on the non-centred form (the same posterior).

The models: the centred and non-centred eight schools, a centred hierarchical model with
``HalfNormal`` scales (10 groups, 200 points), a mixture of three Gaussians with ``Dirichlet``
weights and a ``HalfNormal`` scale (300 points), the Bayesian linear regression of the NumPyro
guide (200 points, 3 features, ``HalfNormal`` noise), a logistic regression on scikit-learn's
``load_breast_cancer`` (30 standardised features and an intercept), a mean-field two-layer network
(16 neurons in the particle plate, 200 two-moons points; 128 chains of MFLD at ``λ = N``, the
model's own posterior; compared on its predicted probabilities at 20 test points, the weights
being exchangeable), and a logistic regression of ``n = 10⁵`` points (``--full``: ``10⁶``)
through ``numpyro.plate(..., subsample_size=10⁴)`` (stochastic-gradient MFLD with control
variates, MFLD's default, and without them, ``control_variate=False``; NUTS on the full data;
also against NumPyro's ``HMCECS`` with a Taylor proxy at NUTS's posterior mean; the mean errors
also in units of their Monte-Carlo error, ``z``). Last, the per-step cost of the subsampled model
at ``n = 10⁴`` and ``10⁶``, with and without control variates. Run
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
    parser.add_argument("--stein-particles", type=int, default=64, help="K, particles of SVGD")
    parser.add_argument("--stein-steps", type=int, default=2000, help="SVGD steps")
    parser.add_argument(
        "--models", help="comma-separated substrings of the model names (default: every model)"
    )
    parser.add_argument(
        "--full", action="store_true", help="the subsampled regression at n = 10⁶ instead of 10⁵"
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
from numpyro.contrib.einstein import SVGD, RBFKernel
from numpyro.infer import HMCECS, NUTS
from numpyro.infer import MCMC as NumPyroMCMC
from numpyro.optim import Adagrad

from mflangevin.diagnostics import ess
from mflangevin.models import MeanFieldNetwork
from mflangevin.numpyro import MCMC, MFLD

NETWORK = MeanFieldNetwork(neuron="output_weight", activation="tanh", loss="logistic")


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


def network(X, y=None, num_neurons=16):
    """A mean-field two-layer network: neurons in the particle plate, a Bernoulli likelihood of
    their average (as in ``examples/numpyro_mean_field.py``)."""
    with numpyro.plate("particles", num_neurons):
        w = numpyro.sample("w", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        a = numpyro.sample("a", dist.Normal(0.0, 4.0))
    logits = NETWORK.predict({"w": w, "b": b, "a": a}, X)
    numpyro.deterministic("p", jax.nn.sigmoid(logits[-20:]))  # the 20 test points
    with numpyro.plate("data", X.shape[0] - 20):
        numpyro.sample("y", dist.Bernoulli(logits=logits[:-20]), obs=y)


def subsampled(X, y=None, batch=10_000):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0], subsample_size=batch) as index:
        numpyro.sample("y", dist.Bernoulli(logits=X[index] @ beta), obs=y[index])


def logistic_data(n: int, seed: int = 6):
    X = jax.random.normal(jax.random.key(seed), (n, 5))
    logits = X @ jnp.array([1.0, -0.5, 0.25, 0.0, 2.0])
    return X, jax.random.bernoulli(jax.random.key(seed + 1), jax.nn.sigmoid(logits)) * 1.0


def problems(full: bool = False) -> dict:
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
        "mean-field network, 16 neurons": (network, moons()),
        f"logistic regression, subsampled, n = 10^{6 if full else 5}": (
            subsampled,
            logistic_data(10**6 if full else 10**5),
        ),
    }


def moons():
    """200 training points of two moons, then the 20 test points (``y`` for the first 200)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(220, noise=0.2, random_state=0)
    return jnp.asarray(X - X.mean(0), jnp.float32), jnp.asarray(y[:200], jnp.float32)


#: The MFLD settings beyond the sizes: the network's temperature (λ = N, its own posterior).
GIVEN = {
    # One system of 16 neurons is one chain, whose draws are strongly correlated (an ESS near 70
    # over 16 chains of 200 draws, a Monte-Carlo standard error of 0.12 sd): 128 chains,
    # vectorised (0.044 sd), in no more time than 16 on a CPU.
    network: {"num_particles": 16, "temperature": 16.0, "num_chains": 128},
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
    theta = samples["mu"][..., None] + samples["tau"][..., None] * samples.pop("theta_tilde")
    return {"mu": samples["mu"], "tau": samples["tau"], "theta": theta}


def nuts_reference(model, args):
    """NUTS's draws, its wall clock and divergences. On the centred eight schools NUTS diverges
    (about a hundred times in 2000 draws) and misses the funnel's neck, so the reference there is
    NUTS on the non-centred form of the same posterior, mapped back to ``θ``."""
    start = time.perf_counter()
    nuts = NumPyroMCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    nuts.run(jax.random.key(1), *args, **full_data_kwargs(model, args))
    elapsed = time.perf_counter() - start
    divergences = int(np.sum(nuts.get_extra_fields()["diverging"]))
    if model is not eight_schools:
        return nuts.get_samples(group_by_chain=True), elapsed, divergences
    exact = NumPyroMCMC(
        NUTS(eight_schools_noncentred), num_warmup=500, num_samples=2000, progress_bar=False
    )
    exact.run(jax.random.key(1), *args)
    return centred(exact.get_samples(group_by_chain=True)), elapsed, divergences


def observed(samples: dict, model, batch_ndim: int) -> np.ndarray:
    """The coordinates compared: the latent sites, or the network's test predictions."""
    if model is network:
        return coordinates({"p": samples["p"]}, batch_ndim)
    return coordinates({k: v for k, v in samples.items() if k != "p"}, batch_ndim)


def by_chain(samples: dict, model) -> np.ndarray:
    """Chains × draws × coordinates compared, from samples grouped by chain."""
    draws = observed(samples, model, 2)
    return draws.reshape(np.shape(next(iter(samples.values())))[0], -1, draws.shape[1])


def errors(draws: np.ndarray, reference: np.ndarray) -> str:
    """The mean error and the sd ratios of draws (draws × coordinates) against the reference's
    (chains × draws × coordinates)."""
    reference = reference.reshape(-1, reference.shape[-1])
    sd = reference.std(0)
    error = np.max(np.abs(draws.mean(0) - reference.mean(0)) / sd)
    ratio = draws.std(0) / sd
    return f"{error:.2f} | {ratio.min():.2f}–{ratio.max():.2f}"


def monte_carlo_error(draws: np.ndarray, reference: np.ndarray) -> float:
    """The standard error of the mean error (see the module), both chains × draws ×
    coordinates."""

    def variance_of_mean(x):
        return x.reshape(-1, x.shape[-1]).var(0) / np.asarray(ess(x, method="mean"))

    sd = reference.reshape(-1, reference.shape[-1]).std(0)
    se = np.sqrt(variance_of_mean(draws) + variance_of_mean(reference)) / sd
    return float(np.max(se))


def batch_means_error(chains: np.ndarray, batches: int = 10) -> np.ndarray:
    """The standard error of the posterior mean per coordinate from draws ``(chains, draws,
    coordinates)``, by batch means: the chains' average over the draws (MFLD's chains are the
    particles, whose average moves as one with the shared subsample) cut into ``batches``
    consecutive batches, whose means' spread over ``√batches`` is the error."""
    series = chains.mean(0)
    means = series[: len(series) // batches * batches].reshape(batches, -1, series.shape[1])
    return means.mean(1).std(0, ddof=1) / np.sqrt(batches)


def z_score(draws: np.ndarray, reference: np.ndarray) -> float:
    """The largest mean error in units of the two runs' batch-means errors together."""
    error = np.abs(draws.mean((0, 1)) - reference.mean((0, 1)))
    return float(np.max(error / np.hypot(batch_means_error(draws), batch_means_error(reference))))


def run_subsampled(args, options, control_variate: bool):
    """MFLD on the subsampled regression: ``(chains, draws, coordinates)`` and the wall clock."""
    start = time.perf_counter()
    mcmc = MCMC(
        MFLD(subsampled, options.particles, control_variate=control_variate),
        num_warmup=options.warmup,
        num_samples=options.draws,
        thinning=10,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), *args)
    chains = by_chain(mcmc.get_samples(group_by_chain=True), subsampled)
    return chains, time.perf_counter() - start


def full_data_kwargs(model, args) -> dict:
    return {"batch": args[0].shape[0]} if model is subsampled else {}


def run_svgd(model, args, num_particles, steps):
    start = time.perf_counter()
    svgd = SVGD(model, Adagrad(0.05), RBFKernel(), num_stein_particles=num_particles)
    result = svgd.run(jax.random.key(3), steps, *args, progress_bar=False)
    params = jax.block_until_ready(svgd.get_params(result.state))
    elapsed = time.perf_counter() - start
    latent = {k.removesuffix("_auto_loc"): v for k, v in params.items() if k.endswith("_auto_loc")}
    if model is network:
        predicted = jax.vmap(NETWORK.predict, in_axes=(0, None))(latent, args[0][-20:])
        latent = {"p": jax.nn.sigmoid(predicted)}
    return observed(latent, model, 1), elapsed


def run_hmcecs(args, reference_mean: dict) -> tuple[np.ndarray, float]:
    """HMCECS (NUTS on subsamples of 10⁴ points, 10 blocks) with a Taylor proxy at NUTS's mean."""
    start = time.perf_counter()
    proxy = HMCECS.taylor_proxy(reference_mean)
    kernel = HMCECS(NUTS(subsampled), num_blocks=10, proxy=proxy)
    mcmc = NumPyroMCMC(kernel, num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(4), *args)
    return coordinates(mcmc.get_samples(), 1), time.perf_counter() - start


def compare(name, model, args, options):
    samples, nuts_time, divergences = nuts_reference(model, args)
    reference = by_chain(samples, model)
    start = time.perf_counter()
    given = dict(GIVEN.get(model, {}))
    num_particles = given.pop("num_particles", options.particles)
    num_chains = given.pop("num_chains", 1)
    mcmc = MCMC(
        MFLD(model, num_particles, **given),
        num_warmup=options.warmup,
        num_samples=options.draws,
        thinning=10,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), *args, extra_fields=("step_size",))
    mfld_time = time.perf_counter() - start
    # A mean-field model's draw is one network: its statistics are over draws.
    chains = by_chain(mcmc.get_samples(group_by_chain=True), model)
    pooled = chains.reshape(-1, chains.shape[-1])
    extra = mcmc.get_extra_fields()
    # SVGD draws NumPyro's subsamples (a permutation of all n indices per step): at n = 10⁵ its
    # first 20 steps took 50 s on two CPU cores, so it is not run on the subsampled model.
    stein, stein_time = "– | –", "–"
    if model is not subsampled:
        try:
            draws, elapsed = run_svgd(model, args, options.stein_particles, options.stein_steps)
            stein, stein_time = errors(draws, reference), f"{elapsed:.1f} s"
        except ValueError as err:  # NumPyro's Stein loss on a Dirichlet site: a shape error
            stein, stein_time = f"fails ({type(err).__name__}) | –", "–"
    print(
        f"| {name} | {errors(pooled, reference)} | {monte_carlo_error(chains, reference):.2f} "
        f"| {stein} "
        f"| {mfld_time:.1f} s | {nuts_time:.1f} s | {stein_time} "
        f"| {float(extra['step_size'][-1]):.3g} | {int(np.sum(extra['num_refused']))} "
        f"| {divergences} |",
        flush=True,
    )
    if model is subsampled:
        z = z_score(chains, reference)
        print(f"| … its mean err in batch-means errors: z = {z:.1f} ||||||||||")
        plain, plain_time = run_subsampled(args, options, control_variate=False)
        print(
            f"| … without control variates | {errors(plain.reshape(-1, plain.shape[2]), reference)}"
            f" (z = {z_score(plain, reference):.1f}) | {monte_carlo_error(plain, reference):.2f} "
            f"| | | {plain_time:.1f} s |||||"
        )
        centre = {k: jnp.mean(v, (0, 1)) for k, v in samples.items()}
        ecs, ecs_time = run_hmcecs(args, centre)
        row = f"| … HMCECS in place of MFLD | {errors(ecs, reference)} | | | | {ecs_time:.1f} s "
        print(row + "|||||")


def step_cost(n: int, control_variate: bool, num_particles: int = 256, steps: int = 200) -> float:
    """Seconds per MFLD step on the subsampled regression of ``n`` points, after compilation
    (and, with control variates, after the first step, which centres them in one pass over the
    data)."""
    args = logistic_data(n)
    kernel = MFLD(subsampled, num_particles, step_size=2e-6, control_variate=control_variate)
    state = kernel.sample(kernel.init(jax.random.key(0), 0, None, args, {}), args, {})
    run = jax.jit(
        lambda s: jax.lax.scan(lambda s, _: (kernel.sample(s, args, {}), None), s, None, steps)[0]
    )
    jax.block_until_ready(run(state))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(run(state))
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    args = parse_args()
    chosen = problems(args.full)
    if args.models:
        wanted = args.models.split(",")
        chosen = {k: v for k, v in chosen.items() if any(w in k for w in wanted)}
    print(
        f"MFLD: N = {args.particles}, {args.warmup} warmup steps, {args.draws} draws thinned by "
        f"10; NUTS: 500 warmup steps, 2000 draws; SVGD: K = {args.stein_particles}, "
        f"{args.stein_steps} steps. Errors in NUTS posterior sds.\n"
    )
    print(
        "| model | MFLD mean err | MFLD sd ratio | MC se | SVGD mean err | SVGD sd ratio | MFLD "
        "| NUTS | SVGD | MFLD step | refused | NUTS div. |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    # NumPyro's Bernoulli log-density mixes bool and float: it needs the standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        for name, (model, model_args) in chosen.items():
            compare(name, model, model_args, args)
        if not args.models or "subsampled" in args.models:
            small, large = step_cost(10**4, True), step_cost(10**6, True)
            plain = step_cost(10**6, False)
            print(
                f"\nSubsampled regression, N = 256, B = 10^4, control variates: {1e3 * small:.3f} "
                f"ms per step at n = 10^4, {1e3 * large:.3f} ms at n = 10^6 (ratio "
                f"{large / small:.2f}); without: {1e3 * plain:.3f} ms at n = 10^6 (with / "
                f"without {large / plain:.2f})."
            )


if __name__ == "__main__":
    main()
