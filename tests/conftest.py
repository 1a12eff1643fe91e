"""Strict JAX settings for the whole suite, as in equinox's tests, and per-file progress."""

import collections
import os
import time

import pytest

# Before JAX initialises its backend: several fake CPU devices, so that sharding and parallel
# chains are exercised on a laptop; and LLVM at optimisation level 0, because the suite's programs
# are small and their compilation, not their run time, is what the suite waits for (the results
# are the same up to float round-off; it roughly halves the suite's time on 2 cores).
_FLAGS = ("--xla_force_host_platform_device_count=4", "--xla_backend_optimization_level=0")
_given = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_given, *(flag for flag in _FLAGS if flag.split("=")[0] not in _given)]
).strip()

# JAX's persistent compilation cache would make a second run about twice as fast, but with
# JAX 0.12 a 4-device CPU program read back from it aborts the process now and then
# (tests/test_sharding.py::test_blocked_mean_embedding_over_data_split_on_explicit_axes, most
# runs with a warm cache, none without): it is left off.
import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def compilations():
    """The names of the programs XLA compiles while the test runs, in order (the test reads the
    list as it grows)."""
    names = []

    def listener(event, duration, fun_name="?", **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield names
    jax.monitoring.unregister_event_duration_listener(listener)


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


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_FileProgress(config), "file-progress")
