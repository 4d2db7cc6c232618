"""Request bodies with a Content-Encoding are inspected decoded (gzip/deflate), bounded."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from bastion.detect.signatures.zones import MAX_INFLATED, decoded_body
from bastion.testing import make_exchange, make_pipeline, run_request

ATTACK = json.dumps({"id": "1' UNION SELECT username, password FROM users--"}).encode()
BENIGN = json.dumps({"name": "O'Brien", "note": "Please select your drop-off location"}).encode()


@pytest.fixture(scope="module")
def pipeline():
    return make_pipeline(only={"signatures", "protocol"})


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress),
     ("deflate", lambda b: zlib.compress(b)[2:-4]), (" GZIP ", gzip.compress)],
)
async def test_compressed_attack_is_seen(pipeline, coding, compress):
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    assert (await run_request(pipeline, "POST", "/api/items", headers=headers, body=compress(ATTACK))).blocks


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_compressed_benign_body_passes(pipeline, coding):
    data = gzip.compress(BENIGN) if coding == "gzip" else zlib.compress(BENIGN)
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    assert not (await run_request(pipeline, "POST", "/api/items", headers=headers, body=data)).blocks


def test_decoding_is_bounded_and_tolerant():
    bomb = gzip.compress(b"A" * (MAX_INFLATED * 4))
    ex = make_exchange("POST", "/", headers={"Content-Encoding": "gzip"}, body=bomb)
    assert len(decoded_body(ex.request)) == MAX_INFLATED
    broken = make_exchange("POST", "/", headers={"Content-Encoding": "gzip"}, body=b"not gzip at all")
    assert decoded_body(broken.request) == b"not gzip at all"
    other = make_exchange("POST", "/", headers={"Content-Encoding": "br"}, body=b"\x1b\x00")
    assert decoded_body(other.request) == b"\x1b\x00"
    truncated = make_exchange("POST", "/", headers={"Content-Encoding": "gzip"}, body=gzip.compress(ATTACK)[:40])
    assert ATTACK.startswith(decoded_body(truncated.request))
