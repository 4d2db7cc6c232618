"""Hostile bytes never break the signatures detector: every parser returns values or nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.detect.signatures.detector import SignaturesDetector
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.testing import make_exchange

DET = SignaturesDetector(SignaturesConfig(paranoia=4))
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "multipart/form-data", "application/xml", "text/plain", "", "application/json; charset=utf-16"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=2000), ct=st.sampled_from(CONTENT_TYPES),
       target=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=200),
       cookie=st.text(max_size=200))
def test_any_request_is_inspected_without_error(body: bytes, ct: str, target: str, cookie: str) -> None:
    ex = make_exchange("POST", "/" + target, headers={"Content-Type": ct, "Cookie": cookie,
                                                      "User-Agent": cookie}, body=body)
    DET.request_headers(ex)
    DET.request_body(ex)
    for f in ex.findings:
        assert f.rule_id and len(f.evidence) <= 64


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.sampled_from(["--x\r\n", "Content-Disposition: form-data; name=\"a\"", "; filename=\"",
                                        "\r\n\r\n", "\"", "--x--", "{", "[", "<?xml", "<!DOCTYPE a [", "${jndi:",
                                        "%", "%u", "&#", "\\u00", "'", "\x00", "\xff"]), max_size=40))
def test_structured_garbage(parts: list[str]) -> None:
    body = "".join(parts).encode("utf-8", "surrogatepass")
    for ct in CONTENT_TYPES:
        ex = make_exchange("POST", "/", headers={"Content-Type": ct}, body=body)
        DET.request_body(ex)
