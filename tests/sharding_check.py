"""Sharded MFLD against the single-device run with the same key.

:func:`compare` runs MFLD (full drift) on the tanh network with the particles, the data or both
split over all devices, on Auto and on Explicit mesh axes, and gives per run the relative error
against the single-device run, the particles' sharding after the run and the largest
collectives of the compiled step (:func:`collective_sizes`). ``tests/test_sharding.py`` calls it
on the suite's devices, and runs ``python tests/sharding_check.py DEVICES STEPS LAYOUT...`` in a
process of its own with more fake CPU devices (one JSON line per run).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys

COLLECTIVE = re.compile(
    r"=\s*(?P<shape>\([^=]*\)|\S+)\s+(?P<op>all-gather|all-to-all|all-reduce|reduce-scatter|"
    r"collective-permute)(?:-start)?\("
)
ARRAY = re.compile(r"\w+\[([\d,]*)\]")


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


def compare(steps: int, layouts: tuple[str, ...]):
    """One record per (mesh axis type, layout) on all the devices of this process."""
    import blackjax
    import jax
    import numpy as np

    import mflangevin
    from mflangevin import sharding
    from mflangevin.models import MeanFieldNetwork

    net = MeanFieldNetwork("tanh")
    num_particles, num_samples = 64, 256
    X = jax.random.normal(jax.random.key(0), (num_samples, 5))
    y = np.tanh(np.asarray(X[:, 0]))
    particles = net.init_particles(jax.random.key(1), num_particles, 5)

    def run(particles, X, y):
        algorithm = mflangevin.mfld(net.objective(X, y, l2=1e-3), 0.1, 1e-3)
        state = algorithm.init(particles)
        final, _ = blackjax.util.run_inference_algorithm(
            jax.random.key(2), algorithm, steps, initial_state=state
        )
        hlo = jax.jit(algorithm.step).lower(jax.random.key(0), state).compile().as_text()
        return final.position, hlo

    def flat(tree):
        return np.concatenate([np.ravel(v) for v in jax.tree.leaves(tree)])

    expected = flat(run(particles, X, y)[0])
    devices = jax.device_count()
    shapes = {"particles": (devices, 1), "data": (1, devices), "both": (devices // 2, 2)}
    for explicit in (False, True):
        for layout in layouts:
            mesh = sharding.make_mesh(*shapes[layout], explicit=explicit)
            got, hlo = run(
                sharding.shard_particles(particles, mesh), *sharding.shard_data((X, y), mesh)
            )
            sizes = collective_sizes(hlo)
            yield {
                "explicit": explicit,
                "layout": layout,
                "relative_error": float(
                    np.linalg.norm(flat(got) - expected) / np.linalg.norm(expected)
                ),
                "spec": tuple(got["w"].sharding.spec),
                "mesh": dict(mesh.shape),
                "num_devices": len(got["w"].sharding.device_set),
                "largest_gather": max(
                    (s for op, s in sizes if op in ("all-gather", "all-to-all")), default=0
                ),
                "largest_collective": max((s for _, s in sizes), default=0),
                "num_particles_times_samples": num_particles * num_samples,
            }


def main(devices: int, steps: int, *layouts: str) -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    for record in compare(steps, layouts):
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:])
