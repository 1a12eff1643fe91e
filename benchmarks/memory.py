"""Peak memory against the size of the data: MFLD and PDA steps, NumPyro MFLD and a linear fit.

Every measurement runs in a fresh process. The process makes its data first (NumPy, float32,
as a user's arrays), resets its peak resident memory (``/proc/self/clear_refs``), then builds
the algorithm and runs it; the peak (``VmHWM``) above the memory held before building, divided by
the bytes of the data, is the number of copies of the data the library made plus its working
set in those units. The data themselves (the user's arrays) are not counted.

Rows:

* ``mfld`` and ``pda`` (full drift) and ``mfld sgd``: ``mflangevin.mfld``/``pda`` on the tanh
  ``MeanFieldNetwork`` objective, built, initialised and stepped three times;
* ``fit``: ``LinearClassifier(max_iter=2).fit`` (logistic, L2), against scikit-learn's
  ``LogisticRegression(solver="saga", max_iter=2)`` on the same arrays;
* ``numpyro``: ``mflangevin.numpyro.MCMC(MFLD(model, N))``, a warmup and a run of two steps
  each, on a Bayesian linear regression;
* ``… copying``: the same computation as earlier versions ran it: the held data copied when the
  algorithm is built (into ``jax.Ref`` buffers), the NumPy arguments of a NumPyro model given to
  NumPyro as they are (it copies them to the device at every call). The ratio of the two peaks
  is the gain.

Run: ``.venv/bin/python benchmarks/memory.py`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

ROWS = ("mfld", "mfld sgd", "pda", "numpyro", "fit")


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def measure(config: dict) -> dict:
    """Run one configuration in this process and return its measurements."""
    import dataclasses
    import warnings

    import jax
    import numpy as np

    import mflangevin
    from mflangevin.kernels import data as data_module
    from mflangevin.models import LinearClassifier, MeanFieldNetwork

    if config["copy"]:  # the held data copied, as the jax.Ref buffers of earlier versions were
        hold = data_module.hold

        def copying_hold(objective):
            held = hold(objective)
            if getattr(held, "data", None) is None:
                return held
            copies = jax.tree.map(lambda x: jax.numpy.array(x, copy=True), held.data)
            return dataclasses.replace(held, data=copies)

        data_module.hold = copying_hold
        from mflangevin.integrations._numpyro_mcmc import MCMC

        MCMC._on_device = lambda self, tree: tree  # NumPy arguments as NumPyro takes them
    n, d, mode = config["n"], config["d"], config["mode"]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    if mode == "fit" or mode == "saga":
        y = np.where(X[:, 0] + 0.5 * rng.standard_normal(n, dtype=np.float32) > 0, 1, 0)
    else:
        y = np.tanh(X[:, 0])
    held = X.nbytes + y.nbytes
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    base = _status("VmRSS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "numpyro":
            import numpyro
            import numpyro.distributions as dist

            from mflangevin.numpyro import MCMC, MFLD

            def model(X, y=None):
                beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]))
                numpyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y)

            kernel = MFLD(model, num_particles=config["N"], step_size=1e-7)
            MCMC(kernel, num_warmup=2, num_samples=2, progress_bar=False).run(
                jax.random.key(0), X, y
            )
        elif mode == "saga":
            from sklearn.linear_model import LogisticRegression

            LogisticRegression(solver="saga", C=1.0, max_iter=2).fit(X, y)
        elif mode == "fit":
            LinearClassifier(l2=1.0 / n, max_iter=2).fit(X, y)
        else:
            net = MeanFieldNetwork("tanh")
            objective = net.objective(X, y, l2=1e-3)
            if mode == "pda":
                algorithm = mflangevin.pda(objective, 1e-4, 1e-3, 1)
            elif mode == "sgd":
                gradient = mflangevin.gradients.sgd(100)
                algorithm = mflangevin.mfld(objective, 0.1, 1e-3, gradient=gradient)
            else:
                algorithm = mflangevin.mfld(objective, 0.1, 1e-3)
            del objective
            state = algorithm.init(net.init_particles(jax.random.key(1), config["N"], d))
            for k in range(3):
                state, _ = algorithm.step(jax.random.key(k), state)
            jax.block_until_ready(state)
    peak = _status("VmHWM")
    return {**config, "data_mb": held / 1e6, "peak_above_mb": (peak - base) / 1e6,
            "copies": (peak - base) / held}  # fmt: skip


def run(config: dict) -> dict:
    """``measure(config)`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return {**config, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument(
        "--particles",
        type=int,
        default=64,
        help="N, the particles of the MFLD and PDA rows "
        "(the NumPyro rows use 8: their working set is N·n)",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROWS,
        default=list(ROWS),
        help="the rows to run",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return

    kernel_sizes = [(10**5, 20)] if args.quick else [(10**6, 50), (4 * 10**6, 50)]
    fit_sizes = [(2 * 10**4, 100)] if args.quick else [(2 * 10**5, 100), (10**6, 100)]
    print("Peak memory above the user's data, in copies of the data (float32), a process per row")
    print(f"  {'row':24s} {'n':>9s} {'d':>4s} {'data MB':>9s} {'peak MB':>9s} {'copies':>7s}")
    for mode in args.rows:
        for n, d in fit_sizes if mode in ("numpyro", "fit") else kernel_sizes:
            rows = []
            for copy in (False, True):
                name = mode.split()[-1] if mode != "mfld" else "full"
                num = 8 if mode == "numpyro" else args.particles
                config = {"mode": name, "n": n, "d": d, "N": num, "copy": copy}
                rows.append(run(config))
            if mode == "fit":
                rows.append(run({"mode": "saga", "n": n, "d": d, "N": 0, "copy": False}))
            labels = [mode, f"{mode} copying", "scikit-learn saga"]
            for label, row in zip(labels, rows, strict=False):
                if "error" in row:
                    print(f"  {label:24s} {n:9d} {d:4d} {row['error']}")
                    continue
                print(
                    f"  {label:24s} {n:9d} {d:4d} {row['data_mb']:9.1f} "
                    f"{row['peak_above_mb']:9.1f} {row['copies']:7.2f}"
                )
            if all("error" not in row for row in rows[:2]):
                print(f"    copying / shared: {rows[1]['copies'] / rows[0]['copies']:.2f}x")
            if mode == "fit" and all("error" not in row for row in rows):
                print(f"    fit / saga: {rows[0]['peak_above_mb'] / rows[2]['peak_above_mb']:.2f}x")


if __name__ == "__main__":
    main()
