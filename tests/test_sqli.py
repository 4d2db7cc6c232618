"""bastion.detect.sqli: the tokenizer, the judge, must-match / must-not-match, and libinjection's data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.detect.sqli import SqliResult, sql_call_check, sqli_check, tokenize
from libinjection_corpus import CORPUS, corpus_lines, needs_corpus, samples

MUST_MATCH = [
    # tautologies and boolean logic after a quote breakout
    "' OR '1'='1",
    "' or 1=1--",
    "admin' or '1'='1'#",
    '" OR "" = "',
    "') or ('x')=('x",
    "1' AND 5906=5906 AND 'SEhd'='SEhd",
    "' AND SUBSTRING((SELECT password FROM users LIMIT 1),1,1)='a",
    "x' or 'a'='a",
    "'='",
    # numeric context
    "1 or 1=1",
    "1) or (1=1",
    "1 AND 5906=5906",
    "1 AND (SELECT 1 FROM users)",
    "-5815' OR 3963=3963#",
    # comments cutting the query
    "admin'--",
    "admin' #",
    "admin'/*",
    "1' ORDER BY 3--+",
    # UNION
    "1 union select 1,2,3",
    "-1' UNION ALL SELECT NULL,NULL--",
    "1/**/UNION/**/SELECT/**/1,2,3",
    "1/*!50000UNION*//*!50000SELECT*/1,2,3",
    "-1 union# comment\n (select id from users limit 1,1)",
    "' AND 1=0 UNION SELECT username, password FROM users--",
    # stacked queries
    "1; DROP TABLE users",
    "'; exec master..xp_cmdshell 'dir'--",
    "1'; DELETE FROM users WHERE 1=1--",
    "'; UPDATE users SET password='x' WHERE username='admin'--",
    ";waitfor delay '0:0:5'--",
    # time-based and error-based
    "' and sleep(5)#",
    "1 or pg_sleep(5)--",
    "' || pg_sleep(10)--",
    "1' waitfor delay '0:0:5'--",
    "1' AND BENCHMARK(5000000,MD5(1))#",
    "1 and extractvalue(1,concat(0x7e,version()))",
    "1 AND (SELECT * FROM (SELECT(SLEEP(5)))bAKL)",
    "IF(1=1,SLEEP(5),0)",
    "sleep(5)",
    "' INTO OUTFILE '/var/www/html/shell.php'--",
    # expressions and subqueries inside a string
    "1'||(select version())||'",
    "'||(SELECT '' FROM dual)||'",
    "ascii(substr((select user()),1,1))>100",
    # constant conditions, MySQL string arithmetic, whole statements, other dialects
    "1=1",
    "11!=1",
    "9999 or /*+hint*/ true",
    "'-'",
    "1'||'asd'||'",
    "z'or email notnull--",
    "admin@example.com'and unlikely (id)--",
    "admin\\' and( likelihood (id,.0));'",
    "declare @s varchar(8000)",
    " exec xp_cmdshell",
    "CREATE FUNCTION hello (s CHAR(20)) RETURNS CHAR(50)",
    "SELECT 6229 FROM(SELECT COUNT(*),CONCAT(0x717a786a71,(SELECT (CASE",
    "\u2018 OR \u20181\u2018=\u20181",
    "0_3 union select 1,2",
]

MUST_NOT_MATCH = [
    "Please select your drop-off location",
    "O'Brien",
    "Let's meet at 1 or 2",
    "john.o'reilly@example.com",
    "I'd like to drop the table from my order, and select a new one",
    "The union selected a new leader; members will vote or abstain",
    "Rock 'n' roll",
    "It's 5'11\" tall",
    "He said \"hello\" and 'goodbye'",
    "Where is George? Order by Friday, group by size.",
    "1 or 2",
    "price>10 and price<20",
    "status=active and priority>2",
    "Don't forget: sleep well; drop by tomorrow",
    "Mary's and John's",
    "Q&A: is it true? yes -- mostly",
    "The \"drop\" command deletes; the 'select' command reads",
    "ORDER #1234 'shipped'",
    "we're ~50% done; update later",
    "Call me at +1 (555) 010-9999 or 555-0101",
    "if (x == 1) { return y; }",
    "I can't login - says 'invalid user' or 'password'",
    "Sleep(8) isn't a thing in real life, you need actual rest :)",
    "How do I join the group? The 'Join' button is greyed out.\n\nUse `document.querySelector('#cart')`",
    "> \"Or\" and \"and\" are conjunctions.\n\nSo are *but*, *nor*, *for*, *so*, and *yet*.",
    "See https://example.com/page.html#section-2 or the FAQ",
    "eSnugdfOt7Yc!'#",
    "The query `SELECT id, name FROM users WHERE created_at > ?` is slow",
    "If the lock argument is given and not None, it must be a Lock",
    "user (POSIX only)",
    "if(WIN32 AND NOT MSVC)",
    "apt and aptitude\n----------------",
    "* The \"rev-parse --parseopt\" mode allows '=' and other special characters",
    "BLUE BROWN -BABY -TODDLER -CCBCUSTOMDRESSES' -SHOES",
    "My username is admin -- I forgot the password (it had a ' and a # in it).\n\nIn Go: `x != nil`",
    "2+2=4",
    "apples and oranges(fresh)",
    "Create table of contents",
    "Delete from my cart please",
    "exec(compile(source, 'x', 'exec'))",
    "It\u2019s John\u2019s car or Mary\u2019s",
    "name eq 'O''Brien' and age gt 30",
    "title:(drop OR select) AND -union",
    "The rug is 6' x 9' (not 5' x 8') -- please exchange it or refund.",
    "",
    "a",
    "請選擇您的送貨地址 — спасибо — 🚀",
]


@pytest.mark.parametrize("value", MUST_MATCH)
def test_must_match(value: str) -> None:
    result = sqli_check(value)
    assert isinstance(result, SqliResult), value
    assert result.context in ("none", "single", "double")
    assert result.reason and result.fingerprint


@pytest.mark.parametrize("value", MUST_NOT_MATCH)
def test_must_not_match(value: str) -> None:
    assert sqli_check(value) is None


def test_context_and_reason_are_reported() -> None:
    r = sqli_check("x' or 'a'='a")
    assert r is not None and r.context == "single" and r.reason == "tautology"
    r = sqli_check('x" or "a"="a')
    assert r is not None and r.context == "double"
    r = sqli_check("1 union select 1,2")
    assert r is not None and r.context == "none" and r.reason == "union-select"
    r = sqli_check("1; drop table users")
    assert r is not None and r.reason == "stacked-query"


def test_tokenizer_types() -> None:
    toks = tokenize("1 UNION ALL SELECT @@version, 'a''b', 0x41 -- x")
    assert [t for t, _ in toks] == ["1", "U", "E", "v", ",", "s", ",", "1", "C"]
    assert toks[1][1] == "union all"
    assert [t for t, _ in tokenize("sleep(5) or count(*)")] == ["F", "(", "1", ")", "&", "f", "(", "o", ")"]
    # a function name not followed by '(' is a bareword; MySQL versioned comments are code
    assert tokenize("sleep well")[0][0] == "n"
    assert [t for t, _ in tokenize("/*!50000union*/ select")] == ["U", "E"]
    # '#' is a comment only where MySQL would see one, not in URL fragments or '#1'
    assert tokenize("page.html#x")[-1][0] != "C"
    assert tokenize("1 #x")[-1][0] == "C"


def test_escaped_quotes_do_not_break_out() -> None:
    # MySQL reads \' as a quote inside the string, SQLite and standard SQL end the string there:
    # both readings are tried, so this is an injection for the second kind of database
    r0 = sqli_check("O\\' or 1=1")
    assert r0 is not None and r0.context == "single"
    assert sqli_check("it\\'s fine") is None
    assert sqli_check("it''s or 1=1 fine") is None  # '' is a quote inside the string
    r = sqli_check("O\\' x' or 1=1--")  # the first unescaped quote is the breakout
    assert r is not None and r.context == "single"


def test_long_prose_is_cheap_and_quiet() -> None:
    prose = "Please select your drop-off location; we'll union the orders (O'Brien's too) and drop you a note. " * 40
    assert sqli_check(prose) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises(value: str) -> None:
    r = sqli_check(value)
    assert r is None or isinstance(r, SqliResult)




@needs_corpus
def test_libinjection_sqli_samples_detection_rate() -> None:
    lines = samples("sqli-*.txt")
    hits = sum(1 for v in lines if sqli_check(v) is not None)
    assert hits / len(lines) >= 0.95, f"{hits}/{len(lines)}"


@needs_corpus
def test_libinjection_false_positives_rate() -> None:
    lines = corpus_lines(CORPUS / "data" / "false_positives.txt")
    flagged = [v for v in lines if sqli_check(v) is not None]
    assert len(flagged) / len(lines) <= 0.01, flagged


def test_adversarial_values_stay_linear() -> None:
    import time

    for value in ("'" * 8000, "/**/" * 2000, "#\n" * 4000, "(" * 8000, "1 or " * 1600, "\\'" * 4000):
        t0 = time.perf_counter()
        sqli_check(value)
        assert time.perf_counter() - t0 < 1.0, value[:20]


def _benign_values() -> list[str]:
    import json
    from urllib.parse import parse_qsl

    path = Path(__file__).parent / "data" / "benign_requests.jsonl"
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        req = json.loads(line)
        if "?" in req["target"]:
            out += [v for kv in parse_qsl(req["target"].split("?", 1)[1]) for v in kv]
        body, ct = req["body"], req["content_type"]
        if "json" in ct:
            stack = [json.loads(body)]
            while stack:
                o = stack.pop()
                if isinstance(o, dict):
                    out += [str(k) for k in o]
                    stack += list(o.values())
                elif isinstance(o, list):
                    stack += o
                elif isinstance(o, str):
                    out.append(o)
        elif "urlencoded" in ct:
            out += [v for kv in parse_qsl(body) for v in kv]
    return out


def test_benign_corpus_values_pass() -> None:
    values = _benign_values()
    assert len(values) > 10_000
    flagged = [v for v in values if sqli_check(v) is not None]
    assert len(flagged) <= len(values) // 1000, flagged[:5]


def test_unknown_function_with_a_space_before_its_parenthesis() -> None:
    # SQLite accepts `func (args)`: identifier-like names (with an underscore) count as calls.
    assert sqli_check("admin@example.com' or sqlite_compileoption_used (id)--") is not None
    assert sqli_check("admin@example.com'and not sqlite_compileoption_get (id)--") is not None
    assert sqli_check("O'Brien or my_friend (maybe)") is None


@pytest.mark.parametrize("value", [
    "concat(0x3a,user())", "ascii(substring((select 1),1,1))", "group_concat(table_name)", "unhex(",
    "Rand (", "md5\\(", ", find_in_set('22', col)", "div(23,-2)", "substr(@@version,1,1)",
])
def test_sql_call_must_match(value: str) -> None:
    assert sql_call_check(value) is not None


@pytest.mark.parametrize("value", [
    "Trim (cm)", "pow(x, 2)", "Database (MySQL)", "version()", "md5(password)", "sin(x) + cos(y)",
    "Sleep(8) isn't a thing", "concat the lists", "div(class)", "count(*) of rows", "appUser(sitename,user)",
])
def test_sql_call_must_not_match(value: str) -> None:
    assert sql_call_check(value) is None


_TOKEN_SAMPLES = [
    "1' or '1'='1' --", "admin\\' or 1=1#", "x\"\" or \"\"=\"", "/*!50000union*/ select @@version, 0x7e, 0b01",
    "1e5 union all select `a`.`b`, [col name], $1, ?, n'x', X'41'", "#hash\n-- c\n%00tail", "1a 0_3 1union 1or",
    "Привет 你好 ξεῖν' \u00a0\u2003x \u3000; \u2019quote\u201d ١٢٣ ½ ²", "a->>b::int := c <=> d !< e",
    "{\"theme\":\"dark\"}", "'unterminated \\", "*/ */ ** //", "@@`v` @'x' @\"y\"", "....1 .5e-3 0x 0b2",
]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("'\"\\`ab1 /*-#\n0x@[]$.(),;=|&%:<>!\u2019\u00a0\u0661é_")), max_size=40))
def test_token_dispatch_matches_the_whole_alternation(value: str) -> None:
    # _tokens matches each token with only the alternatives that can start with its first character;
    # the result must be the one-pattern tokenizer's at every position.
    from bastion.detect.sqli import _TOKEN, _token_matcher

    for s in (value, *_TOKEN_SAMPLES):
        for i in range(len(s)):
            a, b = _TOKEN.match(s, i), _token_matcher(s[i])(s, i)
            assert a is not None and b is not None
            assert (a.lastgroup, a.end()) == (b.lastgroup, b.end()), (s, i)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["theme", "or", "union", "Select", "topic", "top", "n", "x", "_id", "null", "sleep", "If"]),
    st.lists(st.sampled_from(["\"", "'", "\u2019", "\u201c", " or ", "1=1", "--", "#", ";", " union select ",
                              "(", ")", ",", ":", "{", "}", "\\", "\"\"", "sleep(5)", " and ", "1", "a", "\n"]),
             max_size=12),
)
def test_json_object_shortcut_agrees_with_the_tokenizer(key: str, rest: list[str]) -> None:
    # `{"key"...` with a plain key and no single quote is data in every context: the shortcut must only
    # ever say so where the full check says so too.
    from bastion.detect.sqli import _check_all, _json_object_with_plain_key

    value = '{"' + key + '"' + "".join(rest)
    if _json_object_with_plain_key(value):
        assert _check_all(value) is None
        assert _check_all(value.translate(str.maketrans({"\u201c": '"', "\u201d": '"'}))) is None


def test_json_object_shortcut_cases() -> None:
    from bastion.detect.sqli import _json_object_with_plain_key

    assert _json_object_with_plain_key('{"theme":"dark","lang":"en","cur":"EUR"}')
    assert _json_object_with_plain_key('{"status":{"$in":["open","pending"]}}')
    assert not _json_object_with_plain_key('{"or":1}')  # a keyword after the breakout quote
    assert not _json_object_with_plain_key('{"topic":1}')  # read as TOP
    assert not _json_object_with_plain_key('{"a":"x\' or 1=1--"}')  # a single quote: full check
    assert sqli_check('{"a":"x\' or 1=1--"}') is not None


# Passwords and tokens with symbols: a quote, then punctuation and a `#` glued to junk, is what a
# random string holds; a break-out needs SQL after it (keywords, a complete comparison, a call).
@pytest.mark.parametrize("value", [
    "p@$$w0rd'\"<>#%^*()",
    "xxfl$HO'#s?x",
    "u\"#UDRFqd[K^-",
    "Dk)#]slZVuD+WNF5H",
    "Tr0ub4dor&3'--x9",
])
def test_symbol_passwords_are_not_sql(value: str) -> None:
    assert sqli_check(value) is None


@pytest.mark.parametrize("value", [
    "p@ss' or '1'='1",
    "admin'--",
    "admin'-- -",
    "x')#",
    "1'--sp_password",
    "aa'!=ascii(1)#(",
    "z' or email notnull--",
])
def test_break_outs_with_sql_still_count(value: str) -> None:
    assert sqli_check(value) is not None


def test_a_comparison_cut_off_by_a_comment_is_incomplete() -> None:
    # `"<>#` and `' or --` leave an operator without its operand: a syntax error, not an injection
    assert sqli_check('x"<>#') is None
    assert sqli_check("x' or -- y") is None
    assert sqli_check("x' or 1=1 -- y") is not None


@pytest.mark.parametrize("value", [
    'user.country in ("DE","FR") && user.plan != "free" && !(user.id % 10 < 3)',
    "account.age_days % 7 == 0 && account.tier != 'trial'",
    "x or y * 2 > 10",
])
def test_a_comparison_with_a_column_in_its_arithmetic_is_not_constant(value: str) -> None:
    # arithmetic binds tighter than a comparison: `user.id % 10 < 3` depends on the row
    assert sqli_check(value) is None


def test_constant_arithmetic_comparisons_stay_tautologies() -> None:
    assert sqli_check("x or 2+2=4") is not None
    assert sqli_check("1 or 1=1") is not None
    assert sqli_check("1 and 5906=5906") is not None


_SUPERSET = ("SELECT region, product_line, SUM(sales) AS total\nFROM sales_fact\nWHERE year = 2024\n"
             "GROUP BY region, product_line\nUNION ALL\n"
             "SELECT region, 'ALL', SUM(sales) FROM sales_fact WHERE year = 2024 GROUP BY region\n"
             "ORDER BY 1, 3 DESC")
_REDASH = ("-- churn\nSELECT c.id, max(o.created_at) AS last_order\n"
           "FROM customers c LEFT JOIN orders o ON o.customer_id = c.id\nGROUP BY c.id\n"
           "HAVING max(o.created_at) < now() - interval '90 days'\nLIMIT 500;")
_GRAFANA = ("SELECT $__timeGroupAlias(created_at, 1h), count(*) AS \"orders\"\nFROM orders\n"
            "WHERE $__timeFilter(created_at)\nGROUP BY 1\nORDER BY 1")


@pytest.mark.parametrize("value", [_SUPERSET, _REDASH, _GRAFANA])
def test_a_multi_line_select_document_is_query_text(value: str) -> None:
    assert sqli_check(value) is None


def test_a_one_line_statement_and_a_quoted_break_out_in_a_document_still_count() -> None:
    assert sqli_check("select 1 union select password from users") is not None
    assert sqli_check("SELECT' or '1'='1' --\nFROM x\nWHERE y") is not None


def test_stacked_statement_after_prose_is_not_sql() -> None:
    assert sqli_check("Backend dev. I <3 Postgres; SELECT * FROM life WHERE fun = true; ~/dotfiles") is None
    assert sqli_check("1; select * from users") is not None
