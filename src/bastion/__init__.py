"""Bastion: API attack protection as a reverse proxy, an ASGI middleware and a log analyzer.

`from bastion import BastionMiddleware` loads the middleware (and the engine) on first use only,
so importing the package stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BastionMiddleware"]


def __getattr__(name: str) -> Any:
    if name == "BastionMiddleware":
        from bastion.frontends.asgi import BastionMiddleware

        return BastionMiddleware
    raise AttributeError(f"module 'bastion' has no attribute {name!r}")
