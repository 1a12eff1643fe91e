"""Regenerate every example output and figure that the documentation quotes.

Each run of ``RUNS`` starts from the repository root as the page that quotes it says to run it;
its printed output goes to ``docs/outputs/<name>.txt`` (the pages include these files, so what
they show is what the code printed) and its figures to the images the pages show.
``docs/outputs/versions.txt`` records the library versions and the machine that produced them,
with each run's wall time (the durations the docs state are these, with a margin).

    .venv/bin/python tools/regenerate_docs.py                  # every run, several minutes
    .venv/bin/python tools/regenerate_docs.py duality_gap ...  # only these

The runs are seeded: with the same library versions, regenerating changes nothing but the wall
times and the timing columns of the outputs that print them (numpyro_mean_field, resfgb).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "docs" / "outputs"
IMAGES = "docs/guides/img"

# name: the command line after the interpreter, run from the repository root.
RUNS = {
    "teacher_student": ["-m", "mflangevin", "--out", f"{IMAGES}/teacher_student.png"],
    "duality_gap": ["examples/duality_gap.py", "--out", "docs/theory/duality_gap.png"],
    "arviz_diagnostics": ["examples/arviz_diagnostics.py", "--out", f"{IMAGES}/arviz.png"],
    "propagation_of_chaos": [
        "examples/propagation_of_chaos.py",
        "--out",
        f"{IMAGES}/propagation_of_chaos.png",
    ],
    "ntk_eigendecay": ["examples/ntk_eigendecay.py", "--out", f"{IMAGES}/ntk_eigendecay.png"],
    "ntk_asgd_rate": ["examples/ntk_asgd_rate.py", "--out", f"{IMAGES}/ntk_asgd_rate.png"],
    "pda_regression": ["examples/pda_regression.py", "--out", f"{IMAGES}/pda_regression.png"],
    "pda_classification_2d": [
        "examples/pda_classification_2d.py",
        "--out",
        f"{IMAGES}/pda_classification_2d.png",
    ],
    "numpyro_mean_field": [
        "examples/numpyro_mean_field.py",
        "--out",
        f"{IMAGES}/numpyro_mean_field.png",
    ],
    "variance_reduction": [
        "examples/variance_reduction.py",
        "--out",
        f"{IMAGES}/variance_reduction.png",
    ],
    "acc_prox_svrg": [
        "examples/acc_prox_svrg.py",
        "--full",
        "--out",
        f"{IMAGES}/acc_prox_svrg.png",
    ],
    "resfgb_classification": [
        "examples/resfgb_classification.py",
        "--out",
        f"{IMAGES}/resfgb_classification.png",
    ],
}

PACKAGES = ("jax", "jaxlib", "numpy", "blackjax", "numpyro", "arviz", "scikit-learn", "matplotlib")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help=f"runs to regenerate, of {', '.join(RUNS)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; the runs are {', '.join(RUNS)}")
    return args


def run(name: str) -> float:
    """Run ``name`` and write its output; its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *RUNS[name]], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{name} failed:\n{result.stderr[-3000:]}")
    (OUTPUTS / f"{name}.txt").write_text(result.stdout)
    return seconds


def write_versions(seconds: dict[str, float]) -> None:
    path = OUTPUTS / "versions.txt"
    previous = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("  ") and " s  " in line:
                name, _, rest = line.strip().partition(" ")
                previous[name] = float(rest.split()[0])
    previous.update(seconds)
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PACKAGES)
    lines = [
        f"Python {platform.python_version()}, {versions}",
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"JAX on the {_backend()}",
        "wall time of each run (seconds):",
        *(
            f"  {name} {previous[name]:.0f} s  python {' '.join(RUNS[name])}"
            for name in RUNS
            if name in previous
        ),
    ]
    path.write_text("\n".join(lines) + "\n")


def _backend() -> str:
    import jax

    return jax.default_backend().upper()


def main(argv=None) -> None:
    names = parse_args(argv).names or list(RUNS)
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name in names:
        print(f"{name} ...", end=" ", flush=True)
        seconds[name] = run(name)
        print(f"{seconds[name]:.0f} s", flush=True)
    write_versions(seconds)


if __name__ == "__main__":
    main()
