"""A ResFGB block fitted as a mean-field network by MFLD (our extension, docs/theory/resfgb.md).

The block is ``ι(u) = (1/N) Σ_r a_r relu(w_rᵀu / √d_in + b_r)``, a mean-field network whose
particles ``θ_r = (w_r, b_r, a_r)`` are fitted to the RMS-normalised functional gradient ``t_i`` by
mean-field Langevin dynamics on the free energy

    G(μ) = (1/2n) Σ_i ‖f_μ(u_i) − t_i‖² + λ KL(μ ‖ N(0, σ² I)),

with minibatches drawn on device and particles warm-started from the previous block. As a layer
it is an MLP with one hidden layer of ``N`` units and a linear output, so the fitted network is
evaluated by the same :func:`~mflangevin.models.resnet.apply` as the reference block.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mflangevin._checks import check_positive
from mflangevin.kernels import gradients, mfld
from mflangevin.objectives import MeanFieldObjective
from mflangevin.references import gaussian_reference
from mflangevin.types import Array, ArrayTree, PRNGKey

__all__ = ["MFLDBlock"]


def _neuron(theta: ArrayTree, data) -> Array:
    """``Φ(θ) = (a relu(wᵀu_i / √d_in + b))_i``, shape ``(n, D)``.

    The ``1/√d_in`` keeps the curvature in ``w``, hence the stable MFLD step size, independent of
    the input dimension.
    """
    U, _ = data
    pre_activation = U @ theta["w"] / jnp.sqrt(U.shape[1]) + theta["b"]
    return jax.nn.relu(pre_activation)[:, None] * theta["a"][None, :]


def _squared_risk(prediction: Array, data) -> Array:
    """``R(f) = (1/2n) Σ_i ‖f_i − t_i‖²``."""
    _, targets = data
    return 0.5 * jnp.mean(jnp.sum((prediction - targets) ** 2, axis=1))


@dataclasses.dataclass(frozen=True)
class MFLDBlock:
    """A block ``ι`` fitted as a mean-field two-layer network by MFLD (our extension).

    Parameters
    ----------
    num_particles
        ``N``, the number of neurons (particles).
    num_steps
        MFLD steps per block fit, each on a fresh minibatch.
    step_size
        η of MFLD.
    temperature
        λ, the entropy weight.
    reference_scale
        σ of the Gaussian reference ν = N(0, σ² I).

    Examples
    --------
    >>> import jax
    >>> block = MFLDBlock(num_particles=32)
    >>> particles = block.init(jax.random.key(0), 3, 3)
    >>> [w.shape for w, _ in block.layers(particles)]
    [(3, 32), (32, 3)]
    """

    num_particles: int = 256
    num_steps: int = 100
    step_size: float = 0.1
    temperature: float = 1e-4
    reference_scale: float = 1.0

    output_activation = "linear"

    def __post_init__(self):
        for name in ("num_particles", "num_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}.")
        for name in ("step_size", "temperature", "reference_scale"):
            # Positive and finite: with η = inf every MFLD step would be refused, silently.
            check_positive(name, getattr(self, name))

    def init(self, rng_key: PRNGKey, input_dim: int, output_dim: int) -> ArrayTree:
        """Particles drawn from the reference ν.

        Examples
        --------
        >>> import jax
        >>> particles = MFLDBlock(num_particles=32).init(jax.random.key(0), 3, 2)
        >>> {name: leaf.shape for name, leaf in particles.items()}
        {'w': (32, 3), 'b': (32,), 'a': (32, 2)}
        """
        key_w, key_b, key_a = jax.random.split(rng_key, 3)
        n, s = self.num_particles, self.reference_scale
        return {
            "w": s * jax.random.normal(key_w, (n, input_dim)),
            "b": s * jax.random.normal(key_b, (n,)),
            "a": s * jax.random.normal(key_a, (n, output_dim)),
        }

    def fit(self, state, U, targets, rng_key, batch_size, momentum) -> tuple[ArrayTree, Array]:
        """``num_steps`` MFLD steps on minibatches of ``(U, targets)`` from the particles ``state``:
        the new particles and the number of divergent steps: steps with a refused particle move
        (a non-finite or huge proposal, whose particle is then kept). The SGD drift's growth flag
        (``info.is_divergent`` without a refusal: an epoch's mean energy ten times its best) is
        not counted: ResFGB judges a block by the ensemble's training loss, which it checks itself
        (non-finite: a clear error); a block's own objective may rise while the ensemble's loss
        falls (measured on the two moons of the tests).

        ``momentum`` belongs to the SGD-fitted blocks; Langevin dynamics has none.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> block = MFLDBlock(num_particles=32, num_steps=5)
        >>> state = block.init(jax.random.key(0), 3, 2)
        >>> U, targets = jnp.ones((16, 3)), jnp.ones((16, 2))
        >>> fitted, num_divergent = block.fit(
        ...     state, U, targets, jax.random.key(1), batch_size=8, momentum=0.9
        ... )
        >>> fitted["a"].shape, int(num_divergent)
        ((32, 2), 0)
        """
        del momentum
        objective = MeanFieldObjective(
            feature_map=_neuron,
            risk=_squared_risk,
            reference=gaussian_reference(self.reference_scale),
            data=(U, targets),
            finite_sum=True,
        )
        estimator = gradients.sgd(min(batch_size, U.shape[0]))
        kernel = mfld.build_kernel(gradient=estimator)

        def step(state, key):
            state, info = kernel(key, state, objective, self.step_size, self.temperature)
            return state, info.num_refused > 0

        initial = mfld.init(state, objective=objective, gradient=estimator)
        keys = jax.random.split(rng_key, self.num_steps)
        final, is_divergent = jax.lax.scan(step, initial, keys)
        return final.position, jnp.sum(is_divergent)

    def layers(self, state: ArrayTree) -> tuple[tuple[Array, Array], ...]:
        """The particles as an MLP: hidden layer ``(w_r / √d_in, b_r)``, output ``a_r / N``.

        Examples
        --------
        >>> import jax
        >>> block = MFLDBlock(num_particles=32)
        >>> layers = block.layers(block.init(jax.random.key(0), 3, 2))
        >>> [(w.shape, b.shape) for w, b in layers]
        [((3, 32), (32,)), ((32, 2), (2,))]
        """
        n, input_dim = state["w"].shape
        output_bias = jnp.zeros(state["a"].shape[1], state["a"].dtype)
        hidden = (state["w"].T / jnp.sqrt(input_dim), state["b"])
        return (hidden, (state["a"] / n, output_bias))
