"""The one flow object: everything known about one request/response, passed through every phase.

The proxy, the ASGI middleware and log replay all build an Exchange and hand it to the same
pipeline, so a detector never knows (or cares) which front-end it runs under.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from bastion.verdict import Finding, Verdict


class Headers:
    """An ordered multi-map of header fields as received (names keep their case for forwarding).

    Lookups are case-insensitive; the index is built on first lookup, so forwarding untouched
    headers costs nothing.
    """

    __slots__ = ("_index", "items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self.items: list[tuple[str, str]] = items if items is not None else []
        self._index: dict[str, list[str]] | None = None

    def _idx(self) -> dict[str, list[str]]:
        if self._index is None:
            idx: dict[str, list[str]] = {}
            for k, v in self.items:
                idx.setdefault(k.lower(), []).append(v)
            self._index = idx
        return self._index

    # The lookups read the index directly once it is built: detectors look up several fields per
    # request, and an _idx() call each time is a Python call (~0.6k instructions) per lookup.
    def get(self, name: str, default: str | None = None) -> str | None:
        idx = self._index
        if idx is None:
            idx = self._idx()
        values = idx.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        idx = self._index
        if idx is None:
            idx = self._idx()
        return idx.get(name.lower(), [])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        idx = self._index
        if idx is None:
            idx = self._idx()
        return name.lower() in idx

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, name: str, value: str) -> None:
        self.items.append((name, value))
        self._index = None

    def remove(self, name: str) -> None:
        low = name.lower()
        self.items = [(k, v) for k, v in self.items if k.lower() != low]
        self._index = None

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def names(self) -> list[str]:
        return [k.lower() for k, _ in self.items]

    def __repr__(self) -> str:
        return f"Headers({self.items!r})"


@dataclass(slots=True)
class Client:
    """Who is on the other end. `ip` is the resolved client address: the peer itself unless the
    peer is a configured trusted proxy, in which case it comes from X-Forwarded-For/Forwarded."""

    peer_ip: str
    peer_port: int = 0
    ip: str = ""
    tls: bool = False
    tls_version: str = ""
    sni: str = ""
    fingerprint: str = ""  # TLS ClientHello fingerprint when Bastion terminates TLS

    def __post_init__(self) -> None:
        if not self.ip:
            self.ip = self.peer_ip


@dataclass(slots=True)
class Request:
    method: str
    target: str  # the raw request-target: path and query, percent-encoded as sent
    headers: Headers
    http_version: str = "1.1"
    body: bytes = b""  # the inspected prefix of the body (see body_truncated)
    body_size: int = 0  # bytes of body received so far (or declared, before it arrives)
    body_truncated: bool = False
    host: str = ""

    @property
    def path(self) -> str:
        """The raw (still percent-encoded) path, without the query."""
        q = self.target.find("?")
        return self.target if q < 0 else self.target[:q]

    @property
    def query(self) -> str:
        """The raw query string, without the '?'."""
        q = self.target.find("?")
        return "" if q < 0 else self.target[q + 1 :]

    def query_args(self) -> list[tuple[str, str]]:
        """Decoded query arguments in order; duplicates kept (HTTP parameter pollution)."""
        out: list[tuple[str, str]] = []
        for part in self.query.split("&"):
            if not part:
                continue
            k, _, v = part.partition("=")
            out.append((unquote_plus(k, errors="surrogateescape"), unquote_plus(v, errors="surrogateescape")))
        return out

    @property
    def content_type(self) -> str:
        ct = self.headers.get("content-type") or ""
        return ct.split(";", 1)[0].strip().lower()


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes = b""  # the inspected prefix of the response body
    body_size: int = 0
    reason: str = ""
    from_bastion: bool = False  # produced by Bastion (block, error), not the upstream


@dataclass(slots=True)
class Exchange:
    """One request and its response as they travel through the pipeline."""

    id: str
    client: Client
    request: Request
    started: float  # wall-clock time the request started (from the engine's clock)
    started_mono: float = 0.0
    response: Response | None = None
    duration: float | None = None  # seconds from request start to response end
    route: str = ""  # route template such as /users/{id}, when known
    site: str = ""  # the Host the request was for
    keys: dict[str, str] = field(default_factory=dict)  # entity keys: ip, api_key, user, session...
    entity: str = ""  # id of the linked entity (attacker or user), when behaviour tracking is on
    links: Any = None  # behaviour: the entity graph's nodes of `keys` (bastion.entity.Resolved), request time
    risk: float = 0.0  # the entity's current (decayed) risk when the request arrived
    findings: list[Finding] = field(default_factory=list)
    verdict: Verdict | None = None
    allowlisted: bool = False  # an allow decision matched: detectors are skipped
    tags: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)  # detectors that failed on this exchange
    upstream_error: str = ""

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def score(self) -> int:
        return sum(f.score for f in self.findings if not f.observe)
