"""Runtime.create wires the event writer (SQLite in the data dir by default) behind the pipeline."""

from __future__ import annotations

from pathlib import Path

from bastion.config import BastionConfig, LoggingConfig
from bastion.exchange import Client, Headers, Response
from bastion.runtime import Runtime
from bastion.store.sqlite import SQLiteStore
from bastion.store.writer import EventWriter
from bastion.verdict import Action, Finding


async def test_blocked_exchange_becomes_a_stored_event(tmp_path: Path) -> None:
    rt = Runtime.create(BastionConfig(data_dir=tmp_path), only=set())
    await rt.start()
    assert isinstance(rt.events, EventWriter)
    p = rt.pipeline
    ex = p.new_exchange(Client(peer_ip="127.0.0.5"), "GET", "/a?secret=1", Headers([("Host", "shop.test")]),
                        request_id="rid-1")
    verdict = p.block(ex, Finding("bastion-uri-too-long", "proxy", "URI too long", action=Action.BLOCK,
                                  status=414, reason="uri-too-long"))
    ex.response = Response(status=verdict.status, headers=Headers(), from_bastion=True)
    p.complete(ex)
    ok = p.new_exchange(Client(peer_ip="127.0.0.5"), "GET", "/fine", Headers())
    ok.response = Response(status=200, headers=Headers())
    p.complete(ok)
    await rt.stop()
    events = SQLiteStore(tmp_path / "events.db").query()
    assert len(events) == 1
    ev = events[0]
    assert (ev.request_id, ev.status, ev.action, ev.path, ev.site) == ("rid-1", 414, "block", "/a", "shop.test")
    assert ev.reason == "uri-too-long" and ev.rule_ids == ("bastion-uri-too-long",)


def test_without_store_or_event_logs_there_is_no_writer(tmp_path: Path) -> None:
    cfg = BastionConfig(data_dir=tmp_path, logging=LoggingConfig(events_to_log=False))
    rt = Runtime.create(cfg, with_store=False, only=set())
    assert rt.events is None and rt.sinks == []
    rt2 = Runtime.create(BastionConfig(data_dir=tmp_path), with_store=False, only=set())
    assert rt2.events is not None and rt2.events._opener is None
    assert not (tmp_path / "events.db").exists()
