"""Step-up end to end: the real proxy, a real upstream and a local delivery webhook (the API's side).

A user's own probing (a burst of 404s: the scanning scenario, tuned to land in the challenge band)
raises their risk; the next request gets a 401 with a challenge id, the code arrives at the webhook,
signed, and the retry carrying it is served. Another user's wrong codes end in a block.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bastion.detect.stepup import SIGNATURE_HEADER, verify_signature
from proxy_helpers import gateway, get, make_config, request, upstream_server
from state_backends import redis_up

SECRET = "webhook-secret-0123456789"
MINE = {"decisions", "risk", "behaviour"}


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, str]] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        Hook.received.append((self.rfile.read(n), self.headers.get(SIGNATURE_HEADER, "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/step-up"
    server.shutdown()


def auth(user: str) -> str:
    """The user as the authenticating front in front of Bastion sets it (a verified identity)."""
    return f"X-User: {user}\r\n"


async def code_for(user: str, wait: float = 5.0) -> dict[str, Any]:
    """The delivery the webhook received for `user` (checking its signature)."""
    for _ in range(int(wait / 0.02)):
        for body, sig in Hook.received:
            doc = orjson.loads(body)
            if doc["user"] == user:
                assert verify_signature(SECRET, sig, body)
                return dict(doc)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no code delivered for {user}")


async def probe_until_challenged(port: int, user: str, ip: str) -> dict[str, Any]:
    for i in range(40):
        r = await request(port, get(f"/status/{user}-probe{i}/404", extra=auth(user)), local_ip=ip)
        if r.status == 401:
            assert r.header("content-type").startswith("application/problem+json")  # type: ignore[union-attr]
            assert r.header("www-authenticate", ).startswith("Bastion-Step-Up")  # type: ignore[union-attr]
            doc: dict[str, Any] = r.json()
            assert user not in r.body.decode()
            return doc
        assert r.status == 404, r.status
    raise AssertionError("never challenged")


def config(up_url: str, hook_url: str, tmp_path: Path, decisions: str = "", **step_up: Any) -> Any:
    # scanning lands in the challenge band (60..90) instead of a block
    return make_config(up_url, data_dir=str(tmp_path), behaviour={
        "decisions": {"url": decisions, "prefix": f"test-stepup-{uuid.uuid4().hex[:8]}:decisions"},
        "entity": {"user_header": "X-User"},
        "scenarios": {"scanning": {"threshold": 12, "window": 120, "min_share": 0.5, "risk": 70}},
        "step_up": {"enabled": True, "deliver_url": hook_url, "deliver_secret": SECRET, **step_up},
    })


@pytest.mark.parametrize("decisions", ["", pytest.param("redis://127.0.0.1:6379/13", marks=[
    pytest.mark.redis, pytest.mark.skipif(not redis_up(), reason="needs Redis on 127.0.0.1:6379 (db 13)")])])
async def test_challenge_code_delivered_and_retry_served(tmp_path: Path, hook: str, decisions: str) -> None:
    async with upstream_server() as up, gateway(config(up.url, hook, tmp_path, decisions), only=MINE) as gw:
        core = gw.runtime.pipeline.detectors[0].core  # type: ignore[attr-defined]
        assert (core.step_up.remote is not None) == bool(decisions)  # Redis: the shared store is used
        ip = "127.94.0.1"
        doc = await probe_until_challenged(gw.port, "alice", ip)
        assert doc["type"].endswith("/challenge-required") and doc["status"] == 401
        assert doc["step_up_header"] == "X-Bastion-Step-Up" and 0 < doc["expires_in"] <= 300
        assert doc["attempts_left"] == 5
        sent = await code_for("alice")
        assert sent["challenge_id"] == doc["challenge_id"]
        code = sent["code"]
        assert code not in orjson.dumps(doc).decode()
        seen = len(up.requests)
        # without the code: still challenged, same challenge, no second delivery
        again = await request(gw.port, get("/hello", extra=auth("alice")), local_ip=ip)
        assert again.status == 401 and again.json()["challenge_id"] == doc["challenge_id"]
        assert len(up.requests) == seen
        # the retry with the code is served by the API
        ok = await request(gw.port, get("/hello", extra=auth("alice") +
                                        f"X-Bastion-Step-Up: {doc['challenge_id']}.{code}\r\n"), local_ip=ip)
        assert ok.status == 200 and ok.body == b"hello world\n"
        assert len(up.requests) == seen + 1
        assert "x-bastion-step-up" not in {k.lower() for k, _ in up.last().headers}  # not the API's business
        # the pass: later requests are served without a code
        for _ in range(3):
            assert (await request(gw.port, get("/hello", extra=auth("alice")), local_ip=ip)).status == 200
        # replaying the used code does not matter to a passed user, and the code is single-use
        assert len([b for b, _ in Hook.received if orjson.loads(b)["user"] == "alice"]) == 1
        rules = gw.sink.rules()
        assert "step-up-passed" in rules
        await asyncio.sleep(0)


async def test_wrong_codes_end_in_a_block(tmp_path: Path, hook: str) -> None:
    async with upstream_server() as up, gateway(config(up.url, hook, tmp_path, fail_risk=5), only=MINE) as gw:
        ip = "127.94.0.2"
        doc = await probe_until_challenged(gw.port, "mallory", ip)
        code = (await code_for("mallory"))["code"]
        wrong = "000000" if code != "000000" else "111111"
        statuses = []
        for _ in range(6):
            r = await request(gw.port, get("/hello", extra=auth("mallory") +
                                           f"X-Bastion-Step-Up: {doc['challenge_id']}.{wrong}\r\n"), local_ip=ip)
            statuses.append(r.status)
            if r.status == 403:
                assert r.json()["type"].endswith("/access-denied")
                break
        assert statuses[-1] == 403 and set(statuses[:-1]) == {401}
        # blocked now, even with the right code
        r = await request(gw.port, get("/hello", extra=auth("mallory") +
                                       f"X-Bastion-Step-Up: {doc['challenge_id']}.{code}\r\n"), local_ip=ip)
        assert r.status == 403
        assert not any(rq.target == "/hello" for rq in up.requests)


async def test_through_the_asgi_middleware(tmp_path: Path, hook: str) -> None:
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from bastion import BastionMiddleware
    from bastion.runtime import Runtime

    app = FastAPI()

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello")

    cfg = config("http://unused.test", hook, tmp_path)
    cfg.logging.events_to_log = False
    runtime = Runtime.create(cfg, with_store=False, only=MINE)
    mw = BastionMiddleware(app, runtime=runtime)
    hdr = {"X-User": "zoe"}
    transport = httpx.ASGITransport(app=mw, client=("127.94.0.3", 4711))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
            doc: dict[str, Any] = {}
            for i in range(40):
                r = await c.get(f"/status/zoe-probe{i}/404", headers=hdr)
                if r.status_code == 401:
                    doc = r.json()
                    assert r.headers["content-type"] == "application/problem+json"
                    assert r.headers["www-authenticate"].startswith("Bastion-Step-Up")
                    break
                assert r.status_code == 404
            assert doc.get("challenge_id") and doc["expires_in"] > 0
            code = (await code_for("zoe"))["code"]
            wrong = "000000" if code != "000000" else "111111"
            r = await c.get("/hello", headers={**hdr, "X-Bastion-Step-Up": f"{doc['challenge_id']}.{wrong}"})
            assert r.status_code == 401 and r.json()["attempts_left"] == 4
            r = await c.get("/hello", headers={**hdr, "X-Bastion-Step-Up": f"{doc['challenge_id']}.{code}"})
            assert r.status_code == 200 and r.text == "hello"
            assert (await c.get("/hello", headers=hdr)).status_code == 200
    finally:
        await runtime.stop()
