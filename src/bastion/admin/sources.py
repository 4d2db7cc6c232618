"""Where the admin reads from: the running pipeline's own objects when they exist (current to the
last exchange), else the stores in the data directory (events.db, catalog.db, decisions.json).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any


def version() -> str:
    try:
        return importlib.metadata.version("bastion-gateway")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def behaviour_core(pipeline: Any) -> Any | None:
    """The pipeline's BehaviourCore (entities, risk, decisions), or None when behaviour is off."""
    from bastion.detect.behaviour.core import BehaviourCore

    for det in getattr(pipeline, "detectors", ()):
        core = getattr(det, "core", None)
        if isinstance(core, BehaviourCore):
            return core
    return None


def live_learner(pipeline: Any) -> Any | None:
    """The in-process catalog learner, or None when the catalog detector is off."""
    try:
        from bastion.detect.catalog import live_catalog
    except ImportError:  # pragma: no cover - the catalog is optional
        return None
    return live_catalog(pipeline)
