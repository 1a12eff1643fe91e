"""The inner fits of ResFGB (docs/theory/resfgb.md), written as pure functions of arrays.

One boosting iteration is one call of :func:`boosting_step`; its configuration is static and
every array keeps its shape across iterations, so under ``jax.jit`` the iteration compiles once.
The inner fits are minibatch SGD with Nesterov momentum (``optax``), as in the reference code,
whose fits are full-batch only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mflangevin.kernels.data import minibatch
from mflangevin.models._resfgb_network import ResidualBlock, mlp
from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = ["MLPBlock", "Classifier", "BoostingConfig", "boosting_step", "fit_classifier"]


class Classifier(NamedTuple):
    """Softmax regression on the features: logits ``z A + c``."""

    weight: Array
    bias: Array


class Metrics(NamedTuple):
    """Mean cross-entropy and accuracy of the classifier on one data set."""

    loss: Array
    accuracy: Array


def sgd_fit(
    loss_fn: Callable[[ArrayTree, Any], Array],
    params: ArrayTree,
    data: Any,
    rng_key: PRNGKey,
    *,
    num_steps: int,
    batch_size: int,
    learning_rate: float,
    momentum: float,
) -> ArrayTree:
    """Minimise ``loss_fn(params, batch)`` by minibatch SGD with Nesterov momentum.

    Counted in steps, not epochs, so that a fit costs the same on small and large data sets;
    each step draws its minibatch in ``O(B)``, without replacement within an epoch
    (:func:`mflangevin.kernels.data.minibatch`).
    """
    n = jax.tree.leaves(data)[0].shape[0]
    source = minibatch(min(batch_size, n))
    optimizer = optax.sgd(learning_rate, momentum=momentum, nesterov=True)

    def step(carry, key):
        params, opt_state, batches = carry
        indices, batches = source.indices(key, n, batches)
        batch = jax.tree.map(lambda a: a[indices], data)
        grads = jax.grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, batches), None

    initial = (params, optimizer.init(params), source.init(None))
    (params, _, _), _ = jax.lax.scan(step, initial, jax.random.split(rng_key, num_steps))
    return params


def cross_entropy(classifier: Classifier, Z: Array, Y: Array) -> Array:
    """Mean softmax cross-entropy of one-hot labels ``Y``."""
    logits = Z @ classifier.weight + classifier.bias[None, :]
    return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(logits, axis=1), axis=1))


def evaluate(classifier: Classifier, Z: Array, Y: Array) -> Metrics:
    """Loss and accuracy; ``Y`` one-hot."""
    logits = Z @ classifier.weight + classifier.bias[None, :]
    hits = jnp.argmax(logits, axis=1) == jnp.argmax(Y, axis=1)
    return Metrics(cross_entropy(classifier, Z, Y), jnp.mean(hits.astype(Z.dtype)))


def functional_gradient(classifier: Classifier, Z: Array, Y: Array) -> Array:
    """``G_i = ∂ℓ(z_i, y_i)/∂z_i = A (softmax(z_i A + c) − y_i)``, shape ``(n, d)``."""
    probabilities = jax.nn.softmax(Z @ classifier.weight + classifier.bias[None, :], axis=1)
    return (probabilities - Y) @ classifier.weight.T


def rms_normalise(G: Array, eps: float = 1e-12) -> Array:
    """``G_i / rms(G_i)`` per sample: the regression targets of the block."""
    rms = jnp.sqrt(jnp.mean(G**2, axis=1, keepdims=True))
    return G / jnp.maximum(rms, eps)


@dataclasses.dataclass(frozen=True)
class MLPBlock:
    """The reference block: an MLP ``(d_in, *hidden_sizes, d)``, ReLU everywhere incl. the output.

    Fitted by least squares to the RMS-normalised functional gradient, warm-started from the
    previous block, by minibatch SGD with Nesterov momentum.

    Parameters
    ----------
    hidden_sizes
        Widths of the hidden layers (reference: four layers of 100).
    num_steps
        Minibatch steps per block fit **(param)**: the reference fits to convergence.
    learning_rate
        Learning rate of the block fit **(param)**.

    Examples
    --------
    >>> import jax
    >>> block = MLPBlock(hidden_sizes=(16,))
    >>> layers = block.init(jax.random.key(0), 3, 3)
    >>> [w.shape for w, _ in layers]
    [(3, 16), (16, 3)]
    """

    hidden_sizes: tuple[int, ...] = (100, 100, 100, 100)
    num_steps: int = 500
    learning_rate: float = 0.003

    output_activation = "relu"

    def __post_init__(self):
        sizes = tuple(self.hidden_sizes)
        if not sizes or not all(isinstance(h, int) and h > 0 for h in sizes):
            raise ValueError(
                f"hidden_sizes: expected positive integers, got {self.hidden_sizes!r}."
            )
        object.__setattr__(self, "hidden_sizes", sizes)  # a tuple, so the block stays hashable
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {self.num_steps!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be positive, got {self.learning_rate}.")

    def init(self, rng_key: PRNGKey, input_dim: int, output_dim: int) -> ArrayTree:
        """He-initialised layers, biases zero.

        Examples
        --------
        >>> import jax
        >>> layers = MLPBlock(hidden_sizes=(16,)).init(jax.random.key(0), 3, 2)
        >>> [(w.shape, b.shape) for w, b in layers]
        [((3, 16), (16,)), ((16, 2), (2,))]
        """
        sizes = (input_dim, *self.hidden_sizes, output_dim)
        keys = jax.random.split(rng_key, len(sizes) - 1)
        return tuple(
            (jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
        )

    def fit(self, state, U, targets, rng_key, batch_size, momentum) -> tuple[ArrayTree, Array]:
        """Least squares ``mean_i ‖ι(u_i) − t_i‖²`` from the warm start ``state``: the fitted
        layers and ``0`` divergent steps (SGD refuses none; its divergence shows as a non-finite
        loss).

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> block = MLPBlock(hidden_sizes=(8,), num_steps=5)
        >>> state = block.init(jax.random.key(0), 3, 2)
        >>> U, targets = jnp.ones((16, 3)), jnp.ones((16, 2))
        >>> fitted, _ = block.fit(state, U, targets, jax.random.key(1), batch_size=8, momentum=0.9)
        >>> [w.shape for w, _ in fitted]
        [(3, 8), (8, 2)]
        """

        def loss(layers, batch):
            u, t = batch
            return jnp.mean(jnp.sum((mlp(layers, u, "relu") - t) ** 2, axis=1))

        layers = sgd_fit(
            loss, state, (U, targets), rng_key, num_steps=self.num_steps, batch_size=batch_size,
            learning_rate=self.learning_rate, momentum=momentum,
        )  # fmt: skip
        return layers, jnp.zeros((), jnp.int32)

    def layers(self, state) -> tuple[tuple[Array, Array], ...]:
        """The block's layers (the state is the layers themselves).

        Examples
        --------
        >>> import jax
        >>> block = MLPBlock(hidden_sizes=(8,))
        >>> state = block.init(jax.random.key(0), 3, 2)
        >>> block.layers(state) is state
        True
        """
        return state


@dataclasses.dataclass(frozen=True)
class BoostingConfig:
    """Static settings of one boosting iteration (hashable, so ``jax.jit`` caches on it)."""

    block: Any
    step_size: float
    l2: float
    classifier_steps: int
    classifier_learning_rate: float
    batch_size: int
    momentum: float
    frank_wolfe: bool
    fw_radius: float


def fit_classifier(
    classifier: Classifier, Z: Array, Y: Array, rng_key: PRNGKey, config: BoostingConfig
) -> Classifier:
    """Softmax regression with L2 penalty ``(wr/2)‖A‖²`` from the warm start ``classifier``."""

    def loss(params, batch):
        return cross_entropy(params, *batch) + 0.5 * config.l2 * jnp.sum(params.weight**2)

    return sgd_fit(
        loss, classifier, (Z, Y), rng_key, num_steps=config.classifier_steps,
        batch_size=config.batch_size, learning_rate=config.classifier_learning_rate,
        momentum=config.momentum,
    )  # fmt: skip


def boosting_step(
    rng_key: PRNGKey,
    iteration: Array,
    classifier: Classifier,
    block_state: ArrayTree,
    data: tuple[Array, Array, Array],
    validation: tuple[Array, Array, Array] | None,
    config: BoostingConfig,
):
    """One ResFGB iteration: classifier, functional gradient, block, layer weight, features.

    ``data`` and ``validation`` are ``(Z, X, Y)``: current features, standardised inputs,
    one-hot labels. Returns the fitted classifier with its metrics (train and validation, at
    the current depth), the new block state, the :class:`ResidualBlock`, the new features and
    the number of divergent steps of the block's fit.
    """
    key_classifier, key_block = jax.random.split(rng_key)
    Z, X, Y = data
    classifier = fit_classifier(classifier, Z, Y, key_classifier, config)
    G = functional_gradient(classifier, Z, Y)
    U = jnp.concatenate([Z, X], axis=1) if config.frank_wolfe else Z
    block_state, num_divergent = config.block.fit(
        block_state, U, rms_normalise(G), key_block, config.batch_size, config.momentum
    )
    layers = config.block.layers(block_state)
    embedding = mlp(layers, U, config.block.output_activation)
    weight = embedding.T @ G / Z.shape[0]  # W_l = (1/n) Σ_i ι(u_i) G_iᵀ
    if config.frank_wolfe:
        # s_l = 2/(l+3) and the vertex −ρ ι W / ‖ι W‖_n of the ball of radius ρ in L²(data).
        s = 2.0 / (iteration.astype(Z.dtype) + 3.0)
        norm = jnp.sqrt(jnp.mean(jnp.sum((embedding @ weight) ** 2, axis=1)))
        decay, step = 1.0 - s, s * config.fw_radius / jnp.maximum(norm, 1e-12)
    else:
        decay, step = jnp.ones((), Z.dtype), jnp.asarray(config.step_size, Z.dtype)
    block = ResidualBlock(layers, weight, decay, step, config.block.output_activation)
    metrics = (evaluate(classifier, Z, Y), None)
    new_validation = None
    if validation is not None:
        Zv, Xv, Yv = validation
        metrics = (metrics[0], evaluate(classifier, Zv, Yv))
        new_validation = (block(Zv, Xv), Xv, Yv)
    features = (block(Z, X), X, Y)
    return classifier, metrics, block_state, block, features, new_validation, num_divergent
