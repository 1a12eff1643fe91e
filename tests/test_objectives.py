import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import problems
import pytest

import mflangevin
from mflangevin import EnergyObjective, MeanFieldObjective
from mflangevin.datasets import teacher_student
from mflangevin.models import MeanFieldNetwork


def _network_objective(neuron, loss, dtype, **kwargs):
    if loss == "cross_entropy":
        kwargs["num_outputs"] = 3
    net, X, y, particles = problems.network_problem(
        40, 3, 16, neuron, loss=loss, dtype=dtype, **kwargs
    )
    if loss in ("logistic", "smoothed_hinge"):
        y = jnp.sign(y + 1e-3)
    if loss == "cross_entropy":
        y = (y > 0).astype(jnp.int32) + (y > 0.3).astype(jnp.int32)
    return (
        net,
        net.objective(X.astype(dtype), y if loss == "cross_entropy" else y.astype(dtype), l2=0.05),
        particles,
    )


CASES = [
    ("tanh", "squared", {}),
    ("bounded", "logistic", {"output_scale": 2.0}),
    ("output_weight", "smoothed_hinge", {"activation": "relu"}),
    ("output_weight", "cross_entropy", {"activation": "softplus"}),
]


@pytest.mark.parametrize("neuron,loss,kwargs", CASES)
def test_first_variation_identity(neuron, loss, kwargs):
    """∇_θ δF/δμ(θ_i) from the structured form equals N × autodiff of F_N, to round-off."""
    with jax.enable_x64(True):
        net, objective, particles = _network_objective(neuron, loss, jnp.float64, **kwargs)
        n = mflangevin.num_particles(particles)

        def energy_fn(p):  # F_N written directly from the network, not from the objective
            X, y = objective.data
            value = jnp.mean(net.loss.value(net.predict(p, X), y))
            return value + 0.05 * sum(
                jnp.mean(jnp.sum(x.reshape(n, -1) ** 2, axis=1)) for x in jax.tree.leaves(p)
            )

        @jax.jit  # one program, rather than one per operation
        def quantities(particles):
            energy, drift = objective.energy_and_drift(particles)
            reference = EnergyObjective(energy_fn).energy_and_drift(particles)
            autodiff = jax.grad(energy_fn)(particles)
            # The explicit per-particle first variation ⟨g, Φ(θ)⟩ + r(θ) differentiated one
            # particle at a time, with g = ∇R(E_μΦ) frozen.
            g = objective.risk_gradient(objective.mean_embedding(particles))
            first_variation_grad = jax.vmap(
                jax.grad(objective.first_variation, argnums=1), (None, 0)
            )
            return energy, drift, reference, autodiff, first_variation_grad(g, particles)

        energy, drift, reference, autodiff, per_particle = quantities(particles)
        reference_energy, reference_drift = reference
        np.testing.assert_allclose(energy, reference_energy, rtol=1e-12)
        for key in drift:
            np.testing.assert_allclose(drift[key], n * autodiff[key], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(reference_drift[key], n * autodiff[key], rtol=1e-12)
            np.testing.assert_allclose(per_particle[key], drift[key], rtol=1e-10, atol=1e-12)


def test_methods_called_outside_jit_are_one_program_each(compilations):
    """Outside jit, energy_and_drift at new shapes compiles one program (not one per
    operation), which an equal objective on data of equal shapes reuses."""
    X = np.ones((12, 3), np.float32)
    particles = {"w": np.ones((6, 3), np.float32), "b": np.zeros(6, np.float32)}
    equal = [MeanFieldNetwork("tanh").objective(X, X[:, 0], l2=0.1) for _ in range(2)]
    compilations.clear()
    for objective in equal:
        objective.energy_and_drift(particles)
    assert compilations == ["jit(energy_and_drift)"]


def test_energy_objective_drift_is_n_times_gradient():
    """The classic trap (docs/theory/mfld.md): autodiff of the finite-N loss is 1/N of the
    mean-field drift."""
    m = jnp.array([1.0, -2.0])
    particles = jax.random.normal(jax.random.key(0), (8, 2))
    objective = EnergyObjective(lambda p: 0.5 * jnp.sum((jnp.mean(p, axis=0) - m) ** 2))
    _, drift = objective.energy_and_drift(particles)
    # δF/δμ(θ) = ⟨E_μθ − m, θ⟩, so the drift is E_μθ − m at every particle.
    expected = jnp.broadcast_to(jnp.mean(particles, axis=0) - m, (8, 2))
    np.testing.assert_allclose(drift, expected, rtol=1e-6)


def equations(jaxpr):
    """Every equation of a jaxpr, those of its sub-jaxprs (loops, branches, compiled calls)
    included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            sub = getattr(param, "jaxpr", param)  # a ClosedJaxpr holds its Jaxpr
            if isinstance(sub, jax.extend.core.Jaxpr):
                yield from equations(sub)


def sizes(jaxpr):
    """The size of every intermediate of a jaxpr, its sub-jaxprs included."""
    for eqn in equations(jaxpr):
        for var in eqn.outvars:
            yield int(np.prod(var.aval.shape))


def test_drift_is_matrix_products():
    """No intermediate of the drift is larger than the (n, N) pre-activation matrix: the cost
    is O(n·d·N) with no per-(datum, particle) gradient."""
    n, d, num = 64, 5, 32
    X, y, _ = teacher_student(jax.random.key(0), n, d)
    net = MeanFieldNetwork("tanh")
    objective = net.objective(X, y, l2=1e-3)
    particles = net.init_particles(jax.random.key(1), num, d)
    jaxpr = jax.make_jaxpr(objective.energy_and_drift)(particles)

    assert max(sizes(jaxpr.jaxpr)) <= n * num
    assert any(eqn.primitive.name == "dot_general" for eqn in equations(jaxpr.jaxpr))


CHUNK_CASES = [
    ("tanh", "squared", {}),
    ("bounded", "logistic", {}),
    ("output_weight", "cross_entropy", {"num_outputs": 3}),
]


@pytest.mark.parametrize("neuron,loss,kwargs", CHUNK_CASES)
def test_blocked_equals_unblocked(neuron, loss, kwargs):
    """Energy, drift, embedding, first-variation gradient, pairing and dual over sample blocks of
    sizes that do not divide n = 103 (a remainder block of 5 and of 3) equal the one-block
    computation to float64 round-off."""
    with jax.enable_x64(True):
        net = MeanFieldNetwork(neuron, loss=loss, **kwargs)
        X = jax.random.normal(jax.random.key(0), (103, 4), jnp.float64)
        if loss == "squared":
            y = X[:, 0]
        elif loss == "logistic":
            y = jnp.where(X[:, 0] > 0, 1.0, -1.0)
        else:
            y = jnp.floor(jnp.abs(2 * X[:, 0])).astype(jnp.int32) % 3
        particles = net.init_particles(jax.random.key(1), 17, 4, dtype=jnp.float64)
        whole = net.objective(X, y, l2=1e-2, chunk_size=10**6)
        assert whole.block_size(particles) == 103
        # A chunk of n (103 is prime: the one size that divides n) is the same one block.
        assert net.objective(X, y, l2=1e-2, chunk_size=103).block_size(particles) == 103
        g = whole.risk_gradient(whole.mean_embedding(particles))
        expected = _blocked_quantities(whole, particles, g)
        for chunk_size in (7, 50):
            blocked = net.objective(X, y, l2=1e-2, chunk_size=chunk_size)
            assert blocked.block_size(particles) == chunk_size
            got = _blocked_quantities(blocked, particles, g)
            for name, value in expected.items():
                for a, b in zip(jax.tree.leaves(got[name]), jax.tree.leaves(value), strict=True):
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=name)


@jax.jit
def _blocked_quantities(objective, particles, g):
    """Every blocked computation of an objective, in one program (one compilation per block
    size, rather than one per operation eagerly)."""
    energy, drift = objective.energy_and_drift(particles)
    return {
        "energy": energy,
        "drift": drift,
        "energy_only": objective.energy(particles),
        "embedding": objective.mean_embedding(particles),
        "grad": objective.first_variation_grad(g, particles),
        "pairing": objective.pairing(g, particles),
        "dual": mflangevin.dual_objective(
            objective, g, 0.1, jax.random.key(2), 64, particles=particles, batch_size=16
        ),
    }


def test_default_block_size_bounds_the_working_set():
    """Without chunk_size, a block holds about BLOCK_ELEMENTS features, between BLOCK_ROWS[0] and
    BLOCK_ROWS[1] samples and never more than BLOCK_MAX_ELEMENTS features; one block when the
    whole (N, n, k) array fits."""
    from mflangevin.objectives import BLOCK_ELEMENTS, BLOCK_MAX_ELEMENTS, BLOCK_ROWS

    net = MeanFieldNetwork("output_weight", loss="cross_entropy", num_outputs=4)
    small = net.objective(jnp.ones((100, 3)), jnp.zeros(100, jnp.int32))
    particles = jax.ShapeDtypeStruct((64, 3), jnp.float32)
    shapes = {
        "w": particles,
        "b": jax.ShapeDtypeStruct((64,), jnp.float32),
        "a": jax.ShapeDtypeStruct((64, 4), jnp.float32),
    }
    assert small.block_size(shapes) == 100
    large = net.objective(jnp.ones((10**5, 3)), jnp.zeros(10**5, jnp.int32))
    assert large.block_size(shapes) == BLOCK_ROWS[1]  # N·k = 256: the target asks for more rows
    for num in (2048, 2**14, 2**18):  # N·k = 8192, 2^16, 2^20 features per sample
        many = jax.tree.map(
            lambda x, num=num: jax.ShapeDtypeStruct((num,) + x.shape[1:], x.dtype), shapes
        )
        size = large.block_size(many)
        target = min(max(BLOCK_ELEMENTS // (num * 4), BLOCK_ROWS[0]), BLOCK_ROWS[1])
        assert size == min(target, BLOCK_MAX_ELEMENTS // (num * 4))
        assert size * num * 4 <= BLOCK_MAX_ELEMENTS


def test_blocked_drift_working_set_is_one_block():
    """With blocks of 16 samples, no intermediate of the drift reaches the (N, n) matrix."""
    n, d, num = 256, 5, 32
    X, y, _ = teacher_student(jax.random.key(0), n, d)
    net = MeanFieldNetwork("tanh")
    objective = net.objective(X, y, l2=1e-3, chunk_size=16)
    particles = net.init_particles(jax.random.key(1), num, d)
    jaxpr = jax.make_jaxpr(objective.energy_and_drift)(particles)

    largest = max(sizes(jaxpr.jaxpr))
    assert largest <= max(16 * num, n * d), largest


def test_subsample_is_the_objective_on_the_subset():
    X, y, _ = teacher_student(jax.random.key(0), 30, 3)
    net = MeanFieldNetwork("tanh")
    particles = net.init_particles(jax.random.key(1), 8, 3)
    indices = jnp.array([0, 4, 7, 21])
    sub = net.objective(X, y).subsample(indices)
    direct = net.objective(X[indices], y[indices])
    np.testing.assert_allclose(sub.energy(particles), direct.energy(particles), rtol=1e-6)


def test_objective_is_a_pytree_of_its_data():
    X, y, _ = teacher_student(jax.random.key(0), 30, 3)
    objective = MeanFieldNetwork("tanh").objective(X, y)
    leaves = jax.tree.leaves(objective)
    assert len(leaves) == 2 and leaves[0] is objective.data[0]
    particles = MeanFieldNetwork("tanh").init_particles(jax.random.key(1), 8, 3)
    np.testing.assert_allclose(
        jax.jit(lambda o, p: o.energy(p))(objective, particles),
        objective.energy(particles),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: MeanFieldObjective(feature_map=1, risk=jnp.sum), "feature_map"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum, penalty=2), "penalty"),
        (lambda: EnergyObjective("f"), "energy_fn"),
        (lambda: mflangevin.as_objective(3), "objective"),
        (lambda: mflangevin.num_particles({"a": jnp.zeros((3, 2)), "b": jnp.zeros(4)}), "leading"),
        (lambda: mflangevin.num_particles(jnp.zeros(())), "leading particle axis"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum).subsample(jnp.arange(2)), "indices"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum, finite_sum=1), "finite_sum"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum, chunk_size=0), "chunk_size"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum, chunk_size=2.0), "chunk_size"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum, chunk_size=True), "chunk_size"),
        (lambda: MeanFieldObjective(lambda t, _: t, jnp.sum, chunk_size="8"), "chunk_size"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_chunk_size_of_any_integer_type():
    # Before, np.int64(8) was refused although minibatch(np.int64(8)) was accepted.
    objective = MeanFieldObjective(lambda t, _: t, jnp.sum, chunk_size=np.int64(8))
    assert objective.chunk_size == 8 and type(objective.chunk_size) is int
