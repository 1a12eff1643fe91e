"""Convergence certificates of mean-field optimisation (docs/theory/certificates.md).

* :mod:`~mflangevin.certificates.duality` — proximal Gibbs density, dual bound, primal objective
  and duality gap;
* :mod:`~mflangevin.certificates.entropy` — the blockwise k-nearest-neighbour entropy estimate;
* :mod:`~mflangevin.certificates.monitoring` — the dual bound recorded every ``k`` steps around
  any kernel.

Certificates depend on the core (objectives, references) only: never on kernels or models.
"""

from mflangevin.certificates import duality as duality
from mflangevin.certificates import entropy as entropy
from mflangevin.certificates import monitoring as monitoring
from mflangevin.certificates.duality import Certificate as Certificate
from mflangevin.certificates.duality import dual_objective as dual_objective
from mflangevin.certificates.duality import duality_gap as duality_gap
from mflangevin.certificates.duality import primal_objective as primal_objective
from mflangevin.certificates.duality import (
    proximal_gibbs_log_density as proximal_gibbs_log_density,
)
from mflangevin.certificates.monitoring import monitor as monitor

__all__ = [
    "Certificate",
    "dual_objective",
    "duality_gap",
    "primal_objective",
    "proximal_gibbs_log_density",
    "monitor",
    "duality",
    "entropy",
    "monitoring",
]
