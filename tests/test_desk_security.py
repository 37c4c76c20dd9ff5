"""The desk's guard against a security review's findings, over HTTP against the real desk:
redirects after login stay on the desk, the Host header never reaches a format string, a
`.localhost` name is not a loopback address to bind, and a logged-out or old session
cookie is refused."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from conftest import ConfigWriter
from test_desk import CONFIG, NOW, Maker, World, entry, record_story
from test_desk import make_world as make_world  # the fixture: a desk on 127.0.0.1

from watcher.desk import Desk, DeskError, security
from watcher.desk.security import COOKIE
from watcher.store import SqliteStore

TOKEN = "correct-horse-battery-staple"

# --- redirects after login ---

# `next` as the browser sends it in the query string (percent-encoded), each leading off-site
# when passed through unchecked (a tab or CR/LF is dropped by the URL parser, a backslash is
# a slash to browsers, "https:host" and "//host" name another host)
EVIL_QUERIES = ["/%09/evil.example", "/%0D%0A/evil.example", "/%0A/evil.example",
                "%2F%2Fevil.example", "//evil.example", "///evil.example", "/%5Cevil.example",
                "%5C%5Cevil.example", "%5C/evil.example", "/%09%5C/evil.example",
                "https:evil.example", "https://evil.example/", "javascript:alert(1)",
                "%09//evil.example", "/%0B/evil.example", "/%00/evil.example"]
# the same as form values (decoded), for the POST
EVIL_VALUES = ["/\t/evil.example", "/\r\n/evil.example", "/\n/evil.example", "//evil.example",
               "///evil.example", "/\\evil.example", "\\\\evil.example", "\\/evil.example",
               "/\t\\/evil.example", "https:evil.example", "https://evil.example/",
               "javascript:alert(1)", "\t//evil.example", "/\x0b/evil.example",
               "/\x00/evil.example", "/\x7f/evil.example"]


def on_site(location: str) -> bool:
    """A Location a browser resolves on the desk itself."""
    parts = urlsplit(location)
    return (location.startswith("/") and not location.startswith("//") and not parts.scheme
            and not parts.netloc and not re.search(r"[\x00-\x20\x7f\\]", location))


async def token_world(make_world: Maker, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("DESK_TOKEN", TOKEN)
    w: World = await make_world('web_token_env = "DESK_TOKEN"')
    return w


async def login_form(w: World, query: str) -> tuple[str, str]:
    """The login page's form: its CSRF token and its `next` value."""
    status, page, _ = await w.get("/login?next=" + query)
    assert status == 200, page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    target = re.search(r'name="next" value="([^"]*)"', page)
    assert csrf and target, page
    return csrf.group(1), html.unescape(target.group(1))


async def test_the_login_page_never_offers_an_off_site_next(make_world: Maker,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    w = await token_world(make_world, monkeypatch)
    for query in EVIL_QUERIES:
        _, target = await login_form(w, query)
        assert target == "/", (query, target)
    _, target = await login_form(w, quote("/alerts?status=failed", safe="/"))
    assert target == "/alerts?status=failed"


async def test_a_login_redirects_only_to_the_desk(make_world: Maker,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = await token_world(make_world, monkeypatch)
    csrf, _ = await login_form(w, "/")
    for value in EVIL_VALUES:
        status, _, r = await w.post("/login", {"csrf": csrf, "token": TOKEN, "next": value})
        assert status == 303 and r.headers["Location"] == "/", (value, r.headers["Location"])
        status, _, r = await w.post("/login", {"csrf": csrf, "token": "wrong", "next": value})
        assert status == 303 and r.headers["Location"] == "/login?next=/&msg=bad-token"
    status, _, r = await w.post("/login", {"csrf": csrf, "token": TOKEN,
                                           "next": "/alerts?status=failed"})
    assert r.headers["Location"] == "/alerts?status=failed"


async def test_an_open_desk_redirects_its_login_only_to_itself(make_world: Maker) -> None:
    w: World = await make_world()
    for query in EVIL_QUERIES:
        status, _, r = await w.get("/login?next=" + query)
        assert status == 303 and r.headers["Location"] == "/", (query, r.headers["Location"])
    csrf = w.desk.guard.csrf_token("login")  # what an open desk's login form would carry
    for value in EVIL_VALUES:
        status, _, r = await w.post("/login", {"csrf": csrf, "next": value})
        assert status == 303 and r.headers["Location"] == "/", (value, r.headers["Location"])
    status, _, r = await w.get("/login?next=" + quote("/feeds?sort=name", safe="/"))
    assert r.headers["Location"] == "/feeds?sort=name"


async def test_next_values_that_normalise_oddly_still_stay_on_the_desk(make_world: Maker
                                                                       ) -> None:
    w: World = await make_world()
    csrf = w.desk.guard.csrf_token("login")
    for value in ["/%2F%2Fevil.example", "/%2e%2e//evil.example", "/..//evil.example",
                  "/.//evil.example", "/a/../..//evil.example", "/%5C%5Cevil.example",
                  "/?next=//evil.example", "/#//evil.example", "/\u3000/evil.example",
                  "/\u2028/evil.example", " //evil.example"]:
        status, _, r = await w.post("/login", {"csrf": csrf, "next": value})
        assert status == 303 and on_site(r.headers["Location"]), (value, r.headers["Location"])
        status, _, r = await w.get("/login?next=" + quote(value, safe=""))
        assert status == 303 and on_site(r.headers["Location"]), (value, r.headers["Location"])


def test_local_path_keeps_paths_and_drops_everything_else() -> None:
    assert security.local_path("/alerts?status=failed") == "/alerts?status=failed"
    assert security.local_path("/stories/s-two") == "/stories/s-two"
    for value in [*EVIL_VALUES, None, "", "alerts", "?x=1", "#top"]:
        assert security.local_path(value) == "/", value


# --- the Host header in story feeds ---

HOSTILE_HOSTS = ["{0}.localhost", "x{id.__class__.__mro__}.localhost", "{id}.localhost",
                 "{id!r}.localhost", "a}.localhost", "{.localhost", "localhost:{0}",
                 "{0}.localhost:8080"]


async def check_feeds(w: World, host: str, **headers: str) -> None:
    for kind in ("atom", "json"):
        status, body, _ = await w.get(f"/topics/kursk.{kind}", headers={"Host": host,
                                                                       **headers})
        assert status in (200, 400, 421), (host, kind, status, body)  # 421: Host refused
        assert "class '" not in body and "s-two.localhost" not in body, (host, kind, body)
        if status == 200:
            link = f"http://{host}/stories/s-two"
            if kind == "json":
                desk_urls = [i["_watcher"]["desk_url"] for i in json.loads(body)["items"]]
                assert desk_urls == [link], (host, desk_urls)
            else:
                assert f'rel="related" href="{link}"' in body, (host, body)


async def story_world(w: World) -> World:
    await record_story(w.store, "s-two", "kursk", [entry("a1", "Kursk evacuation")], at=NOW)
    return w


async def test_a_hostile_host_header_is_never_a_format_string(make_world: Maker) -> None:
    w = await story_world(await make_world())
    for host in HOSTILE_HOSTS:
        await check_feeds(w, host)


async def test_a_hostile_host_header_with_a_token(make_world: Maker,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = await story_world(await token_world(make_world, monkeypatch))
    for host in [*HOSTILE_HOSTS, "x{0}", "desk{id}.example.org"]:
        await check_feeds(w, host, Authorization=f"Bearer {TOKEN}")


async def test_story_ids_in_feed_links_are_url_quoted(make_world: Maker) -> None:
    w: World = await make_world()
    await record_story(w.store, "s/{0}?#x", "kursk", [entry("a1", "Kursk evacuation")], at=NOW)
    _, body, _ = await w.get("/topics/kursk.json")
    [item] = json.loads(body)["items"]
    assert item["_watcher"]["desk_url"] == w.url + "/stories/s%2F%7B0%7D%3F%23x"
    assert item["_watcher"]["story"] == "s/{0}?#x"


# --- the listen address ---

def test_only_loopback_ips_and_localhost_are_loopback_listen_addresses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loopback = security.listens_on_loopback
    for host in ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost"]:
        assert loopback(host), host
    for host in ["x.localhost", "evil.localhost", "localhost.", "localhost.localdomain",
                 "ip6-localhost", "0.0.0.0", "::", "192.168.1.2", "example.org", "",
                 "127.0.0.1.nip.io"]:
        assert not loopback(host), host

    def resolves(*addresses: str) -> Any:
        def getaddrinfo(host: str, *args: Any, **kw: Any) -> list[Any]:
            assert host == "localhost"
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6,
                     "", (a, 0)) for a in addresses]
        return getaddrinfo

    monkeypatch.setattr(socket, "getaddrinfo", resolves("127.0.0.1", "10.1.2.3"))
    assert not loopback("localhost")  # a hosts file naming another address
    monkeypatch.setattr(socket, "getaddrinfo", resolves("127.0.0.1", "::1"))
    assert loopback("localhost")
    monkeypatch.setattr(socket, "getaddrinfo", resolves())
    assert not loopback("localhost")


def test_a_localhost_subdomain_needs_a_token(write_config: ConfigWriter,
                                             tmp_path: Path) -> None:
    config = write_config(CONFIG)
    store = SqliteStore(tmp_path / "x.db")
    for address in ("x.localhost:8080", "evil.localhost:0", "localhost.localdomain:8080"):
        with pytest.raises(DeskError, match="not a loopback address"):
            Desk(config, store, address=address)
    assert Desk(config, store, address="localhost:0").guard.open
    assert Desk(config, store, address="[::1]:0").guard.open


# --- the session cookie ---

async def with_cookie(w: World, value: str, path: str = "/api/stories") -> int:
    """The status of a GET carrying only this session cookie."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
            http.get(w.url + path, headers={"Cookie": f"{COOKIE}={value}"},
                     allow_redirects=False) as r:
        return r.status


async def log_in(w: World) -> tuple[str, str]:
    """Log in through the form, in a browser of its own: the cookie and its Set-Cookie."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        browser = World(w.config, w.store, w.desk, http)
        csrf, _ = await login_form(browser, "/")
        status, _, r = await browser.post("/login", {"csrf": csrf, "token": TOKEN,
                                                     "next": "/"})
        assert status == 303 and COOKIE in r.cookies
        return r.cookies[COOKIE].value, r.headers["Set-Cookie"]


async def log_out(w: World, cookie: str) -> aiohttp.ClientResponse:
    """The logout form's POST from the browser holding this cookie."""
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     headers=headers) as http:
        browser = World(w.config, w.store, w.desk, http)
        forms = await browser.csrf("/alerts")
        status, _, r = await browser.post("/logout", {"csrf": forms})
        assert status == 303 and r.headers["Location"] == "/login"
        return r


async def test_a_logged_out_cookie_is_refused(make_world: Maker,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    w = await token_world(make_world, monkeypatch)
    cookie, header = await log_in(w)
    assert TOKEN not in header and "HttpOnly" in header and "SameSite=Strict" in header
    other, _ = await log_in(w)  # a second browser
    assert await with_cookie(w, cookie) == 200
    assert await with_cookie(w, cookie, "/feeds") == 200

    r = await log_out(w, cookie)
    assert "Max-Age=0" in r.headers["Set-Cookie"]  # the browser drops it
    assert await with_cookie(w, cookie) == 401  # and a copy of it opens nothing
    assert await with_cookie(w, cookie, "/feeds") == 303
    assert other != cookie and await with_cookie(w, other) == 200  # the other one goes on
    assert f"Max-Age={security.SESSION_MAX_AGE}" in header  # browsers drop it in time too


async def test_an_old_or_forged_cookie_is_refused(make_world: Maker,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = await token_world(make_world, monkeypatch)
    cookie, _ = await log_in(w)
    guard = w.desk.guard
    now = time.time()
    guard.clock = lambda: now + security.SESSION_MAX_AGE - 60
    assert await with_cookie(w, cookie) == 200
    guard.clock = lambda: now + security.SESSION_MAX_AGE + 1
    assert await with_cookie(w, cookie) == 401
    assert await with_cookie(w, cookie, "/feeds") == 303
    guard.clock = time.time
    assert await with_cookie(w, cookie) == 200

    # the cookie of earlier versions, a fixed HMAC of the token, opens nothing any more
    fixed = hmac.new(TOKEN.encode(), b"watcher-desk-session", hashlib.sha256).hexdigest()
    issued, serial, mac = cookie.split(".")
    for forged in [fixed, "", "x", f"{int(issued) + 1}.{serial}.{mac}",
                   f"{issued}.{serial}.{'0' * len(mac)}", f"{issued}.{serial}", cookie + ".",
                   f"{issued}.{serial}x.{mac}", f"٣{issued[1:]}.{serial}.{mac}"]:
        assert await with_cookie(w, forged) == 401, forged
    # a new token (a reload) ends the sessions of the old one
    guard.set_token("another-token-of-enough-length")
    assert await with_cookie(w, cookie) == 401


def outward_address() -> str | None:
    """This machine's address on its default route (None: it has only loopback)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks the route
        return str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()


async def test_a_reload_never_opens_a_desk_that_listens_beyond_loopback(
        write_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The address changes at a restart only, so a reload dropping the token ("local only
    now") keeps it; and an open desk answers no remote client whatever Host it sends."""
    address = outward_address()
    if address is None or address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    monkeypatch.setenv("DESK_TOKEN", TOKEN)
    with_token = write_config(CONFIG.replace("[watcher]",
                                             '[watcher]\nweb_token_env = "DESK_TOKEN"'))
    store = SqliteStore(tmp_path / "x.db")
    await store.open()
    desk = Desk(with_token, store, address=f"{address}:0")
    await desk.start()
    try:
        local_only = write_config(CONFIG)
        with pytest.raises(DeskError, match="until a restart"):
            desk.reload(local_only)
        assert desk.config is local_only  # topics and feeds are reloaded all the same
        async with aiohttp.ClientSession() as session:
            async with session.get(desk.url + "/api/feeds",
                                   headers={"Host": "127.0.0.1"}) as r:
                assert r.status == 401
            desk.guard.set_token("")  # were it ever open on such a socket
            async with session.get(desk.url + "/api/feeds",
                                   headers={"Host": "127.0.0.1"}) as r:
                assert r.status == 421
    finally:
        await desk.close()
        await store.close()


async def test_revoked_cookies_are_forgotten_once_expired(make_world: Maker,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    w = await token_world(make_world, monkeypatch)
    guard = w.desk.guard
    for _ in range(3):
        await log_out(w, (await log_in(w))[0])
    assert len(guard.revoked) == 3
    now = time.time()
    guard.clock = lambda: now + security.SESSION_MAX_AGE + 1
    await log_out(w, (await log_in(w))[0])
    assert len(guard.revoked) == 1


def test_only_real_host_names_under_localhost_count_as_loopback() -> None:
    """Browsers send "*.localhost" only for names they resolved to loopback; a Host header
    with characters no host name has is someone's forgery, not a loopback name."""
    for host in ["localhost", "a.localhost", "x-y.b.localhost", "127.0.0.1", "[::1]"]:
        assert security.is_loopback(host), host
    for host in ["{0}.localhost", "a}.localhost", "-a.localhost", "x.localhost.evil.example",
                 "evil.example", "a b.localhost"]:
        assert not security.is_loopback(host), host
