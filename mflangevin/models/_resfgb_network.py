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
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin._files import replace_atomically
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
    d = jnp.shape(network.shift)[0]
    if jnp.ndim(X) != 2 or jnp.shape(X)[1] != d:  # static shapes: checked under jit too
        raise ValueError(
            f"X: expected an array of shape (n, {d}), the network's input dimension; got "
            f"shape {jnp.shape(X)}."
        )
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


def _archive_path(file):
    """``file`` with the ``.npz`` suffix NumPy adds on saving; file objects pass through."""
    if isinstance(file, str | os.PathLike):
        path = os.fspath(file)
        return path if path.endswith(".npz") else path + ".npz"
    return file


def save(
    file: str | os.PathLike, network: ResidualNetwork, classes: ArrayLike | None = None
) -> None:
    """Save a residual network (and optionally its class labels) to a NumPy ``.npz`` archive.

    A path without the ``.npz`` suffix gets it, as with ``numpy.savez``; :func:`load` finds the
    archive under either name. The archive is written whole or not at all (a temporary file in
    the same folder, renamed over ``file``): an interrupted save leaves the previous one in place.
    ``classes`` (for a fitted :class:`ResFGB`, its ``classes_``) maps the class indices of
    :func:`apply` to labels; numbers or strings, one per class.

    Layout (one array per key): ``format`` (the string ``"mflangevin.resnet/1"``), ``shift``,
    ``scale``, ``classifier_weight``, ``classifier_bias``, ``num_blocks``, optionally
    ``classes``, and for block ``l`` ``block{l}/num_layers``, ``block{l}/layer{k}/weight``,
    ``block{l}/layer{k}/bias``, ``block{l}/weight``, ``block{l}/decay``, ``block{l}/step``,
    ``block{l}/output_activation``.

    Examples
    --------
    >>> import tempfile, jax.numpy as jnp
    >>> network = ResidualNetwork(jnp.zeros(2), jnp.ones(2), (), jnp.eye(2), jnp.zeros(2))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save(f"{tmp}/net", network, classes=["cat", "dog"])
    ...     loaded, classes = load(f"{tmp}/net", return_classes=True)
    >>> loaded.depth, classes.tolist()
    (0, ['cat', 'dog'])
    """
    if not isinstance(network, ResidualNetwork):
        raise TypeError(f"network: expected a ResidualNetwork, got {type(network).__name__}.")
    arrays = {
        "format": np.array(_FORMAT),
        "shift": network.shift,
        "scale": network.scale,
        "classifier_weight": network.classifier_weight,
        "classifier_bias": network.classifier_bias,
        "num_blocks": np.array(network.depth),
    }
    if classes is not None:
        classes = np.asarray(classes)
        num_classes = np.shape(network.classifier_bias)[0]
        if classes.shape != (num_classes,):
            raise ValueError(
                f"classes: expected one label per class, shape ({num_classes},), got "
                f"{classes.shape}."
            )
        if classes.dtype == object:
            try:
                classes = classes.astype(str)
            except (TypeError, ValueError) as err:
                raise TypeError("classes: labels must be numbers or strings.") from err
        arrays["classes"] = classes
    for i, block in enumerate(network.blocks):
        arrays[f"block{i}/num_layers"] = np.array(len(block.layers))
        for k, (w, b) in enumerate(block.layers):
            arrays[f"block{i}/layer{k}/weight"] = w
            arrays[f"block{i}/layer{k}/bias"] = b
        arrays[f"block{i}/weight"] = block.weight
        arrays[f"block{i}/decay"] = block.decay
        arrays[f"block{i}/step"] = block.step
        arrays[f"block{i}/output_activation"] = np.array(block.output_activation)
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    file = _archive_path(file)
    if not isinstance(file, str):  # a file object: written as it is
        np.savez(file, **arrays)
        return
    with replace_atomically(file) as handle:  # whole or not at all, never a truncated archive
        np.savez(handle, **arrays)


# The longest string an archive may hold (the format, an activation, a class label): 256
# characters, so that no header can make load read more than the shapes of the network say.
_MAX_STRING_BYTES = 4 * 256


class _Archive:
    """The arrays of an ``.npz`` archive, each checked from its header (shape and dtype) before
    its data are read, with the key in every error. Only the arrays asked for are read: a
    member can make ``load`` read no more than the network it describes."""

    def __init__(self, members: zipfile.ZipFile, file):
        self.members, self.file, self.asked = members, file, set()
        self.headers = {}
        for info in members.infolist():
            key = info.filename.removesuffix(".npy")
            if key == info.filename:
                raise self.error(f"the member {info.filename!r} is not a NumPy array")
            self.headers[key] = (info, *self._header(key, info))

    def error(self, message: str) -> ValueError:
        return ValueError(f"file: malformed residual network archive {self.file}: {message}.")

    def _header(self, key: str, info: zipfile.ZipInfo):
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        with self.members.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in read_header:
                raise self.error(f"{key!r} has the unsupported .npy version {version}")
            shape, _, dtype = read_header[version](member)
        if dtype.hasobject:
            raise self.error(f"{key!r} holds Python objects, which are never loaded")
        if dtype.kind == "U" and dtype.itemsize > _MAX_STRING_BYTES:
            raise self.error(f"{key!r} holds strings longer than 256 characters")
        return shape, dtype

    def shape(self, key: str, ndim: int, kinds: str = "f") -> tuple[int, ...]:
        """The shape of ``key`` read off its header, which must give ``ndim`` axes and a dtype
        of one of the NumPy ``kinds`` (``"f"`` floating, ``"iu"`` integer, ``"U"`` string)."""
        if key not in self.headers:
            raise self.error(f"the array {key!r} is missing")
        self.asked.add(key)
        _, shape, dtype = self.headers[key]
        if len(shape) != ndim:
            raise self.error(f"{key!r} needs {ndim} axes, got shape {shape}")
        if dtype.kind not in kinds:
            needs = {"f": "floating-point values", "iu": "a non-negative integer"}.get(kinds)
            raise self.error(f"{key!r} needs {needs or 'numbers or strings'}, got {dtype}")
        return shape

    def read(self, key: str) -> np.ndarray:
        """The data of ``key``, whose header :meth:`shape` checked; floating values finite."""
        info, _, dtype = self.headers[key]
        with self.members.open(info) as member:
            value = np.lib.format.read_array(member, allow_pickle=False)
        if dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self.error(f"{key!r} has NaN or infinite values")
        return value

    def count(self, key: str) -> int:
        self.shape(key, 0, "iu")
        value = int(self.read(key))
        if value < 0:
            raise self.error(f"{key!r} needs a non-negative integer, got {value}")
        return value

    def string(self, key: str) -> str:
        self.shape(key, 0, "U")
        return str(self.read(key))

    def check_no_others(self) -> None:
        others = sorted(set(self.headers) - self.asked)
        if others:
            raise self.error(f"it holds arrays that are not part of a network: {others}")


def load(file: str | os.PathLike, *, return_classes: bool = False):
    """Load a residual network written by :func:`save`.

    ``file`` may name the archive with or without its ``.npz`` suffix. A file that is not such
    an archive, or whose arrays are missing or do not fit together, raises a ``ValueError``
    naming ``file`` and what is wrong; pickled contents are never loaded. Safe on untrusted
    files: the arrays' headers (shapes, dtypes) are checked against each other before any data
    are read, arrays that are not part of a network are refused unread, and strings are at
    most 256 characters, so a file can make ``load`` read no more than the network it
    describes.

    Returns
    -------
    The :class:`ResidualNetwork`; with ``return_classes=True`` the pair ``(network, classes)``,
    ``classes`` the saved labels or ``None`` when none were saved.

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
    if isinstance(file, str | os.PathLike) and not os.path.exists(file):
        if os.path.exists(_archive_path(file)):
            file = _archive_path(file)
    if isinstance(file, str | os.PathLike):
        with open(file, "rb") as handle:  # closed on every error, unlike np.load(path)
            return _read_archive(handle, file, return_classes)
    return _read_archive(file, file, return_classes)


def _read_archive(handle, file, return_classes: bool):
    errors = (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError)
    try:
        with zipfile.ZipFile(handle) as members:
            return _read_network(_Archive(members, file), return_classes)
    except errors as err:
        if str(err).startswith("file:"):
            raise
        raise ValueError(f"file: cannot read {file} as an .npz archive: {err}") from err


def _read_network(a: _Archive, return_classes: bool):
    """The network of an archive: every header checked against the others, then the data."""
    if "format" not in a.headers or a.string("format") != _FORMAT:
        raise ValueError(f"file: not a residual network archive ({_FORMAT}): {a.file}.")
    (d,) = a.shape("shift", 1)
    if a.shape("scale", 1) != (d,):
        raise a.error(f"'scale' needs {d} positive values to match 'shift'")
    block_layers = []
    for i in range(a.count("num_blocks")):
        prefix, shapes = f"block{i}", []
        for k in range(a.count(f"{prefix}/num_layers")):
            w, b = a.shape(f"{prefix}/layer{k}/weight", 2), a.shape(f"{prefix}/layer{k}/bias", 1)
            expected = (shapes[-1][1] if shapes else w[0], b[0])
            if w != expected or (not shapes and w[0] not in (d, 2 * d)):
                raise a.error(f"'{prefix}/layer{k}/weight' has shape {w}, which does not chain")
            shapes.append(w)
        if not shapes:
            raise a.error(f"'{prefix}' has no layers")
        if a.shape(f"{prefix}/weight", 2) != (shapes[-1][1], d):
            raise a.error(f"'{prefix}/weight' needs shape {(shapes[-1][1], d)}")
        for scalar in ("decay", "step"):
            a.shape(f"{prefix}/{scalar}", 0)
        activation = a.string(f"{prefix}/output_activation")
        if activation not in _OUTPUT_ACTIVATIONS:
            raise a.error(f"'{prefix}/output_activation' is {activation!r}")
        block_layers.append((len(shapes), activation))
    (num_classes,) = a.shape("classifier_bias", 1)
    if a.shape("classifier_weight", 2) != (d, num_classes):
        raise a.error(f"'classifier_weight' needs shape {(d, num_classes)}")
    if "classes" in a.headers and a.shape("classes", 1, "biufU") != (num_classes,):
        raise a.error(f"'classes' needs shape {(num_classes,)}")
    a.check_no_others()

    scale = a.read("scale")
    if not np.all(scale > 0):
        raise a.error(f"'scale' needs {d} positive values to match 'shift'")
    blocks = tuple(
        ResidualBlock(
            layers=tuple(
                (
                    jnp.asarray(a.read(f"block{i}/layer{k}/weight")),
                    jnp.asarray(a.read(f"block{i}/layer{k}/bias")),
                )
                for k in range(num_layers)
            ),
            weight=jnp.asarray(a.read(f"block{i}/weight")),
            decay=jnp.asarray(a.read(f"block{i}/decay")),
            step=jnp.asarray(a.read(f"block{i}/step")),
            output_activation=activation,
        )
        for i, (num_layers, activation) in enumerate(block_layers)
    )
    network = ResidualNetwork(
        shift=jnp.asarray(a.read("shift")),
        scale=jnp.asarray(scale),
        blocks=blocks,
        classifier_weight=jnp.asarray(a.read("classifier_weight")),
        classifier_bias=jnp.asarray(a.read("classifier_bias")),
    )
    if not return_classes:
        return network
    return network, a.read("classes") if "classes" in a.headers else None
