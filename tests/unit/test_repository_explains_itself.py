"""The repository explains itself: no tracked file points outside it, every docs/ path it names exists, and
every link and repository path in the project's prose documents resolves inside the checkout."""

from __future__ import annotations

import glob
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The documents a clone once lacked (they lived beside the checkout); now docs/api.md, docs/design.md...
OUTSIDE = re.compile(r"\.\./shared/|(?<![\w/.-])(?:API|DESIGN|STYLE|EMULATORS)\.md")
DOCS_PATH = re.compile(r"\bdocs/[\w.-]+\.md\b")
# The documents a newcomer reads. Code blocks in them are commands and sample output, not references: the
# checks read the prose only.
PROSE = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "docs/*.md"]
FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
# `[text](target)`, `![alt](target "title")` and the reference definition `[label]: target`.
LINK = re.compile(
    r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*<?([^\s>]+)", re.MULTILINE
)
URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def _tracked_text_files() -> list[tuple[Path, str]]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = []
    for name in names.splitlines():
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".jar", ".gz", ".ico"} or "node_modules" in name:
            continue
        try:
            files.append((path, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def test_no_tracked_file_refers_to_a_document_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)}"
        for path, text in _tracked_text_files()
        if path.name != Path(__file__).name
        for m in OUTSIDE.finditer(text)
    ]
    assert offenders == [], offenders[:20]


def test_every_docs_path_named_in_the_repository_exists() -> None:
    missing = sorted(
        {
            f"{path.relative_to(ROOT)}: {m.group(0)}"
            for path, text in _tracked_text_files()
            for m in DOCS_PATH.finditer(text)
            if not (ROOT / m.group(0)).exists()
        }
    )
    assert missing == [], missing[:20]


def _prose_documents() -> list[tuple[Path, str]]:
    paths = sorted({path for pattern in PROSE for path in ROOT.glob(pattern)})
    assert ROOT / "README.md" in paths and ROOT / "docs" / "api.md" in paths
    return [(path, FENCED_BLOCK.sub("", path.read_text(encoding="utf-8"))) for path in paths]


def _repository_path(top_dirs: set[str]) -> re.Pattern[str]:
    """A whole code span that is a path from the checkout's root: it starts with one of its tracked top-level
    directories (`docs/api.md`, `infra/nats/`, `bench/*-results.md`). Placeholders (`functions/<domain>/`,
    `infra/...`) are examples, not references, and do not match."""
    roots = "|".join(map(re.escape, sorted(top_dirs)))
    return re.compile(rf"(?:{roots})/(?:[\w*-]+(?:\.[\w*-]+)*/?)*")


def test_every_relative_link_in_the_documents_resolves_inside_the_repository() -> None:
    broken = [
        f"{path.relative_to(ROOT)}: ({target})"
        for path, text in _prose_documents()
        for m in LINK.finditer(text)
        for target in [m.group(1) or m.group(2)]
        if not URL_SCHEME.match(target) and not target.startswith("#")
        for resolved in [(path.parent / target.split("#")[0]).resolve()]
        if not resolved.is_relative_to(ROOT) or not resolved.exists()
    ]
    assert broken == [], broken[:20]


def test_every_repository_path_the_documents_name_in_code_exists() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path_like = _repository_path({name.split("/")[0] for name in tracked.splitlines() if "/" in name})
    missing = [
        f"{path.relative_to(ROOT)}: `{span}`"
        for path, text in _prose_documents()
        for m in CODE_SPAN.finditer(text)
        # A pytest node id names its file first: `tests/unit/test_x.py::test_y`.
        for span in [m.group(1).strip().split("::")[0]]
        if path_like.fullmatch(span) and not glob.glob(str(ROOT / span.rstrip("/")))
    ]
    assert missing == [], missing[:20]
