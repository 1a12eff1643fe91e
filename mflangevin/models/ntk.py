"""Two-layer networks in the neural-tangent-kernel (NTK) regime (docs/theory/ntk.md).

``g_B(x) = (1/√M) Σ_r a_r σ(b_rᵀx)`` with fixed output signs ``a_r`` and trained first-layer
weights ``B = (b_1, …, b_M)`` (Nitanda & Suzuki, *Optimal Rates for Averaged Stochastic Gradient
Descent under Neural Tangent Kernel Regime*, ICLR 2021). The parameters are the array ``B`` of
shape ``(M, d)``; the signs are implicit: ``a_r = +1`` for the first half of the rows and
``a_r = −1`` for the second. Symmetric initialisation draws the first half
``b_r ~ N(0, s² I)`` and copies it into the second (``b_{r+M/2} = b_r``), so ``g ≡ 0`` at start.

The NTK of this parameterisation (only ``B`` is trained) is

    k_M(x, x') = ⟨∇_B g(x), ∇_B g(x')⟩ = (1/M) Σ_r σ'(b_rᵀx) σ'(b_rᵀx') · xᵀx'

(``a_r² = 1``), and as ``M → ∞`` at initialisation it tends to
``k(x, x') = E_{b~N(0, s² I)}[σ'(bᵀx) σ'(bᵀx')] · xᵀx'``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin.models.two_layer import ACTIVATIONS as _MEAN_FIELD_ACTIVATIONS
from mflangevin.types import Array, PRNGKey

__all__ = ["NTKNetwork", "NTK_ACTIVATIONS", "CLOSED_FORM_NTK"]

NTK_ACTIVATIONS = {**_MEAN_FIELD_ACTIVATIONS, "erf": jax.lax.erf}
"""The activations ``σ`` of :class:`NTKNetwork` by name: the mean-field ones and erf."""
CLOSED_FORM_NTK = ("erf", "relu")
"""The activations whose infinite-width NTK :meth:`NTKNetwork.ntk` computes in closed form."""


def _check_inputs(name: str, X, input_dim: int | None = None) -> Array:
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a (n, d) array of inputs, got shape {X.shape}.")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise TypeError(f"{name}: expected floating-point inputs, got {X.dtype}.")
    if input_dim is not None and X.shape[1] != input_dim:
        raise ValueError(f"{name}: inputs have {X.shape[1]} features, the weights {input_dim}.")
    return X


def _check_weights(params) -> Array:
    shape = getattr(params, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"params: expected the (M, d) first-layer weights, got shape {shape}.")
    if params.shape[0] % 2:
        raise ValueError(f"params: the width M must be even (paired signs), got {params.shape[0]}.")
    return params


@dataclasses.dataclass(frozen=True)
class NTKNetwork:
    """A two-layer network in NTK parameterisation with symmetric initialisation.

    Parameters
    ----------
    activation
        ``σ``, a key of :data:`NTK_ACTIVATIONS`. The theory of averaged SGD asks for a smooth
        ``σ`` (``"erf"``, ``"tanh"``, ``"sigmoid"``, ``"softplus"``, ``"gelu"``, ``"silu"``);
        ``"relu"`` is accepted because its NTK has a closed form with polynomial eigenvalue decay.
    init_scale
        ``s``: first-layer weights start from ``N(0, s² I)``.

    Notes
    -----
    :meth:`ntk` gives the infinite-width kernel in closed form for ``σ = relu``,
    ``k = xᵀx' (π − arccos ρ) / (2π)`` with ``ρ`` the cosine of ``x, x'`` (the order-0
    arc-cosine kernel, independent of ``s``), and for ``σ = erf``,
    ``k = xᵀx' · (4/π) / √((1 + 2s²‖x‖²)(1 + 2s²‖x'‖²) − 4s⁴(xᵀx')²)`` (the Gaussian integral
    of ``σ'(u) = (2/√π) e^{−u²}``). Other activations have no closed form: use
    :meth:`empirical_ntk` at a large width.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = NTKNetwork("erf")
    >>> B = net.init_params(jax.random.key(0), width=64, input_dim=3)
    >>> X = jax.random.normal(jax.random.key(1), (5, 3))
    >>> bool(jnp.all(net.apply(B, X) == 0.0))
    True
    >>> net.empirical_ntk(B, X).shape, net.ntk(X).shape
    ((5, 5), (5, 5))
    """

    activation: str = "erf"
    init_scale: float = 1.0

    def __post_init__(self):
        if self.activation not in NTK_ACTIVATIONS:
            raise ValueError(
                f"activation: unknown activation {self.activation!r}; "
                f"choose one of {sorted(NTK_ACTIVATIONS)}."
            )
        if not (isinstance(self.init_scale, int | float) and 0 < self.init_scale < math.inf):
            raise ValueError(f"init_scale: must be a positive number, got {self.init_scale!r}.")

    def init_params(self, rng_key: PRNGKey, width: int, input_dim: int, dtype=jnp.float32) -> Array:
        """Symmetric initialisation: ``B`` of shape ``(M, d)`` whose two halves are equal.

        Examples
        --------
        >>> import jax
        >>> B = NTKNetwork().init_params(jax.random.key(0), width=4, input_dim=2)
        >>> bool((B[:2] == B[2:]).all())
        True
        """
        if not isinstance(width, bool) and isinstance(width, np.integer):
            width = int(width)  # NumPy integers (np.int64(32)) are integers too
        if isinstance(width, bool) or not isinstance(width, int) or width < 2 or width % 2:
            raise ValueError(f"width: must be an even integer >= 2, got {width!r}.")
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"input_dim: must be an integer >= 1, got {input_dim!r}.")
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype: the weights must be floating point, got {dtype}.")
        half = self.init_scale * jax.random.normal(rng_key, (width // 2, input_dim), dtype)
        return jnp.concatenate([half, half], axis=0)

    def apply(self, params: Array, X: Array) -> Array:
        """``g_B(X)``, shape ``(n,)``.

        The two halves enter through two matrix products of the same shape, so that at the
        symmetric initialisation they cancel exactly, not merely up to rounding.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> net = NTKNetwork("tanh")
        >>> B = net.init_params(jax.random.key(0), width=8, input_dim=2)
        >>> net.apply(B + 0.1, jnp.ones((3, 2))).shape
        (3,)
        """
        B = _check_weights(params)
        X = _check_inputs("X", X, B.shape[1])
        sigma = NTK_ACTIVATIONS[self.activation]
        half = B.shape[0] // 2
        positive = sigma(X @ B[:half].T)
        negative = sigma(X @ B[half:].T)
        return jnp.sum(positive - negative, axis=1) / jnp.sqrt(jnp.asarray(B.shape[0], X.dtype))

    def empirical_ntk(self, params: Array, X1: Array, X2: Array | None = None) -> Array:
        """The NTK Gram matrix of the network at ``B``: ``(n1, n2)``.

        ``K = (S₁ S₂ᵀ / M) ⊙ (X₁ X₂ᵀ)`` with ``S = σ'(X Bᵀ)``: cost ``O(n₁ n₂ M + n M d)``,
        equal to ``J₁ J₂ᵀ`` for the Jacobians ``J = ∂g/∂B`` without forming them.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> net = NTKNetwork("erf")
        >>> B = net.init_params(jax.random.key(0), width=16, input_dim=2)
        >>> K = net.empirical_ntk(B, jnp.eye(2))
        >>> bool(jnp.allclose(K, K.T))
        True
        """
        B = _check_weights(params)
        X1 = _check_inputs("X1", X1, B.shape[1])
        X2 = None if X2 is None else _check_inputs("X2", X2, B.shape[1])
        return _empirical_ntk(self.activation, B, X1, X2)

    def ntk(self, X1: Array, X2: Array | None = None) -> Array:
        """The infinite-width NTK ``k(x, x')`` in closed form (``relu`` and ``erf`` only).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> K = NTKNetwork("relu").ntk(jnp.eye(2))
        >>> [round(float(v), 3) for v in K.ravel()]
        [0.5, 0.0, 0.0, 0.5]
        """
        if self.activation not in CLOSED_FORM_NTK:
            raise ValueError(
                f"activation: no closed-form NTK for {self.activation!r} (only for "
                f"{CLOSED_FORM_NTK}); use empirical_ntk at a large width."
            )
        X1 = _check_inputs("X1", X1)
        X2 = X1 if X2 is None else _check_inputs("X2", X2, X1.shape[1])
        return _ntk(self.activation, float(self.init_scale), X1, X2)


# The kernels, compiled once per activation and shapes (op by op, every new shape would compile
# each operation anew). ``apply`` stays op by op: its two halves must be computed alike to
# cancel exactly, which a compiler that merges the two products does not promise.


def _derivative(activation: str, pre: Array) -> Array:
    """``σ'`` elementwise, by one forward-mode product (no Jacobian is formed)."""
    sigma = NTK_ACTIVATIONS[activation]
    return jax.jvp(sigma, (pre,), (jnp.ones_like(pre),))[1]


@functools.partial(jax.jit, static_argnums=0)
def _empirical_ntk(activation: str, B: Array, X1: Array, X2: Array | None) -> Array:
    S1 = _derivative(activation, X1 @ B.T)
    S2 = S1 if X2 is None else _derivative(activation, X2 @ B.T)
    X2 = X1 if X2 is None else X2
    return (S1 @ S2.T) / jnp.asarray(B.shape[0], X1.dtype) * (X1 @ X2.T)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _ntk(activation: str, init_scale: float, X1: Array, X2: Array) -> Array:
    inner = X1 @ X2.T
    sq1 = jnp.sum(X1**2, axis=1)[:, None]
    sq2 = jnp.sum(X2**2, axis=1)[None, :]
    if activation == "relu":
        norms = jnp.sqrt(sq1 * sq2)
        # A zero input has xᵀx' = 0, so any cosine gives k = 0; 0 keeps arccos finite.
        cosine = jnp.where(norms > 0, inner / jnp.where(norms > 0, norms, 1.0), 0.0)
        angle = jnp.arccos(jnp.clip(cosine, -1.0, 1.0))
        return inner * (jnp.pi - angle) / (2 * jnp.pi)
    s2 = jnp.asarray(init_scale**2, X1.dtype)
    det = (1 + 2 * s2 * sq1) * (1 + 2 * s2 * sq2) - 4 * s2**2 * inner**2
    return inner * (4 / jnp.pi) / jnp.sqrt(det)
