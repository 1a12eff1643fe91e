"""``mflangevin.numpyro``: the public path of :mod:`mflangevin.integrations.numpyro`."""

from mflangevin.integrations.numpyro import *  # noqa: F403
from mflangevin.integrations.numpyro import __all__ as __all__
