"""The one data path: minibatch law and cost, streamed batches, data held as program inputs."""

import dataclasses
import functools
import pickle

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import mflangevin
from mflangevin import EnergyObjective, MeanFieldObjective, gradients
from mflangevin.kernels import data
from mflangevin.models import LinearRegressor, MeanFieldNetwork


def finite_sum(n, dim=2):
    X = jnp.arange(n * dim, dtype=jnp.float32).reshape(n, dim) / (n * dim)
    return MeanFieldObjective(
        lambda theta, x: x @ theta, lambda z, _: 0.5 * jnp.mean(z**2), data=X, finite_sum=True
    )


def walk(source, n, keys):
    def step(state, key):
        idx, state = source.indices(key, n, state)
        return state, idx

    _, idx = jax.lax.scan(step, source.init(None), keys)
    return list(np.asarray(idx))


@pytest.mark.parametrize("n,batch_size", [(20, 5), (23, 5), (7, 7), (1000, 1)])
def test_an_epoch_draws_without_replacement(n, batch_size):
    """⌊n/B⌋ consecutive minibatches are disjoint; the next epoch starts a new permutation."""
    steps = n // batch_size
    keys = jax.random.split(jax.random.key(0), 2 * steps)
    batches = walk(data.minibatch(batch_size), n, keys)
    for epoch in (batches[:steps], batches[steps:]):
        drawn = np.concatenate(epoch)
        assert len(np.unique(drawn)) == len(drawn) == steps * batch_size
        assert drawn.min() >= 0 and drawn.max() < n
    if n > batch_size:
        assert not np.array_equal(np.concatenate(batches[:steps]), np.concatenate(batches[steps:]))


def test_minibatch_marginals_are_uniform():
    """Over epoch keys, each of the B slots of the first minibatch is uniform on [0, n): a
    chi-square test per slot at level 1e-4 (false alarm ≤ 3e-4 over the three slots)."""
    n, batch_size, num_keys = 12, 3, 6000
    source = data.minibatch(batch_size)
    draw = jax.jit(jax.vmap(lambda k: source.indices(k, n, source.init(None))[0]))
    idx = np.asarray(draw(jax.random.split(jax.random.key(1), num_keys)))
    threshold = scipy.stats.chi2.ppf(1 - 1e-4, n - 1)
    for slot in range(batch_size):
        counts = np.bincount(idx[:, slot], minlength=n)
        expected = num_keys / n
        assert np.sum((counts - expected) ** 2 / expected) < threshold
    assert np.all(idx[:, 0] != idx[:, 1])


def test_with_replacement_is_uniform_and_stateless():
    source = data.minibatch(4, replace=True)
    state = source.init(None)
    idx, new_state = source.indices(jax.random.key(0), 10, state)
    assert idx.shape == (4,) and new_state is state


def test_minibatch_cost_does_not_depend_on_n():
    """No intermediate of an SGD step's drift estimate has a dimension of size n."""
    n = 10**7
    objective = MeanFieldObjective(
        lambda theta, x: x @ theta,
        lambda z, _: 0.5 * jnp.mean(z**2),
        data=jax.ShapeDtypeStruct((n, 2), jnp.float32),
        finite_sum=True,
    )
    estimator = gradients.sgd(100)
    position = jax.ShapeDtypeStruct((8, 2), jnp.float32)
    state = jax.eval_shape(estimator.init, objective, position)

    def estimate(X, position, state):
        return estimator.estimate(
            jax.random.key(0), dataclasses.replace(objective, data=X), position, 1, state
        )

    jaxpr = jax.make_jaxpr(estimate)(objective.data, position, state)

    def shapes(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                yield getattr(var.aval, "shape", ())
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", None)
                if inner is not None:
                    yield from shapes(getattr(inner, "jaxpr", inner))

    assert all(n not in shape for shape in shapes(jaxpr.jaxpr))


def test_streamed_batches_are_checked_against_the_data():
    objective = finite_sum(10)
    source = data.stream()
    with pytest.raises(ValueError, match="minibatch: a leaf of shape"):
        source.draw(jax.random.key(0), objective, (), batch=jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="minibatch: must have the structure"):
        source.draw(jax.random.key(0), objective, (), batch=(jnp.ones((4, 2)),))
    draw, _ = source.draw(jax.random.key(0), objective, (), batch=jnp.ones((4, 2)))
    assert int(draw.num_samples) == 4


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: data.minibatch(0), ValueError, "batch_size"),
        (lambda: data.minibatch(2.0), TypeError, "batch_size"),
        (lambda: data.minibatch(True), TypeError, "batch_size"),
        (lambda: data.minibatch(2, replace="no"), TypeError, "replace"),
        (lambda: data.minibatch(11).check(finite_sum(10)), ValueError, "batch_size"),
        (
            lambda: data.minibatch(2).check(EnergyObjective(lambda p: jnp.sum(p))),
            TypeError,
            "finite-sum",
        ),
        (lambda: data.stream().check(EnergyObjective(jnp.sum)), TypeError, "objective"),
        (lambda: data.stream(lambda key: 1 / 0).check(finite_sum(4)), ValueError, "data_sampler"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_sampler_whose_batch_does_not_depend_on_the_key_is_refused():
    """A host-side iterator is called once, when the step is traced, and its batch repeated at
    every step (before, silently: 6 online PDA steps held 2 distinct batches)."""
    batches = iter([jnp.full((4, 2), float(i)) for i in range(10)])
    objective = finite_sum(10)
    message = "data_sampler: its batch does not depend on the key"
    with pytest.raises(ValueError, match=message):
        data.stream(lambda key: next(batches)).check(objective)
    with pytest.raises(ValueError, match=message):
        mflangevin.pda(objective, 0.1, 0.1, 2, data_sampler=lambda key: jnp.ones((4, 2)),
                       num_outer_steps=3)  # fmt: skip
    rows = objective.data
    data.stream(lambda key: rows[jax.random.randint(key, (4,), 0, 10)]).check(objective)


def network_algorithm(n, seed=0, gradient=None, chunk_size=250):
    X = jax.random.normal(jax.random.key(seed), (n, 3))
    net = MeanFieldNetwork("tanh")
    objective = net.objective(X, jnp.tanh(X[:, 0]), l2=1e-3, chunk_size=chunk_size)
    algorithm = mflangevin.mfld(objective, 0.1, 1e-3, gradient=gradient)
    return algorithm, algorithm.init(net.init_particles(jax.random.key(1), 16, 3))


@pytest.mark.parametrize("gradient", [None, gradients.sgd(50)])
def test_program_size_does_not_depend_on_n(gradient):
    """The data are inputs of the compiled step, not constants: n = 1e3 and n = 1e5 lower to
    programs of (almost) the same size (the permutation's constants depend on n's bit width)."""
    sizes = []
    for n in (1000, 100_000):
        algorithm, state = network_algorithm(n, gradient=gradient)
        sizes.append(len(jax.jit(algorithm.step).lower(jax.random.key(0), state).as_text()))
    assert abs(sizes[0] - sizes[1]) < 0.01 * sizes[0], sizes


def test_equal_shapes_compile_once():
    """Two data sets of equal shapes, two algorithms with equal settings: one trace."""
    traces = []

    def feature_map(theta, x):
        traces.append(1)
        return jnp.tanh(x @ theta)

    def risk(z, x):
        return 0.5 * jnp.mean((z - x[:, 0]) ** 2)

    def algorithm(seed):
        X = jax.random.normal(jax.random.key(seed), (500, 3))
        objective = MeanFieldObjective(feature_map, risk, data=X, finite_sum=True)
        return mflangevin.mfld(objective, 0.1, 1e-3)

    first, second = algorithm(0), algorithm(1)
    traces.clear()
    state = first.init(jnp.ones((16, 3)))
    a, _ = first.step(jax.random.key(0), state)
    count = len(traces)
    b, _ = second.step(jax.random.key(0), second.init(jnp.ones((16, 3))))
    assert count > 0 and len(traces) == count
    assert not np.allclose(a.position, b.position)  # different data, different steps


@pytest.mark.parametrize("kernel", ["mfld", "pda", "acc_prox_svrg"])
def test_later_steps_reuse_the_first_steps_compilation(kernel, compilations):
    """The initial state is committed to the held data's device, as the step's outputs are: the
    second step reuses the first one's executable (a compiled step is specialised to whether its
    inputs are committed)."""
    X = jax.random.normal(jax.random.key(0), (40, 3))
    if kernel == "acc_prox_svrg":
        objective = LinearRegressor(l2=0.1).objective(X, X[:, 0])
        algorithm = mflangevin.acc_prox_svrg(
            objective, 0.1, batch_size=3, inner_steps=7, momentum=0.5
        )
        state = algorithm.init({"coef": jnp.zeros(3), "intercept": jnp.zeros(())})
    else:
        net = MeanFieldNetwork("tanh")
        objective = net.objective(X, jnp.tanh(X[:, 0]), l2=1e-3)
        algorithm = (
            mflangevin.mfld(objective, 0.0123, 1e-3)
            if kernel == "mfld"
            else mflangevin.pda(objective, 0.0123, 1e-3, 2)
        )
        state = algorithm.init(net.init_particles(jax.random.key(1), 8, 3))
    assert all(leaf.committed for leaf in jax.tree.leaves(state))
    keys = list(jax.random.split(jax.random.key(2), 3))
    compilations.clear()
    for key in keys:
        state, _ = algorithm.step(key, state)
    assert compilations == ["jit(_step)"]


def test_held_data_are_not_copied_per_step_and_results_match():
    """The step on held data equals the low-level kernel on the plain objective."""
    algorithm, state = network_algorithm(1000)
    X = jax.random.normal(jax.random.key(0), (1000, 3))
    objective = MeanFieldNetwork("tanh").objective(X, jnp.tanh(X[:, 0]), l2=1e-3, chunk_size=250)
    expected, _ = jax.jit(mflangevin.kernels.mfld.build_kernel())(
        jax.random.key(3), state, objective, 0.1, 1e-3
    )
    got, _ = jax.jit(algorithm.step)(jax.random.key(3), state)
    chex.assert_trees_all_close(got.position, expected.position, rtol=1e-5, atol=1e-6)


def test_unhashable_settings_compile_once_per_algorithm():
    """An array step size cannot be a static setting by value: it is one by identity, so the
    algorithm still compiles its step once."""
    traces = []

    def energy_fn(p):
        traces.append(1)
        return 0.5 * jnp.sum(p**2)

    algorithm = mflangevin.mfld(energy_fn, jnp.asarray(0.1), 0.1)
    state = algorithm.init(jnp.ones((4, 2)))
    traces.clear()
    for key in jax.random.split(jax.random.key(0), 3):
        state, _ = algorithm.step(key, state)
    assert len(traces) == 1


@pytest.mark.parametrize("what", ["particles", "data"])
def test_sharded_inputs_run_and_match_the_single_device_run(what):
    """Particles (or data) sharded over 4 devices: the held data follow the particles' mesh, the
    step (eager and under jax.jit) matches the single-device run and keeps the particles'
    sharding."""
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = jax.make_mesh((4,), ("a",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = NamedSharding(mesh, PartitionSpec("a"))
    net = MeanFieldNetwork("tanh")
    X = jax.random.normal(jax.random.key(0), (400, 5))
    y = jnp.tanh(X[:, 0])
    particles = net.init_particles(jax.random.key(1), 64, 5)

    def run(X, y, particles, jit):
        algorithm = mflangevin.mfld(net.objective(X, y, l2=1e-3), 0.1, 1e-3)
        step = jax.jit(algorithm.step) if jit else algorithm.step
        state = algorithm.init(particles)
        for key in jax.random.split(jax.random.key(2), 3):
            state, _ = step(key, state)
        return state.position

    expected = run(X, y, particles, jit=False)
    if what == "particles":
        particles = jax.device_put(particles, sharded)
    else:
        X, y = jax.device_put((X, y), sharded)
    for jit in (False, True):
        got = run(X, y, particles, jit)
        for name in expected:
            np.testing.assert_allclose(np.asarray(got[name]), np.asarray(expected[name]), atol=1e-5)
        if what == "particles":
            assert got["w"].sharding.is_equivalent_to(sharded, 2)


def test_a_checkpoint_resumes_where_it_fits_and_is_refused_elsewhere():
    """A state resumed into an algorithm that did not make it (a checkpoint) is checked at its
    first step against the state init would make: on its problem it continues bitwise; on data
    of another dimension (before, JAX's dot_general error) or with another drift estimator it
    is a clear error."""
    algorithm, state = network_algorithm(64, gradient=gradients.svrg(16, 2))
    state, _ = algorithm.step(jax.random.key(2), state)
    checkpoint = pickle.loads(pickle.dumps(state))
    expected, _ = algorithm.step(jax.random.key(3), state)
    resumed, _ = network_algorithm(64, gradient=gradients.svrg(16, 2))
    got, _ = resumed.step(jax.random.key(3), checkpoint)
    chex.assert_trees_all_equal(got.position, expected.position)
    X = jax.random.normal(jax.random.key(0), (64, 5))
    other = mflangevin.mfld(MeanFieldNetwork("tanh").objective(X, X[:, 0]), 0.1, 1e-3)
    with pytest.raises(ValueError, match="^state: its particles do not fit this algorithm"):
        other.step(jax.random.key(3), checkpoint)
    # Before: 'tuple' object has no attribute '_replace'.
    full_drift, _ = network_algorithm(64)
    with pytest.raises(ValueError, match="^state: it is not a state of this algorithm"):
        full_drift.step(jax.random.key(3), checkpoint)


def _live_bytes() -> int:
    return sum(x.nbytes for x in jax.live_arrays())


@pytest.mark.parametrize("kind", ["mfld", "sgd", "pda", "acc_prox_svrg"])
def test_the_data_are_held_once(kind):
    """An algorithm holds the caller's device arrays, not a copy: building it, initialising and
    stepping it adds less than a tenth of the data's bytes to the live device arrays (a copy
    would add all of them; PDA's dual average, an n-vector, is 3 % of them)."""
    n, d = 20_000, 32
    X = jax.random.normal(jax.random.key(0), (n, d))
    y = jnp.tanh(X[:, 0])
    if kind == "acc_prox_svrg":
        objective = LinearRegressor(l2=0.1).objective(X, y)
        position = {"coef": jnp.zeros(d), "intercept": jnp.zeros(())}
        make = functools.partial(mflangevin.acc_prox_svrg, step_size=0.1, batch_size=8)
        make = functools.partial(make, inner_steps=4, momentum=0.0)
    else:
        net = MeanFieldNetwork("tanh")
        objective = net.objective(X, y, l2=1e-3)
        position = net.init_particles(jax.random.key(1), 16, d)
        make = {
            "mfld": functools.partial(mflangevin.mfld, step_size=0.1, temperature=1e-3),
            "sgd": functools.partial(
                mflangevin.mfld, step_size=0.1, temperature=1e-3, gradient=gradients.sgd(50)
            ),
            "pda": functools.partial(
                mflangevin.pda, inner_step_size=1e-3, temperature=1e-3, num_inner_steps=1
            ),
        }[kind]
        assert objective.data[0] is X  # the caller's array, not a copy
    data_bytes = X.nbytes + y.nbytes
    before = _live_bytes()
    algorithm = make(objective)
    state = algorithm.init(position)
    state, _ = algorithm.step(jax.random.key(2), state)
    jax.block_until_ready(state)
    assert _live_bytes() - before < 0.1 * data_bytes
