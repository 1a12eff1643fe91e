"""mflangevin: optimisation over probability distributions with interacting particles.

Mean-field Langevin dynamics and particle dual averaging as BlackJAX-style kernels,
mean-field and NTK-regime networks, residual networks by functional gradient boosting,
NumPyro inference and ArviZ diagnostics with convergence certificates.
"""

import sys as _sys

from blackjax import GenerateSamplingAPI as _GenerateSamplingAPI

from mflangevin import certificates as certificates
from mflangevin import diagnostics as diagnostics
from mflangevin import sharding as sharding
from mflangevin.certificates import dual_objective as dual_objective
from mflangevin.certificates import duality_gap as duality_gap
from mflangevin.certificates import monitor as monitor
from mflangevin.certificates import primal_objective as primal_objective
from mflangevin.certificates import proximal_gibbs_log_density as proximal_gibbs_log_density
from mflangevin.certificates.entropy import entropy as entropy
from mflangevin.compilation import enable_compilation_cache as enable_compilation_cache
from mflangevin.kernels import acc_prox_svrg as _acc_prox_svrg
from mflangevin.kernels import asgd as _asgd
from mflangevin.kernels import data as data
from mflangevin.kernels import gradients as gradients
from mflangevin.kernels import mfld as _mfld
from mflangevin.kernels import pda as _pda
from mflangevin.kernels import streaming as _streaming
from mflangevin.objectives import EnergyObjective as EnergyObjective
from mflangevin.objectives import MeanFieldObjective as MeanFieldObjective
from mflangevin.objectives import Objective as Objective
from mflangevin.objectives import StructuredObjective as StructuredObjective
from mflangevin.objectives import as_objective as as_objective
from mflangevin.objectives import num_particles as num_particles
from mflangevin.references import density_reference as density_reference
from mflangevin.references import gaussian_reference as gaussian_reference

# `import mflangevin.gradients` and `import mflangevin.data` work as for a module of their own.
_sys.modules[f"{__name__}.gradients"] = gradients
_sys.modules[f"{__name__}.data"] = data

mfld = _GenerateSamplingAPI(_mfld.as_top_level_api, _mfld.init, _mfld.build_kernel)
asgd = _GenerateSamplingAPI(_asgd.as_top_level_api, _asgd.init, _asgd.build_kernel)
pda = _GenerateSamplingAPI(_pda.as_top_level_api, _pda.init, _pda.build_kernel)
streaming_mfld = _GenerateSamplingAPI(
    _streaming.as_top_level_api, _streaming.init, _streaming.build_kernel
)
acc_prox_svrg = _GenerateSamplingAPI(
    _acc_prox_svrg.as_top_level_api, _acc_prox_svrg.init, _acc_prox_svrg.build_kernel
)

__version__ = "0.1.0"

__all__ = [
    "mfld",
    "pda",
    "asgd",
    "streaming_mfld",
    "acc_prox_svrg",
    "gradients",
    "data",
    "Objective",
    "StructuredObjective",
    "MeanFieldObjective",
    "EnergyObjective",
    "as_objective",
    "num_particles",
    "gaussian_reference",
    "density_reference",
    "certificates",
    "dual_objective",
    "duality_gap",
    "primal_objective",
    "proximal_gibbs_log_density",
    "entropy",
    "monitor",
    "diagnostics",
    "sharding",
    "enable_compilation_cache",
    "arviz",
    "numpyro",
    "__version__",
]


def __getattr__(name: str):
    # Integrations depend on the core, never the reverse: `mflangevin.arviz` and
    # `mflangevin.numpyro` are imported on first access only, so `import mflangevin` does not
    # load ArviZ or NumPyro.
    if name in ("arviz", "numpyro"):
        import importlib

        return importlib.import_module(f"mflangevin.{name}")
    raise AttributeError(f"module 'mflangevin' has no attribute {name!r}")
