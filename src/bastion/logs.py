"""Structured logs: one JSON object per line (orjson), for the gateway's own messages and for events.

`configure_logging(config)` is called once by the command line; embedded users (the ASGI
middleware) keep their own logging setup and still get records on the `bastion.*` loggers.
Messages are passed through `mask_secrets`, so a credential that ends up in an exception text is
not written to a log either.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

from bastion.config import BastionConfig
from bastion.events import Event, clip, mask_secrets, printable_doc

EVENTS_LOGGER = "bastion.events"
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_MAX_MSG = 2000


def _iso(ts: float) -> str:
    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extra}` on one line; extras are any `extra=` keys."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            msg = record.getMessage()
        except Exception:  # a bad %-format in a log call must not lose the line
            msg = str(record.msg)
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": clip(mask_secrets(msg), _MAX_MSG),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            doc["exc_type"] = type(exc).__name__
            doc["exc"] = clip(mask_secrets(self.formatException(record.exc_info)), 4000)
        try:
            return orjson.dumps(doc, default=str).decode()
        except TypeError:  # a client's undecodable byte in the message or an extra: still one line
            return orjson.dumps(printable_doc(doc), default=str).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal (`logging.json: false`)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return mask_secrets(line)


_HANDLER_FLAG = "_bastion_handler"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure_logging(config: BastionConfig, stream: IO[str] | None = None) -> logging.Handler:
    """Install Bastion's handler on the root logger (replacing a previous one of ours).

    Bastion's loggers log at `logging.level`; everything else (libraries) at warning and above.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_FLAG, False):
            root.removeHandler(h)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(JsonFormatter() if config.logging.json_lines else TextFormatter())
    setattr(handler, _HANDLER_FLAG, True)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("bastion").setLevel(config.logging.level.upper())
    return handler


def unconfigure_logging() -> None:
    """Remove the handler `configure_logging` installed (embedding code, tests)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_FLAG, False):
            root.removeHandler(h)


def summary(event: Event) -> str:
    """One short human line for an event (the `msg` of its log record)."""
    what = event.action + (" (would block)" if event.would_block else "")
    rules = ",".join(event.rule_ids[:6]) or "-"
    return f"{what} {event.status} {event.method} {event.path} client={event.client_ip} rules={rules}"


def log_event(event: Event, logger: logging.Logger | None = None) -> None:
    """Write an event as a log record: JSON mode carries the whole event under `event`."""
    lg = logger or logging.getLogger(EVENTS_LOGGER)
    level = logging.WARNING if event.blocked else logging.INFO
    if lg.isEnabledFor(level):
        lg.log(level, "%s", summary(event), extra={"event": event.as_dict(), "request_id": event.request_id})


def event_line(event: Event) -> bytes:
    """An event as one JSON line (for files and pipes), without going through `logging`."""
    return orjson.dumps({"ts": _iso(event.time), "logger": EVENTS_LOGGER, "event": event.as_dict()}) + b"\n"
