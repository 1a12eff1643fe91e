"""Mean-field two-layer networks ``f_μ(x) = E_{θ∼μ} h(θ, x)`` (docs/theory/networks.md).

With ``N`` particles ``f_Θ(x) = (1/N) Σ_i h(θ_i, x)``. A neuron maps one particle and *all*
inputs at once, so under ``jax.vmap`` over particles the network is a matrix product
``X Wᵀ`` of cost ``O(n·d·N)``, and so is its pullback: never a per-(datum, particle) gradient.

Neurons (particles are dicts of arrays with leading axis ``N``):

* ``"tanh"``: ``h(θ, x) = tanh(wᵀx + b)``, ``θ = {w, b}``;
* ``"bounded"``: ``h(θ, x) = R̄ [tanh(wᵀx + b) + 2 tanh(a)] / 3``, ``θ = {w, b, a}``
  (Suzuki, Wu, Oko, Nitanda 2023; bounded, so the log-Sobolev theory applies);
* ``"output_weight"``: ``h(θ, x) = a σ(wᵀx + b)`` with ``a ∈ R^k`` (``k = num_outputs``; the
  multi-class cross-entropy needs ``k ≥ 2``), ``σ`` one of :data:`ACTIVATIONS`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin._checks import all_finite, check_count, check_positive, on_host, to_device
from mflangevin.models.losses import Loss, get_loss
from mflangevin.objectives import L2Penalty, MeanFieldObjective
from mflangevin.references import DensityReference, GaussianReference
from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = ["MeanFieldNetwork", "L2Penalty", "ACTIVATIONS", "NEURONS"]

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
}
"""The activations ``σ`` of ``output_weight`` neurons, by name."""
NEURONS = ("tanh", "bounded", "output_weight")
"""The neuron types of :class:`MeanFieldNetwork` (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class MeanFieldNetwork:
    """A mean-field two-layer network and its empirical-risk objective.

    Parameters
    ----------
    neuron
        ``"tanh"``, ``"bounded"`` or ``"output_weight"``.
    loss
        ``"squared"``, ``"logistic"`` (labels ±1), ``"smoothed_hinge"`` (labels ±1),
        ``"cross_entropy"`` (integer labels, ``output_weight`` neurons with ``num_outputs ≥ 2``),
        or any :class:`~mflangevin.models.losses.Loss`.
    activation
        ``σ`` of ``output_weight`` neurons, a key of :data:`ACTIVATIONS`.
    num_outputs
        ``k``, the output dimension of ``output_weight`` neurons (1: scalar output).
    output_scale
        ``R̄`` of ``bounded`` neurons (15 in Suzuki, Wu, Oko, Nitanda 2023).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = MeanFieldNetwork("tanh", loss="squared")
    >>> particles = net.init_particles(jax.random.key(0), 128, input_dim=3)
    >>> X = jnp.ones((5, 3))
    >>> net.predict(particles, X).shape
    (5,)
    >>> objective = net.objective(X, jnp.zeros(5), l2=1e-3)
    >>> objective.energy(particles).shape
    ()
    """

    neuron: str = "tanh"
    loss: str | Loss = "squared"
    activation: str = "tanh"
    num_outputs: int = 1
    output_scale: float = 15.0

    def __post_init__(self):
        if self.neuron not in NEURONS:
            raise ValueError(f"neuron: unknown neuron {self.neuron!r}; choose one of {NEURONS}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: unknown activation {self.activation!r}; "
                f"choose one of {sorted(ACTIVATIONS)}."
            )
        object.__setattr__(self, "num_outputs", check_count("num_outputs", self.num_outputs))
        if self.num_outputs > 1 and self.neuron != "output_weight":
            raise ValueError("num_outputs: vector outputs need neuron='output_weight'.")
        loss = get_loss(self.loss)
        object.__setattr__(self, "loss", loss)
        if (loss.name == "cross_entropy") != (self.num_outputs > 1):
            raise ValueError(
                "loss: the cross-entropy loss goes with num_outputs >= 2 output_weight neurons, "
                f"and vector outputs with the cross-entropy; got loss={loss.name!r}, "
                f"num_outputs={self.num_outputs}."
            )
        if not self.output_scale > 0:
            raise ValueError(f"output_scale: must be positive, got {self.output_scale}.")

    def unit(self, theta: ArrayTree, X: Array) -> Array:
        """``h(θ, x_j)`` of one neuron on all inputs: shape ``(n,)``, or ``(n, k)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> X = jnp.ones((5, 3))
        >>> theta = {"w": jnp.zeros(3), "b": jnp.array(0.0)}
        >>> MeanFieldNetwork("tanh").unit(theta, X)
        Array([0., 0., 0., 0., 0.], dtype=float32)
        >>> net = MeanFieldNetwork("output_weight", loss="cross_entropy", num_outputs=4)
        >>> net.unit({**theta, "a": jnp.ones(4)}, X).shape
        (5, 4)
        """
        pre = X.astype(theta["w"].dtype) @ theta["w"] + theta["b"]
        if self.neuron == "tanh":
            return jnp.tanh(pre)
        if self.neuron == "bounded":
            return self.output_scale * (jnp.tanh(pre) + 2 * jnp.tanh(theta["a"])) / 3
        hidden = ACTIVATIONS[self.activation](pre)
        if self.num_outputs == 1:
            return theta["a"] * hidden
        return hidden[:, None] * theta["a"][None, :]

    def init_particles(
        self,
        rng_key: PRNGKey,
        num_particles: int,
        input_dim: int,
        scale: float = 1.0,
        dtype=jnp.float32,
    ) -> dict[str, Array]:
        """``N`` particles drawn from ``N(0, scale² I)`` (the Gaussian reference), as a dict.

        Examples
        --------
        >>> import jax
        >>> particles = MeanFieldNetwork("bounded").init_particles(jax.random.key(0), 16, 3)
        >>> {name: leaf.shape for name, leaf in particles.items()}
        {'a': (16,), 'b': (16,), 'w': (16, 3)}
        """
        num_particles = check_count("num_particles", num_particles)
        input_dim = check_count("input_dim", input_dim)
        check_positive("scale", scale)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype: particles must be floating point, got {jnp.dtype(dtype)}.")
        shapes = {"w": (num_particles, input_dim), "b": (num_particles,)}
        if self.neuron == "bounded":
            shapes["a"] = (num_particles,)
        elif self.neuron == "output_weight":
            k = self.num_outputs
            shapes["a"] = (num_particles,) if k == 1 else (num_particles, k)
        return _gaussian_particles(rng_key, tuple(sorted(shapes.items())), jnp.dtype(dtype), scale)

    def predict(self, particles: ArrayTree, X: Array) -> Array:
        """``f_Θ(X) = (1/N) Σ_i h(θ_i, X)``: shape ``(n,)`` (``(n, k)`` for vector outputs).

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> net = MeanFieldNetwork("output_weight", loss="cross_entropy", num_outputs=4)
        >>> particles = net.init_particles(jax.random.key(0), 16, input_dim=3)
        >>> net.predict(particles, jnp.ones((5, 3))).shape
        (5, 4)
        """
        return _predict(self, particles, X)

    def objective(
        self,
        X: Array,
        y: Array,
        *,
        l2: float = 0.0,
        reference: GaussianReference | DensityReference | None = None,
        chunk_size: int | None = None,
    ) -> MeanFieldObjective:
        """The empirical risk ``F(μ) = (1/n) Σ_j ℓ(f_μ(x_j), y_j) + l2 · E_μ‖θ‖²``.

        Give the regulariser either as ``l2`` or as a Gaussian ``reference`` (at temperature λ
        they are the same thing when ``scale² = λ / (2 l2)``), never both. The objective carries
        ``(X, y)`` as its data and is a finite sum over its rows, so minibatch estimators can
        subsample it and its energy and drift walk the data in blocks of ``chunk_size`` rows
        (default: chosen from :data:`~mflangevin.objectives.BLOCK_ELEMENTS`), so that memory
        stays bounded whatever ``n`` is.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> net = MeanFieldNetwork("tanh", loss="logistic")
        >>> X, y = jnp.ones((6, 3)), jnp.array([1, -1, 1, 1, -1, 1])
        >>> objective = net.objective(X, y, l2=1e-3)
        >>> objective.penalty, objective.data[1].dtype  # ±1 labels cast to the inputs' dtype
        (L2Penalty(weight=0.001), dtype('float32'))
        >>> particles = net.init_particles(jax.random.key(0), 16, input_dim=3)
        >>> energy, drift = objective.energy_and_drift(particles)
        >>> drift["w"].shape
        (16, 3)
        """
        X, y = to_device(X), to_device(y)
        if X.ndim != 2:
            raise ValueError(f"X: expected a (n, d) array of inputs, got shape {X.shape}.")
        if X.shape[0] < 1:
            raise ValueError(f"X: needs at least one sample, got shape {X.shape}.")
        if not jnp.issubdtype(X.dtype, jnp.floating):
            raise TypeError(f"X: expected floating-point inputs, got {X.dtype}.")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y: expected shape ({X.shape[0]},) to match X, got {y.shape}.")
        if not isinstance(X, jax.core.Tracer) and not all_finite(X):
            raise ValueError("X: contains NaN or infinite values.")
        self._check_labels(y)
        real = isinstance(l2, int | float) or (
            hasattr(l2, "dtype")
            and jnp.shape(l2) == ()
            and (jnp.issubdtype(l2.dtype, jnp.floating) or jnp.issubdtype(l2.dtype, jnp.integer))
        )
        if isinstance(l2, bool) or not real:
            raise TypeError(f"l2: expected a real number, got {l2!r}.")
        l2 = float(l2)
        if not (l2 >= 0 and l2 < float("inf")):
            raise ValueError(f"l2: must be finite and >= 0, got {l2}.")
        if reference is not None and not isinstance(
            reference, GaussianReference | DensityReference
        ):
            raise TypeError(
                "reference: expected None, mflangevin.gaussian_reference(scale) or "
                f"mflangevin.density_reference(log_density), got {reference!r}."
            )
        if l2 > 0 and reference is not None:
            raise ValueError(
                "l2: an L2 weight and a reference measure were both given; they are the same "
                "regulariser (l2 = λ / (2 scale²)), so give only one."
            )
        if self.loss.name != "cross_entropy":
            y = y.astype(X.dtype)
        return MeanFieldObjective(
            feature_map=_Method(self, "_feature_map"),
            risk=_Method(self, "_risk"),
            penalty=L2Penalty(float(l2)) if l2 > 0 else None,
            reference=reference,
            risk_conjugate=_Method(self, "_risk_conjugate"),
            data=(X, y),
            finite_sum=True,
            chunk_size=chunk_size,
            check_data=_Method(self, "_check_data"),
        )

    def _check_labels(self, y: Array, name: str = "y") -> None:
        if jnp.iscomplexobj(y):
            raise TypeError(f"{name}: labels must be real, got {y.dtype}.")
        if self.loss.name == "cross_entropy" and not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(f"{name}: the cross-entropy needs integer class labels, got {y.dtype}.")
        if not isinstance(y, jax.core.Tracer) and not bool(self._labels_in_domain(y)):
            raise ValueError(f"{name}: the {self.loss.name} loss needs {self._label_domain()}.")

    def _label_domain(self) -> str:
        if self.loss.name in ("logistic", "smoothed_hinge"):
            return "labels in {-1, +1}"
        if self.loss.name == "cross_entropy":
            return f"class labels in [0, {self.num_outputs})"
        return "finite labels"

    def _labels_in_domain(self, y: Array) -> Array:
        # Concrete labels in host memory are read there (NumPy): nothing is compiled.
        xp, y = (np, np.asarray(y)) if on_host(y) else (jnp, y)
        if self.loss.name in ("logistic", "smoothed_hinge"):
            return xp.all(xp.abs(y) == 1)
        if self.loss.name == "cross_entropy":
            return xp.all((y >= 0) & (y < self.num_outputs))
        return xp.all(xp.isfinite(y))

    def _check_data(self, data: tuple[Array, Array], name: str) -> Array:
        """The objective's ``check_data``: finite inputs and labels in the loss's domain."""
        X, y = data
        self._check_labels(y, f"{name} labels")
        xp, X = (np, np.asarray(X)) if on_host(X) else (jnp, X)
        in_domain = xp.all(xp.isfinite(X)) & self._labels_in_domain(y)
        if not isinstance(in_domain, jax.core.Tracer) and not bool(in_domain):
            raise ValueError(f"{name}: the inputs contain NaN or infinite values.")
        return in_domain

    def _feature_map(self, theta: ArrayTree, data: tuple[Array, Array]) -> Array:
        return self.unit(theta, data[0])

    def _risk(self, z: Array, data: tuple[Array, Array]) -> Array:
        return jnp.mean(self.loss.value(z, _labels_like(data[1], z)))

    def _risk_conjugate(self, g: Array, data: tuple[Array, Array]) -> Array:
        n = data[1].shape[0]
        return jnp.mean(self.loss.conjugate(n * g, _labels_like(data[1], g)))


@dataclasses.dataclass(frozen=True)
class _Method:
    """A method of a network, equal for equal networks. Bound methods are equal only for the
    same instance, so two equal networks would not share the compiled programs of their
    objectives (a kernel's step, a certificate)."""

    network: MeanFieldNetwork
    name: str

    def __call__(self, *args):
        return getattr(self.network, self.name)(*args)


def _labels_like(y: Array, z: Array) -> Array:
    """Real-valued labels in the dtype of the network's outputs (particles may be of lower
    precision than the data); integer class labels as they are."""
    return y if jnp.issubdtype(y.dtype, jnp.integer) else y.astype(z.dtype)


@functools.partial(jax.jit, static_argnums=0)
def _predict(network: MeanFieldNetwork, particles: ArrayTree, X: Array) -> Array:
    """:meth:`MeanFieldNetwork.predict`, one compiled program per network and shapes (op by op,
    every new shape would compile each operation, and each later call would dispatch every
    operation: see ``benchmarks/compiled_calls.py``)."""
    return jnp.mean(jax.vmap(network.unit, in_axes=(0, None))(particles, X), axis=0)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _gaussian_particles(rng_key: PRNGKey, shapes: tuple, dtype, scale) -> dict[str, Array]:
    """``scale · N(0, I)`` leaves of the given ``(name, shape)`` pairs, one key each, as one
    compiled program per shapes (op by op, every new shape would compile several)."""
    keys = jax.random.split(rng_key, len(shapes))
    return {
        name: (scale * jax.random.normal(key, shape, dtype)).astype(dtype)
        for key, (name, shape) in zip(keys, shapes, strict=True)
    }
