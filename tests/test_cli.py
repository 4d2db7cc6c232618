"""The command line: proxy flags over config, events list, and a real `bastion proxy` process."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from bastion.cli import app
from bastion.cli.common import parse_since, with_overrides
from bastion.cli.proxy import proxy_overrides
from bastion.config import load_config
from bastion.errors import ConfigError
from bastion.events import Event
from bastion.store.sqlite import SQLiteStore

runner = CliRunner()


def test_help_lists_the_nouns() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for noun in ("proxy", "demo", "config", "events"):
        assert noun in result.output


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "b.yaml"
    cfg_file.write_text("mode: observe\nserver:\n  listen: 127.0.0.1:9999\n  max_connections: 77\n")
    cfg = with_overrides(
        load_config(cfg_file),
        proxy_overrides(upstream="http://127.0.0.1:9000", listen="0.0.0.0:8443", mode="enforce",
                        data_dir=tmp_path / "d", workers=3, state="redis://127.0.0.1:6379/13"),
    )
    assert cfg.mode == "enforce" and cfg.upstream.url == "http://127.0.0.1:9000"
    assert cfg.server.listen == "0.0.0.0:8443" and cfg.server.workers == 3
    assert cfg.server.max_connections == 77  # untouched by flags: kept from the file
    assert cfg.data_dir == tmp_path / "d"
    assert cfg.state.url == "redis://127.0.0.1:6379/13"


def test_bad_flag_values_are_reported_like_config_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        with_overrides(load_config(None), proxy_overrides(listen="no-port-here"))
    assert exc.value.problems[0].startswith("command line: server.listen:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no upstream"),
        (["--upstream", "ftp://x"], "expected http://HOST"),
        (["--upstream", "http://127.0.0.1:notaport"], "invalid port"),
        (["--upstream", "http://127.0.0.1:9000", "--listen", "nowhere"], "command line: server.listen"),
        (["--upstream", "http://127.0.0.1:9000", "--tls-cert", "/nonexistent.pem"], "go together"),
        (["--upstream", "http://127.0.0.1:9000", "--tls-cert", "/no.pem", "--tls-key", "/no.key"], "no such file"),
        (["--upstream", "http://127.0.0.1:9000", "--workers", "0"], "--workers"),
    ],
)
def test_proxy_refuses_bad_arguments(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["proxy", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_parse_since() -> None:
    now = 1_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("90", now) == now - 90
    assert parse_since("2023-11-14T22:13:20Z") == 1_700_000_000.0
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday-ish", now)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store = SQLiteStore(tmp_path / "events.db")
    now = time.time()
    store.write_many([
        Event(time=now - 3600, request_id="old-one", client_ip="10.0.0.1", method="GET", path="/a", status=200,
              action="log", rule_ids=("920170",)),
        Event(time=now - 5, request_id="new-block", client_ip="10.0.0.2", method="POST", path="/api/login",
              status=403, action="block", score=10, rule_ids=("942100",), reason="request-blocked"),
        Event(time=now - 4, request_id="shadow", client_ip="10.0.0.3", method="GET", path="/b", status=200,
              action="log", mode="observe", would_block=True, rule_ids=("941100",)),
    ])
    store.close()
    return tmp_path


def test_events_list_table(data_dir: Path) -> None:
    result = runner.invoke(app, ["events", "list", "--data-dir", str(data_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "new-block" in result.output and "old-one" in result.output and "shadow" in result.output
    assert "3 event(s), 1 blocked" in result.output
    assert "would have blocked" in result.output


def test_events_list_json_and_filters(data_dir: Path) -> None:
    result = runner.invoke(app, ["events", "list", "--data-dir", str(data_dir), "--json", "--since", "10m"])
    assert result.exit_code == 0
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == ["shadow", "new-block"]
    result = runner.invoke(app, ["events", "list", "--data-dir", str(data_dir), "--json", "--action", "block"])
    assert [orjson.loads(x)["request_id"] for x in result.stdout.splitlines()] == ["new-block"]
    result = runner.invoke(app, ["events", "list", "--data-dir", str(data_dir), "--json", "--rule", "920170"])
    assert [orjson.loads(x)["request_id"] for x in result.stdout.splitlines()] == ["old-one"]
    result = runner.invoke(app, ["events", "list", "--data-dir", str(data_dir), "--json", "-n", "1"])
    assert len(result.stdout.splitlines()) == 1


def test_events_list_without_a_store(tmp_path: Path) -> None:
    result = runner.invoke(app, ["events", "list", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 0 and "no events yet" in result.output
    assert not (tmp_path / "empty").exists()  # reading never creates a store
    result = runner.invoke(app, ["events", "list", "--since", "soon"])
    assert result.exit_code != 0


# --- a real gateway process ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bastion() -> list[str]:
    script = Path(sys.executable).with_name("bastion")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from bastion.cli import main; main()"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rule_that_does_not_compile_stops_the_proxy_with_one_clear_line(tmp_path: Path, workers: int) -> None:
    """Found only when the pipeline is built (in each worker): still a config error, no traceback,
    and the workers are not restarted in a loop."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("upstream:\n  url: http://127.0.0.1:9\nrules:\n  - id: bad-regex\n"
                   "    match: {path: {regex: \"([\"}}\n    threshold: 0\n    window: 60\n    actions: {block: 403}\n")
    proc = subprocess.run(
        [*_bastion(), "proxy", "--config", str(cfg), "--listen", f"127.0.0.1:{_free_port()}", "--no-admin",
         "--data-dir", str(tmp_path / "d"), "--workers", str(workers)],
        capture_output=True, timeout=60,
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 1
    assert "rule bad-regex: match.path: invalid regex" in out
    assert "Traceback" not in out and "restarting" not in out


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    if importlib.util.find_spec("bastion.frontends.proxy.run") is None:
        pytest.skip("the proxy front-end (bastion.frontends.proxy.run) is not built yet")
    from bastion.demo.upstream import DemoUpstream

    upstream = DemoUpstream()
    upstream.start()
    port = _free_port()
    proc = subprocess.Popen(
        [*_bastion(), "proxy", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path), "--workers", str(request.param)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.communicate()[0].decode(errors="replace")
                upstream.stop()
                pytest.fail(f"bastion proxy did not start: {out}")
            time.sleep(0.05)
    # Workers listen before their engine is built: wait until requests are answered (by each of
    # them, as far as the kernel's spreading lets us see), not just accepted.
    for _ in range(4 * request.param):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30).read()
    try:
        yield port, upstream.url, tmp_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        upstream.stop()


def test_bastion_proxy_serves_and_blocks_oversized(gateway: tuple[int, str, Path]) -> None:
    port, upstream_url, data_dir = gateway
    direct = urllib.request.urlopen(upstream_url + "/api/products?q=lamp", timeout=5)
    via = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/products?q=lamp", timeout=5)
    assert via.status == 200 and via.read() == direct.read()  # served unchanged, byte for byte
    assert via.headers["X-Request-Id"]

    problems = [_oversized(port, f"cli-test-{i}") for i in range(6)]  # spread over the workers
    for problem in problems:
        assert problem["status"] == 413 and problem["type"].endswith("/body-too-large") and problem["request_id"]

    # Every worker process writes to the one SQLite file; the CLI reads it while they run.
    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(rows) < len(problems):
        result = runner.invoke(app, ["events", "list", "--data-dir", str(data_dir), "--json", "--action", "block"])
        rows = [orjson.loads(x) for x in result.stdout.splitlines()]
        time.sleep(0.1)
    assert {r["request_id"] for r in rows} == {p["request_id"] for p in problems}
    assert all(r["status"] == 413 and r["reason"] == "body-too-large" for r in rows)


def _oversized(port: int, request_id: str) -> dict[str, object]:
    """POST a body declared far over the limit; return the problem document of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /api/reviews HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + request_id.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"application/problem+json" in head.lower()
    doc: dict[str, object] = orjson.loads(body)
    return doc
