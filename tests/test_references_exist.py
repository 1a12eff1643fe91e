"""Every file, page and section that the code, the examples and the docs cite exists.

Scanned: ``mflangevin/``, ``examples/``, ``docs/`` and ``README.md``. A reference is a repository
path (``docs/theory/mfld.md``, ``examples/duality_gap.py``, optionally ``#anchor``) or a relative
Markdown link; a section anchor must be a heading of the page it names. The maths lives in
``docs/theory/``: a citation of a document that is not in the repository (``math.md``, bare
section numbers such as ``§2``) fails.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCANNED = [
    *sorted((ROOT / "mflangevin").rglob("*.py")),
    *sorted((ROOT / "examples").rglob("*.py")),
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "README.md",
]

# Citations of a document outside the repository.
MISSING_DOCUMENT = re.compile(r"math\.md|§\s*\d")

# Citations still to be replaced in files that are being rewritten: {path: number of lines}.
# Each entry must go once its file cites docs/theory/ instead; a stale entry fails too.
KNOWN_EXCEPTIONS: dict[str, int] = {}

# A repository path: one of the top-level folders, then a file name with an extension.
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:docs|examples|benchmarks|tests|mflangevin)/[\w./-]*\w\.(?:md|py|sh|png|toml))"
    r"(#[\w-]+)?"
)
# A Markdown link or image: [text](target) with a relative target.
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def _anchors(page: Path) -> frozenset[str]:
    """The heading ids of a Markdown page, as mkdocs's ``toc`` extension makes them."""
    markdown = pytest.importorskip("markdown")
    md = markdown.Markdown(extensions=["toc", "fenced_code"])
    md.convert(page.read_text(encoding="utf-8"))

    def ids(tokens):
        for token in tokens:
            yield token["id"]
            yield from ids(token["children"])

    return frozenset(ids(md.toc_tokens))


def _check(target: Path, anchor: str | None) -> str | None:
    """Why the reference is broken, or None."""
    if not target.exists():
        return "no such file"
    if anchor and target.suffix == ".md" and anchor not in _anchors(target):
        return f"no section #{anchor}"
    return None


def _broken_references(path: Path, text: str | None = None) -> list[str]:
    text = path.read_text(encoding="utf-8") if text is None else text
    broken = []
    for match in REPO_PATH.finditer(text):
        reason = _check(ROOT / match.group(1), (match.group(2) or "#")[1:] or None)
        if reason:
            broken.append(f"{match.group(0)}: {reason}")
    if path.suffix == ".md":
        for match in MARKDOWN_LINK.finditer(text):
            link = match.group(1)
            if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
                continue
            file_part, _, anchor = link.partition("#")
            target = (path.parent / file_part).resolve() if file_part else path
            if file_part and target.is_relative_to(ROOT / "mflangevin"):
                continue  # not a page: mkdocstrings cross-references are checked by mkdocs
            reason = _check(target, anchor or None)
            if reason:
                broken.append(f"({link}): {reason}")
    return broken


@pytest.mark.parametrize("path", SCANNED, ids=_relative)
def test_references_point_to_existing_files_and_sections(path):
    assert _broken_references(path) == []


@pytest.mark.parametrize("path", SCANNED, ids=_relative)
def test_no_citation_of_a_document_outside_the_repository(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [line.strip() for line in lines if MISSING_DOCUMENT.search(line)]
    assert len(found) == KNOWN_EXCEPTIONS.get(_relative(path), 0), (
        f"{_relative(path)} cites {found}: cite the page of docs/theory/ instead"
        if found
        else f"{_relative(path)} no longer needs its entry in KNOWN_EXCEPTIONS: remove it"
    )


def test_known_exceptions_name_existing_files():
    assert [name for name in KNOWN_EXCEPTIONS if not (ROOT / name).exists()] == []


def test_the_checks_catch_broken_references():
    page = ROOT / "docs" / "theory" / "mfld.md"
    assert _check(page, "the-algorithm") is None
    assert _check(page, "no-such-section") == "no section #no-such-section"
    assert _check(ROOT / "docs" / "theory" / "missing.md", None) == "no such file"
    assert MISSING_DOCUMENT.search("see ``math.md``") and MISSING_DOCUMENT.search("(§8.5)")
    text = (
        "See docs/theory/nowhere.md, docs/theory/mfld.md#nowhere and docs/theory/mfld.md, "
        "[a page](theory/nowhere.md), [a section](theory/mfld.md#the-algorithm), [here](#x)."
    )
    assert _broken_references(ROOT / "docs" / "getting-started.md", text) == [
        "docs/theory/nowhere.md: no such file",
        "docs/theory/mfld.md#nowhere: no section #nowhere",
        "(theory/nowhere.md): no such file",
        "(#x): no section #x",
    ]
