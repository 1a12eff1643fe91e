"""Compile once per machine: JAX's persistent compilation cache, turned on where it is safe."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

# The settings enable_compilation_cache sets (and its context restores).
_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@dataclasses.dataclass(frozen=True)
class CompilationCache:
    """The cache :func:`enable_compilation_cache` turned on: its folder, and JAX's settings from
    before. Used in a ``with`` statement, it gives the folder and turns the cache off again on
    exit (JAX's previous settings back)."""

    path: Path
    previous: dict

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc_info) -> None:
        _apply(self.previous)


def enable_compilation_cache(
    path: str | os.PathLike | None = None, *, min_compile_time: float = 0.0
) -> CompilationCache:
    """Keep the programs JAX compiles in a folder on disk, so that a new process on this machine
    loads them instead of compiling them again (JAX's persistent compilation cache).

    On CPU the first MFLD step of ``benchmarks/latency.py`` then takes 0.7 s in a new process
    instead of 3.2 s (docs/guides/scaling.md, "Compile once per machine").

    Parameters
    ----------
    path
        The cache folder, created if missing. Default: ``mflangevin/jax`` in the user's cache
        folder (``$XDG_CACHE_HOME``, else ``~/.cache``).
    min_compile_time
        Only programs that took at least this many seconds to compile are written. By default
        every one: on CPU reading a program back costs a few milliseconds (3 ms for the L-BFGS
        gradient of a linear model, which takes 0.07 s to compile), so that even a program
        below JAX's default threshold, 1 s (which writes 1 of the 10 programs of an MFLD step),
        is loaded faster than it is compiled.

    Returns
    -------
    The cache (its ``path``); in a ``with`` statement it turns the cache off again on exit.

    Raises
    ------
    RuntimeError
        In a CPU process joined to others by ``jax.distributed``: with JAX 0.12.1 a program with
        a collective that process 0 reads back from the cache waits forever
        (docs/guides/scaling.md has the reproducer). The function starts JAX's backend, so that
        ``jax.distributed`` can no longer be initialised after it (JAX raises): call it after
        ``jax.distributed.initialize``, or not at all, in a program of several processes. One
        process with several devices is safe.

    Examples
    --------
    At the top of a script (a folder of its own here; by default the user's cache folder):

    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> def layer(x):
    ...     return jnp.tanh(x) @ x
    >>> x = jnp.ones((3, 3))
    >>> with enable_compilation_cache(tempfile.mkdtemp(), min_compile_time=0) as folder:
    ...     _ = jax.jit(layer)(x)
    ...     print([entry.name.split("-")[0] for entry in folder.iterdir()])
    ['jit_layer']

    Without ``with``, the cache stays on for the rest of the process.
    """
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "mflangevin" / "jax"
    elif not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a folder (str or os.PathLike), got {type(path).__name__}")
    if (
        isinstance(min_compile_time, bool)
        or not isinstance(min_compile_time, int | float)
        or not math.isfinite(min_compile_time)
        or min_compile_time < 0
    ):
        raise ValueError(
            f"min_compile_time: expected a number of seconds >= 0, got {min_compile_time!r}"
        )
    if jax.process_count() > 1 and jax.default_backend() == "cpu":
        raise RuntimeError(
            f"enable_compilation_cache: this process is one of {jax.process_count()} joined by "
            "jax.distributed on CPU, where with JAX 0.12.1 a program read back from the cache by "
            "process 0 can wait forever in its first collective; run without the cache"
        )
    path = Path(path).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    previous = {name: getattr(jax.config, name) for name in _SETTINGS}
    _apply(dict(zip(_SETTINGS, (str(path), float(min_compile_time)), strict=True)))
    return CompilationCache(path, previous)


def _apply(settings: dict) -> None:
    for name, value in settings.items():
        jax.config.update(name, value)
    # JAX opens its cache folder once, at the first compilation that looks for it: reset, the
    # next compilation opens the folder now set.
    _jax_cache.reset_cache()
