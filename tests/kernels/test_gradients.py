import dataclasses

import blackjax
import chex
import jax
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import EnergyObjective, MeanFieldObjective, gradients
from mflangevin.kernels import data
from mflangevin.kernels.mfld import build_kernel, initial_state

N_DATA, DIM, N_PART, L2 = 40, 3, 8, 0.01


def network_problem():
    net, X, y, particles = problems.network_problem(N_DATA, DIM, N_PART)
    return X, y, net.objective(X, y, l2=L2), particles


def per_sample_drifts(X, y, particles):
    """u_j(Θ)_i = ℓ'(f_Θ(x_j), y_j) ∇_θ tanh(w_iᵀx_j + b_i) + ∇r(θ_i), written out by hand for
    the squared loss: shape (n, N, d + 1), the last coordinate being b."""
    w, b = np.asarray(particles["w"], np.float64), np.asarray(particles["b"], np.float64)
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    t = np.tanh(X @ w.T + b[None, :])  # (n, N)
    residual = t.mean(axis=1) - y  # ℓ'(f, y) = f − y
    slope = residual[:, None] * (1 - t**2)  # (n, N)
    grad = np.concatenate([slope[:, :, None] * X[:, None, :], slope[:, :, None]], axis=2)
    penalty = 2 * L2 * np.concatenate([w, b[:, None]], axis=1)
    return grad + penalty[None]


def flat(drift):
    return np.concatenate([np.asarray(drift["w"]), np.asarray(drift["b"])[:, None]], axis=1)


def perturb(particles, scale, seed):
    keys = jax.random.split(jax.random.key(seed), 2)
    return {
        name: particles[name] + scale * jax.random.normal(key, particles[name].shape)
        for key, name in zip(keys, ("b", "w"), strict=True)
    }


def many_estimates(estimator, objective, position, count, state, num_keys, seed=5):
    keys = jax.random.split(jax.random.key(seed), num_keys)
    estimate = jax.vmap(estimator.estimate, in_axes=(0, None, None, None, None))
    _, drift, *_ = jax.jit(estimate)(keys, objective, position, count, state)
    return np.concatenate([drift["w"], drift["b"][..., None]], axis=-1)  # (K, N, d + 1)


def snapshot_state(estimator, objective, snapshot):
    """The estimator state after its first step (a snapshot/refresh) at particles ``snapshot``."""
    state = estimator.init(objective, snapshot)
    return jax.jit(estimator.estimate)(jax.random.key(9), objective, snapshot, 0, state)[2]


@pytest.mark.parametrize(
    "name,estimator",
    [
        ("sgd", gradients.sgd(5)),
        ("sgd_replace", gradients.sgd(5, replace=True)),
        ("svrg", gradients.svrg(5, snapshot_every=10)),
        ("sarah", gradients.sarah(5, refresh_every=10)),
    ],
)
def test_unbiased(name, estimator):
    """E_I[v] = full drift. For SVRG the snapshot is away from the current particles; for SARAH
    one step after a refresh, where E[v_1] = G(Θ_0) + E_I[u_I(Θ_1) − u_I(Θ_0)] = G(Θ_1).

    Tolerance: K independent minibatches give a per-coordinate standard error s/√K; 5 standard
    errors over the 32 coordinates leaves a false-alarm probability of about 32 · 6e-7.
    The expectation is over the step key at the start of an epoch (a fresh permutation); within
    an epoch the minibatches are fixed by the epoch's key.
    """
    X, y, objective, particles = network_problem()
    state = snapshot_state(estimator, objective, perturb(particles, 0.3, 2))
    if name.startswith("sgd"):
        state = estimator.init(objective, particles)
    num_keys = 4000
    draws = many_estimates(estimator, objective, particles, 1, state, num_keys)
    full = per_sample_drifts(X, y, particles).mean(axis=0)
    _, exact = objective.energy_and_drift(particles)
    np.testing.assert_allclose(flat(exact), full, rtol=1e-4, atol=1e-6)
    se = draws.std(axis=0) / np.sqrt(num_keys)
    assert np.all(np.abs(draws.mean(axis=0) - full) < 5 * se + 1e-6), name


def test_svrg_variance_far_below_sgd_near_the_snapshot():
    """Exactly at the snapshot SVRG returns the full drift; a small move ε away its variance is
    O(ε²) of SGD's at the same batch size (the per-sample drifts are smooth in Θ)."""
    X, y, objective, particles = network_problem()
    svrg = gradients.svrg(5, snapshot_every=10)
    state = svrg.init(objective, particles)
    _, at_snapshot, state, evaluations, _ = jax.jit(svrg.estimate)(
        jax.random.key(0), objective, particles, 0, state
    )
    np.testing.assert_allclose(
        flat(at_snapshot), per_sample_drifts(X, y, particles).mean(0), rtol=1e-4, atol=1e-6
    )
    assert int(evaluations) == N_DATA
    nearby = perturb(particles, 1e-2, 3)
    var_svrg = many_estimates(svrg, objective, nearby, 1, state, 500).var(axis=0).sum()
    sgd = gradients.sgd(5)
    var_sgd = many_estimates(sgd, objective, nearby, 1, sgd.init(objective, nearby), 500)
    var_sgd = var_sgd.var(axis=0).sum()
    assert var_svrg < 1e-2 * var_sgd, (var_svrg, var_sgd)


def svrg_reference(us, indices, period):
    """v_k = mean_{j∈I_k}[u_j(Θ_k) − u_j(Θ̃)] + G̃, snapshot Θ̃ = Θ_k when k ≡ 0 (mod m)."""
    out = []
    for k, (u, idx) in enumerate(zip(us, indices, strict=True)):
        if k % period == 0:
            snapshot = u
            out.append(u.mean(axis=0))
        else:
            out.append((u[idx] - snapshot[idx]).mean(axis=0) + snapshot.mean(axis=0))
    return out


def sarah_reference(us, indices, period):
    """v_k = v_{k−1} + mean_{j∈I_k}[u_j(Θ_k) − u_j(Θ_{k−1})], v_k = G(Θ_k) when k ≡ 0 (mod m)."""
    out = []
    for k, (u, idx) in enumerate(zip(us, indices, strict=True)):
        if k % period == 0:
            out.append(u.mean(axis=0))
        else:
            out.append(out[-1] + (u[idx] - us[k - 1][idx]).mean(axis=0))
    return out


@pytest.mark.parametrize(
    "estimator,reference",
    [
        (gradients.svrg(6, snapshot_every=3), svrg_reference),
        (gradients.sarah(6, refresh_every=3), sarah_reference),
    ],
)
def test_recursion_matches_definition(estimator, reference):
    """Seven steps along a moving particle path against the definitions of
    docs/theory/variance-reduction.md, with the per-sample drifts written out by hand and the
    same minibatch indices."""
    X, y, objective, particles = network_problem()
    path = [perturb(particles, 0.1 * k, 10 + k) for k in range(7)]
    keys = jax.random.split(jax.random.key(4), len(path))
    state = estimator.init(objective, path[0])
    estimate = jax.jit(estimator.estimate)
    estimates, counts = [], []
    for k, (key, position) in enumerate(zip(keys, path, strict=True)):
        _, drift, state, evaluations, _ = estimate(key, objective, position, k, state)
        estimates.append(flat(drift))
        counts.append(int(evaluations))
    # The minibatches the estimator drew: its data source walked with the same keys, drawing on
    # the steps between snapshots only.
    source, batches, indices = data.minibatch(6), data.minibatch(6).init(objective), []
    for k, key in enumerate(keys):
        if k % 3:
            idx, batches = source.indices(key, N_DATA, batches)
            indices.append(np.asarray(idx))
        else:
            indices.append(None)
    expected = reference([per_sample_drifts(X, y, p) for p in path], indices, 3)
    for k, (got, want) in enumerate(zip(estimates, expected, strict=True)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"step {k}")
    assert counts == [N_DATA, 12, 12] * 2 + [N_DATA]


def finite_sum_quadratic(num_data=32, p=2, l2=0.5):
    """F(μ) = (1/n) Σ_j ½ a_j ‖E_μθ − M_j‖² + λ' E_μ‖θ‖² with mean(a) = 1: the quadratic model of
    docs/theory/mfld.md, ½‖E_μθ − m‖² + λ' E_μ‖θ‖² + const with m = mean_j(a_j M_j), as a
    finite sum whose per-sample drifts a_j (E_μθ − M_j) differ, so that minibatches are noisy
    for every estimator."""
    key_a, key_m = jax.random.split(jax.random.key(7))
    a = jax.random.uniform(key_a, (num_data,), minval=0.2, maxval=1.8)
    a = a / jnp.mean(a)
    M = jax.random.normal(key_m, (num_data, p)) + jnp.array([1.0, -2.0])[None, :]

    def feature_map(theta, data):
        return jnp.broadcast_to(theta[None, :], data[1].shape)

    def risk(z, data):
        weights, targets = data
        return 0.5 * jnp.mean(weights * jnp.sum((z - targets) ** 2, axis=1))

    objective = MeanFieldObjective(
        feature_map,
        risk,
        penalty=lambda theta: l2 * jnp.sum(theta**2),
        data=(a, M),
        finite_sum=True,
    )
    return objective, jnp.mean(a[:, None] * M, axis=0)


# n = 32 samples, B = m = 8, 400 steps: per-sample gradient evaluations after the run.
VR_COST = 32 * (400 // 8) + 2 * 8 * (400 - 400 // 8)


@pytest.mark.parametrize(
    "estimator,cost",
    [
        (gradients.full(), 32 * 400),
        (gradients.sgd(8), 8 * 400),
        (gradients.svrg(8, snapshot_every=8), VR_COST),
        (gradients.sarah(8, refresh_every=8), VR_COST),
    ],
    ids=["full", "sgd", "svrg", "sarah"],
)
def test_stationary_law_of_the_quadratic_model(estimator, cost):
    """Closed form N(m/(1+2λ'), λ/(2λ') I) of docs/theory/mfld.md, exact for the discretised system.

    Writing θ_i = θ̄ + δ_i, every per-sample drift is the same for all particles, so minibatch
    noise only moves θ̄; the deviations follow δ_i ← (1 − 2ηλ')δ_i + √(2λη)(ξ_i − ξ̄) whatever the
    estimator, and Σ_i δ_i² ~ s² χ²_{N−1} per coordinate with s² = λ / (2λ'(1 − ηλ')). Every
    estimator is unbiased given the past (SARAH: its error is a martingale), and the recursion for
    θ̄ is linear, so E θ̄ = m/(1+2λ') exactly at stationarity; its variance grows with the
    minibatch noise, so the standard error of the chain average is estimated from the C
    independent chains (t with C − 1 degrees of freedom; 4.5 leaves p ≈ 1e-4 per coordinate).
    """
    objective, m = finite_sum_quadratic()
    l2, lam, eta, num, chains, p, steps = 0.5, 0.2, 0.05, 64, 32, 2, 400
    algorithm = mflangevin.mfld(objective, step_size=eta, temperature=lam, gradient=estimator)
    start = jax.random.normal(jax.random.key(1), (chains, num, p))

    def run(key, position):
        state, _ = blackjax.util.run_inference_algorithm(
            key, algorithm, steps, initial_position=position, transform=lambda s, i: None
        )
        return state

    # Deviations contract by 0.95 per step and θ̄ by 0.9: 400 steps leave e^{-20} of the start.
    final = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(2), chains), start)
    means = jnp.mean(final.position, axis=1)
    se = jnp.std(means, axis=0, ddof=1) / np.sqrt(chains)
    z = (jnp.mean(means, axis=0) - m / (1 + 2 * l2)) / se
    assert jnp.all(jnp.abs(z) < 4.5), z

    s2 = lam / (2 * l2 * (1 - eta * l2))
    spread = jnp.mean(jnp.sum((final.position - means[:, None, :]) ** 2, axis=1) / num)
    se_spread = s2 * np.sqrt(2 * (num - 1)) / num / np.sqrt(chains * p)
    assert abs(float(spread - s2 * (num - 1) / num)) < 4 * se_spread
    np.testing.assert_array_equal(final.num_gradient_evaluations, cost)


@pytest.mark.parametrize(
    "estimator",
    [gradients.full(), gradients.sgd(4), gradients.svrg(4, 3), gradients.sarah(4, 3)],
    ids=["full", "sgd", "svrg", "sarah"],
)
def test_compiles_once(estimator):
    """One trace for every step, across snapshot/refresh steps and ordinary ones."""
    chex.clear_trace_counter()  # the counter is per function name, shared by the parameters
    _, _, objective, particles = network_problem()
    algorithm = mflangevin.mfld(objective, step_size=0.05, temperature=1e-3, gradient=estimator)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(particles)
    for key in jax.random.split(jax.random.key(0), 7):
        state, info = step(key, state)
    assert int(state.count) == 7 and not bool(info.is_divergent)


def test_full_batch_is_the_default_and_counts_n_per_step():
    _, _, objective, particles = network_problem()
    default = mflangevin.mfld(objective, step_size=0.1, temperature=1e-2)
    explicit = mflangevin.mfld(objective, 0.1, 1e-2, gradient=gradients.full())
    runs = [
        blackjax.util.run_inference_algorithm(jax.random.key(3), a, 5, initial_position=particles)
        for a in (default, explicit)
    ]
    np.testing.assert_array_equal(runs[0][0].position["w"], runs[1][0].position["w"])
    np.testing.assert_array_equal(runs[0][1][1].num_gradient_evaluations, N_DATA * np.arange(1, 6))
    # A state built by hand from (position, count) still steps with the full drift.
    state, info = build_kernel()(jax.random.key(0), initial_state(particles), objective, 0.1, 0.1)
    assert int(info.num_gradient_evaluations) == N_DATA and int(state.count) == 1


def _counting_objective(num_data=10):
    traces = []

    def feature_map(theta, x):
        traces.append(1)
        return x @ theta

    objective = MeanFieldObjective(
        feature_map,
        lambda z, x: 0.5 * jnp.mean(z**2),
        data=jnp.ones((num_data, 2)),
        finite_sum=True,
    )
    return objective, traces


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: gradients.sgd(0), ValueError, "batch_size"),
        (lambda: gradients.sgd(-2), ValueError, "batch_size"),
        (lambda: gradients.sgd(2.5), TypeError, "batch_size"),
        (lambda: gradients.svrg(0, 4), ValueError, "batch_size"),
        (lambda: gradients.svrg(4, 0), ValueError, "snapshot_every"),
        (lambda: gradients.sarah(4, -1), ValueError, "refresh_every"),
        (lambda: gradients.sarah(4, True), TypeError, "refresh_every"),
    ],
)
def test_bad_estimator_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "gradient,objective_kind,error,match",
    [
        (gradients.sgd(11), "finite_sum", ValueError, "batch_size"),
        (gradients.svrg(11, 3), "finite_sum", ValueError, "batch_size"),
        (gradients.sarah(11, 3), "finite_sum", ValueError, "batch_size"),
        (gradients.sgd(2), "energy", TypeError, "finite-sum"),
        (gradients.sgd(2), "not_finite_sum", TypeError, "finite_sum=False"),
        ("svrg", "finite_sum", TypeError, "gradient"),
    ],
)
def test_bad_pairings_raise_before_tracing(gradient, objective_kind, error, match):
    objective, traces = _counting_objective()
    if objective_kind == "energy":
        objective = EnergyObjective(lambda p: jnp.sum(jnp.mean(p, axis=0) ** 2))
    if objective_kind == "not_finite_sum":
        objective = dataclasses.replace(objective, finite_sum=False)
    with pytest.raises(error, match=match):
        mflangevin.mfld(objective, step_size=0.1, temperature=0.1, gradient=gradient)
    assert not traces


def test_inconsistent_sample_axes():
    objective = MeanFieldObjective(
        lambda t, d: t, lambda z, d: jnp.sum(z), data=(jnp.ones(5), jnp.ones(6)), finite_sum=True
    )
    with pytest.raises(ValueError, match="sample axis"):
        mflangevin.mfld(objective, 0.1, 0.1, gradient=gradients.sgd(2))
