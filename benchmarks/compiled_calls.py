"""Calls outside ``jax.jit``: compiled methods against the same computation run op by op.

A user who prints the energy every hundred steps, or predicts on a new batch, calls the model
outside ``jax.jit``. There, ``MeanFieldObjective``'s methods and ``MeanFieldNetwork.predict`` each
run as one compiled program per shapes. This prints, for a ``tanh`` network:

* the first call at new shapes (compilation included), averaged over several particle counts;
* a later call at the same shapes;

for ``objective.energy_and_drift(particles)`` and ``net.predict(particles, X)``, both as they run
(``mflangevin``) and under ``jax.disable_jit()``, which runs every operation on its own as the
methods did before they were compiled (``op by op``), with the ratio ``op by op / mflangevin``
(above 1: the compiled call is faster). Run ``.venv/bin/python benchmarks/compiled_calls.py``
(``--samples``, ``--input-dim`` to choose sizes).
"""

from __future__ import annotations

import argparse


def parse_args(argv=None):
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=500, help="n, the training samples")
    parser.add_argument("--input-dim", type=int, default=10, help="d, the input dimension")
    parser.add_argument(
        "--repeats", type=int, default=50, help="later calls timed per function and mode"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()

import contextlib
import time

import jax
import jax.numpy as jnp

from mflangevin.datasets import teacher_student
from mflangevin.models import MeanFieldNetwork


def seconds(call, shapes, mode, repeats):
    """Mean seconds of ``call(particles)`` over particles of new shapes (the first call at each
    compiles), then of ``repeats`` more calls with the first particles."""
    with mode():
        start = time.perf_counter()
        for particles in shapes:
            jax.block_until_ready(call(particles))
        first = (time.perf_counter() - start) / len(shapes)
        start = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(call(shapes[0]))
        later = (time.perf_counter() - start) / repeats
    return first, later


def main(argv=None):
    args = parse_args(argv)

    X, y, _ = teacher_student(jax.random.key(0), args.samples, args.input_dim)
    net = MeanFieldNetwork("tanh")
    objective = net.objective(X, y, l2=1e-3)
    calls = {
        "objective.energy_and_drift": lambda p: objective.energy_and_drift(p),
        "net.predict": lambda p: net.predict(p, X),
    }
    modes = {"mflangevin": contextlib.nullcontext, "op by op": jax.disable_jit}
    # Particle counts never used before in this process for each (call, mode): new shapes.
    counts = iter(range(8, 8 + 16 * len(calls) * len(modes), 8))
    print(f"tanh network, n = {args.samples}, d = {args.input_dim}; seconds per call")
    print(f"{'':28s}{'':12s}{'first call':>12s}{'later call':>12s}")
    for name, call in calls.items():
        rows = {}
        for mode_name, mode in modes.items():
            shapes = [
                net.init_particles(jax.random.key(0), num, args.input_dim)
                for num in range(next(counts), next(counts))
            ]
            rows[mode_name] = seconds(call, shapes, mode, args.repeats)
            print(f"{name:28s}{mode_name:12s}{rows[mode_name][0]:12.4f}{rows[mode_name][1]:12.6f}")
        (first, later), (first_op, later_op) = rows["mflangevin"], rows["op by op"]
        print(f"{name:28s}{'ratio':12s}{first_op / first:12.1f}{later_op / later:12.1f}")


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()
