import functools

import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest
from blackjax.util import generate_gaussian_noise

import mflangevin
from mflangevin import EnergyObjective, MeanFieldObjective, gaussian_reference, keys
from mflangevin.kernels import data


def quadratic_objective(m, l2, reference=None):
    """F(μ) = ½‖E_μθ − m‖² + λ' E_μ‖θ‖² (docs/theory/mfld.md) in structured form: Φ(θ) = θ."""
    return MeanFieldObjective(
        feature_map=lambda theta, _: theta,
        risk=lambda z, _: 0.5 * jnp.sum((z - m) ** 2),
        penalty=lambda theta: l2 * jnp.sum(theta**2),
        reference=reference,
    )


def network_problem(num_samples=40, num_particles=16):
    return problems.network_problem(num_samples, 3, num_particles)


def pool_sampler(X, y, batch):
    """An online stream: a fresh draw (with replacement) from a large pool at every call."""

    def sample(key):
        idx = jax.random.randint(key, (batch,), 0, X.shape[0])
        return X[idx], y[idx]

    return sample


def data_key(key):
    """The data key of one outer step, as documented in ``pda.build_kernel``."""
    return keys.pda_keys(key).data


def inner_key(key, k):
    return keys.inner_step_key(keys.pda_keys(key).inner, k)


@pytest.mark.parametrize("count", [0, 4])
@pytest.mark.parametrize("problem", ["network_l2", "quadratic_reference"])
def test_one_inner_step_with_all_weight_on_the_last_term_is_a_noisy_gradient_step(problem, count):
    """K_t = 1, normalisation="average" and an empty dual average (the first step, or a restart
    at a later count): V_t = [⟨g_t, Φ⟩ + r]/λ − log ν, so with η_t = λη the PDA step is
    θ − η[∇δF/δμ − λ∇log ν] + √(2λη) ξ, the MFLD step, with the same noise."""
    lam, eta = 0.2, 0.05
    if problem == "network_l2":
        net, X, y, particles = network_problem()
        objective = net.objective(X, y, l2=1e-2)
    else:
        objective = quadratic_objective(jnp.array([1.0, -1.0]), 0.0, gaussian_reference(1.5))
        particles = jax.random.normal(jax.random.key(2), (16, 2))
    algorithm = mflangevin.pda(
        objective,
        inner_step_size=lam * eta,
        temperature=lam,
        num_inner_steps=1,
        normalisation="average",
    )
    state = algorithm.init(particles)._replace(count=jnp.asarray(count, jnp.int32))
    key = jax.random.key(3)
    new_state, _ = jax.jit(algorithm.step)(key, state)

    # Hand-written formula.
    g = objective.risk_gradient(objective.mean_embedding(particles))
    drift = objective.first_variation_grad(g, particles)
    if objective.reference is not None:
        score = objective.reference.score(particles)
        drift = jax.tree.map(lambda d, s: d - lam * s, drift, score)
    noise = generate_gaussian_noise(inner_key(key, 0), particles)
    expected = jax.tree.map(
        lambda p, d, n: p - eta * d + jnp.sqrt(2 * lam * eta) * n, particles, drift, noise
    )
    chex.assert_trees_all_close(new_state.position, expected, rtol=1e-5, atol=1e-6)

    # The MFLD kernel with the same noise.
    mfld = mflangevin.mfld(objective, step_size=eta, temperature=lam)
    mfld_state, _ = jax.jit(mfld.step)(inner_key(key, 0), mfld.init(particles))
    chex.assert_trees_all_close(new_state.position, mfld_state.position, rtol=1e-5, atol=1e-6)


def _explicit_g(objective, state, key, mode, batch_size, sampler):
    """g_s as the maths defines it, in the dual average's coordinates."""
    position = state.position
    if mode == "full":
        return objective.risk_gradient(objective.mean_embedding(position))
    if mode == "minibatch":
        n = objective.data[0].shape[0]
        source = data.minibatch(batch_size)
        idx, _ = source.indices(data_key(key), n, state.batches)
        batch = objective.subsample(idx)
        g_batch = batch.risk_gradient(batch.mean_embedding(position))
        return jnp.zeros(n).at[idx].set(g_batch)
    sample_objective = MeanFieldObjective(
        objective.feature_map, objective.risk, objective.penalty, data=sampler(data_key(key))
    )
    return sample_objective.risk_gradient(sample_objective.mean_embedding(position))


@pytest.mark.parametrize(
    "mode, capacity", [("full", None), ("minibatch", None), ("online", 8), ("online", 3)]
)
def test_accumulator_is_the_explicit_weighted_sum(mode, capacity):
    """After T outer steps, state.weighted_sum = Σ_s s g_s and state.weight_sum = Σ_s s; online
    with a store of C < T steps, slot j holds the latest s with (s − 1) mod C = j."""
    net, X, y, particles = network_problem()
    objective = net.objective(X, y, l2=1e-3)
    batch_size, sampler, kwargs = 10, pool_sampler(X, y, 6), {}
    if mode == "minibatch":
        kwargs = {"batch_size": batch_size}
    elif mode == "online":
        kwargs = {"data_sampler": sampler, "num_outer_steps": capacity}
    algorithm = mflangevin.pda(objective, 0.01, 0.05, 2, **kwargs)
    state = algorithm.init(particles, jax.random.key(5))
    step = jax.jit(algorithm.step)
    num_steps = 5
    terms = []
    for s, key in enumerate(jax.random.split(jax.random.key(4), num_steps), start=1):
        terms.append(s * _explicit_g(objective, state, key, mode, batch_size, sampler))
        state, _ = step(key, state)

    if mode != "online":
        explicit, weights = sum(terms), sum(range(1, num_steps + 1))
    else:
        slots = {}
        for s, term in enumerate(terms, start=1):
            slots[(s - 1) % capacity] = (s, term)
        explicit = jnp.concatenate(
            [slots[j][1] if j in slots else jnp.zeros(6) for j in range(capacity)]
        )
        weights = sum(s for s, _ in slots.values())
    np.testing.assert_allclose(state.weighted_sum, explicit, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state.weight_sum, weights, rtol=1e-6)


def test_minibatch_dual_gradient_is_unbiased():
    """One step from an empty dual average leaves weighted_sum = ĝ_1. Over M keys its mean is g
    per coordinate: ĝ_j = ℓ'_j / B with probability B/n and 0 otherwise, so
    Var ĝ_j = (ℓ'_j/B)² (B/n)(1 − B/n) and the Monte-Carlo error is √(Var/M)."""
    net, X, y, particles = network_problem(num_samples=20)
    objective = net.objective(X, y)
    n, batch_size, num_keys = 20, 5, 4000
    algorithm = mflangevin.pda(objective, 0.01, 0.05, 1, batch_size=batch_size)
    state = algorithm.init(particles)
    keys = jax.random.split(jax.random.key(0), num_keys)
    estimates = jax.jit(jax.vmap(lambda k: algorithm.step(k, state)[0].weighted_sum))(keys)
    g = objective.risk_gradient(objective.mean_embedding(particles))
    p = batch_size / n
    se = jnp.abs(g * n / batch_size) * jnp.sqrt(p * (1 - p) / num_keys)
    assert jnp.all(jnp.abs(jnp.mean(estimates, axis=0) - g) < 4 * se + 1e-7)


@pytest.mark.parametrize("normalisation", ["paper", "average"])
def test_quadratic_reaches_the_mfld_stationary_law(normalisation):
    """On F(μ) = ½‖E_μθ − m‖² + λ'‖θ‖² the optimum of G is N(m/(1+2λ'), λ/(2λ') I).

    V_T is the Gaussian potential c_T [⟨ḡ_T, θ⟩ + λ'‖θ‖²]/λ, curvature a = 2λ'c_T/λ, on which
    the inner unadjusted Langevin chain (step η) has the exact stationary variance
    v_T = 1 / (a (1 − ηa/2)); the spread of the particles does not depend on ḡ, and c_T moves
    by O(1/T²) per outer step, so the particle variance is v_T up to sampling error: per
    coordinate s² has standard error v_T √(2/(N−1)), pooled over p coordinates. The closed form
    differs from v_T by the known O(η) and (paper normalisation) O(1/T) biases.

    The particle mean is −ḡ_T/(2λ' c_T) plus the particles' own sampling error (sd √(v_T/N));
    ḡ_T averages past particle means, whose errors have sd ≤ √(v_T/N) each, so it adds at most
    √(v_T/N)/(2λ' c_T). The start's transient decays like 1/T² under the weights s.
    """
    m, l2, lam, eta = jnp.array([1.0, -2.0]), 0.5, 0.1, 0.002
    num, p, num_outer, inner = 2000, 2, 150, 10
    algorithm = mflangevin.pda(
        quadratic_objective(m, l2), eta, lam, inner, normalisation=normalisation, output="last"
    )
    start = jax.random.normal(jax.random.key(1), (num, p))
    state, _ = blackjax.util.run_inference_algorithm(
        jax.random.key(0), algorithm, num_outer, initial_position=start
    )
    c = num_outer / (num_outer + 2) if normalisation == "paper" else 1.0
    a = 2 * l2 * c / lam
    v_T = 1 / (a * (1 - eta * a / 2))
    final = state.position

    variance = jnp.mean(jnp.var(final, axis=0, ddof=1))
    se = v_T * np.sqrt(2 / (num - 1)) / np.sqrt(p)
    assert abs(float(variance) - v_T) < 4 * se, (variance, v_T, se)
    closed_form = lam / (2 * l2)
    assert abs(float(variance) - closed_form) < abs(v_T - closed_form) + 4 * se

    sd_mean = np.sqrt(v_T / num) * (1 + 1 / (2 * l2 * c))
    transient = float(jnp.max(jnp.abs(m))) * 2 / num_outer**2
    error = jnp.abs(jnp.mean(final, axis=0) - m / (1 + 2 * l2))
    assert jnp.all(error < 4 * sd_mean + transient), (error, sd_mean)


def test_random_output_rule():
    """P[t̂ = s] ∝ s over s = 2…T+1; over M independent runs each frequency has binomial
    standard error √(P(1−P)/M)."""
    num_outer, num_runs = 4, 4000
    algorithm = mflangevin.pda(quadratic_objective(jnp.array([1.0]), 0.5), 0.05, 0.5, 1)

    def run(key):
        def one(state, k):
            state, _ = algorithm.step(k, state)
            return state, state.position[0, 0]

        state, path = jax.lax.scan(
            one, algorithm.init(jnp.zeros((1, 1))), jax.random.split(key, num_outer)
        )
        return jnp.argmax(path == state.output[0, 0]) + 2

    chosen = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), num_runs))
    probs = np.arange(2, num_outer + 2) / np.sum(np.arange(2, num_outer + 2))
    freq = np.array([np.mean(chosen == s) for s in range(2, num_outer + 2)])
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / num_runs)), freq


@pytest.mark.parametrize("num_inner_steps", [3, lambda k: 1 + k // 2])
def test_run_inference_algorithm_and_vmapped_chains(num_inner_steps):
    net, X, y, particles = network_problem()
    algorithm = mflangevin.pda(net.objective(X, y, l2=1e-3), 0.01, 1e-2, num_inner_steps)
    chains, num_steps = 3, 6
    starts = jax.tree.map(lambda x: jnp.stack([x] * chains), particles)

    def run(key, position):
        _, (history, energy) = blackjax.util.run_inference_algorithm(
            key,
            algorithm,
            num_steps,
            initial_position=position,
            transform=lambda state, info: (state.position, info.energy),
        )
        return history, energy

    history, energy = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), chains), starts)
    assert history["w"].shape == (chains, num_steps, 16, 3)
    assert energy.shape == (chains, num_steps)
    assert bool(jnp.all(jnp.isfinite(energy)))
    assert not np.allclose(history["w"][0], history["w"][1])


@pytest.mark.parametrize("mode", ["full", "minibatch", "online"])
def test_no_retracing_and_same_key_same_result(mode):
    net, X, y, particles = network_problem()
    kwargs = {
        "full": {},
        "minibatch": {"batch_size": 8},
        "online": {"data_sampler": pool_sampler(X, y, 4), "num_outer_steps": 10},
    }[mode]
    chex.clear_trace_counter()
    algorithm = mflangevin.pda(
        net.objective(X, y), lambda k: 0.01 / (1.0 + k.astype(jnp.float32)), 1e-2, 2, **kwargs
    )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(particles)
    for key in jax.random.split(jax.random.key(0), 4):
        state, info = step(key, state)
    assert int(state.count) == 4
    again = algorithm.init(particles)
    for key in jax.random.split(jax.random.key(0), 4):
        again, _ = step(key, again)
    chex.assert_trees_all_equal(state, again)


def test_divergence_is_reported():
    objective = quadratic_objective(jnp.array([1.0]), 0.5)
    algorithm = mflangevin.pda(objective, 1.0, 0.1, 2, divergence_threshold=5.0)
    state = algorithm.init(jnp.full((4, 1), 4.0))
    new_state, info = algorithm.step(jax.random.key(0), state)
    assert bool(info.is_divergent)
    assert bool(jnp.all(jnp.abs(new_state.position) < 5.0))


def test_a_divergent_particle_is_refused_alone():
    """Regression (review 2026-12): one particle beyond the threshold kept all N in place. Now
    it alone keeps its position, at each of the K inner steps, and the others move."""
    objective = MeanFieldObjective(
        feature_map=lambda theta, _: theta,
        risk=lambda z, _: 0.5 * jnp.sum((z - 1.0) ** 2),
        penalty=lambda theta: jnp.sum(0.5 * theta**2 + jax.nn.relu(jnp.abs(theta) - 5.0) ** 3),
    )  # steep beyond 5: a particle at 40 overshoots to beyond the threshold 50
    algorithm = mflangevin.pda(objective, 0.1, 0.1, 3, divergence_threshold=50.0)
    start = jnp.zeros((4, 1)).at[0].set(40.0)
    state, info = algorithm.step(jax.random.key(0), algorithm.init(start))
    assert bool(info.is_divergent) and int(info.num_refused) == 3
    assert float(state.position[0, 0]) == 40.0
    assert bool(jnp.all(state.position[1:] != 0.0))


def _objective():
    return quadratic_objective(jnp.array([1.0, 1.0]), 0.5)


@pytest.mark.parametrize(
    "objective, kwargs, error, match",
    [
        (lambda p: jnp.sum(p), {}, TypeError, "objective"),
        (EnergyObjective(lambda p: jnp.sum(p)), {}, TypeError, "objective"),
        (_objective(), {"inner_step_size": -0.1}, ValueError, "inner_step_size"),
        (_objective(), {"divergence_factor": 1.0}, ValueError, "divergence_factor"),
        (_objective(), {"dual_fn": 3}, TypeError, "dual_fn"),
        (_objective(), {"temperature": 0.0}, ValueError, "temperature"),
        (_objective(), {"temperature": lambda k: 0.1}, TypeError, "temperature"),
        (_objective(), {"num_inner_steps": 0}, ValueError, "num_inner_steps"),
        (_objective(), {"num_inner_steps": 2.5}, TypeError, "num_inner_steps"),
        (_objective(), {"normalisation": "other"}, ValueError, "normalisation"),
        (_objective(), {"output": "best"}, ValueError, "output"),
        (_objective(), {"batch_size": 4}, TypeError, "batch_size"),
        (_objective(), {"data_sampler": lambda k: None}, ValueError, "num_outer_steps"),
        (_objective(), {"data_sampler": 3, "num_outer_steps": 2}, TypeError, "data_sampler"),
    ],
)
def test_bad_parameters(objective, kwargs, error, match):
    args = {"inner_step_size": 0.1, "temperature": 0.1, "num_inner_steps": 2} | kwargs
    with pytest.raises(error, match=match):
        mflangevin.pda(objective, **args)


def test_bad_data_modes():
    net, X, y, particles = network_problem()
    objective = net.objective(X, y)
    with pytest.raises(ValueError, match="batch_size"):
        mflangevin.pda(objective, 0.1, 0.1, 2, batch_size=41)
    with pytest.raises(ValueError, match="batch_size"):
        mflangevin.pda(objective, 0.1, 0.1, 2, batch_size=4, data_sampler=pool_sampler(X, y, 4))
    summed = MeanFieldObjective(
        lambda theta, data: jnp.sum(net.unit(theta, data[0])),
        lambda z, _: z,
        data=(X, y),
        finite_sum=True,
    )
    with pytest.raises(ValueError, match="per-sample"):
        mflangevin.pda(summed, 0.1, 0.1, 2, batch_size=4).init(particles)
    with pytest.raises(ValueError, match="position"):
        mflangevin.pda(objective, 0.1, 0.1, 2).init({"w": jnp.zeros((4, 5)), "b": jnp.zeros(4)})


def test_dual_bound_on_request_leaves_the_trajectory_unchanged():
    net, X, y, particles = network_problem()
    objective = net.objective(X, y, reference=gaussian_reference(1.0))
    lam, key = 0.05, jax.random.key(3)
    plain = mflangevin.pda(objective, 0.01, lam, 2)
    dual_fn = functools.partial(mflangevin.dual_objective, num_samples=256)
    with_dual = mflangevin.pda(objective, 0.01, lam, 2, dual_fn=dual_fn)
    state, info = jax.jit(plain.step)(key, plain.init(particles))
    dual_state, dual_info = jax.jit(with_dual.step)(key, with_dual.init(particles))
    assert info.dual_bound is None
    chex.assert_trees_all_equal(state, dual_state)
    g = objective.risk_gradient(objective.mean_embedding(particles))
    expected = mflangevin.dual_objective(
        objective, g, lam, keys.dual_key(key), 256, particles=particles
    )
    np.testing.assert_allclose(dual_info.dual_bound, expected, rtol=1e-5)
    no_conjugate = mflangevin.pda(
        quadratic_objective(jnp.ones(2), 0.5), 0.1, 0.1, 2, dual_fn=dual_fn
    )
    with pytest.raises(ValueError, match="^dual_fn: .*risk_conjugate"):
        no_conjugate.init(jnp.zeros((8, 2)))


def test_the_running_best_is_the_full_energy_or_an_epochs_mean():
    """Full data: the lowest F(μ) seen. Minibatches (n/B = 4 outer steps an epoch): F(μ_0) from
    init, then after each epoch the lowest of it and the epoch's mean minibatch energy."""
    net, X, y, particles = network_problem()
    objective = net.objective(X, y, l2=1e-2)
    full = mflangevin.pda(objective, 0.01, 0.05, 2)
    state, info = jax.lax.scan(
        lambda s, k: full.step(k, s), full.init(particles), jax.random.split(jax.random.key(0), 4)
    )
    assert float(state.best_energy) == pytest.approx(float(jnp.min(info.energy)))
    assert not bool(jnp.any(info.is_divergent))
    n = jax.tree.leaves(objective.data)[0].shape[0]
    minibatch = mflangevin.pda(objective, 0.01, 0.05, 2, batch_size=n // 4)
    state = minibatch.init(particles)
    assert float(state.best_energy) == pytest.approx(float(objective.energy(particles)), rel=1e-6)
    start = float(state.best_energy)
    state, info = jax.lax.scan(
        lambda s, k: minibatch.step(k, s), state, jax.random.split(jax.random.key(1), 4)
    )
    expected = min(start, float(jnp.mean(info.energy)))
    assert float(state.best_energy) == pytest.approx(expected, rel=1e-6)
    assert float(state.energy_sum) == 0.0
    assert not bool(jnp.any(info.is_divergent))


def test_a_rising_objective_is_flagged_in_minibatch_mode():
    """A step size that raises the objective many-fold, every particle finite: flagged at the
    end of the first epoch (n/B = 8 outer steps), against F(μ_0)."""
    net, X, y, particles = network_problem()
    objective = net.objective(X, y, l2=1e-3)
    n = jax.tree.leaves(objective.data)[0].shape[0]
    algorithm = mflangevin.pda(objective, 1.0, 1e-3, 1, batch_size=n // 8)
    state, info = jax.lax.scan(
        lambda s, k: algorithm.step(k, s),
        algorithm.init(particles),
        jax.random.split(jax.random.key(2), 16),
    )
    assert int(jnp.sum(info.num_refused)) == 0
    assert float(objective.energy(state.position)) > 5 * float(objective.energy(particles))
    assert int(jnp.argmax(info.is_divergent)) == 7
