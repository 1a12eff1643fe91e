"""The examples answer ``--help`` at once: they parse their command line before importing JAX."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))

# Run the example as a script with --help, then report which heavy modules it had imported.
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    assert exit.code == 0, exit.code
print(sorted(name for name in ("jax", "matplotlib", "sklearn", "numpyro") if name in sys.modules))
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_help_lists_out_and_imports_nothing_heavy(path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
    )
    help_text, imported = result.stdout.rsplit("\n", 2)[:2]
    help_text = " ".join(help_text.split())  # argparse wraps its lines
    assert imported == "[]"
    assert "--out" in help_text and "relative to the current directory" in help_text
    assert "(default:" in help_text
