"""The examples, benchmarks and tools answer ``--help`` at once, with help on every option: they
parse their command line before importing JAX."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "tools").glob("*.py"))

# Run the script with --help, recording the parsers it builds; then report which heavy modules it
# had imported and which of its options have no help text.
PROBE = """
import argparse, json, runpy, sys
parsers, parse = [], argparse.ArgumentParser.parse_args
def recording(self, *args, **kwargs):
    parsers.append(self)
    return parse(self, *args, **kwargs)
argparse.ArgumentParser.parse_args = recording
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    assert exit.code == 0, exit.code
print(json.dumps({
    "imported": sorted(m for m in ("jax", "matplotlib", "sklearn", "numpyro") if m in sys.modules),
    "undocumented": [a.dest for p in parsers for a in p._actions if not a.help],
}))
"""


def _help(path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
    )
    help_text, report = result.stdout.rstrip("\n").rsplit("\n", 1)
    return " ".join(help_text.split()), json.loads(report)  # argparse wraps its lines


@pytest.mark.parametrize("path", EXAMPLES + BENCHMARKS, ids=lambda path: path.name)
def test_help_is_instant_and_documents_every_option(path):
    help_text, report = _help(path)
    assert report == {"imported": [], "undocumented": []}
    assert "(default:" in help_text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_examples_say_where_their_output_goes(path):
    help_text, _ = _help(path)
    assert "--out" in help_text and "relative to the current directory" in help_text
