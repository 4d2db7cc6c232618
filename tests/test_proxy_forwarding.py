"""Client IP resolution through trusted proxies, and the forwarding headers sent upstream."""

from __future__ import annotations

import pytest

from bastion.frontends.proxy.forwarding import (
    TrustedProxies,
    forwarded_for_chain,
    forwarding_headers,
    parse_ip,
    resolve_client_ip,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ("[2001:db8::1]:443", "2001:db8::1"),
     ('"[2001:db8::1]"', "2001:db8::1"), ("2001:db8::1", "2001:db8::1"), ("::ffff:10.0.0.1", "10.0.0.1"),
     ("unknown", None), ("_hidden", None), ("", None), ("[::1", None), ("999.1.1.1", None)],
)
def test_parse_ip(value, expected):
    addr = parse_ip(value)
    assert (str(addr) if addr is not None else None) == expected


def test_nobody_is_trusted_by_default():
    trusted = TrustedProxies()
    assert not trusted and not trusted.contains("127.0.0.1")
    assert resolve_client_ip("198.51.100.7", ["10.0.0.1"], trusted) == "198.51.100.7"


def test_chain_walk_stops_at_first_untrusted_hop():
    trusted = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    # client spoofs 1.1.1.1, then real client 203.0.113.5, then two internal proxies
    chain = ["1.1.1.1", "203.0.113.5", "10.0.0.2"]
    assert resolve_client_ip("10.0.0.1", chain, trusted) == "203.0.113.5"
    assert resolve_client_ip("10.0.0.1", ["10.9.9.9"], trusted) == "10.9.9.9"  # all trusted: leftmost
    assert resolve_client_ip("10.0.0.1", [], trusted) == "10.0.0.1"
    assert resolve_client_ip("10.0.0.1", ["garbage", "10.0.0.3"], trusted) == "10.0.0.3"
    assert resolve_client_ip("2001:db8::9", ["198.51.100.1"], trusted) == "198.51.100.1"


def test_forwarded_header_chain_when_no_xff():
    assert forwarded_for_chain([], ['for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"']) == [
        "192.0.2.60", '"[2001:db8:cafe::17]:4711"']
    assert forwarded_for_chain(["1.1.1.1, 2.2.2.2", "3.3.3.3"], ["for=9.9.9.9"]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]


def test_forwarding_headers_replace_untrusted_and_extend_trusted():
    out = dict(forwarding_headers("198.51.100.7", "198.51.100.7", "https", "api.test", False,
                                  ["6.6.6.6"], ["for=6.6.6.6"], "http"))
    assert out[b"X-Forwarded-For"] == b"198.51.100.7"
    assert out[b"Forwarded"] == b'for=198.51.100.7;proto=https;host="api.test"'
    assert out[b"X-Forwarded-Proto"] == b"https"
    assert out[b"X-Real-IP"] == b"198.51.100.7"
    out = dict(forwarding_headers("10.0.0.1", "203.0.113.5", "http", "api.test:8080", True,
                                  ["203.0.113.5"], [], "https"))
    assert out[b"X-Forwarded-For"] == b"203.0.113.5, 10.0.0.1"
    assert out[b"X-Forwarded-Proto"] == b"https"
    assert out[b"X-Real-IP"] == b"203.0.113.5"


def test_forwarded_host_never_breaks_the_quoted_string():
    out = dict(forwarding_headers("::1", "::1", "http", 'evil";for=1.2.3.4', False, [], [], None))
    assert out[b"Forwarded"] == b'for="[::1]";proto=http'
