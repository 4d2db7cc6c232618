"""GraphQL abuse: introspection, batching, alias brute force, deep nesting, directive floods.

One GraphQL request can do the work of thousands: a batch (a JSON array of operations) or a
document that selects the same field under many aliases tries a hundred passwords or OTP codes
past a per-request rate limit; a query nested twenty levels deep or carrying hundreds of
directives makes the server's resolver and validator work for minutes. Introspection hands an
attacker the whole schema (Apollo Server refuses it in production by default). None of this is an
injection, so the signature rules cannot see it; this detector reads the document's structure.

Cheap on other traffic: it only looks at requests that are GraphQL (a JSON body whose top-level
`query` is a GraphQL document, a JSON array of such operations, an `application/graphql` body, a
`query` form field or query parameter that reads as GraphQL). The document is tokenized once
(strings and comments skipped) and walked without building a tree; fragments are expanded for the
depth only, with cycles detected (a fragment that spreads itself is refused: some servers loop).

Every limit is a setting (`graphql:`), and `graphql.exclusions` turns a check off for one
endpoint (a schema explorer on an internal path). Findings carry counts, never the document.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson

from bastion.config import BastionConfig
from bastion.detect.graphql_settings import GraphQLConfig
from bastion.detect.httpsyntax import is_json_type, readable_body
from bastion.engine.registry import BuildContext
from bastion.exchange import Exchange
from bastion.verdict import Finding, Severity

INTROSPECTION = "graphql-introspection"
BATCH = "graphql-batch"
ALIASES = "graphql-aliases"
CREDENTIAL_ALIASES = "graphql-credential-aliases"
DEPTH = "graphql-depth"
DIRECTIVES = "graphql-directives"
FRAGMENT_CYCLE = "graphql-fragment-cycle"
GET_MUTATION = "graphql-get-mutation"

# rule id -> the `check` name exclusions use
_CHECK = {
    INTROSPECTION: "introspection", BATCH: "batch", ALIASES: "aliases", CREDENTIAL_ALIASES: "aliases",
    DEPTH: "depth", DIRECTIVES: "directives", FRAGMENT_CYCLE: "fragments", GET_MUTATION: "get_mutation",
}

# Significant tokens; whitespace, commas and anything else between them is skipped by finditer.
# Strings (block strings first) and comments are matched whole so their content is never read as
# names or braces; an unterminated one runs to the end of the document.
_TOKEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)|"(?:[^"\\\n\r]|\\.)*"?|#[^\n\r]*|\.\.\.|[_A-Za-z][_0-9A-Za-z]*|[{}()@:]',
    re.DOTALL,
)
# A document starts with a selection set or an operation / fragment keyword.
_LOOKS_GRAPHQL = re.compile(
    r"[\s,\ufeff]*(?:#[^\n]*\n[\s,]*)*(?:\{|(?:query|mutation|subscription)\b\s*[_A-Za-z({@]|fragment\s+[_A-Za-z])"
)
# Fields that check a secret: several of them in one request is a guessing run (a login, an OTP,
# a reset or coupon code tried a hundred times under aliases or in a batch). Read word by word
# (`verifyOtp`, `sign_in`, `redeemCoupon`), so `shipping` holds no `pin` and `promotion` no `promo`.
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+[a-z]*")
_SECRET_WORDS = frozenset({
    "login", "logon", "signin", "password", "passwd", "passcode", "passphrase", "pin", "otp", "totp", "hotp", "mfa",
    "2fa", "redeem", "coupon", "voucher", "giftcard", "authenticate", "authentication",
})
_CHECK_VERBS = frozenset({"verify", "validate", "check", "submit", "confirm", "try", "test", "apply", "use", "reset"})
_CHECKED = frozenset({"code", "token", "otp", "pin", "email", "phone", "password", "answer", "secret", "key", "promo"})


def is_credential_field(name: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(name)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    pairs = set(itertools.pairwise(words))
    if ("sign", "in") in pairs or ("log", "in") in pairs or ("two", "factor") in pairs or ("gift", "card") in pairs:
        return True
    return any(w in _CHECK_VERBS for w in words) and any(w in _CHECKED for w in words)
_GRAPHQL_KEY = re.compile(rb'"(?:query|persistedQuery)"')
MAX_TOKENS = 200_000  # a document beyond this is read up to here (the limits have been passed by then)
MAX_FRAGMENTS_CHAIN = 200


@dataclass(slots=True)
class _Def:
    kind: str  # query | mutation | subscription | fragment
    name: str = ""
    depth: int = 0
    spreads: list[tuple[str, int]] = field(default_factory=list)  # (fragment, field level of the spread - 1)


@dataclass(slots=True)
class Shape:
    """What a document does, in counts."""

    introspection: bool = False
    depth: int = 0
    directives: int = 0
    same_field: tuple[str, int] = ("", 0)  # the field selected most often in one selection set
    credential: dict[str, int] = field(default_factory=dict)  # credential field -> most selections in one set
    root_credential: dict[str, int] = field(default_factory=dict)  # credential fields of the operation's root
    cycle: bool = False
    mutation: bool = False
    tokens: int = 0


def analyse(doc: str) -> Shape:
    """The structure of one GraphQL document (executable definitions; type-system text is read too
    and yields nothing)."""
    shape = Shape()
    defs: list[_Def] = []
    frags: dict[str, _Def] = {}
    toks = [m.group() for m in _TOKEN.finditer(doc, 0)]
    if len(toks) > MAX_TOKENS:
        toks = toks[:MAX_TOKENS]
    shape.tokens = len(toks)
    n = len(toks)
    sets: list[dict[str, int]] = []  # open selection sets: field -> times selected
    levels: list[int] = []  # field level of each open selection set
    cur: _Def | None = None
    field_brace = False  # the next `{` opens the selection set of the last field
    paren = 0
    worst_name, worst = "", 0
    credential: dict[str, int] = shape.credential
    root: dict[str, int] = shape.root_credential
    plain: set[str] = set()  # names known not to be credential checks
    i = 0
    while i < n:
        t = toks[i]
        c = t[0]
        i += 1
        if c == '"' or c == "#":
            continue
        if paren:  # arguments, variable definitions: values, never selections
            if t == "(":
                paren += 1
            elif t == ")":
                paren -= 1
            continue
        if t == "(":
            paren = 1
        elif t == "@":
            shape.directives += 1
            i += 1  # its name
        elif t == "{":
            if not sets:
                if cur is None:  # `{ ... }`: the query shorthand
                    cur = _Def("query")
                    defs.append(cur)
                sets.append({})
                levels.append(1)
            elif field_brace:
                sets.append({})
                levels.append(levels[-1] + 1)
            else:  # an inline fragment: its fields are at the enclosing set's level
                sets.append({})
                levels.append(levels[-1])
            field_brace = False
        elif t == "}":
            if sets:
                sets.pop()
                levels.pop()
                if not sets:
                    cur = None
            field_brace = False
        elif t == "...":
            nxt = toks[i] if i < n else ""
            if nxt == "on":
                i += 2  # `on Type`
                field_brace = False
            elif nxt and (nxt[0].isalpha() or nxt[0] == "_") and sets and cur is not None:
                cur.spreads.append((nxt, levels[-1] - 1))
                i += 1
                field_brace = False
            else:  # `... @include(if: $x) {`
                field_brace = False
        elif c.isalpha() or c == "_":
            if not sets:  # a definition's head
                if t in ("query", "mutation", "subscription"):
                    cur = _Def(t)
                    defs.append(cur)
                    if t == "mutation":
                        shape.mutation = True
                elif t == "fragment" and i < n:
                    cur = _Def("fragment", toks[i])
                    frags.setdefault(toks[i], cur)
                    i += 3  # `Name on Type`
                continue
            if i + 1 < n and toks[i] == ":" and (toks[i + 1][0].isalpha() or toks[i + 1][0] == "_"):  # `alias: field`
                name = toks[i + 1]
                i += 2
            else:
                name = t
            counts = sets[-1]
            k = counts.get(name, 0) + 1
            counts[name] = k
            if k > worst:
                worst_name, worst = name, k
            level = levels[-1]
            if cur is not None and level > cur.depth:
                cur.depth = level
            if name[0] == "_" and name in ("__schema", "__type"):
                shape.introspection = True
            elif name not in plain and (name in credential or is_credential_field(name)):
                if k > credential.get(name, 0):
                    credential[name] = k
                if level == 1:
                    root[name] = root.get(name, 0) + 1
            else:
                plain.add(name)
            field_brace = True
    shape.same_field = (worst_name, worst)
    shape.depth, shape.cycle = _depth(defs, frags)
    return shape


def _depth(defs: list[_Def], frags: dict[str, _Def]) -> tuple[int, bool]:
    """The deepest field level of any operation with its fragment spreads expanded, and whether
    a fragment spreads itself (directly or through others)."""
    memo: dict[str, int] = {}
    cycle = False

    def frag_depth(name: str, visiting: set[str]) -> int:
        nonlocal cycle
        if name in memo:
            return memo[name]
        d = frags.get(name)
        if d is None:
            return 0
        if name in visiting:
            cycle = True
            return 0
        if len(visiting) > MAX_FRAGMENTS_CHAIN:  # a chain this long is deep by itself
            return MAX_FRAGMENTS_CHAIN
        visiting.add(name)
        best = d.depth
        for spread, base in d.spreads:
            best = max(best, base + frag_depth(spread, visiting))
        visiting.discard(name)
        memo[name] = best
        return best

    deepest = 0
    for d in defs:
        best = d.depth
        for spread, base in d.spreads:
            best = max(best, base + frag_depth(spread, set()))
        deepest = max(deepest, best)
    for name in frags:  # an unused fragment can still cycle (and validation walks it)
        frag_depth(name, set())
    return deepest, cycle


def looks_like_graphql(text: str) -> bool:
    """An operation has a selection set: `?query=mutation (genetics)` is a search, not GraphQL."""
    return "{" in text and _LOOKS_GRAPHQL.match(text) is not None


class GraphQLDetector:
    name = "graphql"

    def __init__(self, cfg: GraphQLConfig) -> None:
        self.cfg = cfg
        self.observe = False
        self._exclusions = [
            (re.compile(fnmatch.translate(e.path)), (e.method or "").upper(), e.check) for e in cfg.exclusions
        ]

    # --- entry points -----------------------------------------------------------------------

    def request_headers(self, ex: Exchange) -> None:
        target = ex.request.target
        q = target.find("?")
        if q < 0 or "query=" not in target:
            return
        for part in target[q + 1:].split("&"):
            k, _, v = part.partition("=")
            if k == "query" and v:
                doc = unquote_plus(v, errors="surrogateescape")
                if looks_like_graphql(doc):
                    self._check(ex, [doc], batch=0, zone="query")
                return

    def request_body(self, ex: Exchange) -> None:
        req = ex.request
        mt = readable_body(req)
        if mt is None:
            return
        body = req.body
        mtype = mt.type
        if mtype == "application/graphql":
            text = body.decode("utf-8", "replace")
            self._check(ex, [text], batch=0, zone="body")
        elif is_json_type(mtype) or (
            # JSON sent as text/plain (a "simple" cross-site request some servers still execute)
            mtype in ("", "text/plain", "application/octet-stream") and body.lstrip()[:1] in (b"{", b"[")
        ):
            if _GRAPHQL_KEY.search(body):  # an operation, or a batch of persisted ones
                self._json(ex, body)
        elif mtype == "application/x-www-form-urlencoded":
            if b"query=" in body:
                for part in body.decode("latin-1").split("&"):
                    k, _, v = part.partition("=")
                    if k == "query":
                        doc = unquote_plus(v, encoding="utf-8", errors="replace")
                        if looks_like_graphql(doc):
                            self._check(ex, [doc], batch=0, zone="body")
                        break
        elif mtype == "multipart/form-data" and b'name="operations"' in body:
            # the GraphQL multipart request spec (file uploads): the operations are a JSON field
            start = body.find(b'name="operations"')
            head_end = body.find(b"\r\n\r\n", start)
            if head_end > 0:
                end = body.find(b"\r\n--", head_end + 4)
                self._json(ex, body[head_end + 4:end if end > 0 else len(body)])

    def _json(self, ex: Exchange, body: bytes) -> None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict):
            q = doc.get("query")
            if isinstance(q, str) and looks_like_graphql(q):
                self._check(ex, [q], batch=0, zone="body")
        elif isinstance(doc, list) and doc and isinstance(doc[0], dict) and (
            # a batch of operations, not a bulk API's list of records that have a `query` field
            looks_like_graphql(q0) if isinstance(q0 := doc[0].get("query"), str)
            else isinstance(ext := doc[0].get("extensions"), dict) and "persistedQuery" in ext
        ):
            queries = [op["query"] for op in doc if isinstance(op, dict) and isinstance(op.get("query"), str)]
            self._check(ex, [q for q in queries if looks_like_graphql(q)], batch=len(doc), zone="body")

    # --- checks -----------------------------------------------------------------------------

    def _check(self, ex: Exchange, docs: list[str], batch: int, zone: str) -> None:
        cfg = self.cfg
        skip = self._excluded(ex)
        if "*" in skip:
            return
        found: set[str] = set()

        def hit(rule: str, message: str, evidence: str, name: str = "") -> None:
            if rule in found or _CHECK[rule] in skip:
                return
            found.add(rule)
            ex.add(Finding(rule_id=rule, detector=self.name, message=message, severity=Severity.CRITICAL,
                           score=int(Severity.CRITICAL), zone=zone, name=name[:64], evidence=evidence,
                           tags=("graphql", "abuse")))

        if batch > cfg.max_batch:
            hit(BATCH, "batched GraphQL request with too many operations", f"{batch} operations > {cfg.max_batch}")
        credential: dict[str, int] = {}
        root: dict[str, int] = {}
        for doc in docs:
            shape = analyse(doc)
            if shape.introspection and not cfg.introspection:
                hit(INTROSPECTION, "GraphQL introspection query", "__schema/__type")
            name, times = shape.same_field
            if times > cfg.max_aliases:
                hit(ALIASES, "one GraphQL field selected many times (aliases or duplicates)",
                    f"{times} selections > {cfg.max_aliases}", name)
            for fname, k in shape.credential.items():
                if k > credential.get(fname, 0):
                    credential[fname] = k
            for fname, k in shape.root_credential.items():  # a batch of logins adds up
                root[fname] = root.get(fname, 0) + k
            if shape.depth > cfg.max_depth:
                hit(DEPTH, "GraphQL query nested too deep", f"depth {shape.depth} > {cfg.max_depth}")
            if shape.directives > cfg.max_directives:
                hit(DIRECTIVES, "too many GraphQL directives", f"{shape.directives} > {cfg.max_directives}")
            if shape.cycle:
                hit(FRAGMENT_CYCLE, "GraphQL fragment that spreads itself", "fragment cycle")
            if shape.mutation and ex.request.method in ("GET", "HEAD"):
                # GraphQL over HTTP: a mutation must not run on GET (a link or an image tag would
                # run it with the victim's cookies); conforming servers refuse it anyway
                hit(GET_MUTATION, "GraphQL mutation sent with GET", "mutation over GET")
        for fname, k in [*credential.items(), *root.items()]:
            if k > cfg.max_credential_aliases:
                hit(CREDENTIAL_ALIASES, "the same credential check repeated in one GraphQL request (brute force)",
                    f"{k} selections > {cfg.max_credential_aliases}", fname)
                break

    def _excluded(self, ex: Exchange) -> set[str]:
        if not self._exclusions:
            return set()
        path = ex.request.path
        method = ex.request.method
        return {check for rx, m, check in self._exclusions
                if (not m or m == method) and (rx.match(path) or (ex.route and rx.match(ex.route)))}


def make(config: BastionConfig, ctx: BuildContext) -> GraphQLDetector:
    return GraphQLDetector(config.graphql)


def as_dict(shape: Shape) -> dict[str, Any]:
    """For tests and `bastion` tooling: the shape as plain data."""
    return {
        "introspection": shape.introspection, "depth": shape.depth, "directives": shape.directives,
        "same_field": shape.same_field, "credential": dict(shape.credential), "cycle": shape.cycle,
        "mutation": shape.mutation,
    }
