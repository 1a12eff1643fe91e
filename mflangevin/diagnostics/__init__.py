"""On-device diagnostics of particle measures (JAX in, JAX out; no ArviZ needed)."""

from mflangevin.diagnostics.chaos import SweepResult as SweepResult
from mflangevin.diagnostics.chaos import fit_power_law as fit_power_law
from mflangevin.diagnostics.chaos import particle_count_sweep as particle_count_sweep
from mflangevin.diagnostics.convergence import ess as ess
from mflangevin.diagnostics.convergence import invariant_diagnostics as invariant_diagnostics
from mflangevin.diagnostics.convergence import particle_moments as particle_moments
from mflangevin.diagnostics.convergence import rhat as rhat
from mflangevin.diagnostics.discrepancies import (
    kernel_stein_discrepancy as kernel_stein_discrepancy,
)
from mflangevin.diagnostics.discrepancies import mmd as mmd
from mflangevin.diagnostics.discrepancies import sliced_wasserstein as sliced_wasserstein

__all__ = [
    "SweepResult",
    "fit_power_law",
    "particle_count_sweep",
    "ess",
    "invariant_diagnostics",
    "particle_moments",
    "rhat",
    "kernel_stein_discrepancy",
    "mmd",
    "sliced_wasserstein",
]
