"""Signing keys of an identity provider's JWKS endpoint, kept fresh off the request path.

One daemon thread per endpoint fetches the document at start, then every `refresh` seconds, and
sooner when a token names a `kid` it does not know (the provider rotated its keys), at most once
per `MIN_REFETCH` seconds so a flood of tokens with made-up `kid`s cannot turn Bastion into a
client hammering the provider. A failed fetch keeps the last good keys and retries with backoff.
Requests never wait for the network: they read the current key list, an attribute swapped whole.

Endpoints are shared: the behaviour detector and access control, and the pipeline rebuilt by a
config reload, use the same fetcher (a weak registry keyed by URL and timings), so a reload
neither refetches nor waits; the thread ends once no verifier refers to its fetcher.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
import weakref
from typing import Any
from urllib.parse import urlsplit

import jwt

log = logging.getLogger("bastion.jwt")

MAX_DOCUMENT = 1 << 20  # a JWKS of a few keys is a few KB; a megabyte is not a key set
MIN_REFETCH = 30.0  # seconds between fetches asked for by unknown kids
_BACKOFF = (5.0, 15.0, 60.0)

Key = tuple[str, object, tuple[str, ...]]  # (kid, key, algorithms it verifies)


def jwk_keys(text: str | bytes, algorithms_of: Any, *, allow_secrets: bool) -> list[Key]:
    """The signature keys of a JWKS document; raises ValueError when it has none usable.
    `algorithms_of(key)` gives the algorithms a key verifies; a JWK naming its `alg` allows that one only."""
    try:
        jwks = jwt.PyJWKSet.from_json(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    keys: list[Key] = []
    for k in jwks.keys:
        if (getattr(k, "public_key_use", None) or "sig") != "sig":
            continue
        if isinstance(k.key, bytes):
            if not allow_secrets:  # an HMAC secret served over the network is nobody's secret
                continue
            algs = tuple(a for a, n in (("HS256", 32), ("HS384", 48), ("HS512", 64)) if len(k.key) >= n)
        else:
            algs = algorithms_of(k.key)
        alg = getattr(k, "algorithm_name", "")
        if alg in algs:
            algs = (alg,)
        if algs:
            keys.append((k.key_id or "", k.key, algs))
    if not keys:
        raise ValueError("no signature key usable here")
    return keys


class RemoteJwks:
    """The keys of one JWKS endpoint. `keys` is the current list (empty until the first fetch)."""

    def __init__(self, url: str, *, refresh: float, timeout: float, algorithms_of: Any) -> None:
        self.url = url
        self.refresh = refresh
        self.timeout = timeout
        self.algorithms_of = algorithms_of
        self.keys: list[Key] = []
        self.fetches = 0  # attempts, for tests and stats
        self.failures = 0
        self.fetched_at = 0.0  # monotonic time of the last good fetch (0: never)
        self._last_attempt = 0.0
        self._ready = threading.Event()  # the first attempt is over, good or bad
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._host = urlsplit(url).hostname or "?"  # logged instead of the URL: it may carry a token
        thread = threading.Thread(target=_run, args=(weakref.ref(self), self._wake, self._stop),
                                  name=f"bastion-jwks-{self._host}", daemon=True)
        thread.start()
        weakref.finalize(self, _end, self._wake, self._stop)  # the last verifier gone: the thread ends

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the first fetch to be over; True when keys are there."""
        self._ready.wait(timeout)
        return bool(self.keys)

    def want_refresh(self) -> None:
        """A token named a kid we do not have: fetch again soon (rate-limited)."""
        if time.monotonic() - self._last_attempt >= MIN_REFETCH:
            self._wake.set()

    def close(self) -> None:
        _end(self._wake, self._stop)

    def fetch(self) -> bool:
        self.fetches += 1
        self._last_attempt = time.monotonic()
        try:
            req = urllib.request.Request(self.url, headers={"Accept": "application/json",
                                                            "User-Agent": "bastion-jwks"})
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                if urlsplit(resp.geturl()).scheme != urlsplit(self.url).scheme:
                    raise ValueError("redirected to another scheme")  # never downgraded to clear text
                body = resp.read(MAX_DOCUMENT + 1)
            if len(body) > MAX_DOCUMENT:
                raise ValueError(f"document larger than {MAX_DOCUMENT} bytes")
            keys = jwk_keys(body, self.algorithms_of, allow_secrets=False)
        except Exception as exc:  # network, HTTP status, TLS, parsing: keep the last good keys
            self.failures += 1
            log.warning("JWKS fetch from %s failed (%s: %s); %d key(s) kept", self._host, type(exc).__name__,
                        str(exc)[:120], len(self.keys))
            return False
        if {k for k, _, _ in keys} != {k for k, _, _ in self.keys}:
            log.info("JWKS from %s: %d signature key(s)", self._host, len(keys))
        self.keys = keys
        self.fetched_at = time.monotonic()
        return True


def _run(ref: weakref.ReferenceType[RemoteJwks], wake: threading.Event, stop: threading.Event) -> None:
    failures = 0
    while not stop.is_set():
        source = ref()
        if source is None:
            return
        ok = source.fetch()
        source._ready.set()
        failures = 0 if ok else failures + 1
        wait = source.refresh if ok else min(_BACKOFF[min(failures, len(_BACKOFF)) - 1], source.refresh)
        del source  # hold no reference while asleep: the fetcher dies with its last verifier
        wake.wait(wait)
        wake.clear()


def _end(wake: threading.Event, stop: threading.Event) -> None:
    stop.set()
    wake.set()


_shared: weakref.WeakValueDictionary[tuple[str, float, float], RemoteJwks] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def remote_jwks(url: str, *, refresh: float, timeout: float, algorithms_of: Any) -> RemoteJwks:
    """The shared fetcher for this endpoint, started on first use."""
    with _shared_lock:
        source = _shared.get((url, refresh, timeout))
        if source is None:
            source = RemoteJwks(url, refresh=refresh, timeout=timeout, algorithms_of=algorithms_of)
            _shared[(url, refresh, timeout)] = source
        return source
