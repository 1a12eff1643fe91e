"""How an MFLD step scales: time and peak memory against n and against N, blocked against
unblocked, and minibatch steps against n at fixed B.

Every configuration runs in a fresh process, so that its peak resident memory (``ru_maxrss``) is
its own: the data, the particles, and the compiled step's working set. Each process builds the
tanh ``MeanFieldNetwork`` objective on synthetic data, compiles a ``lax.scan`` of ``--steps``
steps (as ``blackjax.util.run_inference_algorithm`` runs them), runs it once untimed and twice
timed, and reports the best milliseconds per step, the peak RSS and the compiled step's
temporary buffers (XLA's own count of the step's working set).

Tables printed:

* full drift against ``n`` (fixed ``d``, ``N``) and against ``N`` (fixed ``n``, ``d``), with the
  fitted log-log exponents of time and of working set;
* the default blocked objective against the unblocked one (``chunk_size`` ≥ n) at small sizes:
  ratio of step times and of working sets;
* minibatch steps (``B = 100``) against ``n``: ``sgd``, ``svrg`` between snapshots, ``sarah``
  between refreshes and PDA's minibatch mode, whose cost must not grow with ``n``.

Run: ``.venv/bin/python benchmarks/scaling.py --out figures`` (``--quick`` for small sizes); the
figure is ``scaling.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(config: dict) -> dict:
    """Run one configuration in this process and return its measurements."""
    import jax
    import jax.numpy as jnp

    import mflangevin
    from mflangevin.models import MeanFieldNetwork

    n, d, num, mode = config["n"], config["d"], config["N"], config["mode"]
    key_x, key_p = jax.random.split(jax.random.key(0))
    X = jax.random.normal(key_x, (n, d))
    y = jnp.tanh(X[:, 0])
    jax.block_until_ready(y)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    net = MeanFieldNetwork("tanh")
    chunk = n if mode == "unblocked" else None
    objective = net.objective(X, y, l2=1e-3, chunk_size=chunk)
    particles = net.init_particles(key_p, num, d)
    batch = config.get("batch_size", 100)
    if mode in ("full", "unblocked"):
        algorithm = mflangevin.mfld(objective, 0.1, 1e-3)
    elif mode == "sgd":
        algorithm = mflangevin.mfld(objective, 0.1, 1e-3, gradient=mflangevin.gradients.sgd(batch))
    elif mode == "svrg":  # no snapshot in the timed steps: the step between snapshots
        gradient = mflangevin.gradients.svrg(batch, snapshot_every=10**9)
        algorithm = mflangevin.mfld(objective, 0.1, 1e-3, gradient=gradient)
    elif mode == "sarah":
        gradient = mflangevin.gradients.sarah(batch, refresh_every=10**9)
        algorithm = mflangevin.mfld(objective, 0.1, 1e-3, gradient=gradient)
    elif mode == "pda":
        algorithm = mflangevin.pda(objective, 1e-4, 1e-3, 1, batch_size=batch)
    else:
        raise ValueError(mode)
    state = algorithm.init(particles)
    step = jax.jit(algorithm.step)
    compiled = step.lower(jax.random.key(1), state).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    if mode in ("svrg", "sarah"):  # step 0 is the snapshot/refresh: take it before timing
        state, _ = step(jax.random.key(1), state)

    @jax.jit
    def run(state, keys):  # as run_inference_algorithm runs the steps: a scan
        return jax.lax.scan(lambda s, k: (algorithm.step(k, s)[0], None), state, keys)[0]

    keys = jax.random.split(jax.random.key(2), config["steps"])
    state = jax.block_until_ready(run(state, keys))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        state = jax.block_until_ready(run(state, keys))
        times.append((time.perf_counter() - start) / config["steps"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        **config,
        "ms": 1e3 * min(times),
        "peak_gb": peak / 1e9,
        "above_data_gb": (peak - base_rss) / 1e9,
        "temp_mb": temp / 1e6,
    }


def run(config: dict) -> dict:
    """``measure(config)`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(config)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if out.returncode != 0:
        return {**config, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs, ys) -> float:
    import numpy as np

    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def table(title: str, rows: list[dict], columns: tuple[str, ...]) -> None:
    print(f"\n{title}")
    print("  " + " ".join(f"{c:>13s}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, row.get("error", "-"))
            cells.append(f"{value:13.4g}" if isinstance(value, float) else f"{str(value):>13s}")
        print("  " + " ".join(cells))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="figures", help="folder for scaling.png (created)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed scan")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return

    steps = args.steps
    if args.quick:
        ns, num_for_n, ns_for_N, Ns = [1000, 4000, 16000], 256, 4000, [128, 512, 2048]
        small = [(500, 8, 256)]
        minibatch_ns = [10_000, 100_000]
    else:
        ns, num_for_n, ns_for_N, Ns = [10**4, 10**5, 10**6], 2000, 20_000, [1000, 4000, 16000]
        small = [(2000, 32, 2048), (16000, 64, 32768)]
        minibatch_ns = [10**4, 4 * 10**6]
    d = 20

    print("One MFLD step of the tanh MeanFieldNetwork (synthetic data), a process per row.")
    against_n = [run({"mode": "full", "n": n, "d": d, "N": num_for_n, "steps": steps}) for n in ns]
    table(
        f"Full drift against n (d = {d}, N = {num_for_n})",
        against_n,
        ("n", "ms", "peak_gb", "above_data_gb", "temp_mb"),
    )
    against_N = [run({"mode": "full", "n": ns_for_N, "d": d, "N": N, "steps": steps}) for N in Ns]
    table(
        f"Full drift against N (n = {ns_for_N}, d = {d})",
        against_N,
        ("N", "ms", "peak_gb", "above_data_gb", "temp_mb"),
    )
    ok_n = [r for r in against_n if "ms" in r]
    ok_N = [r for r in against_N if "ms" in r]
    if len(ok_n) > 1 and len(ok_N) > 1:
        n_time = slope([r["n"] for r in ok_n], [r["ms"] for r in ok_n])
        big_n_time = slope([r["N"] for r in ok_N], [r["ms"] for r in ok_N])
        n_memory = slope([r["n"] for r in ok_n], [r["temp_mb"] for r in ok_n])
        big_n_memory = slope([r["N"] for r in ok_N], [r["temp_mb"] for r in ok_N])
        print(
            f"\n  fitted exponents: time ∝ n^{n_time:.2f}, N^{big_n_time:.2f}; "
            f"working set ∝ n^{n_memory:.2f}, N^{big_n_memory:.2f}"
        )

    blocked_rows = []
    for n, dim, num in small:
        blocked = run({"mode": "full", "n": n, "d": dim, "N": num, "steps": steps + 2})
        unblocked = run({"mode": "unblocked", "n": n, "d": dim, "N": num, "steps": steps + 2})
        if "ms" in blocked and "ms" in unblocked:
            blocked_rows.append(
                {
                    "(n,d,N)": f"{n},{dim},{num}",
                    "blocked ms": blocked["ms"],
                    "unblocked ms": unblocked["ms"],
                    "time ratio": blocked["ms"] / unblocked["ms"],
                    "blocked MB": blocked["temp_mb"],
                    "unblocked MB": unblocked["temp_mb"],
                }
            )
    table(
        "Default blocks against one block (ratio < 1: blocking is faster)",
        blocked_rows,
        ("(n,d,N)", "blocked ms", "unblocked ms", "time ratio", "blocked MB", "unblocked MB"),
    )

    minibatch_rows = []
    for mode in ("sgd", "svrg", "sarah", "pda"):
        rows = [run({"mode": mode, "n": n, "d": d, "N": 256, "steps": 20}) for n in minibatch_ns]
        if all("ms" in r for r in rows):
            minibatch_rows.append(
                {
                    "estimator": mode,
                    **{f"ms n={n:.0e}": r["ms"] for n, r in zip(minibatch_ns, rows, strict=True)},
                    "ratio": rows[-1]["ms"] / rows[0]["ms"],
                }
            )
        else:
            minibatch_rows.append({"estimator": mode, "error": rows[-1].get("error", "?")})
    table(
        f"Minibatch steps (B = 100, d = {d}, N = 256) against n; ratio = largest / smallest n",
        minibatch_rows,
        ("estimator", *(f"ms n={n:.0e}" for n in minibatch_ns), "ratio"),
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, rows, key, label in (
        (axes[0], ok_n, "n", f"n (samples; d = {d}, N = {num_for_n})"),
        (axes[1], ok_N, "N", f"N (particles; n = {ns_for_N}, d = {d})"),
    ):
        xs = [r[key] for r in rows]
        ax.loglog(xs, [r["ms"] for r in rows], "o-", label="step time (ms)")
        ax.loglog(xs, [1e3 * r["peak_gb"] for r in rows], "s--", label="peak RSS (MB)")
        ax.loglog(xs, [r["temp_mb"] for r in rows], "^:", label="step working set (MB)")
        ax.set_xlabel(label)
        ax.set_ylabel("milliseconds / megabytes")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("Full-drift MFLD step against n")
    axes[1].set_title("Full-drift MFLD step against N")
    fig.suptitle("Time grows like n·N; the working set stays bounded (blocks of samples)")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "scaling.png")
    fig.savefig(path, dpi=120)
    print(f"\nfigure saved to {path}")


if __name__ == "__main__":
    main()
