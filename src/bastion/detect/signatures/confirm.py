"""Confirmation steps: precise checks a regex hit must pass before it becomes a finding.

A regex that would misfire on prose ("select the best option", "O'Brien") names a confirm step;
the hit counts only if the step agrees. A step takes the transformed value and returns a short
evidence string (e.g. a SQL token fingerprint) or None.

    sqli   bastion.detect.sqli.sqli_check: does the value change SQL syntax when inserted?
    sqlcall bastion.detect.sqli.sql_call_check: is the value a call of a SQL function, read as SQL?
    xss    bastion.detect.xss.xss_check: does the value open an HTML/JS execution context?
    ssrf   a URL in the value points at an internal, loopback or cloud-metadata address
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import re
import socket
from collections.abc import Callable

log = logging.getLogger("bastion.signatures")

Confirm = Callable[[str], str | None]


def _result_evidence(result: object) -> str:
    for attr in ("fingerprint", "evidence", "reason", "context"):
        v = getattr(result, attr, None)
        if isinstance(v, str) and v:
            return v[:48]
    return "confirmed"


def _external(module: str, fn_name: str) -> Confirm | None:
    try:
        fn = getattr(importlib.import_module(module), fn_name)
    except (ImportError, AttributeError):
        return None

    def check(text: str) -> str | None:
        result = fn(text)
        if result is None or result is False:
            return None
        return _result_evidence(result)

    return check


_URL = re.compile(r"(?:[a-z][a-z0-9+.-]{1,15}:)?//\[?([^\s/?#@\]]*@)?(\[[0-9a-f:.]+\]|[^\s/?#:\\]+)", re.IGNORECASE)
_INTERNAL_NAMES = (
    "localhost", "localhost.localdomain", "metadata.google.internal", "metadata", "instance-data",
    "kubernetes.default", "kubernetes.default.svc", "localtest.me",
)
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localtest.me", ".svc.cluster.local")
_REBIND = re.compile(r"(?:^|[.-])(\d{1,3})[.-](\d{1,3})[.-](\d{1,3})[.-](\d{1,3})\.(?:nip\.io|sslip\.io|xip\.io)$")


def _internal_ip(host: str) -> bool:
    h = host.strip("[]")
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        # inet_aton accepts what libc resolvers accept: 2130706433, 0x7f.1, 0177.0.0.1
        try:
            ip = ipaddress.ip_address(socket.inet_aton(h))
        except (OSError, ValueError):
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_reserved
                or str(ip) == "100.100.100.200")


def ssrf_check(text: str) -> str | None:
    """The internal host a URL in `text` points at, or None."""
    for m in _URL.finditer(text):
        host = m.group(2).lower().rstrip(".")
        if not host:
            continue
        if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
            return host
        rebind = _REBIND.search(host)
        if rebind and _internal_ip(".".join(rebind.groups())):
            return host
        if (host[0].isdigit() or host.startswith("[")) and _internal_ip(host):
            return host
    return None


# Confirm steps that judge HTML-escaped text as sent (see html_escaped_text): the SQL checkers.
AS_SENT_IF_HTML_ESCAPED = frozenset({"sqli", "sqlcall"})

# An ampersand that is not one of the entities an HTML escaper writes for text.
_NOT_ESCAPING = re.compile(r"&(?!(?:lt|gt|amp|quot|apos|nbsp|#0*39|#x0*27);)", re.IGNORECASE)


def html_escaped_text(raw: str) -> bool:
    """Whether `raw` is text escaped for HTML by an editor or a template (`5 &lt; 7 &amp;&amp; 7 &gt;
    5`, `Fish &amp; chips`): the escaper's named entities for `<`, `>` and `&` and nothing else to
    decode (no markup, no percent, backslash or numeric escapes but the apostrophe's). The decode
    view unescapes it for the HTML rules, where entities are read by the browser; the SQL checkers
    judge it as sent, since a query is built from the text the application received: `5 < 7 && 7 >
    5` unescaped is a constant condition, escaped it is a remark about numbers. Entity-encoded
    break-outs (`&#39; or 1=1`, `&#x27;`) stay decoded: they hold no `&lt;`/`&gt;`/`&amp;`."""
    if "<" in raw or ">" in raw or "%" in raw or "\\" in raw:
        return False
    low = raw.lower()
    if "&lt;" not in low and "&gt;" not in low and "&amp;" not in low:
        return False
    return _NOT_ESCAPING.search(raw) is None


# Texts whose answer a confirm step keeps, and the longest text kept.
ANSWERS_KEPT = 2048
ANSWER_MAX_CHARS = 512  # so that a memo holds at most ~1 MB of text


def remembered(step: Confirm) -> Confirm:
    """`step` answering a text it has seen from memory. A confirm step is a pure function of the
    text, and the texts that reach one recur (a name with an apostrophe, a search phrase, a filter
    cookie): the SQL tokenizer alone costs more per text than the rest of the inspection of a value.
    A step that raises is not remembered (the matcher logs it and moves on)."""
    answers: dict[str, str | None] = {}

    def check(text: str) -> str | None:
        try:
            return answers[text]
        except KeyError:
            pass
        answer = step(text)
        if len(text) <= ANSWER_MAX_CHARS:
            if len(answers) >= ANSWERS_KEPT:
                answers.clear()
            answers[text] = answer
        return answer

    return check


def load_confirms() -> dict[str, Confirm]:
    """Every confirm step available here; rules naming a missing one are left out (and logged)."""
    out: dict[str, Confirm] = {"ssrf": ssrf_check}
    sqli = _external("bastion.detect.sqli", "sqli_check")
    if sqli is not None:
        out["sqli"] = sqli
    call = _external("bastion.detect.sqli", "sql_call_check")
    if call is not None:
        out["sqlcall"] = call
    xss = _external("bastion.detect.xss", "xss_check")
    if xss is not None:
        out["xss"] = xss
    return {name: remembered(step) for name, step in out.items()}
