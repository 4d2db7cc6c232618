"""Run the OWASP CRS regression tests (go-ftw YAML) through Bastion's engine and print detection.

    .venv/bin/python bench/corpus_crs.py                      # default config (paranoia as shipped)
    .venv/bin/python bench/corpus_crs.py --paranoia 2 --json out.json
    .venv/bin/python bench/corpus_crs.py --misses 942 | head  # attack tests of 942xxx that pass

Each test becomes one request, built the way go-ftw builds it (form bodies query-escaped when the
author wrote them unescaped, multipart newlines as CRLF, `encoded_request` replayed as raw bytes)
and run through the pipeline with the `protocol` and `signatures` detectors (the front-end's own
checks of malformed framing are not part of this run). A `detect` test counts as caught when
Bastion blocks the request; a `not_detect` test is a false positive when Bastion blocks it.
RESPONSE-* tests are replayed as responses: the body the test asks the echo backend to send is
attached as the upstream response and the response phases run.

The figures are reported by attack class and by the CRS paranoia level of the rule under test.
Corpus: ../shared/corpora/crs-regression (README there). Measure with it; do not tune to it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

import yaml

from bastion.engine.registry import DETECTORS
from bastion.testing import make_exchange, make_pipeline, run_exchange, run_response

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


def build(stage_input: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, target, headers, body) of one go-ftw stage."""
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
        if ct.lower().startswith("application/x-www-form-urlencoded"):
            data = form_escape(data)
        elif ct.lower().startswith("multipart/form-data"):
            data = data.replace("\r\n", "\n").replace("\n", "\r\n")
    return method, uri, headers, data.encode("utf-8", "surrogateescape")


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


async def run_one(pipeline: Any, row: dict[str, Any]) -> tuple[bool, list[str]]:
    method, target, headers, body = build(row["stage"])
    ex = make_exchange(method, target, headers=headers, body=body, host=None, pipeline=pipeline,
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


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paranoia", type=int, default=None, help="signatures.paranoia (default: as shipped)")
    ap.add_argument("--only", default=None, help="rule id prefix, e.g. 942")
    ap.add_argument("--misses", default=None, help="print attack tests not blocked (rule id prefix)")
    ap.add_argument("--fps", default=None, help="print no-detection tests blocked (rule id prefix)")
    ap.add_argument("--json", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    config: dict[str, Any] = {}
    if args.paranoia:
        config["signatures"] = {"paranoia": args.paranoia}
    names = {n for n, _ in DETECTORS} & {"protocol", "signatures"}
    pipeline = make_pipeline(config, only=names)
    tests = load_tests(args.only)
    stats: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    started = time.perf_counter()
    for row in tests:
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
        if exp == "detect" and pl in ("1", "2"):
            cell = stats["ALL PL1-2"][exp]
            cell[0] += int(blocked)
            cell[1] += 1
        if exp == "not_detect" and pl in ("1", "2"):
            cell = stats["ALL PL1-2"][exp]
            cell[0] += int(blocked)
            cell[1] += 1
        if args.misses and exp == "detect" and not blocked and row["rule_id"].startswith(args.misses):
            print(f"MISS {row['rule_id']}#{row['test_id']} PL{pl} {row['desc'][:60]!r} {row['stage'].get('uri','')[:80]!r} "
                  f"{str(row['stage'].get('data',''))[:120]!r}")
        if args.fps and exp == "not_detect" and blocked and row["rule_id"].startswith(args.fps):
            print(f"FP {row['rule_id']}#{row['test_id']} {rules} {row['desc'][:60]!r} "
                  f"{row['stage'].get('uri','')[:80]!r} {str(row['stage'].get('data',''))[:120]!r}")
    elapsed = time.perf_counter() - started
    print(f"\nCRS regression corpus through Bastion ({len(tests)} tests, {elapsed:.1f}s, detectors: "
          f"{', '.join(sorted(names))}, paranoia: {args.paranoia or 'default'})")
    print(f"{'class':<18} {'attacks blocked':>22} {'no-detection blocked':>24}")
    order = sorted(k for k in stats if not k.startswith(("ALL", "PL"))) + sorted(
        k for k in stats if k.startswith("PL")) + ["ALL PL1-2", "ALL"]
    out: dict[str, Any] = {}
    for k in order:
        if k not in stats:
            continue
        d, n = stats[k]["detect"], stats[k]["not_detect"]
        dr = f"{d[0]}/{d[1]} {100 * d[0] / d[1]:5.1f}%" if d[1] else "-"
        nr = f"{n[0]}/{n[1]} {100 * n[0] / n[1]:5.1f}%" if n[1] else "-"
        print(f"{k:<18} {dr:>22} {nr:>24}")
        out[k] = {"detect": d, "not_detect": n}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))  # noqa: ASYNC240 - once, at the end
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
