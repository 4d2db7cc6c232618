"""bastion.logs: JSON log lines (one object per line), events as log records, no secrets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from bastion.config import BastionConfig, LoggingConfig
from bastion.events import Event
from bastion.logs import EVENTS_LOGGER, configure_logging, event_line, log_event, unconfigure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = configure_logging(BastionConfig(), stream=buf)
    yield buf
    logging.getLogger().removeHandler(handler)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines() if line]


def test_json_lines_with_extras_and_masking(stream: io.StringIO) -> None:
    lg = logging.getLogger("bastion.test")
    lg.info("upstream said %s", "Authorization: Bearer abcdef123456", extra={"request_id": "r1"})
    lg.debug("not at info level")
    try:
        raise ValueError("password=hunter2 rejected")
    except ValueError:
        lg.exception("boom")
    got = lines(stream)
    assert len(got) == 2
    assert got[0]["level"] == "info" and got[0]["logger"] == "bastion.test" and got[0]["request_id"] == "r1"
    assert "abcdef123456" not in str(got[0]["msg"])
    assert got[1]["exc_type"] == "ValueError" and "hunter2" not in str(got[1]["exc"])
    assert str(got[0]["ts"]).endswith("Z")


def test_library_loggers_only_warn(stream: io.StringIO) -> None:
    logging.getLogger("some.library").info("chatter")
    logging.getLogger("some.library").warning("real problem")
    assert [d["msg"] for d in lines(stream)] == ["real problem"]


def test_reconfigure_replaces_our_handler() -> None:
    a, b = io.StringIO(), io.StringIO()
    configure_logging(BastionConfig(), stream=a)
    h = configure_logging(BastionConfig(logging=LoggingConfig(level="warning", json=False)), stream=b)
    logging.getLogger("bastion.x").info("hidden")
    logging.getLogger("bastion.x").warning("shown")
    logging.getLogger().removeHandler(h)
    assert a.getvalue() == ""
    assert "WARNING" in b.getvalue() and "shown" in b.getvalue() and "hidden" not in b.getvalue()


def test_event_record(stream: io.StringIO) -> None:
    ev = Event(time=1_700_000_000.5, request_id="abc", client_ip="198.51.100.4", method="GET", path="/api/x",
               status=403, action="block", rule_ids=("942100",), reason="request-blocked")
    log_event(ev)
    (rec,) = lines(stream)
    assert rec["logger"] == EVENTS_LOGGER and rec["level"] == "warning" and rec["request_id"] == "abc"
    assert rec["event"] == orjson.loads(orjson.dumps(ev.as_dict()))
    assert "block 403 GET /api/x" in str(rec["msg"])
    raw = event_line(ev)
    assert raw.endswith(b"\n") and orjson.loads(raw)["event"]["rule_ids"] == ["942100"]
    assert orjson.loads(raw)["ts"] == "2023-11-14T22:13:20.500Z"


def test_default_handler_follows_a_swapped_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = configure_logging(BastionConfig())
    try:
        first, second = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stderr", first)
        logging.getLogger("bastion.t").warning("one")
        first.close()  # what a test runner does to a captured stream
        monkeypatch.setattr("sys.stderr", second)
        logging.getLogger("bastion.t").warning("two")
        assert [orjson.loads(x)["msg"] for x in second.getvalue().splitlines()] == ["two"]
    finally:
        unconfigure_logging()
    assert handler not in logging.getLogger().handlers
