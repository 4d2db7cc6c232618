"""Run the OWASP CRS regression tests (go-ftw YAML) through Bastion and print detection.

    .venv/bin/python bench/corpus_crs.py                      # default config (paranoia as shipped)
    .venv/bin/python bench/corpus_crs.py --paranoia 2 --json out.json
    .venv/bin/python bench/corpus_crs.py --misses 942 | head  # attack tests of 942xxx that pass
    .venv/bin/python bench/corpus_crs.py --only 920 --wire off   # protocol tests in-engine only

Each test becomes one request, built the way go-ftw builds it (form bodies query-escaped when the
author wrote them unescaped, multipart newlines as CRLF, `Content-Length` and `Connection: close`
added unless `autocomplete_headers: false`, `encoded_request` replayed as raw bytes).

Two modes, chosen per attack class and printed in the report:

- in-engine: the request runs through the pipeline with the `protocol` and `signatures` detectors
  (no sockets; the front-end's own checks of malformed framing are not part of this run).
- wire: the raw request bytes go over a socket to a real `bastion proxy` (started here as a
  subprocess on a free loopback port with the default configuration, `--no-admin`, a temporary
  data dir, and `signatures.paranoia` when --paranoia is given) in front of a tiny local upstream
  that marks every answer with `X-Bench-Upstream: 1`. A 4xx answer without that marker (Bastion's
  own refusal: a block, or a rejection of malformed HTTP), or a connection Bastion closes without
  any answer, counts as blocked; the upstream's answers never do. 408 (Bastion waited for bytes the
  test never sent) counts as not blocked and is reported, as are timeouts.
  Behaviour scoring, rate limits and entity decisions stay on (default config), but every test is
  sent from its own loopback source address (127.20.x.y upwards), so what one test earns never
  blocks the next. Each test has a short socket timeout and the whole wire run a time budget
  (--wire-budget): tests not sent within it are reported, not counted.

`--wire auto` (the default) sends the protocol classes (920, 921, 922: request lines, framing,
headers and multipart bodies the engine cannot see as bytes) over the wire and runs everything
else in-engine; `--wire all` sends every request test over the wire; `--wire off` runs all in-engine.

A `detect` test counts as caught when Bastion blocks the request; a `not_detect` test is a false
positive when Bastion blocks it. RESPONSE-* tests are always replayed in-engine as responses: the
body the test asks the echo backend to send is attached as the upstream response and the response
phases run.

The figures are reported by attack class and by the CRS paranoia level of the rule under test.
Corpus: ../shared/corpora/crs-regression (README there). Measure with it; do not tune to it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

import yaml

from bastion.engine.registry import DETECTORS
from bastion.testing import make_exchange, make_pipeline, run_exchange, run_response
from gateway_load import free_port

ROOT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "crs-regression"

CLASSES = {
    "911": "method", "913": "scanner", "920": "protocol", "921": "protocol-attack", "922": "multipart",
    "930": "lfi", "931": "rfi", "932": "rce", "933": "php", "934": "generic", "941": "xss", "942": "sqli",
    "943": "session-fixation", "944": "java", "95": "response-leak",
}
SKIP_FILES = ("REQUEST-949", "REQUEST-999", "RESPONSE-959", "RESPONSE-980")


def klass(rule_id: str) -> str:
    return CLASSES.get(rule_id[:3]) or CLASSES.get(rule_id[:2], "other")


def form_escape(data: str) -> str:
    """go-ftw: an unescaped urlencoded body has each key and value query-escaped."""
    if unquote(data) != data:
        return data
    parts = []
    for piece in data.split("&"):
        k, sep, v = piece.partition("=")
        parts.append(quote_plus(k) + (sep + quote_plus(v) if sep else ""))
    return "&".join(parts)


_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def build(stage_input: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, target, headers, body) of one go-ftw stage (go-ftw's `BuildRequest`)."""
    if stage_input.get("encoded_request"):
        return parse_raw(base64.b64decode(stage_input["encoded_request"]))
    method = str(stage_input.get("method") or "GET")
    uri = str(stage_input.get("uri") or "/")
    headers = [(str(k), str(v)) for k, v in (stage_input.get("headers") or {}).items()]
    data = stage_input.get("data") or ""
    if isinstance(data, list):
        data = "".join(data)
    data = str(data)
    auto = stage_input.get("autocomplete_headers", True)
    names = {k.lower(): v for k, v in headers}
    if auto and data:
        ct = names.get("content-type")
        if ct is None:
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            ct = "application/x-www-form-urlencoded"
        if ct.lower() == "application/x-www-form-urlencoded":
            data = form_escape(data)
    ct = {k.lower(): v for k, v in headers}.get("content-type", "")
    if ct.lower().startswith("multipart/form-data"):
        data = data.replace("\r\n", "\n").replace("\n", "\r\n")
    if auto:
        if "connection" not in names:
            headers.append(("Connection", "close"))
        if "content-length" not in names and (data or method.upper() in _BODY_METHODS):
            headers.append(("Content-Length", str(len(data.encode("utf-8", "surrogateescape")))))
    return method, uri, headers, data.encode("utf-8", "surrogateescape")


def version_of(stage_input: dict[str, Any]) -> str:
    """The HTTP version a stage asks for ("1.1"; "" for a request line without one)."""
    if stage_input.get("encoded_request"):
        line = base64.b64decode(stage_input["encoded_request"]).split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split(" ")
        return parts[-1].removeprefix("HTTP/") if len(parts) > 2 else ""
    return str(stage_input.get("version") or "HTTP/1.1").removeprefix("HTTP/")


def raw_request(stage_input: dict[str, Any]) -> bytes:
    """The bytes go-ftw would put on the wire for one stage."""
    if stage_input.get("encoded_request"):
        return base64.b64decode(stage_input["encoded_request"])
    method, uri, headers, body = build(stage_input)
    version = str(stage_input.get("version") or "HTTP/1.1")
    head = f"{method} {uri} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def parse_raw(raw: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not _:
        head, _, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    parts = (lines[0] if lines else "GET / HTTP/1.1").split(" ")
    method, target = parts[0], (parts[1] if len(parts) > 1 else "/")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return method, target, headers, body


def load_tests(only: str | None) -> list[dict[str, Any]]:
    index = {}
    with (ROOT / "tests-index.csv").open() as f:
        for row in csv.DictReader(f):
            index[(row["file"], row["test_id"])] = row
    out = []
    for (file, _test_id), row in index.items():
        if any(s in file for s in SKIP_FILES) or row["expectation"] not in ("detect", "not_detect"):
            continue
        if only and not row["rule_id"].startswith(only):
            continue
        out.append(row)
    cache: dict[str, Any] = {}
    for row in out:
        doc = cache.get(row["file"])
        if doc is None:
            doc = cache[row["file"]] = yaml.safe_load((ROOT / row["file"]).read_text(encoding="utf-8"))
        for t in doc.get("tests", []):
            if str(t.get("test_id")) == row["test_id"]:
                row["stage"] = (t.get("stages") or [{}])[0].get("input") or {}
                row["desc"] = t.get("desc") or ""
    return [r for r in out if "stage" in r]


# --- wire mode: raw bytes through a real `bastion proxy` ---------------------------------------

WIRE_PREFIXES = ("920", "921", "922")
MARKER = b"x-bench-upstream"

# The upstream behind the proxy: reads one request (Content-Length or chunked body), answers 200
# with a marker header and closes. Whatever it cannot parse still gets the 200 (it is not the
# thing under test).
UPSTREAM = r'''
import asyncio, sys
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Bench-Upstream: 1\r\nConnection: close\r\nContent-Length: 11\r\n\r\n"
async def body(r, head):
    low = head.lower()
    if b"transfer-encoding: chunked" in low:
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            await r.readexactly(size + 2) if size else await r.readuntil(b"\r\n")
            if not size:
                return
    for line in low.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            await r.readexactly(int(line.split(b":")[1]))
async def handle(r, w):
    try:
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        try:
            await asyncio.wait_for(body(r, head), 2)
        except Exception:
            pass
        w.write(OK + (b"" if head.startswith(b"HEAD ") else b'{"ok":true}'))
        await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())
'''




class WireGateway:
    """A `bastion proxy` subprocess (default config) in front of a marker-stamping upstream."""

    def __init__(self, paranoia: int | None, timeout: float) -> None:
        self.timeout = timeout
        self.port = free_port()
        up_port = free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="bastion-crs-wire-")
        cmd = [os.path.join(os.path.dirname(sys.executable), "bastion"), "proxy",
               "--upstream", f"http://127.0.0.1:{up_port}", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", self.tmp.name, "--no-admin"]
        if paranoia:
            cfg = Path(self.tmp.name) / "bench.yaml"
            cfg.write_text(f"signatures:\n  paranoia: {paranoia}\n")
            cmd += ["--config", str(cfg)]
        self.upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
        self.proxy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.proxy.poll() is not None:
                self.close()
                raise RuntimeError("bastion proxy exited at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", up_port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("bastion proxy did not start listening within 30s") from None
                time.sleep(0.1)

    def close(self) -> None:
        for proc in (self.proxy, self.upstream):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.tmp.cleanup()

    def send(self, raw: bytes, source: str) -> tuple[bool, str]:
        """(blocked, outcome) of one raw request sent from `source`."""
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout,
                                            source_address=(source, 0))
        except OSError as exc:
            return False, f"connect-error:{exc.__class__.__name__}"
        data = b""
        try:
            sock.settimeout(self.timeout)
            try:
                sock.sendall(raw)
            except OSError:
                pass  # Bastion may refuse and close before reading everything; read its answer
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                # an interim 100 Continue (the test sent Expect): the real answer follows
                if not data.startswith(b"HTTP/1.1 100 ") or b"\r\n\r\n" not in data:
                    break
                data = data.split(b"\r\n\r\n", 1)[1]
        except TimeoutError:
            if not data:
                return False, "timeout"
        except OSError:
            pass
        finally:
            sock.close()
        if not data:
            return True, "closed"  # Bastion dropped the connection without an answer: refused
        line, _, rest = data.partition(b"\n")
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, "garbled"
        status = int(parts[1])
        head = rest.split(b"\r\n\r\n", 1)[0].lower()
        if MARKER in head:
            return False, f"upstream:{status}"
        if 400 <= status < 500 and status != 408:
            return True, f"bastion:{status}"
        return False, f"bastion:{status}"


def wire_source(n: int) -> str:
    """A distinct loopback source address per test (127.20.0.1 onwards)."""
    return f"127.{20 + n // 62500}.{(n // 250) % 250}.{n % 250 + 1}"


async def run_one(pipeline: Any, row: dict[str, Any]) -> tuple[bool, list[str]]:
    method, target, headers, body = build(row["stage"])
    ex = make_exchange(method, target, headers=headers, body=body, host=None, pipeline=pipeline,
                       http_version=version_of(row["stage"]),
                       inspect_bytes=pipeline.config.limits.inspect_body_bytes)
    if "RESPONSE-" in row["file"]:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        resp_body = doc.get("body") or ""
        if doc.get("encodedBody"):
            resp_body = base64.b64decode(doc["encodedBody"]).decode("utf-8", "replace")
        resp_headers = doc.get("headers") or {"Content-Type": "text/html"}
        verdict = await run_response(pipeline, ex, int(doc.get("status") or 200), headers=resp_headers,
                                     body=resp_body, complete=False)
    else:
        verdict = await run_exchange(pipeline, ex)
    return verdict.blocks, [f.rule_id for f in ex.findings if not f.observe]


def wants_wire(row: dict[str, Any], mode: str) -> bool:
    if mode == "off" or "RESPONSE-" in row["file"]:
        return False
    return mode == "all" or row["rule_id"].startswith(WIRE_PREFIXES)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paranoia", type=int, default=None, help="signatures.paranoia (default: as shipped)")
    ap.add_argument("--only", default=None, help="rule id prefix, e.g. 942")
    ap.add_argument("--misses", default=None, help="print attack tests not blocked (rule id prefix)")
    ap.add_argument("--fps", default=None, help="print no-detection tests blocked (rule id prefix)")
    ap.add_argument("--json", default=None, help="write the figures as JSON here")
    ap.add_argument("--wire", choices=("auto", "all", "off"), default="auto",
                    help="auto: 920/921/922 through a real proxy, the rest in-engine (default)")
    ap.add_argument("--wire-timeout", type=float, default=3.0, help="socket timeout per wire test (s)")
    ap.add_argument("--wire-budget", type=float, default=300.0, help="time budget of the whole wire run (s)")
    args = ap.parse_args()
    config: dict[str, Any] = {}
    if args.paranoia:
        config["signatures"] = {"paranoia": args.paranoia}
    names = {n for n, _ in DETECTORS} & {"protocol", "signatures"}
    pipeline = make_pipeline(config, only=names)
    tests = load_tests(args.only)
    stats: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    modes: dict[str, set[str]] = defaultdict(set)
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    gateway = WireGateway(args.paranoia, args.wire_timeout) if any(wants_wire(r, args.wire) for r in tests) else None
    skipped = 0
    started = time.perf_counter()
    wire_deadline = time.monotonic() + args.wire_budget
    try:
        for n, row in enumerate(tests):
            outcome = ""
            if gateway is not None and wants_wire(row, args.wire):
                if time.monotonic() > wire_deadline:
                    skipped += 1
                    continue
                blocked, outcome = gateway.send(raw_request(row["stage"]), wire_source(n))
                rules = [outcome]
                modes[klass(row["rule_id"])].add("wire")
                kind = outcome.split(":")[0]
                kind = "refused" if blocked and kind == "bastion" else kind
                outcomes[klass(row["rule_id"])][kind if kind != "bastion" else outcome] += 1
            else:
                modes[klass(row["rule_id"])].add("in-engine")
                try:
                    blocked, rules = await run_one(pipeline, row)
                except Exception as exc:  # a broken test input must not stop the report
                    print(f"error in {row['file']}#{row['test_id']}: {exc!r}", file=sys.stderr)
                    blocked, rules = False, []
            exp = row["expectation"]
            pl = row["rule_paranoia_level"] or "?"
            for key in (klass(row["rule_id"]), "ALL", f"PL{pl}"):
                cell = stats[key][exp]
                cell[0] += int(blocked)
                cell[1] += 1
            if pl in ("1", "2"):
                cell = stats["ALL PL1-2"][exp]
                cell[0] += int(blocked)
                cell[1] += 1
            if args.misses and exp == "detect" and not blocked and row["rule_id"].startswith(args.misses):
                print(f"MISS {row['rule_id']}#{row['test_id']} PL{pl} {row['desc'][:60]!r} "
                      f"{row['stage'].get('uri', '')[:80]!r} {str(row['stage'].get('data', ''))[:120]!r}"
                      + (f" [{outcome}]" if outcome else ""))
            if args.fps and exp == "not_detect" and blocked and row["rule_id"].startswith(args.fps):
                print(f"FP {row['rule_id']}#{row['test_id']} {rules} {row['desc'][:60]!r} "
                      f"{row['stage'].get('uri', '')[:80]!r} {str(row['stage'].get('data', ''))[:120]!r}")
    finally:
        if gateway is not None:
            gateway.close()
    elapsed = time.perf_counter() - started
    print(f"\nCRS regression corpus through Bastion ({len(tests)} tests, {elapsed:.1f}s, paranoia: "
          f"{args.paranoia or 'default'}; in-engine detectors: {', '.join(sorted(names))}; wire: "
          f"{'the whole default bastion proxy' if gateway is not None else 'not used'})")
    if skipped:
        print(f"wire budget ({args.wire_budget:.0f}s) exhausted: {skipped} wire tests not sent, not counted")
    print(f"{'class':<18} {'attacks blocked':>22} {'no-detection blocked':>24}  mode")
    order = sorted(k for k in stats if not k.startswith(("ALL", "PL"))) + sorted(
        k for k in stats if k.startswith("PL")) + ["ALL PL1-2", "ALL"]
    out: dict[str, Any] = {}
    for k in order:
        if k not in stats:
            continue
        d, n = stats[k]["detect"], stats[k]["not_detect"]
        dr = f"{d[0]}/{d[1]} {100 * d[0] / d[1]:5.1f}%" if d[1] else "-"
        nr = f"{n[0]}/{n[1]} {100 * n[0] / n[1]:5.1f}%" if n[1] else "-"
        mode = "+".join(sorted(modes.get(k, ())))
        if k in outcomes:
            mode += " (" + ", ".join(f"{o} {c}" for o, c in sorted(outcomes[k].items())) + ")"
        print(f"{k:<18} {dr:>22} {nr:>24}  {mode}")
        out[k] = {"detect": d, "not_detect": n, "mode": sorted(modes.get(k, ()))}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))  # noqa: ASYNC240 - once, at the end
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
