"""Signing in to the console: the admin token typed once into a form, then a cookie.

The cookie holds an expiry and an HMAC of it keyed by the token, so it proves knowledge of the token without
holding it, and changing HERALD_ADMIN_TOKEN ends every session. It is HttpOnly and SameSite=Strict, scoped to
`/console`, and Secure when the request came over HTTPS. Forms that change something (a dead-letter replay) also
carry a CSRF token derived from the cookie. Scripts may send `Authorization: Bearer <token>` instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from consumers.inbound.admin import bearer_matches

COOKIE = "herald_console"
PREFIX = "/console"
OPEN_PATHS = (f"{PREFIX}/login", f"{PREFIX}/static/")
FAILED_SIGN_IN_DELAY = 0.5  # seconds: slows guessing without a lock-out a guesser could use against staff

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _mac(token: SecretStr, *parts: str) -> str:
    return hmac.new(token.get_secret_value().encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


def session_cookie(token: SecretStr, ttl: timedelta, now: float | None = None) -> str:
    """A cookie value good until `now + ttl`."""
    expires = str(int((now if now is not None else time.time()) + ttl.total_seconds()))
    return f"{expires}.{_mac(token, 'console-session', expires)}"


def session_valid(token: SecretStr, value: str | None, now: float | None = None) -> bool:
    """Whether a cookie value was made with `token` and has not expired."""
    expires, _, mac = (value or "").partition(".")
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(mac, _mac(token, "console-session", expires))


def csrf_token(token: SecretStr, request: web.Request) -> str:
    """The CSRF token of this request's session (the bearer's, for scripts)."""
    session = request.cookies.get(COOKIE) or request.headers.get("Authorization") or ""
    return _mac(token, "console-csrf", session)


def csrf_valid(token: SecretStr, request: web.Request, sent: str | None) -> bool:
    return hmac.compare_digest(sent or "", csrf_token(token, request))


def signed_in(token: SecretStr, request: web.Request) -> bool:
    return session_valid(token, request.cookies.get(COOKIE)) or \
        bearer_matches(request.headers.get("Authorization"), token)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


def require_sign_in(token: Callable[[], SecretStr | None]) -> Middleware:
    """Middleware: a console page without a session redirects to the sign-in form (401 for scripts)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        secret = token()
        if not path.startswith(PREFIX) or path.startswith(OPEN_PATHS) or secret is None:
            return await handler(request)
        if signed_in(secret, request):
            return await handler(request)
        if request.headers.get("Accept", "").startswith("text/html") or request.method == "GET":
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={request.path_qs}")
        return web.json_response({"error": "unauthorized", "detail": "sign in at /console/login"}, status=401)

    return middleware


async def sign_in(request: web.Request, token: SecretStr, ttl: timedelta) -> web.HTTPSeeOther | None:
    """Handle the sign-in form: a redirect with the cookie set, or None (after a pause) when the token is wrong."""
    form = await request.post()
    given = form.get("token")
    if not isinstance(given, str) or not bearer_matches(f"Bearer {given}", token):
        await asyncio.sleep(FAILED_SIGN_IN_DELAY)
        return None
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    response.set_cookie(COOKIE, session_cookie(token, ttl), max_age=int(ttl.total_seconds()), path=PREFIX,
                        httponly=True, samesite="Strict", secure=request.secure)
    return response


def sign_out(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=PREFIX)
