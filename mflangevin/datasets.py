"""Synthetic data sets of the papers' experiments (nothing is downloaded)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mflangevin._checks import check_count, check_positive
from mflangevin.types import Array, PRNGKey

__all__ = ["teacher_student", "teacher_similarity"]


def teacher_student(
    rng_key: PRNGKey,
    num_samples: int,
    input_dim: int,
    num_teacher: int = 3,
    teacher_norm: float = 2.0,
    noise: float = 0.0,
) -> tuple[Array, Array, dict[str, Array]]:
    """Teacher–student regression (experiment 1 of docs/theory/experiments.md).

    Inputs ``x ~ N(0, I_d)``; a teacher network of ``num_teacher`` tanh neurons with weights of
    norm ``teacher_norm`` and zero bias, ``y = (1/M) Σ_k tanh(w*_kᵀx) + noise · ε``.

    Returns ``(X, y, teacher)`` with ``teacher = {"w": (M, d), "b": (M,)}``: a particle set of the
    ``"tanh"`` :class:`~mflangevin.models.MeanFieldNetwork`.

    Examples
    --------
    >>> import jax
    >>> X, y, teacher = teacher_student(jax.random.key(0), 100, 5)
    >>> X.shape, y.shape, teacher["w"].shape
    ((100, 5), (100,), (3, 5))
    """
    num_samples = check_count("num_samples", num_samples)
    input_dim = check_count("input_dim", input_dim)
    num_teacher = check_count("num_teacher", num_teacher)
    check_positive("teacher_norm", teacher_norm)
    if noise != 0:
        check_positive("noise", noise)
    return _teacher_student(
        rng_key, num_samples, input_dim, num_teacher, teacher_norm, noise, noise != 0
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 6))
def _teacher_student(rng_key, num_samples, input_dim, num_teacher, teacher_norm, noise, noisy):
    # One compiled program per shape (op by op, a new shape would compile some twenty); without
    # noise, no noise is drawn (a third of the program).
    key_w, key_x, key_e = jax.random.split(rng_key, 3)
    w = jax.random.normal(key_w, (num_teacher, input_dim))
    w = teacher_norm * w / jnp.linalg.norm(w, axis=1, keepdims=True)
    teacher = {"w": w, "b": jnp.zeros(num_teacher)}
    X = jax.random.normal(key_x, (num_samples, input_dim))
    y = jnp.mean(jnp.tanh(X @ w.T), axis=1)
    if noisy:
        y = y + noise * jax.random.normal(key_e, (num_samples,))
    return X, y, teacher


def teacher_similarity(particles: dict[str, Array], teacher: dict[str, Array]) -> Array:
    """Mean over particles of the best cosine similarity between ``(w_i, b_i)`` and a teacher
    neuron ``(w*_k, b*_k)``: 1 when every particle lies on a teacher direction
    (docs/getting-started.md).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> teacher = {"w": jnp.eye(2), "b": jnp.zeros(2)}
    >>> float(teacher_similarity({"w": 3 * jnp.eye(2), "b": jnp.zeros(2)}, teacher))
    1.0
    """

    def augmented(p):
        v = jnp.concatenate([p["w"], p["b"][:, None]], axis=1)
        return v / jnp.linalg.norm(v, axis=1, keepdims=True)

    cosine = augmented(particles) @ augmented(teacher).T
    return jnp.mean(jnp.max(cosine, axis=1))
