import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mflangevin.datasets import teacher_similarity, teacher_student


def test_teacher_student_is_the_teacher_network_plus_noise():
    X, y, teacher = teacher_student(jax.random.key(0), 4000, 5, num_teacher=4, noise=0.1)
    assert X.shape == (4000, 5) and y.shape == (4000,) and teacher["w"].shape == (4, 5)
    np.testing.assert_allclose(jnp.linalg.norm(teacher["w"], axis=1), 2.0, rtol=1e-6)
    residual = y - jnp.mean(jnp.tanh(X @ teacher["w"].T + teacher["b"][None, :]), axis=1)
    # The noise's standard deviation from 4000 draws: standard error 0.1/√(2·4000) ≈ 1.1e-3.
    assert float(jnp.std(residual)) == pytest.approx(0.1, abs=5 * 1.2e-3)
    # Standard normal inputs: the mean of 20000 coordinates has standard error 0.0071.
    assert abs(float(jnp.mean(X))) < 5 * 0.0071


def test_same_key_same_data():
    first = teacher_student(jax.random.key(3), 10, 2)
    second = teacher_student(jax.random.key(3), 10, 2)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, first, second))


def test_teacher_similarity_is_one_on_the_teacher_and_below_elsewhere():
    _, _, teacher = teacher_student(jax.random.key(0), 10, 3, num_teacher=3)
    scaled = jax.tree.map(lambda x: 2.5 * x, teacher)
    assert float(teacher_similarity(scaled, teacher)) == pytest.approx(1.0, abs=1e-6)
    other = {"w": -teacher["w"], "b": jnp.zeros(3)}
    assert float(teacher_similarity(other, teacher)) < 1.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_samples": 0}, ValueError, "^num_samples: "),
        ({"num_samples": 2.5}, TypeError, "^num_samples: "),
        ({"input_dim": 0}, ValueError, "^input_dim: "),
        ({"num_teacher": -1}, ValueError, "^num_teacher: "),
        ({"teacher_norm": -1.0}, ValueError, "^teacher_norm: "),
        ({"noise": float("nan")}, ValueError, "^noise: "),
        ({"noise": -0.1}, ValueError, "^noise: "),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"num_samples": 10, "input_dim": 3} | kwargs
    with pytest.raises(error, match=match):
        teacher_student(jax.random.key(0), **args)
