"""Speed of one MFLD step of the mean-field tanh network, against a hand-written step and peers.

Five ways to move ``N`` particles one step, and a floor, on teacher–student regression, all
jitted and run as a ``lax.scan`` of ``--steps`` steps, timed in one process after compilation:

* ``mflangevin``: ``mflangevin.mfld`` on ``MeanFieldNetwork("tanh").objective(X, y, l2=...)``;
* ``hand``: the same update written by hand as one fused function of one flat array
  ``[w | b]`` with the bias folded into the matrix product as a column of ones;
* ``hand, w and b``: the same, with ``w`` and ``b`` apart as the model keeps them;
* ``blackjax.sgld``: SGLD on the N-particle Gibbs density ``π_N ∝ exp(−N F_N/λ) Π ν`` (the same
  dynamics), its gradient by autodiff;
* ``blackjax.svgd``: one SVGD step at the same ``N`` on the proximal Gibbs density of the initial
  measure (the nearest interacting-particle peer; its cost has an ``O(N²p)`` kernel term);
* ``floor: 2 GEMMs+tanh``: the forward product, the activation and the backward product alone,
  the least any full-drift step must do.

Prints milliseconds per step and the ratios ``mflangevin / other``, and beside them XLA's own
count of floating-point operations and bytes accessed per step (exact, whatever the machine's
load). XLA counts the body of a loop once: a step that walks its data in several blocks (the
default when ``N·n`` exceeds ``mflangevin.objectives.BLOCK_ELEMENTS``) reports one block's flops
and bytes. Run:
``.venv/bin/python benchmarks/mfld_step.py`` (add ``--sizes 2000,32,2048`` to choose sizes).
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
        "--sizes",
        nargs="+",
        default=["2000,32,2048", "8000,64,4096"],
        help="problem sizes as n,d,N triples (samples, input dimension, particles)",
    )
    parser.add_argument("--steps", type=int, default=20, help="steps per timed scan")
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed scans per method; the best is reported"
    )
    parser.add_argument(
        "--svgd-max-particles",
        type=int,
        default=8192,
        help="skip SVGD (O(N²) per step) above this N",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()

import time

import blackjax
import jax
import jax.numpy as jnp
import optax

import mflangevin
from mflangevin.datasets import teacher_student
from mflangevin.models import MeanFieldNetwork

ETA, LAM, L2 = 0.1, 1e-3, 1e-3


def scan_steps(step):
    """Jitted loop of ``step(key, state)`` over a batch of keys, and the step itself."""

    @jax.jit
    def run(state, keys):
        return jax.lax.scan(lambda s, k: (step(k, s), None), state, keys)[0]

    run.step = step
    return run


def xla_cost(run, state):
    """Flops and bytes accessed of one compiled step, from XLA's cost analysis."""
    cost = jax.jit(run.step).lower(jax.random.key(0), state).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("flops", float("nan")), cost.get("bytes accessed", float("nan"))


def build(n, d, num, svgd_max_particles):
    X, y, _ = teacher_student(jax.random.key(0), n, d)
    net = MeanFieldNetwork("tanh")
    particles = net.init_particles(jax.random.key(1), num, d)
    objective = net.objective(X, y, l2=L2)
    runners = {}

    algorithm = mflangevin.mfld(objective, step_size=ETA, temperature=LAM)
    runners["mflangevin"] = (
        scan_steps(lambda k, s: algorithm.step(k, s)[0]),
        algorithm.init(particles),
    )

    X1 = jnp.concatenate([X, jnp.ones((n, 1), X.dtype)], axis=1)  # bias as a last input

    def hand_step(key, theta):
        # (N, n) orientation: on CPU the faster of the two ways to lay the product out.
        H = jnp.tanh(theta @ X1.T)  # theta = [w | b] is (N, d + 1)
        residual = jnp.mean(H, axis=0) - y
        G = (1 - H**2) * (residual / n)[None, :]  # ℓ'(f(x_j)) σ'(θ_iᵀx_j) / n
        drift = G @ X1 + 2 * L2 * theta
        noise = jax.random.normal(key, theta.shape)
        return theta - ETA * drift + jnp.sqrt(2 * LAM * ETA) * noise

    runners["hand"] = (
        scan_steps(hand_step),
        jnp.concatenate([particles["w"], particles["b"][:, None]], axis=1),
    )

    def hand_step_wb(key, state):
        # The same step with w and b apart, as the model keeps them: the bias costs its own
        # pass over the (N, n) matrix (its add, and its gradient's sum over the data).
        W, b = state
        H = jnp.tanh(W @ X.T + b[:, None])
        residual = jnp.mean(H, axis=0) - y
        G = (1 - H**2) * (residual / n)[None, :]
        key_W, key_b = jax.random.split(key)
        scale = jnp.sqrt(2 * LAM * ETA)
        W = W - ETA * (G @ X + 2 * L2 * W) + scale * jax.random.normal(key_W, W.shape)
        b = b - ETA * (jnp.sum(G, axis=1) + 2 * L2 * b) + scale * jax.random.normal(key_b, b.shape)
        return W, b

    runners["hand, w and b"] = (scan_steps(hand_step_wb), (particles["w"], particles["b"]))

    def floor_step(key, theta):
        # The realistic floor of any full-drift step: the forward product, the activation and
        # the backward product, with nothing else (no loss, no derivative, no noise).
        del key
        return theta - ETA * (jnp.tanh(theta @ X1.T) @ X1)

    runners["floor: 2 GEMMs+tanh"] = (
        scan_steps(floor_step),
        jnp.concatenate([particles["w"], particles["b"][:, None]], axis=1),
    )

    def scaled_log_gibbs(p, _):
        # λ log π_N = −N F_N(Θ) (the L2 penalty is the Gaussian reference here).
        return -num * objective.energy(p)

    sgld = blackjax.sgld(jax.grad(scaled_log_gibbs))
    runners["blackjax.sgld"] = (scan_steps(lambda k, s: sgld.step(k, s, None, ETA, LAM)), particles)

    if num > svgd_max_particles:
        return runners
    g0 = objective.risk_gradient(objective.mean_embedding(particles))
    svgd = blackjax.svgd(
        jax.grad(lambda theta: -objective.first_variation(g0, theta) / LAM), optax.sgd(ETA)
    )
    runners["blackjax.svgd"] = (scan_steps(lambda k, s: svgd.step(s)), svgd.init(particles))
    return runners


def time_runners(runners, steps, repeats):
    """Best seconds per step of each runner; the runners take turns within each repeat so
    that a change in machine load hits all of them alike, and each timed scan follows an
    untimed one of the same runner, so that no runner pays for the caches and memory another
    left behind. SVGD, whose step is O(N²), runs fewer steps per scan."""
    keys = {
        name: jax.random.split(
            jax.random.key(2), steps if name != "blackjax.svgd" else max(1, steps // 10)
        )
        for name in runners
    }
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (run, state) in runners.items():
            jax.block_until_ready(run(state, keys[name]))
            start = time.perf_counter()
            jax.block_until_ready(run(state, keys[name]))
            times[name].append((time.perf_counter() - start) / len(keys[name]))
    # The minimum is the time least disturbed by other work on the machine (as timeit advises).
    return {name: min(t) for name, t in times.items()}


def main(argv=None):
    args = parse_args(argv)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"best of {args.repeats} scans of {args.steps} steps"
    )
    for size in args.sizes:
        n, d, num = (int(v) for v in size.split(","))
        runners = build(n, d, num, args.svgd_max_particles)
        timings = time_runners(runners, args.steps, args.repeats)
        costs = {name: xla_cost(run, state) for name, (run, state) in runners.items()}
        print(f"\n(n, d, N) = ({n}, {d}, {num})")
        print(
            f"  {'':20s} {'ms/step':>9s} {'ours/this':>10s} {'GFLOP':>8s} {'ours/this':>10s}"
            f" {'MB moved':>9s} {'ours/this':>10s}"
        )
        ours_time, (ours_flops, ours_bytes) = timings["mflangevin"], costs["mflangevin"]
        for name, seconds in timings.items():
            flops, moved = costs[name]
            print(
                f"  {name:20s} {1e3 * seconds:9.3f} {ours_time / seconds:10.3f}"
                f" {flops / 1e9:8.3f} {ours_flops / flops:10.3f}"
                f" {moved / 1e6:9.1f} {ours_bytes / moved:10.3f}"
            )


if __name__ == "__main__":
    main()
