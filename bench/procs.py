"""Process helpers shared by the benchmark scripts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable


def stop_all(procs: Iterable[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """Ask every process to stop, then kill those still running after `grace` seconds."""
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
