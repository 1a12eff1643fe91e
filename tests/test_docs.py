"""Every code block of README.md and docs/ runs: the Python blocks of a page run in order, in one
namespace (a block may use what the page's earlier blocks defined), in a scratch directory. A block
that is not Python code to run (a shell command, a transcript, a diagram) says why on the line
before its fence, as an HTML comment that the rendered page does not show::

    <!-- not run: a diagram of the layers -->

A block that shows an example's output includes the file that ``tools/regenerate_docs.py`` wrote
from the example's run (``--8<-- "duality_gap.txt"``), so that what it shows is generated, not
copied. A block with none of these fails the count test below, so that no block goes unchecked
silently. A Python block written at a size that takes long to run gives the sizes the tests run it
at on the line before it, whole numbers replaced by smaller ones::

    <!-- test sizes: 2000 -> 50, 1000 -> 64 -->
"""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import jax
import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
REASON = re.compile(r"<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*\Z", re.S)
SNIPPET = re.compile(r'^--8<-- "(?P<file>[\w.]+)"$')
SIZES = re.compile(r"<!--\s*test sizes:(?P<sizes>[\d\s,>-]+)-->\s*\Z")


def _resized(code: str, sizes: str) -> str:
    """``code`` with each whole number ``a`` of ``sizes`` ("a -> b, ...") replaced by ``b``."""
    for pair in sizes.split(","):
        big, small = (int(part) for part in pair.split("->"))
        code, count = re.subn(rf"(?<![\w.]){big}(?![\w.])", str(small), code)
        assert count, f"test sizes: {big} does not occur in the block"
    return code


def blocks(page: Path) -> list[tuple[int, str, str, str | None]]:
    """The fenced blocks of ``page``: (line, language, code, the reason it is not run or None)."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason, sizes = REASON.search(before), SIZES.search(before)
        body = "\n".join(line[len(match["indent"]) :] for line in match["body"].splitlines())
        if sizes:
            body = _resized(body, sizes["sizes"])
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match["lang"], body, reason["reason"] if reason else None))
    return found


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


RUN = [
    page for page in PAGES if any(lang == "python" and not why for _, lang, _, why in blocks(page))
]


def _included(code: str) -> list[str]:
    """The files a block includes, if it is made of snippet lines only."""
    matches = [SNIPPET.match(line) for line in code.strip().splitlines()]
    return [m["file"] for m in matches] if matches and all(matches) else []


def test_every_block_runs_or_says_why_not():
    unexplained = [
        f"{_name(page)}:{line} ({lang or 'no language'})"
        for page in PAGES
        for line, lang, code, why in blocks(page)
        if lang != "python" and not why and not _included(code)
    ]
    assert not unexplained, "blocks that are not run and do not say why: " + ", ".join(unexplained)
    counts = [len(blocks(page)) for page in PAGES]
    assert sum(counts) >= 40 and len(RUN) >= 10  # the collector finds the pages' blocks


def test_included_outputs_are_regenerated_by_one_command():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "tools/regenerate_docs.py")
    regenerate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regenerate)
    generated = {f"{name}.txt" for name in regenerate.RUNS} | {"versions.txt"}
    included = {f for page in PAGES for _, _, code, _ in blocks(page) for f in _included(code)}
    assert included <= generated, f"included but not generated: {sorted(included - generated)}"
    assert generated - {"versions.txt"} <= included, "generated but shown nowhere"
    for name in generated:
        assert (regenerate.OUTPUTS / name).read_text().strip(), f"docs/outputs/{name} is empty"


@pytest.mark.parametrize("page", RUN, ids=_name)
def test_page_runs(page, tmp_path, monkeypatch):
    """The page's Python blocks run as a user runs them: in a fresh directory, with JAX's default
    dtype and rank promotion (the suite's strict settings are for the library's own code)."""
    monkeypatch.chdir(tmp_path)
    matplotlib.use("Agg")
    namespace = {"__name__": "__docs__"}
    for line, lang, code, why in blocks(page):
        if lang != "python" or why:
            continue
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            jax.numpy_dtype_promotion("standard"),
            jax.numpy_rank_promotion("allow"),
        ):
            try:
                exec(compile(code, f"{_name(page)}:{line}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"the block at {_name(page)}:{line} failed") from error
