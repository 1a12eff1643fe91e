"""Strict JAX settings for the whole suite, as in equinox's tests, and per-file progress."""

import collections
import os
import time

# Before JAX initialises its backend: several fake CPU devices, so that sharding and parallel
# chains are exercised on a laptop; and LLVM at optimisation level 0, because the suite's programs
# are small and their compilation, not their run time, is what the suite waits for (the results
# are the same up to float round-off; it roughly halves the suite's time on 2 cores).
_FLAGS = ("--xla_force_host_platform_device_count=4", "--xla_backend_optimization_level=0")
_given = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_given, *(flag for flag in _FLAGS if flag.split("=")[0] not in _given)]
).strip()

# Compiled programs are kept between runs (JAX's persistent compilation cache, keyed by the
# program, the XLA flags and the versions): compilation is most of the suite's time, and a second
# run recompiles only what changed. Set through the environment, so that the processes the tests
# start (examples, the CLI, the 2-process run) share it. ``JAX_COMPILATION_CACHE_DIR`` chooses
# another folder.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
for _name, _value in (
    ("JAX_COMPILATION_CACHE_DIR", _CACHE),
    ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
    ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0"),
):
    os.environ.setdefault(_name, _value)
_CACHE_LIMIT = 1 << 30  # bytes; past it, the oldest entries go (JAX's own size limit rescans the
# folder at every write, which costs more than it saves at this suite's thousands of programs)

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


class _FileProgress:
    """Under ``pytest -n``, a line per test file when its last test finishes, so that a run shows
    where it stands (xdist itself prints only dots)."""

    def __init__(self, config):
        self.config, self.totals, self.done = config, None, {}
        self.start = time.monotonic()

    def pytest_xdist_node_collection_finished(self, node, ids):
        if self.totals is None:
            self.totals = collections.Counter(nodeid.split("::")[0] for nodeid in ids)

    def pytest_runtest_logreport(self, report):
        if self.totals is None or report.when != "teardown":
            return
        path = report.nodeid.split("::")[0]
        self.done[path] = self.done.get(path, 0) + 1
        if self.done[path] == self.totals[path]:
            elapsed = time.monotonic() - self.start
            reporter = self.config.pluginmanager.getplugin("terminalreporter")
            reporter.ensure_newline()
            reporter.write_line(f"{path}: {self.totals[path]} done ({elapsed:.0f} s)")


def _trim_cache(folder: str, limit: int = _CACHE_LIMIT) -> None:
    """Remove the least recently written entries of the compilation cache beyond ``limit``."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.stat().st_mtime)
    except FileNotFoundError:
        return
    total = sum(entry.stat().st_size for entry in entries)
    for entry in entries:
        if total <= limit:
            break
        total -= entry.stat().st_size
        os.remove(entry.path)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        _trim_cache(os.environ["JAX_COMPILATION_CACHE_DIR"])
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_FileProgress(config), "file-progress")
