"""Helpers shared by the CLI commands: loading config with overrides, durations, error exits."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import typer

from bastion.config import BastionConfig, load_config, parse_config
from bastion.errors import ConfigError


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one problem to stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def fail_problems(problems: list[str], code: int = 1) -> NoReturn:
    """Print config problems (already `file:line: field: problem`) to stderr and exit."""
    for line in problems:
        typer.echo(line, err=True)
    raise typer.Exit(code)


def _merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def with_overrides(config: BastionConfig, overrides: Mapping[str, Any]) -> BastionConfig:
    """Apply command-line values over a loaded config and validate the result as a whole.

    Problems are reported like config-file ones, with `command line` as the source.
    """
    if not overrides:
        return config
    data = config.model_dump(by_alias=True, exclude_unset=False)
    _merge(data, overrides)
    return parse_config(data, "command line")


def load_or_exit(path: Path | None, overrides: Mapping[str, Any] | None = None) -> BastionConfig:
    try:
        return with_overrides(load_config(path), overrides or {})
    except ConfigError as exc:
        fail_problems(exc.problems)


def check_upstream(url: str | None) -> str:
    """The upstream must be an absolute http(s) URL with a host."""
    if not url:
        fail("no upstream: pass --upstream http://HOST:PORT or set upstream.url in the config")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"--upstream: expected http://HOST[:PORT] or https://..., got {url!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        fail(f"--upstream: invalid port in {url!r}")
    return url


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> float:
    """`10m`, `2h`, `1d`, `90` (seconds) ago, or an ISO 8601 time; returns epoch seconds."""
    now = time.time() if now is None else now
    m = _DURATION.match(value)
    if m:
        return now - float(m.group(1)) * _UNIT[(m.group(2) or "s").lower()]
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"expected a duration like 10m, 2h, 1d or an ISO time, got {value!r}") from None
    if dt.tzinfo is None:
        return dt.astimezone().timestamp()
    return dt.timestamp()


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
