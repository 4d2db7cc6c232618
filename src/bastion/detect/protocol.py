"""HTTP protocol anomalies that a lenient parser lets through: smuggling signs, invalid methods and
versions, Host abuse, CR/LF/NUL injection, and bodies that do not match their Content-Type.

Two kinds of rule, chosen by what the anomaly means:

- Framing and grammar violations that an RFC says a server MUST reject (RFC 9112 §3.2 missing or
  repeated Host, §6.1 Transfer-Encoding with Content-Length, RFC 9110 §8.6 invalid Content-Length,
  CR/LF/NUL in a field value) carry an explicit BLOCK with status 400 (405 for a method outside
  the allowed list, 417 for an unknown expectation). Forwarding such a request is how a gateway
  and the server behind it come to disagree about where a request ends (request smuggling).
- Signs that are suspicious but that real, odd clients also produce (a GET with a body, a form
  body that is really JSON, a missing Host on HTTP/1.0) only add anomaly points, so they block
  together with other evidence but not alone. Real attacks (a smuggled request line in a body,
  CR/LF in a decoded path, an EBCDIC charset, hop-by-hop stripping of X-Forwarded-For) score
  critical and block on their own.

Evidence is a short description or a masked, truncated value, never a whole payload.
"""

from __future__ import annotations

import base64
import bisect
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from bastion.config import BastionConfig, ProtocolConfig
from bastion.detect.httpsyntax import (
    NOT_JSON,
    first_byte,
    is_json_type,
    is_token,
    is_xml_type,
    json_strings,
    known_codec,
    mask,
    parse_json,
    parse_media_type,
    percent_decode,
)
from bastion.engine.registry import BuildContext
from bastion.errors import PROBLEMS
from bastion.exchange import Exchange
from bastion.frontends.proxy.forwarding import TrustedProxies, parse_ip
from bastion.verdict import Action, Finding, Severity


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    message: str
    severity: Severity
    reason: str = ""  # set: an explicit refusal with this problem code; empty: anomaly points only
    tags: tuple[str, ...] = ("protocol",)


_S = ("protocol", "smuggling")
_I = ("protocol", "header-injection")
_B = ("protocol", "content-type")

# --- explicit refusals ----------------------------------------------------------------------------
METHOD_INVALID = Rule("protocol-method-invalid", "method is not an HTTP token", Severity.CRITICAL, "bad-request")
METHOD_NOT_ALLOWED = Rule(
    "protocol-method-not-allowed", "method not allowed", Severity.ERROR, "unsupported-method"
)
VERSION_INVALID = Rule("protocol-version-invalid", "unsupported HTTP version", Severity.CRITICAL, "bad-request")
TARGET_INVALID = Rule("protocol-target-invalid", "invalid request target", Severity.CRITICAL, "bad-request")
HOST_MISSING = Rule("protocol-host-missing", "HTTP/1.1 request without Host", Severity.ERROR, "bad-request")
HOST_MULTIPLE = Rule("protocol-host-multiple", "more than one Host header", Severity.CRITICAL, "bad-request", _S)
HOST_INVALID = Rule("protocol-host-invalid", "invalid Host header", Severity.CRITICAL, "bad-request", _I)
CL_INVALID = Rule("protocol-cl-invalid", "invalid Content-Length", Severity.CRITICAL, "bad-request", _S)
CL_MULTIPLE = Rule("protocol-cl-multiple", "repeated Content-Length", Severity.CRITICAL, "bad-request", _S)
CL_TE = Rule("protocol-cl-te", "both Content-Length and Transfer-Encoding", Severity.CRITICAL, "bad-request", _S)
TE_INVALID = Rule("protocol-te-invalid", "Transfer-Encoding other than chunked", Severity.CRITICAL, "bad-request", _S)
TE_VERSION = Rule(
    "protocol-te-version", "Transfer-Encoding outside HTTP/1.1", Severity.CRITICAL, "bad-request", _S
)
HEADER_NAME_INVALID = Rule(
    "protocol-header-name-invalid", "invalid header field name", Severity.CRITICAL, "bad-request", _I
)
HEADER_CRLF = Rule(
    "protocol-header-crlf", "CR, LF or NUL in a header value", Severity.CRITICAL, "bad-request", _I
)
EXPECT_INVALID = Rule("protocol-expect-invalid", "unsupported expectation", Severity.WARNING, "expectation-failed")

# --- anomaly points -------------------------------------------------------------------------------
# `curl --http2 http://...` asks for h2c too; Bastion never forwards the upgrade (the h2c smuggling
# attack needs a proxy that does), so the request is served over HTTP/1.1 and only scored.
UPGRADE_H2C = Rule("protocol-upgrade-h2c", "h2c upgrade request", Severity.WARNING, tags=_S)
HOST_MISSING_10 = Rule("protocol-host-missing-http10", "HTTP/1.0 request without Host", Severity.WARNING)
# An empty Host on an origin-form request names no authority at all (RFC 9112 §3.2 allows it only
# for a target without one): virtual-host routing and Host-derived links fall back to defaults.
HOST_EMPTY = Rule("protocol-host-empty", "empty Host header", Severity.CRITICAL)
TARGET_AUTHORITY = Rule(
    "protocol-target-authority", "absolute-form target names another host than Host", Severity.CRITICAL,
    tags=("protocol", "ssrf"),
)
TARGET_FRAGMENT = Rule("protocol-target-fragment", "raw fragment in the request target", Severity.WARNING)
PATH_CRLF = Rule("protocol-path-crlf", "CR or LF in the decoded path", Severity.CRITICAL, tags=_I)
PATH_NUL = Rule("protocol-path-nul", "NUL byte in the decoded path", Severity.CRITICAL, tags=("protocol", "null-byte"))
ARG_HEADER_INJECTION = Rule(
    "protocol-arg-header-injection", "CR/LF followed by a header in an argument", Severity.CRITICAL, tags=_I
)
ARG_CRLF_NAME = Rule("protocol-arg-name-crlf", "CR or LF in an argument name", Severity.CRITICAL, tags=_I)
ARG_NUL = Rule("protocol-arg-nul", "NUL byte in an argument", Severity.CRITICAL, tags=("protocol", "null-byte"))
ARG_CTL = Rule("protocol-arg-ctl", "control character in an argument", Severity.WARNING)
ARG_REQUEST_LINE = Rule("protocol-arg-request-line", "an HTTP request line in an argument", Severity.CRITICAL,
                        tags=_S)
HEADER_ENCODED_INJECTION = Rule(
    "protocol-header-encoded-injection", "encoded CR/LF followed by a header in a header value",
    Severity.CRITICAL, tags=_I,
)
HTTPOXY = Rule("protocol-httpoxy", "Proxy request header (httpoxy)", Severity.CRITICAL, tags=("protocol", "ssrf"))
DAV_HEADER = Rule("protocol-dav-header", "WebDAV-only request header", Severity.WARNING)
# The same header when no WebDAV method is allowed: it can mean nothing to the API behind.
DAV_HEADER_UNEXPECTED = Rule(
    "protocol-dav-header-unexpected", "WebDAV header while no WebDAV method is allowed", Severity.CRITICAL
)
METHOD_OVERRIDE = Rule(
    "protocol-method-override", "method override to a method that is not allowed", Severity.CRITICAL
)
CONNECTION_REPEATED = Rule("protocol-connection-repeated", "repeated Connection option", Severity.WARNING, tags=_S)
# `keep-alive` and `close` together: servers may disagree on reusing the connection. Only scored:
# Bastion never forwards Connection (hop-by-hop), so no desync reaches the API, and old client
# stacks do produce it.
CONNECTION_CONFLICT = Rule("protocol-connection-conflict", "conflicting Connection options (close and keep-alive)",
                           Severity.WARNING, tags=_S)
HEADER_CTL = Rule("protocol-header-ctl", "control character in a header value", Severity.ERROR, tags=_I)
HEADER_ALIAS = Rule(
    "protocol-header-underscore-alias", "underscore spelling of a sensitive header", Severity.CRITICAL, tags=_S
)
CONNECTION_STRIP = Rule(
    "protocol-connection-strip", "Connection header names an end-to-end header", Severity.CRITICAL, tags=_S
)
# Request-Range is Netscape-era (never standardized; Apache Killer sent it next to Range). No
# current client sends it.
REQUEST_RANGE = Rule("protocol-request-range", "obsolete Request-Range header", Severity.CRITICAL,
                     tags=("protocol", "dos"))
CONTENT_RANGE = Rule(
    "protocol-content-range", "Content-Range on a request that is not a ranged upload", Severity.CRITICAL
)
ACCEPT_ENCODING_LONG = Rule(
    "protocol-accept-encoding-long", "Accept-Encoding far longer than any client sends", Severity.CRITICAL,
    tags=("protocol", "dos"),
)
ACCEPT_CHARSET = Rule("protocol-accept-charset", "Accept asks for a charset other than UTF-8/ASCII/latin-1",
                      Severity.CRITICAL, tags=_B)
HEADER_ENCODED_NUL = Rule("protocol-header-encoded-nul", "encoded NUL in a header value", Severity.CRITICAL,
                          tags=("protocol", "null-byte"))
COOKIE_V1 = Rule("protocol-cookie-v1", "RFC 2109 $Version cookie (parser-differential bypass)", Severity.CRITICAL,
                 tags=_I)
MIDDLEWARE_SUBREQUEST = Rule(
    "protocol-middleware-subrequest", "x-middleware-subrequest header (Next.js middleware bypass)",
    Severity.CRITICAL, tags=("protocol", "auth-bypass"),
)
URL_OVERLONG = Rule("protocol-utf8-overlong", "overlong or out-of-range UTF-8 percent-encoding", Severity.CRITICAL,
                    tags=("protocol", "encoding"))
URL_U_ENCODING = Rule("protocol-u-encoding", "%u encoding of an ASCII or full-width character", Severity.CRITICAL,
                      tags=("protocol", "encoding"))
ARG_UNICODE_ESCAPE = Rule("protocol-arg-unicode-escape", "\\u escape of an ASCII character in an argument",
                          Severity.CRITICAL, tags=("protocol", "encoding"))
PATH_SENSITIVE_FILE = Rule(
    "protocol-path-sensitive-file", "request for a backup, editor, dump or key file", Severity.CRITICAL,
    tags=("protocol", "disclosure"),
)
RANGE_ABUSE = Rule("protocol-range-abuse", "too many byte ranges", Severity.CRITICAL, tags=("protocol", "dos"))
GET_BODY = Rule("protocol-get-body", "GET or HEAD request with a body", Severity.WARNING, tags=_S)
GET_CHUNKED = Rule("protocol-get-chunked", "GET or HEAD request with a chunked body", Severity.CRITICAL, tags=_S)
GET_FORM = Rule("protocol-get-form-body", "GET or HEAD request with a form body", Severity.CRITICAL, tags=_B)
_J = ("protocol", "auth", "jwt")
JWT_UNSIGNED = Rule("protocol-jwt-alg-none", "JWT declaring no signature (alg: none)", Severity.CRITICAL, tags=_J)
JWT_NO_SIGNATURE = Rule("protocol-jwt-signature-missing", "JWT with an empty or all-zero signature", Severity.CRITICAL,
                        tags=_J)
JWT_KID = Rule("protocol-jwt-kid-injection", "JWT key id (kid) holding a path, a quote or shell/SQL syntax",
               Severity.CRITICAL, tags=_J)
JWT_KEY_URL = Rule("protocol-jwt-key-url", "JWT telling the verifier to fetch its key (jku/x5u) from another host",
                   Severity.CRITICAL, tags=_J)
JWT_EMBEDDED_KEY = Rule("protocol-jwt-embedded-key", "JWT carrying its own verification key (jwk)",
                        Severity.CRITICAL, tags=_J)
_A = ("protocol", "access-bypass")
PATH_OVERRIDE = Rule("protocol-path-override-header", "X-Original-URL / X-Rewrite-URL naming another path",
                     Severity.CRITICAL, tags=_A)
LOOPBACK_CLAIM = Rule("protocol-client-ip-loopback", "forwarding header claiming a loopback client or host",
                      Severity.WARNING, tags=_A)
LOOPBACK_ADMIN = Rule("protocol-loopback-admin", "loopback client or host claimed on an administrative path",
                      Severity.CRITICAL, tags=_A)
HOST_LOOPBACK_ADMIN = Rule("protocol-host-loopback-admin",
                           "Host naming the loopback interface on an administrative path", Severity.WARNING, tags=_A)
FORWARDED_HOST = Rule("protocol-forwarded-host-mismatch", "X-Forwarded-Host (or kin) naming another host than Host",
                      Severity.WARNING, tags=("protocol", "host-header"))
FORWARDED_HOST_LINK = Rule(
    "protocol-forwarded-host-link", "X-Forwarded-Host naming another host on an endpoint that e-mails links",
    Severity.CRITICAL, tags=("protocol", "host-header"),
)
METHOD_OVERRIDE_SAFE = Rule("protocol-method-override-get", "GET or HEAD overridden to another method",
                            Severity.CRITICAL, tags=_A)
IDENTITY_ARRAY = Rule("protocol-identity-array", "e-mail field given several addresses on an account endpoint",
                      Severity.CRITICAL, tags=_A)
IDENTITY_ARRAY_OTHER = Rule("protocol-identity-array-other", "e-mail field given several addresses", Severity.WARNING,
                            tags=_A)
NEGOTIATION_INVALID = Rule("protocol-negotiation-header-invalid",
                           "negotiation header (Accept-Language, Accept-Encoding...) outside its grammar",
                           Severity.CRITICAL, tags=_I)
PERCENT_INVALID = Rule("protocol-percent-invalid", "several invalid percent-escapes (%S%E%L%E%C%T)", Severity.CRITICAL,
                       tags=("protocol", "encoding"))
PATH_ALIAS = Rule("protocol-path-alias-traversal", "path segment glued to '..' (/static../: alias traversal)",
                  Severity.CRITICAL, tags=("protocol", "traversal"))
SCANNER_HEADER = Rule("protocol-scanner-header", "header only a security scanner sends", Severity.CRITICAL,
                      tags=("protocol", "scanner"))
REDIRECT_ENCODED = Rule("protocol-redirect-encoded-slashes",
                        "redirect parameter with a scheme and percent-encoded slashes (https:%2F%2F)",
                        Severity.CRITICAL, tags=("protocol", "redirect"))
BODY_NO_CT = Rule("protocol-body-no-content-type", "body without Content-Type", Severity.NOTICE, tags=_B)
CT_MULTIPLE = Rule("protocol-ct-multiple", "more than one Content-Type header", Severity.CRITICAL, tags=_B)
CT_INVALID = Rule("protocol-ct-invalid", "malformed Content-Type", Severity.ERROR, tags=_B)
# A policy (`protocol.allowed_content_types`, empty by default): the body parsers the API really has.
CT_NOT_ALLOWED = Rule("protocol-ct-not-allowed", "Content-Type not in protocol.allowed_content_types",
                      Severity.CRITICAL, tags=_B)
# No type/subtype at all: no parser knows what the body is, and each guesses differently.
CT_TYPE_INVALID = Rule("protocol-ct-type-invalid", "Content-Type is not a media type", Severity.CRITICAL, tags=_B)
CT_CHARSET = Rule("protocol-ct-charset", "evasive or repeated charset", Severity.CRITICAL, tags=_B)
CT_CHARSET_UNKNOWN = Rule("protocol-ct-charset-unknown", "charset no decoder knows", Severity.CRITICAL,
                          tags=_B)
CT_CONFUSION = Rule("protocol-ct-confusion", "a media type hidden in a Content-Type parameter", Severity.CRITICAL,
                    tags=_B)
CT_CHARSET_UNUSUAL = Rule("protocol-ct-charset-unusual", "charset outside the allowed list", Severity.WARNING,
                          tags=_B)
MULTIPART_BOUNDARY = Rule(
    "protocol-multipart-boundary", "multipart without a valid boundary", Severity.CRITICAL, tags=_B
)
MULTIPART_PARAM = Rule(
    "protocol-multipart-param", "ambiguous multipart field or file name (quote, ';', '=', '\\')",
    Severity.CRITICAL, tags=_B,
)
MULTIPART_CHARSET = Rule(
    "protocol-multipart-charset", "multipart part or _charset_ field in a charset outside the allowed list",
    Severity.CRITICAL, tags=_B,
)
MULTIPART_CTE = Rule(
    "protocol-multipart-transfer-encoding", "multipart part with a base64 or quoted-printable encoding",
    Severity.CRITICAL, tags=_B,
)
# A text body (JSON, form, XML, GraphQL, text) longer than what is inspected: its tail reaches the API unseen
BODY_UNINSPECTED = Rule("protocol-body-uninspected", "text body longer than the inspection limit", Severity.CRITICAL,
                        "body-too-large", _B)
BODY_JSON = Rule("protocol-body-json-invalid", "body declared JSON is not JSON", Severity.CRITICAL, tags=_B)
BODY_XML = Rule("protocol-body-xml-invalid", "body declared XML is not XML", Severity.WARNING, tags=_B)
BODY_FORM = Rule("protocol-body-form-mismatch", "form body that is JSON or XML", Severity.NOTICE, tags=_B)
BODY_MULTIPART = Rule(
    "protocol-body-multipart-mismatch", "multipart body without its boundary", Severity.ERROR, tags=_B
)
BODY_SMUGGLED = Rule(
    "protocol-body-request-line", "an HTTP request line inside the body", Severity.CRITICAL, tags=_S
)

RULES: tuple[Rule, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Rule))

# RFC 9110 §5.6.2 token characters.
_VERSIONS = frozenset({"1.0", "1.1", "2", "2.0", "3", "3.0"})
# reg-name / IPv4 / IP-literal characters and a port (RFC 3986 §3.2.2).
_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+(?:%25[\w.~-]+)?\]|[\w.~!$&'()*+,;=%-]*)(?::\d{0,5})?", re.ASCII)
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CRLF_NUL = re.compile(r"[\r\n\x00]")
# A header or status line injected after CR/LF (response splitting, CWE-113).
_INJECTED_HEADER = re.compile(
    r"[\r\n][\t ]*(?:(?:set-cookie|location|content-type|content-length|content-disposition|refresh|"
    r"transfer-encoding|access-control-allow-[a-z-]+|x-xss-protection|host|cookie|link|via|remote-addr|"
    r"remote-ip|originating-ip|content-security-policy|x-[a-z0-9-]+)[\t ]*:|http/\d(?:\.\d)?[\t ]+\d{3})",
    re.IGNORECASE,
)
# In a header value (no prose there), any field after an encoded CR/LF.
_INJECTED_ANY = re.compile(r"[\r\n][\t ]*[!#$&'*+.^_`|~0-9A-Za-z-]{2,}[\t ]*:[\t ]*\S")
# The same, limited to what multi-line prose never contains (form and JSON text fields carry real
# line breaks: "Location: Berlin" on its own line is an address, not an injection).
_INJECTED_STRONG = re.compile(
    r"[\r\n][\t ]*(?:(?:set-cookie|content-length|transfer-encoding|access-control-allow-[a-z-]+|x-xss-protection|"
    r"content-security-policy|x-[a-z0-9]+(?:-[a-z0-9]+)*)[\t ]*:|location[\t ]*:[\t ]*(?:[a-z][a-z0-9+.-]*:)?//|"
    r"refresh[\t ]*:[\t ]*\d|http/\d(?:\.\d)?[\t ]+\d{3})",
    re.IGNORECASE,
)
# Escaped line breaks, encoded CR/LF or NUL somewhere in a JSON body: worth walking its strings.
_JSON_SUSPECT = re.compile(rb"\\[rn]|\\u000[0ad]|%(?:0[0ad]|25)", re.IGNORECASE)
# A request line with its own CRLF inside a body: the payload of CL.TE / TE.CL smuggling.
_REQUEST_LINE = re.compile(
    rb"(?:^|\n)[ \t]*(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|CONNECT|PROPFIND)"
    rb"[ \t]+\S+[ \t]+HTTP/\d(?:\.\d)?\r?\n",
    re.IGNORECASE,
)
# The same anywhere in a line when a header line follows it (`barGET /a HTTP/1.1\r\nHost: x`:
# the smuggled request glued to the end of the previous body).
_REQUEST_LINE_GLUED = re.compile(
    rb"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|CONNECT|PROPFIND)[ \t]+(?:/|https?://)\S*[ \t]+"
    rb"HTTP/\d(?:\.\d)?\r?\n[!#$&'*+.^_`|~0-9A-Za-z-]+[ \t]*:",
    re.IGNORECASE,
)
# Headers whose underscore spelling reaches CGI/WSGI apps as the same variable (HTTP_X_FORWARDED_FOR).
_ALIASED = frozenset(
    {
        "content_length", "transfer_encoding", "host", "x_forwarded_for", "x_forwarded_host",
        "x_forwarded_proto", "x_real_ip", "authorization", "forwarded", "x_original_url", "x_rewrite_url",
        "cookie", "x_client_ip",
    }
)
# End-to-end headers that a Connection header must never ask a proxy to drop (hop-by-hop abuse
# that strips X-Forwarded-For or Authorization on the way to the API).
_NOT_HOP = frozenset(
    {
        "host", "content-length", "transfer-encoding", "authorization", "cookie", "x-forwarded-for",
        "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded", "proxy-authorization",
        "content-type", "x-api-key", "x-request-id", "x-bastion-client",
    }
)
# Charsets that turn an attack into bytes no filter recognizes but some servers still decode:
# EBCDIC code pages (the IIS/ASP.NET `charset=ibm037` WAF bypass), UTF-7 and UTF-32.
_EVASIVE_CHARSET = re.compile(
    r"(?:ibm|cp|csibm|ccsid|x-ibm)-?0*(?:37|273|277|278|280|284|285|290|297|420|423|424|500|870|871|875|880|905|"
    r"1025|1026|1047|114[0-9])\b|ebcdic|utf-?7\b|unicode-1-1-utf-7|utf-?32",
    re.IGNORECASE,
)
# Worth decoding an argument list for: encoded control characters or double encoding, raw controls,
# or a spelled-out HTTP version (a request line).
_ARG_SUSPECT = re.compile(r"%(?:[01][0-9a-f]|7f|25)|[\x00-\x1f\x7f]|http(?:/|%2f)\d|\\u|%5cu", re.IGNORECASE)
# `\u0061lert` in a query or form value: a JSON/JS escape of a plain ASCII character where no JSON
# parser will ever decode it, so only the application (or a template) turns it into the letter.
_UNICODE_ESCAPE = re.compile(r"\\u00[2-7][0-9a-f]", re.IGNORECASE)
# Percent-encoded UTF-8 that no encoder produces: overlong forms (%c0%af is "/" to a lenient
# decoder: the classic traversal bypass), UTF-16 surrogates, and code points past U+10FFFF.
_OVERLONG = re.compile(r"%c[01]|%e0%[89]|%f0%8|%ed%[ab]|%f(?:4%[9ab]|[5-9a-f]%[89ab])", re.IGNORECASE)
# IIS %uXXXX for ASCII (%u002e%u002e%u002f) or full-width ASCII forms (%uff0f), which best-fit
# mapping turns into the ASCII character after the filter has looked.
_U_ENCODING = re.compile(r"%u(?:00[0-7][0-9a-f]|ff[0-5][0-9a-f])", re.IGNORECASE)
# A path segment naming a backup/editor copy (`index.php~`, `.bak`, `.swp`), a database dump or a
# private key: never an API resource, always the first thing scanners try.
_SENSITIVE_FILE = re.compile(
    r"[^/~]~(?:/|$)|[^/]\.(?:bak|backup|old|orig|swp|swo|sav|sql|sqlite3?|db|mdb|rdb|dump|pem|key|p12|pfx|jks|"
    r"keystore|kdbx|ppk)(?:/|$)",
    re.IGNORECASE,
)
_COOKIE_V1 = re.compile(r"(?:^|[;,])[ \t]*\$version[ \t]*=", re.IGNORECASE)
_BOUNDARY_PARAM = re.compile(r";[ \t]*boundary[ \t]*=", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"bytes[ \t]+(?:\d+-\d+|\*)/(?:\d+|\*)", re.IGNORECASE)
_ACCEPT_CHARSET = re.compile(r"charset[ \t]*=[ \t]*\"?([^\s\";,]+)", re.IGNORECASE)
_DAV_METHODS = frozenset({"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"})
# Charsets of multipart parts (and `_charset_` fields): browsers send UTF-8 or the page charset;
# a UTF-16 or EBCDIC part hides an ASCII payload from every byte pattern.
_PART_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1",
                            "iso-8859-15", "windows-1252"})
_DISPOSITION_PARAM = re.compile(r';[ \t]*([\w*.-]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"?|[^;]*)')
_ENTITY = re.compile(r"&(?:[a-z][a-z0-9]{1,31}|#\d{1,7}|#x[0-9a-f]{1,6});", re.IGNORECASE)
_ARG_CTL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_REQUEST_LINE_TEXT = re.compile(
    r"\b(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|TRACK|CONNECT|PROPFIND)\s+\S+\s+HTTP/\d", re.IGNORECASE
)
_MEDIA_TYPE_VALUE = re.compile(
    r"(?:application|text|image|audio|video|multipart|message|model|font)/[\w.+-]+", re.IGNORECASE | re.ASCII
)
_DAV_HEADERS = frozenset({"if", "lock-token", "destination", "overwrite"})
_MISC_HEADERS = frozenset({"connection", "upgrade", "expect", "range", "request-range"})
_OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_BCHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")

# --- JWT headers -----------------------------------------------------------------------------------
# A JWS header is a JSON object, so its base64url starts with `eyJ`, `eyAi`, `ewo`, `ew0` or `ewk`
# (`{"`, `{ "`, `{\n`, `{\r`, `{\t`): substring tests for them come before any regex runs.
# (padding is not part of base64url, but some encoders add it and most decoders accept it)
_JWT_PATTERN = (
    r"(e(?:yJ|yAi|w[o0k])[A-Za-z0-9_-]{1,2048}={0,2})\.([A-Za-z0-9_-]{0,16384}={0,2})\.([A-Za-z0-9_-]{0,1024})"
)
_JWT = re.compile(_JWT_PATTERN)
_JWT_B = re.compile(_JWT_PATTERN.encode())
# the cheap test (one regex search costs less than three substring tests on a kilobyte)
_JWT_START = re.compile(r"e(?:yJ|yAi|w[o0k])")
_JWT_START_B = re.compile(rb"e(?:yJ|yAi|w[o0k])")
_B64URL_CHAR = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_JWTS = 16  # tokens examined per request
# A key id is an opaque name: a UUID, a thumbprint (base64/hex), a date, a URL or a cloud key name.
# Quotes, shell and SQL punctuation, control characters, `..` climbs and absolute system paths are
# what a verifier that puts the kid into a query, a command or a file path chokes on.
_KID_BAD = re.compile(
    r"['\"`|;$<>\\\x00-\x1f\x7f&]|(?:^|[/\\])\.\.(?:[/\\]|$)|^\s*(?:file:/*)?/(?:dev|proc|etc|sys|var|tmp|usr|bin|root|home|"
    r"opt|run|boot|lib)(?:/|$)|^[A-Za-z]:[\\/]|\s(?:union|select|or|and)\s",
    re.IGNORECASE,
)
# DER of ECDSA (r=0, s=0): the "psychic signature" Java 15-18 accepted for any message (CVE-2022-21449).
_ZERO_ECDSA_DER = b"0\x06\x02\x01\x00\x02\x01\x00"

# --- forwarding and access-control headers -------------------------------------------------------
# Headers a client sets to claim where the request comes from: a loopback value is the classic
# "the request is local, so it is trusted" bypass (FortiOS CVE-2022-40684, 403-bypass lists).
_CLIENT_IP_HEADERS = frozenset({
    "x-forwarded-for", "x-real-ip", "x-client-ip", "client-ip", "true-client-ip", "x-originating-ip", "x-remote-ip",
    "x-remote-addr", "x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-custom-ip-authorization",
    "x-forwarded", "forwarded-for", "x-true-ip", "forwarded",
})
# Headers that name the host the client asked for: an application that builds links from them
# e-mails a password-reset link pointing at the attacker's host.
_FORWARDED_HOST_HEADERS = frozenset({"x-forwarded-host", "x-host", "x-forwarded-server", "x-http-host-override"})
# Path rewrites honoured by IIS/ASP.NET, Symfony and old Zend: the application routes on the header,
# the filter and the access rules saw the request line.
_PATH_OVERRIDE_HEADERS = frozenset({"x-original-url", "x-rewrite-url", "x-override-url"})
_LOOPBACK_NAME = re.compile(r"localhost(?:\.localdomain)?|ip6-localhost|ip6-loopback|0|0\.0\.0\.0|\[?::1?\]?",
                            re.IGNORECASE)
_LOOPBACK_IP = re.compile(
    r"127(?:\.\d{1,3}){0,3}|0177(?:\.0*\d{1,3}){0,3}|0x7f[0-9a-f.x]*|2130706433|::ffff:127\.[\d.]+", re.IGNORECASE
)
_LOOPBACK_FIRST = frozenset("lLiI0123456789[:")
# Paths an administrator, not a client of the API, calls.
_ADMIN_PATH = re.compile(
    r"/(?:admin\w*|administrator|manage(?:r|ment)?|internal|private|console|actuator|cmdb|superuser|sysadmin|"
    r"setup|install|debug|server-status|server-info|jmx-console|web-console|phpmyadmin|wp-admin|_admin|"
    r"system|root|config|configuration|settings/(?:security|users?)|users?/(?:\d+/)?(?:roles?|permissions|delete))"
    r"(?:[/.?;]|$)",
    re.IGNORECASE,
)
# Endpoints that send a link or a code to an address: where a poisoned host name ends up in an e-mail.
_LINK_PATH = re.compile(
    r"pass(?:word|wd)|reset|forgot|recover|magic|invit|verif|confirm|activat|sign-?up|register|registration|"
    r"unlock|(?:^|/)e-?mail(?:s)?(?:/|$)|one-time|otp|login-link|passwordless",
    re.IGNORECASE,
)
# Account endpoints: where an identity field given twice is an account takeover (GitLab CVE-2023-7028).
_ACCOUNT_PATH = re.compile(
    r"pass(?:word|wd)|reset|forgot|recover|log-?in|sign-?in|sign-?up|register|registration|verif|unlock|magic|"
    r"otp|mfa|2fa|/auth(?:/|$)|/sessions?(?:/|$)",
    re.IGNORECASE,
)
# A singular e-mail field: `email`, `user[email]`, `user[email][]`, `email_address`, `user.mail`
# (a list of recipients is named in the plural: `emails[]`, `to[]`, `recipients`).
_EMAIL_FIELD = re.compile(r"(?:^|[\[._-])e-?mail(?:_?address)?\]?(?:\[\d*\])?$", re.IGNORECASE)
_SCANNER_HEADERS = frozenset({
    "acunetix-aspect", "acunetix-aspect-password", "acunetix-aspect-queries", "acunetix-product",
    "acunetix-scanning-agreement", "acunetix-user-agreement", "x-scan-memo", "x-request-memo",
    "x-requestmanager-memo", "x-wipp",
})
_REDIRECT_NAME = re.compile(
    r"(?:^|[_.\[-])(?:next|redirect\w*|redir|return\w*|returnto|continue|dest(?:ination)?|goto|forward|"
    r"target_?url|success_?url|failure_?url|cancel_?url|back_?url|login_?url|logout_?url|callback_?url)\]?$",
    re.IGNORECASE,
)
# `https:%2F%2Fevil`: a scheme in clear and its slashes encoded; encoders encode both or neither.
_SCHEME_ENCODED_SLASH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}:(?:%2f|%5c|[/\\])*%(?:2f|5c)", re.IGNORECASE)
_OVERRIDE_PARAM = re.compile(r"(?:^|&)_method=(?:put|patch|delete|post)(?:&|$)", re.IGNORECASE)

# --- negotiation headers ----------------------------------------------------------------------------
# The signature rules skip these (their values are short negotiation tokens); what an injection
# needs is outside their grammar. Accept-Language and Accept-Encoding: tokens, `;q=`, commas.
_LANGUAGE_LIKE = frozenset({"accept-language", "accept-encoding", "te", "content-language"})
_LANGUAGE_GRAMMAR = re.compile(r"[\w\s,;=*.+-]*")
# The other negotiation and cache headers the signature rules skip: no lookup, markup or
# function definition belongs there.
_NEGOTIATION = frozenset({
    "accept", "connection", "cache-control", "pragma", "if-none-match", "if-modified-since", "if-match",
    "if-unmodified-since", "dnt", "upgrade-insecure-requests", "keep-alive", "priority", "sec-fetch-site",
    "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
    "content-encoding",
})
# One dictionary lookup per header line decides which of the checks above it needs.
_K_NEGOTIATION, _K_LANGUAGE, _K_FORWARDING, _K_SCANNER = 1, 2, 3, 4
_HEADER_KIND: dict[str, int] = {
    **dict.fromkeys(_NEGOTIATION, _K_NEGOTIATION), **dict.fromkeys(_LANGUAGE_LIKE, _K_LANGUAGE),
    **dict.fromkeys(_CLIENT_IP_HEADERS | _FORWARDED_HOST_HEADERS | _PATH_OVERRIDE_HEADERS, _K_FORWARDING),
    **dict.fromkeys(_SCANNER_HEADERS, _K_SCANNER),
}
_CODE_SIGN = re.compile(r"\$\{|%\{|#\{|\{\{|<[A-Za-z!/?]|\(\s*\)\s*\{")

# --- paths and encodings ------------------------------------------------------------------------------
# `%S`, `%N`, `%E%`: a percent sign not followed by two hex digits (nor `%uXXXX`, scored apart). A
# few come from careless clients (`50%` unencoded); sqlmap's `percentage` tamper puts one before
# every letter, which IIS/ASP silently drops.
_BAD_PERCENT = re.compile(r"%(?!u[0-9a-f]{4})(?:[g-z(]|[0-9a-f](?:[^0-9a-f]|$))", re.IGNORECASE)
MIN_BAD_PERCENT = 3
# `/static../app/settings.py`: nginx's `location /static { alias /app/static/; }` (no trailing
# slash) maps it to /app/static/../app/settings.py. What is read that way is a file beside the
# aliased directory (source, `.env`, `.git/config`): a name with an extension or a dotfile.
_ALIAS_SEGMENT = re.compile(
    r"/[^/.][^/]*?\.\.(?=[/\\](?:[^/\\?#]+[/\\])*(?:\.[\w.-]+|[^/\\?#]+\.[A-Za-z0-9]{1,8})/?(?:[?#]|$)"
    r"|(?:[/\\][^/\\?#]*)*?[/\\]\.\w)"
)


class ProtocolDetector:
    name = "protocol"

    def __init__(self, cfg: ProtocolConfig, trusted_proxies: list[str] | None = None,
                 refuse_uninspected: bool = True) -> None:
        self.refuse_uninspected = refuse_uninspected  # limits.uninspected_body
        self.allowed_methods = frozenset(cfg.allowed_methods)
        self.allow_header = ", ".join(cfg.allowed_methods)
        self.allowed_charsets = frozenset(c.lower() for c in cfg.allowed_charsets)
        self.max_ranges = cfg.max_ranges
        self.check_bodies = cfg.check_bodies
        self.dav = bool(self.allowed_methods & _DAV_METHODS)
        self.allowed_types = frozenset(t.strip().lower() for t in cfg.allowed_content_types)
        self.observe = False
        self._good_names: set[str] = set()
        # Allowed methods that are tokens: a request's method among them needs no regex test.
        self._token_methods = frozenset(m for m in self.allowed_methods if is_token(m))
        # forwarding headers from a configured proxy are facts, not a client's claims
        self.trusted = TrustedProxies(trusted_proxies or ())

    def _hit(self, ex: Exchange, rule: Rule, evidence: str = "", name: str = "", zone: str = "headers") -> None:
        status: int | None = None
        headers: tuple[tuple[str, str], ...] = ()
        if rule.reason:
            status = PROBLEMS[rule.reason][0]
            if rule is METHOD_NOT_ALLOWED:
                headers = (("Allow", self.allow_header),)
        ex.add(
            Finding(
                rule_id=rule.id,
                detector=self.name,
                message=rule.message,
                severity=rule.severity,
                score=int(rule.severity),
                zone=zone,
                name=name,
                evidence=evidence,
                tags=rule.tags,
                action=Action.BLOCK if rule.reason else None,
                status=status,
                reason=rule.reason,
                headers=headers,
            )
        )

    # --- request line and headers ----------------------------------------------------------

    def request_headers(self, ex: Exchange) -> None:
        req = ex.request
        method = req.method
        if method in self._token_methods:
            pass  # the usual case, decided by one set lookup instead of a regex (~3k instructions)
        elif not is_token(method):
            self._hit(ex, METHOD_INVALID, mask(method, 16), zone="method")
        elif method not in self.allowed_methods:
            self._hit(ex, METHOD_NOT_ALLOWED, mask(method, 16), zone="method")
        version = req.http_version
        if version not in _VERSIONS:
            self._hit(ex, VERSION_INVALID, mask(version or "0.9", 12), zone="version")
        self._target(ex)
        self._headers(ex)

    def _target(self, ex: Exchange) -> None:
        req = ex.request
        target = req.target
        path = target
        if target.startswith("/"):
            pass
        elif target == "*":
            if req.method != "OPTIONS":
                self._hit(ex, TARGET_INVALID, "asterisk-form", zone="target")
            return
        elif "://" in target[:12]:
            scheme, _, rest = target.partition("://")
            authority, slash, tail = rest.partition("/")
            if scheme.lower() not in ("http", "https"):
                self._hit(ex, TARGET_INVALID, f"scheme {mask(scheme, 12)}", zone="target")
                return
            host = req.headers.get("host")
            auth = authority.rsplit("@", 1)[-1].lower()
            if "@" in authority or (host is not None and host.strip().lower() != auth):
                # RFC 9112 §3.2.2 makes the target's authority win over Host: a mismatch is a
                # request routed somewhere other than where Host (and caches, and logs) say.
                self._hit(ex, TARGET_AUTHORITY, mask(auth), zone="target")
            path = slash + tail
        else:
            self._hit(ex, TARGET_INVALID, mask(target, 24), zone="target")
            return
        if "#" in path:
            self._hit(ex, TARGET_FRAGMENT, zone="target")
        q = path.find("?")
        raw_path = path if q < 0 else path[:q]
        if "%" in path:
            self._encoding(ex, path, "target")
        decoded = raw_path
        # (`in` tests for CR, LF and NUL rather than _CRLF_NUL.search: a regex call costs ~3k
        # instructions even on a short path, three `in` tests a few hundred)
        if "%" in raw_path or "\r" in raw_path or "\n" in raw_path or "\x00" in raw_path:
            decoded = percent_decode(raw_path)
            if "\r" in decoded or "\n" in decoded:
                self._hit(ex, PATH_CRLF, mask(decoded[max(0, decoded.find("\n") - 8):], 32), zone="path")
            if "\x00" in decoded:
                self._hit(ex, PATH_NUL, mask(decoded[max(0, decoded.find("\x00") - 8):], 32), zone="path")
        if ("." in decoded or "~" in decoded) and (m := _SENSITIVE_FILE.search(decoded)):
            self._hit(ex, PATH_SENSITIVE_FILE, mask(m.group(0).strip("/"), 16), zone="path")
        if ".." in decoded and (m := _ALIAS_SEGMENT.search(decoded)):
            self._hit(ex, PATH_ALIAS, mask(m.group(0), 24), zone="path")
        if q >= 0:
            query = path[q + 1 :]
            self._args(ex, query, "query")
            self._query(ex, query)

    def _query(self, ex: Exchange, query: str) -> None:
        """Query semantics a parser does not check: `_method` on a GET, redirect URLs written to slip
        past a check, an identity field given twice."""
        if "_method=" in query and ex.request.method in ("GET", "HEAD") and _OVERRIDE_PARAM.search(query):
            # Laravel/Rails/Symfony take `_method` from POST bodies; on a GET it is a link that
            # deletes (CSRF through an image tag) or an attempt to pass a method-based rule
            self._hit(ex, METHOD_OVERRIDE_SAFE, "_method parameter", name="_method", zone="query")
        lowered = query.lower()
        if ":%2f" in lowered or ":%5c" in lowered:
            for name, raw in _raw_pairs(query):
                if _REDIRECT_NAME.search(name) and _SCHEME_ENCODED_SLASH.match(raw):
                    self._hit(ex, REDIRECT_ENCODED, mask(raw, 32), name=mask(name, 32), zone="query")
                    break
        if "mail" in lowered and ("@" in query or "%40" in lowered):
            self._identity_pairs(ex, _raw_pairs(query), "query")

    def _identity_pairs(self, ex: Exchange, pairs: list[tuple[str, str]], zone: str) -> None:
        """An e-mail field given several addresses (`user[email][]=victim&user[email][]=attacker`):
        the account is matched on the first, the reset link mailed to all (GitLab CVE-2023-7028)."""
        seen: dict[str, set[str]] = {}
        for name, raw in pairs:
            if "mail" not in name.lower() or not _EMAIL_FIELD.search(name):
                continue
            key = name
            value = percent_decode(raw.replace("+", " "), 1).strip().lower()
            if "@" in value:
                base = key[:-2] if key.endswith("[]") else key
                seen.setdefault(base, set()).add(value)
        for key, values in seen.items():
            if len(values) > 1:
                self._identity_hit(ex, key, len(values), zone)
                return

    def _identity_hit(self, ex: Exchange, key: str, n: int, zone: str) -> None:
        rule = IDENTITY_ARRAY if _ACCOUNT_PATH.search(ex.request.path) else IDENTITY_ARRAY_OTHER
        self._hit(ex, rule, f"{n} addresses", name=mask(key, 32), zone=zone)

    def _encoding(self, ex: Exchange, raw: str, zone: str) -> None:
        """Percent-encodings no standard encoder produces (in a raw target or form body)."""
        if m := _OVERLONG.search(raw):
            self._hit(ex, URL_OVERLONG, mask(raw[m.start():m.start() + 12], 12), zone=zone)
        if ("%u" in raw or "%U" in raw) and (m := _U_ENCODING.search(raw)):
            self._hit(ex, URL_U_ENCODING, mask(m.group(0), 8), zone=zone)
        bad = _BAD_PERCENT.findall(raw)
        if len(bad) >= MIN_BAD_PERCENT:
            self._hit(ex, PERCENT_INVALID, f"{len(bad)} invalid escapes", zone=zone)

    def _args(self, ex: Exchange, raw: str, zone: str) -> None:
        """Argument checks over a query string or an urlencoded body (names and values, decoded)."""
        if not raw or _ARG_SUSPECT.search(raw) is None:
            return  # the common case: nothing encoded that could hide a control character
        seen: set[str] = set()

        def hit(rule: Rule, evidence: str, name: str) -> None:
            if rule.id not in seen:
                seen.add(rule.id)
                self._hit(ex, rule, mask(evidence), name=name[:64], zone=zone)

        for part in raw.split("&"):
            if not part:
                continue
            k, _, v = part.partition("=")
            name = percent_decode(k.replace("+", " "))
            value = percent_decode(v.replace("+", " "))
            shown = mask(name, 32)
            for text, is_name in ((name, True), (value, False)):
                if "\x00" in text:
                    hit(ARG_NUL, text[max(0, text.find("\x00") - 8):], shown)
                if is_name and ("\r" in text or "\n" in text):
                    hit(ARG_CRLF_NAME, text, shown)
                m = (_INJECTED_HEADER if zone == "query" else _INJECTED_STRONG).search(text)
                if m:
                    hit(ARG_HEADER_INJECTION, m.group(0), shown)
                if _ARG_CTL.search(text):
                    hit(ARG_CTL, text, shown)
                if "\\" in text and _UNICODE_ESCAPE.search(text):
                    hit(ARG_UNICODE_ESCAPE, text, shown)
            if _REQUEST_LINE_TEXT.search(value):
                hit(ARG_REQUEST_LINE, value, shown)

    def _json_values(self, ex: Exchange, doc: Any) -> None:
        """CR/LF + response header and NUL inside JSON strings (values an API may put in a
        redirect or a file name). Only the specific header names: prose has line breaks too."""
        for key, text in json_strings(doc):
            if "%" in text:
                text = percent_decode(text)
            if "\x00" in text:
                self._hit(ex, ARG_NUL, mask(text[max(0, text.find("\x00") - 8):]), name=key[:64], zone="json")
                return
            if ("\r" in text or "\n" in text) and (m := _INJECTED_STRONG.search(text)):
                self._hit(ex, ARG_HEADER_INJECTION, mask(m.group(0)), name=key[:64], zone="json")
                return

    def _headers(self, ex: Exchange) -> None:
        req = ex.request
        headers = req.headers
        hosts: list[str] = []
        cls: list[str] = []
        tes: list[str] = []
        cts: list[str] = []
        hop: list[tuple[str, str]] = []  # Connection, Upgrade, Expect, Range, Request-Range: for _misc
        forwarding: list[tuple[str, str]] = []  # client-IP, forwarded-host and path-override headers
        # One scan over all values (joined by a tab, which is legal in values) instead of one per header.
        joined = "\t".join([v for _, v in headers.items])
        # Printable once tabs (legal in values, and the separator) are set aside: no control
        # character, and no _CTL_RE search (~3k instructions) to say so.
        ctl = not joined.replace("\t", " ").isprintable() and _CTL_RE.search(joined) is not None
        override = False
        for k, v in headers.items:
            low = k.lower()
            if k not in self._good_names:
                if not is_token(k):
                    self._hit(ex, HEADER_NAME_INVALID, mask(k, 32))
                    continue
                if len(self._good_names) < 4096:  # names repeat across requests; bounded memo
                    self._good_names.add(k)
            kind = _HEADER_KIND.get(low)
            if kind is None:
                pass
            elif kind == _K_NEGOTIATION:
                if ("{" in v or "<" in v or "(" in v) and _CODE_SIGN.search(v):
                    self._hit(ex, NEGOTIATION_INVALID, mask(v, 32), name=low)
            elif kind == _K_LANGUAGE:
                if _LANGUAGE_GRAMMAR.fullmatch(v) is None:
                    # `${jndi:...}`, `en'||sleep(5)||'`: the application logs or stores the locale
                    self._hit(ex, NEGOTIATION_INVALID, mask(v, 32), name=low)
            elif kind == _K_FORWARDING:
                forwarding.append((low, v))
            else:
                self._hit(ex, SCANNER_HEADER, name=low)
            if ctl and _CTL_RE.search(v):
                if _CRLF_NUL.search(v):
                    self._hit(ex, HEADER_CRLF, mask(v), name=low)
                else:
                    self._hit(ex, HEADER_CTL, mask(v), name=low)
            if "%" in v:
                lowered = v.lower()
                if "%0d" in lowered or "%0a" in lowered or "%250d" in lowered or "%250a" in lowered:
                    decoded = percent_decode(v)
                    m = _INJECTED_HEADER.search(decoded) or _INJECTED_ANY.search(decoded)
                    if m:
                        self._hit(ex, HEADER_ENCODED_INJECTION, mask(m.group(0)), name=low)
                    elif "\n\n" in decoded or "\n\r\n" in decoded:
                        # an empty line: what follows would be a response body (splitting)
                        self._hit(ex, HEADER_ENCODED_INJECTION, "encoded blank line", name=low)
                if "%00" in v or "%2500" in v:
                    self._hit(ex, HEADER_ENCODED_NUL, mask(v[max(0, v.find("%00") - 8):], 24), name=low)
            if low == "host":
                hosts.append(v)
            elif low == "content-length":
                cls.append(v)
            elif low == "transfer-encoding":
                tes.append(v)
            elif low == "content-type":
                cts.append(v)
            elif low in _MISC_HEADERS:
                hop.append((low, v))
            elif "_" in low and low in _ALIASED:
                self._hit(ex, HEADER_ALIAS, name=low)
            elif low == "proxy":
                # httpoxy (CVE-2016-5385): CGI-style apps turn it into HTTP_PROXY and use the
                # attacker's server as their outbound proxy.
                self._hit(ex, HTTPOXY, mask(v, 32), name=low)
            elif low in _DAV_HEADERS:
                self._hit(ex, DAV_HEADER if self.dav else DAV_HEADER_UNEXPECTED, name=low)
            elif low == "cookie":
                if "$" in v and _COOKIE_V1.search(v):
                    # RFC 2109 cookies: `$Version=1` switches Java/Python cookie parsers to quoting
                    # and comma rules the filter did not apply.
                    self._hit(ex, COOKIE_V1, name=low)
            elif low == "content-range":
                if req.method not in ("PUT", "PATCH", "POST") or not _CONTENT_RANGE.fullmatch(v.strip(" \t")):
                    self._hit(ex, CONTENT_RANGE, mask(v, 32), name=low)
            elif low == "accept-encoding":
                if len(v) > 100:  # CVE-2022-21907 (http.sys); browsers send ~25 characters
                    self._hit(ex, ACCEPT_ENCODING_LONG, f"{len(v)} characters", name=low)
            elif low == "accept":
                if "harset" in v:
                    for cm in _ACCEPT_CHARSET.finditer(v):
                        if cm.group(1).lower() not in _PART_CHARSETS:
                            self._hit(ex, ACCEPT_CHARSET, mask(cm.group(1), 24), name=low)
                            break
            elif low == "x-middleware-subrequest":
                self._hit(ex, MIDDLEWARE_SUBREQUEST, mask(v, 32), name=low)
            elif low in _OVERRIDE_HEADERS or low == "x-original-method":
                method = v.strip().upper()
                if low != "x-original-method" and method not in self.allowed_methods:
                    self._hit(ex, METHOD_OVERRIDE, mask(v, 16), name=low)
                elif req.method in ("GET", "HEAD") and method not in ("GET", "HEAD", "") and not override:
                    # A GET turned into DELETE: past a rule that lets GETs through, or from a link
                    # (CSRF). Clients that need an override (a proxy allowing only GET and POST)
                    # send it on a POST.
                    override = True
                    self._hit(ex, METHOD_OVERRIDE_SAFE, mask(v, 16), name=low)
        # A JWT starts "ey" or "ew": without either, no _JWT_START search (~3k instructions each).
        if ("ey" in joined or "ew" in joined) and (m := _JWT_START.search(joined)):
            # one pass over the joined values (a token never holds the tab between them); the
            # header a match lies in is found from the offsets
            ends: list[int] = []
            end = -1
            for _, v in headers.items:
                end += len(v) + 1
                ends.append(end)
            self._jwts(ex, joined, "", "headers", m.start(), ends)
        target = req.target
        if "%2e" in target or "%2E" in target:  # dots encoded: the application decodes them
            target = percent_decode(target)
        if ("ey" in target or "ew" in target) and (m := _JWT_START.search(target)):
            self._jwts(ex, target, "", "query", m.start())
        if forwarding:
            self._forwarding(ex, forwarding, hosts)
        self._host(ex, hosts)
        has_body = self._framing(ex, cls, tes)
        self._content_type(ex, cts, has_body, bool(tes))
        if hop:
            self._misc(ex, hop)

    def _forwarding(self, ex: Exchange, fields: list[tuple[str, str]], hosts: list[str]) -> None:
        """Headers a proxy sets, sent by the client itself: a loopback client or host (the request
        "is local", so trusted), another host for the links the application builds (password-reset
        poisoning), another path for the router (X-Original-URL past the access rules)."""
        if self.trusted and self.trusted.contains(ex.client.peer_ip):
            return  # set by a configured proxy: facts, not claims
        req = ex.request
        path = req.path
        if "%" in path:
            path = percent_decode(path)
        host = _host_only(hosts[0]) if hosts else ""
        loopback = ""
        for low, v in fields:
            if low in _PATH_OVERRIDE_HEADERS:
                claimed = v.strip().partition("?")[0]
                if "%" in claimed:
                    claimed = percent_decode(claimed)
                if claimed and claimed.rstrip("/") != path.rstrip("/"):
                    self._hit(ex, PATH_OVERRIDE, mask(v, 32), name=low)
                continue
            if low == "forwarded":
                first = v.split(",", 1)[0]
                for pair in first.split(";"):
                    pk, _, pv = pair.strip().partition("=")
                    pk = pk.strip().lower()
                    if pk == "for" and _is_loopback(pv):
                        loopback = low
                    elif pk == "host":
                        self._forwarded_host(ex, low, pv, host, path)
                continue
            if low in _FORWARDED_HOST_HEADERS:
                claimed = v.split(",", 1)[0]
                if _is_loopback(claimed):
                    loopback = low
                else:
                    self._forwarded_host(ex, low, claimed, host, path)
            elif _is_loopback(v.split(",", 1)[0]):
                loopback = low
        if loopback:
            rule = LOOPBACK_ADMIN if _ADMIN_PATH.search(path) else LOOPBACK_CLAIM
            self._hit(ex, rule, "loopback", name=loopback)

    def _forwarded_host(self, ex: Exchange, low: str, claimed: str, host: str, path: str) -> None:
        other = _host_only(claimed)
        if not other or not host or other == host:
            return
        # Alone it only scores: a proxy in front that rewrites Host (and is not listed in
        # server.trusted_proxies) sends it on every request. Where the application mails a link,
        # a foreign host in it is the attack itself.
        rule = FORWARDED_HOST_LINK if _LINK_PATH.search(path) else FORWARDED_HOST
        self._hit(ex, rule, mask(other, 32), name=low)

    def _jwts(self, ex: Exchange, text: str | bytes, name: str, zone: str, start: int = 0,
              ends: list[int] | None = None) -> None:
        """Every JWT-shaped value in a header, the target or the body, its header decoded. With
        `ends` (where each header's value ends in the joined `text`), the header is the name."""
        is_bytes = isinstance(text, bytes)
        rx: Any = _JWT_B if is_bytes else _JWT
        found: set[str] = set()
        for n, m in enumerate(rx.finditer(text, start)):
            if n >= MAX_JWTS:
                break
            pos = m.start()
            if pos and (text[pos - 1] if is_bytes else ord(text[pos - 1])) in _B64URL_CHAR:
                continue  # inside a longer base64 string
            head, body, sig = (g.decode("latin-1") if is_bytes else g for g in m.groups())
            if ends is not None:
                name = ex.request.headers.items[bisect.bisect_left(ends, pos)][0].lower()
            for rule, evidence in _jwt_issues(head, body, sig, name):
                if rule.id not in found:
                    found.add(rule.id)
                    self._hit(ex, rule, evidence, name=name, zone=zone)

    def _host(self, ex: Exchange, hosts: list[str]) -> None:
        version = ex.request.http_version
        if not hosts:
            if version == "1.1":
                self._hit(ex, HOST_MISSING)
            elif version == "1.0":
                self._hit(ex, HOST_MISSING_10)
            return
        if len(hosts) > 1:
            self._hit(ex, HOST_MULTIPLE, f"{len(hosts)} Host headers", name="host")
            return
        host = hosts[0].strip(" \t")
        # What the Host value alone says, memoized: a client repeats its Host on every request, and
        # the loopback test parses an address with `ipaddress` (~30k instructions for `127.0.0.1`).
        known = _HOST_FACTS.get(host)
        if known is None:
            known = _host_facts(host)
            if len(_HOST_FACTS) >= 4096:  # Host values are the client's to choose: keep the memo bounded
                _HOST_FACTS.clear()
            _HOST_FACTS[host] = known
        loopback, problem = known
        if loopback and _admin_path(ex.request.path):
            # `Host: localhost` picks the internal virtual host (or passes a "local requests only"
            # check); also what `curl localhost:8080/admin` sends, so a warning only
            self._hit(ex, HOST_LOOPBACK_ADMIN, mask(host, 24), name="host")
        if problem is HOST_EMPTY:
            self._hit(ex, HOST_EMPTY, name="host")
        elif problem is not None:
            self._hit(ex, problem, mask(host), name="host")

    def _framing(self, ex: Exchange, cls: list[str], tes: list[str]) -> bool:
        """Content-Length / Transfer-Encoding (RFC 9112 §6). Returns whether a body is declared."""
        req = ex.request
        has_body = False
        if cls:
            values = [p.strip(" \t") for v in cls for p in v.split(",")]
            if not all(p.isascii() and p.isdigit() for p in values):
                self._hit(ex, CL_INVALID, mask(", ".join(cls), 32), name="content-length")
            elif len(values) > 1:
                self._hit(ex, CL_MULTIPLE, f"{len(values)} values", name="content-length")
            else:
                has_body = int(values[0]) > 0
        if tes:
            has_body = True
            if cls:
                self._hit(ex, CL_TE, name="transfer-encoding")
            if req.http_version != "1.1":
                self._hit(ex, TE_VERSION, f"HTTP/{mask(req.http_version, 8)}", name="transfer-encoding")
            joined = ",".join(tes)
            if joined.strip(" \t").lower() != "chunked":
                self._hit(ex, TE_INVALID, mask(joined, 32), name="transfer-encoding")
        if req.method in ("GET", "HEAD"):
            if tes:
                self._hit(ex, GET_CHUNKED, name="transfer-encoding")
            elif has_body:
                self._hit(ex, GET_BODY, name="content-length")
        return has_body

    def _content_type(self, ex: Exchange, cts: list[str], has_body: bool, chunked: bool) -> None:
        if not cts:
            if has_body or (ex.request.body and not chunked):
                self._hit(ex, BODY_NO_CT, zone="body")
            return
        if len(cts) > 1:
            self._hit(ex, CT_MULTIPLE, f"{len(cts)} Content-Type headers", name="content-type")
        mt = parse_media_type(cts[0])
        if not mt.valid:
            t, _, sub = mt.type.partition("/")
            # only with a body: a stray or empty Content-Type on a GET parses nothing
            bad_type = (has_body or chunked) and not (is_token(t) and is_token(sub))
            self._hit(ex, CT_TYPE_INVALID if bad_type else CT_INVALID, mask(cts[0]), name="content-type")
        if self.allowed_types and mt.type not in self.allowed_types and (has_body or chunked):
            self._hit(ex, CT_NOT_ALLOWED, mask(mt.type, 32), name="content-type")
        charset = mt.params.get("charset")
        if mt.charsets > 1 or (charset is not None and _EVASIVE_CHARSET.search(charset)):
            self._hit(ex, CT_CHARSET, mask(charset or ""), name="content-type")
        elif charset is not None and charset.lower() not in self.allowed_charsets:
            if known_codec(charset):
                self._hit(ex, CT_CHARSET_UNUSUAL, mask(charset), name="content-type")
            else:
                self._hit(ex, CT_CHARSET_UNKNOWN, mask(charset), name="content-type")
        for pname, pval in mt.params.items():
            # `application/x-www-form-urlencoded;boundary="application/json"`: parsers that look for
            # "json" or "xml" anywhere in the header pick another body parser than the filter did
            # (XXE and filter bypass). multipart/related's `type` parameter is the one legal use.
            if pname not in ("type", "start-info") and _MEDIA_TYPE_VALUE.fullmatch(pval.strip()):
                self._hit(ex, CT_CONFUSION, mask(pval, 32), name="content-type")
                break
            if pname != "charset" and "charset" in pval.lower():
                # `boundary="charset=utf-7"`: a charset a sloppy parser finds by substring
                self._hit(ex, CT_CHARSET, mask(pval, 32), name="content-type")
                break
        if mt.type == "multipart/form-data" or mt.type.startswith("multipart/"):
            boundary = mt.params.get("boundary", "")
            # two `boundary` parameters: parsers take the first or the last, and see different parts
            if not boundary or _BCHARS.fullmatch(boundary) is None or len(_BOUNDARY_PARAM.findall(cts[0])) > 1:
                self._hit(ex, MULTIPART_BOUNDARY, mask(boundary), name="content-type")
        if ex.request.method in ("GET", "HEAD") and has_body and mt.type in _FORM_TYPES:
            self._hit(ex, GET_FORM, mt.type, name="content-type")

    def _misc(self, ex: Exchange, fields: list[tuple[str, str]]) -> None:
        """Connection, Upgrade, Expect and range fields, in the order received."""

        def get_all(name: str) -> list[str]:
            return [v for n, v in fields if n == name]

        tokens: list[str] = []
        for conn in get_all("connection"):
            tokens.extend(t.strip(" \t").lower() for t in conn.split(",") if t.strip(" \t"))
        if tokens:
            stripped = [t for t in tokens if t in _NOT_HOP]
            if stripped:
                self._hit(ex, CONNECTION_STRIP, stripped[0], name="connection")
            if "close" in tokens and "keep-alive" in tokens:
                self._hit(ex, CONNECTION_CONFLICT, mask(",".join(tokens), 32), name="connection")
            elif len(set(tokens)) < len(tokens):
                self._hit(ex, CONNECTION_REPEATED, mask(",".join(tokens), 32), name="connection")
        for up in get_all("upgrade"):
            if "h2c" in up.lower():
                self._hit(ex, UPGRADE_H2C, name="upgrade")
                break
        expect = get_all("expect")
        if expect and expect[0].strip(" \t").lower() != "100-continue":
            self._hit(ex, EXPECT_INVALID, mask(expect[0], 24), name="expect")
        request_range = get_all("request-range")
        if request_range:
            self._hit(ex, REQUEST_RANGE, mask(request_range[0], 24), name="request-range")
        for name in ("range", "request-range"):
            for value in get_all(name):
                # Apache Killer (CVE-2011-3192): hundreds of overlapping ranges exhaust memory.
                if value.count(",") + 1 > self.max_ranges:
                    self._hit(ex, RANGE_ABUSE, f"{value.count(',') + 1} ranges", name=name)

    # --- body --------------------------------------------------------------------------------

    def request_body(self, ex: Exchange) -> None:
        req = ex.request
        body = req.body
        if not body or not self.check_bodies:
            return
        if req.body_truncated and self.refuse_uninspected and _text_body(req.headers.get("content-type")):
            self._hit(ex, BODY_UNINSPECTED, f"more than {len(body)} bytes", zone="body")
            return
        coding = req.headers.get("content-encoding")
        if coding is not None and coding.strip(" \t").lower() not in ("", "identity"):
            return  # a compressed body (gzip JSON from SDKs and exporters): its bytes say nothing
        if (b"TTP/" in body or b"ttp/" in body) and (_REQUEST_LINE.search(body) or _REQUEST_LINE_GLUED.search(body)):
            self._hit(ex, BODY_SMUGGLED, zone="body")
        if m := _JWT_START_B.search(body):  # a token in a JSON field or a form (`refresh_token`)
            self._jwts(ex, body, "body", "body", m.start())
        cts = req.headers.get_all("content-type")
        if not cts:
            return
        mt = parse_media_type(cts[0])
        mtype = mt.type
        if is_json_type(mtype):
            charset = mt.params.get("charset", "utf-8").lower()
            if req.body_truncated:
                if first_byte(body) not in (b"{", b"[", b'"', b"-", b"t", b"f", b"n") and not first_byte(
                    body
                ).isdigit():
                    self._hit(ex, BODY_JSON, "not a JSON value", zone="body")
            else:
                doc = parse_json(body, charset)
                if doc is NOT_JSON:
                    self._hit(ex, BODY_JSON, "unparsable", zone="body")
                else:
                    if (b"\\" in body or b"%" in body) and _JSON_SUSPECT.search(body):
                        self._json_values(ex, doc)
                    if b"mail" in body and body.count(b"@") > 1:
                        self._identity_json(ex, doc)
        elif is_xml_type(mtype):
            if first_byte(body) != b"<" and not body.startswith((b"\xff\xfe", b"\xfe\xff")):
                self._hit(ex, BODY_XML, "does not start with <", zone="body")
        elif mtype == "application/x-www-form-urlencoded":
            if first_byte(body) in (b"{", b"[", b"<"):
                self._hit(ex, BODY_FORM, "JSON or XML body", zone="body")
            else:
                text = body.decode("latin-1")
                if "%" in text:
                    self._encoding(ex, text, "body")
                self._args(ex, text, "body")
                if "mail" in text and ("@" in text or "%40" in text):
                    self._identity_pairs(ex, _raw_pairs(text), "body")
        elif mtype.startswith("multipart/"):
            boundary = mt.params.get("boundary", "")
            if boundary and b"--" + boundary.encode("latin-1", "replace") not in body[: 4096 + len(boundary)]:
                self._hit(ex, BODY_MULTIPART, "boundary not found", zone="body")
            elif boundary:
                self._multipart(ex, body, boundary)

    def _identity_json(self, ex: Exchange, doc: Any) -> None:
        """`{"user": {"email": ["victim@x", "attacker@y"]}}`: a singular e-mail field as a list."""
        stack: list[Any] = [doc]
        budget = 10_000
        while stack and budget > 0:
            budget -= 1
            node = stack.pop()
            if isinstance(node, dict):
                for k, v in node.items():
                    if isinstance(v, list):
                        if len(v) > 1 and isinstance(k, str) and _EMAIL_FIELD.search(k):
                            addresses = {x.strip().lower() for x in v if isinstance(x, str) and "@" in x}
                            if len(addresses) > 1:
                                self._identity_hit(ex, k, len(addresses), "json")
                                return
                        stack.append(v)
                    elif isinstance(v, dict):
                        stack.append(v)
            elif isinstance(node, list):
                stack.extend(x for x in node if isinstance(x, dict | list))

    def _multipart(self, ex: Exchange, body: bytes, boundary: str) -> None:
        """Part headers: field and file names a parser can split differently (quotes, `;`, `=`,
        backslashes, repeated parameters), part charsets and transfer encodings."""
        found: set[str] = set()

        def hit(rule: Rule, evidence: str, name: str = "") -> None:
            if rule.id not in found:
                found.add(rule.id)
                self._hit(ex, rule, mask(evidence, 32), name=name[:64], zone="body")

        parts = body.split(b"--" + boundary.encode("latin-1", "replace"))
        for part in parts[1:200]:
            if part.startswith(b"--"):
                break
            head, sep, content = part.partition(b"\r\n\r\n")
            if not sep:
                head, sep, content = part.partition(b"\n\n")
            field = ""
            dispositions = 0
            for line in head.decode("latin-1").splitlines():
                hname, _, hval = line.partition(":")
                hname = hname.strip().lower()
                if hname == "content-disposition":
                    dispositions += 1
                    if dispositions > 1:  # which one names the part depends on the parser
                        hit(MULTIPART_PARAM, "repeated Content-Disposition", field)
                    field = self._disposition(hval, hit)
                elif hname == "content-type" and "charset" in hval.lower():
                    cs = parse_media_type(hval.strip()).params.get("charset", "").strip().lower()
                    if cs and cs not in _PART_CHARSETS:
                        hit(MULTIPART_CHARSET, cs, field)
                elif hname == "content-transfer-encoding" and hval.strip().lower() in ("base64", "quoted-printable"):
                    # an encoding the application's parser may undo after the filter looked (RFC 7578
                    # §4.7 deprecates it); 7bit/8bit/binary are identities that old HTTP libraries add
                    hit(MULTIPART_CTE, hval.strip(), field)
            if field == "_charset_":
                cs = content.strip().decode("latin-1").lower()
                if cs not in _PART_CHARSETS:
                    hit(MULTIPART_CHARSET, cs, field)

    @staticmethod
    def _disposition(value: str, hit: Any) -> str:
        """Check one Content-Disposition; returns the field name."""
        field = ""
        keys: list[str] = []
        for pm in _DISPOSITION_PARAM.finditer(value):
            key, raw = pm.group(1).lower(), pm.group(2).strip()
            keys.append(key)
            quoted = raw.startswith('"')
            val = raw[1:-1] if quoted and len(raw) > 1 and raw.endswith('"') else raw.lstrip('"')
            if key == "name":
                field = val
            if key not in ("name", "filename"):
                continue
            tail = value[pm.end():].lstrip(" \t")
            if quoted and tail and not tail.startswith(";"):
                # text after the closing quote (`filename=""><img ...>.png"`): one parser ends the
                # name at the quote, another reads on to the next `;` or the last quote
                hit(MULTIPART_PARAM, raw + tail, field)
            windows_path = key == "filename" and re.match(r"(?:[A-Za-z]:)?\\", val) is not None
            # `;` is fine only as the end of an HTML entity (`&amp;`, `&#228;`: some clients encode
            # non-ASCII names that way)
            if (("\\" in val and not windows_path) or "=" in val or '"' in val
                    or (";" in val and ";" in _ENTITY.sub("", val))):
                hit(MULTIPART_PARAM, val, field)
        if keys.count("name") > 1 or keys.count("filename") > 1:
            hit(MULTIPART_PARAM, "repeated parameter", field)
        return field


def make(config: BastionConfig, ctx: BuildContext) -> ProtocolDetector:
    return ProtocolDetector(config.protocol, config.server.trusted_proxies,
                            config.limits.uninspected_body == "refuse")


def _text_body(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is text the detectors read (JSON, form, XML, GraphQL, text/*,
    or no type at all: read as raw text), rather than files (multipart) or binary data."""
    if not content_type:
        return True
    mtype = content_type.partition(";")[0].strip().lower()
    return (is_json_type(mtype) or is_xml_type(mtype) or mtype.startswith("text/")
            or mtype in ("application/x-www-form-urlencoded", "application/graphql", "application/javascript"))


def _raw_pairs(text: str) -> list[tuple[str, str]]:
    """(name decoded once, value as sent) of a query string or an urlencoded body."""
    out: list[tuple[str, str]] = []
    for part in text.split("&"):
        if part:
            k, _, v = part.partition("=")
            out.append((percent_decode(k.replace("+", " "), 1) if ("%" in k or "+" in k) else k, v))
    return out


def _host_only(value: str) -> str:
    """The host name of a Host-like value, lower-cased, without port or brackets."""
    v = value.strip().strip('"').lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


_HOST_FACTS: dict[str, tuple[bool, Rule | None]] = {}


def _host_facts(host: str) -> tuple[bool, Rule | None]:
    """(whether a Host value names the loopback, the rule its syntax breaks: HOST_EMPTY,
    HOST_INVALID or None), from the value alone (ProtocolDetector._host memoizes it)."""
    loopback = host[:1] in _LOOPBACK_FIRST and _is_loopback(host)
    if not host:
        return loopback, HOST_EMPTY
    if _HOST_RE.fullmatch(host) is None:
        return loopback, HOST_INVALID
    port = host.rsplit("]", 1)[-1].partition(":")[2]
    if port and int(port) > 65535:
        return loopback, HOST_INVALID
    return loopback, None


_ADMIN_PATHS: dict[str, bool] = {}


def _admin_path(raw_path: str) -> bool:
    """Whether a raw path, percent-decoded, is an administrator's (_ADMIN_PATH). Memoized: a loopback
    client (a health check, a sidecar) calls the same few paths, and the decode and search cost
    ~8k instructions."""
    known = _ADMIN_PATHS.get(raw_path)
    if known is None:
        known = _ADMIN_PATH.search(percent_decode(raw_path)) is not None
        if len(_ADMIN_PATHS) >= 4096:  # paths are the client's to choose: keep the memo bounded
            _ADMIN_PATHS.clear()
        _ADMIN_PATHS[raw_path] = known
    return known


def _is_loopback(value: str) -> bool:
    v = value.strip().strip('"').strip()
    if not v:
        return False
    if _LOOPBACK_NAME.fullmatch(v) or _LOOPBACK_NAME.fullmatch(_host_only(v)):
        return True
    addr = parse_ip(v)
    if addr is not None:
        return addr.is_loopback or addr.is_unspecified
    return _LOOPBACK_IP.fullmatch(_host_only(v)) is not None


def _b64json(part: str) -> Any:
    part = part.rstrip("=")
    try:
        return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None


@dataclass(frozen=True, slots=True)
class _JwsHeader:
    """What a JWS/JWE header says, computed once per distinct header."""

    issues: tuple[tuple[Rule, str], ...]  # alg none, kid injection: nothing else needed
    ecdsa: bool  # ES* (the signature is checked for zeros)
    jwe: bool  # the third part is an IV, not a signature
    key_urls: tuple[tuple[str, str], ...]  # (jku|x5u, url): judged against the payload's `iss`
    jwk: bool  # carries a key and is no DPoP proof


# JWS headers recur (one issuer, a few keys): what each says is kept, bounded.
_JWT_HEADERS: dict[str, _JwsHeader | None] = {}


def _jws_header(head: str) -> _JwsHeader | None:
    if head in _JWT_HEADERS:
        return _JWT_HEADERS[head]
    doc = _b64json(head)
    info: _JwsHeader | None = None
    if isinstance(doc, dict) and "alg" in doc:  # without `alg` it is base64 JSON, not a JWT
        issues: list[tuple[Rule, str]] = []
        alg = doc.get("alg")
        alg_s = alg.strip().lower() if isinstance(alg, str) else ""
        if alg is None or alg_s in ("", "none"):
            # an unsigned token only works against a verifier that honours `alg` (CVE-2015-9235 and
            # its kin); no real client sends one
            issues.append((JWT_UNSIGNED, "alg none"))
        kid = doc.get("kid")
        if isinstance(kid, str) and _KID_BAD.search(kid):
            issues.append((JWT_KID, mask(kid, 32)))
        elif isinstance(kid, dict | list):  # `{"$ne": null}`: an operator for a document store's key lookup
            issues.append((JWT_KID, "kid is an object"))
        urls = tuple((k, doc[k]) for k in ("jku", "x5u") if isinstance(doc.get(k), str))
        # DPoP proofs (RFC 9449) carry the client's public key by design; a bearer token that
        # brings its own key is verified with the attacker's key (CVE-2018-0114)
        jwk = "jwk" in doc and str(doc.get("typ", "")).lower() != "dpop+jwt"
        info = _JwsHeader(tuple(issues), alg_s.startswith("es"), "enc" in doc, urls, jwk)
    if len(_JWT_HEADERS) > 1024:
        _JWT_HEADERS.clear()
    _JWT_HEADERS[head] = info
    return info


def _jwt_issues(head: str, payload: str, sig: str, name: str) -> list[tuple[Rule, str]]:
    """What is wrong with a JWT: no signature, an injectable kid, a key to fetch from elsewhere or
    carried inline."""
    info = _jws_header(head)
    if info is None:
        return []
    out = list(info.issues)
    if not info.jwe and not (out and out[0][0] is JWT_UNSIGNED):
        if not sig:
            out.append((JWT_NO_SIGNATURE, "empty signature"))
        elif info.ecdsa and len(sig) <= 200:
            raw = _b64bytes(sig)
            if raw and (raw == _ZERO_ECDSA_DER or not raw.strip(b"\x00")):
                out.append((JWT_NO_SIGNATURE, "zero ECDSA signature"))
    for key, url in info.key_urls:
        claims = _b64json(payload) if payload else None
        iss = claims.get("iss") if isinstance(claims, dict) else None
        if _foreign_key_url(url, iss if isinstance(iss, str) else ""):
            out.append((JWT_KEY_URL, f"{key} {mask(_host_only(urlsplit_host(url)), 32)}"))
            break
    if info.jwk and name != "dpop":
        out.append((JWT_EMBEDDED_KEY, "jwk"))
    return out


def _b64bytes(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:
        return b""


def urlsplit_host(url: str) -> str:
    try:
        return urlsplit(url.strip()).netloc.rsplit("@", 1)[-1]
    except ValueError:
        return ""


def _site(host: str) -> str:
    """The registrable part of a host name, approximately (`a.b.example.co.uk` -> `example.co.uk`)."""
    labels = host.rstrip(".").split(".")
    n = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3 else 2
    return ".".join(labels[-n:])


def _foreign_key_url(url: str, iss: str) -> bool:
    """Whether a jku/x5u makes the verifier fetch a key somewhere the token's issuer does not live:
    not https, credentials or an address in the URL, or a host of another site than `iss`."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return True
    if parts.scheme.lower() != "https" or "@" in parts.netloc or not host:
        return True
    if parse_ip(host) is not None or _is_loopback(host) or host.endswith((".internal", ".local", ".localhost")):
        return True
    try:
        iss_host = (urlsplit(iss.strip()).hostname or "").lower() if "://" in iss else ""
    except ValueError:
        iss_host = ""
    return not iss_host or _site(iss_host) != _site(host)
