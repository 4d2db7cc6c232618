"""The helpers detector authors build their tests on."""

from __future__ import annotations

from bastion.exchange import Exchange, Headers
from bastion.testing import (
    ManualClock,
    inspect_request,
    make_config,
    make_exchange,
    make_pipeline,
    run_request,
    run_response,
)
from bastion.verdict import Action, Finding, Severity


def test_make_exchange_defaults_and_headers():
    ex = make_exchange("POST", "/a?b=1&b=2", headers=[("X-A", "1"), ("x-a", "2")], body="hé", client_ip="10.0.0.9")
    req = ex.request
    assert req.method == "POST" and req.path == "/a" and req.query_args() == [("b", "1"), ("b", "2")]
    assert req.headers.get_all("x-a") == ["1", "2"]
    assert req.headers.get("host") == "testserver" and ex.site == "testserver"
    assert req.body == "hé".encode() and req.headers.get("content-length") == "3" and req.body_size == 3
    assert ex.client.ip == ex.client.peer_ip == "10.0.0.9" and ex.keys == {"ip": "10.0.0.9"}


def test_make_exchange_options():
    ex = make_exchange(host=None, headers={"Transfer-Encoding": "chunked"}, body=b"x" * 10, inspect_bytes=4,
                       peer_ip="10.0.0.1", client_ip="198.51.100.2", http_version="1.0")
    assert "host" not in ex.request.headers and "content-length" not in ex.request.headers
    assert ex.request.body == b"xxxx" and ex.request.body_truncated and ex.request.body_size == 10
    assert (ex.client.peer_ip, ex.client.ip, ex.request.http_version) == ("10.0.0.1", "198.51.100.2", "1.0")
    own = Headers([("Host", "h")])
    ex = make_exchange(headers=own, body=b"ab", content_length=False)
    assert ex.request.headers is not own and "content-length" not in ex.request.headers


def test_make_exchange_through_a_pipeline_uses_its_clock():
    clock = ManualClock(1000.0)
    pipeline = make_pipeline(only=set(), clock=clock)
    ex = make_exchange(pipeline=pipeline, request_id="r-1")
    assert ex.started == 1000.0 and ex.id == "r-1"


class Marker:
    """Scores a request carrying X-Evil, asks for 429 on X-Slow, blocks responses with status 418."""

    name = "marker"

    def request_headers(self, ex: Exchange) -> None:
        if "x-evil" in ex.request.headers:
            ex.add(Finding("t-evil", self.name, "evil", Severity.CRITICAL, score=5))
        if "x-note" in ex.request.headers:
            ex.add(Finding("t-note", self.name, "note", Severity.NOTICE, score=2))

    def response_headers(self, ex: Exchange) -> None:
        if ex.response is not None and ex.response.status == 418:
            ex.add(Finding("t-teapot", self.name, "teapot", Severity.CRITICAL, score=5))


async def test_run_request_and_response():
    from bastion.engine.pipeline import Pipeline

    cfg = make_config({"scoring": {"inbound_threshold": 5}})
    pipeline = Pipeline(cfg, [Marker()], clock=ManualClock())
    assert (await run_request(pipeline, "GET", "/")).action == Action.ALLOW
    blocked = await run_request(pipeline, "GET", "/", headers={"X-Evil": "1"})
    assert blocked.blocks and blocked.status == 403 and blocked.rule_ids == ("t-evil",)
    noted = await run_request(pipeline, "GET", "/", headers={"X-Note": "1"})
    assert noted.action == Action.LOG and noted.rule_ids == ("t-note",)

    ex = make_exchange(pipeline=pipeline)
    await run_request(pipeline, exchange=ex)
    final = await run_response(pipeline, ex, 418, headers={"Content-Type": "text/plain"}, body=b"short and stout")
    assert final.blocks and final.status == 502 and ex.response is not None and ex.response.body == b"short and stout"
    assert pipeline.counters.exchanges == 1 and pipeline.counters.blocked == 1


async def test_run_request_caps_the_body_at_the_configured_prefix():
    pipeline = make_pipeline({"limits": {"inspect_body_bytes": 8}}, only=set())
    ex, verdict = await inspect_request(pipeline, "POST", "/", body=b"0123456789abcdef")
    assert ex.request.body == b"01234567" and ex.request.body_truncated and ex.request.body_size == 16
    assert verdict.action == Action.ALLOW and ex.findings == []
