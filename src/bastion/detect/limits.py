"""Request limits: refuse requests whose sizes no legitimate API client needs.

Oversized requests are how a single client exhausts a server's memory or CPU (huge headers,
hash-flooding query strings, multi-gigabyte uploads) and how some parser differentials are
reached. Each limit maps to its own RFC 9110 status through `bastion.errors.PROBLEMS`:

    URI longer than max_uri_bytes                          414 uri-too-long
    header block / one value / header count over limits    431 headers-too-large
    declared or received body over max_body_bytes          413 body-too-large
    more than max_query_args query arguments               400 bad-request

Findings carry an explicit BLOCK action (they are not anomaly points), so observe mode records
what would have happened without refusing. Evidence holds sizes only, never content.
"""

from __future__ import annotations

from bastion.config import BastionConfig, LimitsConfig
from bastion.engine.registry import BuildContext
from bastion.errors import PROBLEMS
from bastion.exchange import Exchange
from bastion.verdict import Action, Finding, Severity

RULE_URI = "limits-uri-length"
RULE_HEADER_BYTES = "limits-header-bytes"
RULE_HEADER_COUNT = "limits-header-count"
RULE_HEADER_VALUE = "limits-header-value"
RULE_BODY = "limits-body-size"
RULE_QUERY_ARGS = "limits-query-args"


def declared_length(ex: Exchange) -> int | None:
    """The declared Content-Length (the largest when repeated), or None if absent or unparsable."""
    values = ex.request.headers.get_all("content-length")
    best: int | None = None
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part.isdigit() and part.isascii():
                n = int(part)
                best = n if best is None else max(best, n)
    return best


class LimitsDetector:
    """Checks sizes in the request-headers phase, and the received body size in the body phase
    (a chunked body declares no length, so only counting its bytes catches it)."""

    name = "limits"

    def __init__(self, limits: LimitsConfig) -> None:
        self.max_uri = limits.max_uri_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.max_header_value = limits.max_header_value_bytes
        self.max_body = limits.max_body_bytes
        self.max_query_args = limits.max_query_args
        self.observe = False

    def _refuse(self, ex: Exchange, rule_id: str, reason: str, message: str, evidence: str, name: str = "") -> None:
        status = PROBLEMS[reason][0]
        ex.add(
            Finding(
                rule_id=rule_id,
                detector=self.name,
                message=message,
                severity=Severity.CRITICAL,
                action=Action.BLOCK,
                status=status,
                reason=reason,
                zone="request",
                name=name,
                evidence=evidence,
                tags=("limits", "protocol"),
            )
        )

    def request_headers(self, ex: Exchange) -> None:
        req = ex.request
        n = len(req.target)
        if n > self.max_uri:
            self._refuse(ex, RULE_URI, "uri-too-long", "request target too long", f"{n} > {self.max_uri} bytes")
        items = req.headers.items
        if len(items) > self.max_header_count:
            self._refuse(
                ex, RULE_HEADER_COUNT, "headers-too-large", "too many header fields",
                f"{len(items)} > {self.max_header_count} fields",
            )
        total = 0
        worst_name = ""
        worst = 0
        for k, v in items:
            size = len(v)
            total += len(k) + size + 4  # "name: value\r\n"
            if size > worst:
                worst, worst_name = size, k
        if worst > self.max_header_value:
            self._refuse(
                ex, RULE_HEADER_VALUE, "headers-too-large", "header field value too large",
                f"{worst} > {self.max_header_value} bytes", name=worst_name.lower()[:64],
            )
        if total > self.max_header_bytes:
            self._refuse(
                ex, RULE_HEADER_BYTES, "headers-too-large", "header section too large",
                f"{total} > {self.max_header_bytes} bytes",
            )
        query = req.query
        if query:
            # Counting separators is enough for a limit and costs no decoding (hash-flooding
            # and parameter-pollution payloads are many thousands of arguments).
            args = query.count("&") + 1
            if args > self.max_query_args:
                args = sum(1 for part in query.split("&") if part)
                if args > self.max_query_args:
                    self._refuse(
                        ex, RULE_QUERY_ARGS, "bad-request", "too many query arguments",
                        f"{args} > {self.max_query_args} arguments",
                    )
        declared = declared_length(ex)
        if declared is not None and declared > self.max_body:
            self._refuse(
                ex, RULE_BODY, "body-too-large", "declared body too large",
                f"content-length {declared} > {self.max_body} bytes",
            )

    def request_body(self, ex: Exchange) -> None:
        size = max(ex.request.body_size, len(ex.request.body))
        if size > self.max_body and not any(f.rule_id == RULE_BODY for f in ex.findings):
            self._refuse(ex, RULE_BODY, "body-too-large", "body too large", f"{size} > {self.max_body} bytes")


def make(config: BastionConfig, ctx: BuildContext) -> LimitsDetector:
    return LimitsDetector(config.limits)
