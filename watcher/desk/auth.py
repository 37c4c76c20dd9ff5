"""The desk's login and logout: the login page, checking the token POSTed there, and
ending the session.

`AuthViews` holds the handlers (mixed into `Desk`, watcher.desk.app, which routes them);
who may read, the session cookie and the form tokens are watcher.desk.security's `Guard`.
"""

from __future__ import annotations

import logging

from aiohttp import web
from yarl import URL

from watcher.desk.base import DeskBase
from watcher.desk.security import local_path

log = logging.getLogger("watcher.desk")


class AuthViews(DeskBase):
    """Login and logout handlers (mixed into `Desk`)."""

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        target = local_path(request.query.get("next"))
        if self.guard.open or self.guard.authenticated(request):
            raise web.HTTPSeeOther(target)
        return self.render(request, "login.html", title="Log in", next=target)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request, "login")
        target = local_path(form.get("next") if isinstance(form.get("next"), str) else None)
        response = web.HTTPSeeOther(target)
        token = form.get("token")
        if self.guard.open or (isinstance(token, str) and self.guard.login(
                response, token, secure=request.secure)):
            raise response
        log.warning("desk: a login with a wrong token", extra={"remote": request.remote})
        raise web.HTTPSeeOther(str(URL("/login").with_query(next=target, msg="bad-token")))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self._form(request)
        response = web.HTTPSeeOther("/login")
        self.guard.logout(request, response)
        raise response
