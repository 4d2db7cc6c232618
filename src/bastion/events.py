"""Events: what is stored, logged, alerted and shown about a flagged or blocked exchange.

An Event is built from a finished Exchange and holds only what an operator needs to understand a
decision. It never holds a body, a query string or a secret: the path is cut before the query and
truncated, and every text that came from the client (path, finding evidence and messages) goes
through `mask_secrets`, which blanks credentials (Authorization, cookies, API keys, passwords,
bearer tokens, JWTs) before anything is written anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bastion.exchange import Exchange
from bastion.verdict import Action

MAX_PATH = 512
MAX_EVIDENCE = 160
MAX_MESSAGE = 240
MAX_FINDINGS = 32
MASK = "****"

# Header and parameter names whose values are credentials wherever they appear.
SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "api_key",
        "x-auth-token",
        "x-access-token",
        "x-csrf-token",
        "x-xsrf-token",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "session",
        "sessionid",
        "session_id",
    }
)

_NAME_ALT = "|".join(sorted((re.escape(n) for n in SECRET_NAMES), key=len, reverse=True))
# `name: value` / `name=value` / `"name": "value"` pairs whose name says the value is a credential.
_PAIR_RE = re.compile(
    rf"""(?ix)
    (?P<key>["']?(?:{_NAME_ALT})["']?)          # the name, maybe quoted (JSON)
    (?P<sep>\s*[:=]\s*)
    (?P<q>["']?)
    (?:(?:bearer|basic|digest|token)\s+)?       # an auth scheme is kept out of the value
    (?P<val>[^\s"'&;,}}]+)
    """
)
_SCHEME_RE = re.compile(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}")
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Well-known key formats (AWS, GitHub, Slack, Stripe, Google) that leak without a telling name.
_KEY_RE = re.compile(
    r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|AIza[0-9A-Za-z_-]{30,})"
)


_KEY_HINTS = ("AKIA", "gh", "xox", "_live_", "_test_", "AIza")
# The password of a URL's userinfo (redis://:pw@host, postgresql://user:pw@host): config URLs end up in logs.
_URL_CRED_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,15}://[^\s/@:]*:)[^\s/@]+@")


def mask_secrets(text: str) -> str:
    """Blank the credentials in a piece of text, keeping enough around them to read it.

    Cheap substring checks come first: most texts (paths, attack evidence) hold no credential, and
    this runs for every stored event on the request path."""
    if not text:
        return text
    low = text.lower()
    out = text
    if ("=" in text or ":" in text) and any(n in low for n in SECRET_NAMES):
        out = _PAIR_RE.sub(_mask_pair, out)
    if "bearer" in low or "basic" in low or "digest" in low:
        out = _SCHEME_RE.sub(lambda m: f"{m.group(1)} {MASK}", out)
    if "eyJ" in out:
        out = _JWT_RE.sub(MASK, out)
    if any(h in out for h in _KEY_HINTS):
        out = _KEY_RE.sub(MASK, out)
    if "://" in out and "@" in out:
        out = _URL_CRED_RE.sub(lambda m: f"{m.group(1)}{MASK}@", out)
    return out


def _mask_pair(m: re.Match[str]) -> str:
    return f"{m.group('key')}{m.group('sep')}{m.group('q')}{MASK}"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """`text` as valid UTF-8 for JSON, logs and stores. A client's undecodable byte (`%AD`, kept by
    the decoders as a surrogate escape) becomes `\\xad`; any other lone surrogate (`%uD800`) U+FFFD.
    orjson and the stores refuse surrogates, and one such event once stopped every later write."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(
            c if not 0xD800 <= ord(c) <= 0xDFFF
            else f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
            else "\ufffd"
            for c in text
        )
    return text


def printable_doc(value: Any) -> Any:
    """`printable` applied to every string of a JSON-like document (keys included)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_doc(k): printable_doc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_doc(v) for v in value]
    return value


@dataclass(slots=True)
class Event:
    """One flagged or blocked exchange, as stored and shown. `id` is set by the store on reading."""

    time: float
    request_id: str
    client_ip: str
    peer_ip: str = ""
    method: str = ""
    path: str = ""
    route: str = ""
    site: str = ""
    status: int = 0
    action: str = "log"  # allow, log, throttle, challenge, block
    score: int = 0
    rule_ids: tuple[str, ...] = ()
    findings: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    duration_ms: float = 0.0
    mode: str = "enforce"  # the gateway's mode when it decided
    would_block: bool = False  # observe mode: enforce mode would have refused this exchange
    entity: str = ""
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "time": self.time,
            "request_id": self.request_id,
            "client_ip": self.client_ip,
            "peer_ip": self.peer_ip,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "site": self.site,
            "status": self.status,
            "action": self.action,
            "score": self.score,
            "rule_ids": list(self.rule_ids),
            "findings": self.findings,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
            "mode": self.mode,
            "would_block": self.would_block,
            "entity": self.entity,
        }
        if self.id is not None:
            d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            time=float(d["time"]),
            request_id=str(d.get("request_id", "")),
            client_ip=str(d.get("client_ip", "")),
            peer_ip=str(d.get("peer_ip", "")),
            method=str(d.get("method", "")),
            path=str(d.get("path", "")),
            route=str(d.get("route", "")),
            site=str(d.get("site", "")),
            status=int(d.get("status") or 0),
            action=str(d.get("action", "log")),
            score=int(d.get("score") or 0),
            rule_ids=tuple(d.get("rule_ids") or ()),
            findings=list(d.get("findings") or []),
            reason=str(d.get("reason", "")),
            duration_ms=float(d.get("duration_ms") or 0.0),
            mode=str(d.get("mode", "enforce")),
            would_block=bool(d.get("would_block", False)),
            entity=str(d.get("entity", "")),
            id=d.get("id"),
        )

    @property
    def blocked(self) -> bool:
        return self.action in ("block", "challenge")


def is_notable(ex: Exchange) -> bool:
    """Whether an exchange becomes an event: something was found, or something was decided."""
    if ex.findings:
        return True
    v = ex.verdict
    return v is not None and (v.action != Action.ALLOW or v.would_block)


def event_from_exchange(ex: Exchange, mode: str = "enforce") -> Event:
    """Build the stored record of a finished exchange (masked, truncated, no body, no query)."""
    v = ex.verdict
    # What the client got: the response when one was sent, else the status the verdict asked for.
    status = ex.response.status if ex.response is not None else (v.status if v is not None else 0)
    findings: list[dict[str, Any]] = []
    for f in ex.findings[:MAX_FINDINGS]:
        d = f.as_dict()
        d["message"] = clip(mask_secrets(f.message), MAX_MESSAGE)
        if f.evidence:
            if f.name and f.name.lower() in SECRET_NAMES:
                d["evidence"] = MASK  # the value of a credential field is never worth keeping
            else:
                d["evidence"] = clip(mask_secrets(f.evidence), MAX_EVIDENCE)
        if f.reason:
            d["reason"] = f.reason
        findings.append(printable_doc(d))
    # Every rule that fired (observe-mode ones included), so `--rule X` finds shadow hits too.
    rule_ids = tuple(dict.fromkeys(f.rule_id for f in ex.findings)) or (v.rule_ids if v is not None else ())
    return Event(
        time=ex.started,
        request_id=ex.id,
        client_ip=ex.client.ip,
        peer_ip=ex.client.peer_ip,
        method=printable(clip(ex.request.method, 16)),
        path=printable(clip(mask_secrets(ex.request.path), MAX_PATH)),
        route=printable(ex.route),
        site=printable(clip(ex.site, 253)),
        status=status,
        action=v.action.name.lower() if v is not None else ("log" if ex.findings else "allow"),
        score=v.score if v is not None and v.score else ex.score,
        rule_ids=tuple(rule_ids),
        findings=findings,
        reason=v.reason if v is not None else "",
        duration_ms=round((ex.duration or 0.0) * 1000.0, 3),
        mode=mode,
        would_block=bool(v is not None and v.would_block),
        entity=printable(ex.entity),
    )
