"""The console as an aiohttp sub-application mounted at `/console` on the admin server: sign-in, static files,
and each page's routes (one module per page, each with a `routes()` list)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from consumers.console import auth
from consumers.console.context import ConsoleContext
from consumers.console.views import CONTEXT_KEY, HEADERS, page

STATIC = Path(__file__).parent / "static"


async def _login_form(request: web.Request) -> web.StreamResponse:
    if request.app[CONTEXT_KEY].token is None:
        return _disabled(request)
    return page(request, "login.html", title="Sign in", failed=False, next=request.query.get("next", ""))


async def _login(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT_KEY]
    if ctx.token is None:
        return _disabled(request)
    signed = await auth.sign_in(request, ctx.token, ctx.settings.console_session_ttl)
    if signed is None:
        return page(request, "login.html", status=401, title="Sign in", failed=True,
                    next=request.query.get("next", ""))
    raise signed


async def _logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther(f"{auth.PREFIX}/login")
    auth.sign_out(response)
    raise response


def _disabled(request: web.Request) -> web.Response:
    return page(request, "disabled.html", status=503, title="Console off")


@web.middleware
async def _off_without_token(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    """Every page but the static files answers 503 while no admin token is set (the worker keeps no index)."""
    if not request.app[CONTEXT_KEY].enabled and not request.path.startswith(f"{auth.PREFIX}/static/"):
        return _disabled(request)
    return await handler(request)


async def _root_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(f"{auth.PREFIX}/")


def console_application(ctx: ConsoleContext) -> web.Application:
    """The console's sub-application (mount it at `/console` with `add_console`)."""
    from consumers.console import pages  # the page modules import views, which import this package's auth
    from consumers.console.tail import stop_streams

    application = web.Application(middlewares=[_off_without_token, auth.require_sign_in(lambda: ctx.token)])
    application[CONTEXT_KEY] = ctx
    application.router.add_get("/login", _login_form)
    application.router.add_post("/login", _login)
    application.router.add_post("/logout", _logout)
    application.router.add_static("/static", STATIC)
    for routes in pages.ROUTES:
        application.router.add_routes(routes())
    application.on_shutdown.append(stop_streams)  # open live tails end first, or the server waits 60 s for them
    return application


def add_console(application: web.Application, ctx: ConsoleContext) -> None:
    """Mount the console on the admin server's application (before it starts)."""
    application.router.add_get(auth.PREFIX, _root_redirect)
    application.add_subapp(auth.PREFIX, console_application(ctx))


__all__ = ["HEADERS", "add_console", "console_application"]
