"""The demo shop, the attack script, and `bastion demo --attack` end to end."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.demo.app import ShopApp
from bastion.demo.attack import Reply, Result, Step, attach_events, build, script
from bastion.demo.run import Demo, curl_lines, demo_config, score_line
from bastion.demo.upstream import DemoUpstream
from bastion.events import Event


async def call(app: ShopApp, method: str, target: str, body: Any = None) -> tuple[int, dict[str, Any], bytes]:
    path, _, query = target.partition("?")
    raw = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else (body or b"")
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await app({"type": "http", "method": method, "path": path, "query_string": query.encode()}, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, sent[1]["body"]


async def test_shop_endpoints() -> None:
    app = ShopApp()
    status, headers, body = await call(app, "GET", "/api/products?q=lamp")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [p["name"] for p in orjson.loads(body)["products"]] == ["Desk lamp", "Floor lamp"]
    status, _, body = await call(app, "POST", "/api/login", {"email": "alice@example.com", "password": "wonderland"})
    assert status == 200 and len(orjson.loads(body)["token"]) == 32
    status, _, _ = await call(app, "POST", "/api/login", {"email": "alice@example.com", "password": "nope"})
    assert status == 401
    status, _, body = await call(app, "GET", "/api/profile?email=bob.nguyen%40example.com")
    assert status == 200 and orjson.loads(body)["name"] == "Bob Nguyen"
    assert (await call(app, "GET", "/api/profile?email=ghost%40example.com"))[0] == 404
    status, _, body = await call(app, "GET", "/api/users/3")
    assert status == 200 and orjson.loads(body)["email"].endswith("@example.com")
    status, _, body = await call(app, "GET", "/api/orders?user_id=3")
    assert status == 200 and all(o["user_id"] == 3 for o in orjson.loads(body)["orders"])
    status, _, body = await call(app, "POST", "/api/orders", {"user_id": 2, "items": [{"product_id": 1, "qty": 2}]})
    assert status == 201 and orjson.loads(body)["total"] == 79.8
    assert (await call(app, "DELETE", "/api/products"))[0] == 405
    assert (await call(app, "GET", "/nowhere"))[0] == 404
    assert (await call(app, "POST", "/api/login", b"{not json"))[0] == 400
    assert (await call(app, "GET", "/api/products?limit=lots"))[0] == 400


async def test_shop_is_deterministic() -> None:
    a, b = ShopApp(), ShopApp()
    assert (await call(a, "GET", "/api/orders/5003"))[2] == (await call(b, "GET", "/api/orders/5003"))[2]


def test_upstream_serves_over_a_real_socket() -> None:
    up = DemoUpstream()
    up.start()
    try:
        with urllib.request.urlopen(up.url + "/health", timeout=5) as r:
            assert orjson.loads(r.read()) == {"status": "ok"}
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(up.url + "/api/products/999", timeout=5)
        assert exc.value.code == 404
    finally:
        up.stop()


def test_script_mixes_benign_and_attacks() -> None:
    steps = script()
    kinds = {s.category for s in steps}
    assert "benign" in kinds and {"sql injection", "xss", "smuggling", "oversized"} <= kinds
    assert sum(not s.attack for s in steps) >= 5
    raw = build(next(s for s in steps if s.raw is not None), "rid-7", "h")
    assert raw.split(b"\r\n")[1] == b"X-Request-Id: rid-7"
    req = build(steps[1], "rid-8", "h:1")
    head, _, body = req.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head and b"Host: h:1" in head
    ua = build(Step("x", "log4shell", "GET", "/", (("User-Agent", "${jndi:x}"),)), "r", "h")
    assert ua.count(b"User-Agent") == 1 and b"User-Agent: ${jndi:x}" in ua


def test_attach_events_by_id_then_by_shape() -> None:
    s1, s2 = Step("a", "benign", "GET", "/a?x=1"), Step("b", "smuggling", "POST", "/b")
    r1 = Result(s1, "id-1", Reply(200, {"content-type": "application/json"}))
    r2 = Result(s2, "id-2", Reply(400, {"content-type": "application/problem+json"}, b'{"type":"x/bad-request"}'))
    e1 = Event(time=1, request_id="id-1", client_ip="c", method="GET", path="/a", status=200, rule_ids=("r1",))
    e2 = Event(time=2, request_id="generated", client_ip="c", method="POST", path="/b", status=400,
               action="block", rule_ids=("proto-x",), reason="bad-request")
    attach_events([r1, r2], [e2, e1])
    assert r1.event is e1 and r2.event is e2
    assert r2.blocked and r2.outcome == "blocked" and r2.why == "proto-x (bad-request)"
    assert r1.outcome == "flagged" and not r1.blocked
    assert score_line([r1, r2]) == "attacks blocked: 1/1    benign requests served: 1/1"


def test_curl_lines_are_copyable() -> None:
    lines = dict(curl_lines("http://127.0.0.1:8080"))
    assert lines["benign"] == "curl -s 'http://127.0.0.1:8080/api/products?q=lamp'"
    assert "%3Cscript%3E" in lines["XSS"] and "UNION" in lines["SQL injection"]


async def test_demo_blocks_framing_and_limit_attacks_and_serves_benign(tmp_path: Path) -> None:
    up = DemoUpstream()
    up.start()
    demo = Demo(demo_config(up.url, port=0, data_dir=tmp_path), up)
    await demo.start()
    try:
        results = await demo.attack()
    finally:
        await demo.stop()
    by_label = {r.step.label: r for r in results}
    for r in results:
        assert not r.reply.error, (r.step.label, r.reply.error)
        if not r.step.attack:
            assert not r.blocked and r.reply.status < 400, r.step.label  # no false positive in the demo
    # The limits and protocol checks of the gateway (signature detection adds the injections).
    for label, status in [("oversized body (declared 50 MB)", 413), ("oversized URI (20 KB)", 414),
                          ("200 request headers", 431), ("CL.TE request smuggling", 400),
                          ("conflicting Content-Length", 400), ("obsolete header folding", 400)]:
        r = by_label[label]
        assert r.blocked and r.reply.status == status, (label, r.reply)
        assert r.event is not None and r.event.action == "block", label
    assert (tmp_path / "events.db").exists()


def test_demo_attack_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--attack", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "attacks blocked:" in result.output and "benign requests served: 8/8" in result.output
    assert "CL.TE request smuggling" in result.output


def test_interactive_demo_serves_until_interrupted(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys
    import time

    script = Path(sys.executable).with_name("bastion")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from bastion.cli import main; main()"]
    proc = subprocess.Popen([*cmd, "demo", "--port", "0", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 30
        while b"/api/login" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        m = re.search(rb"gateway:\s+(http://127\.0\.0\.1:\d+)", seen)
        assert m, seen.decode(errors="replace")
        gateway = m.group(1).decode()
        assert b"curl -s '" + gateway.encode() + b"/api/products?q=lamp'" in seen
        with urllib.request.urlopen(gateway + "/api/products?q=lamp", timeout=5) as r:
            assert r.status == 200 and orjson.loads(r.read())["count"] == 2
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(gateway + "/api/products?q=" + "A" * 10_000, timeout=5)
        assert exc.value.code == 414 and exc.value.headers["Content-Type"].startswith("application/problem+json")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_observe_mode_demo_refuses_only_broken_http(tmp_path: Path) -> None:
    up = DemoUpstream()
    up.start()
    demo = Demo(demo_config(up.url, port=0, data_dir=tmp_path, mode="observe"), up)
    await demo.start()
    try:
        results = await demo.attack()
    finally:
        await demo.stop()
    for r in results:
        assert not r.reply.error, r.step.label
        if r.blocked:  # only what cannot be forwarded safely (framing, sizes) is refused in observe mode
            assert r.step.category in ("smuggling", "oversized") and r.reply.status in (400, 413, 414, 431)
    assert all(e.event.mode == "observe" for e in results if e.event is not None)
