"""Step-up verification: the risk challenge answered with a one-time code the API delivers.

When a verified user (a `user` key that is not a mere claim, see bastion.entity.CLAIM) reaches the
challenge band of its risk and `behaviour.step_up` is enabled, Bastion does not just refuse: it
draws a random code, keeps only a keyed hash of it with a challenge id, the user and an expiry,
and asks the API to deliver the code to that user by its own channel (email, SMS, authenticator
push): a signed POST to `deliver_url`, sent from a thread of its own, so the request path never
waits. The client gets a 401 problem+json `challenge-required` with `challenge_id`, the header to
send and `expires_in`; it retries with `<header>: <challenge_id>.<code>`. A right code (compared
in constant time) consumes the challenge and gives the user a pass for `pass_ttl`: the risk
challenge no longer applies to it, its risk is kept and a block still applies. A wrong code costs
an attempt and adds risk; the last attempt turns the challenge into a block.

Why a delivered code and not TOTP: the API already knows how to reach its users, while a TOTP
secret would have to be copied into (or fetched by) the gateway. Here no user secret ever leaves
the API, and the code is Bastion's alone: it can expire it, count attempts and consume it.

One live challenge per user: a retry within `ttl` gets the same challenge, and no second code is
sent. State is per process and bounded (`max_challenges`; expired entries swept, the oldest
evicted), or in Redis when the decisions are (`RedisChallenges`), so that several instances agree.
The body, the logs and the events never hold the code or the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.alerts.outbox import Outbox, post_json
from bastion.detect.behaviour.settings import StepUpSettings

log = logging.getLogger("bastion.stepup")

SIGNATURE_HEADER = "X-Bastion-Signature"
MAX_VALUE = 128  # a header value longer than this is malformed without looking further


class Outcome(enum.Enum):
    PASSED = "passed"
    WRONG = "wrong"  # a wrong code: one attempt spent, some left
    EXHAUSTED = "exhausted"  # a wrong code and no attempt left: the challenge is gone
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # no such challenge (never issued, already used, or evicted)
    OTHER_USER = "other-user"  # a challenge issued to another user
    MALFORMED = "malformed"


@dataclass(slots=True)
class Challenge:
    id: str
    user: bytes  # keyed digest of the user key, never the user itself
    digest: bytes  # keyed digest of (id, code)
    expires: float
    attempts_left: int


def parse(value: str) -> tuple[str, str] | None:
    """(challenge id, code) from a `<challenge_id>.<code>` header value; None if malformed."""
    if len(value) > MAX_VALUE:
        return None
    cid, dot, code = value.strip().rpartition(".")
    if not dot or not cid or not code or not code.isascii() or not code.isdigit() or not cid.isascii():
        return None
    return cid, code


def store_key(s: StepUpSettings, shared: bool) -> bytes:
    """The key of the store's digests: random per process, or (shared store) derived from
    `deliver_secret`, so that every instance computes the same digests."""
    if not shared:
        return secrets.token_bytes(32)
    return hmac.new(s.deliver_secret.encode(), b"bastion step-up store v1", hashlib.sha256).digest()


class ChallengeStore:
    """Challenges and passes of one process. Not thread-safe: used from the event loop only."""

    def __init__(self, s: StepUpSettings, key: bytes | None = None) -> None:
        self.s = s
        self._key = key or store_key(s, shared=False)
        self._challenges: OrderedDict[str, Challenge] = OrderedDict()
        self._by_user: dict[bytes, str] = {}
        self._passes: OrderedDict[bytes, float] = OrderedDict()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._challenges)

    def _user(self, user: str) -> bytes:
        return hmac.new(self._key, b"user\0" + user.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    def _code(self, cid: str, code: str) -> bytes:
        return hmac.new(self._key, f"code\0{cid}\0{code}".encode("ascii", "replace"), hashlib.sha256).digest()

    # --- passes ----------------------------------------------------------------------------------

    def has_pass(self, user: str, now: float) -> bool:
        if not self._passes:
            return False
        u = self._user(user)
        until = self._passes.get(u)
        if until is None:
            return False
        if until <= now:
            del self._passes[u]
            return False
        return True

    def _grant(self, u: bytes, now: float, ttl: float | None = None) -> None:
        self._passes.pop(u, None)
        self._passes[u] = now + (self.s.pass_ttl if ttl is None else ttl)
        while len(self._passes) > self.s.max_challenges:
            self._passes.popitem(last=False)

    # --- challenges ------------------------------------------------------------------------------

    def live(self, user: str, now: float) -> Challenge | None:
        """The user's challenge that is still valid, if any."""
        cid = self._by_user.get(self._user(user))
        ch = self._challenges.get(cid) if cid else None
        return ch if ch is not None and ch.expires > now else None

    def issue(self, user: str, now: float) -> tuple[Challenge, str]:
        """A new challenge for `user` and its code (the only time the code exists in clear)."""
        self._sweep(now)
        u = self._user(user)
        old = self._by_user.pop(u, None)
        if old:
            self._challenges.pop(old, None)
        n = self.s.code_length
        code = f"{secrets.randbelow(10**n):0{n}d}"
        cid = secrets.token_urlsafe(12)  # 16 characters of [A-Za-z0-9_-]: never a '.'
        ch = Challenge(cid, u, self._code(cid, code), now + self.s.ttl, self.s.max_attempts)
        self._challenges[cid] = ch
        self._by_user[u] = cid
        while len(self._challenges) > self.s.max_challenges:
            _, gone = self._challenges.popitem(last=False)
            if self._by_user.get(gone.user) == gone.id:
                del self._by_user[gone.user]
        return ch, code

    def verify(self, user: str, value: str, now: float) -> tuple[Outcome, Challenge | None]:
        """Check `<challenge_id>.<code>` sent by `user`. A right code consumes the challenge and
        grants a pass; a wrong one spends an attempt (the last one removes the challenge)."""
        parsed = parse(value)
        if parsed is None:
            return Outcome.MALFORMED, None
        cid, code = parsed
        ch = self._challenges.get(cid)
        if ch is None:
            return Outcome.UNKNOWN, None
        if ch.expires <= now:
            self.discard(ch)
            return Outcome.EXPIRED, None
        u = self._user(user)
        if not hmac.compare_digest(ch.user, u):
            return Outcome.OTHER_USER, None  # spends none of the owner's attempts
        if hmac.compare_digest(self._code(cid, code), ch.digest):
            self.discard(ch)
            self._grant(u, now)
            return Outcome.PASSED, ch
        ch.attempts_left -= 1
        if ch.attempts_left <= 0:
            self.discard(ch)
            return Outcome.EXHAUSTED, ch
        return Outcome.WRONG, ch

    def discard(self, ch: Challenge) -> None:
        self._challenges.pop(ch.id, None)
        if self._by_user.get(ch.user) == ch.id:
            del self._by_user[ch.user]

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 30.0
        for ch in [c for c in self._challenges.values() if c.expires <= now]:
            self.discard(ch)
        for u in [u for u, t in self._passes.items() if t <= now]:
            del self._passes[u]


# --- delivery ------------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Bastion-Signature` value: `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None, tolerance: float = 300.0) -> bool:
    """For the API's receiver: is `header` a valid, recent signature of `body`?"""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, t), f"t={t},v1={parts.get('v1', '')}")


Sender = Callable[[StepUpSettings, bytes, str], None]


def http_post(s: StepUpSettings, body: bytes, signature: str) -> None:
    post_json(s.deliver_url, body, timeout=s.deliver_timeout, agent="bastion-step-up",
              headers={SIGNATURE_HEADER: signature})


@dataclass(slots=True)
class DeliveryStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0  # over the rate cap or the queue bound: no code was sent


class Deliverer:
    """Sends codes to the API's webhook from one daemon thread; `submit` never waits."""

    def __init__(self, s: StepUpSettings, sender: Sender = http_post) -> None:
        self.s = s
        self.sender = sender
        self.stats = DeliveryStats()
        # challenges whose code never reached the API: withdrawn on the next challenge, so that the
        # user's next request gets a new code instead of waiting `ttl` for one that will not come
        self.failed: deque[Challenge] = deque(maxlen=10_000)
        self._outbox: Outbox[tuple[bytes, str, Challenge | None]] = Outbox(
            lambda item: self.sender(self.s, item[0], item[1]), self.stats, size=s.queue_size,
            name="bastion-step-up", what="step-up delivery", on_failure=self._failed,
        )
        self._window: list[float] = []

    def submit(self, doc: dict[str, str | int], mono: float, tag: Challenge | None = None) -> bool:
        """Queue one delivery. False (nothing queued) beyond the rate cap or when the queue is full.
        The `tag` of a delivery that fails joins `failed`, for the caller to withdraw."""
        w = self._window
        while w and mono - w[0] >= 60.0:
            w.pop(0)
        if len(w) >= self.s.max_deliveries_per_minute:
            self.stats.dropped += 1
            return False
        body = orjson.dumps(doc)
        if not self._outbox.put((body, sign(self.s.deliver_secret, body, int(time.time())), tag)):
            self.stats.dropped += 1
            return False
        w.append(mono)
        self.stats.queued += 1
        return True

    def _failed(self, item: tuple[bytes, str, Challenge | None]) -> None:
        if item[2] is not None:
            self.failed.append(item[2])

    def flush(self, timeout: float = 5.0) -> None:
        self._outbox.flush(timeout)

    def close(self, timeout: float = 2.0) -> None:
        self._outbox.close(timeout)


@dataclass(slots=True)
class StepUpStats:
    issued: int = 0  # challenges whose code was queued for delivery
    passed: int = 0
    refused: int = 0  # wrong, unknown, expired, malformed or another user's values
    exhausted: int = 0  # challenges that turned into a block


@dataclass(slots=True)
class Answer:
    """What a challenged request gets: the outcome of the value it sent (None: it sent none), and
    the challenge to present (None: served, blocked, or no code could be sent: a plain 401)."""

    outcome: Outcome | None = None
    challenge: Challenge | None = None
    passed: bool = False  # the user holds a pass (granted now or earlier, maybe by another instance)


_ISSUE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local h = redis.call('HMGET', ARGV[7] .. cur, 'a', 'e')
  if h[1] then return {cur, h[1], h[2], '0'} end
end
redis.call('HSET', KEYS[2], 'u', ARGV[1], 'd', ARGV[2], 'a', ARGV[3], 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[1], ARGV[6], 'PX', ARGV[5])
return {ARGV[6], ARGV[3], ARGV[4], '1'}
"""

_SPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1000 end
local left = redis.call('HINCRBY', KEYS[1], 'a', -1)
if left <= 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return left
"""

_DISCARD = """
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


class RedisChallenges:
    """Challenges and passes in Redis, so that every instance (and worker) agrees: a code issued by
    one is accepted by another, attempts are counted once for all, and a code is consumed once
    (`DEL` decides who consumed it). Keys: `<prefix>:c:<id>` (hash: user and code digests,
    attempts left, expiry), `<prefix>:u:<user digest>` (the user's live challenge id),
    `<prefix>:p:<user digest>` (a pass); each expires with its `ttl` / `pass_ttl`. Digests are
    keyed with a key derived from `deliver_secret` (the same on every instance); the comparison
    of a code's digest is made here, in constant time, not in Redis."""

    def __init__(self, s: StepUpSettings, url: str, prefix: str) -> None:
        self.s = s
        self.url = url
        self.prefix = prefix
        self.local = ChallengeStore(s, store_key(s, shared=True))  # digests, and a cache of passes
        self._redis: Any = None
        self._issue: Any = None
        self._spend: Any = None
        self._discard: Any = None

    def _r(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
            self._issue = self._redis.register_script(_ISSUE)
            self._spend = self._redis.register_script(_SPEND)
            self._discard = self._redis.register_script(_DISCARD)
        return self._redis

    def _k(self, kind: str, v: str) -> str:
        return f"{self.prefix}:{kind}:{v}"

    async def has_pass(self, user: str, now: float) -> bool:
        if self.local.has_pass(user, now):
            return True
        u = self.local._user(user)
        ms = await self._r().pttl(self._k("p", u.hex()))
        if ms is None or ms <= 0:
            return False
        self.local._grant(u, now, ms / 1000.0)  # remembered here for the rest of the pass
        return True

    async def issue(self, user: str, now: float) -> tuple[Challenge, str | None]:
        """The user's live challenge (code None), or a new one and its code."""
        self._r()
        u = self.local._user(user)
        n = self.s.code_length
        code = f"{secrets.randbelow(10**n):0{n}d}"
        cid = secrets.token_urlsafe(12)
        res = await self._issue(keys=[self._k("u", u.hex()), self._k("c", cid)],
                                args=[u.hex(), self.local._code(cid, code).hex(), self.s.max_attempts,
                                      repr(now + self.s.ttl), int(self.s.ttl * 1000), cid, self.prefix + ":c:"])
        got_id, left, expires, new = (x.decode() if isinstance(x, bytes) else str(x) for x in res)
        ch = Challenge(got_id, u, b"", float(expires), int(left))
        return ch, (code if new == "1" else None)

    async def discard(self, ch: Challenge) -> None:
        self._r()
        await self._discard(keys=[self._k("c", ch.id), self._k("u", ch.user.hex())], args=[ch.id])

    async def verify(self, user: str, value: str, now: float) -> tuple[Outcome, Challenge | None]:
        parsed = parse(value)
        if parsed is None:
            return Outcome.MALFORMED, None
        cid, code = parsed
        r = self._r()
        key = self._k("c", cid)
        h = await r.hgetall(key)
        if not h:
            return Outcome.UNKNOWN, None
        u = self.local._user(user)
        try:
            ch = Challenge(cid, bytes.fromhex(h[b"u"].decode()), bytes.fromhex(h[b"d"].decode()),
                           float(h[b"e"]), int(h[b"a"]))
        except (KeyError, ValueError):
            return Outcome.UNKNOWN, None
        if ch.expires <= now:
            await self.discard(ch)
            return Outcome.EXPIRED, None
        if not hmac.compare_digest(ch.user, u):
            return Outcome.OTHER_USER, None
        if hmac.compare_digest(self.local._code(cid, code), ch.digest):
            if await r.delete(key) != 1:
                return Outcome.UNKNOWN, None  # consumed meanwhile (a replay racing the first use)
            await r.delete(self._k("u", u.hex()))
            await r.set(self._k("p", u.hex()), b"1", px=int(self.s.pass_ttl * 1000))
            self.local._grant(u, now)
            ch.attempts_left = 0
            return Outcome.PASSED, ch
        left = int(await self._spend(keys=[key, self._k("u", u.hex())]))
        if left == -1000:
            return Outcome.UNKNOWN, None
        ch.attempts_left = max(0, left)
        return (Outcome.EXHAUSTED if left <= 0 else Outcome.WRONG), ch

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None


class StepUp:
    """The store (memory, or Redis when the decisions are in Redis) and the deliverer together,
    as the risk detector uses them: `answer` (memory) or `answer_async` (Redis)."""

    def __init__(self, s: StepUpSettings, sender: Sender = http_post, redis_url: str = "",
                 prefix: str = "bastion:step-up") -> None:
        self.s = s
        self.header = s.header
        self.remote = RedisChallenges(s, redis_url, prefix) if redis_url else None
        self.store = self.remote.local if self.remote is not None else ChallengeStore(s, store_key(s, False))
        self.deliverer = Deliverer(s, sender)
        self.stats = StepUpStats()
        self._last_error_log = 0.0

    def _count(self, outcome: Outcome | None) -> None:
        st = self.stats
        if outcome is Outcome.PASSED:
            st.passed += 1
        elif outcome is Outcome.EXHAUSTED:
            st.exhausted += 1
        elif outcome is not None:
            st.refused += 1

    def answer(self, user: str, value: str | None, now: float, request_id: str) -> Answer:
        """A challenged request of `user` that sent `value` (the header) or None (memory store)."""
        outcome = None
        if value is not None:
            outcome, ch = self.store.verify(user, value, now)
            self._count(outcome)
            if outcome in (Outcome.PASSED, Outcome.EXHAUSTED):
                return Answer(outcome, ch, outcome is Outcome.PASSED)
        return Answer(outcome, self.challenge(user, now, request_id))

    async def answer_async(self, user: str, value: str | None, now: float, request_id: str) -> Answer:
        """`answer` with the Redis store. Redis unreachable: a plain challenge (no code)."""
        remote = self.remote
        assert remote is not None
        try:
            if await remote.has_pass(user, now):  # granted by another instance
                return Answer(None, None, True)
            outcome = None
            if value is not None:
                outcome, ch = await remote.verify(user, value, now)
                self._count(outcome)
                if outcome in (Outcome.PASSED, Outcome.EXHAUSTED):
                    return Answer(outcome, ch, outcome is Outcome.PASSED)
            failed = self.deliverer.failed
            while failed:
                await remote.discard(failed.popleft())
            ch, code = await remote.issue(user, now)
            if code is not None and not self._deliver(ch, user, code, request_id):
                await remote.discard(ch)
                return Answer(outcome, None)
            return Answer(outcome, ch)
        except Exception as exc:
            mono = time.monotonic()
            if mono - self._last_error_log > 60:
                self._last_error_log = mono
                log.warning("step-up store unreachable (%s): plain challenge", type(exc).__name__)
            return Answer(None, None)

    def challenge(self, user: str, now: float, request_id: str) -> Challenge | None:
        """The user's live challenge, or a new one whose code is on its way; None when no code can
        be sent now (rate cap, full queue): the caller falls back to a plain challenge."""
        failed = self.deliverer.failed
        while failed:
            self.store.discard(failed.popleft())
        ch = self.store.live(user, now)
        if ch is not None:
            return ch
        ch, code = self.store.issue(user, now)
        if not self._deliver(ch, user, code, request_id):
            self.store.discard(ch)
            return None
        return ch

    def _deliver(self, ch: Challenge, user: str, code: str, request_id: str) -> bool:
        doc: dict[str, str | int] = {
            "type": "bastion.step_up.code",
            "challenge_id": ch.id,
            "user": user,
            "code": code,
            "expires_at": int(ch.expires),
            "expires_in": int(self.s.ttl),
            "request_id": request_id,
        }
        if not self.deliverer.submit(doc, time.monotonic(), ch):
            log.warning("step-up code not sent (delivery rate cap or queue full); plain challenge")
            return False
        self.stats.issued += 1
        log.info("step-up challenge %s issued; code queued for delivery", ch.id)
        return True

    def problem(self, ch: Challenge, now: float) -> tuple[tuple[str, str | int], ...]:
        """The members of the 401 problem document that tell the client how to answer."""
        return (
            ("challenge_id", ch.id),
            ("step_up_header", self.header),
            ("expires_in", max(0, int(ch.expires - now))),
            ("attempts_left", ch.attempts_left),
        )

    async def stop(self) -> None:
        await asyncio.to_thread(self.deliverer.close)
        if self.remote is not None:
            await self.remote.close()
