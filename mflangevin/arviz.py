"""``mflangevin.arviz``: the public path of :mod:`mflangevin.integrations.arviz`."""

from mflangevin.integrations.arviz import *  # noqa: F403
from mflangevin.integrations.arviz import __all__ as __all__
