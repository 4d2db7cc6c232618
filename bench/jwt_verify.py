"""Cost of verifying bearer JWTs (behaviour.entity.jwt): a signature check per new token, a cache hit
for a repeated one, and extract_keys with and without verification.

    python bench/jwt_verify.py
"""

from __future__ import annotations

import time
import timeit
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.detect.behaviour.settings import JwtSettings
from bastion.entity import KeySettings, extract_keys
from bastion.exchange import Client, Exchange, Headers, Request
from bastion.jwtauth import JwtVerifier

SECRET = "bench-secret-bench-secret-bench-secret!!"


def per_call(fn: Any, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def main() -> None:
    exp = int(time.time()) + 3600
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    cases = [("HS256", SECRET, SECRET), ("RS256", rsa_key, rsa_key.public_key()),
             ("ES256", ec_key, ec_key.public_key()), ("EdDSA", ed_key, ed_key.public_key())]
    for alg, priv, pub in cases:
        v = JwtVerifier(JwtSettings(secrets=[SECRET]))
        v.keys = [("", pub, (alg,))]
        v.algorithms = frozenset({alg})
        tokens = [jwt.encode({"sub": f"u{i}", "exp": exp}, priv, algorithm=alg) for i in range(400)]
        t0 = time.perf_counter()
        for t in tokens:  # each token once: a signature check each
            v.check(t)
        miss = (time.perf_counter() - t0) / len(tokens) * 1e6
        hit = per_call(lambda: v.check(tokens[0]), 20000)  # noqa: B023
        print(f"{alg:6} new token {miss:7.1f} us   repeated token (cache) {hit:5.2f} us")
    v = JwtVerifier(JwtSettings(secrets=[SECRET]))
    tok = jwt.encode({"sub": "alice", "exp": exp}, SECRET, algorithm="HS256")
    hdrs = [("Host", "api.test"), ("User-Agent", "python-requests/2.31"), ("Accept", "*/*"),
            ("Authorization", f"Bearer {tok}")]

    def keys(s: KeySettings) -> None:
        ex = Exchange(id="b", client=Client(peer_ip="127.0.0.1"), request=Request("GET", "/", Headers(list(hdrs))),
                      started=0.0)
        extract_keys(ex, s)

    plain, verified = KeySettings(), KeySettings(jwt=v)
    print(f"extract_keys with a bearer JWT: unverified {per_call(lambda: keys(plain), 20000):.2f} us, "
          f"verified (cached) {per_call(lambda: keys(verified), 20000):.2f} us")


if __name__ == "__main__":
    main()
