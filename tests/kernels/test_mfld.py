import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import EnergyObjective, MeanFieldObjective, gaussian_reference


def quadratic_objective(m, l2):
    """F(μ) = ½‖E_μθ − m‖² + λ' E_μ‖θ‖² (docs/theory/mfld.md), no reference measure."""
    return MeanFieldObjective(
        feature_map=lambda theta, _: theta,
        risk=lambda z, _: 0.5 * jnp.sum((z - m) ** 2),
        penalty=lambda theta: l2 * jnp.sum(theta**2),
    )


def run_chains(algorithm, positions, num_steps, seed=0):
    keys = jax.random.split(jax.random.key(seed), positions.shape[0])

    def run(key, position):
        state, _ = blackjax.util.run_inference_algorithm(
            key,
            algorithm,
            num_steps,
            initial_position=position,
            transform=lambda state, info: info.energy,
        )
        return state.position

    return jax.jit(jax.vmap(run))(keys, positions)


def test_quadratic_stationary_law():
    """Closed form of docs/theory/mfld.md, exact for the discretised N-particle system.

    Writing θ_i = θ̄ + δ_i, the step is linear and Gaussian:
      θ̄ ← θ̄ − η[(1+2λ')θ̄ − m] + √(2λη/N) ξ̄,   δ_i ← (1 − 2ηλ') δ_i + √(2λη)(ξ_i − ξ̄).
    So at stationarity θ̄ ~ N(m/(1+2λ'), v_mean) with
      v_mean = 2λ / (N (1+2λ') (2 − η(1+2λ'))),
    and Σ_i δ_i² ~ s² χ²_{N−1} per coordinate with s² = λ / (2λ' (1 − ηλ')), which tends to the
    continuous-time law N(m/(1+2λ'), λ/(2λ') I) as η → 0 (the O(η) bias).
    """
    m, l2, lam, eta = jnp.array([1.0, -2.0]), 0.5, 0.2, 0.05
    num, chains, p = 128, 64, 2
    algorithm = mflangevin.mfld(quadratic_objective(m, l2), step_size=eta, temperature=lam)
    start = jax.random.normal(jax.random.key(1), (chains, num, p))
    # Deviations contract by (1 − 2ηλ') = 0.95 per step: 600 steps leave e^{-30} of the start.
    final = run_chains(algorithm, start, 600)

    means = jnp.mean(final, axis=1)  # (chains, p): independent draws of θ̄
    v_mean = 2 * lam / (num * (1 + 2 * l2) * (2 - eta * (1 + 2 * l2)))
    z_mean = (jnp.mean(means, axis=0) - m / (1 + 2 * l2)) / jnp.sqrt(v_mean / chains)
    assert jnp.all(jnp.abs(z_mean) < 4), z_mean

    s2 = lam / (2 * l2 * (1 - eta * l2))
    spread = jnp.mean(jnp.sum((final - means[:, None, :]) ** 2, axis=1) / num)
    expected = s2 * (num - 1) / num
    se = s2 * np.sqrt(2 * (num - 1)) / num / np.sqrt(chains * p)
    assert abs(float(spread - expected)) < 4 * se, (spread, expected, se)
    # The continuous-time law differs only by the O(η) bias s2 − λ/(2λ') = s2·ηλ'.
    continuous = lam / (2 * l2) * (num - 1) / num
    assert abs(float(spread - continuous)) < s2 * eta * l2 + 4 * se


def test_linear_energy_gaussian_reference():
    """F(μ) = E_μ U with U(θ) = ½ Σ_k a_k (θ_k − c_k)² and ν = N(0, σ²): the particles are
    independent unadjusted Langevin chains on ∝ ν e^{−U/λ}, a Gaussian of precision
    P_k = a_k/λ + 1/σ² and mean a_k c_k / (λ P_k). For this linear drift the discretised chain is
    Gaussian with the exact mean and variance 1 / (P_k (1 − ηλP_k/2))."""
    a, c, lam, sigma, eta = jnp.array([1.0, 4.0]), jnp.array([1.0, -1.0]), 0.5, 1.5, 0.02
    objective = MeanFieldObjective(
        feature_map=lambda theta, _: 0.5 * jnp.sum(a * (theta - c) ** 2),
        risk=lambda z, _: z,
        reference=gaussian_reference(sigma),
    )
    algorithm = mflangevin.mfld(objective, step_size=eta, temperature=lam)
    chains, num = 16, 256
    final = run_chains(algorithm, jnp.zeros((chains, num, 2)), 800).reshape(-1, 2)
    precision = a / lam + 1 / sigma**2
    mean = a * c / (lam * precision)
    var = 1 / (precision * (1 - eta * lam * precision / 2))
    draws = chains * num
    np.testing.assert_array_less(jnp.abs(jnp.mean(final, 0) - mean), 4 * jnp.sqrt(var / draws))
    np.testing.assert_array_less(jnp.abs(jnp.var(final, 0) - var), 4 * var * np.sqrt(2 / draws))


def _network_problem(num=32):
    net, X, y, particles = problems.network_problem(50, 4, num)
    return net, net.objective(X, y, reference=gaussian_reference(2.0)), particles


def test_one_step_equals_sgld_on_gibbs_density():
    """MFLD is SGLD on π_N ∝ exp(−N F(μ_Θ)/λ) Π ν(θ_i) at temperature λ: the gradient handed to
    sgld is that of λ log π_N = −N F_N(Θ) + λ Σ_i log ν(θ_i)."""
    net, objective, particles = _network_problem()
    lam, eta, num = 0.05, 0.1, 32
    nu = objective.reference

    def scaled_log_gibbs(p, _batch):
        return -num * objective.energy(p) + lam * jnp.sum(jax.vmap(nu.log_density)(p))

    sgld = blackjax.sgld(jax.grad(scaled_log_gibbs))
    key = jax.random.key(7)
    expected = sgld.step(key, particles, None, eta, lam)
    algorithm = mflangevin.mfld(objective, step_size=eta, temperature=lam)
    state, info = algorithm.step(key, algorithm.init(particles))
    for name in particles:
        np.testing.assert_allclose(state.position[name], expected[name], rtol=1e-5, atol=1e-6)
    assert not info.is_divergent


def test_run_inference_algorithm_vmap_and_dict_particles():
    net, objective, particles = _network_problem()
    algorithm = mflangevin.mfld(objective, step_size=0.1, temperature=1e-3)
    chains, steps = 3, 20
    positions = jax.tree.map(lambda x: jnp.stack([x] * chains), particles)

    def run(key, position):
        return blackjax.util.run_inference_algorithm(
            key, algorithm, steps, initial_position=position
        )

    final, (history, info) = jax.vmap(run)(jax.random.split(jax.random.key(0), chains), positions)
    assert history.position["w"].shape == (chains, steps, 32, 4)
    assert history.particles["b"].shape == (chains, steps, 32)
    assert info.energy.shape == (chains, steps)
    assert not bool(jnp.any(info.is_divergent))
    # Distinct keys give distinct chains; the objective falls from its starting value.
    assert not np.allclose(final.position["w"][0], final.position["w"][1])
    assert bool(jnp.all(info.energy[:, -1] < info.energy[:, 0]))


def test_progress_bar(capsys):
    _, objective, particles = _network_problem()
    algorithm = mflangevin.mfld(objective, step_size=0.1, temperature=1e-3)
    with blackjax.progress_bar():
        state, _ = blackjax.util.run_inference_algorithm(
            jax.random.key(0), algorithm, 50, initial_position=particles
        )
    assert int(state.count) == 50


def test_no_retracing_and_schedules_live_in_the_state():
    _, objective, particles = _network_problem()
    algorithm = mflangevin.mfld(
        objective,
        step_size=lambda k: 0.1 / (1.0 + 0.01 * k.astype(jnp.float32)),
        temperature=lambda k: 0.1 * 0.5 ** (k // 5).astype(jnp.float32),
    )  # schedules receive the integer step counter, as optax's do

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(particles)
    temperatures = []
    for key in jax.random.split(jax.random.key(0), 12):
        state, info = step(key, state)
        temperatures.append(float(info.temperature))
    assert int(state.count) == 12
    np.testing.assert_allclose(temperatures, [0.1 * 0.5 ** (k // 5) for k in range(12)], rtol=1e-6)


def test_same_key_same_result():
    _, objective, particles = _network_problem()
    algorithm = mflangevin.mfld(objective, step_size=0.1, temperature=1e-2)
    runs = [
        blackjax.util.run_inference_algorithm(
            jax.random.key(3), algorithm, 10, initial_position=particles
        )[0]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].position["w"], runs[1].position["w"])


def test_divergence_is_reported_and_particles_are_kept():
    algorithm = mflangevin.mfld(
        lambda p: jnp.sum(jnp.exp(3.0 * jnp.mean(p, axis=0))), step_size=1.0, temperature=0.1
    )
    state = algorithm.init(jnp.full((4, 2), 5.0))
    new_state, info = jax.jit(algorithm.step)(jax.random.key(0), state)
    assert bool(info.is_divergent) and int(info.num_refused) == 4
    np.testing.assert_array_equal(new_state.position, state.position)
    assert bool(jnp.all(jnp.isfinite(new_state.position)))


def _steep_outside(a, c, radius):
    """U(θ) = ½ Σ a_k (θ_k − c_k)² + Σ_k relu(|θ_k| − R)³: quadratic where the particles live,
    so steep beyond R that a particle started far out overshoots to beyond the threshold."""

    def potential(theta, _):
        quadratic = 0.5 * jnp.sum(a * (theta - c) ** 2)
        return quadratic + jnp.sum(jax.nn.relu(jnp.abs(theta) - radius) ** 3)

    return potential


def test_one_divergent_particle_leaves_the_others_to_converge():
    """Regression (review 2026-12: one extreme particle froze all N, so a run returned its start
    as the answer). The linear energy E_μ U with ν = N(0, σ²): particles are independent
    unadjusted Langevin chains, Gaussian with the exact law of
    test_linear_energy_gaussian_reference while they stay in |θ| < R (29 standard deviations from
    the law's mean). Particle 0 starts at 1000: its first step overshoots to −5.7e4, from where
    every proposal is beyond the threshold, so it is refused at every step and counted in
    ``num_refused``; the other particles reach their law."""
    a, c, lam, sigma, eta, radius = (
        jnp.array([1.0, 4.0]),
        jnp.array([1.0, -1.0]),
        0.5,
        1.5,
        0.02,
        20.0,
    )
    objective = MeanFieldObjective(
        feature_map=_steep_outside(a, c, radius),
        risk=lambda z, _: z,
        reference=gaussian_reference(sigma),
    )
    algorithm = mflangevin.mfld(objective, step_size=eta, temperature=lam)
    chains, num = 16, 256
    start = jnp.zeros((chains, num, 2)).at[:, 0].set(1000.0)
    keys = jax.random.split(jax.random.key(0), chains)

    def run(key, position):
        return blackjax.util.run_inference_algorithm(
            key, algorithm, 800, initial_position=position, transform=lambda s, i: i
        )

    final, infos = jax.jit(jax.vmap(run))(keys, start)
    np.testing.assert_array_equal(infos.num_refused[:, 1:], 1)  # particle 0, every later step
    assert bool(jnp.all(infos.is_divergent[:, 1:]))
    assert bool(jnp.all(jnp.abs(final.position[:, 0]) > 1e4))  # kept where it was
    others = final.position[:, 1:].reshape(-1, 2)
    precision = a / lam + 1 / sigma**2
    mean = a * c / (lam * precision)
    var = 1 / (precision * (1 - eta * lam * precision / 2))
    draws = others.shape[0]
    np.testing.assert_array_less(jnp.abs(jnp.mean(others, 0) - mean), 4 * jnp.sqrt(var / draws))
    np.testing.assert_array_less(jnp.abs(jnp.var(others, 0) - var), 4 * var * np.sqrt(2 / draws))


def _counting_energy():
    traces = []

    def energy_fn(p):
        traces.append(1)
        return jnp.sum(jnp.mean(p, axis=0) ** 2)

    return energy_fn, traces


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"step_size": 0.0, "temperature": 1.0}, "step_size"),
        ({"step_size": -1.0, "temperature": 1.0}, "step_size"),
        ({"step_size": 0.1, "temperature": 0.0}, "temperature"),
        (
            {"step_size": 0.1, "temperature": lambda k: -1.0 + 0.0 * k.astype(jnp.float32)},
            "temperature",
        ),
        ({"step_size": float("nan"), "temperature": 1.0}, "step_size"),
        (
            {"step_size": 0.1, "temperature": 1.0, "divergence_threshold": -1.0},
            "divergence_threshold",
        ),
    ],
)
def test_bad_parameters(kwargs, match):
    energy_fn, traces = _counting_energy()
    with pytest.raises(ValueError, match=match):
        mflangevin.mfld(energy_fn, **kwargs)
    assert not traces  # raised before anything was traced


@pytest.mark.parametrize(
    "position,error,match",
    [
        ({"w": jnp.zeros((8, 3)), "b": jnp.zeros(7)}, ValueError, "leading particle axis"),
        ({"w": jnp.zeros((8, 5)), "b": jnp.zeros(8)}, ValueError, "position"),
        ({"w": jnp.zeros((8, 4), jnp.int32), "b": jnp.zeros(8)}, TypeError, "floating"),
    ],
)
def test_bad_particles(position, error, match):
    _, objective, _ = _network_problem()
    algorithm = mflangevin.mfld(objective, step_size=0.1, temperature=0.1)
    with pytest.raises(error, match=match):
        algorithm.init(position)


def test_energy_objective_with_reference():
    objective = EnergyObjective(lambda p: jnp.zeros(()) * jnp.sum(p), gaussian_reference(1.0))
    algorithm = mflangevin.mfld(objective, step_size=0.5, temperature=1.0)
    state, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.ones((3, 2))))
    assert float(info.drift_norm) == pytest.approx(np.sqrt(2.0), rel=1e-6)


def test_a_state_of_another_algorithm_is_named():
    objective = quadratic_objective(jnp.ones(2), 0.5)
    pda_state = mflangevin.pda(objective, 0.01, 0.1, 2).init(jnp.zeros((8, 2)))
    with pytest.raises(TypeError, match="^state: expected the MFLDState .* got PDAState"):
        mflangevin.mfld(objective, 0.1, 0.1).step(jax.random.key(0), pda_state)
