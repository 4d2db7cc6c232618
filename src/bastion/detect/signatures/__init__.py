"""Signature detection: injection rules compiled into one multi-pattern scan, confirmed and scored.

    zones.py       values by zone, with parameter names (path, args, JSON paths, headers, ...)
    transforms.py  views of a value: decoded, SQL-comment-free, shell-evasion-free, path-normalised
    rules.py       the typed YAML rule model and loader (rules live in bastion/rules/9xx-*.yaml)
    matcher.py     hyperscan database + `re` confirmation (pure-Python fallback without hyperscan)
    confirm.py     precise confirmation steps (SQL tokenizer, HTML/JS context, internal URLs)
    detector.py    the `signatures` detector: hooks, paranoia levels, exclusions, findings
    settings.py    the `signatures:` config section
"""

from __future__ import annotations

from typing import Any


def make(config: Any, ctx: Any) -> Any:
    """Registry entry point; imports the detector lazily (hyperscan loads only when enabled)."""
    from bastion.detect.signatures.detector import make as _make

    return _make(config, ctx)
