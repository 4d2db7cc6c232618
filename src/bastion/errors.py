"""Errors Bastion raises, and the RFC 9457 problem documents it answers with.

Every response Bastion produces itself has the same shape: a stable `type`, a short `title`, the
status and the request id. None of it echoes anything the client sent.
"""

from __future__ import annotations

import orjson


class BastionError(Exception):
    """Base class of Bastion's own errors."""


class ConfigError(BastionError):
    """A configuration mistake, already formatted as `file:line: field: problem` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


PROBLEM_BASE = "https://bastion.dev/problems/"

# reason code -> (status, title). Codes are public and stable; they name the kind of refusal only.
PROBLEMS: dict[str, tuple[int, str]] = {
    "request-blocked": (403, "Request blocked"),
    "response-blocked": (502, "Response withheld"),
    "access-denied": (403, "Access denied"),
    "rate-limited": (429, "Too many requests"),
    "challenge-required": (401, "Additional verification required"),
    "authentication-required": (401, "Authentication required"),
    "insufficient-scope": (403, "Insufficient scope"),
    "bad-request": (400, "Bad request"),
    "uri-too-long": (414, "URI too long"),
    "headers-too-large": (431, "Request header fields too large"),
    "body-too-large": (413, "Content too large"),
    "request-timeout": (408, "Request timeout"),
    "length-required": (411, "Length required"),
    "expectation-failed": (417, "Expectation failed"),
    "unsupported-method": (405, "Method not allowed"),
    "overloaded": (503, "Service overloaded"),
    "inspection-failed": (503, "Service unavailable"),
    "bad-gateway": (502, "Bad gateway"),
    "gateway-timeout": (504, "Gateway timeout"),
    "upstream-error": (502, "Upstream error"),
}


def problem_for(reason: str, status: int | None = None) -> tuple[int, str]:
    default_status, title = PROBLEMS.get(reason, (status or 403, "Request refused"))
    return (status or default_status), title


def problem_body(
    reason: str, status: int, title: str, request_id: str, extra: tuple[tuple[str, str | int], ...] = ()
) -> bytes:
    """The problem document. `extra` adds members Bastion made itself (a challenge id), never
    anything the client sent; it cannot replace the standard ones."""
    doc: dict[str, str | int] = {
        "type": PROBLEM_BASE + (reason or "request-refused"),
        "title": title,
        "status": status,
        "request_id": request_id,
    }
    for k, v in extra:
        doc.setdefault(k, v)
    return orjson.dumps(doc)
