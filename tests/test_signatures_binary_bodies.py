"""Binary and wide-character request bodies. Binary bodies reach the rules as bytes kept in
surrogates: a rule written for the bytes must fire through the whole pipeline (hyperscan on the
bytes, `re` on the text); UTF-16 bodies are read as the text they carry."""

from __future__ import annotations

from bastion.testing import inspect_request, make_pipeline
from bastion.verdict import Action

JAVA_STREAM = (b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap\x05\x07\xda\xc1\xc3\x16`\xd1\x03\x00\x02F"
               b"\x00\nloadFactorI\x00\tthresholdxp")


async def test_serialized_java_stream_as_the_body_is_blocked() -> None:
    pipeline = make_pipeline(only={"signatures"})
    ex, verdict = await inspect_request(
        pipeline, "POST", "/invoker/readonly",
        headers={"Content-Type": "application/x-java-serialized-object"}, body=JAVA_STREAM)
    assert verdict.action == Action.BLOCK
    assert "944131" in [f.rule_id for f in ex.findings]


async def test_other_binary_bodies_are_not_java_streams() -> None:
    pipeline = make_pipeline(only={"signatures"})
    for body in (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
                 b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"):
        ex, _ = await inspect_request(pipeline, "POST", "/upload",
                                      headers={"Content-Type": "application/octet-stream"}, body=body)
        assert "944131" not in [f.rule_id for f in ex.findings]


async def test_utf16_bodies_are_read_as_text() -> None:
    """A UTF-16 body (declared or with a byte-order mark) is parsed as the text the application
    reads: no NUL-byte finding on a legitimate document, and its attacks are found."""
    import json

    pipeline = make_pipeline(only={"signatures"})
    ok = json.dumps({"name": "Zoë", "note": "hello"}).encode("utf-16")
    ex, verdict = await inspect_request(pipeline, "POST", "/api/x",
                                        headers={"Content-Type": "application/json; charset=utf-16"}, body=ok)
    assert ex.findings == [] and verdict.action == Action.ALLOW
    bad = json.dumps({"q": "1' UNION SELECT password FROM users--"}).encode("utf-16")
    ex, verdict = await inspect_request(pipeline, "POST", "/api/x",
                                        headers={"Content-Type": "application/json; charset=utf-16"}, body=bad)
    assert verdict.action == Action.BLOCK
    xxe = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           "<a>&x;</a>").encode("utf-16")
    ex, verdict = await inspect_request(pipeline, "POST", "/api/x", headers={"Content-Type": "application/xml"},
                                        body=xxe)
    assert "934150" in [f.rule_id for f in ex.findings]
