"""Wall time to a certified duality gap: LinearClassifier (Acc-Prox-SVRG) against scikit-learn.

Regularised logistic regression on standardised ``make_classification`` data in float64, three
penalties: L2, elastic net and L1. For each, in one process:

* ``mflangevin``: ``LinearClassifier(l1=..., l2=..., tol=1e-6).fit(X, y)`` with its
  defaults; it stops when the duality gap, an upper bound on ``P(x) − P*``, is at most
  ``1e-6``. Timed after one warm-up fit (compilation excluded; the first fit's time is printed
  too);
* scikit-learn's ``LogisticRegression`` with the same objective (``C = 1/(n(λ₁ + λ₂))``,
  ``l1_ratio = λ₁/(λ₁ + λ₂)``), solver ``saga`` and, for L2, ``lbfgs``. They stop on their own
  criteria, which certify nothing: each is run with ``tol = 1e-2, 1e-3, …`` until the duality
  gap at its solution (computed by :func:`mflangevin.models.linear.primal_and_dual`) is at most
  ``1e-6``, and the time of that first certified run is reported.

Prints seconds, passes, the gaps reached and the ratios ``scikit-learn / mflangevin`` (above 1:
mflangevin is faster). Run ``.venv/bin/python benchmarks/erm.py`` (``--samples``,
``--features`` to choose sizes).
"""

from __future__ import annotations

import argparse


def parse_args(argv=None):
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=100_000, help="n, the training samples")
    parser.add_argument("--features", type=int, default=200, help="p, the features")
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()

import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mflangevin.models import LinearClassifier
from mflangevin.models.linear import primal_and_dual

TARGET = 1e-6


def data(n, p):
    X, y = make_classification(
        n, p, n_informative=p // 2, n_redundant=p // 4, flip_y=0.05, class_sep=0.5,
        random_state=0,
    )  # fmt: skip
    return (X - X.mean(0)) / X.std(0), y


def gap_of(model, X, y_signed, coef, intercept):
    params = {"coef": np.asarray(coef, np.float64), "intercept": np.float64(intercept)}
    primal, dual = primal_and_dual(model.loss, params, X, y_signed, model.l1, model.l2)
    return float(primal - dual)


def time_ours(model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start, first


def time_sklearn(solver, model, X, y, y_signed):
    """Seconds of the first run, in decreasing ``tol``, whose solution has a certified gap."""
    n = len(y)
    strength = model.l1 + model.l2
    for tol in 10.0 ** -np.arange(2, 13):
        reference = LogisticRegression(
            C=1 / (n * strength), l1_ratio=model.l1 / strength, solver=solver, tol=tol,
            max_iter=100_000,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            reference.fit(X, y)
            seconds = time.perf_counter() - start
        gap = gap_of(model, X, y_signed, reference.coef_.ravel(), reference.intercept_[0])
        if gap <= TARGET:
            return seconds, gap, tol, int(np.max(reference.n_iter_))
    return np.nan, gap, tol, int(np.max(reference.n_iter_))


def main(argv=None):
    args = parse_args(argv)
    n, p = args.samples, args.features
    X, y = data(n, p)
    y_signed = np.where(y == 1, 1.0, -1.0)
    cases = {
        "L2 (λ₂ = 1e-4)": dict(l2=1e-4),
        "elastic net (λ₁ = λ₂ = 1e-4)": dict(l1=1e-4, l2=1e-4),
        "L1 (λ₁ = 1e-3)": dict(l1=1e-3, l2=0.0),
    }
    print(f"n = {n}, p = {p}, float64, target: certified duality gap ≤ {TARGET:g}")
    print(f"{jax.devices()[0].platform} backend; scikit-learn on one CPU core")
    for name, penalty in cases.items():
        model = LinearClassifier(tol=TARGET, max_iter=1000, **penalty)
        seconds, first = time_ours(model, X, y)
        print(f"\n{name}")
        print(
            f"  {'mflangevin':<12} {seconds:8.2f} s  (first fit {first:.2f} s)  gap "
            f"{model.duality_gap_:.1e}  {model.n_passes_:.0f} passes, {model.n_iter_} stages"
        )
        solvers = ("saga", "lbfgs") if penalty.get("l1", 0) == 0 else ("saga",)
        for solver in solvers:
            other, gap, tol, iterations = time_sklearn(solver, model, X, y, y_signed)
            print(
                f"  {'sklearn ' + solver:<12} {other:8.2f} s  (tol = {tol:.0e})  gap {gap:.1e}  "
                f"{iterations} iterations   ratio sklearn/mflangevin = {other / seconds:.2f}"
            )


if __name__ == "__main__":
    main()
