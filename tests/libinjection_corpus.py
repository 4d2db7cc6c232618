"""libinjection's test data (../shared/corpora/libinjection), for the SQLi and XSS checker tests."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote_plus

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "libinjection"

needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason="libinjection corpus not present (../shared/corpora/libinjection)"
)


def corpus_lines(path: Path) -> list[str]:
    """The samples of one data file: non-empty, non-comment lines, form-decoded."""
    out = []
    for raw in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        line = raw.rstrip()
        if line and not line.startswith("#"):
            out.append(unquote_plus(line, errors="surrogateescape"))
    return out


def samples(pattern: str) -> list[str]:
    lines: list[str] = []
    for f in sorted((CORPUS / "data").glob(pattern)):
        lines += corpus_lines(f)
    return lines
