"""The desk's guard: who may read it, which requests may change something, what a page may run.

- On a loopback address without a token, anyone on this machine may read; requests must name
  a loopback host (a DNS-rebinding page names its own host and is refused).
- With a token (`web_token_env` / `web_token_file`; required off loopback), every request
  carries it: `Authorization: Bearer <token>`, HTTP Basic with the token as password (for
  feed readers), or the cookie the login form sets (HttpOnly, SameSite=Strict; its value
  is derived from the token, never the token itself).
- Every POST carries the form's CSRF token, and is refused when the browser says it comes
  from another site (Origin, Sec-Fetch-Site).
- Every response forbids scripts (Content-Security-Policy without script-src), framing and
  sniffing; feed text reaches pages only through Jinja2's autoescape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "watcher_desk"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # our forms keep a real Origin header
    "Cross-Origin-Opener-Policy": "same-origin",
}
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                            "ip6-loopback"})
SAFE_SCHEMES = ("http://", "https://")


def is_loopback(host: str) -> bool:
    """Whether a host name or address (no port; IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a Host header ("127.0.0.1:8080", "[::1]:8080", "example.org")."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


def safe_link(url: str | None) -> str | None:
    """A feed's link if it is http(s); anything else (javascript:, data:) is not linked."""
    if url and url.strip().lower().startswith(SAFE_SCHEMES):
        return url.strip()
    return None


class Guard:
    """Authentication, CSRF and host checks for one desk (the token may change on reload)."""

    def __init__(self, token: str, bind_host: str) -> None:
        self.bind_host = bind_host.strip("[]").lower()
        self._csrf_key = secrets.token_bytes(32)  # per process: forms expire on restart
        self.set_token(token)

    def set_token(self, token: str) -> None:
        self.token = token
        self.session = (hmac.new(token.encode(), b"watcher-desk-session", hashlib.sha256)
                        .hexdigest() if token else "")

    @property
    def open(self) -> bool:
        """No token: loopback only, anyone on this machine may read."""
        return not self.token

    def host_allowed(self, request: web.Request) -> bool:
        """A request for a host we serve: with no token, a loopback name or the bound one."""
        if not self.open:
            return True
        host = host_of(request.headers.get("Host", ""))
        return is_loopback(host) or host == self.bind_host

    def authenticated(self, request: web.Request) -> bool:
        if self.open:
            return True
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self._is_token(value.strip()):
            return True
        if scheme.lower() == "basic" and self._is_token(_basic_password(value.strip())):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.session.encode())

    def _is_token(self, value: str) -> bool:
        return bool(value) and hmac.compare_digest(value.encode(), self.token.encode())

    def login(self, response: web.StreamResponse, token: str, *, secure: bool) -> bool:
        """Set the session cookie when `token` is right; whether it was."""
        if not self._is_token(token.strip()):
            return False
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="Strict",
                            secure=secure, path="/")
        return True

    @staticmethod
    def logout(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")

    def csrf_token(self, purpose: str = "forms") -> str:
        """The token a form carries: "login" for the public login form, "forms" for the
        forms of the desk's own pages (bound to the session, so the public login page
        never shows it)."""
        return hmac.new(self._csrf_key, f"{purpose}:{self.session}".encode(),
                        hashlib.sha256).hexdigest()

    def csrf_ok(self, request: web.Request, form_token: str, purpose: str = "forms") -> bool:
        """A POST from our own pages: right form token, and no sign of another site."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        if origin == "null" or (origin and urlsplit(origin).netloc != request.host):
            return False
        return hmac.compare_digest(form_token.encode(), self.csrf_token(purpose).encode())


def _basic_password(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode().partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return ""


def local_path(target: str | None) -> str:
    """A redirect target that stays on this site ("/..." but not "//host"), else "/"."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"
