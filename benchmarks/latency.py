"""Time to first result: what a user waits for at the first call, against the nearest peer.

Every workload runs in fresh processes, after its imports and the backend's start-up (which are
not timed): the *first* call (tracing, compiling and running), then a *second* call with new
data or a new key of the same shapes, as a script's second fit or a notebook's second cell would
make it. A third and a fourth process run the first call with JAX's persistent compilation cache
in a new folder (``mflangevin.enable_compilation_cache``): *cold* (the cache is written) and then
*warm* (a new process reads it back).
Ratios are ours over the peer's: below 1, ours is faster.

Workloads: the README's first look (2000 MFLD steps), one MFLD step against one ``blackjax.sgld``
step on the N-particle Gibbs density, 100 steps of ``run_inference_algorithm`` of each, a NumPyro
model by ``mflangevin.numpyro.MFLD`` against NUTS, ``LinearClassifier.fit`` and a 5-fold
``cross_val_score`` against scikit-learn's ``LogisticRegression`` (L-BFGS), and ``duality_gap``.
"""

from __future__ import annotations

import argparse


def parse_args(argv=None):
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--only", nargs="+", help="run only these workloads (default: every one, in pairs)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="skip the persistent-cache processes"
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time each call by the CPU seconds of its process (all threads) instead of the wall "
        "clock: steadier on a machine shared with other work",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()

import json
import subprocess
import sys
import tempfile
import time

# (ours, the peer's): each name is a function below.
PAIRS = [
    ("readme_first_look", None),
    ("mfld_step", "sgld_step"),
    ("mfld_100_steps", "sgld_100_steps"),
    ("numpyro_mfld", "numpyro_nuts"),
    ("linear_model_fit", "sklearn_fit"),
    ("linear_model_cv", "sklearn_cv"),
    ("duality_gap", None),
]
N_STEP, D_STEP, PARTICLES_STEP = 2000, 32, 2048  # the MFLD step problem of benchmarks/mfld_step.py


def _network_problem(seed):
    import jax

    from mflangevin.datasets import teacher_student
    from mflangevin.models import MeanFieldNetwork

    X, y, _ = teacher_student(jax.random.key(seed), N_STEP, D_STEP)
    net = MeanFieldNetwork("tanh")
    particles = net.init_particles(jax.random.key(seed + 1), PARTICLES_STEP, D_STEP)
    return net.objective(X, y, l2=1e-3), particles


def _sgld(objective):
    import blackjax
    import jax

    num = PARTICLES_STEP
    return blackjax.sgld(jax.grad(lambda p, _: -num * objective.energy(p)))


def readme_first_look(seed):
    import blackjax
    import jax

    import mflangevin
    from mflangevin.datasets import teacher_student
    from mflangevin.models import MeanFieldNetwork

    X, y, _ = teacher_student(jax.random.key(seed), num_samples=1000, input_dim=10)
    net = MeanFieldNetwork("tanh", loss="squared")
    algorithm = mflangevin.mfld(net.objective(X, y, l2=1e-3), step_size=0.5, temperature=1e-4)
    particles = net.init_particles(jax.random.key(seed + 1), num_particles=1000, input_dim=10)
    _, (_, info) = blackjax.util.run_inference_algorithm(
        jax.random.key(seed + 2), algorithm, 2000, initial_position=particles
    )
    return info.energy[-1]


def mfld_step(seed):
    import jax

    import mflangevin

    objective, particles = _network_problem(seed)
    algorithm = mflangevin.mfld(objective, step_size=0.1, temperature=1e-3)
    return jax.jit(algorithm.step)(jax.random.key(seed), algorithm.init(particles))[0].position


def sgld_step(seed):
    import jax

    objective, particles = _network_problem(seed)
    sgld = _sgld(objective)
    step = jax.jit(lambda k, s: sgld.step(k, s, None, 0.1, 1e-3))
    return step(jax.random.key(seed), sgld.init(particles))


def mfld_100_steps(seed):
    import blackjax
    import jax

    import mflangevin

    objective, particles = _network_problem(seed)
    algorithm = mflangevin.mfld(objective, step_size=0.1, temperature=1e-3)
    return blackjax.util.run_inference_algorithm(
        jax.random.key(seed), algorithm, 100, initial_position=particles
    )[0].position


def sgld_100_steps(seed):
    import jax

    objective, particles = _network_problem(seed)
    sgld = _sgld(objective)

    def step(state, key):
        return sgld.step(key, state, None, 0.1, 1e-3), None

    keys = jax.random.split(jax.random.key(seed), 100)
    return jax.jit(lambda s, k: jax.lax.scan(step, s, k)[0])(sgld.init(particles), keys)


def _logistic_model():
    import numpyro
    import numpyro.distributions as dist

    def model(X, y=None):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta + intercept), obs=y)

    return model


def _logistic_data(seed):
    import jax
    import jax.numpy as jnp

    X = jax.random.normal(jax.random.key(seed), (500, 5))
    logits = X @ jnp.array([1.0, -2.0, 0.5, 0.0, 1.5])
    return X, jax.random.bernoulli(jax.random.key(seed + 1), jax.nn.sigmoid(logits)).astype(float)


def numpyro_mfld(seed):
    import jax
    from numpyro.infer import MCMC

    from mflangevin.numpyro import MFLD

    X, y = _logistic_data(seed)
    mcmc = MCMC(
        MFLD(_logistic_model(), num_particles=256),
        num_warmup=200,
        num_samples=100,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), X, y)
    return mcmc.get_samples()["beta"]


def numpyro_nuts(seed):
    import jax
    from numpyro.infer import MCMC, NUTS

    X, y = _logistic_data(seed)
    mcmc = MCMC(NUTS(_logistic_model()), num_warmup=200, num_samples=256, progress_bar=False)
    mcmc.run(jax.random.key(seed), X, y)
    return mcmc.get_samples()["beta"]


def _classification(seed, n=100_000, p=100):
    from sklearn.datasets import make_classification

    return make_classification(n, p, n_informative=min(20, p // 2), random_state=seed)


def linear_model_fit(seed):
    from mflangevin.models import LinearClassifier

    X, y = _classification(seed)
    return LinearClassifier(l2=1e-4).fit(X, y).coef_


def sklearn_fit(seed):
    from sklearn.linear_model import LogisticRegression

    X, y = _classification(seed)
    return LogisticRegression(C=1 / (len(y) * 1e-4), max_iter=1000).fit(X, y).coef_


def linear_model_cv(seed):
    from sklearn.model_selection import cross_val_score

    from mflangevin.models import LinearClassifier

    X, y = _classification(seed, n=10_003, p=20)  # folds of unequal sizes
    return cross_val_score(LinearClassifier(l2=1e-3), X, y, cv=5)


def sklearn_cv(seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = _classification(seed, n=10_003, p=20)
    return cross_val_score(LogisticRegression(C=1 / (8_000 * 1e-3)), X, y, cv=5)


def duality_gap(seed):
    import jax

    import mflangevin
    from mflangevin.datasets import teacher_student
    from mflangevin.models import MeanFieldNetwork

    X, y, _ = teacher_student(jax.random.key(seed), 500, 10)
    net = MeanFieldNetwork("tanh")
    particles = net.init_particles(jax.random.key(seed + 1), 1000, 10)
    objective = net.objective(X, y, l2=1e-3)
    return mflangevin.duality_gap(objective, particles, 1e-3, jax.random.key(seed + 2)).gap


def measure(name: str, calls: int, cache: str | None, cpu: bool = False) -> dict:
    """In this process: the imports, the backend started and, with ``cache``, the persistent
    compilation cache on in that folder; then ``calls`` timed calls of workload ``name`` (wall
    clock, or with ``cpu`` the process's CPU seconds)."""
    import blackjax  # noqa: F401  (every workload's imports, before the timing)
    import jax
    import jax.numpy as jnp
    import numpyro  # noqa: F401
    import sklearn.datasets  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    import mflangevin
    import mflangevin.models  # noqa: F401
    import mflangevin.numpyro  # noqa: F401

    if cache is not None:
        mflangevin.enable_compilation_cache(cache)
    jnp.zeros(()).block_until_ready()
    clock = time.process_time if cpu else time.perf_counter
    seconds = []
    for seed in range(calls):
        start = clock()
        try:
            jax.block_until_ready(globals()[name](10 * seed))
        except Exception as error:  # a workload that fails is reported, not hidden
            return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"}
        seconds.append(clock() - start)
    return {"seconds": seconds}


def run_process(name: str, calls: int, cache: str | None, cpu: bool) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps([name, calls, cache, cpu])],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return {"error": f"process failed: {result.stderr.strip().splitlines()[-1][:80]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def timings(name: str, use_cache: bool, cpu: bool) -> dict:
    """first and second call in one process; the first call with a cold and a warm cache."""
    row = run_process(name, 2, None, cpu)
    if "error" in row:
        return row
    row = {"first": row["seconds"][0], "second": row["seconds"][1]}
    if use_cache:
        with tempfile.TemporaryDirectory() as cache:
            for column in ("cold cache", "warm cache"):
                result = run_process(name, 1, cache, cpu)
                row[column] = result["seconds"][0] if "seconds" in result else float("nan")
    return row


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return
    import jax

    columns = ["first", "second"] + ([] if args.no_cache else ["cold cache", "warm cache"])
    unit = "CPU seconds" if args.cpu else "seconds"
    print(f"jax {jax.__version__} on {jax.default_backend()}; {unit} per call, fresh processes")
    print(f"{'workload':<20}" + "".join(f"{c:>12}" for c in columns) + "   ratio ours/peer")
    for ours, peer in PAIRS:
        if args.only and ours not in args.only and peer not in args.only:
            continue
        rows = {name: timings(name, not args.no_cache, args.cpu) for name in (ours, peer) if name}
        for name, row in rows.items():
            if "error" in row:
                print(f"{name:<20}  fails: {row['error']}")
                continue
            cells = "".join(f"{row[c]:12.3f}" for c in columns)
            ratio = ""
            if name == peer and "error" not in rows[ours]:
                ratio = "  " + " ".join(f"{rows[ours][c] / row[c]:5.2f}" for c in columns)
            print(f"{name:<20}{cells}{ratio}")


if __name__ == "__main__":
    main()
