"""Suite-wide isolation: every test gets its own data directory.

Embedded state (events.db, catalog.db, decisions.json) lives in the data dir, whose default is
`.bastion` in the working directory. Without this, a ban decided in one test would greet the next.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "bastion-data"
    monkeypatch.setenv("BASTION_DATA_DIR", str(data))
    return data
