"""``numpyro.infer.MCMC`` aware of the particle axis of :class:`mflangevin.numpyro.MFLD` (a
helper of :mod:`mflangevin.numpyro`)."""

from __future__ import annotations

import warnings

import numpy as np
from numpyro.infer import MCMC as NumPyroMCMC

#: Above this fraction of refused particle moves after warmup, ``run`` warns.
REFUSED_FRACTION = 0.5


class MCMC(NumPyroMCMC):
    """``numpyro.infer.MCMC``, which checks an MFLD run at the end of :meth:`run`.

    A drop-in replacement (same arguments, same methods): with any other kernel it is NumPyro's
    ``MCMC``. After a run of :class:`mflangevin.numpyro.MFLD` whose post-warmup particle moves
    were mostly refused (their proposals non-finite or beyond ``divergence_threshold``), so that
    the particles stood still and the draws are not draws of the target, it warns, naming the
    fix.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from mflangevin.numpyro import MCMC, MFLD
    >>> def model(y):
    ...     loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
    ...     numpyro.sample("y", dist.Normal(loc, 1.0), obs=y)
    >>> mcmc = MCMC(MFLD(model, num_particles=32), num_warmup=100, num_samples=10,
    ...             progress_bar=False)
    >>> mcmc.run(jax.random.key(0), 1.0)
    >>> mcmc.get_samples()["loc"].shape
    (10, 32)
    """

    def run(self, rng_key, *args, extra_fields=(), init_params=None, **kwargs):
        """NumPyro's ``MCMC.run``, then the check of the refused moves (see the class).

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from mflangevin.numpyro import MCMC, MFLD
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(0.0, 1.0))
        >>> mcmc = MCMC(MFLD(model, 8), num_warmup=10, num_samples=5, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> int(mcmc.get_extra_fields()["num_refused"].sum())
        0
        """
        super().run(rng_key, *args, extra_fields=extra_fields, init_params=init_params, **kwargs)
        self._check_refused_moves()

    def _check_refused_moves(self) -> None:
        num_particles = getattr(self.sampler, "num_particles", None)
        refused = self.get_extra_fields().get("num_refused")
        if num_particles is None or refused is None or np.size(refused) == 0:
            return
        fraction = float(np.mean(np.asarray(refused))) / num_particles
        if fraction > REFUSED_FRACTION:
            warnings.warn(
                f"MFLD: {fraction:.0%} of the particle moves after warmup were refused (their "
                "proposals were non-finite or beyond divergence_threshold), so the particles "
                "barely moved and the draws are not draws of the target. Lower step_size, or "
                "leave it to the warmup (step_size=None, with enough num_warmup), or start "
                "nearer the posterior (init_strategy=init_to_median or init_params).",
                stacklevel=3,
            )
