"""Time of an MFLD step against the block size (``chunk_size``): what the default block is set from.

For each ``(n, d, N)``, one process builds the tanh ``MeanFieldNetwork`` objective on synthetic
data with each ``chunk_size`` (and the default, ``None``), compiles a ``lax.scan`` of ``--steps``
steps per block size, and times the scans interleaved (round-robin, best of ``--repeats``), so
that every block size sees the same load. Printed: ms per step, and the ratio to the default
block (above 1: slower than the default), and the rows of each block size.

Run: ``.venv/bin/python benchmarks/block_size.py`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import time


def measure(n: int, d: int, num: int, chunks: list, steps: int, repeats: int) -> dict:
    """Best ms per step for each block size (``None``: the default)."""
    import jax
    import jax.numpy as jnp

    import mflangevin
    from mflangevin.models import MeanFieldNetwork

    key_x, key_p = jax.random.split(jax.random.key(0))
    X = jax.random.normal(key_x, (n, d))
    y = jnp.tanh(X[:, 0])
    net = MeanFieldNetwork("tanh")
    particles = net.init_particles(key_p, num, d)
    keys = jax.random.split(jax.random.key(2), steps)
    runs = {}
    for chunk in chunks:
        objective = net.objective(X, y, l2=1e-3, chunk_size=chunk)
        algorithm = mflangevin.mfld(objective, 0.1, 1e-3)
        state = algorithm.init(particles)

        def run(state, keys, algorithm=algorithm):
            return jax.lax.scan(lambda s, k: (algorithm.step(k, s)[0], None), state, keys)[0]

        run = jax.jit(run)
        jax.block_until_ready(run(state, keys))
        runs[chunk] = (run, state, objective.block_size(particles))
    best = {chunk: float("inf") for chunk in chunks}
    for _ in range(repeats):
        for chunk, (run, state, _) in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(state, keys))
            best[chunk] = min(best[chunk], (time.perf_counter() - start) / steps)
    return {chunk: (1e3 * best[chunk], runs[chunk][2]) for chunk in chunks}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3, help="steps per timed scan")
    parser.add_argument("--repeats", type=int, default=5, help="timed scans per block size")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument(
        "--chunks",
        default="64,128,256,512,1024,2048",
        help="the block sizes (rows) compared with the default",
    )
    parser.add_argument(
        "--sizes",
        default="8000,64,4096;16000,32,2048;4000,20,16384;65536,32,512;2000,32,32768",
        help="the problems, n,d,N separated by ';'",
    )
    args = parser.parse_args(argv)
    chunks = [None] + [int(c) for c in args.chunks.split(",")]
    sizes = [tuple(int(v) for v in size.split(",")) for size in args.sizes.split(";")]
    if args.quick:
        sizes = [(2000, 16, 512)]
    print("ms per MFLD step (tanh network) against chunk_size; ratio to the default block")
    for n, d, num in sizes:
        times = measure(n, d, num, chunks, args.steps, args.repeats)
        default = times[None][0]
        print(f"(n, d, N) = ({n}, {d}, {num})")
        for chunk, (ms, rows) in times.items():
            name = "default" if chunk is None else str(chunk)
            print(f"  chunk {name:>8s} ({rows:6d} rows) {ms:9.2f} ms  {ms / default:6.3f}")


if __name__ == "__main__":
    main()
