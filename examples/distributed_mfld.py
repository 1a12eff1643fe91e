"""MFLD over several processes with ``jax.distributed`` (docs/guides/scaling-out.md).

The same program runs in every process. Each process initialises ``jax.distributed`` (on CPU the
collectives go through gloo), builds the ``(particles, data)`` mesh over the devices of all
processes and hands over only its own share: half the particles (``--layout particles``) or half
the data (``--layout data``). The step is the single-device code; JAX compiles one SPMD program
and its all-reduces cross the processes.

``.venv/bin/python examples/distributed_mfld.py`` starts 2 processes on this machine and the same
run in 1 process, and prints the final objective of both. On a cluster, start one process per
host with ``--coordinator HOST:PORT --num-processes P --process-id I`` instead (GPU collectives
then use NCCL; gloo is only for CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def parse_args(argv=None):
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--layout",
        choices=("particles", "data"),
        default="particles",
        help="which of the two arrays is split over the processes' devices",
    )
    parser.add_argument("--num-particles", type=int, default=512, help="N")
    parser.add_argument("--num-samples", type=int, default=2000, help="n")
    parser.add_argument("--steps", type=int, default=100, help="MFLD steps")
    parser.add_argument("--processes", type=int, default=2, help="processes to start here")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0 (run as one worker)")
    parser.add_argument("--num-processes", type=int, help="processes in all (with --coordinator)")
    parser.add_argument("--process-id", type=int, help="this process (with --coordinator)")
    parser.add_argument(
        "--out",
        default="figures/distributed_mfld.jsonl",
        help="where to add each run's objective, relative to the current directory",
    )
    return parser.parse_args(argv)


def worker(args) -> float:
    """One process of the run: its share of the particles or the data, the global result."""
    import jax

    if args.coordinator is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    import blackjax

    import mflangevin
    from mflangevin import sharding
    from mflangevin.datasets import teacher_student
    from mflangevin.models import MeanFieldNetwork

    net = MeanFieldNetwork("tanh")
    # Every process builds the same problem from the same keys, then keeps only its share.
    X, y, _ = teacher_student(jax.random.key(0), args.num_samples, input_dim=10)
    particles = net.init_particles(jax.random.key(1), args.num_particles, input_dim=10)
    processes, index = jax.process_count(), jax.process_index()
    if args.layout == "particles":
        mesh = sharding.make_mesh(particle_shards=jax.device_count(), data_shards=1)
        share = args.num_particles // processes
        particles = jax.tree.map(lambda x: x[index * share : (index + 1) * share], particles)
    else:
        mesh = sharding.make_mesh(particle_shards=1, data_shards=jax.device_count())
        share = args.num_samples // processes
        X, y = X[index * share : (index + 1) * share], y[index * share : (index + 1) * share]
    particles = sharding.shard_particles(particles, mesh, process_local=True)
    X, y = sharding.shard_data((X, y), mesh, process_local=True)

    objective = net.objective(X, y, l2=1e-3)
    algorithm = mflangevin.mfld(objective, step_size=0.2, temperature=1e-3)
    state, _ = blackjax.util.run_inference_algorithm(
        jax.random.key(2), algorithm, args.steps, initial_state=algorithm.init(particles)
    )
    energy = float(jax.jit(lambda o, p: o.energy(p))(objective, state.position))
    if index == 0:
        print(f"processes={processes} layout={args.layout} objective={energy:.8e}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {"processes": processes, "layout": args.layout, "objective": energy}
        with open(args.out, "a") as file:
            file.write(json.dumps(record) + "\n")
    return energy


def launch(args) -> None:
    """Start ``args.processes`` workers on this machine, then the same run in this process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    common = [
        f"--layout={args.layout}",
        f"--num-particles={args.num_particles}",
        f"--num-samples={args.num_samples}",
        f"--steps={args.steps}",
        f"--out={args.out}",
    ]
    # One CPU device per worker: with 2 workers, the mesh has 2 devices in 2 processes.
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                *common,
                f"--coordinator=127.0.0.1:{port}",
                f"--num-processes={args.processes}",
                f"--process-id={i}",
            ],
            env=environment,
        )
        for i in range(args.processes)
    ]
    codes = [w.wait(timeout=600) for w in workers]
    if any(codes):
        sys.exit(f"a worker failed (exit codes {codes})")
    worker(parse_args([*common, "--processes=1"]))


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.coordinator is not None or arguments.processes == 1:
        worker(arguments)
    else:
        launch(arguments)
