"""SQL injection confirmation: does this value, pasted into a SQL query, change the query's syntax?

The approach follows libinjection (tokenize, fold, judge the token shape), with our own judge: instead
of a list of known-bad fingerprints we check that the tokens after the point where the value escapes
its literal form a *valid SQL continuation* (every adjacent pair of tokens is a legal pair in SQL) and
that this continuation carries an injection shape: UNION SELECT, a stacked statement, a time/error
function, boolean logic with a tautology, a comparison or a subquery, a comment cutting the rest of the
query off, or an ORDER BY/GROUP BY/LIMIT clause.

The value is tried in three contexts, as the application might have placed it:

- ``none``: as a bare number or column (``WHERE id = <value>``);
- ``single``/``double``: inside a quoted literal (``WHERE name = '<value>'``); the value escapes the
  literal at its first unescaped quote (a doubled quote never ends it; a backslash-escaped one is tried
  both ways, since MySQL honours the backslash and SQLite/standard SQL don't). Typographic quotes
  (U+2018/2019/201C/201D) are also tried as ASCII quotes, for back-ends that normalize them.

A value that *is* a statement is judged by its opening (``drop table t;``, ``insert into t values``,
``exec xp_...``, ``declare @v``, a SELECT with SQL-only syntax), and a value that is a constant condition
(``1=1``, ``'a'='a'``, ``11!=1``) is a tautology on its own.

Where the line is: ``1 or 2``, ``price>10 and price<20``, ``x=1 and y=2`` (filter expressions that compare
a column with a literal) and ``2+2=4`` pass; ``1 or 1=1`` and ``1 and 5906=5906`` (literal against literal)
do not. ``admin'--`` is flagged, ``BAMBOO SOAP '#`` is not (a comment right after the quote counts only
when the quoted part is one identifier-like word).

Prose rarely forms valid SQL for more than a couple of tokens ("Please select your drop-off location":
two barewords in a row are not legal in an expression), and a name like O'Brien escapes its quote into a
bareword, which is not a legal continuation either. That is why the check stays quiet on ordinary text.

Contract: ``sqli_check(value)`` is pure, allocates little, looks at a bounded number of tokens per
context, and expects an already decoded value (URL/entity decoding is done by the zone transforms).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["SqliResult", "sql_call_check", "sqli_check", "tokenize"]

MAX_TOKENS = 72  # per context; longer injections are judged on their prefix (features show early)
MAX_SCAN = 4096  # characters of a value looked at (attacks start early; see module doc)


@dataclass(frozen=True, slots=True)
class SqliResult:
    fingerprint: str  # token types of the judged prefix (one char per token), e.g. "s&1c1"
    context: str  # "none", "single" or "double"
    reason: str  # short name of the injection shape, e.g. "union-select", "tautology"


# --- token types ----------------------------------------------------------------------------------
# 1 number/literal   s string     n bareword   v variable   f function     F dangerous function
# o operator         c comparison & logic      ( ) , ;      U union        E select
# S other statement  W waitfor    B clause kw  k keyword    X junk         C comment (terminal)

_STATEMENTS = {
    "insert", "update", "delete", "drop", "create", "alter", "truncate", "exec", "execute", "declare",
    "shutdown", "grant", "revoke", "rename", "replace", "call", "set", "use", "load", "handler", "begin",
    "merge", "copy", "do", "open", "kill", "backup", "restore", "dbcc", "reconfigure", "if",
}
# What must follow a statement keyword for a stacked statement to be plausible SQL, not prose
# ("Done; update me later"). Empty set: anything legal.
_STATEMENT_NEXT: dict[str, frozenset[str]] = {
    "insert": frozenset({"into"}),
    "delete": frozenset({"from"}),
    "drop": frozenset({"table", "database", "view", "procedure", "function", "user", "index", "schema", "trigger"}),
    "create": frozenset({"table", "database", "view", "procedure", "function", "user", "trigger", "or", "index",
                         "schema", "login"}),
    "alter": frozenset({"table", "database", "user", "login", "view", "procedure", "system", "session"}),
    "truncate": frozenset({"table"}),
    "grant": frozenset({"all", "select", "insert", "update", "delete", "execute", "dba", "admin"}),
    "revoke": frozenset({"all", "select", "insert", "update", "delete", "execute"}),
    "load": frozenset({"data", "xml"}),
    "begin": frozenset({"declare", "tran", "transaction", "exec", "execute", "insert", "update", "delete", "drop"}),
}
_LOGIC = {"and", "or", "xor", "&&", "||"}
_COMPARE_WORDS = {"like", "rlike", "regexp", "is", "in", "between", "sounds", "glob", "match", "similar", "ilike",
                  "notnull", "isnull"}
_OPERATOR_WORDS = {"div", "mod", "collate", "escape", "binary", "not", "interval", "against"}
_UNARY = {"-", "+", "~", "!", "not", "binary"}
_LITERAL_WORDS = {"null", "true", "false", "unknown", "current_user", "current_date", "current_time",
                  "current_timestamp", "localtime", "localtimestamp", "session_user", "system_user", "sysdate"}
_CLAUSES = {
    "from", "where", "having", "limit", "offset", "procedure", "into", "outfile", "dumpfile", "join", "on",
    "as", "case", "when", "then", "else", "end", "values", "table", "fetch", "returning", "window", "with",
    "inner", "outer", "left", "right", "cross", "natural", "using", "for", "lock", "share", "mode", "top",
    "asc", "desc", "distinct", "all", "exists", "any", "some", "partition", "over", "database", "schema",
    "nulls", "first", "last", "rows", "only", "next", "straight_join", "sql_calc_found_rows", "high_priority",
    "terminated", "fields", "lines", "enclosed", "analyse", "elt", "cast", "convert", "to",
}
_DANGER = {
    "sleep", "benchmark", "pg_sleep", "pg_sleep_for", "extractvalue", "updatexml", "load_file",
    "xp_cmdshell", "xp_dirtree", "xp_fileexist", "xp_regread", "sys_eval", "sys_exec", "randomblob",
    "dbms_pipe.receive_message", "dbms_lock.sleep", "utl_inaddr.get_host_address", "utl_inaddr.get_host_name",
    "utl_http.request", "dbms_xmlgen.getxml", "ctxsys.drithsx.sn", "pg_read_file", "pg_ls_dir", "lo_import",
    "lo_export", "lo_get", "name_const", "geometrycollection", "multipoint", "polygon", "multipolygon",
    "linestring", "multilinestring", "exp", "gtid_subset", "json_keys", "st_latfromgeohash", "sqlite_version",
    "load_extension", "openrowset", "opendatasource", "master..xp_cmdshell", "dbms_java.runjava",
    "sp_oacreate", "sp_executesql", "sp_makewebtask", "sp_password", "xmltype", "pg_read_binary_file",
}
_FUNCTIONS = {
    "version", "user", "database", "schema", "concat", "concat_ws", "char", "chr", "nchar", "ascii", "ord",
    "substring", "substr", "mid", "left", "right", "length", "len", "count", "if", "ifnull", "isnull", "nullif",
    "coalesce", "cast", "convert", "hex", "unhex", "md5", "sha1", "sha2", "group_concat", "string_agg",
    "listagg", "rand", "floor", "ceil", "round", "abs", "elt", "make_set", "lower", "upper", "ucase", "lcase",
    "reverse", "replace", "trim", "ltrim", "rtrim", "lpad", "rpad", "instr", "locate", "position", "strcmp",
    "current_user", "session_user", "system_user", "user_name", "db_name", "host_name", "suser_sname",
    "@@version", "row", "exists", "bin", "oct", "conv", "to_char", "to_number", "unicode", "quotename",
    "getdate", "now", "sysdate", "curdate", "current_database", "current_schema", "pg_typeof", "typeof",
    "connection_id", "last_insert_id", "found_rows", "row_count", "uuid", "decode", "encode",
    "utl_raw.cast_to_varchar2",
    "bitand", "ascii_str", "soundex", "space", "repeat", "regexp_like", "regexp_substr", "json_extract",
    "char_length", "character_length", "octet_length", "bit_length", "format", "str", "iif", "choose", "power",
    "waitfor", "min", "max", "sum", "avg", "greatest", "least", "field", "find_in_set", "export_set",
    "aes_encrypt", "aes_decrypt", "compress", "uncompress", "from_base64", "to_base64", "crc32", "pi", "mod",
    "sin", "cos", "tan", "cot", "asin", "acos", "atan", "atan2", "log", "ln", "log2", "log10", "sqrt", "sign",
    "degrees", "radians", "truncate", "coercibility", "collation", "charset", "benchmark", "object_id",
    "has_dbaccess", "is_srvrolemember", "is_member", "schema_name", "table_name", "col_name", "columnproperty",
    "unlikely", "likely", "likelihood", "json", "json_valid", "json_type", "json_array", "json_object",
    "total_changes", "changes", "last_insert_rowid", "lo_get", "lo_put", "lo_from_bytea", "unistr",
    "sqlite_master", "randomblob", "zeroblob", "quote", "printf", "glob", "updatexml", "pow", "insert",
}
_FUNCTIONS |= _DANGER

_WORD_TYPE: dict[str, str] = {}
for _w in _STATEMENTS:
    _WORD_TYPE[_w] = "S"
for _w in _CLAUSES:
    _WORD_TYPE[_w] = "k"
for _w in ("order", "group", "having", "limit", "procedure", "into", "offset"):
    _WORD_TYPE[_w] = "B"
for _w in _LITERAL_WORDS:
    _WORD_TYPE[_w] = "1"
for _w in _COMPARE_WORDS:
    _WORD_TYPE[_w] = "c"
for _w in _OPERATOR_WORDS:
    _WORD_TYPE[_w] = "o"
for _w in ("and", "or", "xor"):
    _WORD_TYPE[_w] = "&"
_WORD_TYPE.update({"select": "E", "union": "U", "intersect": "U", "except": "U", "waitfor": "W"})

# The token alternatives in the order they are tried, each with a character class holding every
# character it can start with. One big alternation costs ~1 µs per token in `re` whatever the token
# (every alternative is entered in turn); matching at a position only the alternatives that can start
# with the character there gives the same token (the first alternative that matches: none matches
# the empty string) in about half the time. tests/test_sqli*.py compare both on every position.
_TOKEN_PARTS: tuple[tuple[str, str, str], ...] = (
    ("ws", r"[\s\x00-\x1f\x7f\xa0\u2000-\u200b\u3000]", r"[\s\x00-\x1f\x7f\xa0\u2000-\u200b\u3000]+"),
    ("vc", r"/", r"/\*!(?:\d{5,6})?"),
    ("cm", r"/", r"/\*.*?(?:\*/|\Z)"),
    ("dc", r"[-#%]", r"--(?!\d)[^\n]*\n?|(?<![a-zA-Z_.%&/=?:\-])\#(?!\d)[^\n]*\n?|%00.*"),
    ("ce", r"\*", r"\*/"),
    # a string runs to its closing quote (`\x` and a doubled quote do not close it) or to the end
    ("str", r"""[nNxXbBeE'"]""",
     r"""(?:[nNxXbBeE](?='))?'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"?"""),
    ("bt", r"[`\[]", r"`[^`]*`?|\[[\w .$-]{1,64}\]"),
    ("num0", r"0", r"0x[0-9a-fA-F]+(?![\w$])|0b[01]+(?![\w$])"),
    ("dword", r"\d", r"\d+(?:_[\w$]*|[a-zA-Z$][\w$]*)(?=[^\w$]|$)"),
    ("num", r"[\d.]", r"0x[0-9a-fA-F]*|0b[01]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"),
    ("var", r"[@$?]", r"""@@?(?:[\w$.]+|`[^`]*`|'[^']*'|"[^"]*")?|\$\d+|\?"""),
    ("word", r"[^\W\d]", r"[^\W\d][\w$]*(?:\.\.?(?:[^\W\d][\w$]*|\*))*"),
    ("op", r"[|&<=>!~+\-*/%^:]", r"\|\||&&|<=>|<>|!=|<=|>=|!<|!>|:=|::|->>|->|<<|>>|[=<>!~+\-*/%^&|:]"),
    ("p", r"[(),;]", r"[(),;]"),
    ("other", r".", r"."),
)
_TOKEN = re.compile("|".join(f"(?P<{name}>{rx})" for name, _, rx in _TOKEN_PARTS), re.DOTALL)
_TOKEN_FIRST = tuple((name, re.compile(first, re.DOTALL)) for name, first, _ in _TOKEN_PARTS)
_TOKEN_SUBSETS: dict[tuple[str, ...], Callable[[str, int], re.Match[str] | None]] = {}
# first character -> the match function of the alternatives that can start with it (Latin-1 filled
# below; other characters as they come, up to a bound)
_TOKEN_AT: dict[str, Callable[[str, int], re.Match[str] | None]] = {}


def _token_matcher(c: str) -> Callable[[str, int], re.Match[str] | None]:
    """The match function for a token starting with character `c` (see _TOKEN_PARTS)."""
    names = tuple(name for name, first in _TOKEN_FIRST if first.match(c) is not None)
    fn = _TOKEN_SUBSETS.get(names)
    if fn is None:
        parts = [f"(?P<{name}>{rx})" for name, _, rx in _TOKEN_PARTS if name in names]
        fn = _TOKEN_SUBSETS[names] = re.compile("|".join(parts), re.DOTALL).match
    if len(_TOKEN_AT) < 8192:
        _TOKEN_AT[c] = fn
    return fn


for _c in range(256):
    _token_matcher(chr(_c))

_FOLLOW = {
    "union": re.compile(r"(?:\s+(?:all|distinct)\b)+", re.I),
    "order": re.compile(r"\s+by\b", re.I),
    "group": re.compile(r"\s+by\b", re.I),
    "partition": re.compile(r"\s+by\b", re.I),
    "not": re.compile(r"\s+(?:like|rlike|regexp|in|between|similar|ilike|glob)\b", re.I),
    "is": re.compile(r"\s+not\b", re.I),
    "sounds": re.compile(r"\s+like\b", re.I),
    "waitfor": re.compile(r"\s+(?:delay|time)\b", re.I),
    "top": re.compile(r"\s*\(?\s*\d+\s*\)?(?:\s+percent\b)?", re.I),
}
_PAREN_AHEAD = re.compile(r"[\s\x00-\x1f]*(?:/\*.*?\*/[\s\x00-\x1f]*)*\(", re.DOTALL)
_COMPARE_OPS = {"=", "<", ">", "<=", ">=", "<>", "!=", "<=>", "!<", "!>"}

Token = tuple[str, str]  # (type, text); text is lowercased for words


def tokenize(s: str, pos: int = 0, limit: int = MAX_TOKENS) -> list[Token]:
    """Tokens of `s` from `pos` (for tests and the judge). Whitespace and inline comments dropped."""
    return list(_tokens(s, pos, limit))


def _tokens(s: str, pos: int, limit: int) -> Iterator[Token]:
    n = len(s)
    count = 0
    steps = 0  # whitespace and inline comments count too: "/**/" * 4000 must not loop 4000 times
    token_at = _TOKEN_AT
    while pos < n and count < limit and steps < 4 * limit:
        steps += 1
        c = s[pos]
        match = token_at.get(c)
        if match is None:
            match = _token_matcher(c)
        m = match(s, pos)
        if m is None:  # pragma: no cover - the pattern ends with a catch-all
            return
        kind = m.lastgroup
        text = m.group()
        end = m.end()
        if kind == "ws" or kind == "vc" or kind == "ce":
            pos = end
            continue
        if kind == "cm":
            pos = end
            if not text.endswith("*/") or len(text) < 4:  # unterminated: swallows the rest
                yield ("C", text)
                return
            continue
        if kind == "dc":
            if text.endswith("\n") and end < n:  # a line comment ends at the newline; code goes on
                pos = end
                continue
            yield ("C", text)
            return
        if kind == "str":
            yield ("s", text)
        elif kind == "bt":
            yield ("n", text)
        elif kind == "num" or kind == "num0":
            yield ("1", text)
        elif kind == "dword":
            # MySQL reads 0_3 and 1a as identifiers, but 1union / 1or as a number then a keyword
            k = len(text) - len(text.lstrip("0123456789"))
            if re.fullmatch(r"[eE]\d+", text[k:]):
                yield ("1", text)
            elif text[k:].lower() in _WORD_TYPE and text[k] != "_":
                end = pos + k
                yield ("1", text[:k])
            else:
                yield ("n", text)
        elif kind == "var":
            yield ("v", text)
        elif kind == "word":
            low = text.lower()
            follow = _FOLLOW.get(low)
            if follow is not None:
                f = follow.match(s, end)
                if f is not None:
                    end = f.end()
                    low = low + " " + f.group().strip().lower()
            t = _WORD_TYPE.get(low)
            is_func = low in _FUNCTIONS or ("." in low and low.rsplit(".", 1)[1] in _DANGER)
            if is_func and _PAREN_AHEAD.match(s, end):
                t = "F" if (low in _DANGER or low.rsplit(".", 1)[-1] in _DANGER) else "f"
            if t is None and "." not in low and (
                (end < n and s[end] == "(") or ("_" in low and _PAREN_AHEAD.match(s, end))
            ):
                # a call of a function we don't know (user-defined, another dialect): legal, not a
                # sign. SQLite and others allow a space before the parenthesis; words with an
                # underscore are identifiers, not prose, so for them the space is allowed too.
                t = "g"
            if t is None:
                if low.startswith(("union ",)):
                    t = "U"
                elif low.startswith(("order ", "group ", "partition ")):
                    t = "B"
                elif low.startswith(("not ", "is ", "sounds ")):
                    t = "c"
                elif low.startswith("waitfor "):
                    t = "W"
                elif low.startswith("top"):
                    t = "k"
                else:
                    t = "n"
            yield (t, low)
        elif kind == "op":
            if text in ("&&", "||"):
                yield ("&", text)
            elif text in _COMPARE_OPS:
                yield ("c", text)
            elif text == ":":  # not SQL on its own (only '::' casts and ':=' assignments are)
                yield ("X", text)
            else:
                yield ("o", text)
        elif kind == "p":
            yield (text, text)
        else:
            yield ("X", text)
        count += 1
        pos = end
        if kind == "word" and pos < n and s[pos] == "#" and _WORD_TYPE.get(text.lower(), "n") != "n":
            # "union#junk\n select": MySQL starts a comment right after a keyword
            nl = s.find("\n", pos)
            if nl < 0:
                yield ("C", s[pos:])
                return
            pos = nl + 1


# --- the judge -------------------------------------------------------------------------------------

_OPERAND = frozenset("1snv)")
_EXPR_START = frozenset("1snvfFg(")
_LITERAL = frozenset("1sv")


def _can_follow(prev: Token, tok: Token) -> bool:
    """Is `tok` a legal SQL token right after `prev`? Generous: shapes, not a full grammar."""
    p, t = prev[0], tok[0]
    if t == "X":
        return False
    if t == "C":
        # a comment may end what is complete (an operand, a statement, a keyword such as DESC); after
        # an operator, a comparison, AND/OR or a comma the expression is cut short: a syntax error,
        # not an injection (a password `p@$$w0rd'"<>#%^*()` breaks out into `<>` and a `#`)
        return (p in _OPERAND or p in ";kCU" or (p == "o" and prev[1] == "*")
                or (p == "c" and prev[1] in ("notnull", "isnull")))  # postfix: `email notnull--`
    if p in _OPERAND:
        if t in "oc&),;UBW":
            return True
        if t == "S" and tok[1] == "set":  # UPDATE t SET
            return True
        if t == "k":
            return tok[1] not in ("case", "exists", "table", "database", "schema")
        return False
    if p == "o" and prev[1] == "*" and t in ",)k&c":  # SELECT * FROM, COUNT(*)
        return True
    if p == "c" and prev[1] in ("in", "not in"):  # IN takes a parenthesized list or subquery
        return t == "("
    if p in "oc&,":
        if t in _EXPR_START or (t == "o" and tok[1] in _UNARY):
            return True
        if t == "k":
            return tok[1] in ("case", "exists", "distinct", "all", "any", "some", "binary", "interval")
        if p == "c" and t == "(":
            return True
        return (t == "c" and tok[1] in ("not",)) or (p == "o" and prev[1] == "*" and t in ",)k")
    if p == "(":
        return t in _EXPR_START or t in "E)kU" or (t == "o" and tok[1] in _UNARY)
    if p in "fFg":
        return t == "("
    if p == ";":
        return t in "ESW(;C" or (t == "f" and tok[1] == "if")
    if p == "U":
        return t in "E("
    if p == "E":
        return t in _EXPR_START or t == "k" or (t == "o" and (tok[1] == "*" or tok[1] in _UNARY))
    if p in "SBkW":
        return t != ")" or p == "k"
    return False


@dataclass(slots=True)
class _Judge:
    """Features of the valid continuation, gathered token by token."""

    fp: list[str]
    union: bool = False
    stacked: bool = False
    danger: bool = False
    waitfor: bool = False
    logic: bool = False
    logic_cmp: bool = False  # a comparison after AND/OR
    logic_const: bool = False  # a literal-vs-literal comparison after AND/OR (1=1, 'a'='a')
    logic_func: bool = False
    logic_literal: bool = False  # AND/OR followed directly by a literal
    subquery: bool = False
    strong_subquery: bool = False
    clause: bool = False
    close_paren: bool = False
    const_cmp: bool = False
    first_cmp_literal: bool = False  # breakout directly followed by comparison with a literal
    op_func: bool = False  # operator then function/subquery right after the breakout
    comment: bool = False
    complete: bool = False
    statement: bool = False  # value is a whole strong statement (select ... from, insert into ...)


def _judge(toks: list[Token], start: int, first: int = 0) -> _Judge:
    """Judge `toks` from `start`; `first` is the index of the first token after the breakout."""
    j = _Judge(fp=[t[0] for t in toks])
    n = len(toks)
    i = start
    stop = n
    for k in range(max(start, 1), n):
        if not _can_follow(toks[k - 1], toks[k]):
            stop = k
            break
    j.complete = stop == n
    j.comment = stop == n and n > 0 and toks[-1][0] == "C"
    depth = 0
    sub_depth: list[int] = []
    after_logic = False
    for i in range(start, stop):
        t, text = toks[i]
        nxt = toks[i + 1] if i + 1 < stop else None
        prv = toks[i - 1] if i > 0 else None
        if t == "(":
            depth += 1
            if nxt is not None and nxt[0] == "E":
                j.subquery = True
                sub_depth.append(depth)
                if after_logic:
                    j.logic_func = True
        elif t == ")":
            if sub_depth and sub_depth[-1] == depth:
                sub_depth.pop()
            depth -= 1
            if depth < 0:
                j.close_paren = True
                depth = 0
        elif t == "U":
            k = i + 1
            while k < stop and toks[k][0] == "(":
                k += 1
            if k < stop and toks[k][0] == "E":
                j.union = True
        elif t == ";":
            if nxt is not None and _plausible_statement(toks, i + 1, stop):
                j.stacked = True
        elif t == "F":
            # at the very start of the value the call must be all there is ("sleep(5)"), else prose
            # like "Sleep(8) isn't a thing" would count
            if nxt is not None and nxt[0] == "(" and i + 2 < stop and (i > 0 or j.complete):
                j.danger = True
        elif t == "W":
            if nxt is not None and nxt[0] in "s1":
                j.waitfor = True
        elif t == "&":
            j.logic = True
            after_logic = True
            if nxt is not None and nxt[0] in "1sv":
                after = toks[i + 2][0] if i + 2 < stop else ""
                if after == "C" or (nxt[0] != "s" and after in ("", ")", "&", ";", "B", "U")):
                    j.logic_literal = True
        elif t == "c":
            if after_logic and nxt is not None:  # a whole comparison, not one cut off by prose
                j.logic_cmp = True
            if (prv is not None and nxt is not None and _literalish(prv) and _literalish(nxt)
                    and (prv[0] != "n" or (nxt[0] == "n" and prv[1] == nxt[1]))
                    and _constant_chain(toks, i - 1, -1, start, stop) and _constant_chain(toks, i + 1, 1, start, stop)):
                j.const_cmp = True
                if after_logic:
                    j.logic_const = True
            if i == first and nxt is not None and nxt[0] in _LITERAL:
                j.first_cmp_literal = True
        elif t == "f":
            if after_logic:
                j.logic_func = True
        elif t == "o":
            if i == first and nxt is not None and nxt[0] in "fF(":
                j.op_func = True
        elif t == "B":
            if nxt is not None and (nxt[0] in "1nv(" or nxt[0] == "f"):
                j.clause = True
            elif (text == "into" and nxt is not None and nxt[1] in ("outfile", "dumpfile")) or (
                text == "procedure" and nxt is not None and nxt[1] == "analyse"
            ):
                j.danger = True
        elif t == "E" and sub_depth and _strong_select(toks, i + 1, stop):
            j.strong_subquery = True
        if t in "fF" and after_logic:
            j.logic_func = True
    j.fp = j.fp[: max(stop, 1)]
    return j


def _literalish(tok: Token) -> bool:
    return tok[0] in "1svn" and tok[1] not in ("*",)


def _constant_chain(toks: list[Token], k: int, step: int, start: int, stop: int) -> bool:
    """Whether the operand at `k` and the arithmetic chain it belongs to on that side of a comparison
    are all literals. Arithmetic binds tighter than a comparison: in `user.id % 10 < 3` the left side is
    `user.id % 10`, which depends on the row; `1+1=2` stays constant."""
    while True:
        op = k + step
        nxt = op + step
        if not (start <= op < stop and start <= nxt < stop):
            return True
        o = toks[op]
        if o[0] != "o" or o[1] not in _ARITH or o[1] in ("&", "|"):
            return True
        if step < 0 and toks[nxt][0] not in _OPERAND:
            return True  # a unary sign (`= -1`), not a binary operator
        if toks[nxt][0] not in "1sv":
            return False
        k = nxt


def _plausible_statement(toks: list[Token], i: int, stop: int) -> bool:
    t, text = toks[i]
    nxt = toks[i + 1] if i + 1 < stop else None
    if t == "E":
        return _strong_select(toks, i + 1, stop)
    if t == "W":
        return nxt is not None and nxt[0] in "s1"
    if t == "f" and text == "if":  # IF((1=1), ...): a constant condition or a subquery, not C's if (x == NULL)
        for k in range(i + 1, min(stop, i + 14)):
            if toks[k][0] == "E" or (toks[k][0] == "c" and toks[k - 1][0] in "1sv" and k + 1 < stop
                                     and toks[k + 1][0] in "1sv"):
                return True
        return False
    if t == "S":
        allowed = _STATEMENT_NEXT.get(text)
        if text == "shutdown":
            return nxt is None or nxt[0] in "C;n"
        if nxt is None:
            return False
        if allowed is not None:
            return not allowed or nxt[1] in allowed
        if text in ("exec", "execute"):
            after = toks[i + 2][0] if i + 2 < stop else ""
            return (nxt[0] in "vs" or (nxt[0] == "(" and after in ("s", "v"))
                    or nxt[1].startswith(("xp_", "sp_", "master.", "immediate", "dbms_", "sys.")))
        if text == "if":  # T-SQL IF: a condition SQL-like enough ("if 1=1", "if (select ...)")
            if nxt[0] in "1v(":
                return _has_type(toks, i + 1, stop, "c") or nxt[0] == "("
            return nxt[0] == "n" and i + 3 < stop and toks[i + 2][0] == "c" and toks[i + 3][0] in "1sv"
        if text in ("call", "declare", "set", "kill", "dbcc", "backup", "restore", "open"):
            return nxt[0] in "nvf(" and (text != "set" or nxt[0] == "v" or _has_type(toks, i + 2, stop, "c"))
        if text == "update":
            return nxt[0] == "n" and i + 2 < stop and toks[i + 2][1] == "set"
        return False
    return False


def _has_type(toks: list[Token], i: int, stop: int, t: str) -> bool:
    return any(toks[k][0] == t for k in range(i, min(stop, i + 4)))


def _strong_select(toks: list[Token], i: int, stop: int) -> bool:
    """A SELECT whose list is clearly SQL (literals, functions, *, variables) or has FROM/WHERE/LIMIT
    with more structure than prose ("select one from the list" is legal SQL, so barewords alone are not
    enough)."""
    saw_from = False
    for k in range(i, min(stop, i + 40)):
        t, text = toks[k]
        if t in "1svfF" or text == "*" or t == "U" or t == "B":
            return True
        if t == "k" and text in ("from",):
            saw_from = True
        elif saw_from and t in "c;)C":
            return True
    return False


_INFO_FUNCTIONS = {"version", "database", "user", "current_user", "system_user", "session_user", "schema",
                   "db_name", "user_name", "suser_sname", "current_database", "@@version", "coercibility",
                   "collation", "charset", "connection_id", "host_name", "sqlite_version"}

_SPECIAL_RE = re.compile(r"['\"`;#()=<>|&@,*/\-+!~^%]")
# a value without any of _SPECIAL can only inject with keywords ("1 union select null", "1 or true")
_QUICK_WORDS = re.compile(
    r"\b(?:or|and|xor|union|order|group|having|waitfor|procedure|limit|div|like|select|exec|execute|declare"
    r"|shutdown|drop|insert|delete|update|create|alter|truncate)\b",
    re.I,
)


def sqli_check(value: str) -> SqliResult | None:
    """The injection shape if `value` turns into SQL syntax in some quoting context, else None."""
    if not value or len(value) < 2:
        return None
    s = value[:MAX_SCAN]
    if _json_object_with_plain_key(s):
        return None
    if _SPECIAL_RE.search(s) is None and _QUICK_WORDS.search(s) is None:
        if _has_smart_quote(s):
            return sqli_check(s.translate(_ASCII_QUOTES))
        return None
    r0 = _check_all(s)
    if r0 is None and _has_smart_quote(s):
        # typographic quotes that a normalizing back-end (or a lenient database) reads as quotes
        r0 = _check_all(s.translate(_ASCII_QUOTES))
    return r0


# A JSON object (`{"theme":"dark","lang":"en"}`, a preferences cookie, a `where=` filter) opening
# with a key that reads as a plain name, and with no single quote anywhere (typographic ones count).
_JSON_KEY_FIRST = re.compile(r'\{"([A-Za-z_][A-Za-z0-9_]*)"')
_SMART_SINGLE = ("\u2018", "\u2019", "\u02bc", "\uff07")


def _json_object_with_plain_key(s: str) -> bool:
    """Whether `s` is sure to stay data in every context, without tokenizing it.

    None: the value starts with `{`, which no SQL token starts with, so nothing after it can be a
    continuation. Double: the first `"` (neither escaped nor doubled) ends the literal, and the
    next token is the key, a bareword, which no SQL operand may be followed by. Single: no `'`,
    not even after typographic quotes are read as ASCII. Keywords (`{"or":...}`, `{"union":...}`) and
    words the tokenizer reads as TOP (`topic`) are left to the full check.
    """
    if not s.startswith('{"'):
        return False
    m = _JSON_KEY_FIRST.match(s)
    if m is None or "'" in s or any(q in s for q in _SMART_SINGLE):
        return False
    key = m.group(1).lower()
    return key not in _WORD_TYPE and not key.startswith("top")


_SMART_QUOTES = frozenset("\u2018\u2019\u201c\u201d\u02bc\uff07\uff02")
_ASCII_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\uff07": "'",
                               "\u201c": '"', "\u201d": '"', "\uff02": '"'})


def _has_smart_quote(s: str) -> bool:
    return any(q in s for q in _SMART_QUOTES)


def _check_all(s: str) -> SqliResult | None:
    r = _check_none(s)
    if r is not None:
        return r
    for q, name in (("'", "single"), ('"', "double")):
        if q in s:
            r = _check_quoted(s, q, name)
            if r is not None:
                return r
    return None


def _breakout(s: str, q: str) -> int:
    """Index just past the first quote `q` that ends a literal opened before `s` (-1: none does).
    A backslash-escaped quote (MySQL) or a doubled quote (standard SQL) does not end it."""
    i = s.find(q)
    n = len(s)
    while i >= 0:
        k = i
        while k > 0 and s[k - 1] == "\\":
            k -= 1
        if (i - k) % 2 == 0:
            if i + 1 < n and s[i + 1] == q:
                i = s.find(q, i + 2)
                continue
            return i + 1
        i = s.find(q, i + 1)
    return -1


def _collect(s: str, pos: int, toks: list[Token]) -> list[Token]:
    """Append tokens of `s` from `pos` while each is a legal successor of the previous one; the first
    illegal token is kept (so the judge sees where the SQL stops) and tokenizing stops there: prose is
    rejected after a couple of tokens whatever its length."""
    for tok in _tokens(s, pos, MAX_TOKENS):
        ok = not toks or _can_follow(toks[-1], tok)
        toks.append(tok)
        if not ok:
            break
    return toks


def _check_quoted(s: str, q: str, ctx: str) -> SqliResult | None:
    end = _breakout(s, q)
    first = s.find(q) + 1
    if 0 < first != end and s[first - 2 : first] == "\\" + q:
        # SQLite and standard SQL don't treat a backslash as an escape: admin\' or 1=1--
        r = _judge_quoted(s, q, ctx, first)
        if r is not None:
            return r
    if end < 0:
        return None
    return _judge_quoted(s, q, ctx, end)


def _judge_quoted(s: str, q: str, ctx: str, end: int) -> SqliResult | None:
    head = s[:end]
    toks = _collect(s, end, [("s", q + head)])
    if len(toks) < 2 or (len(toks) == 2 and not _can_follow(toks[0], toks[1])):
        return None  # the quote is followed by a word: O'Brien, we'll
    j = _judge(toks, 0, 1)
    reason = _strong_reason(j, quoted=True)
    if reason is None and j.complete:
        second = toks[1][0]
        ops = sum(1 for t in toks if t[0] in "oc&" and t[1] not in ("<", ">"))
        # the query's own closing quote ends a value that stops inside a string: in an attack that
        # tail is short ("' or 'a'='a"); prose with a stray quote runs on ("allow '=' and other ...")
        short_tail = toks[-1][0] == "s" and len(toks[-1][1]) <= 12 and "\n" not in toks[-1][1]
        tail_ok = j.comment or short_tail or toks[-1][0] != "s"
        if j.comment and _comment_ok(toks, head) and (
            _clean_comment(toks[-1][1]) or any(t[0] in "c&();BUESWfF1v" for t in toks[1:-1])
        ):
            reason = "comment-truncation"
        elif j.logic and (j.logic_literal or j.logic_cmp) and tail_ok:
            reason = "boolean"
        elif j.first_cmp_literal and _IDENT.fullmatch(head[:-1]) and (
            j.comment or (short_tail and toks[1][1] in _COMPARE_OPS)
        ):
            reason = "comparison"
        elif (ops >= 2 and short_tail and len(toks) >= 4 and ("c" in j.fp or "&" in j.fp) and (
            sum(1 for t in toks if t[0] == "&" and t[1].isalpha()) < ops  # not just words: "x" and "y"
        )) or j.op_func or (j.subquery and second in "oc&("):
            reason = "expression"
        elif (q == "'" and len(toks) == 3 and toks[1][1] in _ARITH and toks[2][1] == "'"
              and _IDENT.fullmatch(head[:-1])):
            reason = "arithmetic"  # '-'  '*'  '^': MySQL compares '' - '' = 0 with every non-numeric name
        elif j.clause and (j.comment or len(toks) <= 6):
            reason = "clause"
    if reason is None:
        return None
    return SqliResult("".join(j.fp), ctx, reason)


def _comment_ok(toks: list[Token], head: str) -> bool:
    """Breakout, a valid continuation, then a comment cutting off the rest of the query. When nothing
    but the comment follows the quote ("admin'--"), the quoted part must look like one token (a user
    name, an id): product titles and prose with a stray quote and dashes have spaces."""
    if len(toks) > 2:
        # something SQL must happen between the quote and the comment ("x' or 1--", "x') --"),
        # not just words ("The 'Join' button ... `#cart`")
        return any(t[0] in "oc);BUESWfF1v" for t in toks[1:-1])
    return _IDENT.fullmatch(head[:-1].strip()) is not None


_IDENT = re.compile(r"[\w.@$-]*")


def _clean_comment(text: str) -> bool:
    """A comment that cuts the query off, as injections write it: the marker alone or followed by a
    blank (`admin'--`, `x')#`, `1) -- -`, `'/*`). Characters glued to a `#` or `--` (`p@ss'#s?x`,
    `Dk)#]slZ`) are what random passwords and tokens hold; when nothing SQL (a comparison, a call, a
    bracket, a keyword) stands between the break-out and the comment, such a comment is no evidence."""
    rest = text[2:] if text.startswith("/*") else text.lstrip("-#")
    # `--sp_password`: SQL Server leaves a statement holding that word out of its trace log
    return not rest or rest[0] in " \t\r\n\x0b\x0c-+*/;" or rest[:11].lower() == "sp_password"


def _strong_reason(j: _Judge, *, quoted: bool) -> str | None:
    if j.union:
        return "union-select"
    if j.stacked:
        return "stacked-query"
    if j.waitfor or j.danger:
        return "time-or-error-function"
    if j.logic and (j.logic_const or j.logic_func or (quoted and j.logic_cmp)):
        return "tautology" if j.logic_const else "boolean"
    return None


def _check_none(s: str) -> SqliResult | None:
    toks = list(_tokens(s, 0, 1))
    if not toks:
        return None
    first = toks[0]
    if first[0] == "E" and s.strip().count("\n") >= 2:
        # a SELECT over three lines or more is a query document (a BI tool's saved question, a SQL
        # console, a notebook): run as written by design, it escapes no literal in this context
        return None
    if first[0] == "E" or first[0] == "S":
        return _check_statement(_collect(s, 0, []), s)
    toks = _collect(s, 0, [])
    if len(toks) < 2 or (len(toks) == 2 and not _can_follow(toks[0], toks[1])):
        return None  # one token of SQL, then prose: "Please select ..."
    if not (first[0] in _EXPR_START or first[0] in "U&;)" or (first[0] == "o" and first[1] in _UNARY)
            or first[1] in ("case", "exists")):
        return None
    j = _judge(toks, 0)
    reason = _strong_reason(j, quoted=False)
    if reason is None and j.complete:
        if j.clause and (j.const_cmp or "f" in j.fp or "F" in j.fp):
            reason = "clause"
        elif j.comment and len(toks) > 2 and _clean_comment(toks[-1][1]) and (
            j.close_paren or j.clause or j.const_cmp or (j.logic and (j.logic_cmp or j.logic_literal))
        ):
            reason = "comment-truncation"
        elif j.logic and j.logic_literal and j.comment:
            reason = "boolean"
        elif _bare_tautology(toks):
            reason = "tautology"
        elif j.logic and j.const_cmp and (j.logic_literal or j.logic_cmp):
            reason = "tautology"  # 1=1 or 1 / 1 or x=x: the WHERE clause no longer depends on the row
        elif j.strong_subquery and first[0] in "(1":
            reason = "subquery"
        elif j.clause and j.comment:
            reason = "clause"
        elif j.close_paren and j.logic and (j.logic_cmp or j.logic_literal):
            reason = "boolean"
        elif first[0] == "f" and "k" not in j.fp[:4] and (
            j.fp.count("f") >= 2
            or "v" in j.fp
            or j.subquery
            or (first[1] in _INFO_FUNCTIONS and j.fp[1:3] == ["(", ")"])
        ):
            reason = "function-call"
    if reason is None:
        return None
    return SqliResult("".join(j.fp), "none", reason)


def _check_statement(toks: list[Token], s: str) -> SqliResult | None:
    """A value that is a whole statement (the application runs it, or it follows a stacked ';')."""
    if _statement_shape(list(_tokens(s, 0, 8))):
        return SqliResult("".join(t[0] for t in toks), "none", "statement")
    if not _plausible_statement(toks, 0, len(toks)):
        return None
    j = _judge(toks, 0)
    reason = _strong_reason(j, quoted=False)
    if reason is None and ((j.complete and len(toks) >= 4) or (j.strong_subquery and "k" in j.fp)):
        reason = "statement"
    if reason is None:
        return None
    return SqliResult("".join(j.fp), "none", reason)


_END = ("", ";", "C")
_ARITH = {"-", "+", "*", "/", "%", "^", "&", "|", "||", "&&", "div", "mod", "xor"}
_ALWAYS_TRUE = {"=", "like", "<=>", ">=", "<=", "is", "glob", "regexp", "rlike"}
_ALWAYS_FALSE = {"!=", "<>", "is not", "not like", "not regexp", "not rlike"}


def _bare_tautology(toks: list[Token]) -> bool:
    """The whole value is a constant condition: 1=1, 'a'='a', 42 like 42, 11!=1, 9999 or true."""
    core = [t for t in toks if t[0] != "C"]
    if len(core) == 3 and core[0][0] in "1s" and core[2][0] in "1s" and core[1][0] == "c":
        op = core[1][1]
        same = core[0][1].strip("'\"") == core[2][1].strip("'\"")
        return (same and op in _ALWAYS_TRUE) or (not same and op in _ALWAYS_FALSE)
    return len(core) == 3 and core[0][0] == "1" and core[1][0] == "&" and core[2][1] in ("true", "not false")


def _statement_shape(toks: list[Token]) -> bool:
    """Statement openings that prose does not produce: `create table t (`, `drop table t;`,
    `insert into t values`, `delete from t where`, `update t set c =`, `exec xp_...`, `declare @v`."""
    w = [t[1] for t in toks] + ["", "", "", "", ""]
    k = [t[0] for t in toks] + ["", "", "", "", ""]
    v0, v1, v2, v3 = w[0], w[1], w[2], w[3]
    if v0 == "create" and v1 in ("table", "function", "procedure", "trigger", "view"):
        return (k[2] in "nsg" and v3 in ("(", "as", "returns", "before", "after", "on")) or k[2] == "g"
    if v0 == "drop" and v1 in ("table", "database", "view", "function", "procedure", "user", "index", "schema"):
        return k[2] in "nk" and (k[3] in _END or (v2 == "if" and v3 == "exists"))
    if v0 == "alter" and v1 in ("table", "user", "database", "login"):
        return k[2] == "n" and v3 in ("add", "drop", "change", "modify", "rename", "alter", "with", "set", "identified")
    if v0 == "insert" and v1 == "into":
        return k[2] in "ng" and (v3 in ("values", "select", "(", "set") or k[2] == "g")
    if v0 == "delete" and v1 == "from":
        return k[2] == "n" and (v3 in ("where", ";") or k[3] == "C" or (v3 == "" and k[2] == "n" and "_" in v2))
    if v0 == "update":
        return k[1] == "n" and v2 == "set" and k[3] == "n" and w[4] == "="
    if v0 == "truncate" and v1 == "table":
        return k[2] == "n"
    if v0 in ("exec", "execute"):
        return (k[1] == "v" or (v1 == "(" and k[2] in "sv") or v1 == "immediate"
                or v1.startswith(("xp_", "sp_", "master.", "dbms_", "sys.")))
    if v0 == "declare":
        return k[1] == "v"
    if v0 == "shutdown":
        return k[1] in _END or v1 == "with"
    return False


# --- a value that is a SQL function call (numeric-context injection, CRS 942151's technique) ------
# `id=concat(0x7e,version())`, `sort=substring(@@version,1,1)`, a probe cut off at `ascii(`. Names
# shared with everyday code and maths (sin, trim, md5, left) need more than a plain call to count:
# "Trim (cm)", "pow(x, 2)", "Database (MySQL)" stay quiet.
_GENERIC_CALLS = frozenset({
    "abs", "sin", "cos", "tan", "cot", "asin", "acos", "atan", "atan2", "pow", "power", "sqrt", "exp", "log",
    "ln", "log2", "log10", "floor", "ceil", "round", "rand", "sign", "pi", "degrees", "radians", "trim",
    "ltrim", "rtrim", "lower", "upper", "length", "len", "md5", "sha1", "sha2", "hex", "ord", "chr", "char",
    "mid", "left", "right", "insert", "replace", "decode", "encode", "format", "reverse", "repeat", "space",
    "count", "min", "max", "sum", "avg", "position", "locate", "instr", "compress", "uncompress", "now",
    "quote", "printf", "str", "field", "row", "exists", "mod", "bin", "oct", "lpad", "rpad", "if", "json",
    "unicode", "truncate", "convert", "cast", "lcase", "ucase", "soundex", "crc32", "glob", "likely", "unlikely",
    "changes", "password", "encrypt", "sha", "ceiling", "quarter", "weekday", "microsecond", "dayname", "monthname",
    "dump", "extract", "hour", "week", "timestamp", "std", "values", "current_date", "current_time",
    "current_timestamp", "localtimestamp",
})
# SQL functions the tokenizer does not know (it reads them as calls of unknown functions): dates,
# locks, network and JSON helpers, MySQL/PostgreSQL/SQLite/Oracle built-ins seen in injections.
_CALL_EXTRA = frozenset({
    "adddate", "addtime", "aes_encrypt", "aes_decrypt", "bit_count", "bit_and", "bit_or", "bit_xor", "ceiling",
    "convert_tz", "curtime", "current_setting", "date_add", "date_format", "date_sub", "datediff", "dayname",
    "dayofmonth", "dayofweek", "dayofyear", "des_encrypt", "des_decrypt", "encrypt", "from_days", "from_unixtime",
    "get_format", "get_lock", "inet_aton", "inet_ntoa", "inet6_aton", "inet6_ntoa", "is_free_lock", "is_used_lock",
    "is_ipv4", "is_ipv6", "last_day", "makedate", "master_pos_wait", "microsecond", "monthname", "old_password",
    "password", "period_add", "period_diff", "pg_client_encoding", "pg_database_size", "pg_user", "quarter",
    "release_lock", "row_to_json", "sec_to_time", "sha", "sqlite_compileoption_get", "sqlite_compileoption_used",
    "sqlite_source_id", "str_to_date", "subdate", "subtime", "substring_index", "time_format", "time_to_sec",
    "timediff", "timestampadd", "timestampdiff", "to_days", "to_seconds", "unix_timestamp", "utc_date", "uuid_short",
    "weekday", "weekofyear", "yearweek", "json_agg", "json_build_object", "json_object_agg", "jsonb_build_object",
    "to_json", "to_jsonb", "array_agg", "array_to_string", "xmlagg", "xmlelement", "sys_context", "userenv",
    "database_to_xml", "query_to_xml", "pg_ls_dir", "pg_stat_file", "current_user_id", "bin_to_num", "rawtohex",
    "hextoraw", "dump", "json_extract_path", "jsonb_extract_path", "json_array_length", "jsonb_pretty",
    "json_typeof", "jsonb_insert", "procedure_analyse", "stddev_pop", "stddev_samp", "uncompressed_length",
    "current_date", "current_time", "current_timestamp", "localtimestamp", "extract", "hour", "week", "timestamp",
    "std", "values",
})
_CALL_HEAD = re.compile(r"[\s(,]*([a-z_][\w.]*)[^\w\s(]{0,3}\s*(?=\()", re.I)


def sql_call_check(value: str) -> SqliResult | None:
    """The value opens with a call of a known SQL function and reads as SQL to its end."""
    m = _CALL_HEAD.match(value[:MAX_SCAN])
    if m is None:
        return None
    name = m.group(1).lower()
    if name not in _FUNCTIONS and name not in _CALL_EXTRA and name != "div":
        return None
    s = name + value[m.end():MAX_SCAN]  # `md5\(`, `encode=(`: junk before the parenthesis dropped
    toks = _collect(s, 0, [])
    if toks and toks[0][0] not in "fF" and (name in _CALL_EXTRA or name == "div"):
        # the tokenizer reads these as unknown calls, literals (current_date) or an operator (DIV)
        toks = _collect(s, len(name), [("f", name)])
    if name == "div" and any(t[0] in "nk" for t in toks):
        return None  # PostgreSQL's div(a, b) with numbers only: div(23, -2), not div(class)
    if not toks or toks[0][0] not in "fF" or not _judge(toks, 0).complete:
        return None
    depth = 0
    marker = False
    for k, (t, text) in enumerate(toks):
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        elif (t in "vEUCF;&" or (t == "1" and text[:2].lower() == "0x")
              or (k and t == "f" and text not in _GENERIC_CALLS)):
            marker = True  # SQL-only content: @var, SELECT, a comment, 0x.., a SQL function
    fp = "".join(t[0] for t in toks)
    if depth > 0 or marker:
        return SqliResult(fp, "none", "function-call")
    if name in _GENERIC_CALLS or name in _INFO_FUNCTIONS or len(toks) < 4:
        return None  # a closed plain call: pow(x, 2), Database (MySQL), version()
    return SqliResult(fp, "none", "function-call")  # group_concat(col), find_in_set(x, col)
