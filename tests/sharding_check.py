"""Sharded MFLD against the single-device run with the same key, in this process or in several.

:func:`compare` runs MFLD (full drift) on the tanh network with the particles, the data or both
split over all devices, on Auto and on Explicit mesh axes, and gives per run the relative error
against the single-device run, the particles' sharding after the run and the largest
collectives of the compiled program (:func:`collective_sizes`). Each run is compiled once: the
same executable gives the particles and the program text.

``tests/test_sharding.py`` calls :func:`compare` on the suite's devices, and starts this file as
a script in processes of their own (:func:`start`)::

    python tests/sharding_check.py --devices 8 --layouts both            # one process, 8 devices
    python tests/sharding_check.py --devices 4 --coordinator 127.0.0.1:PORT \\
        --num-processes 2 --process-id I                                  # one of 2 processes

With ``--coordinator``, every process initialises ``jax.distributed`` through the example
``examples/distributed_mfld.py`` (gloo collectives), runs the example's worker (each process
holds half the particles) and then :func:`compare` over the devices of all processes. Process 0
prints one JSON line per run, with the example's objective.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIVE = re.compile(
    r"=\s*(?P<shape>\([^=]*\)|\S+)\s+(?P<op>all-gather|all-to-all|all-reduce|reduce-scatter|"
    r"collective-permute)(?:-start)?\("
)
ARRAY = re.compile(r"\w+\[([\d,]*)\]")
NUM_PARTICLES, NUM_SAMPLES, INPUT_DIM = 64, 256, 5
# The checks read the partitioned program (the same text at every backend optimisation level)
# and compare values to 1e-5: LLVM's optimisation of the generated loops would only add a
# third to every compilation here.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def collective_sizes(hlo: str) -> list[tuple[str, int]]:
    """``(op, elements)`` of every collective of a compiled HLO module: the size of its
    largest result array."""
    found = []
    for match in COLLECTIVE.finditer(hlo):
        sizes = [
            math.prod(int(d) for d in dims.split(",") if d)
            for dims in ARRAY.findall(match["shape"])
        ]
        found.append((match["op"], max(sizes, default=1)))
    return found


def problem():
    """The tanh network, its particles and teacher data ``(X, y)`` (``N = 64``, ``n = 256``)."""
    import jax
    import jax.numpy as jnp

    from mflangevin.models import MeanFieldNetwork

    net = MeanFieldNetwork("tanh")
    X = jax.random.normal(jax.random.key(0), (NUM_SAMPLES, INPUT_DIM))
    particles = net.init_particles(jax.random.key(1), NUM_PARTICLES, INPUT_DIM)
    return net, particles, X, jnp.tanh(X[:, 0])


def compile_once(fn, *args):
    """``fn`` compiled for ``args`` (with :data:`COMPILER_OPTIONS`): call it, read its text."""
    import jax

    return jax.jit(fn).lower(*args).compile(COMPILER_OPTIONS)


def run_steps(algorithm, position, steps: int, key=None):
    """``steps`` steps of ``algorithm`` from ``position`` in one compiled ``lax.scan`` (the
    keys split from ``key``, default ``jax.random.key(2)``): the final position and the compiled
    program's text."""
    import jax

    def run(state, key):
        keys = jax.random.split(key, steps)
        return jax.lax.scan(lambda s, k: (algorithm.step(k, s)[0], None), state, keys)[0]

    key = jax.random.key(2) if key is None else key
    state = algorithm.init(position)
    compiled = compile_once(run, state, key)
    return compiled(state, key).position, compiled.as_text()


def gathered(tree):
    """The leaves of ``tree`` as one flat host vector, gathered from every process."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    leaves = [
        x if x.is_fully_addressable else multihost_utils.process_allgather(x, tiled=True)
        for x in jax.tree.leaves(tree)
    ]
    return np.concatenate([np.ravel(np.asarray(x)) for x in leaves])


def compare(steps: int, layouts: tuple[str, ...], reference=None):
    """One record per (mesh axis type, layout) on all the devices (of every process).

    ``reference``: the single-device particles after ``steps`` steps, if already computed."""
    import jax
    import numpy as np

    import mflangevin
    from mflangevin import sharding

    net, particles, X, y = problem()

    def run(particles, X, y):
        algorithm = mflangevin.mfld(net.objective(X, y, l2=1e-3), 0.1, 1e-3)
        return run_steps(algorithm, particles, steps)

    if jax.process_index() == 0:  # the other processes only take part in the sharded runs
        expected = gathered(run(particles, X, y)[0] if reference is None else reference)
    devices = jax.device_count()
    shapes = {"particles": (devices, 1), "data": (1, devices), "both": (devices // 2, 2)}
    for explicit in (False, True):
        for layout in layouts:
            mesh = sharding.make_mesh(*shapes[layout], explicit=explicit)
            got, hlo = run(
                sharding.shard_particles(particles, mesh), *sharding.shard_data((X, y), mesh)
            )
            sizes = collective_sizes(hlo)
            flat = gathered(got)  # every process takes part in the gather
            if jax.process_index() != 0:
                continue
            yield {
                "explicit": explicit,
                "layout": layout,
                "relative_error": float(np.linalg.norm(flat - expected) / np.linalg.norm(expected)),
                "spec": tuple(got["w"].sharding.spec),
                "mesh": dict(mesh.shape),
                "num_devices": len(got["w"].sharding.device_set),
                "num_processes": jax.process_count(),
                "largest_gather": max(
                    (s for op, s in sizes if op in ("all-gather", "all-to-all")), default=0
                ),
                "largest_collective": max((s for _, s in sizes), default=0),
                "num_particles_times_samples": NUM_PARTICLES * NUM_SAMPLES,
                "position": got,
            }


def load_example():
    """``examples/distributed_mfld.py`` as a module (its ``worker`` and ``parse_args``)."""
    path = ROOT / "examples" / "distributed_mfld.py"
    spec = importlib.util.spec_from_file_location("distributed_mfld", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE_ARGS = ("--num-particles=64", "--num-samples=200", "--steps=10")
"""The example's sizes in the tests (small: the example's result does not depend on them)."""


def start(port: int, num_processes: int, devices: int, steps: int, folder: Path):
    """Start this file in ``num_processes`` processes of ``devices`` fake CPU devices each,
    joined by ``jax.distributed`` on ``127.0.0.1:port``, and the example's run in one process
    of one device (the last process); their output goes to ``folder`` (``stdout0``, …)."""
    workers = []
    for index in range(num_processes):
        command = [
            sys.executable,
            __file__,
            f"--devices={devices}",
            f"--steps={steps}",
            f"--coordinator=127.0.0.1:{port}",
            f"--num-processes={num_processes}",
            f"--process-id={index}",
            f"--out={folder / 'objectives.jsonl'}",
        ]
        workers.append(_popen(command, folder, index))
    one_process = [
        sys.executable,
        str(ROOT / "examples" / "distributed_mfld.py"),
        *EXAMPLE_ARGS,
        "--processes=1",
        f"--out={folder / 'one_process.jsonl'}",
    ]
    environment = {**os.environ, "XLA_FLAGS": xla_flags(1)}
    workers.append(_popen(one_process, folder, num_processes, environment))
    return workers


def xla_flags(devices: int) -> str:
    """The XLA flags of this process (the suite's backend optimisation level among them) with
    ``devices`` fake CPU devices."""
    given = os.environ.get("XLA_FLAGS", "").split()
    kept = [flag for flag in given if not flag.startswith("--xla_force_host_platform_device_count")]
    return " ".join([*kept, f"--xla_force_host_platform_device_count={devices}"])


def _popen(command, folder: Path, index: int, environment=None):
    with open(folder / f"stdout{index}", "w") as out, open(folder / f"stderr{index}", "w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=environment)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="fake CPU devices per process")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layouts", nargs="+", default=["both"])
    parser.add_argument("--coordinator", help="HOST:PORT of process 0")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--out", default=os.devnull, help="where the example adds its objective")
    args = parser.parse_args(argv)
    os.environ["XLA_FLAGS"] = xla_flags(args.devices)
    objective = None
    if args.coordinator is not None:
        example = load_example()
        objective = example.worker(
            example.parse_args(
                [
                    *EXAMPLE_ARGS,
                    f"--coordinator={args.coordinator}",
                    f"--num-processes={args.num_processes}",
                    f"--process-id={args.process_id}",
                    f"--out={args.out}",
                ]
            )
        )
    for record in compare(args.steps, tuple(args.layouts)):  # records on process 0 only
        del record["position"]
        print(json.dumps({**record, "objective": objective}), flush=True)


if __name__ == "__main__":
    main()
