"""Admin authentication: one bearer token, console sessions, an optional TOTP second factor.

- The token comes from `admin.token`, else env BASTION_ADMIN_TOKEN, else `data_dir/admin.token`,
  generated at first start (256 random bits, file mode 0600). Its path is logged, never its value.
- Tokens are compared with `hmac.compare_digest` (no timing oracle on how many characters matched).
- The console logs in once (token, plus a TOTP code when `admin.totp_secret` is set) and gets a
  session cookie: HttpOnly (no script reads it), SameSite=Strict (no cross-site request carries it),
  Secure when the admin serves TLS. State-changing requests made with the cookie must also carry the
  session's CSRF token in `X-Bastion-CSRF` (a header a cross-site form cannot set).
- Failed attempts are counted per client address: past `MAX_FAILURES` in `FAILURE_WINDOW` seconds
  the address gets 429 until the window passes (token guessing and TOTP brute force).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bastion.admin.settings import AdminConfig
from bastion.admin.totp import TotpVerifier

log = logging.getLogger("bastion.admin")

ENV_TOKEN = "BASTION_ADMIN_TOKEN"
TOKEN_FILE = "admin.token"
COOKIE = "bastion_session"
CSRF_HEADER = "x-bastion-csrf"
MAX_FAILURES = 20
FAILURE_WINDOW = 300.0
MAX_SESSIONS = 256


def resolve_token(admin: AdminConfig, data_dir: Path) -> tuple[str, str]:
    """(token, where it came from). Generates the token file on first use."""
    if admin.token:
        return admin.token, "config admin.token"
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        if len(env) < 16:
            raise ValueError(f"{ENV_TOKEN} must be at least 16 characters")
        return env, f"environment {ENV_TOKEN}"
    path = Path(data_dir) / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 16:
            if path.stat().st_mode & 0o077:
                log.warning("%s is readable by other users; chmod 600 it", path)
            return token, str(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    try:
        # link() fails if another worker or process wrote the file first: then use theirs
        os.link(tmp, path)
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
    finally:
        os.unlink(tmp)
    log.warning("generated an admin token in %s (mode 0600): use it as a Bearer token or to log in", path)
    return token, str(path)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


@dataclass(slots=True)
class Session:
    csrf: str
    expires: float


class Authenticator:
    def __init__(self, token: str, admin: AdminConfig, *, now: Callable[[], float] = time.time) -> None:
        self._token = _digest(token)
        self.totp = TotpVerifier(admin.totp_secret, now=now) if admin.totp_secret else None
        self.ttl = admin.session_ttl
        self._now = now
        self._sessions: dict[bytes, Session] = {}  # keyed by the digest: lookups reveal nothing of the id
        self._failures: dict[str, list[float]] = {}

    def token_ok(self, presented: str) -> bool:
        # Digests first: compare_digest then compares equal-length values, whatever was sent.
        return hmac.compare_digest(_digest(presented), self._token)

    def bearer_ok(self, authorization: str) -> bool:
        scheme, _, cred = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(cred.strip())

    # --- sessions ---------------------------------------------------------------------------------

    def login(self, token: str, code: str = "") -> tuple[str, Session] | None:
        """A new session for the right token (and TOTP code, when configured); None otherwise."""
        ok = self.token_ok(token)
        if self.totp is not None:
            step = self.totp.match(code)  # always run both checks: no hint of which failed
            ok = ok and step >= 0
            if ok:
                self.totp.accept(step)  # a code logs in once (no replay)
        if not ok:
            return None
        now = self._now()
        self._expire(now)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
            del self._sessions[oldest]
        sid = secrets.token_urlsafe(32)
        sess = Session(csrf=secrets.token_urlsafe(24), expires=now + self.ttl)
        self._sessions[_digest(sid)] = sess
        return sid, sess

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        sess = self._sessions.get(_digest(sid))
        if sess is None:
            return None
        if sess.expires <= self._now():
            self._sessions.pop(_digest(sid), None)
            return None
        return sess

    def logout(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(_digest(sid), None)

    def _expire(self, now: float) -> None:
        for k in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[k]

    # --- failed attempts --------------------------------------------------------------------------

    def locked_out(self, ip: str) -> int:
        """Seconds the address must wait, or 0."""
        times = self._failures.get(ip)
        if not times:
            return 0
        now = self._now()
        times[:] = [t for t in times if t > now - FAILURE_WINDOW]
        if not times:
            del self._failures[ip]
            return 0
        if len(times) < MAX_FAILURES:
            return 0
        return max(1, int(times[0] + FAILURE_WINDOW - now + 0.999))

    def failed(self, ip: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()
        times = self._failures.setdefault(ip, [])
        times.append(self._now())
        del times[:-MAX_FAILURES]


def cookie_header(sid: str, max_age: int, secure: bool) -> str:
    return (f"{COOKIE}={sid}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))


def clear_cookie_header(secure: bool) -> str:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
