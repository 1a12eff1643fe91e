"""Tests of mflangevin.arviz: DataTree conversion of BlackJAX histories and NumPyro runs, plots."""

import arviz as az
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import mflangevin
from mflangevin import arviz as mf_arviz
from mflangevin import diagnostics
from mflangevin.models import MeanFieldNetwork
from mflangevin.numpyro import MFLD

N, CHAINS, DRAWS = 16, 3, 30


@pytest.fixture(scope="module")
def problem():
    X = jax.random.normal(jax.random.key(1), (12, 2))
    y = jnp.tanh(X[:, 0])
    net = MeanFieldNetwork("tanh", loss="squared")
    objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    algorithm = mflangevin.mfld(objective, step_size=0.05, temperature=0.01)
    start = net.init_particles(jax.random.key(0), N, input_dim=2)
    return net, X, objective, algorithm, start


@pytest.fixture(scope="module")
def chains_history(problem):
    _, _, _, algorithm, start = problem

    def run(key):
        return blackjax.util.run_inference_algorithm(key, algorithm, DRAWS, initial_position=start)[
            1
        ]

    return jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(2), CHAINS))


def test_blackjax_history_with_chains(problem, chains_history):
    net, X, objective, _, _ = problem

    def observables(particles):
        return {**diagnostics.particle_moments(particles), "prediction": net.predict(particles, X)}

    gap = np.abs(np.random.default_rng(0).normal(size=(CHAINS, DRAWS)))
    tree = mf_arviz.to_datatree(
        chains_history,
        observables=observables,
        sample_stats={"dual_bound": -gap, "gap": gap},
        reference=objective.reference,
        rng_key=jax.random.key(3),
        dims={"w": ["input"], "prediction": ["datum"]},
    )
    groups = {"posterior", "sample_stats", "particle_measure", "prior"}
    assert set(tree.children) == groups
    posterior = tree["posterior"]
    assert posterior["w"].dims == ("chain", "draw", "particle", "input")
    assert posterior["w"].shape == (CHAINS, DRAWS, N, 2)
    assert posterior["w_mean"].dims == ("chain", "draw", "input")
    assert posterior["prediction"].shape == (CHAINS, DRAWS, X.shape[0])
    np.testing.assert_array_equal(posterior["draw"].values, np.arange(1, DRAWS + 1))
    stats = tree["sample_stats"]
    assert {"mean_field_energy", "diverging", "step_size", "temperature", "dual_bound"} <= set(
        stats
    )
    assert "energy" not in stats  # ArviZ would read F(μ) as HMC's Hamiltonian (E-BFMI)
    assert stats["diverging"].dtype == bool
    assert tree["particle_measure"]["w"].shape == (CHAINS, N, 2)
    np.testing.assert_array_equal(
        tree["particle_measure"]["b"].values, np.asarray(chains_history[0].position["b"][:, -1])
    )
    assert tree["prior"]["w"].shape == (1, N, 2)

    summary = az.summary(tree, var_names=["w_mean", "prediction"])
    assert len(summary) == 2 + X.shape[0]
    ess = az.ess(tree, var_names=["mean_field_energy"], group="sample_stats")
    assert ess["mean_field_energy"].shape == ()
    az.plot_dist(tree, group="particle_measure", backend="none")
    mf_arviz.plot_certificates(tree, backend="none")
    mf_arviz.plot_particle_marginals(tree, backend="none")
    mf_arviz.plot_neurons(tree, backend="none")


def test_datatree_round_trips_through_netcdf(problem, chains_history, tmp_path):
    """A run saved with ``tree.to_netcdf`` reads back whole, values, dims, dtypes and attributes."""
    _, _, objective, _, _ = problem
    tree = mf_arviz.to_datatree(
        chains_history,
        sample_stats={"gap": np.ones((CHAINS, DRAWS))},
        reference=objective.reference,
        rng_key=jax.random.key(3),
    )
    path = tmp_path / "run.nc"
    tree.to_netcdf(path)
    loaded = az.from_netcdf(path)
    assert set(loaded.children) == set(tree.children)
    for group in tree.children:
        for name, variable in tree[group].data_vars.items():
            assert loaded[group][name].dims == variable.dims
            assert loaded[group][name].dtype == variable.dtype
        assert set(loaded[group].coords) == set(tree[group].coords)
    assert loaded.identical(tree)
    assert az.summary(loaded, var_names=["w_mean"]).equals(az.summary(tree, var_names=["w_mean"]))


def test_on_device_ess_rhat_agree_with_arviz_on_the_tree(chains_history):
    tree = mf_arviz.to_datatree(chains_history, include_trajectories=False)
    values = tree["posterior"]["w_mean"].values
    on_device = jax.jit(lambda x: (diagnostics.ess(x), diagnostics.rhat(x)))(values)
    np.testing.assert_allclose(
        np.asarray(on_device[0]), az.ess(tree, var_names=["w_mean"])["w_mean"].values, rtol=1e-4
    )
    np.testing.assert_allclose(
        np.asarray(on_device[1]), az.rhat(tree, var_names=["w_mean"])["w_mean"].values, rtol=1e-5
    )
    assert "w" not in tree["posterior"]


def test_history_without_chain_axis_thinned(problem):
    _, _, _, algorithm, start = problem
    thinned = blackjax.util.thin_algorithm(algorithm, thinning=4)
    _, history = blackjax.util.run_inference_algorithm(
        jax.random.key(4), thinned, 6, initial_position=start
    )
    tree = mf_arviz.to_datatree(history, thinning=4, observables=None)
    assert tree["posterior"]["w"].shape == (1, 6, N, 2)
    assert tree["sample_stats"]["mean_field_energy"].shape == (1, 6)
    np.testing.assert_array_equal(tree["posterior"]["draw"].values, 4 * np.arange(1, 7))
    assert "prior" not in tree.children


def test_monitored_history_gives_certificate_stats(problem):
    _, _, objective, algorithm, start = problem
    monitored = mflangevin.monitor(algorithm, objective, temperature=0.01, every=5)
    _, history = blackjax.util.run_inference_algorithm(
        jax.random.key(5), monitored, 20, initial_position=start
    )
    tree = mf_arviz.to_datatree(history)
    dual = tree["sample_stats"]["dual_bound"].values
    assert np.isfinite(dual[0, 4::5]).all() and np.isnan(dual[0, 0]).all()
    mf_arviz.plot_certificates(tree, backend="none")


def test_numpyro_mcmc_run():
    def model(y):
        with numpyro.plate("particles", N):
            theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(jnp.mean(theta, axis=0), 1.0).to_event(1), obs=y)

    kernel = MFLD(model, num_particles=N, step_size=0.05, temperature=0.1)
    mcmc = MCMC(
        kernel,
        num_warmup=5,
        num_samples=12,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), jnp.array([1.0, -1.0]), extra_fields=("energy", "drift_norm"))
    tree = mf_arviz.to_datatree(mcmc, rng_key=jax.random.key(1))
    groups = {"posterior", "sample_stats", "particle_measure", "prior", "log_likelihood"}
    assert set(tree.children) == groups
    assert tree["posterior"]["theta"].dims == ("chain", "draw", "particle", "theta_dim_0")
    assert tree["posterior"]["theta"].shape == (2, 12, N, 2)
    assert tree["posterior"]["theta_mean"].shape == (2, 12, 2)
    stats = {"mean_field_energy", "drift_norm", "diverging", "accept_prob", "num_improbable"}
    assert stats <= set(tree["sample_stats"])
    # The measure's likelihood, one value per draw: F(μ) of the model as written.
    assert tree["log_likelihood"]["y"].shape == (2, 12)
    assert tree["particle_measure"]["theta"].shape == (2, N, 2)
    assert tree["prior"]["theta"].shape == (1, N, 2)
    assert az.rhat(tree, var_names=["theta_mean"])["theta_mean"].shape == (2,)
    az.summary(tree, var_names=["theta_mean"])
    az.plot_dist(tree, group="particle_measure", backend="none")


def test_numpyro_bayesian_model_prior_has_one_draw_per_particle():
    """A model without a particle plate: the prior group holds N independent prior draws."""

    def model(y):
        loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
        scale = numpyro.sample("scale", dist.HalfNormal(1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(loc, scale.sum()), obs=y)

    mcmc = MCMC(MFLD(model, 8, 0.01), num_warmup=2, num_samples=5, progress_bar=False)
    mcmc.run(jax.random.key(0), 1.0)
    tree = mf_arviz.to_datatree(mcmc, rng_key=jax.random.key(1))
    assert tree["posterior"]["loc"].shape == (8, 5)  # every particle a chain
    assert tree["prior"]["loc"].shape == (1, 8)
    assert tree["prior"]["scale"].shape == (1, 8, 2)
    loc = tree["prior"]["loc"].values[0]
    assert np.unique(loc).size == 8  # independent draws, not one draw repeated
    assert (tree["prior"]["scale"].values > 0).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda h: mf_arviz.to_datatree(h[0]), "source"),
        (lambda h: mf_arviz.to_datatree(h, thinning=0), "thinning"),
        (lambda h: mf_arviz.to_datatree(h, observables=3), "observables"),
        (lambda h: mf_arviz.to_datatree(h, sample_stats={"gap": np.zeros(2)}), "sample_stats"),
        (lambda h: mf_arviz.to_datatree(h, dims={"w": ["a", "b"]}), "dims"),
        (
            lambda h: mf_arviz.to_datatree(h, reference=mflangevin.gaussian_reference(1.0)),
            "rng_key",
        ),
        (
            lambda h: mf_arviz.to_datatree(h, observables=lambda p: p["w"].mean(axis=0)),
            "^observables: must return a dict",
        ),
    ],
)
def test_bad_input(chains_history, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(chains_history)


def test_neuron_scatter_needs_two_dimensional_inputs(chains_history):
    tree = mf_arviz.to_datatree(chains_history, observables=None)
    with pytest.raises(ValueError, match="var_name"):
        mf_arviz.plot_neurons(tree, var_name="b", backend="none")


def test_leaf_named_like_a_dimension_is_a_clear_error():
    class State:
        position = {"chain": np.zeros((5, 3, 2), np.float32)}

    with pytest.raises(ValueError, match=r"^source: particle leaves may not be named \['chain'\]"):
        mf_arviz.to_datatree((State(), {"energy": np.zeros(5, np.float32)}))


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", 8):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])


@pytest.fixture(scope="module")
def bayesian_tree():
    """A Bayesian NumPyro run (review 2026-12: one row per particle in az.summary, no
    log_likelihood group for az.loo, F(μ) read as the HMC energy by az.diagnose)."""
    mcmc = MCMC(
        MFLD(eight_schools, 16), num_warmup=30, num_samples=6, num_chains=2, progress_bar=False
    )
    mcmc.run(jax.random.key(0), SIGMA, Y, extra_fields=("energy",))
    return mcmc, mf_arviz.to_datatree(mcmc)


def test_bayesian_summary_defaults_give_the_pooled_posterior(bayesian_tree):
    _, tree = bayesian_tree
    summary = az.summary(tree)
    assert len(summary) == 1 + 1 + 8  # mu, tau, theta[0..7]: one row per site coordinate
    assert tree["posterior"]["theta"].shape == (2 * 16, 6, 8)
    assert tree["sample_stats"]["diverging"].shape == (2 * 16, 6)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")  # a short run's k̂
def test_bayesian_log_likelihood_gives_loo(bayesian_tree):
    mcmc, tree = bayesian_tree
    samples = MCMC.get_samples(mcmc, group_by_chain=True)
    expected = numpyro.infer.log_likelihood(eight_schools, samples, SIGMA, Y, batch_ndims=3)["obs"]
    # (chain, draw, particle, school) → (chain·particle, draw, school)
    expected = np.moveaxis(np.asarray(expected), 2, 1).reshape(2 * 16, 6, 8)
    np.testing.assert_array_equal(tree["log_likelihood"]["obs"].values, expected)
    loo = az.loo(tree)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 8


def test_mean_field_energy_is_not_read_as_hmc_energy(bayesian_tree):
    _, tree = bayesian_tree
    assert "mean_field_energy" in tree["sample_stats"] and "energy" not in tree["sample_stats"]
    with pytest.raises(Exception, match="energy"):
        az.bfmi(tree)


def subsampled_regression(X, y=None, batch=10):
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0], subsample_size=batch) as index:
        numpyro.sample("y", dist.Normal(X[index] @ beta, 1.0), obs=y[index])


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")  # a short run's k̂
def test_subsampled_plate_gives_the_full_data_log_likelihood_and_loo():
    n = 40
    X = jax.random.normal(jax.random.key(3), (n, 2))
    y = X @ jnp.array([1.0, -0.5]) + jax.random.normal(jax.random.key(4), (n,))
    mcmc = MCMC(MFLD(subsampled_regression, 8, step_size=1e-3), num_warmup=20, num_samples=5)
    mcmc.progress_bar = False
    mcmc.run(jax.random.key(5), X, y)
    tree = mf_arviz.to_datatree(mcmc)
    beta = MCMC.get_samples(mcmc, group_by_chain=True)["beta"]  # (chain, draw, particle, 2)
    # Every datum's log-likelihood (not the subsample's, not scaled by n / B), per particle.
    expected = dist.Normal(jnp.einsum("cdpk,nk->cdpn", beta, X), 1.0).log_prob(y[None, None, None])
    expected = np.moveaxis(np.asarray(expected), 2, 1).reshape(8, 5, n)
    np.testing.assert_allclose(tree["log_likelihood"]["y"].values, expected, rtol=1e-5, atol=1e-5)
    loo = az.loo(tree)
    assert np.isfinite(loo.elpd) and loo.n_data_points == n
