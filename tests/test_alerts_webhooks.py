"""Webhook alerts: deduplicated, rate-capped, sent for real to a local HTTP receiver."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import orjson
import pytest
from pydantic import ValidationError

from bastion.alerts.settings import AlertsConfig, WebhookConfig
from bastion.alerts.webhooks import WebhookAlerter, render
from bastion.clock import ManualClock
from bastion.events import Event


def event(ip: str = "203.0.113.9", rule: str = "942100", action: str = "block") -> Event:
    return Event(time=1795428001.0, request_id="r1", client_ip=ip, method="GET", path="/search",
                 action=action, rule_ids=(rule,), reason="request-blocked", status=403)


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        Receiver.bodies.append(self.rfile.read(n))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_sends_slack_and_generic_for_real(receiver: str) -> None:
    cfg = AlertsConfig(webhooks=[WebhookConfig(url=receiver, format="slack"), WebhookConfig(url=receiver)])
    alerter = WebhookAlerter(cfg, clock=ManualClock())
    alerter([event()])
    alerter.close()
    docs = [orjson.loads(b) for b in Receiver.bodies]
    assert len(docs) == 2
    slack = next(d for d in docs if "text" in d)
    generic = next(d for d in docs if "event" in d)
    assert "blocked GET /search from 203.0.113.9 (942100)" in slack["text"]
    assert generic["event"]["rule_ids"] == ["942100"] and alerter.stats.sent == 2


def test_deduplicates_within_window_and_reports_folded() -> None:
    sent: list[bytes] = []
    clock = ManualClock()
    alerter = WebhookAlerter(AlertsConfig(webhooks=[WebhookConfig(url="http://127.0.0.1:9/x")], dedup_window=60),
                             clock=clock, sender=lambda hook, body: sent.append(body))
    alerter([event() for _ in range(50)])
    alerter([event(ip="203.0.113.10")])  # another client is another alert
    clock.advance(61)
    alerter([event()])
    alerter.close()
    assert len(sent) == 3 and alerter.stats.deduplicated == 49
    assert orjson.loads(sent[-1])["folded"] == 49


def test_only_blocks_by_default_and_rate_cap() -> None:
    sent: list[bytes] = []
    clock = ManualClock()
    cfg = AlertsConfig(webhooks=[WebhookConfig(url="http://127.0.0.1:9/x")], max_per_minute=5, dedup_window=0)
    alerter = WebhookAlerter(cfg, clock=clock, sender=lambda hook, body: sent.append(body))
    alerter([event(action="log")])
    alerter([event(ip=f"198.51.100.{i}") for i in range(20)])
    alerter.close()
    assert len(sent) == 5 and alerter.stats.dropped == 15


def test_dead_webhook_is_counted_not_raised() -> None:
    cfg = AlertsConfig(webhooks=[WebhookConfig(url="http://127.0.0.1:9/unreachable", timeout=0.5)])
    alerter = WebhookAlerter(cfg, clock=ManualClock())
    alerter([event()])
    alerter.close()
    assert alerter.stats.failed == 1 and alerter.stats.sent == 0


def test_config_rejects_other_schemes() -> None:
    with pytest.raises(ValidationError):
        WebhookConfig(url="file:///etc/passwd")


def test_render_never_needs_more_than_the_event() -> None:
    doc = orjson.loads(render("generic", event(), folded=3))
    assert doc["folded"] == 3 and "3 similar alerts" in doc["summary"]


async def test_runtime_wires_alerts_to_blocked_exchanges(receiver: str, tmp_path) -> None:
    from bastion.config import BastionConfig
    from bastion.exchange import Client, Headers
    from bastion.runtime import Runtime

    cfg = BastionConfig(data_dir=tmp_path, alerts=AlertsConfig(webhooks=[WebhookConfig(url=receiver, format="slack")]))
    runtime = Runtime.create(cfg)
    await runtime.start()
    p = runtime.pipeline
    ex = p.new_exchange(Client("198.51.100.77"), "GET", "/" + "a" * 20000, Headers([("Host", "api")]))
    verdict = await p.request_headers(ex)
    assert verdict is not None and verdict.blocks
    p.complete(ex)
    await runtime.stop()
    texts = [orjson.loads(b)["text"] for b in Receiver.bodies]
    assert len(texts) == 1 and "198.51.100.77" in texts[0] and "a" * 600 not in texts[0]


def test_alerts_section_loads_from_yaml(tmp_path) -> None:
    from bastion.config import load_config

    p = tmp_path / "bastion.yaml"
    p.write_text("alerts:\n  send_on: flag\n  webhooks:\n    - url: https://hooks.example/x\n      format: slack\n")
    cfg = load_config(p)
    assert cfg.alerts.send_on == "flag" and cfg.alerts.webhooks[0].format == "slack"
