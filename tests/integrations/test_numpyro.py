"""MFLD on NumPyro models: Bayesian posteriors, mean-field plate models, the MCMC workflow."""

import math
import pickle
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, Predictive

import mflangevin
from mflangevin.models import MeanFieldNetwork
from mflangevin.numpyro import MFLD


def linear_regression(X, y=None, prior_scale=2.0, noise=1.0):
    beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ beta, noise), obs=y)


def logistic_regression(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)


def location_scale(y=None):
    loc = numpyro.sample("loc", dist.Normal(0.0, 3.0))
    scale = numpyro.sample("scale", dist.HalfNormal(2.0))
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Normal(loc, scale), obs=y)


NETWORK = MeanFieldNetwork(neuron="tanh", loss="squared")


def mean_field_network(X, y=None, num_particles=16, prior_scale=1.0):
    """Mean-field network with F(μ) = mean_j ½(y_j − f_μ(x_j))² + ½ log 2π."""
    with numpyro.plate("particles", num_particles):
        w = numpyro.sample("w", dist.Normal(0.0, prior_scale).expand([X.shape[1]]).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, prior_scale))
    f = NETWORK.predict({"w": w, "b": b}, X)
    with numpyro.handlers.scale(scale=1.0 / X.shape[0]), numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(f, 1.0), obs=y)


def data(key, n, d):
    key_x, key_y = jax.random.split(key)
    X = jax.random.normal(key_x, (n, d))
    return X, X @ jnp.linspace(1.0, -1.0, d) + 0.5 * jax.random.normal(key_y, (n,))


def run(kernel, *args, num_warmup=50, num_samples=5, seed=0, **kwargs):
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=False)
    mcmc.run(jax.random.key(seed), *args, **kwargs)
    return mcmc


def test_conjugate_linear_regression_matches_ula_posterior():
    X, y = data(jax.random.key(1), 20, 2)
    prior_scale, noise, eta, n = 2.0, 1.0, 0.01, 2000
    kernel = MFLD(linear_regression, n, eta, 1.0, metropolis=False)
    mcmc = run(kernel, X, y, num_warmup=300, num_samples=1)
    particles = np.asarray(mcmc.get_samples()["beta"][-1], np.float64)
    # Gaussian posterior N(A⁻¹b, A⁻¹). Unadjusted Langevin with step η on it has the stationary law
    # N(A⁻¹b, (A(I − ηA/2))⁻¹): the mean is exact, the covariance carries the O(η) bias. With
    # ηλ_max(A) < 1 the chains contract by (1 − ηλ_min(A))³⁰⁰ ≈ 0 from the prior.
    Xn, yn = np.asarray(X, np.float64), np.asarray(y, np.float64)
    A = Xn.T @ Xn / noise**2 + np.eye(2) / prior_scale**2
    mean = np.linalg.solve(A, Xn.T @ yn / noise**2)
    cov = np.linalg.inv(A @ (np.eye(2) - eta * A / 2))
    assert np.max(np.linalg.eigvalsh(eta * A)) < 1
    # Monte-Carlo errors of N independent draws: sd(mean_j) = √(Σ_jj/N),
    # sd(cov_jk) = √((Σ_jj Σ_kk + Σ_jk²)/N); four standard errors per entry.
    mean_se = np.sqrt(np.diag(cov) / n)
    cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(particles.mean(0) - mean), 4 * mean_se)
    np.testing.assert_array_less(np.abs(np.cov(particles.T) - cov), 4 * cov_se)


def test_logistic_regression_agrees_with_the_posterior_by_quadrature():
    """The particles' mean and standard deviation against the posterior's, computed on a grid
    (a grid 4 times finer agrees to 8 digits): β is 2-dimensional, so no reference sampler,
    with its own Monte-Carlo error, is needed."""
    key_x, key_y = jax.random.split(jax.random.key(2))
    X = jax.random.normal(key_x, (40, 2))
    y = jax.random.bernoulli(key_y, jax.nn.sigmoid(X @ jnp.array([1.5, -1.0]))).astype(jnp.float32)
    eta, n = 0.005, 1000
    # NumPyro's Bernoulli log-density mixes bool and float: it needs the standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        mcmc = run(MFLD(logistic_regression, n, eta, 1.0), X, y, num_warmup=400, num_samples=1)
    particles = np.asarray(mcmc.get_samples()["beta"][-1], np.float64)

    grid = np.linspace(-6.0, 6.0, 301)
    beta = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    logits = beta @ np.asarray(X, np.float64).T
    signs = 2.0 * np.asarray(y, np.float64) - 1.0
    log_posterior = -0.5 * np.sum(beta**2, axis=1) - np.sum(np.logaddexp(0.0, -signs * logits), 1)
    weights = np.exp(log_posterior - log_posterior.max())
    weights /= weights.sum()
    mean = weights @ beta
    cov = (beta - mean).T @ ((beta - mean) * weights[:, None])
    sd = np.sqrt(np.diag(cov))
    # Monte-Carlo: mean errors sd/√N, standard deviation errors sd/√(2N) (independent
    # particles). Discretisation: for a Gaussian with precision a, unadjusted Langevin inflates
    # the sd by (1 − ηa/2)^(-1/2) − 1 ≈ ηa/4; we allow ηλ_max/4 · sd (λ_max of the posterior
    # precision) on both the mean and the sd.
    bias = eta * np.max(1 / np.linalg.eigvalsh(cov)) / 4 * sd
    np.testing.assert_array_less(np.abs(particles.mean(0) - mean), 4 * sd / np.sqrt(n) + bias)
    np.testing.assert_array_less(np.abs(particles.std(0) - sd), 4 * sd / np.sqrt(2 * n) + bias)


def test_mean_field_drift_equals_mfld_on_the_objective():
    X, y = data(jax.random.key(3), 10, 3)
    n, eta, lam = 16, 0.05, 0.1
    particles = NETWORK.init_particles(jax.random.key(4), n, 3)
    kernel = MFLD(mean_field_network, n, eta, lam)
    state = kernel.init(jax.random.key(5), 0, particles, (X, y), {})
    new_state = jax.jit(kernel.sample)(state, (X, y), {})

    objective = NETWORK.objective(X, y, reference=mflangevin.gaussian_reference(1.0))
    algorithm = mflangevin.mfld(objective, eta, lam)
    _, step_key = jax.random.split(state.rng_key)
    expected, info = jax.jit(algorithm.step)(step_key, algorithm.init(particles))
    for name in particles:
        np.testing.assert_allclose(new_state.z[name], expected.position[name], rtol=1e-5, atol=1e-6)
    # The state carries F and the drift at its particles, which the step started from. The
    # Gaussian likelihood carries the constant ½ log 2π per datum on top of the squared loss.
    np.testing.assert_allclose(state.energy, info.energy + 0.5 * math.log(2 * math.pi), rtol=1e-6)
    np.testing.assert_allclose(state.drift_norm, info.drift_norm, rtol=1e-5)


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized", "parallel"])
def test_chain_methods_shapes_and_support(chain_method):
    y = jnp.array([0.5, 1.5, -0.3, 2.0, 1.0])
    n, chains, draws = 16, 2, 5
    mcmc = MCMC(
        MFLD(location_scale, n, 0.01),
        num_warmup=20,
        num_samples=draws,
        num_chains=chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(6), y)
    grouped = mcmc.get_samples(group_by_chain=True)
    assert grouped["loc"].shape == grouped["scale"].shape == (chains, draws, n)
    assert mcmc.get_samples()["scale"].shape == (chains * draws, n)
    assert not np.allclose(grouped["loc"][0], grouped["loc"][1])
    assert np.all(grouped["scale"] > 0)
    assert mcmc.get_extra_fields(group_by_chain=True)["diverging"].shape == (chains, draws)


def test_positive_site_samples_its_prior_with_the_jacobian():
    alpha, rate, eta, n = 3.0, 2.0, 0.01, 4000

    def model():
        numpyro.sample("s", dist.Gamma(alpha, rate))

    mcmc = run(MFLD(model, n, eta), num_warmup=400, num_samples=1)
    s = np.asarray(mcmc.get_samples()["s"][-1], np.float64)
    assert np.all(s > 0)
    # In u = log s the target is ∝ exp(αu − βe^u) (the Jacobian adds u), curvature α at the mode:
    # contraction (1 − ηα)^400 ≈ 0, discretisation allowance ηα/4 · sd as for a Gaussian, and
    # Monte-Carlo error sd/√N. Without the Jacobian the law would be Gamma(α − 1, β), mean 1.
    sd = math.sqrt(alpha) / rate
    assert abs(s.mean() - alpha / rate) < 4 * sd / math.sqrt(n) + eta * alpha / 4 * sd


@pytest.mark.parametrize("mean_field", [True, False])
def test_predictive(mean_field):
    X, y = data(jax.random.key(7), 12, 2)
    model, draws, n = (mean_field_network, 3, 16) if mean_field else (linear_regression, 3, 8)
    mcmc = run(MFLD(model, n, 0.01, 0.1), X, y, num_warmup=10, num_samples=draws)
    samples = mcmc.get_samples()
    assert samples["w" if mean_field else "beta"].shape == (draws, n, 2)
    predictive = Predictive(model, samples, batch_ndims=1 if mean_field else 2)
    predictions = predictive(jax.random.key(8), X)["y"]
    assert predictions.shape == ((draws, 12) if mean_field else (draws, n, 12))
    assert mcmc.sampler.is_mean_field == mean_field


def test_post_warmup_state_resumes():
    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    n, eta = 32, 0.01
    kernel = MFLD(model, n, eta)
    mcmc = MCMC(kernel, num_warmup=50, num_samples=5, progress_bar=False)
    mcmc.warmup(jax.random.key(9), init_params={"x": jnp.full(n, 20.0)})
    warm = mcmc.post_warmup_state
    mcmc.run(jax.random.key(10))
    first = mcmc.get_samples()["x"][0]
    # One step moves a particle by η|x| + √(2η)·ξ: far below the distance to a fresh prior draw.
    assert int(mcmc.last_state.i) == 55
    np.testing.assert_array_less(np.abs(first - warm.z["x"]), eta * 20 + 5 * math.sqrt(2 * eta))
    assert np.all(warm.z["x"] > 10)
    assert "F(μ)" in kernel.get_diagnostics_str(mcmc.last_state)


def standard_normal():
    numpyro.sample("x", dist.Normal(0.0, 1.0))


def test_mcmc_pickles_and_resumes_exactly():
    """MCMC(MFLD(...)) pickles (as NUTS's does); the copy continues the run bit for bit."""
    mcmc = MCMC(MFLD(standard_normal, 8, 0.01), num_warmup=0, num_samples=5, progress_bar=False)
    mcmc.run(jax.random.key(0))
    copy = pickle.loads(pickle.dumps(mcmc))
    np.testing.assert_array_equal(copy.get_samples()["x"], mcmc.get_samples()["x"])
    for m in (mcmc, copy):
        m.post_warmup_state = m.last_state
        m.run(m.last_state.rng_key)
    np.testing.assert_array_equal(copy.get_samples()["x"], mcmc.get_samples()["x"])
    assert pickle.loads(pickle.dumps(MFLD(standard_normal, 4, 0.1))).num_particles == 4


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_non_finite_init_params_are_an_error(bad):
    kernel = MFLD(standard_normal, 4, 0.01)
    params = {"x": jnp.zeros(4).at[1].set(bad)}
    with pytest.raises(ValueError, match=r"init_params: site 'x' has NaN or infinite"):
        kernel.init(jax.random.key(0), 0, init_params=params)
    mcmc = MCMC(
        kernel,
        num_warmup=1,
        num_samples=1,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.raises(ValueError, match="init_params"):
        mcmc.run(jax.random.key(0), init_params={"x": jnp.zeros((2, 4)).at[0, 0].set(bad)})


def test_no_retracing_across_steps():
    """The model is traced as often for 30 steps as for 3 (with the Metropolis correction, the
    default on this model)."""
    traces = []

    def model():
        traces.append(None)
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    counts = []
    for num_samples in (3, 30):
        traces.clear()
        run(MFLD(model, 4, 0.1), num_warmup=num_samples, num_samples=num_samples)
        counts.append(len(traces))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("model", [mean_field_network, linear_regression])
def test_reading_the_model_compiles_nothing(model, compilations):
    """Which sites are latent, discrete or in the plate is read from the model's shapes (it runs
    abstractly): before, every operation of the model compiled a program of its own."""
    from mflangevin.integrations import _numpyro_model

    key, X, y = jax.random.key(0), jnp.ones((6, 2)), jnp.ones(6)
    args = (X, y) if model is mean_field_network else (X, y, 2.0)
    compilations.clear()
    mean_field = _numpyro_model.is_mean_field(key, model, args, {}, "particles", 16)
    assert mean_field is (model is mean_field_network)
    assert compilations == []


def test_latent_outside_the_plate_is_an_error():
    def model(X, y):
        noise = numpyro.sample("noise", dist.HalfNormal(1.0))
        with numpyro.plate("particles", 8):
            w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", dist.Normal(jnp.mean(X @ w.T, axis=1), noise), obs=y)

    X, y = data(jax.random.key(11), 6, 2)
    mcmc = MCMC(MFLD(model, 8, 0.01), num_warmup=1, num_samples=1, progress_bar=False)
    with pytest.raises(ValueError, match=r"\['noise'\] sit outside the particle plate"):
        mcmc.run(jax.random.key(0), X, y)


def discrete_model():
    numpyro.sample("k", dist.Poisson(3.0))


@pytest.mark.parametrize(
    ("model", "kwargs", "error", "match"),
    [
        (mean_field_network, {"num_particles": 8}, ValueError, "particle_plate"),
        (discrete_model, {}, ValueError, r"\['k'\] are discrete"),
        (location_scale, {"step_size": -1.0}, ValueError, "step_size"),
        (location_scale, {"temperature": 0.0}, ValueError, "temperature"),
        (location_scale, {"num_particles": 0}, ValueError, "num_particles"),
        (location_scale, {"num_particles": 2.5}, TypeError, "num_particles"),
        (location_scale, {"target_accept_prob": 1.0}, ValueError, "target_accept_prob"),
        (location_scale, {"metropolis": "yes"}, TypeError, "metropolis"),
        (mean_field_network, {"metropolis": True}, ValueError, "metropolis: True needs"),
        ("not a model", {}, TypeError, "model"),
    ],
)
def test_bad_input(model, kwargs, error, match):
    X, y = data(jax.random.key(12), 6, 2)
    options = {"num_particles": 16, "step_size": 0.01, "temperature": 1.0} | kwargs
    with pytest.raises(error, match=match):
        kernel = MFLD(model, **options)
        args = (X, y) if model is mean_field_network else ()
        kernel.init(jax.random.key(0), 0, None, args, {})


def test_improper_uniform_latent_initialises():
    """Review 2026-11: an ImproperUniform latent gave an empty NotImplementedError."""
    from numpyro.distributions import constraints

    def model():
        x = numpyro.sample("x", dist.ImproperUniform(constraints.real, (), ()))
        numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)

    state = MFLD(model, 4, 0.01).init(jax.random.key(0), 0)
    assert state.z["x"].shape == (4,) and bool(jnp.all(jnp.isfinite(state.z["x"])))


def test_tuned_step_and_scale_give_the_preconditioned_ula_law():
    """Defaults (only N and the lengths): the warmup tunes η and the diagonal scale S, then holds
    them. On a conjugate regression whose two coefficients differ 30-fold in scale, the particles
    then follow preconditioned unadjusted Langevin, whose law on the Gaussian posterior
    N(A⁻¹b, A⁻¹) is exact: in u = θ/S the precision is SAS and the covariance
    (SAS(I − ηSAS/2))⁻¹."""
    key_x, key_y = jax.random.split(jax.random.key(13))
    X = jax.random.normal(key_x, (30, 2)) * jnp.array([[1.0, 30.0]])
    y = X @ jnp.array([1.0, 0.02]) + jax.random.normal(key_y, (30,))
    n = 1000
    # The project's MCMC: on this Gaussian posterior it must not warn of a biased run.
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(linear_regression, n, metropolis=False),
        num_warmup=300,
        num_samples=1,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), X, y)
    state = mcmc.last_state
    assert int(state.num_improbable) == 0
    particles = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"][:, -1], np.float64)
    Xn, yn = np.asarray(X, np.float64), np.asarray(y, np.float64)
    A = Xn.T @ Xn + np.eye(2) / 4.0
    mean = np.linalg.solve(A, Xn.T @ yn)
    S = np.diag(np.asarray(state.scale["beta"], np.float64))
    eta = float(state.step_size)
    A_u = S @ A @ S
    cov = S @ np.linalg.inv(A_u @ (np.eye(2) - eta * A_u / 2)) @ S
    assert 0.5 < float(state.accept_prob) < 1.0 and int(state.num_refused) == 0
    np.testing.assert_array_equal(state.backoff, 1.0)  # no particle left behind
    mean_se = np.sqrt(np.diag(cov) / n)
    cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(particles.mean(0) - mean), 4 * mean_se)
    np.testing.assert_array_less(np.abs(np.cov(particles.T) - cov), 4 * cov_se)
    # The discretisation bias the tuned step leaves is small: the sds within 10 % of A⁻¹'s.
    ratio = np.sqrt(np.diag(cov) / np.diag(np.linalg.inv(A)))
    np.testing.assert_array_less(np.abs(ratio - 1), 0.1)


def regression_with_scale(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ beta, noise), obs=y)


def test_the_guides_regression_reaches_the_posterior_at_the_defaults():
    """Regression (review 2026-12): the guide's model with a HalfNormal noise scale returned prior
    draws (beta means [57, −158, 124], noise inf), every step refused. With n = 200 points the
    posterior mean is least squares within 0.003 and the posterior sd is σ/√n·(XᵀX/n)^{-½}."""
    key_x, key_y = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (200, 3))
    y = X @ jnp.array([1.0, -2.0, 0.5]) + 0.3 * jax.random.normal(key_y, (200,))
    n = 64
    mcmc = run(MFLD(regression_with_scale, n), X, y, num_warmup=1000, num_samples=1)
    beta = np.asarray(mcmc.get_samples()["beta"][-1], np.float64)
    noise = np.asarray(mcmc.get_samples()["noise"][-1], np.float64)
    Xn, yn = np.asarray(X, np.float64), np.asarray(y, np.float64)
    least_squares, residuals = np.linalg.lstsq(Xn, yn)[:2]
    sigma = np.sqrt(residuals[0] / 197)
    sd = sigma * np.sqrt(np.diag(np.linalg.inv(Xn.T @ Xn)))
    assert int(mcmc.get_extra_fields()["num_refused"].sum()) == 0
    np.testing.assert_array_less(
        np.abs(beta.mean(0) - least_squares), 4 * sd / np.sqrt(n) + 0.1 * sd
    )
    np.testing.assert_array_less(np.abs(beta.std(0) / sd - 1), 0.2)
    assert abs(noise.mean() - sigma) < 0.1 * sigma


def test_a_run_of_refused_moves_warns_with_the_fix():
    """A step far too large: the particles run past the threshold within a few steps and stay
    there, every later move refused; MCMC.run says so and names the fix."""
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(standard_normal, 8, step_size=10.0, metropolis=False),
        num_warmup=0,
        num_samples=30,
        progress_bar=False,
    )
    with pytest.warns(UserWarning, match=r"particle moves after warmup were refused.*step_size"):
        mcmc.run(jax.random.key(0))
    assert bool(np.all(np.isfinite(mcmc.get_samples()["x"])))


def test_a_run_of_rejected_moves_warns_with_the_fix():
    """With the Metropolis correction the same step is rejected nearly always: the particles
    stand still, finite, and MCMC.run says so."""
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(standard_normal, 8, step_size=10.0), num_warmup=0, num_samples=30, progress_bar=False
    )
    with pytest.warns(UserWarning, match=r"Metropolis test accepted .* Lower step_size"):
        mcmc.run(jax.random.key(0))
    assert int(mcmc.get_extra_fields()["num_refused"].sum()) == 0


def funnel():
    """Neal's funnel: ``x``'s scale is ``exp(v/2)``, so the curvature grows like ``exp(−v)``."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([2]).to_event(1))


def test_a_funnel_warns_that_the_step_is_too_large_in_its_neck():
    """At the defaults the step tuned on the bulk is far too large in the funnel's neck: about
    2 in 1000 moves there have a Metropolis acceptance probability below 1 % (a Gaussian: none,
    see the test above). MCMC.run names the cause and the fixes."""
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(funnel, 64, metropolis=False), num_warmup=300, num_samples=100, progress_bar=False
    )
    with pytest.warns(
        UserWarning, match=r"too large where the posterior is narrow.*LocScaleReparam"
    ):
        mcmc.run(jax.random.key(0))
    assert int(mcmc.get_extra_fields()["num_improbable"].sum()) > 0


def shifted_normal():
    numpyro.sample("x", dist.Normal(1.0, 2.0))


def test_metropolis_correction_removes_the_bias_of_a_large_step():
    """On N(1, 2²), curvature a = 1/4, at η = 2: unadjusted Langevin's stationary law is
    N(1, 1/(a(1 − ηa/2))), an sd 15 % too large (7 standard errors of N = 1000 draws). With each
    particle's Metropolis test every particle is a MALA chain, whose law is N(1, 2²) exactly; a
    refused move keeps the particle where it was, so the particles unmoved by the last step are
    a binomial count with the complement of the mean acceptance probability as rate."""
    n, eta = 1000, 2.0
    sd_law = {True: 2.0, False: 1 / math.sqrt(0.25 * (1 - eta * 0.25 / 2))}
    for metropolis in (True, False):
        kernel = MFLD(shifted_normal, n, eta, metropolis=metropolis)
        mcmc = run(kernel, num_warmup=50, num_samples=2)
        x = np.asarray(mcmc.get_samples()["x"], np.float64)
        # N independent draws: the mean's standard error sd/√N, the sd's sd/√(2N).
        sd = sd_law[metropolis]
        assert abs(x[-1].mean() - 1.0) < 4 * sd / math.sqrt(n)
        assert abs(x[-1].std() - sd) < 4 * sd / math.sqrt(2 * n)
        unmoved = np.mean(x[-1] == x[-2])
        if metropolis:
            rate = 1 - float(mcmc.get_extra_fields()["accept_prob"][-1])
            assert 0.05 < rate and abs(unmoved - rate) < 4 * math.sqrt(rate * (1 - rate) / n)
        else:
            assert unmoved == 0.0
    assert kernel.is_adjusted is False and int(mcmc.get_extra_fields()["num_refused"].sum()) == 0


def test_a_funnel_warns_of_stuck_particles_with_the_metropolis_correction():
    """With the correction (the default) the step leaves no bias, but particles in the funnel's
    neck have their moves rejected for hundreds of steps: MCMC.run says so, naming the
    reparametrisation. Neal's funnel is a mild one for this check (1.5 % of the particles stuck
    with this key, 0.5-2.1 % over keys 0-3; the centred eight schools 1.8-5 %, the threshold
    1 %); on a Gaussian posterior no particle stays put that long."""
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(funnel, 256), num_warmup=300, num_samples=400, progress_bar=False
    )
    with pytest.warns(UserWarning, match=r"had not moved for 100 steps.*LocScaleReparam"):
        mcmc.run(jax.random.key(0))
    assert mcmc.sampler.is_adjusted
    gaussian = mflangevin.numpyro.MCMC(
        MFLD(standard_normal, 64), num_warmup=100, num_samples=200, progress_bar=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gaussian.run(jax.random.key(0))
    assert int(gaussian.get_extra_fields()["num_stuck"].sum()) == 0


def test_accept_prob_and_improbable_moves_equal_the_mala_ratio():
    """The state's diagnostic against MALA's ratio computed by hand in float64: for a given step
    there is no preconditioner, V(x) = |x|²/2 and log α = V(x) − V(x') + (|x' − x + η x|² −
    |x − x' + η x'|²)/(4η). The step is far too large (a Metropolis test would accept about a
    third of the moves): MCMC.run warns."""

    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))

    eta, start = 1.5, jax.random.normal(jax.random.key(1), (64, 3))
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(model, 64, step_size=eta, metropolis=False),
        num_warmup=0,
        num_samples=1,
        progress_bar=False,
    )
    with pytest.warns(UserWarning, match=r"mean Metropolis acceptance probability of 0\.[0-5]"):
        mcmc.run(jax.random.key(0), init_params={"x": start})
    state = mcmc.last_state
    x, x_new = np.asarray(start, np.float64), np.asarray(state.z["x"], np.float64)
    forward = np.sum((x_new - x + eta * x) ** 2, 1)
    backward = np.sum((x - x_new + eta * x_new) ** 2, 1)
    log_alpha = 0.5 * np.sum(x**2 - x_new**2, 1) + (forward - backward) / (4 * eta)
    alpha = np.exp(np.minimum(log_alpha, 0.0))
    np.testing.assert_allclose(float(state.accept_prob), alpha.mean(), rtol=1e-5)
    assert int(state.num_improbable) == int(np.sum(alpha < 1e-2)) > 0


def mean_field_gaussian(y, num_particles):
    """``F(μ) = ½(y − ∫θ dμ)²``, ν = N(0, 1): at λ = 1 the Gibbs measure of ``J(Θ) = N F(μ_Θ)
    + ½ Σ θ_i²`` has precision ``I + 11ᵀ/N``, unit variance across the particles."""
    with numpyro.plate("particles", num_particles):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(jnp.mean(theta), 1.0), obs=y)


def test_the_warmup_tunes_a_mean_field_models_step_to_its_target():
    """No step given: the warmup tunes η on the whole system's Metropolis ratio until the
    estimated acceptance reaches the target, then holds it; the particles then follow
    preconditioned ULA, whose spread across particles is ``1/(1 − ηs²/2)`` (s the scale)."""
    n = 500
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(mean_field_gaussian, n), num_warmup=200, num_samples=20, progress_bar=False
    )
    mcmc.run(jax.random.key(0), 1.0, n)
    # The estimate runs a little below the target after warmup (0.955–0.96 measured at
    # N = 500 and 2000), its per-step spread about 0.025.
    accept = np.asarray(mcmc.get_extra_fields()["accept_prob"], np.float64)
    assert abs(accept.mean() - 0.97) < 0.02
    state = mcmc.last_state
    eta, s = float(state.step_size), float(state.scale["theta"])
    theta = np.asarray(mcmc.get_samples()["theta"], np.float64)
    spread = 1 / (1 - eta * s**2 / 2)
    # Each draw's variance across the particles is within 4 sds (one draw's) of the ULA law's.
    assert abs(theta.var(axis=1, ddof=1).mean() / spread - 1) < 4 * np.sqrt(2 / (n - 1))


@pytest.fixture(scope="module")
def pooled_run():
    """MFLD on a Bayesian model through mflangevin.numpyro.MCMC, 2 chains of 8 particles."""
    X, y = data(jax.random.key(14), 12, 2)
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(linear_regression, 8), num_warmup=20, num_samples=5, num_chains=2, progress_bar=False
    )
    mcmc.run(jax.random.key(0), X, y)
    return mcmc, X


def test_samples_pool_the_particles_into_draws(pooled_run):
    """Review 2026-12: Predictive(model, mcmc.get_samples()) failed to broadcast the particle
    axis; pooled, it takes the samples as it takes NUTS's."""
    mcmc, X = pooled_run
    particles = MCMC.get_samples(mcmc, group_by_chain=True)["beta"]  # (chain, draw, N, 2)
    grouped = mcmc.get_samples(group_by_chain=True)["beta"]
    assert particles.shape == (2, 5, 8, 2) and grouped.shape == (2 * 8, 5, 2)
    np.testing.assert_array_equal(grouped[8 + 3], particles[1, :, 3])  # chain 1, particle 3
    samples = mcmc.get_samples()
    assert samples["beta"].shape == (2 * 8 * 5, 2)
    predictions = Predictive(linear_regression, samples)(jax.random.key(1), X)["y"]
    assert predictions.shape == (2 * 8 * 5, 12)


def test_print_summary_pools_the_particles(pooled_run, capsys):
    """Review 2026-12: one row per particle (504 lines); now one per site coordinate."""
    mcmc, _ = pooled_run
    mcmc.print_summary()
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line.split()[0] for line in lines if line.strip().startswith("beta")]
    assert rows == ["beta[0]", "beta[1]"]
    assert lines[-1] == "Number of refused particle moves: 0"


def test_init_compiles_once_per_model_and_shapes(compilations):
    """Review 2026-12: every MFLD.init cost 2-9 s of small compilations. Now the init is one
    program: a second init, with other data of the same shapes, compiles nothing."""
    kernel = MFLD(regression_with_scale, 8)
    X, y = data(jax.random.key(15), 10, 2)
    other = X + 1.0
    kernel.init(jax.random.key(0), 10, None, (X, y), {})
    compilations.clear()
    state = kernel.init(jax.random.key(1), 10, None, (other, y), {})
    assert compilations == []
    assert state.z["beta"].shape == (8, 2) and bool(jnp.isfinite(state.step_size))


def two_modes():
    """A main mode at 0 and a minor one at 10, e^{-92} as likely, with a barrier between."""
    x = numpyro.sample("x", dist.Normal(0.0, 20.0))
    log_density = jnp.logaddexp(
        dist.Normal(0.0, 0.1).log_prob(x), -92.0 + dist.Normal(10.0, 0.1).log_prob(x)
    )
    numpyro.factor("likelihood", log_density)


def test_warmup_restarts_particles_stranded_in_a_minor_mode():
    """A particle started in the minor mode never crosses the barrier; the warmup restarts it
    from a particle of the cloud (the Dirichlet mixture of benchmarks/numpyro_models.py kept
    0.5 % of its particles at σ ≈ 2 before, an sd ratio of 2.4 against NUTS)."""
    start = jnp.where(jnp.arange(16) < 4, 10.0, 0.0)
    mcmc = run(MFLD(two_modes, 16), num_warmup=100, num_samples=1, init_params={"x": start})
    x = mcmc.get_samples()["x"][-1]
    assert bool(jnp.all(jnp.abs(x) < 1.0)), x


def subsampled_regression(X, y=None, batch=100):
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0], subsample_size=batch) as index:
        numpyro.sample("y", dist.Normal(X[index] @ beta, 1.0), obs=y[index])


def test_subsampled_plate_runs_stochastic_gradient_mfld():
    """Review 2026-12: a plate with subsample_size failed at the first step (no key for the
    indices). Each step now draws one subsample of B = 100 of n = 1000 points, scaled by n/B as
    NumPyro scales it: stochastic-gradient Langevin, whose law is the posterior N(A⁻¹b, A⁻¹) up
    to the minibatch noise, η·n²/B times the per-point gradient variance. With no step given
    the warmup tunes it on one subsample's potential, held where the minibatch noise is a tenth
    of the Langevin noise (the sds then about 5 % too large). The drift carries control variates
    (the default), centred at the cloud's mean halfway through the warmup."""
    X, y = data(jax.random.key(16), 1000, 2)
    n = 256
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(subsampled_regression, n),
        num_warmup=600,
        num_samples=1,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), X, y)
    particles = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"][:, -1], np.float64)
    Xn, yn = np.asarray(X, np.float64), np.asarray(y, np.float64)
    A = Xn.T @ Xn + np.eye(2) / 4.0
    mean, sd = np.linalg.solve(A, Xn.T @ yn), np.sqrt(np.diag(np.linalg.inv(A)))
    np.testing.assert_array_less(np.abs(particles.mean(0) - mean), 4 * sd / np.sqrt(n))
    np.testing.assert_array_less(np.abs(particles.std(0) / sd - 1), 0.25)


@pytest.fixture(scope="module")
def subsampled_start():
    """A kernel on a subsampled regression (B = 20 of n = 200) and its initial state,
    before the warmup of 4 steps centres the control variate."""
    X, y = data(jax.random.key(17), 200, 2)
    args = (X, y, 20)
    kernel = MFLD(subsampled_regression, 8, step_size=1e-3)
    return kernel, args, kernel.init(jax.random.key(0), 4, None, args, {})


def test_control_variate_drift_is_unbiased_and_exact_at_its_centre(subsampled_start):
    """With the centre θ̂ fixed, ∇E_B(θ) − ∇E_B(θ̂) + ∇E(θ̂) (and the potential whose gradient it
    is) averages over subsamples to the full-data value, within Monte-Carlo error over 2000
    subsamples of B = 20 of n = 200; at θ = θ̂ it is the full-data value on every subsample."""
    from mflangevin.integrations import _numpyro_control_variate as control

    kernel, args, state = subsampled_start
    centre_at = partial(control.centred_at, full_data_part=kernel._data_part(args, {}, None))
    centred = jax.jit(centre_at)(control.centre(state.z, mean_field=False))
    full = jax.jit(kernel._data_part(args, {}, None, 1.0))
    keys = jax.random.split(jax.random.key(1), 2000)

    @jax.jit
    def estimates(at):
        return jax.vmap(lambda key: kernel._potential_fn(args, {}, 1.0, key, centred)(at)[1:])(keys)

    potentials, drifts = estimates(state.z)
    exact_potential, exact_drift = full(state.z)[1:]
    for draws, exact in ((potentials, exact_potential), (drifts["beta"], exact_drift["beta"])):
        error = np.abs(np.mean(draws, 0) - exact)
        np.testing.assert_array_less(error, 5 * np.std(draws, 0) / np.sqrt(2000) + 1e-3)
    at_centre = {"beta": jnp.broadcast_to(centred.centre["beta"], (8, 2))}
    potentials, drifts = estimates(at_centre)
    exact_potential, exact_drift = full(at_centre)[1:]
    np.testing.assert_allclose(potentials, np.broadcast_to(exact_potential, (2000, 8)), rtol=1e-5)
    np.testing.assert_allclose(
        drifts["beta"], np.broadcast_to(exact_drift["beta"], (2000, 8, 2)), rtol=1e-4, atol=1e-2
    )


def test_control_variate_centres_in_the_one_compiled_step(subsampled_start, compilations):
    """The centring (a full-data pass halfway through the warmup and at its end) is a branch of
    the step: six steps across both centrings compile one program, after which the control
    variate is centred at the cloud's mean."""
    kernel, args, state = subsampled_start
    assert float(state.control_variate.weight) == 0.0
    step = jax.jit(lambda state: kernel.sample(state, args, {}))
    compilations.clear()
    for _ in range(6):
        state = step(state)
    assert len(compilations) == 1
    assert float(state.control_variate.weight) == 1.0
    assert state.control_variate.centre["beta"].shape == (1, 2)


def test_control_variate_must_be_a_bool():
    with pytest.raises(TypeError, match="control_variate: expected True or False"):
        MFLD(subsampled_regression, 8, control_variate="yes")


@pytest.mark.parametrize(("step_size", "radius"), [(None, 4.0), (0.01, 2.0)])
def test_tuned_runs_start_wider_than_nuts(step_size, radius):
    """A tuned run starts uniform on (−4, 4): a cloud wider than the posterior contracts along
    the drift, a narrower one spreads only by the noise. A given step keeps NUTS's (−2, 2)."""
    kernel = MFLD(standard_normal, 500, step_size)
    z = np.asarray(kernel.init(jax.random.key(0), 10).z["x"])
    # Uniform on (−r, r): each extreme of 500 draws is within r/50 of ±r but with odds 0.99⁵⁰⁰.
    assert radius * 0.98 < -z.min() < radius and radius * 0.98 < z.max() < radius


def test_numpy_arguments_are_on_the_device_once_for_warmup_and_run():
    """NumPyro copies a NumPy model argument to the device at every call and keeps each copy;
    mflangevin.numpyro.MCMC moves it there once: after a warmup and a run, one device array of
    the data's shape is alive (measured with NumPyro's own MCMC: two)."""

    def model(X, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]))
        numpyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y)

    X = np.random.default_rng(0).standard_normal((331, 7)).astype(np.float32)
    y = X[:, 0].copy()

    def copies():
        return sum(a.shape == X.shape for a in jax.live_arrays())

    before = copies()
    mcmc = mflangevin.numpyro.MCMC(
        MFLD(model, 4, step_size=1e-3), num_warmup=2, num_samples=2, progress_bar=False
    )
    mcmc.warmup(jax.random.key(0), X, y)
    mcmc.run(jax.random.key(1), X, y)
    assert copies() - before == 1


def test_metropolis_is_refused_on_a_subsampled_model():
    """A subsample's potentials and drifts are noisy: their ratio is not the posterior's."""
    X, y = data(jax.random.key(17), 20, 2)
    kernel = MFLD(subsampled_regression, 8, metropolis=True)
    with pytest.raises(ValueError, match=r"metropolis: True needs .* subsampled"):
        kernel.init(jax.random.key(0), 0, None, (X, y, 5), {})
