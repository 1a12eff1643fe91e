"""Sharded MFLD and duality gap against the number of devices: step time, memory per device and
communication, for strong scaling (fixed sizes) and weak scaling (sizes ∝ devices).

Three workloads on the tanh ``MeanFieldNetwork`` (synthetic data), each on a
``mflangevin.sharding.make_mesh`` mesh of ``D`` devices:

* ``particles``: MFLD with the full drift, the ``N`` particles split ``D`` ways (data
  replicated); weak scaling grows ``N`` with ``D``;
* ``data``: the same step with the ``n`` samples split ``D`` ways (particles replicated); weak
  scaling grows ``n`` with ``D``;
* ``gap``: ``mflangevin.duality_gap`` (k-NN entropy and the dual's Monte-Carlo draws) on
  particles split ``D`` ways (Auto axes, the layout passed as ``sharding=``); weak scaling grows
  ``N`` with ``D``;
* ``share``: one device's share of that certificate in a ``D``-way split, timed alone on one
  device: the body each device runs inside ``shard_map`` (the neighbour search of its ``N/D``
  particles among all ``N``, and ``ψ'`` at its ``K/D`` draws). Its time is the per-device work,
  which fake devices sharing the cores cannot show.

Each device count ``D`` runs in a process of its own (its configurations one after the other,
each one's arrays freed before the next). On CPU that process gets ``D`` fake devices
(``--xla_force_host_platform_device_count=D``): they share the machine's cores, so time cannot
fall with ``D`` there; what a CPU run shows is the memory per device and the communication. On
GPUs (``--platform gpu``, or whenever JAX's default backend is not the CPU) each process uses the
first ``D`` visible devices, ``D`` = 1, 2, 4, … up to all of them, and the times are the speed.

Per configuration: the compiled program (a ``lax.scan`` of ``--steps`` MFLD steps, or one
certificate) is run once untimed, then ``--repeats`` times; the table gives the median time per
step or per certificate (compile excluded), XLA's per-device memory of the program
(``memory_analysis()``: arguments + outputs + temporaries − aliased, for one device of the SPMD
program), the bytes of
the live arrays on device 0, on GPUs the device's peak bytes in use, and the elements moved by
the program's collectives (all-reduce, all-gather, …; a loop's collectives counted once, i.e.
per step). Ratios are against ``D = 1``; the ideal for strong scaling is ``1/D`` (time and
memory), for weak scaling ``1``.

Run: ``.venv/bin/python benchmarks/sharding.py`` (``--quick`` for small sizes and D ≤ 4).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

COLLECTIVE = re.compile(
    r"=\s*(?P<shape>\([^=]*\)|\S+)\s+(?P<op>all-gather|all-to-all|all-reduce|reduce-scatter|"
    r"collective-permute)(?:-start)?\("
)
ARRAY = re.compile(r"\w+\[([\d,]*)\]")


def collective_elements(hlo: str) -> int:
    """Elements of the results of every collective of a compiled program (once each)."""
    total = 0
    for match in COLLECTIVE.finditer(hlo):
        for dims in ARRAY.findall(match["shape"]):
            total += math.prod(int(d) for d in dims.split(",") if d)
    return total


def measure(config: dict) -> dict:
    """Run one configuration in this process (its devices already set) and measure it."""
    import jax
    import jax.numpy as jnp

    import mflangevin
    from mflangevin import sharding
    from mflangevin.models import MeanFieldNetwork

    kind, D, N, n, d = config["kind"], config["D"], config["N"], config["n"], config["d"]
    if kind == "share":
        return _time(config, *_share_of_the_gap(config), jax.devices()[:1])
    devices = jax.devices()[:D]
    if len(devices) < D:
        raise RuntimeError(f"{D} devices asked for, {len(devices)} available")
    net = MeanFieldNetwork("tanh")
    key_x, key_p = jax.random.split(jax.random.key(0))
    X = jax.random.normal(key_x, (n, d))
    y = jnp.tanh(X[:, 0])
    particles = net.init_particles(key_p, N, d)
    shards = (1, D) if kind == "data" else (D, 1)
    # The certificate on Auto axes, told the layout as `sharding=` (the path the guide measures).
    mesh = sharding.make_mesh(*shards, devices=devices, explicit=kind != "gap")
    particles = sharding.shard_particles(particles, mesh)
    X, y = sharding.shard_data((X, y), mesh)
    steps = config["steps"]

    if kind == "gap":
        objective = net.objective(X, y, reference=mflangevin.gaussian_reference(1.0))

        def program(particles, key):
            return mflangevin.duality_gap(
                objective, particles, 0.1, key, num_samples=config["draws"], sharding=layout
            ).gap

        layout = sharding.particle_sharding(particles)

        args, steps = (particles, jax.random.key(1)), 1
    else:
        algorithm = mflangevin.mfld(net.objective(X, y, l2=1e-3), 0.1, 1e-3)

        def program(state, key):
            keys = jax.random.split(key, steps)
            return jax.lax.scan(lambda s, k: (algorithm.step(k, s)[0], None), state, keys)[0]

        args = (algorithm.init(particles), jax.random.key(1))
    return _time(config, program, args, steps, devices)


def _share_of_the_gap(config: dict):
    """The program one device runs in a ``D``-way split of ``duality_gap`` (its default block
    of 1024 rows or draws), on one device: ``(program, args, 1)``."""
    import jax
    import jax.numpy as jnp

    import mflangevin
    from mflangevin.certificates.duality import _psi
    from mflangevin.certificates.entropy import _search, flatten_particles
    from mflangevin.models import MeanFieldNetwork

    D, N, n, d, block = config["D"], config["N"], config["n"], config["d"], 1024
    net = MeanFieldNetwork("tanh")
    key_x, key_p, key_d = jax.random.split(jax.random.key(0), 3)
    X = jax.random.normal(key_x, (n, d))
    objective = net.objective(X, jnp.tanh(X[:, 0]), reference=mflangevin.gaussian_reference(1.0))
    particles = net.init_particles(key_p, N, d)
    g = objective.risk_gradient(objective.mean_embedding(particles))
    x = flatten_particles(particles)
    draws = net.init_particles(key_d, config["draws"] // D, d)

    def program(x, draws):
        return _search(x[: N // D], x, 0, 1, block), _psi(objective, None, g, draws, block)

    return program, (x, draws), 1


def _time(config: dict, program, args, steps: int, devices) -> dict:
    import jax

    compiled = jax.jit(program).lower(*args).compile()
    memory = compiled.memory_analysis()
    program_bytes = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )
    out = jax.block_until_ready(compiled(*args))  # untimed: first run
    times = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append((time.perf_counter() - start) / steps)
    device = devices[0]
    live = sum(
        shard.data.nbytes
        for array in jax.live_arrays()
        for shard in array.addressable_shards
        if shard.device == device
    )
    stats = device.memory_stats() or {}
    del out
    return {
        **config,
        "backend": jax.default_backend(),
        "ms": 1e3 * statistics.median(times),
        "program_mb": program_bytes / 1e6,
        "temp_mb": memory.temp_size_in_bytes / 1e6,
        "live_mb": live / 1e6,
        "peak_mb": stats.get("peak_bytes_in_use", float("nan")) / 1e6,
        "collective_k": collective_elements(compiled.as_text()) / 1e3,
    }


def run(configs: list[dict], platform: str, devices: int) -> list[dict]:
    """``measure`` of each configuration, in one fresh process with ``devices`` devices."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if platform == "cpu":
        environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        environment["JAX_PLATFORMS"] = "cpu"
    else:  # no preallocation, so that a device's peak bytes in use are the program's
        environment["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(configs)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    done = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if len(done) < len(configs):
        lines = out.stderr.strip().splitlines() or ["failed"]
        done += [{**c, "error": lines[-1][:60]} for c in configs[len(done) :]]
    return done


def probe() -> tuple[str, int]:
    """The default backend and its device count, asked of a child process (so that this one
    holds no accelerator memory)."""
    out = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.default_backend(), jax.device_count())"],
        capture_output=True,
        text=True,
        check=True,
    )
    backend, count = out.stdout.split()[-2:]
    return backend, int(count)


COLUMNS = (
    ("D", "D", "{:>3d}"),
    ("N", "N", "{:>6d}"),
    ("n", "n", "{:>6d}"),
    ("ms", "ms", "{:>9.2f}"),
    ("time_ratio", "÷D=1", "{:>6.2f}"),
    ("program_mb", "MB/device", "{:>9.2f}"),
    ("memory_ratio", "÷D=1", "{:>6.2f}"),
    ("ideal", "ideal", "{:>6.2f}"),
    ("live_mb", "live MB/dev", "{:>11.2f}"),
    ("peak_mb", "peak MB/dev", "{:>11.2f}"),
    ("collective_k", "coll. k-elem", "{:>12.1f}"),
)


def table(title: str, rows: list[dict], weak: bool, show_peak: bool) -> None:
    columns = [c for c in COLUMNS if show_peak or c[0] != "peak_mb"]
    base = next((r for r in rows if r.get("D") == 1 and "ms" in r), None)
    print(f"\n{title}")
    print("| " + " | ".join(label for _, label, _ in columns) + " |")
    print("|" + "|".join("---:" for _ in columns) + "|")
    for row in rows:
        row = dict(row)
        if base is not None and "ms" in row:
            row["time_ratio"] = row["ms"] / base["ms"]
            row["memory_ratio"] = row["program_mb"] / base["program_mb"]
        row["ideal"] = 1.0 if weak else 1.0 / row["D"]
        cells = []
        for key, _, form in columns:
            value = row.get(key)
            cells.append("-" if value is None else form.format(value).strip())
        if "error" in row:
            cells[3] = row["error"]
        print("| " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--platform",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="cpu: D fake CPU devices per process; gpu: the visible accelerators; "
        "auto: gpu unless JAX's default backend is the CPU",
    )
    parser.add_argument("--devices", type=int, nargs="+", help="device counts (default 1 2 4 8)")
    parser.add_argument("--steps", type=int, default=3, help="MFLD steps per timed scan")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--scale", type=int, default=1, help="multiply N and n (GPUs: 8 or 16)")
    parser.add_argument("--quick", action="store_true", help="small sizes and D ≤ 4")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        for config in json.loads(args.one):
            print(json.dumps(measure(config)), flush=True)
            gc.collect()  # the previous configuration's arrays, before the next one's count
        return

    platform = args.platform
    if platform == "auto" or platform == "gpu":
        backend, count = probe()
        platform = "cpu" if backend == "cpu" and platform == "auto" else "gpu"
    if args.devices:
        counts = args.devices
    elif platform == "gpu":
        counts = [2**k for k in range(count.bit_length()) if 2**k <= count]
    else:
        counts = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    s = args.scale
    # N·n at D = 1 was one block of features under the earlier default block (up to 2**22
    # features), so that the memory per device was the (N/D, n) or (N, n/D) features themselves;
    # the default block is now at most 512 samples (mflangevin.objectives.BLOCK_ROWS).
    N, n, d, draws = (
        (256 * s, 1024 * s, 8, 1024 * s) if args.quick else (1024 * s, 4096 * s, 16, 4096 * s)
    )
    common = {"d": d, "steps": args.steps, "repeats": args.repeats, "draws": draws}
    print(
        f"Platform {platform}, devices {counts}; tanh MeanFieldNetwork, d = {d}, "
        f"{args.steps} MFLD steps per scan, median of {args.repeats} runs; K = {draws} dual draws."
    )
    if platform == "cpu":
        print("Fake CPU devices share the same cores: time cannot fall with D here.")
    workloads = (
        ("particles", "MFLD full drift, particles split", "N"),
        ("data", "MFLD full drift, data split", "n"),
        ("gap", "duality_gap (k-NN entropy + dual draws), particles split", "N"),
        ("share", "one device's share of duality_gap in a D-way split, alone on one device", None),
    )
    configs = []  # (workload, scaling, config); weak scaling at D = 1 is strong scaling's run
    for kind, _, grows in workloads:
        for D in counts:
            configs.append((kind, "strong", {**common, "kind": kind, "D": D, "N": N, "n": n}))
            if D > 1 and grows:
                sizes = {"N": N * D, "n": n} if grows == "N" else {"N": N, "n": n * D}
                configs.append((kind, "weak", {**common, "kind": kind, "D": D, **sizes}))
    results = []
    for D in counts:  # one process per device count: every configuration on D devices
        mine = [c for c in configs if c[2]["D"] == D and c[0] != "share"]
        if D == 1:  # a device's share runs on one device, for every D
            mine += [c for c in configs if c[0] == "share"]
        results += zip(mine, run([c[2] for c in mine], platform, D), strict=True)
    show_peak = platform == "gpu"
    for kind, title, grows in workloads:
        strong = [r for (k, scaling, _), r in results if k == kind and scaling == "strong"]
        weak = [
            strong[0],
            *(r for (k, scaling, _), r in results if k == kind and scaling == "weak"),
        ]
        unit = "ms per certificate" if kind in ("gap", "share") else "ms per step"
        table(f"{title}: strong scaling (N = {N}, n = {n}; {unit})", strong, False, show_peak)
        if grows:
            table(f"{title}: weak scaling ({grows} ∝ D; {unit})", weak, True, show_peak)


if __name__ == "__main__":
    main()
