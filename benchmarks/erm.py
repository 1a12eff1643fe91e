"""Wall time to a certified duality gap: LinearClassifier and LinearRegressor against
scikit-learn's saga, liblinear and lbfgs, skglm and celer, on dense and sparse problems.

Float64 throughout. Dense problems: standardised ``make_classification`` data with logistic
regression under an L2, an elastic-net and an L1 penalty, the lasso (least squares on a
noisy linear target, ``λ₁ = α_max/10``) and ridge regression on the same target (``λ₂ =
1e-3``). With ``--small``, the same problems on scikit-learn's bundled data sets instead:
standardised ``load_breast_cancer`` (569 × 30) for the logistic ones and standardised
``load_diabetes`` (442 × 10) for the lasso and ridge regression. Sparse problems:
``scipy.sparse.random`` features (density ``--density``, normal non-zeros) with a planted
sparse model (``p/200`` non-zero weights): L1 logistic regression on its signs and the lasso
on its noisy values, both at ``λ₁ = λ_max/10``. For each, in one process:

* ``mflangevin``: the estimator with ``solver="auto"`` (the solver it chose in brackets), then
  with the other solvers by name (``lbfgs`` and ``acc-prox-svrg`` when ``λ₁ = 0``, ``cd`` and
  ``acc-prox-svrg`` when ``λ₁ > 0``, and ``gram`` for least squares on dense data); each stops
  when the duality gap, an upper bound on ``P(x) − P*``, is at most ``1e-6``. Timed after one
  warm-up fit (compilation excluded; the first fit's time is printed too), the fastest of
  repeated fits when they are short (the small data sets); a solver by name whose fit takes
  over ``--cap`` seconds is stopped and reported as such;
* the other solvers with the same objective: scikit-learn's ``LogisticRegression`` (``C =
  1/(n(λ₁ + λ₂))``, ``l1_ratio = λ₁/(λ₁ + λ₂)``) with ``saga``, ``lbfgs`` (L2) and
  ``liblinear`` (L2 or L1; its intercept is penalised, made negligible by
  ``intercept_scaling=100``), ``skglm``'s ``SparseLogisticRegression``; for the lasso
  scikit-learn's ``Lasso`` (coordinate descent, on the columns and, ``precompute=True``, on
  the Gram matrix), ``skglm.Lasso`` and ``celer.Lasso``; for ridge regression scikit-learn's
  ``Ridge`` (``α = nλ₂``) with its direct ``cholesky`` solver and the iterative ``lsqr``. They
  stop on their own criteria, which certify nothing: each is run with ``tol = 1e-2, 1e-3, …``
  until the float64 duality gap at its solution (the estimators' ``duality_gap``) is at most
  ``1e-6``, and the time of that first certified run is reported (``nan`` when the gap stalls
  or a run takes over ``--cap`` seconds: liblinear penalises its intercept, so its gap stalls
  above ``1e-6`` on some problems), the fastest of repeated runs when they are short.

Prints seconds, passes, the gaps reached and the ratios ``other / mflangevin`` (above 1:
mflangevin is faster), the fastest scikit-learn solver's time over ``solver="auto"``'s, and
how tight the certificate is: the fitted gap over the true
suboptimality ``P − P*`` (``P*`` from a fit by the same solver to a gap of ``1e-12``; where the
gap or ``P − P*`` is at the float64 round-off of ``P``, that instead of a ratio), and the
same ratio for the rescaled-residual dual point alone (what the estimators' ``duality_gap``
computes at the fitted parameters). On the dense smooth problem it also prints the cost of one
L-BFGS gradient against the same gradient as two matrix-vector products and against one read of
``X``. Run ``.venv/bin/python benchmarks/erm.py``; ``--full`` for
ten times the samples.
"""

from __future__ import annotations

import argparse

PROBLEMS = ("l2", "elastic-net", "l1", "lasso", "ridge", "sparse-l1", "sparse-lasso")


def parse_args(argv=None):
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=100_000, help="n of the dense problems")
    parser.add_argument("--features", type=int, default=200, help="p of the dense problems")
    parser.add_argument(
        "--sparse-samples", type=int, default=100_000, help="n of the sparse problems"
    )
    parser.add_argument(
        "--sparse-features", type=int, default=10_000, help="p of the sparse problems"
    )
    parser.add_argument(
        "--density", type=float, default=0.01, help="fraction of non-zeros of the sparse X"
    )
    parser.add_argument("--full", action="store_true", help="ten times the samples (n = 10⁶)")
    parser.add_argument(
        "--small", action="store_true",
        help="the dense problems on standardised load_breast_cancer (logistic) and "
        "load_diabetes (lasso, ridge) instead of make_classification; no sparse problems",
    )  # fmt: skip
    parser.add_argument(
        "--cap", type=float, default=60.0,
        help="seconds after which a competing solver's tolerance sweep, or a fit of one of "
        "mflangevin's solvers by name, gives up",
    )  # fmt: skip
    parser.add_argument(
        "--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS),
        help="the problems to run (with --small, only the dense ones run)",
    )  # fmt: skip
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()

import importlib.util
import signal
import time
import warnings

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import numpy as np
import scipy.sparse
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LogisticRegression, Ridge

from mflangevin.models import LinearClassifier, LinearRegressor

TARGET = 1e-6


def dense_data(n, p):
    X, y = make_classification(
        n, p, n_informative=p // 2, n_redundant=p // 4, flip_y=0.05, class_sep=0.5,
        random_state=0,
    )  # fmt: skip
    X = (X - X.mean(0)) / X.std(0)
    target = X @ np.random.default_rng(0).normal(size=p) + np.random.default_rng(1).normal(size=n)
    return X, y, target


def standardised(X):
    return (X - X.mean(0)) / X.std(0)


def small_data():
    """Standardised ``load_breast_cancer`` with its labels, and standardised ``load_diabetes``
    with its target."""
    X, y = load_breast_cancer(return_X_y=True)
    X_regression, target = load_diabetes(return_X_y=True)
    return (standardised(X), y), (standardised(X_regression), target)


def sparse_data(n, p, density):
    """CSR features with normal non-zeros and a planted model of ``p/200`` weights: the labels
    are its noisy signs, the regression target its noisy values."""
    rng = np.random.default_rng(0)
    X = scipy.sparse.random(
        n, p, density=density, format="csr", random_state=0, data_rvs=rng.standard_normal
    )
    planted = np.zeros(p)
    planted[rng.choice(p, max(1, p // 200), replace=False)] = rng.normal(size=max(1, p // 200))
    score = X @ planted
    noise = 0.5 * np.std(score) * rng.normal(size=n)
    return X, (score + noise > 0).astype(int), score + noise


def largest_l1(X, labels):
    """``λ_max``: the smallest ``λ₁`` at which ``w = 0`` is optimal (with the intercept)."""
    residual = labels - labels.mean()
    return np.max(np.abs(X.T @ residual)) / X.shape[0]


REPEAT = 0.5
"""Seconds: a fit is repeated until the repeats took this long (at most 20), and the fastest
counts, so that fits of milliseconds on the small data sets are timed as well as long ones."""


def best_time(fit):
    """The fastest of repeated calls of ``fit()`` (one call when it takes over ``REPEAT``)."""
    times = []
    while not times or (sum(times) < REPEAT and len(times) < 20):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    return min(times)


class Capped(Exception):
    """A fit ran past ``--cap`` seconds."""


def time_ours(model, X, y, cap=None):
    """Seconds of ``model.fit`` after a first fit (timed too); with ``cap``, each fit is stopped
    after that many seconds by raising :class:`Capped`."""

    def stop(signum, frame):
        raise Capped

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, cap or 0)
    try:
        start = time.perf_counter()
        model.fit(X, y)
        first = time.perf_counter() - start
        signal.setitimer(signal.ITIMER_REAL, cap or 0)
        return best_time(lambda: model.fit(X, y)), first
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def time_certified(make, model, X, y, cap):
    """Seconds of the first run of ``make(tol)``, in decreasing ``tol``, whose solution has a
    certified gap (for ``model``'s objective); with that gap and ``tol``. NaN seconds when the
    gap stalls (no halving over two successive ``tol``) or a run takes over ``cap`` seconds."""
    previous, stalls = np.inf, 0
    for tol in 10.0 ** -np.arange(2, 13):
        other = make(tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            seconds = best_time(lambda: other.fit(X, y))  # noqa: B023 (called at once)
        params = {"coef": np.ravel(other.coef_), "intercept": float(np.ravel(other.intercept_)[0])}
        gap = model.duality_gap(X, y, params)
        if gap <= TARGET:
            return seconds, gap, tol
        stalls = stalls + 1 if gap > previous / 2 else 0
        if stalls == 2 or seconds > cap:
            break
        previous = gap
    return np.nan, gap, tol


def others(model, X):
    """The competing solvers of a problem: ``{label: make(tol)}``."""
    n = X.shape[0]
    l1, l2 = model._strengths()
    if isinstance(model, LinearRegressor) and l1 == 0:
        return {
            "sklearn ridge cholesky": lambda tol: Ridge(alpha=n * l2, tol=tol, solver="cholesky"),
            "sklearn ridge lsqr": lambda tol: Ridge(alpha=n * l2, tol=tol, solver="lsqr"),
        }
    if isinstance(model, LinearRegressor):
        solvers = {"sklearn cd": lambda tol: Lasso(alpha=model.l1, tol=tol, max_iter=100_000)}
        if not scipy.sparse.issparse(X):
            solvers["sklearn cd gram"] = lambda tol: Lasso(
                alpha=model.l1, tol=tol, max_iter=100_000, precompute=True
            )
        if importlib.util.find_spec("skglm"):
            from skglm import Lasso as SkglmLasso

            solvers["skglm"] = lambda tol: SkglmLasso(alpha=model.l1, tol=tol, max_iter=1000)
        if importlib.util.find_spec("celer"):
            from celer import Lasso as CelerLasso

            solvers["celer"] = lambda tol: CelerLasso(alpha=model.l1, tol=tol, max_iter=1000)
        return solvers
    strength = l1 + l2

    def logistic(solver, **extra):
        return lambda tol: LogisticRegression(
            C=1 / (n * strength), l1_ratio=l1 / strength, solver=solver, tol=tol,
            max_iter=100_000, **extra,
        )  # fmt: skip

    solvers = {"sklearn saga": logistic("saga")}
    if l1 == 0:
        solvers["sklearn lbfgs"] = logistic("lbfgs")
    if l1 == 0 or l2 == 0:
        solvers["liblinear"] = logistic("liblinear", intercept_scaling=100.0)
    if l1 > 0 and importlib.util.find_spec("skglm"):
        from skglm import SparseLogisticRegression

        solvers["skglm"] = lambda tol: SparseLogisticRegression(
            alpha=strength, l1_ratio=l1 / strength, tol=tol, max_iter=1000
        )
    return solvers


def tightness(model, X, y):
    """The fitted gap and the rescaled-residual gap at the fitted parameters, each over the true
    suboptimality ``P − P*`` (``P*`` from a fit by the same solver to a gap of ``1e-12``)."""
    reference = clone(model).set_params(tol=1e-12, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
    lowest = reference.objective_ - reference.duality_gap_  # ≤ P*
    suboptimality = model.objective_ - reference.objective_  # ≤ P − P*
    residual = model.duality_gap(X, y)
    return suboptimality, lowest, residual


def ratio(gap, lower, upper, roundoff):
    """``gap/(P − P*)`` for ``P − P* ∈ [lower, upper]`` as bounds, or which of the two is at the
    round-off of ``P`` (``roundoff``), where a ratio means nothing."""
    if abs(gap) <= roundoff:
        return f"gap at the round-off of P ({roundoff:.1e})"
    if upper <= roundoff:
        return f"P − P* at the round-off of P ({roundoff:.1e})"
    high = f"{gap / lower:.3g}" if lower > roundoff else "? (P − P* may be at round-off)"
    return f"gap/(P − P*) ≥ {gap / upper:.3g}, ≤ {high}"


def pass_costs(model, X, labels):
    """Milliseconds of one gradient of ``model``'s smooth objective on the data as the fit reads
    them (``X`` itself through the standardisation's affine map, or its standardised copy; on
    the host or the device, as the fit; best of 19, taken in turn): L-BFGS's pass, fused over
    blocks of rows; the same gradient as two matrix-vector products over the whole of ``X`` (by
    hand, in NumPy on the host, in JAX on the device); and the floor of a pass, one read of
    ``X`` (NumPy's ``X @ w``). Returns the three and where the fit's gradient ran."""
    from mflangevin.models._linear_data import (
        HOST_VALUES,
        host_gradient,
        lbfgs_features,
        moments,
        smooth_gradient,
    )
    from mflangevin.models.losses import get_loss
    from mflangevin.solvers.lbfgs import _evaluate

    n, p = X.shape
    mean, scale = moments(X, model.fit_intercept)
    host = jax.default_backend() == "cpu" and n * p <= HOST_VALUES
    features, shift, inverse, host = lbfgs_features(X, mean, scale, host)
    rows = features.shape[0]
    weights, signed = np.zeros(rows), np.zeros(rows)
    weights[:n], signed[:n] = 1 / n, model._problem(X, labels)[1]
    ridge = np.full(p, model.l2) * scale**-2
    data = (features, signed, weights, ridge, shift, inverse)
    xp = np if host else jnp
    data = data if host else jax.device_put(data)
    derivative = get_loss(model._loss_name).derivative

    def two_products(x, data):
        features, signed, weights, ridge, shift, inverse = data
        u = inverse * x[:p]
        g = weights * np.asarray(derivative(features @ u + x[p] - shift @ u, signed))
        return xp.append(inverse * (g @ features - shift * xp.sum(g)) + ridge * x[:p], xp.sum(g))

    x = np.random.default_rng(0).normal(size=p + 1) / np.sqrt(p)
    if host:
        fused = host_gradient(model._loss_name)
        computations = {
            "fused": lambda: fused(x, data),
            "two products": lambda: two_products(x, data),
        }
    else:
        fused = smooth_gradient(model._loss_name)
        computations = {
            "fused": lambda: np.asarray(_evaluate(fused, x, data)),
            "two products": lambda: np.asarray(_evaluate(two_products, x, data)),
        }
    computations["one read"] = lambda: X @ x[:p]
    seconds = {name: [] for name in computations}
    # In turn, each gradient after NumPy's read of X: both find the cache in the same state.
    for _ in range(20):
        for name in ("one read", "fused", "one read", "two products"):
            start = time.perf_counter()
            computations[name]()
            seconds[name].append(time.perf_counter() - start)
    costs = [1e3 * min(seconds[name][1:]) for name in computations]  # the first call compiles
    return (*costs, "NumPy on the host" if host else "compiled")


def run(name, model, X, labels, cap):
    print(f"\n{name}")
    seconds = None
    chosen = model._solver(X, *model._strengths())
    named = ("lbfgs", "acc-prox-svrg") if model.l1 == 0 else ("cd", "acc-prox-svrg")
    if isinstance(model, LinearRegressor) and not scipy.sparse.issparse(X):
        named = ("gram", *named)
    solvers = ("auto", *(solver for solver in named if solver != chosen))
    for solver in solvers:
        ours = clone(model).set_params(solver=solver)
        try:  # the solvers by name stop at the cap, as the others do
            elapsed, first = time_ours(ours, X, labels, None if solver == "auto" else cap)
        except Capped:
            print(f"  {'mflangevin ' + solver:<26} > {cap:g} s (--cap)")
            continue
        seconds = seconds or elapsed
        chosen = ours._solver(X, *ours._strengths())
        print(
            f"  {'mflangevin ' + solver:<26} {elapsed:9.4f} s  (first fit {first:.2f} s)  gap "
            f"{ours.duality_gap_:.1e}  {ours.n_passes_:.0f} passes, {ours.n_iter_} iterations"
            + (f"  [{chosen}]" if solver == "auto" else "")
            + ("" if solver == "auto" else f"  ratio {solver}/auto = {elapsed / seconds:.2f}")
        )
        if solver == "auto":
            suboptimality, lowest, residual = tightness(ours, X, labels)
            floor = ours.objective_ - lowest
            roundoff = 8 * np.finfo(np.float64).eps * abs(ours.objective_)
            print(
                f"  {'':<26} certificate: gap {ours.duality_gap_:.1e}, P − P* ∈ "
                f"[{suboptimality:.1e}, {floor:.1e}]: "
                f"{ratio(ours.duality_gap_, suboptimality, floor, roundoff)}; "
                f"rescaled residual alone: gap {residual:.1e}, "
                f"{ratio(residual, suboptimality, floor, roundoff)}"
            )
    if model.l1 == 0 and not scipy.sparse.issparse(X):
        fused, two, floor, where = pass_costs(model, X, labels)
        print(
            f"  {'L-BFGS gradient pass':<26} {fused:8.1f} ms fused ({where}), {two:.1f} ms as two "
            f"products ({two / fused:.2f}), one read of X by NumPy {floor:.1f} ms "
            f"({fused / floor:.2f})"
        )
    fastest = np.inf
    for label, make in others(model, X).items():
        other, gap, tol = time_certified(make, model, X, labels, cap)
        if label.startswith("sklearn") or label == "liblinear":
            fastest = np.fmin(fastest, other)
        print(
            f"  {label:<26} {other:9.4f} s  (tol = {tol:.0e})  gap {gap:.1e}   "
            f"ratio {label}/mflangevin = {other / seconds:.2f}"
        )
    if np.isfinite(fastest):
        print(f"  fastest scikit-learn solver / mflangevin auto = {fastest / seconds:.2f}")
    else:
        print("  no scikit-learn solver certified the gap within --cap: mflangevin auto alone did")


def main(argv=None):
    args = parse_args(argv)
    scale = 10 if args.full else 1
    n, p = args.samples * scale, args.features
    print(f"float64, target: certified duality gap ≤ {TARGET:g}")
    print(f"{jax.devices()[0].platform} backend; the other solvers on one CPU core")
    if {"sparse-l1", "sparse-lasso"} & set(args.problems) and not args.small:
        n_sparse, p_sparse = args.sparse_samples * scale, args.sparse_features
        X, y, target = sparse_data(n_sparse, p_sparse, args.density)
        print(
            f"\nsparse: n = {n_sparse}, p = {p_sparse}, density {args.density:g} "
            f"({X.nnz} non-zeros)"
        )
        if "sparse-l1" in args.problems:
            l1 = largest_l1(X, y.astype(float)) / 10
            model = LinearClassifier(l1=l1, tol=TARGET, max_iter=1000)
            run(f"L1 logistic (λ₁ = λ_max/10 = {l1:.3g})", model, X, y, args.cap)
        if "sparse-lasso" in args.problems:
            l1 = largest_l1(X, target) / 10
            model = LinearRegressor(l1=l1, tol=TARGET, max_iter=1000)
            run(f"lasso (λ₁ = λ_max/10 = {l1:.3g})", model, X, target, args.cap)
    dense = [key for key in args.problems if not key.startswith("sparse")]
    if not dense:
        return
    if args.small:
        (X, y), (X_regression, target) = small_data()
        strengths = {"l2": 1e-3, "elastic-net": 1e-3, "l1": 1 / (0.1 * X.shape[0])}  # C = 0.1
        print(f"\nbreast cancer: n, p = {X.shape}; diabetes: n, p = {X_regression.shape}")
    else:
        X, y, target = dense_data(n, p)
        X_regression = X
        strengths = {"l2": 1e-4, "elastic-net": 1e-4, "l1": 1e-3}
        print(f"\ndense: n = {n}, p = {p}")
    alpha_max = largest_l1(X_regression, target)
    l2, both, l1 = strengths["l2"], strengths["elastic-net"], strengths["l1"]
    cases = {
        "l2": (f"L2 (λ₂ = {l2:.3g})", LinearClassifier(l2=l2), X, y),
        "elastic-net": (
            f"elastic net (λ₁ = λ₂ = {both:.3g})",
            LinearClassifier(l1=both, l2=both),
            X,
            y,
        ),
        "l1": (f"L1 (λ₁ = {l1:.3g})", LinearClassifier(l1=l1), X, y),
        "lasso": (
            f"lasso (λ₁ = α_max/10 = {alpha_max / 10:.3g})",
            LinearRegressor(l1=alpha_max / 10),
            X_regression,
            target,
        ),
        "ridge": ("ridge (λ₂ = 1e-3)", LinearRegressor(l2=1e-3), X_regression, target),
    }
    for key in dense:
        name, model, features, labels = cases[key]
        run(name, model.set_params(tol=TARGET, max_iter=1000), features, labels, args.cap)


if __name__ == "__main__":
    main()
