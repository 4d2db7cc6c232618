"""`bastion catalog list|show|export|diff` over a data directory the gateway wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import yaml
from openapi_spec_validator import validate
from typer.testing import CliRunner

from bastion.cli import app
from bastion.detect.catalog import CatalogDetector
from bastion.testing import make_config
from catalog_traffic import to_exchange, traffic

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")

    async def fill() -> None:
        det = CatalogDetector(make_config({}).catalog, d / "catalog.db")
        await det.startup()
        for i, c in enumerate(traffic(1500, seed=4)):
            det.complete(to_exchange(c, 1_700_000_000.0 + i))
        await det.shutdown()

    asyncio.run(fill())
    return d


def run(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


def test_list(data_dir: Path) -> None:
    code, out = run("catalog", "list", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "/api/v1/users/{id}" in out and "DELETE,GET,PUT" in out and "endpoints" in out
    code, out = run("catalog", "list", "--data-dir", str(data_dir), "--json")
    rows = [orjson.loads(line) for line in out.splitlines()]
    users = next(r for r in rows if r["endpoint"] == "/api/v1/users")
    assert users["methods"] == ["GET", "POST"] and users["sensitive"] == ["email"]


def test_show_by_template_or_path(data_dir: Path) -> None:
    code, out = run("catalog", "show", "GET /api/v1/users", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "page: integer" in out and "sort: string enum ['asc', 'desc']" in out and "$[].email: email" in out
    code, out = run("catalog", "show", "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000",
                    "--data-dir", str(data_dir))
    assert code == 0 and "GET /api/v1/orders/{uuid}" in out
    code, out = run("catalog", "show", "/nope", "--data-dir", str(data_dir))
    assert code == 1 and "no endpoint matches" in out


def test_export_validates(data_dir: Path, tmp_path: Path) -> None:
    code, out = run("catalog", "export", "--format", "openapi", "--data-dir", str(data_dir))
    assert code == 0
    validate(yaml.safe_load(out))
    target = tmp_path / "api.json"
    code, _ = run("catalog", "export", "--format", "json", "-o", str(target), "--data-dir", str(data_dir))
    assert code == 0 and orjson.loads(target.read_text())["openapi"] == "3.1.0"


def test_diff(data_dir: Path, tmp_path: Path) -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
        "/api/v1/users": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/api/v1/legacy": {"get": {"deprecated": True, "responses": {"200": {"description": "ok"}}}}}}
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    code, out = run("catalog", "diff", str(p), "--data-dir", str(data_dir))
    assert code == 0
    assert "shadow (in traffic, not in the spec)" in out and "GET /api/v1/users/{id}" in out
    assert "GET /api/v1/legacy (deprecated)" in out
    code, out = run("catalog", "diff", str(p), "--data-dir", str(data_dir), "--json", "--check")
    assert code == 1
    assert "GET /api/v1/products/{id}" in orjson.loads(out)["shadow"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("swagger: '2.0'\npaths: {}\n")
    code, out = run("catalog", "diff", str(bad), "--data-dir", str(data_dir))
    assert code == 1 and "only OpenAPI 3.0 and 3.1" in out


def test_no_catalog_is_a_clear_error(tmp_path: Path) -> None:
    code, out = run("catalog", "list", "--data-dir", str(tmp_path))
    assert code == 1 and "no catalog yet" in out
