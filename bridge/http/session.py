"""Who may use the frontend: logins, sessions and CSRF tokens (issue 36).

On a loopback bind without a token the page needs no login: anyone who can reach 127.0.0.1 can
already reach the broker. Any other bind (or a token set) needs a login with the API token or a
password kept only as a scrypt hash (`http.password_hash`, made by `python -m bridge.http.password`).
A login gives a session: a random id in a cookie that is HttpOnly (no script reads it) and
SameSite=Strict (no other site's page sends it), and a CSRF token the page sends back as a header
on every change; a change without it is refused (403), logged in or not. Sessions live in memory:
a restart logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass


COOKIE = "ruview_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 64  # beyond this the oldest session is dropped
FAILURES = 5  # failed logins an address may have in FAILURE_WINDOW seconds; then 429 until the oldest ages out
FAILURE_WINDOW = 60.0
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$<n>$<r>$<p>$<salt>$<hash>` (base64): what `http.password_hash` holds."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${b64(salt)}${b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=base64.b64decode(salt),
                             n=int(n), r=int(r), p=int(p), dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def valid_hash(stored: str) -> bool:
    """Whether `stored` reads as a hash check_password can use (for the config check)."""
    parts = stored.split("$")
    try:
        return (len(parts) == 6 and parts[0] == "scrypt" and all(int(x) > 0 for x in parts[1:4])
                and len(base64.b64decode(parts[4], validate=True)) >= 8
                and len(base64.b64decode(parts[5], validate=True)) >= 16)
    except ValueError:
        return False


@dataclass
class Session:
    csrf: str
    expires: float
    logged_in: bool  # by a login, not a free loopback session


class Sessions:
    """The sessions of the frontend, on the HTTP server's loop (one thread: no lock)."""

    def __init__(self, *, login_required: bool, token: str | None, password_hash: str | None,
                 lifetime: float) -> None:
        self.login_required = login_required
        self._token, self._hash, self.lifetime = token, password_hash, lifetime
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, deque[float]] = {}
        self.logins = 0
        self.failed_logins = 0
        self.csrf_refused = 0

    def get(self, sid: str | None) -> Session | None:
        session = self._sessions.get(sid or "")
        if session is None:
            return None
        if session.expires < time.monotonic():
            del self._sessions[sid or ""]
            return None
        return session

    def new(self, logged_in: bool) -> tuple[str, Session]:
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        session = self._sessions[sid] = Session(secrets.token_urlsafe(32), time.monotonic() + self.lifetime,
                                                logged_in)
        return sid, session

    def end(self, sid: str | None) -> None:
        self._sessions.pop(sid or "", None)

    def may_try(self, client: str) -> bool:
        """False when this address failed too many logins lately (429, counted)."""
        failures = self._failures.get(client)
        if not failures:
            return True
        while failures and failures[0] < time.monotonic() - FAILURE_WINDOW:
            failures.popleft()
        return len(failures) < FAILURES

    def check_secret(self, client: str, secret: str) -> bool:
        """The API token or the password; a failure costs the address one of its few tries."""
        given = secret.encode("utf-8", "surrogatepass")
        ok = bool(self._token) and hmac.compare_digest(given, (self._token or "").encode())
        ok = ok or (bool(self._hash) and check_password(secret, self._hash or ""))
        if ok:
            self.logins += 1
            return True
        self.failed_logins += 1
        if len(self._failures) >= 10_000:
            self._failures.clear()
        self._failures.setdefault(client, deque(maxlen=FAILURES)).append(time.monotonic())
        return False

    def csrf_ok(self, session: Session | None, given: str | None) -> bool:
        ok = session is not None and given is not None and hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), session.csrf.encode())
        if not ok:
            self.csrf_refused += 1
        return ok
