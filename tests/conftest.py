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

# JAX's persistent compilation cache is left off: with JAX 0.12.1, process 0 of the 2 processes
# that tests/test_sharding.py joins by jax.distributed waits forever in a program read back from
# it (docs/guides/scaling.md, "Compile once per machine"); the single-process tests pass with it.
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


class _CompileProfile:
    """``--compile-profile``: per test file, the seconds its tests took and, of those, the
    seconds JAX spent compiling (XLA), lowering and tracing, with the number of programs it
    compiled (from ``jax.monitoring``); a table at the end, the costliest files first."""

    EVENTS = {
        "/jax/core/compile/backend_compile_duration": "compile",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/jaxpr_trace_duration": "trace",
    }

    def __init__(self, config):
        self.config, self.current = config, None
        self.files = collections.defaultdict(collections.Counter)
        jax.monitoring.register_event_duration_secs_listener(self.listener)

    def listener(self, event, duration, **kwargs):
        name = self.EVENTS.get(event)
        if name is not None and self.current is not None:
            self.files[self.current][name] += duration
            self.files[self.current]["programs"] += name == "compile"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.current, start = item.nodeid.split("::")[0], time.perf_counter()
        yield
        self.files[self.current]["seconds"] += time.perf_counter() - start
        self.current = None

    def pytest_sessionfinish(self, session):
        if hasattr(self.config, "workeroutput"):  # a pytest-xdist worker: to the controller
            self.config.workeroutput["compile_profile"] = {
                k: dict(v) for k, v in self.files.items()
            }

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        for path, counts in getattr(node, "workeroutput", {}).get("compile_profile", {}).items():
            self.files[path].update(counts)

    def pytest_terminal_summary(self, terminalreporter):
        columns = ("seconds", "compile", "lower", "trace", "programs")
        rows = sorted(self.files.items(), key=lambda row: -row[1]["seconds"])
        total = sum((counts for _, counts in rows), collections.Counter())
        terminalreporter.write_sep("=", "where the time went, per test file (--compile-profile)")
        terminalreporter.write_line("".join(f"{c:>9}" for c in columns) + "  file")
        for path, counts in [*rows, ("all files", total)]:
            cells = (
                f"{counts[c]:>9.0f}" if c == "programs" else f"{counts[c]:>9.1f}" for c in columns
            )
            terminalreporter.write_line("".join(cells) + f"  {path}")


def pytest_addoption(parser):
    parser.addoption(
        "--compile-profile",
        action="store_true",
        help="print, per test file, the seconds spent compiling, lowering and tracing JAX programs",
    )


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_FileProgress(config), "file-progress")
    if config.getoption("compile_profile"):
        config.pluginmanager.register(_CompileProfile(config), "compile-profile")
