"""The repository explains itself: no tracked file points outside it, and every docs/ path it names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The documents a clone once lacked (they lived beside the checkout); now docs/api.md, docs/design.md...
OUTSIDE = re.compile(r"\.\./shared/|(?<![\w/.-])(?:API|DESIGN|STYLE|EMULATORS)\.md")
DOCS_PATH = re.compile(r"\bdocs/[\w.-]+\.md\b")


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
