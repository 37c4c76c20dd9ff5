"""The desk's guard: who may read it, which requests may change something, what a page may run.

- On a loopback address without a token, anyone on this machine may read; requests must name
  a loopback host (a DNS-rebinding page names its own host and is refused). A loopback
  address is a loopback IP or "localhost" resolving only to loopback IPs (not "x.localhost").
- With a token (`web_token_env` / `web_token_file`; required off loopback), every request
  carries it: `Authorization: Bearer <token>`, HTTP Basic with the token as password (for
  feed readers), or the cookie the login form sets (HttpOnly, SameSite=Strict; its value
  is an HMAC with the token of this process's nonce and the login time, never the token
  itself; it lasts SESSION_MAX_AGE, until logout, or until the daemon restarts).
- Every POST carries the form's CSRF token, and is refused when the browser says it comes
  from another site (Origin, Sec-Fetch-Site). After a login the desk redirects only to a
  path of its own.
- Every response forbids scripts (Content-Security-Policy without script-src), framing and
  sniffing; feed text reaches pages only through Jinja2's autoescape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web
from yarl import URL

COOKIE = "watcher_desk"
SESSION_MAX_AGE = 12 * 3600  # seconds a login lasts; then the login form asks again
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
# not in a redirect target: URL parsers drop tabs and newlines ("/\t/evil" -> "//evil"),
# browsers read a backslash as a slash ("/\\evil" -> "//evil")
_NOT_IN_TARGET = re.compile(r"[\x00-\x1f\x7f\\]")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def is_loopback(host: str) -> bool:
    """Whether a Host header's name or address (no port; IPv6 with or without brackets) is
    loopback: browsers resolve every "*.localhost" name to loopback themselves."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or (host.endswith(".localhost") and _HOST_NAME.fullmatch(host)):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of 127.0.0.1
    return ip.is_loopback


def listens_on_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only: a loopback IP, or "localhost" when
    every address it resolves to is loopback (the desk binds the name, so all of them).
    Any other name, "x.localhost" too, is not: it resolves to whatever DNS says."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host.lower() != "localhost":
        return False
    try:
        resolved = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(resolved) and all(_loopback_ip(str(info[4][0])) for info in resolved)


def _loopback_ip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
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

    def __init__(self, token: str, bind_host: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.bind_host = bind_host.strip("[]").lower()
        self.clock = clock  # seconds since the epoch: when sessions expire
        self._csrf_key = secrets.token_bytes(32)  # per process: forms expire on restart
        self._nonce = secrets.token_bytes(32)  # per process: so do sessions
        self.revoked: dict[str, float] = {}  # logged-out cookies, until they expire anyway
        self.set_token(token)

    def set_token(self, token: str) -> None:
        """Use this token ("" for none); the sessions of another token end."""
        self.token = token
        self._forms_key = (hmac.new(token.encode(), b"watcher-desk-forms", hashlib.sha256)
                           .hexdigest() if token else "")  # binds the pages' form tokens

    @property
    def open(self) -> bool:
        """No token: loopback only, anyone on this machine may read."""
        return not self.token

    def host_allowed(self, request: web.Request) -> bool:
        """A request for a host we serve: with no token, a loopback name or the bound one,
        from a loopback address (whatever Host header a remote client sends)."""
        if not self.open:
            return True
        if request.remote and not is_loopback(request.remote):
            return False
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
        return self.session_ok(request.cookies.get(COOKIE, ""))

    def _is_token(self, value: str) -> bool:
        return bool(value) and hmac.compare_digest(value.encode(), self.token.encode())

    def _session_mac(self, issued: int, serial: str) -> str:
        message = self._nonce + f"{issued}.{serial}".encode()
        return hmac.new(self.token.encode(), message, hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        """A session cookie's value: "<issued>.<serial>.<HMAC(token, nonce + both)>"."""
        issued, serial = int(self.clock()), secrets.token_hex(8)
        return f"{issued}.{serial}.{self._session_mac(issued, serial)}"

    def session_ok(self, cookie: str) -> bool:
        """A session cookie this process issued for the current token, neither older than
        SESSION_MAX_AGE nor logged out."""
        issued = _issued(cookie)
        if self.open or issued is None:
            return False
        _, serial, mac = cookie.split(".")
        if not hmac.compare_digest(mac.encode(), self._session_mac(issued, serial).encode()):
            return False
        return self.clock() - issued < SESSION_MAX_AGE and cookie not in self.revoked

    def login(self, response: web.StreamResponse, token: str, *, secure: bool) -> bool:
        """Set a new session cookie when `token` is right; whether it was."""
        if not self._is_token(token.strip()):
            return False
        response.set_cookie(COOKIE, self.new_session(), httponly=True, samesite="Strict",
                            secure=secure, path="/", max_age=SESSION_MAX_AGE)
        return True

    def logout(self, request: web.Request, response: web.StreamResponse) -> None:
        """End the request's session: the browser drops the cookie, and this desk refuses
        it from now on (a copy of it too)."""
        cookie = request.cookies.get(COOKIE, "")
        now = self.clock()
        self.revoked = {c: until for c, until in self.revoked.items() if until > now}
        issued = _issued(cookie)
        if issued is not None and self.session_ok(cookie):
            self.revoked[cookie] = issued + SESSION_MAX_AGE
        response.del_cookie(COOKIE, path="/")

    def csrf_token(self, purpose: str = "forms") -> str:
        """The token a form carries: "login" for the public login form, "forms" for the
        forms of the desk's own pages (bound to the desk's token, so the public login page
        never shows it)."""
        return hmac.new(self._csrf_key, f"{purpose}:{self._forms_key}".encode(),
                        hashlib.sha256).hexdigest()

    def csrf_ok(self, request: web.Request, form_token: str, purpose: str = "forms") -> bool:
        """A POST from our own pages: right form token, and no sign of another site."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        if origin == "null" or (origin and urlsplit(origin).netloc != request.host):
            return False
        return hmac.compare_digest(form_token.encode(), self.csrf_token(purpose).encode())


def _issued(cookie: str) -> int | None:
    """When a session cookie says it was issued (None when it is not shaped like one)."""
    parts = cookie.split(".")
    if len(parts) != 3 or not all(parts) or not (parts[0].isascii() and parts[0].isdigit()
                                                  and len(parts[0]) <= 12):
        return None
    return int(parts[0])


def _basic_password(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode().partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return ""


def local_path(target: str | None) -> str:
    """A redirect target that stays on this site, as the Location header will carry it: a
    path ("/alerts?status=failed"), never "//host", "/\\host", "https:host" nor anything
    with control characters or backslashes (parsers drop or turn them into slashes); else "/"."""
    if not target or _NOT_IN_TARGET.search(target) or not _is_path(target):
        return "/"
    try:
        final = str(URL(target))  # what aiohttp puts in the Location header
    except ValueError:
        return "/"
    if _NOT_IN_TARGET.search(final) or not _is_path(final) or str(URL(final)) != final:
        return "/"
    return final


def _is_path(target: str) -> bool:
    """A URL with neither scheme nor host whose path starts with one "/"."""
    parts = urlsplit(target)
    return (target.startswith("/") and not target.startswith("//") and not parts.scheme
            and not parts.netloc)
