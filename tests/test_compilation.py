"""The persistent compilation cache: a second process loads what the first compiled, and a CPU
process of several joined by jax.distributed is refused."""

import json
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import mflangevin

# Enable the cache, try to join jax.distributed after it (JAX refuses: the backend is started),
# then one MFLD step; prints the programs compiled (and written: every one, min_compile_time=0)
# and the ones read back from the cache.
ONE_STEP = """
import sys
import jax
import mflangevin
from mflangevin.models import MeanFieldNetwork

mflangevin.enable_compilation_cache(sys.argv[1], min_compile_time=0)
try:
    jax.distributed.initialize("127.0.0.1:1", 1, 0)
except RuntimeError as error:
    print("distributed:", str(error).splitlines()[0])
counts = {"/jax/compilation_cache/cache_misses": 0, "/jax/compilation_cache/cache_hits": 0}
jax.monitoring.register_event_listener(
    lambda event, **_: event in counts and counts.update({event: counts[event] + 1})
)
net = MeanFieldNetwork("tanh")
X = jax.random.normal(jax.random.key(0), (40, 3))
algorithm = mflangevin.mfld(net.objective(X, X[:, 0], l2=1e-3), 0.1, 1e-3)
state = algorithm.init(net.init_particles(jax.random.key(1), 16, 3))
print(float(jax.jit(algorithm.step)(jax.random.key(2), state)[0].position["w"].sum()))
print(list(counts.values()))
"""

# One of 2 CPU processes joined by jax.distributed: what enable_compilation_cache raises.
DISTRIBUTED = """
import sys
import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
import mflangevin  # after: importing it starts the backend

try:
    mflangevin.enable_compilation_cache(sys.argv[3])
except RuntimeError as error:
    print("refused:", error)
print("cache:", jax.config.jax_compilation_cache_dir)
jax.distributed.shutdown()
"""


def _python(code, *args):
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _output(process, timeout=60):
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:  # pragma: no cover - a hung process
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-2000:]
    return out.splitlines()


def test_a_second_process_loads_the_step_instead_of_compiling_it(tmp_path):
    first = _output(_python(ONE_STEP, tmp_path))
    second = _output(_python(ONE_STEP, tmp_path))
    assert first[0].startswith("distributed: jax.distributed.initialize() must be called before")
    assert first[1] == second[1]  # the same particles
    compiled, loaded = json.loads(first[2])
    assert compiled > 0 and loaded == 0
    assert json.loads(second[2]) == [0, compiled]  # nothing compiled: every program loaded


def test_cpu_processes_joined_by_jax_distributed_are_refused(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        coordinator = f"127.0.0.1:{probe.getsockname()[1]}"
    processes = [_python(DISTRIBUTED, coordinator, index, tmp_path) for index in (0, 1)]
    for lines in map(_output, processes):
        assert lines[0].startswith(
            "refused: enable_compilation_cache: this process is one of 2 joined by "
            "jax.distributed on CPU"
        )
        assert lines[1] == "cache: None"
    assert not any(tmp_path.iterdir())


def test_the_context_restores_jax_settings(tmp_path):
    before = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    with mflangevin.enable_compilation_cache(tmp_path / "new", min_compile_time=0.5) as folder:
        assert folder == tmp_path / "new" and folder.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(folder)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5
    after = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    assert after == before


def test_every_program_is_written_by_default(tmp_path):
    """A program that compiles in milliseconds is read back rather than compiled again."""
    with mflangevin.enable_compilation_cache(tmp_path) as folder:
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        jax.jit(lambda x: x * 3.0 + 1.0)(np.ones(7)).block_until_ready()
        assert [entry.name.split("-")[0] for entry in folder.iterdir()] == ["jit__lambda"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"path": 3}, TypeError, "^path: expected a folder"),
        ({"min_compile_time": -1.0}, ValueError, "^min_compile_time: expected a number"),
        ({"min_compile_time": float("nan")}, ValueError, "^min_compile_time: expected"),
        ({"min_compile_time": "1"}, ValueError, "^min_compile_time: expected"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        mflangevin.enable_compilation_cache(**kwargs)
