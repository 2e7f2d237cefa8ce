"""Who may use the server, and as whom. See docs/security.md for the threat model.

* **Host check.** A request's Host must be a loopback name, the address served on, or one of
  ``[server] allowed_hosts``, so a page elsewhere whose name resolves to this server (DNS
  rebinding) cannot use it. With a token and a wildcard address the token alone decides.
* **Token.** With ``[server] token`` set, the API needs ``Authorization: Bearer <token>`` or the
  session cookie a browser gets by logging in with the token (HttpOnly, SameSite=Strict).
* **Users.** Each browser gets a user id signed with a key kept in the collection
  (``cm_user`` cookie). A request acts as that user; naming another user (a ``user`` field, or
  ``/api/users/<user>/...``) needs the token in the Authorization header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

from flask import Request, Response

USER_COOKIE = "cm_user"
SESSION_COOKIE = "cm_session"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address to serve on) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8000`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Access:
    """The server's access rules: its token (empty for none), the key that signs user ids and
    sessions, and the Host names it answers to (None: any, when the token alone decides)."""

    token: str
    key: bytes
    hosts: frozenset[str] | None
    session_seconds: float = 12 * 3600.0

    @classmethod
    def for_server(cls, token: str, key: bytes, bound_host: str, allowed_hosts: list[str],
                   session_hours: float = 12.0) -> Access:
        hosts: set[str] | None = set(LOOPBACK_NAMES) | {h.lower() for h in allowed_hosts}
        if bound_host not in WILDCARDS:
            hosts.add(bound_host.strip("[]").lower())
        elif token and not allowed_hosts:
            hosts = None
        return cls(token, key, None if hosts is None else frozenset(hosts), session_hours * 3600.0)

    # Signing.
    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def _verify(self, value: str | None, prefix: str) -> str | None:
        """The payload of a signed ``prefix.payload.signature`` value, or None if forged."""
        if not value or value.count(".") != 2:
            return None
        kind, payload, signature = value.split(".")
        if kind != prefix or not hmac.compare_digest(signature, self._sign(f"{kind}.{payload}")):
            return None
        return payload

    # Requests.
    def host_allowed(self, request: Request) -> bool:
        return self.hosts is None or host_name(request.host or "") in self.hosts

    def bearer(self, request: Request) -> bool:
        """Whether the request carries the token in its Authorization header."""
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def authenticated(self, request: Request) -> bool:
        """No token needed, the token given, or a live browser session."""
        if not self.token or self.bearer(request):
            return True
        expiry = self._verify(request.cookies.get(SESSION_COOKIE), "s")
        return expiry is not None and expiry.isdigit() and int(expiry) > time.time()

    def token_matches(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def user(self, request: Request) -> str | None:
        """The signed user id the request's browser holds, if it holds a valid one."""
        return self._verify(request.cookies.get(USER_COOKIE), "u")

    def new_user(self) -> tuple[str, str]:
        """(a fresh user id, its signed cookie value)."""
        user = "u-" + secrets.token_hex(8)
        return user, f"u.{user}.{self._sign(f'u.{user}')}"

    def set_user_cookie(self, response: Response, value: str, secure: bool) -> None:
        response.set_cookie(USER_COOKIE, value, max_age=365 * 86400, httponly=True, samesite="Lax", secure=secure)

    def set_session_cookie(self, response: Response, secure: bool) -> None:
        expiry = str(int(time.time() + self.session_seconds))
        value = f"s.{expiry}.{self._sign(f's.{expiry}')}"
        response.set_cookie(SESSION_COOKIE, value, max_age=int(self.session_seconds), httponly=True,
                            samesite="Strict", secure=secure)
