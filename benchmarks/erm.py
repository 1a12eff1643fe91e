"""Wall time to a certified duality gap: LinearClassifier and LinearRegressor (Acc-Prox-SVRG)
against scikit-learn, and against skglm and celer on the lasso when they are installed.

Standardised ``make_classification`` data in float64, four problems: logistic regression with an
L2, an elastic-net and an L1 penalty, and the lasso (least squares on a noisy linear target,
``λ₁ = α_max/10``). For each, in one process:

* ``mflangevin``: ``LinearClassifier(l1=..., l2=..., tol=1e-6).fit(X, y)`` (``LinearRegressor``
  for the lasso) with its defaults (``solver="auto"``), then with each solver by name (``lbfgs``
  on the smooth problem, ``acc-prox-svrg``); each stops when the duality gap, an upper bound on
  ``P(x) − P*``, is at most ``1e-6``. Timed after one warm-up fit (compilation excluded; the
  first fit's time is printed too);
* the other solvers with the same objective: scikit-learn's ``LogisticRegression`` (``C =
  1/(n(λ₁ + λ₂))``, ``l1_ratio = λ₁/(λ₁ + λ₂)``) with ``saga`` and, for L2, ``lbfgs``; for the
  lasso scikit-learn's ``Lasso`` (coordinate descent) and, when installed, ``skglm.Lasso`` and
  ``celer.Lasso``. They stop on their own criteria, which certify nothing: each is run with
  ``tol = 1e-2, 1e-3, …`` until the float64 duality gap at its solution (the estimators'
  ``duality_gap``) is at most ``1e-6``, and the time of that first certified run is reported.

Prints seconds, passes, the gaps reached, the ratios ``other / mflangevin`` (above 1:
mflangevin is faster) and, last, the fastest scikit-learn solver's time over
``solver="auto"``'s. Run ``.venv/bin/python benchmarks/erm.py`` (``--samples``,
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

import importlib.util
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LogisticRegression

from mflangevin.models import LinearClassifier, LinearRegressor

TARGET = 1e-6


def data(n, p):
    X, y = make_classification(
        n, p, n_informative=p // 2, n_redundant=p // 4, flip_y=0.05, class_sep=0.5,
        random_state=0,
    )  # fmt: skip
    X = (X - X.mean(0)) / X.std(0)
    target = X @ np.random.default_rng(0).normal(size=p) + np.random.default_rng(1).normal(size=n)
    return X, y, target


def time_ours(model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start, first


def time_certified(make, model, X, y):
    """Seconds of the first run of ``make(tol)``, in decreasing ``tol``, whose solution has a
    certified gap (for ``model``'s objective); with that gap and ``tol``."""
    for tol in 10.0 ** -np.arange(2, 13):
        other = make(tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            other.fit(X, y)
            seconds = time.perf_counter() - start
        params = {"coef": np.ravel(other.coef_), "intercept": float(np.ravel(other.intercept_)[0])}
        gap = model.duality_gap(X, y, params)
        if gap <= TARGET:
            return seconds, gap, tol
    return np.nan, gap, tol


def others(name, model, n):
    """The competing solvers of a problem: ``{label: make(tol)}``."""
    if isinstance(model, LinearRegressor):
        solvers = {"sklearn cd": lambda tol: Lasso(alpha=model.l1, tol=tol, max_iter=100_000)}
        if importlib.util.find_spec("skglm"):
            from skglm import Lasso as SkglmLasso

            solvers["skglm"] = lambda tol: SkglmLasso(alpha=model.l1, tol=tol, max_iter=1000)
        if importlib.util.find_spec("celer"):
            from celer import Lasso as CelerLasso

            solvers["celer"] = lambda tol: CelerLasso(alpha=model.l1, tol=tol, max_iter=1000)
        return solvers
    strength = model.l1 + model.l2

    def logistic(solver):
        return lambda tol: LogisticRegression(
            C=1 / (n * strength), l1_ratio=model.l1 / strength, solver=solver, tol=tol,
            max_iter=100_000,
        )  # fmt: skip

    solvers = ("saga", "lbfgs") if model.l1 == 0 else ("saga",)
    return {f"sklearn {solver}": logistic(solver) for solver in solvers}


def main(argv=None):
    args = parse_args(argv)
    n, p = args.samples, args.features
    X, y, target = data(n, p)
    alpha_max = np.max(np.abs(X.T @ (target - target.mean()))) / n
    cases = {
        "L2 (λ₂ = 1e-4)": (LinearClassifier(l2=1e-4, tol=TARGET, max_iter=1000), y),
        "elastic net (λ₁ = λ₂ = 1e-4)": (
            LinearClassifier(l1=1e-4, l2=1e-4, tol=TARGET, max_iter=1000),
            y,
        ),
        "L1 (λ₁ = 1e-3)": (LinearClassifier(l1=1e-3, l2=0.0, tol=TARGET, max_iter=1000), y),
        f"lasso (λ₁ = α_max/10 = {alpha_max / 10:.3g})": (
            LinearRegressor(l1=alpha_max / 10, tol=TARGET, max_iter=1000),
            target,
        ),
    }
    print(f"n = {n}, p = {p}, float64, target: certified duality gap ≤ {TARGET:g}")
    print(f"{jax.devices()[0].platform} backend; the other solvers on one CPU core")
    for name, (model, labels) in cases.items():
        print(f"\n{name}")
        solvers = ("auto", "lbfgs", "acc-prox-svrg") if model.l1 == 0 else ("auto", "acc-prox-svrg")
        for solver in solvers:
            ours = clone(model).set_params(solver=solver)
            elapsed, first = time_ours(ours, X, labels)
            if solver == "auto":
                seconds, model = elapsed, ours
            label = "mflangevin" if solver == "auto" else f"  {solver}"
            print(
                f"  {label:<13} {elapsed:8.2f} s  (first fit {first:.2f} s)  gap "
                f"{ours.duality_gap_:.1e}  {ours.n_passes_:.0f} passes, {ours.n_iter_} "
                f"iterations of {ours.solver_}"
            )
        fastest = np.inf
        for label, make in others(name, model, n).items():
            other, gap, tol = time_certified(make, model, X, labels)
            fastest = min(fastest, other) if label.startswith("sklearn") else fastest
            print(
                f"  {label:<13} {other:8.2f} s  (tol = {tol:.0e})  gap {gap:.1e}   "
                f"ratio {label}/mflangevin = {other / seconds:.2f}"
            )
        print(f"  fastest sklearn / mflangevin (auto) = {fastest / seconds:.2f}")


if __name__ == "__main__":
    main()
