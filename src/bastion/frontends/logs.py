"""Log replay: access logs become Exchanges and run through the same pipeline as live traffic.

An access log line carries less than a live request (no body, few headers), so replay finds what
the request line, status, size, timing and client reveal: injection in paths and query strings,
scanners, floods, brute force and enumeration, after the fact. Time comes from the log itself
through a ManualClock, so windows, decay and expiry behave as they would have live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from bastion.clock import ManualClock
from bastion.detect.symptoms import symptoms_of
from bastion.engine.pipeline import Pipeline
from bastion.exchange import Client, Exchange, Headers, Response
from bastion.verdict import Action


@dataclass(slots=True)
class LogRecord:
    """The fields of one access-log line that replay can use."""

    time: float
    client_ip: str
    method: str
    target: str
    status: int
    size: int = 0
    host: str = ""
    user_agent: str = ""
    referer: str = ""
    duration: float | None = None  # seconds
    http_version: str = "1.1"


class LogFormatError(ValueError):
    """A line that is not in the expected format (counted and skipped, never fatal)."""


# nginx/Apache "combined" (and "common", which lacks the last two fields), optionally followed by
# extra fields such as $request_time. The request line is kept raw: attackers put anything there.
_COMBINED = re.compile(
    r'^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r'(?P<status>\d{3}) (?P<size>\d+|-)(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?'
    r"(?P<rest>.*)$"
)
_CLF_TIME = "%d/%b/%Y:%H:%M:%S %z"


def parse_combined(line: str) -> LogRecord:
    m = _COMBINED.match(line)
    if m is None:
        raise LogFormatError("not a common/combined log line")
    try:
        t = datetime.strptime(m["time"], _CLF_TIME).timestamp()
    except ValueError:
        raise LogFormatError("bad timestamp") from None
    request = m["request"]
    parts = request.split(" ")
    if len(parts) >= 3 and parts[-1].startswith("HTTP/"):
        method, target, version = parts[0], " ".join(parts[1:-1]), parts[-1][5:]
    elif len(parts) == 2:
        method, target, version = parts[0], parts[1], "1.0"
    else:
        # A garbage request line (binary probes, TLS on a plain port) is still an exchange.
        method, target, version = "-", request[:2048] or "/", "1.1"
    duration: float | None = None
    rest = (m["rest"] or "").split()
    if rest:
        try:
            duration = float(rest[0].strip('"'))
        except ValueError:
            duration = None
    return LogRecord(
        time=t,
        client_ip=m["ip"],
        method=method,
        target=target,
        status=int(m["status"]),
        size=0 if m["size"] == "-" else int(m["size"]),
        user_agent=_unescape(m["ua"] or ""),
        referer=_unescape(m["referer"] or ""),
        duration=duration,
        http_version=version,
    )


_JSON_KEYS: dict[str, tuple[str, ...]] = {
    "ip": ("client_ip", "remote_addr", "ip", "client", "src_ip"),
    "method": ("method", "request_method", "verb"),
    "target": ("uri", "request_uri", "path", "url", "target"),
    "status": ("status", "status_code", "response_status"),
    "size": ("bytes_sent", "body_bytes_sent", "size", "response_size"),
    "host": ("host", "http_host", "server_name"),
    "ua": ("user_agent", "http_user_agent", "ua"),
    "referer": ("referer", "http_referer", "referrer"),
    "duration": ("request_time", "duration", "latency"),
    "time": ("time", "timestamp", "ts", "@timestamp", "time_local", "time_iso8601"),
    "query": ("query", "query_string", "args"),
}


def _pick(doc: dict[str, Any], name: str) -> Any:
    for key in _JSON_KEYS[name]:
        if key in doc and doc[key] not in (None, ""):
            return doc[key]
    return None


def parse_json(line: str) -> LogRecord:
    """One JSON object per line, with nginx/Envoy/ALB-like field names."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise LogFormatError("not JSON") from None
    if not isinstance(doc, dict):
        raise LogFormatError("not a JSON object")
    method, target = _pick(doc, "method"), _pick(doc, "target")
    request = doc.get("request")
    if (method is None or target is None) and isinstance(request, str):
        parts = request.split(" ")
        if len(parts) >= 2:
            method, target = method or parts[0], target or parts[1]
    ip, status = _pick(doc, "ip"), _pick(doc, "status")
    if method is None or target is None or ip is None or status is None:
        raise LogFormatError("missing client, method, target or status")
    query = _pick(doc, "query")
    target = str(target)
    if query and "?" not in target:
        target = f"{target}?{query}"
    try:
        return LogRecord(
            time=_json_time(_pick(doc, "time")),
            client_ip=str(ip).split(",")[0].strip(),
            method=str(method),
            target=target,
            status=int(status),
            size=int(_pick(doc, "size") or 0),
            host=str(_pick(doc, "host") or ""),
            user_agent=str(_pick(doc, "ua") or ""),
            referer=str(_pick(doc, "referer") or ""),
            duration=_duration(_pick(doc, "duration")),
        )
    except (TypeError, ValueError):
        raise LogFormatError("a field has the wrong type") from None


def _json_time(v: Any) -> float:
    if v is None:
        raise LogFormatError("no timestamp")
    if isinstance(v, int | float):
        return float(v) / 1000.0 if v > 1e11 else float(v)  # milliseconds or seconds
    s = str(v)
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return datetime.strptime(s, _CLF_TIME).timestamp()
    except ValueError:
        raise LogFormatError("unreadable timestamp") from None


def _duration(v: Any) -> float | None:
    if v is None:
        return None
    d = float(v)
    return d / 1000.0 if d > 1000 else d  # some logs count milliseconds


def _unescape(s: str) -> str:
    return s.replace('\\"', '"').replace("\\\\", "\\")


def parse_line(line: str, fmt: str = "auto") -> LogRecord:
    if fmt == "json" or (fmt == "auto" and line.lstrip().startswith("{")):
        return parse_json(line)
    return parse_combined(line)


@dataclass
class ReplayReport:
    lines: int = 0
    skipped: int = 0
    exchanges: int = 0
    flagged: int = 0
    would_block: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    by_client: dict[str, int] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None
    # symptoms that started during the logs (bastion.detect.symptoms): time, rule, route, message, figures
    symptoms: list[dict[str, Any]] = field(default_factory=list)


class Replayer:
    """Feeds records through a pipeline built on a ManualClock, in log order."""

    def __init__(self, pipeline: Pipeline, clock: ManualClock) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.report = ReplayReport()
        self._done: list[Exchange] = []

    async def replay_lines(self, lines: Iterable[str], fmt: str = "auto") -> ReplayReport:
        for record in self._records(lines, fmt):
            await self.replay(record)
        await self.pipeline.drain()
        symptoms = symptoms_of(self.pipeline)
        if symptoms is not None:
            self.report.symptoms = [
                {"time": ev.time, "rule": ev.rule_ids[0], "method": ev.method, "route": ev.route,
                 "message": ev.findings[0]["message"], "figures": ev.findings[0]["evidence"]}
                for ev in symptoms.started
            ]
        return self.report

    def _records(self, lines: Iterable[str], fmt: str) -> Iterator[LogRecord]:
        for raw in lines:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            self.report.lines += 1
            try:
                yield parse_line(line, fmt)
            except LogFormatError:
                self.report.skipped += 1

    async def replay(self, rec: LogRecord) -> Exchange:
        if rec.time >= self.clock.now():  # logs are mostly ordered; never move the clock back
            self.clock.set(rec.time)
        headers = Headers([("Host", rec.host or "replay")])
        if rec.user_agent and rec.user_agent != "-":
            headers.add("User-Agent", rec.user_agent)
        if rec.referer and rec.referer != "-":
            headers.add("Referer", rec.referer)
        p = self.pipeline
        ex = p.new_exchange(Client(rec.client_ip), rec.method, rec.target, headers, rec.http_version)
        verdict = await p.connection(ex) or await p.request_headers(ex) or await p.request_body(ex)
        ex.response = Response(rec.status, Headers(), body_size=rec.size)
        if verdict is None:
            verdict = await p.response_headers(ex)
        ex.duration = rec.duration if rec.duration is not None else 0.0
        p.complete(ex)
        self._count(ex, rec)
        return ex

    def _count(self, ex: Exchange, rec: LogRecord) -> None:
        r = self.report
        r.exchanges += 1
        r.first = rec.time if r.first is None else min(r.first, rec.time)
        r.last = rec.time if r.last is None else max(r.last, rec.time)
        if ex.findings:
            r.flagged += 1
            for f in ex.findings:
                r.by_rule[f.rule_id] = r.by_rule.get(f.rule_id, 0) + 1
        v = ex.verdict
        if v is not None and (v.blocks or v.would_block or v.action >= Action.THROTTLE):
            r.would_block += 1
            r.by_client[rec.client_ip] = r.by_client.get(rec.client_ip, 0) + 1
