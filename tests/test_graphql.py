"""GraphQL abuse: introspection, batches, alias brute force, depth, directives, fragment cycles.

Each case is a request as a front-end builds it; the assertion is on the rule ids the graphql
detector reports. Legitimate GraphQL (fragments, a few aliases, inline fragments, a Relay
connection a dozen levels deep, `@include`, a batch of two) must pass.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion.detect import graphql as G
from bastion.testing import make_pipeline, rule_ids

JSON = {"Content-Type": "application/json"}
WORDS = ["123456", "password", "qwerty", "letmein", "admin", "welcome", "monkey", "dragon", "111111", "abc123"]
INTROSPECTION = (
    "query IntrospectionQuery { __schema { queryType { name } mutationType { name } types { ...FullType } } } "
    "fragment FullType on __Type { kind name fields(includeDeprecated: true) { name args { name type { name kind } } "
    "type { name kind ofType { name kind } } } }"
)


def gql(query: str, variables: dict[str, Any] | None = None, path: str = "/graphql") -> dict[str, Any]:
    doc: dict[str, Any] = {"query": query}
    if variables is not None:
        doc["variables"] = variables
    return {"method": "POST", "target": path, "headers": JSON, "body": json.dumps(doc).encode()}


def get(query: str) -> dict[str, Any]:
    from urllib.parse import quote

    return {"method": "GET", "target": "/graphql?query=" + quote(query)}


MUST_MATCH = [
    (G.INTROSPECTION, gql(INTROSPECTION)),
    (G.INTROSPECTION, get("{__schema{types{name,fields{name}}}}")),
    (G.INTROSPECTION, gql('query { t: __type(name: "User") { fields { name } } }')),
    (G.INTROSPECTION, {"method": "POST", "target": "/api/graphql", "headers": {"Content-Type": "application/graphql"},
                       "body": b"{ __schema { types { name } } }"}),
    (G.INTROSPECTION, {"method": "POST", "target": "/graphql", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}, "body": b"query=%7B__schema%7Btypes%7Bname%7D%7D%7D"}),
    (G.BATCH, {"method": "POST", "target": "/graphql", "headers": JSON, "body": json.dumps(
        [{"operationName": "P", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}}] * 30
    ).encode()}),
    (G.BATCH, {"method": "POST", "target": "/graphql", "headers": JSON, "body": json.dumps(
        [{"query": "mutation($u:String!,$p:String!){login(username:$u,password:$p){token}}",
          "variables": {"u": "admin", "p": WORDS[i % 10] + str(i)}} for i in range(100)]).encode()}),
    (G.CREDENTIAL_ALIASES, {"method": "POST", "target": "/graphql", "headers": JSON, "body": json.dumps(
        [{"query": "mutation($p:String!){login(username:\"admin\",password:$p){token}}", "variables": {"p": w}}
         for w in WORDS[:5]]).encode()}),
    (G.ALIASES, gql("mutation { " + " ".join(f'a{i}: login(username: "admin", password: "{w}{i}") {{ token }}'
                                             for i, w in enumerate(WORDS * 5)) + " }")),
    (G.CREDENTIAL_ALIASES, gql("query { " + " ".join(f'c{i}: verifyOtp(code: "{i:04d}") {{ ok }}'
                                                     for i in range(0, 1000, 7)) + " }")),
    (G.CREDENTIAL_ALIASES, gql("mutation { auth { " + " ".join(f'a{i}: signIn(email: "a@x", password: "{w}") {{ ok }}'
                                                             for i, w in enumerate(WORDS[:4])) + " } }")),
    (G.CREDENTIAL_ALIASES, gql("mutation { " + " ".join(f'r{i}: redeemCoupon(code: "SAVE{i:03d}") {{ ok }}'
                                                        for i in range(6)) + " }")),
    (G.ALIASES, gql("query { " + "__typename " * 500 + "}")),
    (G.DEPTH, gql("query { user(id: 1) { " + "friends { " * 18 + "id " + "} " * 18 + "} }")),
    (G.DEPTH, gql("query { ...A } fragment A on Query { a { ...B } } fragment B on A { " + "b { " * 15 + "id"
                  + " }" * 15 + " }")),
    (G.DIRECTIVES, gql("query { __typename " + "@aa" * 600 + " }")),
    (G.FRAGMENT_CYCLE, gql("query { ...A } fragment A on Query { me { ...B } } "
                           "fragment B on User { friends { ...A } }")),
    (G.GET_MUTATION, get("mutation { deleteUser(id: 1) { id } }")),
    (G.INTROSPECTION, {"method": "POST", "target": "/graphql", "headers": {"Content-Type": "text/plain"},
                       "body": b'{"query": "{ __schema { types { name } } }"}'}),
    (G.INTROSPECTION, gql("query { a: __schema { types { name } } }")),
]

MUST_NOT_MATCH = [
    gql("fragment OrderFields on Order { id total currency status lines { sku qty } }\n"
        "query Orders($first: Int = 20, $after: String) { orders(first: $first, after: $after) { edges { node "
        "{ ...OrderFields } } pageInfo { hasNextPage endCursor } } }", {"first": 20}),
    gql("mutation UpdateBio($bio: String!) { updateProfile(input: {bio: $bio}) { id bio } }",
        {"bio": "I <3 Postgres; { __schema } is how introspection starts"}),
    gql("query Product($id: ID!, $withReviews: Boolean!) { product(id: $id) { id name small: image(size: 64) "
        "{ url } large: image(size: 1024) { url } reviews @include(if: $withReviews) { rating } __typename } }"),
    gql('query { search(q: "shoes") { __typename ... on Product { id name } ... on Category { id name } '
        "... on Brand { id name } } }"),
    # a Relay connection 13 fields deep (GitHub's API), `login` selected in many places
    gql("query { viewer { login organization(login: \"acme\") { repositories(first: 5) { edges { node { name "
        "pullRequests(first: 5) { edges { node { author { login } comments(first: 3) { edges { node { author "
        "{ login } body } } } } } } } } } } } }"),
    gql("query { a: user(login: \"ann\") { login } b: user(login: \"bob\") { login } c: user(login: \"cy\") "
        "{ login } d: user(login: \"dee\") { login } }"),
    gql("mutation Login($e: String!, $p: String!) { login(email: $e, password: $p) { token user { id } } }",
        {"e": "a@b.example", "p": "x"}),
    gql('query { p1: product(id: 1) { id } p2: product(id: 2) { id } p3: product(id: 3) { id } '
        'p4: product(id: 4) { id } p5: product(id: 5) { id } p6: product(id: 6) { id } }'),
    {"method": "POST", "target": "/graphql", "headers": JSON, "body": json.dumps(
        [{"query": "query { me { id name } }"}, {"query": "query Cart { cart { items { id qty } total } }",
                                                 "operationName": "Cart"}]).encode()},
    {"method": "GET", "target": "/graphql?operationName=Product&variables=%7B%22id%22%3A%2242%22%7D&extensions="
                                "%7B%22persistedQuery%22%3A%7B%22version%22%3A1%7D%7D"},
    get("query Me { me { id name } }"),
    {"method": "GET", "target": "/search?query=__schema"},
    {"method": "GET", "target": "/search?query=mutation+%28genetics%29+BRCA1"},
    {"method": "GET", "target": "/search?query=query+builder"},
    {"method": "POST", "target": "/api/card", "headers": JSON, "body": json.dumps(
        {"query": "SELECT * FROM t WHERE a IN (SELECT b FROM u)"}).encode()},
    {"method": "POST", "target": "/_search", "headers": JSON, "body": b'{"query": {"match_all": {}}}'},
    {"method": "POST", "target": "/api/v1/saved-queries/bulk", "headers": JSON, "body": json.dumps(
        [{"name": f"q{i}", "query": f"SELECT {i} FROM t"} for i in range(30)]).encode()},
    gql("# a comment with { braces and __schema\nquery { me { id } }"),
    gql('query { note(text: """ block { { { __schema "quoted" """) { id } }'),
]


def _ids(cases: list[Any]) -> list[str]:
    return [f"{i}-{c[0] if isinstance(c, tuple) else 'ok'}" for i, c in enumerate(cases)]


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return make_pipeline(only={"graphql"})


@pytest.mark.parametrize(("rule", "kw"), MUST_MATCH, ids=_ids(MUST_MATCH))
async def test_must_match(pipeline: Any, rule: str, kw: dict[str, Any]) -> None:
    assert rule in await rule_ids(pipeline, **kw)


@pytest.mark.parametrize("kw", MUST_NOT_MATCH, ids=_ids(MUST_NOT_MATCH))
async def test_must_not_match(pipeline: Any, kw: dict[str, Any]) -> None:
    assert await rule_ids(pipeline, **kw) == set()


def test_every_rule_has_a_must_match_case() -> None:
    rules = {v for k, v in vars(G).items() if k.isupper() and isinstance(v, str) and v.startswith("graphql-")}
    assert rules == {rule for rule, _ in MUST_MATCH}


async def test_limits_and_introspection_are_settings() -> None:
    relaxed = make_pipeline({"graphql": {"introspection": True, "max_depth": 30, "max_batch": 200}},
                            only={"graphql"})
    for rule, kw in MUST_MATCH:
        if rule in (G.INTROSPECTION, G.DEPTH, G.BATCH):
            assert rule not in await rule_ids(relaxed, **kw)


async def test_exclusion_per_endpoint() -> None:
    pipeline = make_pipeline({"graphql": {"exclusions": [{"path": "/internal/*", "check": "introspection"}]}},
                             only={"graphql"})
    assert await rule_ids(pipeline, **gql(INTROSPECTION, path="/internal/graphql")) == set()
    assert G.INTROSPECTION in await rule_ids(pipeline, **gql(INTROSPECTION))
    deep = "query { __schema { types { name } } a " + "{ b " * 20 + "}" * 20 + " }"
    assert await rule_ids(pipeline, **gql(deep, path="/internal/graphql")) == {G.DEPTH}


def test_analyse_counts() -> None:
    shape = G.analyse("query Q($a: In = {x: {y: 1}}) @d { a: f(x: {z: [1, {w: 2}]}) { g @skip(if: true) } b: f { g } }")
    assert (shape.depth, shape.directives, shape.same_field) == (2, 2, ("f", 2))
    assert not shape.introspection and not shape.cycle


def test_hostile_documents_are_cheap() -> None:
    import time

    for doc in ("{" * 100_000, "}" * 50_000 + "{", "... " * 50_000, '"' * 99_999, "fragment A on B { ...A }" * 2000,
                "query { a " + "@x(y: {" * 10_000,
                "query { ...F0 } " + " ".join(f"fragment F{i} on T {{ a {{ ...F{i + 1} }} }}" for i in range(3000))):
        t = time.process_time()
        G.analyse(doc)
        assert time.process_time() - t < 1.0
