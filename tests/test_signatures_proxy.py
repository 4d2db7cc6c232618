"""Signatures through the real proxy: default blocking, exclusions and observe mode, over sockets."""

from __future__ import annotations

import json

from proxy_helpers import gateway, make_config, request, upstream_server


def post_json(path: str, doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: api.test\r\nUser-Agent: Mozilla/5.0\r\n\r\n".encode()


async def test_default_config_blocks_attacks_and_passes_traffic() -> None:
    async with upstream_server() as up, gateway(make_config(f"http://127.0.0.1:{up.port}")) as gw:
        r = await request(gw.port, get("/echo?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"),
                          local_ip="127.31.0.1")
        assert r.status == 403
        assert "problem+json" in (r.header("content-type") or "")
        assert "UNION" not in r.body.decode()  # the problem document never echoes the payload
        r = await request(gw.port, post_json("/echo", {"comment": "<script>alert(1)</script>"}),
                          local_ip="127.31.0.2")
        assert r.status == 403
        r = await request(gw.port, post_json("/echo", {"name": "Seán O'Brien", "note": "I'd select the red one"}),
                          local_ip="127.31.0.3")
        assert r.status == 200 and json.loads(r.body)["method"] == "POST"
        blocked = [ex for ex in gw.sink.exchanges if ex.verdict is not None and ex.verdict.blocks]
        assert {f.rule_id[:3] for ex in blocked for f in ex.findings} >= {"942", "941"}


async def test_exclusion_lets_one_parameter_of_one_endpoint_through() -> None:
    async with upstream_server() as up:
        cfg = make_config(f"http://127.0.0.1:{up.port}",
                          signatures={"exclusions": [{"path": "/echo", "param": "html", "rule": "xss"}]})
        async with gateway(cfg) as gw:
            r = await request(gw.port, post_json("/echo", {"html": "<b onclick=alert(1)>hi</b>"}),
                              local_ip="127.31.1.1")
            assert r.status == 200
            r = await request(gw.port, post_json("/echo", {"other": "<b onclick=alert(1)>hi</b>"}),
                              local_ip="127.31.1.2")
            assert r.status == 403


async def test_observe_rules_report_without_blocking() -> None:
    async with upstream_server() as up:
        cfg = make_config(f"http://127.0.0.1:{up.port}", signatures={"observe_rules": ["sqli"]})
        async with gateway(cfg) as gw:
            r = await request(gw.port, get("/echo?id=1%20OR%201%3D1"), local_ip="127.31.2.1")
            assert r.status == 200
            findings = [f for ex in gw.sink.exchanges for f in ex.findings if f.detector == "signatures"]
            assert findings and all(f.observe for f in findings)
            assert {f.name for f in findings} == {"id"}
