"""The residual network that ResFGB grows: a pure pytree of blocks, its forward map, save and load.

A block ``l`` maps the features ``z`` (and, for the Frank–Wolfe variant, the standardised raw
input ``x``) to::

    z ← decay_l · z − step_l · ι_l(u) W_l,    u = z  or  u = [z, x]

where ``ι_l`` is an MLP (ReLU on every hidden layer; ReLU or identity on the output) and
``W_l = (1/n) Σ_i ι_l(u_i) G_iᵀ``. With ``decay_l = 1`` and ``step_l = η`` this is the
kernel-smoothed functional gradient step ``z − η (1/n) Σ_i k_l(z, z_i) G_i`` of
docs/theory/resfgb.md, ``k_l(u, u') = ι_l(u)ᵀ ι_l(u')``. Whether a block reads the raw input is
read off its first layer's shape, so the pytree alone determines the network.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin.types import Array, ArrayLike

__all__ = ["ResidualBlock", "ResidualNetwork", "apply", "features", "save", "load"]

_FORMAT = "mflangevin.resnet/1"
_OUTPUT_ACTIVATIONS = ("relu", "linear")


def mlp(layers: tuple[tuple[Array, Array], ...], u: Array, output_activation: str) -> Array:
    """The block MLP ``ι`` on a batch ``u``: ReLU after every hidden layer, then the output one."""
    for k, (w, b) in enumerate(layers):
        u = u @ w + b[None, :]
        if k < len(layers) - 1 or output_activation == "relu":
            u = jax.nn.relu(u)
    return u


@dataclasses.dataclass(frozen=True)
class ResidualBlock:
    """One layer of the residual network: ``z ← decay · z − step · ι(u) W``.

    Parameters
    ----------
    layers
        The MLP ``ι``: a tuple of ``(weight, bias)`` pairs, ``weight`` of shape ``(in, out)``.
        The first layer's input size is ``d`` (``u = z``) or ``2d`` (``u = [z, x]``, the raw-input
        branch of the Frank–Wolfe variant).
    weight
        ``W_l``, shape ``(D, d)`` with ``D`` the output size of ``ι``.
    decay, step
        Scalars: ``1`` and ``η`` for the standard step, ``1 − s_l`` and ``s_l ρ / ‖ι W‖`` for
        the Frank–Wolfe step.
    output_activation
        ``"relu"`` (the reference block) or ``"linear"`` (a mean-field block fitted by MFLD).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> block = ResidualBlock(
    ...     layers=((jnp.eye(2), jnp.zeros(2)),), weight=jnp.eye(2),
    ...     decay=jnp.array(1.0), step=jnp.array(0.5),
    ... )
    >>> block(jnp.array([[1.0, -1.0]]), None)
    Array([[ 0.5, -1. ]], dtype=float32)
    """

    layers: tuple[tuple[Array, Array], ...]
    weight: Array
    decay: Array
    step: Array
    output_activation: str = "relu"

    def __post_init__(self):
        if self.output_activation not in _OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation: expected one of {_OUTPUT_ACTIVATIONS}, "
                f"got {self.output_activation!r}."
            )

    @property
    def uses_input(self) -> bool:
        """Whether the block reads the raw input ``x`` as well as ``z``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> one, weight = jnp.array(1.0), jnp.ones((3, 2))  # ι has D = 3 outputs, z has d = 2
        >>> ResidualBlock(((jnp.ones((2, 3)), jnp.zeros(3)),), weight, one, one).uses_input
        False
        >>> ResidualBlock(((jnp.ones((4, 3)), jnp.zeros(3)),), weight, one, one).uses_input
        True
        """
        return self.layers[0][0].shape[0] != self.weight.shape[1]

    def embedding(self, z: Array, x: Array | None) -> Array:
        """``ι(u)`` for a batch, shape ``(n, D)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> block = ResidualBlock(
        ...     layers=((jnp.eye(2), jnp.zeros(2)),), weight=jnp.eye(2),
        ...     decay=jnp.array(1.0), step=jnp.array(0.5),
        ... )
        >>> block.embedding(jnp.array([[1.0, -1.0]]), None)  # ReLU output
        Array([[1., 0.]], dtype=float32)
        """
        u = jnp.concatenate([z, x], axis=1) if self.uses_input else z
        return mlp(self.layers, u, self.output_activation)

    def __call__(self, z: Array, x: Array | None) -> Array:
        """The layer map applied to a batch of features ``z`` (and raw inputs ``x``)."""
        return self.decay * z - self.step * (self.embedding(z, x) @ self.weight)


jax.tree_util.register_dataclass(
    ResidualBlock,
    data_fields=["layers", "weight", "decay", "step"],
    meta_fields=["output_activation"],
)


@dataclasses.dataclass(frozen=True)
class ResidualNetwork:
    """The learned network: standardisation, residual blocks, linear classifier on ``z_T``.

    A pytree (every array is a leaf), so it can be jitted over, saved with :func:`save` and
    evaluated with :func:`apply` without the boosting object.

    Parameters
    ----------
    shift, scale
        Input standardisation ``x ↦ (x − shift) / scale``, shape ``(d,)``.
    blocks
        The residual blocks, in order; the depth is ``len(blocks)``.
    classifier_weight, classifier_bias
        Softmax regression on the last features: logits ``z_T A + c``, ``A`` of shape ``(d, C)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> network = ResidualNetwork(
    ...     shift=jnp.zeros(2), scale=jnp.ones(2), blocks=(),
    ...     classifier_weight=jnp.eye(2), classifier_bias=jnp.zeros(2),
    ... )
    >>> network.depth
    0
    """

    shift: Array
    scale: Array
    blocks: tuple[ResidualBlock, ...]
    classifier_weight: Array
    classifier_bias: Array

    @property
    def depth(self) -> int:
        """The number of residual blocks.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> block = ResidualBlock(
        ...     ((jnp.eye(2), jnp.zeros(2)),), jnp.eye(2), jnp.array(1.0), jnp.array(0.5)
        ... )
        >>> ResidualNetwork(jnp.zeros(2), jnp.ones(2), (block,), jnp.eye(2), jnp.zeros(2)).depth
        1
        """
        return len(self.blocks)


jax.tree_util.register_dataclass(
    ResidualNetwork,
    data_fields=["shift", "scale", "blocks", "classifier_weight", "classifier_bias"],
    meta_fields=[],
)


def features(network: ResidualNetwork, X: ArrayLike) -> Array:
    """The last features ``z_T`` of the residual network on inputs ``X``, shape ``(n, d)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> network = ResidualNetwork(jnp.ones(2), 2 * jnp.ones(2), (), jnp.eye(2), jnp.zeros(2))
    >>> features(network, jnp.array([[3.0, 1.0]]))
    Array([[1., 0.]], dtype=float32)
    """
    x = (jnp.asarray(X) - network.shift[None, :]) / network.scale[None, :]
    z = x
    for block in network.blocks:
        z = block(z, x)
    return z


def apply(network: ResidualNetwork, X: ArrayLike) -> Array:
    """Class scores (logits) of the residual network on inputs ``X``, shape ``(n, C)``.

    Pure and jittable; ``argmax`` over the last axis gives the predicted class index.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> network = ResidualNetwork(jnp.zeros(2), jnp.ones(2), (), jnp.eye(2), jnp.zeros(2))
    >>> apply(network, jnp.array([[0.2, 0.7]])).argmax(axis=1)
    Array([1], dtype=int32)
    """
    z = features(network, X)
    return z @ network.classifier_weight + network.classifier_bias[None, :]


def save(file: str | os.PathLike, network: ResidualNetwork) -> None:
    """Save a residual network to a NumPy ``.npz`` archive.

    Layout (one array per key): ``format`` (the string ``"mflangevin.resnet/1"``), ``shift``,
    ``scale``, ``classifier_weight``, ``classifier_bias``, ``num_blocks``, and for block ``l``
    ``block{l}/num_layers``, ``block{l}/layer{k}/weight``, ``block{l}/layer{k}/bias``,
    ``block{l}/weight``, ``block{l}/decay``, ``block{l}/step``, ``block{l}/output_activation``.

    Examples
    --------
    >>> import tempfile, jax.numpy as jnp
    >>> network = ResidualNetwork(jnp.zeros(2), jnp.ones(2), (), jnp.eye(2), jnp.zeros(2))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save(f"{tmp}/net.npz", network)
    ...     load(f"{tmp}/net.npz").depth
    0
    """
    arrays = {
        "format": np.array(_FORMAT),
        "shift": network.shift,
        "scale": network.scale,
        "classifier_weight": network.classifier_weight,
        "classifier_bias": network.classifier_bias,
        "num_blocks": np.array(network.depth),
    }
    for i, block in enumerate(network.blocks):
        arrays[f"block{i}/num_layers"] = np.array(len(block.layers))
        for k, (w, b) in enumerate(block.layers):
            arrays[f"block{i}/layer{k}/weight"] = w
            arrays[f"block{i}/layer{k}/bias"] = b
        arrays[f"block{i}/weight"] = block.weight
        arrays[f"block{i}/decay"] = block.decay
        arrays[f"block{i}/step"] = block.step
        arrays[f"block{i}/output_activation"] = np.array(block.output_activation)
    np.savez(file, **{key: np.asarray(value) for key, value in arrays.items()})


def load(file: str | os.PathLike) -> ResidualNetwork:
    """Load a residual network written by :func:`save`.

    Examples
    --------
    >>> import tempfile, jax.numpy as jnp
    >>> network = ResidualNetwork(jnp.ones(2), 2 * jnp.ones(2), (), jnp.eye(2), jnp.zeros(2))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save(f"{tmp}/net.npz", network)
    ...     loaded = load(f"{tmp}/net.npz")
    >>> bool(jnp.all(loaded.scale == network.scale)), loaded.depth
    (True, 0)
    """
    with np.load(file) as archive:
        if "format" not in archive or str(archive["format"]) != _FORMAT:
            raise ValueError(f"file: not a residual network archive ({_FORMAT}): {file}.")
        a = {key: archive[key] for key in archive.files}
    blocks = []
    for i in range(int(a["num_blocks"])):
        prefix = f"block{i}"
        layers = tuple(
            (jnp.asarray(a[f"{prefix}/layer{k}/weight"]), jnp.asarray(a[f"{prefix}/layer{k}/bias"]))
            for k in range(int(a[f"{prefix}/num_layers"]))
        )
        blocks.append(
            ResidualBlock(
                layers=layers,
                weight=jnp.asarray(a[f"block{i}/weight"]),
                decay=jnp.asarray(a[f"block{i}/decay"]),
                step=jnp.asarray(a[f"block{i}/step"]),
                output_activation=str(a[f"block{i}/output_activation"]),
            )
        )
    return ResidualNetwork(
        shift=jnp.asarray(a["shift"]),
        scale=jnp.asarray(a["scale"]),
        blocks=tuple(blocks),
        classifier_weight=jnp.asarray(a["classifier_weight"]),
        classifier_bias=jnp.asarray(a["classifier_bias"]),
    )
