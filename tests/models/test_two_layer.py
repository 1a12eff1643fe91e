import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mflangevin import gaussian_reference
from mflangevin.datasets import teacher_similarity, teacher_student
from mflangevin.models import MeanFieldNetwork


@pytest.fixture
def data():
    X, y, teacher = teacher_student(jax.random.key(0), 20, 3)
    return X, y, teacher


def test_predict_matches_the_formulas(data):
    X, _, _ = data
    key = jax.random.key(1)
    p = MeanFieldNetwork("tanh").init_particles(key, 10, 3)
    np.testing.assert_allclose(
        MeanFieldNetwork("tanh").predict(p, X),
        jnp.mean(jnp.tanh(X @ p["w"].T + p["b"][None, :]), axis=1),
        rtol=1e-5,
    )
    bounded = MeanFieldNetwork("bounded", output_scale=15.0)
    p = bounded.init_particles(key, 10, 3)
    expected = 15.0 * (jnp.tanh(X @ p["w"].T + p["b"][None, :]) + 2 * jnp.tanh(p["a"])[None, :]) / 3
    np.testing.assert_allclose(bounded.predict(p, X), jnp.mean(expected, axis=1), rtol=1e-5)
    vector = MeanFieldNetwork("output_weight", "cross_entropy", activation="relu", num_outputs=4)
    p = vector.init_particles(key, 10, 3)
    assert p["a"].shape == (10, 4)
    hidden = jax.nn.relu(X @ p["w"].T + p["b"][None, :])  # (n, N)
    np.testing.assert_allclose(vector.predict(p, X), hidden @ p["a"] / 10, rtol=1e-5, atol=1e-6)


def test_predict_is_one_program_per_network_and_shapes(data, compilations):
    """Called outside jit, predict compiles one program for new shapes (not one per operation),
    which an equal network reuses."""
    X = np.asarray(data[0])[:13]
    particles = MeanFieldNetwork("bounded").init_particles(jax.random.key(1), 7, 3)
    compilations.clear()
    MeanFieldNetwork("bounded").predict(particles, X)
    MeanFieldNetwork("bounded").predict(particles, X)
    assert compilations == ["jit(_predict)"]


def test_l2_and_reference_are_the_same_regulariser(data):
    """λ' E‖θ‖² + λ E log μ = λ KL(μ ‖ N(0, λ/(2λ'))) + const: the drifts agree."""
    X, y, _ = data
    net = MeanFieldNetwork("tanh")
    p = net.init_particles(jax.random.key(2), 16, 3)
    lam, l2 = 0.1, 0.05
    _, drift_l2 = net.objective(X, y, l2=l2).energy_and_drift(p)
    reference = gaussian_reference(float(np.sqrt(lam / (2 * l2))))
    objective = net.objective(X, y, reference=reference)
    _, drift = objective.energy_and_drift(p)
    score = reference.score(p)
    for k in p:
        np.testing.assert_allclose(drift_l2[k], drift[k] - lam * score[k], rtol=1e-5, atol=1e-6)


def test_equal_networks_share_compiled_programs(data):
    """Two equal networks give equal objectives: a compiled step serves both."""
    X, y, _ = data
    traces = []

    @jax.jit
    def energy(objective, particles):
        traces.append(None)
        return objective.energy(particles)

    particles = MeanFieldNetwork("tanh").init_particles(jax.random.key(1), 8, 3)
    for l2 in (1e-3, 1e-3, 1e-2):
        energy(MeanFieldNetwork("tanh").objective(X, y, l2=l2), particles)
    energy(MeanFieldNetwork("bounded").objective(X, y, l2=1e-3), {**particles, "a": particles["b"]})
    assert len(traces) == 3  # a new l2 and a new network trace again; an equal one does not


def test_teacher_similarity(data):
    _, _, teacher = data
    assert float(teacher_similarity(teacher, teacher)) == pytest.approx(1.0, abs=1e-6)
    rotated = {"w": -teacher["w"], "b": teacher["b"]}
    assert float(teacher_similarity(rotated, teacher)) < 0.5


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda X, y: MeanFieldNetwork("relu"), ValueError, "neuron"),
        (
            lambda X, y: MeanFieldNetwork("output_weight", activation="cos"),
            ValueError,
            "activation",
        ),
        (lambda X, y: MeanFieldNetwork(loss="hinge"), ValueError, "loss"),
        (lambda X, y: MeanFieldNetwork("output_weight", "cross_entropy"), ValueError, "loss"),
        (lambda X, y: MeanFieldNetwork("tanh", num_outputs=3), ValueError, "num_outputs"),
        (lambda X, y: MeanFieldNetwork("output_weight", num_outputs=2.5), TypeError, "num_outputs"),
        (lambda X, y: MeanFieldNetwork("output_weight", num_outputs="3"), TypeError, "num_outputs"),
        (lambda X, y: MeanFieldNetwork().objective(X[0], y), ValueError, "X"),
        (lambda X, y: MeanFieldNetwork().objective(X, y[:-1]), ValueError, "y"),
        (lambda X, y: MeanFieldNetwork().objective(X.at[0, 0].set(jnp.nan), y), ValueError, "X"),
        (lambda X, y: MeanFieldNetwork().objective(X.astype(jnp.int32), y), TypeError, "X"),
        (lambda X, y: MeanFieldNetwork(loss="logistic").objective(X, y), ValueError, "y"),
        (
            lambda X, y: MeanFieldNetwork(
                "output_weight", "cross_entropy", num_outputs=2
            ).objective(X, y),
            TypeError,
            "y",
        ),
        (
            lambda X, y: MeanFieldNetwork(
                "output_weight", "cross_entropy", num_outputs=2
            ).objective(X, jnp.full(y.shape, 2)),
            ValueError,
            "y",
        ),
        (lambda X, y: MeanFieldNetwork().objective(X, y, l2=-1.0), ValueError, "l2"),
        (
            lambda X, y: MeanFieldNetwork().objective(X, y, l2=0.1, reference=gaussian_reference()),
            ValueError,
            "l2",
        ),
        (
            lambda X, y: MeanFieldNetwork().init_particles(jax.random.key(0), 0, 3),
            ValueError,
            "num_particles",
        ),
        # Review 2026-11: accepted before, then NaN energies or a silently missing penalty.
        (lambda X, y: MeanFieldNetwork().objective(X[:0], y[:0]), ValueError, r"^X: needs at"),
        (lambda X, y: MeanFieldNetwork().objective(X, y, l2=float("nan")), ValueError, "^l2"),
        (lambda X, y: MeanFieldNetwork().objective(X, y, l2=float("inf")), ValueError, "^l2"),
        (lambda X, y: MeanFieldNetwork().objective(X, y, l2="0.1"), TypeError, "^l2"),
        (lambda X, y: MeanFieldNetwork().objective(X, y, l2=jnp.ones(2)), TypeError, "^l2"),
        (
            lambda X, y: MeanFieldNetwork().objective(X, y, reference="gaussian"),
            TypeError,
            "^reference",
        ),
        (
            lambda X, y: MeanFieldNetwork().objective(X, y.astype(jnp.complex64)),
            TypeError,
            "^y: labels must be real",
        ),
        (lambda X, y: gaussian_reference(float("inf")), ValueError, "^scale"),
        (
            lambda X, y: MeanFieldNetwork().init_particles(jax.random.key(0), 2.7, 3),
            TypeError,
            "^num_particles",
        ),
        (
            lambda X, y: MeanFieldNetwork().init_particles(jax.random.key(0), 4, 3, scale=jnp.nan),
            ValueError,
            "^scale",
        ),
        (
            lambda X, y: MeanFieldNetwork().init_particles(
                jax.random.key(0), 4, 3, dtype=jnp.int32
            ),
            TypeError,
            "^dtype",
        ),
    ],
)
def test_bad_input(data, make, error, match):
    X, y, _ = data
    with pytest.raises(error, match=match):
        make(X, y)


def test_numpy_scalar_l2_is_accepted(data):
    X, y, _ = data
    objective = MeanFieldNetwork().objective(X, y, l2=np.float32(1e-3))
    assert objective.penalty.weight == pytest.approx(1e-3)
