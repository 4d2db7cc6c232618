"""Suite-wide isolation: every test gets its own data directory.

Embedded state (events.db, catalog.db, decisions.json) lives in the data dir, whose default is
`.bastion` in the working directory. Without this, a ban decided in one test would greet the next,
and a developer's own gateway started from the checkout would find the suite's bans.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _suite_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """For module- and session-scoped fixtures, which start before any function-scoped one."""
    data = tmp_path_factory.mktemp("bastion-suite-data")
    old = os.environ.get("BASTION_DATA_DIR")
    os.environ["BASTION_DATA_DIR"] = str(data)
    yield data
    if old is None:
        os.environ.pop("BASTION_DATA_DIR", None)
    else:
        os.environ["BASTION_DATA_DIR"] = old


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "bastion-data"
    monkeypatch.setenv("BASTION_DATA_DIR", str(data))
    return data
