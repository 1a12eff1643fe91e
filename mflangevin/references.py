"""Reference measures ν of the free energy ``G(μ) = F(μ) + λ KL(μ ‖ ν)``.

A reference acts on one particle (a pytree without the particle axis) through its log-density,
and on a particle array through :meth:`score`, the gradient of ``log ν`` at every particle.
``None`` in place of a reference means the Lebesgue measure: the entropy term alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = [
    "GaussianReference",
    "DensityReference",
    "gaussian_reference",
    "density_reference",
    "check_reference",
]


def _tree_sum(tree: ArrayTree) -> Array:
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class GaussianReference:
    """Isotropic Gaussian ``ν = N(0, scale² I)`` on every leaf of the particle pytree.

    Build it with :func:`gaussian_reference`, which checks ``scale``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> nu = GaussianReference(scale=1.0)
    >>> nu.log_density({"w": jnp.array([1.0, 1.0]), "b": jnp.array(2.0)})
    Array(-3., dtype=float32)
    """

    scale: float = 1.0

    def log_density(self, theta: ArrayTree) -> Array:
        """``log ν(θ)`` up to an additive constant, for one particle.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> GaussianReference(scale=2.0).log_density(jnp.array([2.0, 0.0]))
        Array(-0.5, dtype=float32)
        """
        return -0.5 * _tree_sum(jax.tree.map(jnp.square, theta)) / self.scale**2

    def log_normalizer(self, theta: ArrayTree) -> Array:
        """``log Z = (p/2) log(2π scale²)``, so that ``log_density − log_normalizer`` is the
        normalised log-density in dimension ``p`` (the size of one particle).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> round(float(GaussianReference(scale=1.0).log_normalizer(jnp.zeros(2))), 4)  # log 2π
        1.8379
        """
        p = sum(jnp.size(x) for x in jax.tree.leaves(theta))
        return 0.5 * p * jnp.log(2 * jnp.pi * jnp.asarray(self.scale) ** 2)

    def score(self, particles: ArrayTree) -> ArrayTree:
        """``∇ log ν(θ_i) = −θ_i / scale²`` at every particle (closed form).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> GaussianReference(scale=2.0).score(jnp.ones((3, 2)))[0]
        Array([-0.25, -0.25], dtype=float32)
        """
        return jax.tree.map(lambda x: -x / self.scale**2, particles)

    def sample(self, rng_key: PRNGKey, like: ArrayTree) -> ArrayTree:
        """Independent draws of ν, shaped like ``like`` (leading axis = number of draws).

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> like = {"w": jnp.zeros((5, 3)), "b": jnp.zeros(5)}
        >>> draws = GaussianReference(scale=1.0).sample(jax.random.key(0), like)
        >>> draws["w"].shape, draws["b"].shape
        ((5, 3), (5,))
        """
        leaves, treedef = jax.tree.flatten(like)
        keys = jax.random.split(rng_key, len(leaves))
        draws = [
            self.scale * jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
            for k, x in zip(keys, leaves, strict=True)
        ]
        return jax.tree.unflatten(treedef, draws)


@dataclasses.dataclass(frozen=True)
class DensityReference:
    """A reference measure given by any log-density of one particle (up to a constant).

    ``sample`` is optional: it is only needed by methods that draw from ν (the dual bound of the
    certificates, particle initialisation). Build it with :func:`density_reference`, which checks
    its arguments.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> laplace = DensityReference(lambda theta: -jnp.sum(jnp.abs(theta)))
    >>> laplace.log_density(jnp.array([1.0, -2.0]))
    Array(-3., dtype=float32)
    """

    log_density: Callable[[ArrayTree], Array]
    sampler: Callable[[PRNGKey, ArrayTree], ArrayTree] | None = None

    def log_normalizer(self, theta: ArrayTree) -> Array:
        """``0``: the log-density is taken as given, normalised.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> nu = DensityReference(lambda theta: -jnp.sum(jnp.abs(theta)))
        >>> float(nu.log_normalizer(jnp.zeros(2)))
        0.0
        """
        return jnp.zeros((), jnp.result_type(*jax.tree.leaves(theta)))

    def score(self, particles: ArrayTree) -> ArrayTree:
        """``∇ log ν`` at every particle, by automatic differentiation.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> laplace = DensityReference(lambda theta: -jnp.sum(jnp.abs(theta)))
        >>> laplace.score(jnp.array([[1.0, -2.0], [-3.0, 4.0]]))
        Array([[-1.,  1.],
               [ 1., -1.]], dtype=float32)
        """
        return jax.vmap(jax.grad(self.log_density))(particles)

    def sample(self, rng_key: PRNGKey, like: ArrayTree) -> ArrayTree:
        """Draws of ν shaped like ``like``, from the user's ``sampler``.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> laplace = DensityReference(
        ...     log_density=lambda theta: -jnp.sum(jnp.abs(theta)),
        ...     sampler=lambda key, like: jax.random.laplace(key, like.shape),
        ... )
        >>> laplace.sample(jax.random.key(0), jnp.zeros((5, 2))).shape
        (5, 2)
        """
        if self.sampler is None:
            raise ValueError(
                "reference: this DensityReference was built without `sampler`, "
                "so it cannot draw from ν."
            )
        return self.sampler(rng_key, like)


def check_reference(reference, name: str = "reference") -> None:
    """A reference measure is ``None`` (entropy only), a :func:`gaussian_reference`, a
    :func:`density_reference`, or an object of one's own with a callable ``score``.

    Examples
    --------
    >>> check_reference(gaussian_reference(1.0))
    >>> check_reference("gaussian")
    Traceback (most recent call last):
    ...
    TypeError: reference: expected None, mflangevin.gaussian_reference(scale) or ...
    """
    if reference is None or isinstance(reference, GaussianReference | DensityReference):
        return
    if callable(getattr(reference, "score", None)):
        return  # a reference of one's own, with the interface the kernels use
    raise TypeError(
        f"{name}: expected None, mflangevin.gaussian_reference(scale) or "
        f"mflangevin.density_reference(log_density), got {reference!r}."
    )


def gaussian_reference(scale: float = 1.0) -> GaussianReference:
    """The isotropic Gaussian reference measure ``N(0, scale² I)``.

    A Gaussian reference at temperature λ is the same as an L2 penalty ``λ' E_μ‖θ‖²`` with
    ``scale² = λ / (2λ')``: use one or the other, never both.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> nu = gaussian_reference(2.0)
    >>> nu.score(jnp.ones((3, 2)))[0]
    Array([-0.25, -0.25], dtype=float32)
    """
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise TypeError(f"scale: expected a real number, got {scale!r}.")
    if not (scale > 0 and scale < float("inf")):
        raise ValueError(f"scale: the Gaussian reference needs a finite scale > 0, got {scale}.")
    return GaussianReference(float(scale))


def density_reference(
    log_density: Callable[[ArrayTree], Array],
    sample: Callable[[PRNGKey, ArrayTree], ArrayTree] | None = None,
) -> DensityReference:
    """A reference measure from a log-density of one particle (and optionally a sampler).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> laplace = density_reference(lambda theta: -jnp.sum(jnp.abs(theta)))
    >>> laplace.score(jnp.array([[1.0, -2.0]]))
    Array([[-1.,  1.]], dtype=float32)
    """
    if not callable(log_density):
        raise TypeError(f"log_density: expected a callable, got {type(log_density).__name__}.")
    if sample is not None and not callable(sample):
        raise TypeError(f"sample: expected a callable or None, got {type(sample).__name__}.")
    return DensityReference(log_density, sample)
