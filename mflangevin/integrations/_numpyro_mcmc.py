"""``numpyro.infer.MCMC`` aware of the particle axis of :class:`mflangevin.numpyro.MFLD` (a
helper of :mod:`mflangevin.numpyro`)."""

from __future__ import annotations

import warnings
import weakref

import jax
import numpy as np
from numpyro.diagnostics import print_summary
from numpyro.infer import MCMC as NumPyroMCMC

from mflangevin._checks import to_device

#: Above this fraction of refused particle moves after warmup, ``run`` warns.
REFUSED_FRACTION = 0.5
#: Below this mean Metropolis acceptance probability of the particles' moves after warmup,
#: ``run`` warns: the optimal acceptance of MALA (Roberts and Rosenthal 1998), a step at which
#: the Metropolis correction would be doing much of the work the unadjusted kernel leaves undone.
ACCEPT_FLOOR = 0.57
#: Above this fraction of improbable moves (``num_improbable``) after warmup, ``run`` warns.
IMPROBABLE_FRACTION = 1e-3
#: With the Metropolis correction, above this mean fraction of particles unmoved for 100 steps
#: or more (``num_stuck``) after warmup, ``run`` warns. Measured (``benchmarks/numpyro_models.py``,
#: seeds 2-5): 1.8-5 % on the centred eight schools, at most 0.5 % on the non-centred form, 0 on
#: the other Bayesian models of the benchmark.
STUCK_FRACTION = 0.01
#: With the Metropolis correction, below this mean acceptance probability after warmup ``run``
#: warns: the particles mostly stood still (the warmup tunes it to 0.6 by default).
REJECTED_FLOOR = 0.1


class MCMC(NumPyroMCMC):
    """``numpyro.infer.MCMC`` that puts the particles of :class:`mflangevin.numpyro.MFLD` where
    NumPyro expects draws, and checks the run.

    A drop-in replacement (same arguments, same methods); with any other kernel it is NumPyro's
    ``MCMC``. With MFLD on a Bayesian model (no particle plate), whose particles are independent
    chains:

    * :meth:`get_samples` pools the particles into the draws, as NUTS's samples come:
      ``(chains · N · draws, …)``, or ``(chains · N, draws, …)`` with ``group_by_chain=True``
      (every (chain, particle) pair a chain), so ``Predictive(model, mcmc.get_samples())`` works
      as with NUTS;
    * :meth:`print_summary` prints one row per site coordinate, with ESS and R-hat over those
      chains.

    A mean-field model's draws are whole particle systems and are left as they are. After a run
    whose post-warmup particle moves were mostly refused (their proposals non-finite or beyond
    ``divergence_threshold``, or rejected by the Metropolis test), so that the particles stood
    still, whose unadjusted step was too large where the posterior is narrow, or, with the
    Metropolis correction, more than a few of whose particles stood still for 100 steps or more
    (a funnel's neck), :meth:`run` warns, naming the fix.

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
    >>> mcmc.get_samples()["loc"].shape  # 32 particles × 10 draws
    (320,)
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
        args, kwargs = self._on_device((args, kwargs))
        super().run(rng_key, *args, extra_fields=extra_fields, init_params=init_params, **kwargs)
        if not self._check_refused_moves():
            self._check_discretisation()

    def _on_device(self, tree):
        """The model's arguments with their NumPy arrays on the device, each moved there once
        for all the runs of this MCMC (``warmup`` then ``run`` included). NumPyro compiles its
        sampler closed over the arguments: a NumPy array there is copied to the device at every
        call and kept by the compiled program (measured, for MFLD: two copies of the data
        after a warmup and a run; ``benchmarks/memory.py``)."""
        if getattr(self.sampler, "num_particles", None) is None:
            return tree
        cache = self.__dict__.setdefault("_device_copies", {})
        for key in [key for key, (ref, _) in cache.items() if ref() is None]:
            del cache[key]

        def one(x):
            if not isinstance(x, np.ndarray):
                return x
            ref, copy = cache.get(id(x), (None, None))
            if ref is None or ref() is not x:
                copy = to_device(x)
                cache[id(x)] = (weakref.ref(x), copy)
            return copy

        return jax.tree.map(one, tree)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_device_copies", None)
        return state

    def _check_refused_moves(self) -> bool:
        """Warn when most moves after warmup were refused; whether it warned."""
        num_particles = getattr(self.sampler, "num_particles", None)
        refused = self.get_extra_fields().get("num_refused")
        if num_particles is None or refused is None or np.size(refused) == 0:
            return False
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
            return True
        return False

    def _check_discretisation(self) -> None:
        """Warn when the step is too large for the posterior's curvature somewhere: a low mean
        acceptance probability, or more than a few moves that a Metropolis test would reject
        (the unadjusted dynamics then under-samples the regions where the posterior is
        narrow, as a funnel's neck); with the Metropolis correction, when it rejected nearly
        every move."""
        num_particles = getattr(self.sampler, "num_particles", None)
        extra = self.get_extra_fields()
        accept, improbable = extra.get("accept_prob"), extra.get("num_improbable")
        if num_particles is None or accept is None or improbable is None:
            return
        accept = np.asarray(accept, np.float64)
        if accept.size == 0 or not np.all(np.isfinite(accept)):
            return  # no move measured
        mean_accept = float(np.mean(accept))
        if getattr(self.sampler, "is_adjusted", False):
            # The Metropolis test removes the step's bias: only a step so large that the
            # particles stand still is left to report.
            stuck = extra.get("num_stuck")
            stuck = 0.0 if stuck is None else float(np.mean(np.asarray(stuck))) / num_particles
            if mean_accept < REJECTED_FLOOR:
                warnings.warn(
                    f"MFLD: the Metropolis test accepted {mean_accept:.1%} of the particle moves "
                    "after warmup, so the particles barely moved and the draws are few and "
                    "correlated. Lower step_size, or leave it to the warmup (step_size=None, "
                    "with enough num_warmup).",
                    stacklevel=3,
                )
            elif stuck > STUCK_FRACTION:
                warnings.warn(
                    f"MFLD: after warmup {stuck:.1%} of the particles had not moved for 100 "
                    "steps or more: the Metropolis test rejects nearly every move of theirs, "
                    "where the posterior is far narrower than the step (a funnel's neck), so "
                    "those regions are explored slowly and may be under-sampled. Remove the "
                    "funnel by a non-centred parametrisation "
                    "(numpyro.infer.reparam.LocScaleReparam(centered=0)), or warm up longer.",
                    stacklevel=3,
                )
            return
        fraction = float(np.mean(np.asarray(improbable))) / num_particles
        if mean_accept >= ACCEPT_FLOOR and fraction <= IMPROBABLE_FRACTION:
            return
        warnings.warn(
            f"MFLD: the step is too large where the posterior is narrow: after warmup the "
            f"particles' moves had a mean Metropolis acceptance probability of {mean_accept:.2f} "
            f"and {fraction:.2%} of them one below 1 %, so the unadjusted dynamics under-samples "
            "those regions (a funnel's neck) and the draws are biased. Lower step_size (or leave "
            "it to the warmup with a higher target_accept_prob), warm up longer, or remove the "
            "funnel by a non-centred parametrisation "
            "(numpyro.infer.reparam.LocScaleReparam(centered=0)).",
            stacklevel=3,
        )

    def _pools(self) -> bool:
        """Whether the run is MFLD on a Bayesian model (independent particles)."""
        return getattr(self.sampler, "is_mean_field", None) is False

    def get_samples(self, group_by_chain: bool = False):
        """The samples; for MFLD on a Bayesian model with the particles pooled into the draws
        (see the class).

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from mflangevin.numpyro import MCMC, MFLD
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        >>> mcmc = MCMC(MFLD(model, 8), num_warmup=10, num_samples=5, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> mcmc.get_samples()["x"].shape, mcmc.get_samples(group_by_chain=True)["x"].shape
        ((40, 3), (8, 5, 3))
        """
        samples = super().get_samples(group_by_chain=True)
        if not self._pools():
            return super().get_samples(group_by_chain)
        chains = jax.tree.map(particles_as_chains, samples)
        if group_by_chain:
            return chains
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), chains)

    def print_summary(self, prob: float = 0.9, exclude_deterministic: bool = True) -> None:
        """NumPyro's summary; for MFLD on a Bayesian model over the pooled draws, one row per
        site coordinate, ESS and R-hat over the (chain, particle) chains, then the number of
        draws with a refused particle move and the count of refused moves.

        Examples
        --------
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from mflangevin.numpyro import MCMC, MFLD
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(0.0, 1.0))
        >>> mcmc = MCMC(MFLD(model, 8), num_warmup=10, num_samples=5, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> mcmc.print_summary()  # doctest: +ELLIPSIS
        <BLANKLINE>
                        mean       std    median      5.0%     95.0%     n_eff     r_hat
                 x ...
        <BLANKLINE>
        Number of divergences: 0
        Number of refused particle moves: 0
        """
        if not self._pools():
            return super().print_summary(prob, exclude_deterministic)
        samples = self.get_samples(group_by_chain=True)
        if exclude_deterministic:
            latent = self.last_state.z
            samples = {name: value for name, value in samples.items() if name in latent}
        print_summary(samples, prob=prob)
        extra = self.get_extra_fields()
        print(f"Number of divergences: {int(np.sum(extra['diverging']))}")
        print(f"Number of refused particle moves: {int(np.sum(extra['num_refused']))}")


def particles_as_chains(x) -> np.ndarray:
    """``(chain, draw, N, …) → (chain·N, draw, …)``: every (chain, particle) pair a chain.

    Examples
    --------
    >>> import numpy as np
    >>> particles_as_chains(np.zeros((2, 5, 8, 3))).shape
    (16, 5, 3)
    """
    x = np.moveaxis(np.asarray(x), 2, 1)
    return x.reshape((-1,) + x.shape[2:])
