"""The ``mflangevin`` command: the main demo, experiment 1 of docs/theory/experiments.md.

A mean-field two-layer tanh network learns a teacher network by MFLD. The objective falls, the
test error falls, and the particles line up with the teacher's neurons.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from mflangevin._files import replace_atomically

__all__ = ["main", "teacher_student_demo"]


def teacher_student_demo(
    *,
    num_samples: int = 1000,
    input_dim: int = 10,
    num_teacher: int = 3,
    num_particles: int = 1000,
    num_steps: int = 3000,
    step_size: float = 0.5,
    temperature: float = 1e-4,
    l2: float = 1e-3,
    report_every: int = 250,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Run MFLD on teacher–student regression and record its progress.

    Returns the history ``{"step", "objective", "test_error", "similarity"}``, recorded every
    ``report_every`` steps, printing each record as it is made. Raises ``FloatingPointError``
    when the run diverges (``info.is_divergent``): a refused particle move, or an objective that is
    not finite or exceeds the running best by the kernel's factor :data:`DIVERGENCE_FACTOR`.

    Examples
    --------
    >>> history = teacher_student_demo(num_samples=30, num_particles=8, num_steps=40,
    ...                                report_every=20, progress=False)  # doctest: +ELLIPSIS
    step ...
    >>> len(history["objective"])
    3
    """
    from tqdm.auto import tqdm

    import mflangevin
    from mflangevin.datasets import teacher_similarity, teacher_student
    from mflangevin.models import MeanFieldNetwork

    if num_steps < 1 or report_every < 1:
        raise ValueError("num_steps and report_every must be >= 1.")
    key_data, key_init, key_run = jax.random.split(jax.random.key(seed), 3)
    X, y, teacher = teacher_student(key_data, 2 * num_samples, input_dim, num_teacher)
    X, X_test, y, y_test = X[:num_samples], X[num_samples:], y[:num_samples], y[num_samples:]

    net = MeanFieldNetwork("tanh", loss="squared")
    objective = net.objective(X, y, l2=l2)
    algorithm = mflangevin.mfld(
        objective, step_size, temperature, divergence_factor=DIVERGENCE_FACTOR
    )
    state = algorithm.init(net.init_particles(key_init, num_particles, input_dim))

    @jax.jit
    def run_chunk(state, keys):
        return jax.lax.scan(lambda s, k: algorithm.step(k, s), state, keys)

    def record(step, energy):
        history["step"].append(step)
        history["objective"].append(float(energy))
        history["test_error"].append(
            float(jnp.mean((net.predict(state.position, X_test) - y_test) ** 2))
        )
        history["similarity"].append(float(teacher_similarity(state.position, teacher)))
        line = (
            f"step {step:6d}  objective {history['objective'][-1]:.5f}  "
            f"test MSE {history['test_error'][-1]:.5f}  "
            f"teacher similarity {history['similarity'][-1]:.3f}"
        )
        (bar.write if bar is not None else print)(line)

    history: dict[str, list[float]] = {
        k: [] for k in ("step", "objective", "test_error", "similarity")
    }
    bar = tqdm(total=num_steps, desc="MFLD", unit="step") if progress else None
    record(0, objective.energy(state.position))
    keys = jax.random.split(key_run, num_steps)
    for start in range(0, num_steps, report_every):
        chunk = keys[start : start + report_every]
        state, info = run_chunk(state, chunk)
        if bool(jnp.any(info.is_divergent)):
            first = start + int(jnp.argmax(info.is_divergent))
            raise FloatingPointError(
                f"MFLD diverged at step {first}: the objective rose to "
                f"{float(info.energy[first - start]):.4g}, over {DIVERGENCE_FACTOR:g} times its "
                "best value, or a particle's move was refused (non-finite or huge); lower the "
                "step size."
            )
        if bar is not None:
            bar.update(len(chunk))
        record(start + len(chunk), objective.energy(state.position))
    if bar is not None:
        bar.close()
    return history


def _plot(history: dict[str, list[float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].semilogy(history["step"], history["objective"], label="objective F(μ)")
    axes[0].semilogy(history["step"], history["test_error"], label="test MSE")
    axes[0].set_xlabel("MFLD step")
    axes[0].set_ylabel("squared-error units (log scale)")
    axes[0].set_title("training objective and test error", fontsize=10)
    axes[0].legend()
    axes[1].plot(history["step"], history["similarity"], color="C2")
    axes[1].set_xlabel("MFLD step")
    axes[1].set_ylabel("teacher–particle similarity (cosine)")
    axes[1].set_title("particles aligning with the teacher's neurons", fontsize=10)
    axes[1].set_ylim(0, 1.02)
    fig.suptitle("Mean-field network learning a teacher network by MFLD")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Whole or not at all: a run killed while saving leaves the previous figure in place.
    with replace_atomically(path) as handle:
        fig.savefig(handle, format=os.path.splitext(path)[1][1:].lower(), dpi=120)
    plt.close(fig)


DEFAULT_FIGURE = "teacher_student.png"
FIGURE_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")
DIVERGENCE_FACTOR = 10.0
"""The demo's ``divergence_factor``: it stops when the objective exceeds its best by it."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _finite_float(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 or (allow_zero and value == 0)) or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _finite_float(text, allow_zero=False)


def _non_negative_float(text: str) -> float:
    return _finite_float(text, allow_zero=True)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [-2^63, 2^63), got {value}")
    return value


def _figure_path(out: str) -> str:
    """The file ``--out`` names: inside it when it is a directory; checked before the run."""
    if out.endswith(("/", os.sep)) or os.path.isdir(out):
        out = os.path.join(out, DEFAULT_FIGURE)
    extension = os.path.splitext(out)[1].lower()
    if extension not in FIGURE_FORMATS:
        raise ValueError(
            f"expected a directory or a file name ending in one of {', '.join(FIGURE_FORMATS)}, "
            f"got {out!r}"
        )
    if os.path.isdir(out):
        raise ValueError(f"{out!r} is a directory; give a file name or the directory above it")
    folder = os.path.dirname(os.path.abspath(out))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"cannot create the folder of {out!r}: {existing!r} is a file")
    try:  # a file made and removed: os.access says yes to root, even where nothing is written
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"cannot write to {existing!r}: {err.strerror}") from None
    if os.path.exists(out) and not os.access(out, os.W_OK):
        raise ValueError(f"cannot overwrite {out!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mflangevin`` and the ``mflangevin`` command.

    Runs :func:`teacher_student_demo` with the command-line options ``argv`` (``sys.argv`` when
    ``None``), saves the figure to ``--out`` and returns the exit status.

    Examples
    --------
    >>> import tempfile
    >>> args = ["--samples", "30", "--particles", "8", "--steps", "20", "--report-every", "20"]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     main([*args, "--out", f"{tmp}/demo.png"])  # doctest: +ELLIPSIS
    step      0  objective ...
    step     20  objective ...
    objective ... -> ..., teacher similarity ... figure saved to .../demo.png
    0
    """
    parser = argparse.ArgumentParser(
        prog="mflangevin",
        description="Teacher–student regression by mean-field Langevin dynamics "
        "(objective, test error and teacher–particle similarity as it learns).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--samples", type=_positive_int, default=1000, help="training samples n")
    parser.add_argument("--dim", type=_positive_int, default=10, help="input dimension d")
    parser.add_argument("--teacher", type=_positive_int, default=3, help="teacher neurons")
    parser.add_argument("--particles", type=_positive_int, default=1000, help="particles N")
    parser.add_argument("--steps", type=_positive_int, default=3000, help="MFLD steps")
    parser.add_argument("--step-size", type=_positive_float, default=0.5, help="η")
    parser.add_argument("--temperature", type=_positive_float, default=1e-4, help="λ")
    parser.add_argument("--l2", type=_non_negative_float, default=1e-3, help="L2 weight λ'")
    parser.add_argument(
        "--report-every", type=_positive_int, default=250, help="steps between two printed records"
    )
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the data and the run")
    parser.add_argument(
        "--out",
        default=f"figures/{DEFAULT_FIGURE}",
        help="where to save the figure, relative to the current directory (a directory: "
        f"{DEFAULT_FIGURE} inside it); checked before the run",
    )
    args = parser.parse_args(argv)
    try:
        out = _figure_path(args.out)
    except ValueError as err:
        parser.error(f"argument --out: {err}")

    start = time.perf_counter()
    try:
        history = teacher_student_demo(
            num_samples=args.samples,
            input_dim=args.dim,
            num_teacher=args.teacher,
            num_particles=args.particles,
            num_steps=args.steps,
            step_size=args.step_size,
            temperature=args.temperature,
            l2=args.l2,
            report_every=args.report_every,
            seed=args.seed,
            progress=sys.stderr.isatty(),
        )
    except FloatingPointError as err:
        print(f"mflangevin: {err}", file=sys.stderr)
        return 1
    _plot(history, out)
    print(
        f"objective {history['objective'][0]:.4f} -> {history['objective'][-1]:.4f}, "
        f"teacher similarity {history['similarity'][0]:.3f} -> {history['similarity'][-1]:.3f} "
        f"in {time.perf_counter() - start:.1f} s; figure saved to {out}"
    )
    return 0
