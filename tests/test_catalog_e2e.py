"""End to end: the catalog learned through the ASGI middleware and the real proxy, exported,
then enforced by the same front-ends."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from fastapi import FastAPI, Request
from openapi_spec_validator import validate
from typer.testing import CliRunner

from bastion import BastionMiddleware
from bastion.catalog.store import read_catalog
from bastion.cli import app as cli
from bastion.runtime import Runtime
from bastion.testing import make_config
from proxy_helpers import gateway, request, upstream_server
from proxy_helpers import make_config as proxy_config


def api() -> FastAPI:
    app = FastAPI()

    @app.get("/users/me")
    async def me() -> dict[str, Any]:
        return {"id": 1, "email": "me@example.com"}

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "name": "Ann", "email": f"u{user_id}@example.com"}

    @app.post("/users")
    async def create(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"id": 7, **body}

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, Any]:
        return {"id": order_id, "card": "4111 1111 1111 1111", "total": 12.5}

    return app


# The request-side detectors plus ours; the behaviour detectors would (rightly) call this
# test's one client walking through user ids an enumeration.
ONLY = {"decisions", "limits", "protocol", "signatures", "schema", "catalog"}


def runtime(config: dict[str, Any]) -> Runtime:
    return Runtime.create(make_config(config), with_store=False, only=ONLY)


async def drive(client: httpx.AsyncClient, n: int) -> list[int]:
    statuses = []
    for i in range(n):
        for method, url, body in (("GET", f"/users/{i + 2}", None), ("GET", "/users/me", None),
                                  ("POST", "/users", {"name": f"n{i}", "age": 20 + i % 50}),
                                  ("GET", f"/orders/{uuid.UUID(int=i + 1, version=4)}", None)):
            r = await client.request(method, url, json=body, headers={"Authorization": "Bearer t0k3n"})
            statuses.append(r.status_code)
    return statuses


async def test_middleware_learns_exports_and_enforces(tmp_path: Path) -> None:
    data = tmp_path / "data"
    mw = BastionMiddleware(api(), runtime=runtime({"data_dir": str(data)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://shop.test") as c:
        assert set(await drive(c, 30)) == {200}
    await mw.shutdown()

    eps = {(e.method, e.template): e for e in read_catalog(data / "catalog.db")}
    assert set(eps) == {("GET", "/users/me"), ("GET", "/users/{id}"), ("POST", "/users"), ("GET", "/orders/{uuid}")}
    assert eps[("GET", "/orders/{uuid}")].sensitive == {"$.card": {"card": 30}}
    assert eps[("GET", "/users/{id}")].auth == {"bearer": 30}

    runner = CliRunner()
    out = runner.invoke(cli, ["catalog", "export", "--data-dir", str(data)])
    assert out.exit_code == 0
    spec = yaml.safe_load(out.output)
    validate(spec)
    spec_path = tmp_path / "api.yaml"
    spec_path.write_text(out.output)

    guarded = BastionMiddleware(api(), runtime=runtime({"data_dir": str(tmp_path / "d2"), "spec": str(spec_path),
                                                        "catalog": {"enabled": False}}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://shop.test") as c:
        assert set(await drive(c, 5)) == {200}
        r = await c.post("/users", json={"name": "x", "age": 3, "role": "admin"})
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        assert (await c.get("/users/abc")).status_code == 403
        assert (await c.get("/admin/backup")).status_code == 403
        assert (await c.delete("/users/3")).status_code == 403
    await guarded.shutdown()


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: shop.test\r\nAuthorization: Bearer abc\r\n\r\n".encode()


async def test_proxy_learns_exports_and_enforces(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with upstream_server() as up:
        cfg = proxy_config(up.url, data_dir=str(data), catalog={"hold_responses": True})
        async with gateway(cfg, only={"catalog"}) as gw:
            for i in range(40):
                assert (await request(gw.port, _get(f"/echo/users/{i + 1}?fields=name"))).status == 200
                assert (await request(gw.port, _get("/echo/users/me"))).status == 200
            for name in ("wp-login.php", ".env", "admin.bak"):
                assert (await request(gw.port, _get(f"/{name}"))).status == 404
        eps = {(e.method, e.template): e for e in read_catalog(data / "catalog.db")}
        assert set(eps) == {("GET", "/echo/users/{id}"), ("GET", "/echo/users/me")}
        users = eps[("GET", "/echo/users/{id}")]
        assert users.calls == 40 and users.query["fields"].n == 40 and users.auth == {"bearer": 40}
        assert users.responses["200"].props is not None and "target" in users.responses["200"].props

        declared = tmp_path / "declared.yaml"
        declared.write_text(yaml.safe_dump({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
            "/echo/users/me": {"get": {"deprecated": True, "responses": {"200": {"description": "ok"}}}},
            "/echo/orders": {"get": {"responses": {"200": {"description": "ok"}}}}}}))
        out = CliRunner().invoke(cli, ["catalog", "diff", str(declared), "--data-dir", str(data), "--json"])
        d = orjson.loads(out.output)
        assert d["shadow"] == ["GET /echo/users/{id}"] and d["unused"] == ["GET /echo/orders"]
        assert len(d["zombie"]) == 1 and d["zombie"][0].startswith("GET /echo/users/me (40 calls")

        out = CliRunner().invoke(cli, ["catalog", "export", "--data-dir", str(data)])
        assert out.exit_code == 0
        spec_path = tmp_path / "api.yaml"
        spec_path.write_text(out.output)
        cfg = proxy_config(up.url, data_dir=str(tmp_path / "d2"), spec=str(spec_path))
        async with gateway(cfg, only={"schema"}) as gw:
            assert (await request(gw.port, _get("/echo/users/5?fields=name"))).status == 200
            assert (await request(gw.port, _get("/echo/users/me"))).status == 200
            blocked = await request(gw.port, _get("/echo/users/5%20or%201=1?fields=name"))
            assert blocked.status == 403
            assert orjson.loads(blocked.body)["type"].endswith("/request-blocked")
            assert (await request(gw.port, _get("/echo/admin"))).status == 403
            # An undeclared parameter alone scores 4, below the threshold of 5: served, and recorded.
            assert (await request(gw.port, _get("/echo/users/5?fields=name&debug=true"))).status == 200
            assert (await request(gw.port, _get("/echo/users/5"))).status == 200  # `fields` missing: 4
            assert (await request(gw.port, _get("/echo/users/5?debug=true"))).status == 403  # both: 8
            assert gw.sink.rules().count("schema-unknown-param") == 2
            assert "schema-type" in gw.sink.rules()


async def test_catalog_from_access_logs(tmp_path: Path) -> None:
    from bastion.clock import ManualClock
    from bastion.frontends.logs import Replayer
    from catalog_traffic import normalize as norm
    from catalog_traffic import traffic, truth

    lines = []
    for i, c in enumerate(traffic(3000, seed=5)):
        lines.append(f'10.0.0.{i % 50} - - [10/Oct/2024:{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d} '
                     f'+0000] "{c.method} {c.target} HTTP/1.1" {c.status} 120 "-" "curl/8"')
    clock = ManualClock(0)
    rt = Runtime.create(make_config({"data_dir": str(tmp_path)}), clock=clock, with_store=False, only={"catalog"})
    await rt.start()
    await Replayer(rt.pipeline, clock).replay_lines(lines)
    await rt.stop()
    got = {(e.method, norm(e.template)) for e in read_catalog(tmp_path / "catalog.db")}
    assert len(got & truth()) >= 0.95 * len(truth()) and len(got - truth()) <= 4
