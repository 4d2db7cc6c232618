# ruff: noqa: RUF001  (the corpus is made of real-world text: typographic quotes and dashes on purpose)
"""Generate the benign corpus: realistic API traffic that a gateway must let through.

Usage: .venv/bin/python bench/make_benign.py [--count 2400] [--seed 20261123] [--out tests/data/benign_requests.jsonl]

Deterministic for a given seed. Each line is one request:
    {"id": "b00001", "kind": "json-comment", "method": "POST", "target": "/api/...",
     "headers": [["Host", "..."], ...], "body": "...", "content_type": "application/json"}

What it holds, on purpose: names with apostrophes (O'Brien, D'Angelo), prose with SQL and HTML words
("select", "drop", "union", "script", "or", "--"), markdown, code snippets (Python, JS, shell, SQL in
backticks) in comment fields, URLs in parameters, base64 images, emails, search queries, unicode text in
many scripts, JWTs, GraphQL, urlencoded forms, multipart uploads, XML/SOAP, JSON:API-style filters, and
the headers and cookies of browsers, mobile apps, curl and SDKs. Nothing here is an attack.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "benign_requests.jsonl"

FIRST = ["Liam", "Olivia", "Noah", "Emma", "Seán", "Aoife", "José", "María", "Zoë", "Chloé", "Mohammed", "Fatima",
         "Hiroshi", "Yuki", "Wei", "Li", "Priya", "Arjun", "Olga", "Dmitri", "Ngozi", "Kwame", "Björn", "Åsa",
         "François", "Anaïs", "Renée", "Jean-Luc", "Mary-Kate", "D'Andre", "Shaquille", "Tōru", "Şebnem", "Łukasz"]
LAST = ["O'Brien", "O'Neil", "D'Angelo", "McDonald", "Smith", "García", "Müller", "Nguyễn", "Kowalski", "O'Connor",
        "Al-Rashid", "van der Berg", "de la Cruz", "Da Silva", "Ó Súilleabháin", "Żółkiewski", "Papadopoulos",
        "Johnson-Smith", "L'Estrange", "St. John", "Union", "Select", "Drop", "Table", "Null", "Or", "And"]
CITIES = ["Dublin", "São Paulo", "Zürich", "Kraków", "Québec", "New York", "Köln", "Reykjavík", "Tōkyō", "Ålesund",
          "Coeur d'Alene", "Land O' Lakes", "Martha's Vineyard", "St. John's", "L'Aquila", "Drop Bear Creek"]
STREETS = ["O'Connell St.", "Main Street", "Rue de l'Église", "Union Square", "Select Ave", "Table Mountain Rd",
           "1st & Pine", "King's Road", "Via dell'Orso", "Calle 5 #12-34", "Order Lane"]
PRODUCTS = ["Men's 5\" running shorts", "Kids' table & chair set", "Drop-leaf table", "Select Comfort mattress",
            "Union Jack mug", "2 or 4 metal buttons", "1/2\" drill bit", "Rock 'n' roll vinyl", "T-shirt (XL) -- blue",
            "3 by 5 recipe cards", "Script-font stickers", "<3 love pillow", "Café au lait bowl", "Ben & Jerry's",
            "Where's Waldo? book", "OR-tools handbook", "SQL for Dummies", "Alert buzzer 12V", "Sleep mask (2-pack)"]

PROSE = [
    "Please select your drop-off location and we'll union the two orders.",
    "I'd like to drop the second item from my order -- can you update it?",
    "The union members will select a new rep; drop by the office or call.",
    "Let's meet at 1 or 2, whichever works; O'Brien's place is fine.",
    "Can you delete my old address and insert the new one? It's 12 O'Connell St.",
    "My script for the school play is attached. The alert came too late.",
    "Order by Friday or the sale ends. Group orders get 10% off!",
    "Where is George? He said he'd be here between 5 and 6.",
    "I can't log in -- it says 'invalid user or password' every time.",
    "Is 1=1 always true? My kid asked and I had no idea, lol.",
    "We sleep at 10 and wake at 6; the benchmark results look good though.",
    "Drop table tennis from Tuesday's schedule, select badminton instead.",
    "Honestly the union of these two sets is empty, so -- nothing to do.",
    "Hi team, can someone execute the plan we discussed? Thanks!",
    "Fixed: 'Save' button didn't work when the name had an apostrophe (O'Hara).",
    "I <3 this app!!! 5 stars, would recommend to anyone who likes order.",
    "If a < b and b > c, then what? Asking for my homework, grade 7.",
    "Having trouble with the 'select all' checkbox; it selects only 20 rows.",
    "Rock 'n' roll night at the union hall -- doors at 7, tickets at the door.",
    "The doctor said: sleep 8 hours, drink water, and don't skip breakfast.",
    "She said \"it's fine\" but I don't think so; we'll see on Monday.",
    "Update: the shipment from Coeur d'Alene arrived with one box damaged.",
    "Where can I find the table of contents? The link in the email is broken.",
    "Please create an account for my colleague, her email is below.",
    "Our 'Grand Union' store at 5th & Main is closing; select items 50% off.",
    "The function returns null if the user isn't found -- expected?",
    "Is it 'and/or' or just 'or'? Grammar question for the newsletter.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit; sed do eiusmod.",
    "Cancel or refund? Either is fine. Order #4471-B, placed 2024-03-02.",
    "We're 100% sure -- the drop-down menu shows 'Select…' twice on Safari.",
    "Sleep(8) isn't a thing in real life, you need actual rest :)",
    "How do I join the group? The 'Join' button is greyed out on iOS 17.",
    "It’s “perfect” – I’d order again; John’s daughter loved it.",
    "The rug is 6' x 9' (not 5' x 8') -- please exchange it or refund.",
    "Put the snippet in a <script> tag? Our CMS strips <iframe> and <object> embeds.",
    "Tried <b>bold</b> and <i>italic</i>; the preview shows &lt;b&gt; literally.",
    "We're at 1 < x < 10 for the range, and y >= 3 -- is that OK?",
    "My username is admin -- I forgot the password (it had a ' and a # in it).",
    "Select All > Copy > Paste doesn't work in the editor on Firefox.",
    "Ordered the 'Union Jack' cushion or the 'Stars & Stripes' one, can't remember which.",
]
UNICODE = [
    "请选择您的送货地址，谢谢！", "ご注文ありがとうございます。明日発送します。", "배송지를 선택해 주세요.",
    "Пожалуйста, выберите адрес доставки.", "يرجى اختيار عنوان التسليم الخاص بك.", "אנא בחר את כתובת המשלוח שלך.",
    "कृपया अपना डिलीवरी पता चुनें।", "กรุณาเลือกที่อยู่จัดส่งของคุณ", "Παρακαλώ επιλέξτε διεύθυνση παράδοσης.",
    "Lütfen teslimat adresinizi seçin.", "Vui lòng chọn địa chỉ giao hàng.", "Proszę wybrać adres dostawy — dziękuję!",
    "Grüße aus Köln! Das Paket kam schnell an. 👍", "¡Hola! ¿Dónde está mi pedido? 😅", "Merci beaucoup 🙏🎉",
    "ቅድሚያ የሚሰጠውን ይምረጡ", "Ὦ ξεῖν', ἀγγέλλειν", "🚀🔥💯 best release ever", "तुम्हारा नाम क्या है?",
]
MARKDOWN = [
    "# Release notes\n\n* Fixed the **drop** shadow on cards\n* `select` element now keyboard-accessible\n\n> Thanks to O'Neil!",
    "## Steps to reproduce\n1. Open settings\n2. Click *Union view*\n3. See error\n\n```\nTypeError: x is undefined\n```",
    "| col | value |\n|-----|-------|\n| a   | 1 < 2 |\n| b   | 3 > 2 |",
    "See [the docs](https://docs.example.com/guide#select-a-plan) and ![logo](https://cdn.example.com/logo.png).",
    "**Bold**, _italic_, ~~strike~~ and a footnote[^1].\n\n[^1]: It's a note -- with dashes.",
    "- [x] drop old tables in staging\n- [ ] update the README\n- [ ] select a reviewer",
    "> \"Or\" and \"and\" are conjunctions.\n\nSo are *but*, *nor*, *for*, *so*, and *yet*.",
]
CODE = [
    "```python\nfor row in rows:\n    if row['name'] == \"O'Brien\":\n        print(row)\n```",
    "```js\nconst total = items.reduce((a, b) => a + b.price, 0);\nconsole.log(`total: ${total}`);\n```",
    "```bash\ncurl -s https://api.example.com/v1/items?limit=10 | jq '.data[] | .id'\n```",
    "Try `git log --oneline -- src/` to see the history of that folder.",
    "In Go: `if err != nil { return fmt.Errorf(\"load: %w\", err) }`",
    "The query `SELECT id, name FROM users WHERE created_at > ?` takes 3 s on prod; any index ideas?",
    "Use `document.querySelector('#cart')` instead of jQuery there.",
    "```css\n.btn:hover { color: #fff; background: linear-gradient(#333, #000); }\n```",
    "```java\nMap<String, List<Integer>> m = new HashMap<>();\n```",
    "`x = a if a > b else b` -- the ternary in Python.",
    "```rust\nfn main() { let v: Vec<i32> = (1..=3).collect(); println!(\"{:?}\", v); }\n```",
    "Run `npm install --save-dev @types/node` and restart the TS server.",
    "```yaml\nservices:\n  db:\n    image: postgres:16\n    ports: [\"5432:5432\"]\n```",
]
SEARCHES = ["select comfort mattress", "drop earrings", "union jack flag", "o'reilly books", "rock 'n' roll",
            "ben & jerry's", "c++ tutorial", "c# vs java", "50% off", "\"exact phrase\" search", "where is my order",
            "1 or 2 bedroom", "table and chairs", "sleep mask", "script fonts", "alert bracelet", "shoes -running",
            "size:10 color:red", "price<100", "a+b", "café", "东京 酒店", "москва", "résumé template", "node.js",
            "how to order by date in excel", "insert coin", "group by size", "having fun", "2024-01-01..2024-02-01",
            "jack o'lantern", "ios 17.2", "#hashtag", "@mention", "email@example.com", "10% - 20%", "what's new?",
            "title:(drop OR select) AND -union", "is:open is:pr author:o'neil", "price:[10 TO 20]",
            "created>=2024-01-01", "name eq 'O''Brien' and age gt 30", "status:open OR status:closed",
            "\"rock 'n' roll\" -live", "size 10 or 11", "men's shoes", "don’t stop believin’", "c'est la vie",
            "1/2\" copper pipe", "<3 necklace", "a&b", "-- dashes --", "5' 11\""]
EMAIL_DOMAINS = ["example.com", "mail.example.org", "gmail.com", "outlook.com", "example.co.uk", "uni.example.edu"]
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
]
CLIENTS = [
    "okhttp/4.12.0", "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
    "ShopApp/5.12.1 (iPhone; iOS 17.2; Scale/3.00)", "ShopApp/5.12.1 CFNetwork/1490.0.4 Darwin/23.2.0",
    "curl/8.4.0", "python-requests/2.31.0", "axios/1.6.2", "Go-http-client/2.0", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "aws-sdk-js/3.478.0 ua/2.0 os/linux#5.15 lang/js md/nodejs#20.10.0", "Stripe/v1 RubyBindings/10.3.0",
    "PostmanRuntime/7.36.0", "HTTPie/3.2.2", "Apache-HttpClient/4.5.14 (Java/17.0.9)", "Java/17.0.9",
    "Faraday v2.7.12", "GuzzleHttp/7", "Dart/3.2 (dart:io)", "RestSharp/110.2.0.0", "grpc-node-js/1.9.13",
]
LANGS = ["en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9,en;q=0.7", "fr-FR,fr;q=0.9", "ja-JP,ja;q=0.9,en;q=0.6",
         "zh-CN,zh;q=0.9", "pt-BR,pt;q=0.9,en-US;q=0.8", "es-ES,es;q=0.9", "ru-RU,ru;q=0.9,en;q=0.8"]
HOSTS = ["api.example.com", "shop.example.com", "app.example.io", "example.com"]


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    # --- small values ------------------------------------------------------------------------
    def pick(self, seq):  # type: ignore[no-untyped-def]
        return seq[self.r.randrange(len(seq))]

    def hexs(self, n: int) -> str:
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def token(self, n: int = 32) -> str:
        return "".join(self.r.choice(string.ascii_letters + string.digits) for _ in range(n))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def name(self) -> tuple[str, str]:
        return self.pick(FIRST), self.pick(LAST)

    def email(self, first: str, last: str) -> str:
        local = (first + "." + last).lower().replace(" ", "").replace("'", self.pick(["'", "", "-"]))
        local = local.encode("ascii", "ignore").decode() or "user"
        if self.r.random() < 0.2:
            local += "+" + self.pick(["news", "shop", "work", "2024"])
        return f"{local}@{self.pick(EMAIL_DOMAINS)}"

    def b64url(self, data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def jwt(self) -> str:
        header = self.b64url(json.dumps({"alg": self.pick(["RS256", "HS256", "ES256"]), "typ": "JWT",
                                         "kid": self.hexs(16)}).encode())
        payload = self.b64url(json.dumps({
            "sub": self.uuid(), "iss": "https://auth.example.com/", "aud": "api", "iat": 1700000000 + self.r.randrange(10**6),
            "exp": 1700003600 + self.r.randrange(10**6), "scope": "read:orders write:orders", "name": " ".join(self.name()),
        }, ensure_ascii=False).encode())
        return f"{header}.{payload}.{self.b64url(self.r.randbytes(64))}"

    def text(self) -> str:
        roll = self.r.random()
        if roll < 0.45:
            return " ".join(self.pick(PROSE) for _ in range(self.r.randint(1, 3)))
        if roll < 0.6:
            return self.pick(UNICODE)
        if roll < 0.78:
            return self.pick(MARKDOWN)
        return self.pick(PROSE) + "\n\n" + self.pick(CODE)

    def png_b64(self) -> str:
        # a real PNG header followed by random bytes: realistic base64 noise of a few KB
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + self.r.randbytes(self.r.randint(300, 1800))
        return base64.b64encode(data).decode()

    # --- headers -----------------------------------------------------------------------------
    def headers(self, host: str, kind: str, content_type: str | None = None) -> list[list[str]]:
        h: list[list[str]] = [["Host", host]]
        if kind == "browser":
            ua = self.pick(BROWSERS)
            h += [["User-Agent", ua], ["Accept", self.pick(["application/json, text/plain, */*", "*/*",
                                                              "application/json"])],
                  ["Accept-Language", self.pick(LANGS)], ["Accept-Encoding", "gzip, deflate, br"],
                  ["Referer", f"https://{host.replace('api.', 'www.')}/{self.pick(['', 'cart', 'account/settings', 'search?q=shoes'])}"],
                  ["Origin", f"https://{host.replace('api.', 'www.')}"]]
            if "Chrome" in ua:
                h += [["sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'],
                      ["sec-ch-ua-mobile", "?0"], ["sec-ch-ua-platform", '"Windows"'],
                      ["Sec-Fetch-Site", "same-site"], ["Sec-Fetch-Mode", "cors"], ["Sec-Fetch-Dest", "empty"]]
            h.append(["Cookie", self.cookies()])
            if self.r.random() < 0.5:
                h.append(["X-CSRF-Token", self.token(43)])
        else:
            h += [["User-Agent", self.pick(CLIENTS)], ["Accept", self.pick(["application/json", "*/*"])]]
            if self.r.random() < 0.3:
                h.append(["Accept-Encoding", "gzip"])
        roll = self.r.random()
        if roll < 0.45:
            h.append(["Authorization", "Bearer " + self.jwt()])
        elif roll < 0.6:
            h.append(["X-API-Key", "sk_live_" + self.token(24)])
        elif roll < 0.65:
            h.append(["Authorization", "Basic " + base64.b64encode(b"client:" + self.token(16).encode()).decode()])
        if self.r.random() < 0.3:
            h.append(["X-Request-ID", self.uuid()])
        if self.r.random() < 0.15:
            h.append(["X-Forwarded-For", f"203.0.113.{self.r.randint(1, 254)}"])
        if self.r.random() < 0.1:
            h.append(["traceparent", f"00-{self.hexs(32)}-{self.hexs(16)}-01"])
        if self.r.random() < 0.1:
            h.append(["If-None-Match", f'W/"{self.hexs(20)}"'])
        if content_type:
            h.append(["Content-Type", content_type])
        return h

    def cookies(self) -> str:
        parts = [f"_ga=GA1.2.{self.r.randint(10**8, 10**9)}.{1700000000 + self.r.randrange(10**6)}",
                 f"session={self.token(40)}"]
        if self.r.random() < 0.5:
            parts.append(f"_gid=GA1.2.{self.r.randint(10**8, 10**9)}.{1700000000 + self.r.randrange(10**6)}")
        if self.r.random() < 0.4:
            parts.append(f"csrftoken={self.token(32)}")
        if self.r.random() < 0.3:
            prefs = json.dumps({"theme": self.pick(["dark", "light"]), "lang": "en", "cur": "EUR"}, separators=(",", ":"))
            parts.append(f"prefs={quote(prefs)}")
        if self.r.random() < 0.2:
            parts.append("cookie_consent=necessary%2Canalytics")
        if self.r.random() < 0.2:
            parts.append(f"_fbp=fb.1.{1700000000000 + self.r.randrange(10**9)}.{self.r.randint(10**8, 10**9)}")
        if self.r.random() < 0.15:
            parts.append(f"last_search={quote(self.pick(SEARCHES))}")
        return "; ".join(parts)

    def client(self) -> str:
        return "browser" if self.r.random() < 0.55 else "app"

    # --- requests ----------------------------------------------------------------------------
    def req(self, kind: str, method: str, target: str, body: str = "", content_type: str = "") -> dict[str, object]:
        host = self.pick(HOSTS)
        return {"kind": kind, "method": method, "target": target,
                "headers": self.headers(host, self.client(), content_type or None), "body": body,
                "content_type": content_type}

    def json_req(self, kind: str, method: str, target: str, obj: object) -> dict[str, object]:
        body = json.dumps(obj, ensure_ascii=self.r.random() < 0.3)
        return self.req(kind, method, target, body, self.pick(["application/json", "application/json; charset=utf-8"]))

    def profile(self) -> dict[str, object]:
        f, last = self.name()
        obj = {"first_name": f, "last_name": last, "display_name": f"{f} {last}", "email": self.email(f, last),
               "phone": self.pick(["+1 (555) 010-", "+44 20 7946 0", "+353 1 555 ", "(03) 9555 "]) + str(self.r.randint(100, 9999)),
               "address": {"line1": f"{self.r.randint(1, 999)} {self.pick(STREETS)}", "city": self.pick(CITIES),
                           "postcode": self.pick(["D02 X285", "10115", "SW1A 1AA", "94103", "01310-100"])},
               "bio": self.text() if self.r.random() < 0.6 else "",
               "website": self.pick(["https://example.com/~" + f.lower(), "https://github.com/" + f.lower(), "",
                                     "http://blog.example.org/2024/01/hello-world?utm_source=x&utm_medium=y"]),
               "preferences": {"newsletter": self.r.random() < 0.5, "language": self.pick(["en", "de", "fr", "ja"])}}
        return self.json_req("json-profile", self.pick(["POST", "PUT", "PATCH"]), f"/api/v1/users/{self.r.randint(1, 99999)}", obj)

    def comment(self) -> dict[str, object]:
        obj = {"post_id": self.r.randint(1, 10**6), "author": " ".join(self.name()), "body": self.text(),
               "format": self.pick(["markdown", "plain", "html"]), "tags": self.r.sample(["bug", "ui", "select",
               "drop-down", "union", "or", "and", "script", "sql", "question"], 2)}
        if obj["format"] == "html":
            obj["body"] = self.pick([
                "<p>Thanks, <b>great</b> work!</p>", "<p>See <a href=\"https://example.com/page?a=1&amp;b=2\">this</a></p>",
                "<ul><li>one</li><li>two &amp; three</li></ul>", "<p>I <3 it &mdash; 5 < 6 > 4</p>",
                "<blockquote>Or select nothing</blockquote><p>-- O'Brien</p>",
                "<p><img src=\"https://cdn.example.com/u/1.png\" alt=\"screenshot\" width=\"300\"></p>",
                "<h2>Update</h2><p>Dropped the <code>union</code> branch; use <em>select</em> now.</p>",
                "<table><tr><th>a</th><td>1</td></tr></table>",
            ])
        return self.json_req("json-comment", "POST", f"/api/v1/posts/{obj['post_id']}/comments", obj)

    def order(self) -> dict[str, object]:
        items = [{"sku": f"{self.pick(['TS', 'MUG', 'BK', 'SH'])}-{self.r.randint(100, 999)}", "name": self.pick(PRODUCTS),
                  "qty": self.r.randint(1, 5), "price": round(self.r.uniform(2, 300), 2)} for _ in range(self.r.randint(1, 4))]
        f, last = self.name()
        obj = {"customer": {"name": f"{f} {last}", "email": self.email(f, last)}, "items": items,
               "shipping": {"method": self.pick(["standard", "express", "pickup"]), "note": self.pick([*PROSE, ""])},
               "coupon": self.pick(["", "SPRING-10", "FREESHIP", "O'NEIL20"]), "currency": self.pick(["EUR", "USD", "GBP"]),
               "metadata": {"source": self.pick(["web", "ios", "android"]), "session": self.uuid()}}
        return self.json_req("json-order", "POST", "/api/v1/orders", obj)

    def search(self) -> dict[str, object]:
        q = self.pick(SEARCHES) if self.r.random() < 0.8 else self.pick(UNICODE)[:20]
        params = {"q": q, "page": self.r.randint(1, 20), "per_page": self.pick([10, 20, 50])}
        if self.r.random() < 0.5:
            params["sort"] = self.pick(["-created_at", "price", "relevance", "name,-date", "updated_at desc"])
        if self.r.random() < 0.3:
            params["fields"] = "id,name,price,thumbnail_url"
        if self.r.random() < 0.3:
            params["filter[category]"] = self.pick(["shoes", "home & garden", "kids' clothing", "books"])
        if self.r.random() < 0.2:
            params["utm_source"] = "newsletter"
            params["utm_campaign"] = self.pick(["spring_sale", "black-friday-2024", "o'brien-promo"])
        return self.req("query-search", "GET", "/api/v1/search?" + urlencode(params))

    def redirect(self) -> dict[str, object]:
        url = self.pick(["https://www.example.com/account?tab=orders", "/dashboard", "https://shop.example.com/cart#checkout",
                         "https://example.com/callback?code=" + self.token(20) + "&state=" + self.token(12),
                         "https://docs.example.com/v2/select-a-plan", "/search?q=drop+earrings&page=2"])
        param = self.pick(["next", "redirect_uri", "return_to", "continue", "callback", "url"])
        extra = {"client_id": self.token(16), "response_type": "code", "scope": "openid profile email"} if param == "redirect_uri" else {}
        return self.req("query-url", "GET", "/oauth/authorize?" + urlencode({param: url, **extra}))

    def listing(self) -> dict[str, object]:
        target = self.pick([
            f"/api/v1/orders?status=shipped&created_after=2024-01-{self.r.randint(10, 28)}T00:00:00Z&limit=50",
            f"/api/v1/products/{self.r.randint(1, 9999)}?include=variants,images",
            f"/api/v2/users/{self.uuid()}/orders?page[size]=25&page[number]={self.r.randint(1, 9)}",
            "/api/v1/items?filter[price][gte]=10&filter[price][lte]=100&sort=-price",
            "/api/v1/reports?from=2024-01-01&to=2024-03-31&group_by=week&metrics=revenue,orders",
            "/api/v1/locations?lat=53.3498&lng=-6.2603&radius=5km",
            f"/static/js/app.{self.hexs(8)}.js", f"/images/products/{self.r.randint(1, 999)}/large.jpg?v={self.hexs(6)}",
            "/api/v1/me", "/health", "/api/v1/notifications?unread=true&since=1700000000",
            f"/api/v1/files/{quote('Quarterly report (final) — v2.pdf')}",
            f"/api/v1/tags/{quote(self.pick(['c++', 'c#', 'node.js', 'rock-n-roll', 'o-brien']))}/posts",
            "/api/v1/select-options?type=country&lang=en", "/api/v1/union/members?active=1",
            "/odata/Products?$filter=" + quote("Price lt 20 and Category eq 'Food'") + "&$orderby=Name desc&$top=10",
            "/api/v1/search?q=" + quote("title:(drop OR select) AND -union") + "&sort=score desc",
            "/api/v1/items?where=" + quote('{"status":{"$in":["open","pending"]}}') + "&limit=20",
        ])
        return self.req("query-list", self.pick(["GET", "GET", "GET", "HEAD"]), target)

    def form(self) -> dict[str, object]:
        f, last = self.name()
        kind = self.r.random()
        if kind < 0.4:
            data = {"username": self.email(f, last), "password": self.token(12) + "!'#", "remember_me": "on",
                    "csrf_token": self.token(32)}
            target = "/login"
        elif kind < 0.8:
            data = {"name": f"{f} {last}", "email": self.email(f, last), "subject": self.pick(["Order question", "Refund",
                    "Select plan?", "Drop-off time", "Union pricing"]), "message": self.text()}
            target = "/contact"
        else:
            data = {"q": self.pick(SEARCHES), "category": self.pick(["all", "books", "home & garden"])}
            target = "/search"
        return self.req("form", "POST", target, urlencode(data), "application/x-www-form-urlencoded")

    def multipart(self) -> dict[str, object]:
        boundary = "----WebKitFormBoundary" + self.token(16)
        fname = self.pick(["avatar.png", "O'Brien CV (2024).pdf", "select_drop_union.csv", "photo 1.jpeg",
                           "résumé.docx", "notes--final.txt", "script.js.txt", "写真.png"])
        if fname.endswith(".csv"):
            content = "id,name,notes\n1,O'Brien,\"select, drop, union\"\n2,Smith,-- none --\n3,Null,1 or 2\n"
            ctype = "text/csv"
        elif fname.endswith(".txt"):
            content = self.text()
            ctype = "text/plain"
        else:
            content = base64.b64encode(self.r.randbytes(self.r.randint(200, 900))).decode()
            ctype = self.pick(["image/png", "image/jpeg", "application/pdf"])
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n{self.pick(PRODUCTS)}\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="description"\r\n\r\n{self.text()}\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{fname}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n{content}\r\n",
            f"--{boundary}--\r\n",
        ]
        return self.req("multipart", "POST", "/api/v1/uploads", "".join(parts), f"multipart/form-data; boundary={boundary}")

    def graphql(self) -> dict[str, object]:
        q = self.pick([
            "query GetUser($id: ID!) { user(id: $id) { id name email orders(first: 5) { edges { node { id total } } } } }",
            "mutation AddComment($input: CommentInput!) { addComment(input: $input) { id body createdAt } }",
            "query { products(filter: {category: \"home & garden\", priceLt: 100}, orderBy: PRICE_ASC) { id name } }",
            "query Search($q: String!) { search(query: $q, first: 10) { ... on Product { id name } ... on Article { title } } }",
            "{ __typename viewer { login repositories(last: 3) { nodes { name } } } }",
        ])
        variables: dict[str, object] = {"id": str(self.r.randint(1, 10**6)), "q": self.pick(SEARCHES),
                                        "input": {"postId": self.r.randint(1, 999), "body": self.text()}}
        return self.json_req("graphql", "POST", "/graphql", {"query": q, "variables": variables,
                                                            "operationName": None})

    def xml(self) -> dict[str, object]:
        f, last = self.name()
        esc = (f"{f} {last}").replace("&", "&amp;").replace("'", "&apos;")
        if self.r.random() < 0.5:
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
                    f"<soap:Header><auth:Token xmlns:auth=\"urn:example:auth\">{self.token(24)}</auth:Token></soap:Header>"
                    f"<soap:Body><m:GetOrderStatus xmlns:m=\"urn:example:orders\"><m:OrderId>{self.r.randint(1000, 99999)}</m:OrderId>"
                    f"<m:Customer>{esc}</m:Customer><m:Note>{self.pick(PROSE).replace('&', '&amp;').replace('<', '&lt;')}</m:Note>"
                    "</m:GetOrderStatus></soap:Body></soap:Envelope>")
            ctype = "text/xml; charset=utf-8"
            return self.req("xml-soap", "POST", "/soap/orders", body, ctype) | {}
        body = ('<?xml version="1.0"?>\n<order id="' + str(self.r.randint(1, 9999)) + '"><customer name="' + esc.replace('"', "&quot;")
                + f'" email="{self.email(f, last)}"/><item sku="TS-{self.r.randint(100, 999)}" qty="2">'
                + self.pick(PRODUCTS).replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
                + "</item><comment><![CDATA[" + self.pick(PROSE) + "]]></comment></order>")
        return self.req("xml", "POST", "/api/v1/orders.xml", body, "application/xml")

    def image(self) -> dict[str, object]:
        obj = {"filename": self.pick(["avatar.png", "receipt.png", "scan 2024-01-03.png"]),
               "data": "data:image/png;base64," + self.png_b64() if self.r.random() < 0.6 else self.png_b64(),
               "caption": self.pick(PROSE + UNICODE)}
        return self.json_req("json-image", "POST", "/api/v1/media", obj)

    def webhook(self) -> dict[str, object]:
        obj = {"id": "evt_" + self.token(24), "type": self.pick(["invoice.paid", "customer.updated", "charge.refunded"]),
               "created": 1700000000 + self.r.randrange(10**6), "livemode": False,
               "data": {"object": {"id": "cus_" + self.token(14), "name": " ".join(self.name()),
                                   "description": self.pick(PROSE), "metadata": {"order": str(self.r.randint(1, 10**5)),
                                                                                "notes": self.pick(SEARCHES)}}}}
        req = self.json_req("webhook", "POST", "/webhooks/stripe", obj)
        req["headers"].append(["Stripe-Signature", f"t={1700000000 + self.r.randrange(10**6)},v1={self.hexs(64)}"])  # type: ignore[union-attr]
        return req

    def analytics(self) -> dict[str, object]:
        events = [{"event": self.pick(["page_view", "add_to_cart", "select_item", "remove_from_cart", "search"]),
                   "ts": 1700000000000 + self.r.randrange(10**9),
                   "props": {"page": self.pick(["/", "/cart", "/p/drop-leaf-table", "/search?q=union+jack"]),
                             "referrer": self.pick(["https://www.google.com/", "", "android-app://com.google.android.gm/"]),
                             "screen": self.pick(["1920x1080", "390x844", "1440x900"]), "item": self.pick(PRODUCTS)}}
                  for _ in range(self.r.randint(1, 6))]
        return self.json_req("json-analytics", "POST", "/collect", {"client_id": self.uuid(), "events": events})

    def plain(self) -> dict[str, object]:
        return self.req("text", "POST", "/api/v1/notes", self.text(), "text/plain; charset=utf-8")

    def auth(self) -> dict[str, object]:
        roll = self.r.random()
        if roll < 0.5:
            f, last = self.name()
            return self.json_req("json-login", "POST", "/api/v1/auth/login",
                                 {"email": self.email(f, last), "password": self.token(10) + self.pick(["'", "--", "#!", "\"", "<>", "&&"])})
        return self.json_req("json-token", "POST", "/oauth/token", {"grant_type": "refresh_token",
                                                                   "refresh_token": self.jwt(), "client_id": self.token(16)})


WEIGHTS = [("profile", 12), ("comment", 16), ("order", 10), ("search", 12), ("redirect", 4), ("listing", 12),
           ("form", 8), ("multipart", 4), ("graphql", 6), ("xml", 4), ("image", 2), ("webhook", 3),
           ("analytics", 4), ("plain", 3), ("auth", 6)]


def generate(count: int, seed: int) -> list[dict[str, object]]:
    g = Gen(seed)
    kinds = [k for k, _ in WEIGHTS]
    weights = [w for _, w in WEIGHTS]
    out = []
    for i in range(count):
        kind = g.r.choices(kinds, weights)[0]
        req = getattr(g, kind)()
        out.append({"id": f"b{i + 1:05d}", **req})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    rows = generate(a.count, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    size = a.out.stat().st_size
    print(f"wrote {len(rows)} requests to {a.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
