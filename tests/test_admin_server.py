"""The admin listener over real sockets: authentication, the REST API, decisions, entities, the
catalog, the console files, and containment (a broken admin request never hurts the proxy)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import stat
import subprocess
import time

import httpx
import pytest
from openapi_spec_validator import validate

from admin_helpers import TOKEN, admin_gateway
from bastion.admin import auth as auth_mod
from bastion.admin.auth import resolve_token
from bastion.admin.settings import AdminConfig
from bastion.admin.totp import decode_secret, totp
from bastion.config import BastionConfig
from proxy_helpers import get, request

SQLI = "/search?q=1%27%20OR%20%271%27=%271%27%20UNION%20SELECT%20password%20FROM%20users--"


def test_default_admin_is_loopback_only():
    cfg = BastionConfig().admin
    assert cfg.enabled and cfg.listen == "127.0.0.1:9090"
    with pytest.raises(ValueError):
        AdminConfig(token="short")
    with pytest.raises(ValueError):
        AdminConfig(totp_secret="not base32 !!")
    with pytest.raises(ValueError):
        AdminConfig(listen="nowhere")


async def test_health_needs_no_token_everything_else_does(tmp_path):
    async with admin_gateway(tmp_path) as gw, gw.client(token=None) as c:
        r = await c.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        for path in ("/api/v1/stats", "/api/v1/events", "/api/v1/catalog", "/api/v1/decisions",
                     "/api/v1/entities", "/api/v1/openapi.json", "/metrics", "/api/v1/session"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"].startswith("Bearer")
            body = r.json()
            assert body["status"] == 401 and body["title"] == "Unauthorized"
        r = await c.post("/api/v1/decisions", json={"value": "10.0.0.1"})
        assert r.status_code == 401
        r = await c.delete("/api/v1/decisions/abc")
        assert r.status_code == 401


async def test_wrong_token_is_refused_with_a_constant_time_compare(tmp_path, monkeypatch):
    calls: list[tuple[int, int]] = []
    real = auth_mod.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    async with admin_gateway(tmp_path) as gw:
        for bad in ("wrong", TOKEN[:-1], TOKEN + "x", "", "Bearer", TOKEN.upper()):
            async with gw.client(token=bad) as c:
                r = await c.get("/api/v1/stats")
                assert r.status_code == 401, bad
        async with gw.client(token=None) as c:
            r = await c.get("/api/v1/stats", headers={"Authorization": f"Basic {TOKEN}"})
            assert r.status_code == 401
        assert calls and all(a == b == 32 for a, b in calls), "digests of equal length are compared"
        async with gw.client() as c:
            r = await c.get("/api/v1/stats")
            assert r.status_code == 200
            s = r.json()
            assert s["mode"] == "enforce" and s["exchanges"] == 0 and "events" in s


def test_token_file_is_generated_0600_and_only_its_path_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("BASTION_ADMIN_TOKEN", raising=False)
    caplog.set_level(logging.INFO, "bastion.admin")
    token, source = resolve_token(AdminConfig(), tmp_path)
    path = tmp_path / "admin.token"
    assert source == str(path) and path.read_text().strip() == token and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in caplog.text and token not in caplog.text
    assert resolve_token(AdminConfig(), tmp_path) == (token, str(path)), "the same token at the next start"
    monkeypatch.setenv("BASTION_ADMIN_TOKEN", "from-the-environment-123")
    assert resolve_token(AdminConfig(), tmp_path) == ("from-the-environment-123", "environment BASTION_ADMIN_TOKEN")
    assert resolve_token(AdminConfig(token="from-the-config-file-456"), tmp_path)[0] == "from-the-config-file-456"


async def test_blocked_request_becomes_an_event(tmp_path):
    async with admin_gateway(tmp_path) as gw:
        assert (await request(gw.proxy_port, get("/hello"))).status == 200
        blocked = await request(gw.proxy_port, get(SQLI))
        assert blocked.status == 403
        await gw.flush_events()
        async with gw.client() as c:
            r = await c.get("/api/v1/events", params={"action": "block"})
            assert r.status_code == 200
            events = r.json()["events"]
            assert len(events) == 1
            ev = events[0]
            assert ev["path"] == "/search" and ev["action"] == "block" and ev["status"] == 403
            assert any(rule.startswith("942") for rule in ev["rule_ids"])
            r = await c.get("/api/v1/events", params={"since": ev["time"] + 1})
            assert r.json()["events"] == []
            r = await c.get("/api/v1/events", params={"client": "127.0.0.1", "limit": 5})
            assert len(r.json()["events"]) == 1
            for bad in ({"action": "explode"}, {"since": "yesterday"}, {"limit": "-3"}, {"client": "x"},
                        {"since": "nan"}):
                r = await c.get("/api/v1/events", params=bad)
                assert r.status_code == 400, bad
                assert r.headers["content-type"] == "application/problem+json"
            s = (await c.get("/api/v1/stats")).json()
            assert s["exchanges"] == 2 and s["blocked"] == 1
            assert any(t["rule"].startswith("942") for t in s["top_rules"])
            assert s["events"]["written"] >= 1


async def test_decisions_post_enforce_then_delete(tmp_path):
    async with admin_gateway(tmp_path) as gw, gw.client() as c:
        assert (await request(gw.proxy_port, get("/hello"), local_ip="127.0.0.9")).status == 200
        r = await c.post("/api/v1/decisions", json={"kind": "ip", "value": "127.0.0.9", "action": "deny",
                                                    "duration": "10m", "reason": "test"})
        assert r.status_code == 201, r.text
        d = r.json()
        assert d["origin"] == "admin" and d["value"] == "127.0.0.9" and 590 <= d["expires_in"] <= 600
        assert r.headers["location"] == f"/api/v1/decisions/{d['id']}"
        listed = (await c.get("/api/v1/decisions")).json()["decisions"]
        assert [x["id"] for x in listed] == [d["id"]]
        # enforced at once, for that address only
        assert (await request(gw.proxy_port, get("/hello"), local_ip="127.0.0.9")).status == 403
        assert (await request(gw.proxy_port, get("/hello"), local_ip="127.0.0.10")).status == 200
        r = await c.delete(f"/api/v1/decisions/{d['id']}")
        assert r.status_code == 204
        assert (await c.get("/api/v1/decisions")).json()["decisions"] == []
        assert (await request(gw.proxy_port, get("/hello"), local_ip="127.0.0.9")).status == 200
        r = await c.delete(f"/api/v1/decisions/{d['id']}")
        assert r.status_code == 404
        # persisted for `bastion decisions list` and the other workers
        await asyncio.sleep(0)
        r = await c.post("/api/v1/decisions", json={"value": "10.0.0.0/8", "duration": None})
        assert r.status_code == 201 and r.json()["until"] is None and r.json()["action"] == "deny"
        core_store = None
        for det in gw.runtime.pipeline.detectors:
            core_store = getattr(getattr(det, "core", None), "store", None) or core_store
        assert core_store is not None
        await core_store.flush()
        assert "10.0.0.0/8" in (tmp_path / "decisions.json").read_text()


@pytest.mark.parametrize("body,status", [
    ({"value": "not-an-ip"}, 400),
    ({"value": ""}, 400),
    ({"kind": "planet", "value": "x"}, 400),
    ({"value": "10.0.0.1", "action": "nuke"}, 400),
    ({"value": "10.0.0.1", "duration": "soon"}, 400),
    ({"value": "10.0.0.1", "duration": -5}, 400),
    ({"value": "10.0.0.1", "extra": 1}, 400),
    (["10.0.0.1"], 400),
])
async def test_bad_decisions_are_refused_clearly(tmp_path, body, status):
    async with admin_gateway(tmp_path) as gw, gw.client() as c:
        r = await c.post("/api/v1/decisions", json=body)
        assert r.status_code == status
        assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]
        r = await c.post("/api/v1/decisions", content=b"value=1", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = await c.post("/api/v1/decisions", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert (await c.get("/api/v1/decisions")).json()["count"] == 0


async def test_attackers_and_their_risk_history(tmp_path):
    async with admin_gateway(tmp_path) as gw:
        for _ in range(3):
            assert (await request(gw.proxy_port, get(SQLI), local_ip="127.0.0.77")).status == 403
        await gw.flush_events()
        async with gw.client() as c:
            ents = (await c.get("/api/v1/entities")).json()["entities"]
            top = ents[0]
            assert top["id"] == "ip:127.0.0.77" and top["events"] == 3 and top["risk"] > 0
            e = (await c.get("/api/v1/entities/ip:127.0.0.77")).json()
            assert e["risk"] > 0 and "ip:127.0.0.77" in e["keys"]
            hist = e["risk_history"]
            assert len(hist) >= 3 and hist[-1]["risk"] >= hist[0]["risk"]
            assert all(ev["client_ip"] == "127.0.0.77" for ev in e["events"]) and len(e["events"]) == 3
            assert (await c.get("/api/v1/entities/127.0.0.77")).json()["id"] == e["id"], "a bare address works"
            r = await c.get("/api/v1/entities/ip:192.0.2.200")
            assert r.status_code == 404
            assert e["live"] is True
            # after a restart the graph is empty: the attacker is still shown, from its stored events
            for det in gw.runtime.pipeline.detectors:
                graph = getattr(getattr(det, "core", None), "graph", None)
                if graph is not None:
                    graph.nodes.clear()
            e = (await c.get("/api/v1/entities/ip:127.0.0.77")).json()
            assert e["live"] is False and e["risk"] is None and len(e["events"]) == 3


async def test_catalog_lists_endpoints_learned_live(tmp_path):
    async with admin_gateway(tmp_path) as gw:
        for _ in range(3):
            assert (await request(gw.proxy_port, get("/hello"))).status == 200
        assert (await request(gw.proxy_port, get("/status/404"))).status == 404
        await gw.runtime.pipeline.drain()
        async with gw.client() as c:
            d = (await c.get("/api/v1/catalog")).json()
            assert d["source"] == "live"
            by = {(e["method"], e["template"]): e for e in d["endpoints"]}
            assert by[("GET", "/hello")]["calls"] == 3
            assert d["endpoints"][0]["template"] == "/hello", "busiest first"
            assert (await c.get("/api/v1/catalog", params={"host": "elsewhere.test"})).json()["endpoints"] == []


async def test_openapi_document_is_valid_and_covers_every_route(tmp_path):
    async with admin_gateway(tmp_path) as gw, gw.client() as c:
        spec = (await c.get("/api/v1/openapi.json")).json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) >= {
        "/healthz", "/metrics", "/api/v1/login", "/api/v1/logout", "/api/v1/session", "/api/v1/openapi.json",
        "/api/v1/stats", "/api/v1/events", "/api/v1/catalog", "/api/v1/decisions", "/api/v1/decisions/{id}",
        "/api/v1/entities", "/api/v1/entities/{id}"}
    assert spec["paths"]["/healthz"]["get"]["security"] == []


async def test_console_login_session_cookie_and_csrf(tmp_path):
    async with admin_gateway(tmp_path) as gw, gw.client(token=None) as c:
        assert (await c.get("/api/v1/login")).json() == {"totp": False}
        r = await c.post("/api/v1/login", json={"token": "nope"})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        r = await c.post("/api/v1/login", json={"token": TOKEN})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        csrf = r.json()["csrf"]
        # httpx keeps the cookie: reads work with the session alone
        assert (await c.get("/api/v1/stats")).status_code == 200
        assert (await c.get("/api/v1/session")).json()["csrf"] == csrf
        r = await c.post("/api/v1/decisions", json={"value": "10.1.2.3"})
        assert r.status_code == 403, "a cookie-authenticated write without the CSRF header"
        r = await c.post("/api/v1/decisions", json={"value": "10.1.2.3"}, headers={"X-Bastion-CSRF": "guess"})
        assert r.status_code == 403
        r = await c.post("/api/v1/decisions", json={"value": "10.1.2.3"}, headers={"X-Bastion-CSRF": csrf})
        assert r.status_code == 201
        r = await c.post("/api/v1/logout", headers={"X-Bastion-CSRF": csrf})
        assert r.status_code == 204 and "Max-Age=0" in r.headers["set-cookie"]
        c.cookies.clear()
        assert (await c.get("/api/v1/stats")).status_code == 401


async def test_totp_second_factor_for_the_console(tmp_path):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DP"
    async with admin_gateway(tmp_path, admin={"totp_secret": secret}) as gw, gw.client(token=None) as c:
        assert (await c.get("/api/v1/login")).json() == {"totp": True}
        r = await c.post("/api/v1/login", json={"token": TOKEN})
        assert r.status_code == 401 and r.json()["detail"] == "wrong token or code"
        code = totp(decode_secret(secret), time.time())
        r = await c.post("/api/v1/login", json={"token": "wrong-token-wrong-token", "code": code})
        assert r.status_code == 401
        r = await c.post("/api/v1/login", json={"token": TOKEN, "code": code})
        assert r.status_code == 200 and "bastion_session=" in r.headers["set-cookie"]
        r = await c.post("/api/v1/login", json={"token": TOKEN, "code": code})
        assert r.status_code == 401, "a code logs in once"


async def test_repeated_failures_lock_the_address_out(tmp_path):
    async with admin_gateway(tmp_path) as gw, gw.client(token="definitely-not-the-token") as c:
        statuses = [(await c.get("/api/v1/stats")).status_code for _ in range(auth_mod.MAX_FAILURES)]
        assert set(statuses) == {401}
        r = await c.get("/api/v1/stats")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        r = await c.get("/api/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 429, "even the right token waits: the address is locked out"
        assert (await c.get("/healthz")).status_code == 200


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_bad_http_gets_a_clear_error_and_the_gateway_keeps_serving(tmp_path):
    async with admin_gateway(tmp_path) as gw:
        port = gw.admin.port
        assert (await _raw(port, b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        assert (await _raw(port, b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        assert (await _raw(port, b"POST /api/v1/login HTTP/1.1\r\nContent-Length: 999999\r\n\r\n")).startswith(
            b"HTTP/1.1 413 ")
        assert (await _raw(port, b"POST /api/v1/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")).startswith(
            b"HTTP/1.1 411 ")
        assert (await _raw(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 431 ")
        assert (await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        async with gw.client() as c:
            assert (await c.get("/nope")).status_code == 404
            assert (await c.put("/api/v1/stats")).status_code == 405
            assert (await c.get("/api/v1/entities/")).status_code == 404
        assert (await request(gw.proxy_port, get("/hello"))).status == 200


async def test_a_failing_handler_is_contained(tmp_path, monkeypatch):
    async with admin_gateway(tmp_path) as gw:
        async def boom(req):
            raise RuntimeError("bug")

        monkeypatch.setattr(gw.admin.app.api, "stats", boom)
        async with gw.client() as c:
            r = await c.get("/api/v1/stats")
            assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
            assert (await c.get("/api/v1/decisions")).status_code == 200
        assert (await request(gw.proxy_port, get("/hello"))).status == 200


async def test_admin_port_in_use_does_not_stop_the_gateway(tmp_path, caplog):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        async with admin_gateway(tmp_path, admin={"listen": f"127.0.0.1:{port}"}) as gw:
            assert gw.admin.server is None and "admin API not started" in caplog.text
            assert (await request(gw.proxy_port, get("/hello"))).status == 200
    finally:
        taken.close()


async def test_console_files_are_served_with_a_strict_csp(tmp_path):
    async with admin_gateway(tmp_path) as gw, gw.client(token=None) as c:
        r = await c.get("/")
        assert r.status_code == 302 and r.headers["location"] == "/console/"
        r = await c.get("/console/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert b'<script src="app.js"' in r.content
        for name in ("app.js", "app.css", "favicon.svg"):
            assert (await c.get(f"/console/{name}")).status_code == 200
        for bad in ("/console/../server.py", "/console/%2e%2e/server.py", "/console/missing.js"):
            assert (await c.get(bad)).status_code in (401, 404), bad


async def test_admin_disabled_installs_metrics_only(tmp_path):
    async with admin_gateway(tmp_path, admin={"enabled": False}) as gw:
        assert gw.admin.server is None and gw.admin.port == 0
        assert (await request(gw.proxy_port, get("/hello"))).status == 200
        await gw.runtime.pipeline.drain()
        assert sum(sum(s.codes) for s in gw.admin.endpoints.series.values()) == 1


def test_cli_flags_map_to_the_admin_section():
    from bastion.cli.proxy import proxy_overrides

    assert proxy_overrides(admin="127.0.0.1:9999") == {"admin": {"listen": "127.0.0.1:9999", "enabled": True}}
    assert proxy_overrides(no_admin=True) == {"admin": {"enabled": False}}
    assert "admin" not in proxy_overrides()


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv("BASTION_ADMIN_TOKEN", raising=False)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_admin_over_tls_marks_the_session_cookie_secure(tmp_path):
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    tls = {"tls": {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}}
    async with admin_gateway(tmp_path / "data", admin={"tls": True}, server={"listen": "127.0.0.1:0", **tls}) as gw:
        url = f"https://127.0.0.1:{gw.admin.port}"
        async with httpx.AsyncClient(base_url=url, verify=ssl.create_default_context(cafile=str(tmp_path / "cert.pem")),
                                     timeout=10) as c:
            r = await c.post("/api/v1/login", json={"token": TOKEN})
            assert r.status_code == 200
            cookie = r.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert (await c.get("/api/v1/stats")).status_code == 200
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.admin.port}", timeout=5) as c:
            with pytest.raises(httpx.HTTPError):
                await c.get("/healthz")  # no plain HTTP on a TLS admin
