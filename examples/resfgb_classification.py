"""ResFGB against logistic regression, an MLP and gradient-boosted trees on offline data sets.

For each data set (scikit-learn's digits, breast cancer and wine, and two moons embedded in ten
dimensions), a stratified 60/20/20 train/validation/test split: the baselines train on the
training part, ResFGB grows its network on it and picks its depth on the validation part. Prints
train and test accuracy, the depth chosen and the fitting time, for ResFGB with the reference MLP
block and with a block fitted as a mean-field network by MFLD (our extension); saves a figure of
accuracy against the number of boosting iterations (reference block).

    .venv/bin/python examples/resfgb_classification.py         # 2-3 minutes on a 2-core CPU
    .venv/bin/python examples/resfgb_classification.py --full  # reference size: 30 iterations
"""

import argparse
import os
import sys
import time
from pathlib import Path


def parse_args():
    """The command line, parsed before the slow imports so that ``--help`` answers at once."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="reference-sized run")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("figures/resfgb_classification.png"),
        help="where to save the figure, relative to the current directory",
    )
    return parser.parse_args()


if __name__ == "__main__":
    parse_args()

# On a small CPU, scikit-learn's OpenMP threads compete with JAX's own thread pool, and the
# gradient-boosting baseline then runs up to ten times slower: one OpenMP thread unless the
# environment asks for more.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax
import matplotlib
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_moons
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from mflangevin.models import MFLDBlock, MLPBlock, ResFGB, resnet

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def moons_10d(seed: int = 0):
    """Two moons in the first two coordinates, Gaussian noise in eight more."""
    X, y = make_moons(1000, noise=0.15, random_state=seed)
    noise = 0.5 * np.random.default_rng(seed).normal(size=(X.shape[0], 8))
    return np.concatenate([X, noise], axis=1), y


DATASETS = {
    "digits": lambda: load_digits(return_X_y=True),
    "breast cancer": lambda: load_breast_cancer(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "moons (10-d)": moons_10d,
}


def baselines(seed: int):
    return {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "MLP (100, 100)": make_pipeline(
            StandardScaler(),
            MLPClassifier((100, 100), max_iter=1000, random_state=seed),
        ),
        "hist. grad. boosting": HistGradientBoostingClassifier(random_state=seed),
    }


def test_accuracy_by_depth(model: ResFGB, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    X = jax.numpy.asarray(X, jax.numpy.float32)
    accuracy = []
    for depth in range(model.num_iterations + 1):
        logits = resnet.apply(model.network(depth), X)
        accuracy.append(np.mean(model.classes_[np.argmax(logits, axis=1)] == y))
    return np.array(accuracy)


def main():
    args = parse_args()
    if args.full:
        settings = dict(num_iterations=30, step_size=0.1)
    else:
        settings = dict(num_iterations=20, step_size=0.5)

    rows, curves = [], {}
    for name, load in tqdm(DATASETS.items(), desc="data sets", disable=not sys.stderr.isatty()):
        X, y = load()
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.2, random_state=args.seed, stratify=y
        )
        X_train, X_val, y_train, y_val = train_test_split(
            X_train, y_train, test_size=0.25, random_state=args.seed, stratify=y_train
        )
        for method, model in baselines(args.seed).items():
            start = time.perf_counter()
            model.fit(X_train, y_train)
            seconds = time.perf_counter() - start
            scores = model.score(X_train, y_train), model.score(X_test, y_test)
            rows.append((name, method, *scores, "", seconds))
        for method, block in (("ResFGB", MLPBlock()), ("ResFGB, MFLD block", MFLDBlock())):
            model = ResFGB(**settings, block=block, seed=args.seed)
            start = time.perf_counter()
            model.fit(X_train, y_train, X_val, y_val)
            seconds = time.perf_counter() - start
            scores = model.score(X_train, y_train), model.score(X_test, y_test)
            rows.append((name, method, *scores, str(model.depth_), seconds))
            curves.setdefault(name, (model, test_accuracy_by_depth(model, X_test, y_test)))

    columns = ("train acc", "test acc", "depth", "time (s)")
    header = f"{'data set':<14} {'method':<20} " + " ".join(f"{c:>9}" for c in columns)
    print(header)
    print("-" * len(header))
    for name, method, train, test, depth, seconds in rows:
        print(f"{name:<14} {method:<20} {train:>9.3f} {test:>9.3f} {depth:>9} {seconds:>9.2f}")
    print("ResFGB time includes compilation (one per data set).")

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.4), sharey=False)
    for ax, (name, (model, test)) in zip(axes, curves.items(), strict=True):
        history = model.history_
        ax.plot(history["depth"], history["train_accuracy"], label="train")
        ax.plot(history["depth"], history["val_accuracy"], label="validation")
        ax.plot(history["depth"], test, label="test")
        ax.axvline(model.depth_, color="grey", linestyle=":", label="depth chosen")
        curves_coincide = np.allclose(history["train_accuracy"], test) and np.allclose(
            history["val_accuracy"], test
        )
        ax.set_title(f"{name}{' (the three curves coincide)' if curves_coincide else ''}")
        ax.set_xlabel("boosting iterations (depth)")
        ax.set_ylabel("accuracy (fraction correct)")
    axes[0].legend()
    fig.suptitle(
        "ResFGB (reference block): accuracy against depth; the dotted line is the depth "
        "chosen on the validation split"
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"figure saved to {args.out}")


if __name__ == "__main__":
    main()
