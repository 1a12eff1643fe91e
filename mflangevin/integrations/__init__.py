"""Integrations with NumPyro and ArviZ: they depend on the core, never the reverse.

Imported on first use only (``mflangevin.numpyro``, ``mflangevin.arviz``), so that
``import mflangevin`` loads neither NumPyro nor ArviZ.
"""
