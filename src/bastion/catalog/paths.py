"""Path templating: raw paths in, route templates out (`/users/123/orders/9f1c…` -> `/users/{id}/orders/{uuid}`).

A prefix tree per host. At each position a segment is either a literal child or goes to the one
parameter child. A segment becomes a parameter when it looks like an id (integer, uuid, hash,
email, date, opaque token), or by cardinality: once a position has many distinct words, most of
them seen once (slugs, usernames), the position turns parametric and its words fold into the
parameter. Plain words that carry real traffic of their own (`/users/me`, `/articles/search`)
stay literal siblings, and a word that becomes a heavy hitter of a parameter is promoted back.

Memory is bounded by `max_nodes`: when the tree is full it only matches, it never grows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from bastion.catalog.sketch import TopK
from bastion.catalog.values import KIND_NAME, is_keyword, is_version, segment_kind

MAX_SEGMENTS = 16
LONG_SEGMENT = 64  # longer segments are never literals (a literal is a word someone wrote in a router)


class Node:
    __slots__ = ("eps", "hh", "hits", "kind", "lits", "param", "parametric", "pname")

    def __init__(self, kind: str = "") -> None:
        self.lits: dict[str, Node] = {}
        self.param: Node | None = None
        self.parametric = False
        self.hits = 0
        self.kind = kind  # on a parameter node: the kind it was created for (names it, stays fixed)
        self.pname = KIND_NAME.get(kind, "name") if kind else ""
        self.hh: TopK | None = None  # on a parameter of a parametric position: frequent plain words
        self.eps: dict[str, Any] | None = None  # method -> endpoint stats (owned by the learner)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"h": self.hits}
        if self.kind:
            d["k"] = self.kind
        if self.parametric:
            d["pm"] = 1
        if self.lits:
            d["l"] = {k: c.to_dict() for k, c in self.lits.items()}
        if self.param is not None:
            d["p"] = self.param.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        n = cls(str(d.get("k", "")))
        n.hits = int(d.get("h", 0))
        n.parametric = bool(d.get("pm"))
        n.lits = {str(k): cls.from_dict(v) for k, v in d.get("l", {}).items()}
        if "p" in d:
            n.param = cls.from_dict(d["p"])
        return n


Merger = Callable[[Node, Node], None]  # folds the endpoints of the second node into the first


def split_path(raw: str) -> list[str] | None:
    """Decoded, non-empty segments of a raw path; None when too deep to be a real route."""
    segs = [unquote(s, errors="replace") if "%" in s else s for s in raw.split("/") if s]
    return segs if len(segs) <= MAX_SEGMENTS else None


class PathTree:
    """The templates of one host."""

    def __init__(self, *, max_nodes: int, budget: list[int], merge_eps: Merger,
                 min_siblings: int = 8, root_min_siblings: int = 16, max_siblings: int = 100,
                 promote_hits: int = 20) -> None:
        self.root = Node()
        self.max_nodes = max_nodes
        self.budget = budget  # [nodes in use], shared by every host's tree
        self.merge_eps = merge_eps
        self.min_siblings = min_siblings
        self.root_min_siblings = root_min_siblings
        self.max_siblings = max_siblings
        self.promote_hits = promote_hits
        self.changed = False  # structure changed (a fold or a promotion): templates were renamed

    def _new(self, kind: str = "") -> Node | None:
        if self.budget[0] >= self.max_nodes:
            return None
        self.budget[0] += 1
        return Node(kind)

    def route(self, segs: list[str], create: bool) -> tuple[Node, str, list[tuple[str, str]]] | None:
        """Walk (and when `create`, grow) the tree. Returns the leaf, its template and the
        (parameter name, raw value) pairs; None when the path matches nothing known."""
        node = self.root
        parts: list[str] = []
        params: list[tuple[str, str]] = []
        names: dict[str, int] = {}
        for depth, seg in enumerate(segs):
            nxt = node.lits.get(seg)
            if nxt is None:
                kind = segment_kind(seg)
                if kind is None and len(seg) > LONG_SEGMENT:
                    kind = "token"
                if kind is None and not node.parametric:
                    if not create:
                        return None
                    nxt = self._new()
                    if nxt is None:
                        return None
                    node.lits[seg] = nxt
                    nxt.hits += 1
                    if self._should_fold(node, depth):
                        self._fold(node)
                        nxt = node.lits.get(seg)
                    if nxt is not None:
                        parts.append(seg)
                        node = nxt
                        continue
                    nxt = node.param
                    assert nxt is not None
                    nxt.hits -= 1  # counted below
                else:
                    nxt = node.param
                    if nxt is None:
                        if not create:
                            return None
                        nxt = self._new(kind or "slug")
                        if nxt is None:
                            return None
                        node.param = nxt
                    if kind is None and create and is_keyword(seg):
                        promoted = self._heavy(node, nxt, seg)
                        if promoted is not None:
                            promoted.hits += 1
                            parts.append(seg)
                            node = promoted
                            continue
                nxt.hits += 1
                name = nxt.pname
                c = names.get(name, 0) + 1
                names[name] = c
                if c > 1:
                    name = f"{name}{c}"
                parts.append("{" + name + "}")
                params.append((name, seg))
                node = nxt
                continue
            nxt.hits += 1
            parts.append(seg)
            node = nxt
        return node, "/" + "/".join(parts), params

    # --- cardinality --------------------------------------------------------------------------

    def _should_fold(self, node: Node, depth: int) -> bool:
        lits = [c for k, c in node.lits.items() if not is_version(k)]
        d = len(lits)
        if d >= self.max_siblings:
            return True
        if d < (self.root_min_siblings if depth == 0 else self.min_siblings):
            return False
        # Siblings with the same sub-resources (/tenants/acme/settings, /tenants/globex/settings)
        # are values of one parameter, however often each is used.
        shared: dict[str, int] = {}
        for c in lits:
            for k in c.lits:
                shared[k] = shared.get(k, 0) + 1
        if shared and max(shared.values()) * 4 >= (d - 1) * 3:
            return True
        total = sum(c.hits for c in lits)
        # Busy words (/articles/search next to the slugs) are judged on their own: they stay literal.
        rest = [k for k, c in node.lits.items() if not is_version(k) and not _busy(c.hits, total)]
        hits = sum(node.lits[k].hits for k in rest)
        # Slugs look like slugs (`how-to-cook-pasta`, `post_42`): less evidence is needed than for
        # plain words, which may be the resources of a young catalog (`users`, `orders`).
        sluggy = sum(1 for k in rest if not is_keyword(k)) * 4 >= len(rest) * 3
        need = self.min_siblings if sluggy else 3 * self.min_siblings
        if len(rest) < self.min_siblings or hits < need:
            return False
        singles = sum(1 for k in rest if node.lits[k].hits == 1)
        # Good-Turing: singles/hits estimates the chance that the next request brings a value never
        # seen. Real resources repeat (low); slugs and usernames keep coming (high).
        return singles * 2 >= hits

    def _fold(self, node: Node) -> None:
        """Turn a position parametric: words without traffic of their own fold into the parameter."""
        before = _count(node)
        node.parametric = True
        if node.param is None:
            p = Node("slug")  # the budget already counts the literals folding into it
            node.param = p
        else:
            p = node.param
        total = sum(c.hits for c in node.lits.values())
        for k in sorted(node.lits):
            c = node.lits[k]
            if is_version(k) or (is_keyword(k) and _busy(c.hits, total)):
                continue
            del node.lits[k]
            self._merge(p, c)
        self.budget[0] += _count(node) - before
        self.changed = True

    def _merge(self, into: Node, other: Node) -> None:
        into.hits += other.hits
        if other.eps:
            self.merge_eps(into, other)
        for k, c in other.lits.items():
            mine = into.lits.get(k)
            if mine is None:
                into.lits[k] = c
            else:
                self._merge(mine, c)
        if other.param is not None:
            if into.param is None:
                into.param = other.param
            else:
                self._merge(into.param, other.param)
        into.parametric = into.parametric or other.parametric

    def _heavy(self, node: Node, param: Node, seg: str) -> Node | None:
        """Track plain words landing on a parameter; promote one that carries a tenth of its traffic."""
        if param.hh is None:
            param.hh = TopK(8)
        param.hh.add(seg)
        n = param.hh.counts.get(seg, 0)
        if n >= self.promote_hits and n * 10 >= param.hits:
            lit = self._new()
            if lit is None:
                return None
            node.lits[seg] = lit
            del param.hh.counts[seg]
            self.changed = True
            return lit
        return None

    # --- listing ------------------------------------------------------------------------------

    def walk(self) -> list[tuple[str, Node]]:
        """Every (template, node) that holds endpoints, depth first, in a stable order."""
        out: list[tuple[str, Node]] = []

        def rec(node: Node, parts: list[str], names: dict[str, int]) -> None:
            if node.eps:
                out.append(("/" + "/".join(parts), node))
            for k in sorted(node.lits):
                rec(node.lits[k], [*parts, k], names)
            if node.param is not None:
                n2 = dict(names)
                name = node.param.pname
                c = n2.get(name, 0) + 1
                n2[name] = c
                rec(node.param, [*parts, "{" + (name if c == 1 else f"{name}{c}") + "}"], n2)

        rec(self.root, [], {})
        return out

    def count_nodes(self) -> int:
        return _count(self.root)


def _busy(hits: int, total: int) -> bool:
    """A word with traffic of its own: at least 5 hits and a tenth of its position's."""
    return hits >= 5 and hits * 10 >= total


def _count(n: Node) -> int:
    return 1 + sum(_count(c) for c in n.lits.values()) + (_count(n.param) if n.param else 0)
