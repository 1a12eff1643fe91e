"""Names of the leaves of a particle pytree, valid as ArviZ / netCDF variable names."""

from __future__ import annotations

import re

import jax

from mflangevin.types import ArrayTree

_INVALID = re.compile(r"[^0-9A-Za-z_.]+")


def _key_name(key) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaf_names(tree: ArrayTree, default: str = "theta") -> list[str]:
    """One name per leaf of ``tree``: dict keys and field names joined by ``.``.

    A bare array is called ``default``; characters other than letters, digits, ``_`` and ``.``
    become ``_`` (ArviZ refuses ``/`` in variable names).
    """
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    names = []
    for path, _ in paths:
        name = ".".join(_key_name(key) for key in path) if path else default
        names.append(_INVALID.sub("_", name).strip("_") or default)
    if len(set(names)) != len(names):
        raise ValueError(f"position: the pytree leaves do not have distinct names: {names}.")
    return names
