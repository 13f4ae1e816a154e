"""The console's aiohttp application: routes, login, CSRF, security headers and error pages.

Routes:
    GET  /tasks                      the tasks table (filters, paging; ?fragment=rows: the rows)
    GET  /tasks/{id}                 one task (?fragment=live: the part that changes)
    GET  /tasks/{id}/remote-input    the task's remote_status_input, only when asked for
    POST /tasks/{id}/cancel          cancel (session and CSRF token required)
    GET  /plugins                    per-plugin figures and gRPC health
    GET  /events                     server-sent events (?task=ID, or the tasks page's filters)
    GET|POST /login, POST /logout    bearer-token login (when tokens are configured; wrong
                                     tokens throttled per address; logout revokes)
    GET  /static/...                 CSS and JavaScript shipped in the package

Every response carries a Content-Security-Policy that allows scripts and styles from the
console itself only (no inline script), and pages are never cached. Errors a user can cause
(an unknown task, a bad filter, a refused cancel) get a page that says what was wrong, never a
traceback; an unexpected failure is logged and the page says only that it happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from asyncplugin.engine import Engine, EngineError, TaskNotFound

from . import pages
from .events import EventHub, sse_event
from .probes import PluginProbes
from .query import parse_query
from .render import STATIC_DIR, Renderer
from .security import SESSION_COOKIE, ConsoleSecurity, Session, Sessions
from .throttle import LoginThrottle
from .views import task_row

__all__ = ["CONSOLE_KEY", "Console", "build_app"]

_log = logging.getLogger("asyncplugin.service.console")

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_KEEPALIVE_S: Final = 15.0
_MAX_BODY_BYTES: Final = 64 * 1024

NEW_COOKIE: Final = web.RequestKey("new_cookie", str)
SESSION: Final = web.RequestKey("session", Session)
"""The request's verified session (absent when there is none)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsoleError(Exception):
    """An error page: the status and one line saying what was wrong."""

    def __init__(self, status: int, message: str, *, title: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {403: "Forbidden", 404: "Not found", 409: "Conflict"}.get(
            status, "Error"
        )


class Console:
    """The console over one engine: its pages, sessions, probes and live event hub.

    Args:
        engine: a started engine (the console reads it and cancels through it).
        security: TLS and login settings (tokens: login required).
        probes: how plugins are asked for payload types and health.
        stats_window_s: the plugins page counts calls started within this window.
        login_throttle: how wrong tokens are throttled per client address (default: 5 a
            minute).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        security: ConsoleSecurity | None = None,
        probes: PluginProbes | None = None,
        stats_window_s: float = 3600.0,
        login_throttle: LoginThrottle | None = None,
    ) -> None:
        self.engine = engine
        self.security = security or ConsoleSecurity()
        self.sessions = Sessions(ttl_s=self.security.session_ttl_s)
        self.login_throttle = login_throttle or LoginThrottle()
        self.probes = probes or PluginProbes()
        self.renderer = Renderer()
        self.stats_window_s = stats_window_s
        self.hub: EventHub | None = None

    # -- the application -----------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application serving this console."""
        app = web.Application(
            middlewares=[self._headers, self._errors, self._auth],
            client_max_size=_MAX_BODY_BYTES,
        )
        app[CONSOLE_KEY] = self
        app.router.add_get("/", self._root)
        app.router.add_get("/tasks", self._tasks)
        app.router.add_get("/tasks/{task_id}", self._task)
        app.router.add_get("/tasks/{task_id}/remote-input", self._remote_input)
        app.router.add_post("/tasks/{task_id}/cancel", self._cancel)
        app.router.add_get("/plugins", self._plugins)
        app.router.add_get("/events", self._events)
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_static("/static", STATIC_DIR, append_version=False)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self.hub = EventHub(self.engine)

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self.hub is not None:
            self.hub.close()

    # -- middlewares ---------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Origin "null"
        if not request.path.startswith("/static/"):
            headers.setdefault("Cache-Control", "no-store")
        if self.security.tls:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        cookie = request.get(NEW_COOKIE)
        if cookie is not None and not response.prepared:
            self._set_cookie(response, cookie)
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ConsoleError as err:
            return self._error_page(request, err)
        except web.HTTPException as err:
            if err.status < 400:  # a redirect: answered as it is
                return _redirect(err.headers.get("Location", "/"), status=err.status)
            message = f"no page at {request.path}" if err.status == 404 else err.reason
            return self._error_page(request, ConsoleError(err.status, message))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            _log.exception("console: %s %s failed", request.method, request.path)
            return self._error_page(
                request,
                ConsoleError(500, "the console failed to answer this request (see its log)"),
            )

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        session = self.sessions.verify(request.cookies.get(SESSION_COOKIE))
        if session is None and not self.security.login_required:
            cookie, session = self.sessions.new()  # for the CSRF token of this browser
            request[NEW_COOKIE] = cookie
        if session is not None:
            request[SESSION] = session
        if request.method == "POST" and not _same_origin(request):
            _log.warning("console: refused a cross-origin %s to %s", request.method, request.path)
            raise ConsoleError(403, "refused: the request came from another site")
        public = request.path in ("/login", "/logout") or request.path.startswith("/static/")
        if session is None and not public:
            if request.method == "GET" and request.path != "/events":
                raise web.HTTPSeeOther(f"/login?next={_quote_path(request.path_qs)}")
            raise ConsoleError(403, "refused: log in first")
        return await handler(request)

    # -- pages -----------------------------------------------------------------------------

    async def _root(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/tasks")

    async def _tasks(self, request: web.Request) -> web.StreamResponse:
        query, errors = parse_query(_params(request))
        context = await pages.tasks_context(self.engine, query, errors)
        status = 400 if errors else 200
        if request.query.get("fragment") == "rows":
            return self._html("rows.html", status=status, **context)
        return self._page(request, "tasks.html", status=status, title="Tasks", **context)

    async def _task(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        try:
            context = await pages.task_context(self.engine, self.probes, task_id)
        except TaskNotFound:
            raise ConsoleError(404, f"no task with id {task_id!r}", title="No such task") from None
        if request.query.get("fragment") == "live":
            return self._html("task_live.html", **context, csrf=self._csrf(request))
        return self._page(request, "task.html", title=f"Task {task_id[:12]}", **context)

    async def _remote_input(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        try:
            value = await pages.remote_input(self.engine, task_id)
        except TaskNotFound:
            raise ConsoleError(404, f"no task with id {task_id!r}", title="No such task") from None
        text = json.dumps(value, indent=2, ensure_ascii=False) if value is not None else "(none)"
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _plugins(self, request: web.Request) -> web.StreamResponse:
        context = await pages.plugins_context(
            self.engine, self.probes, window_s=self.stats_window_s
        )
        return self._page(request, "plugins.html", title="Plugins", **context)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        form = await request.post()
        csrf = form.get("csrf")
        if not Sessions.csrf_valid(request.get(SESSION), csrf if isinstance(csrf, str) else None):
            _log.warning("console: refused to cancel task %s: no valid CSRF token", task_id)
            raise ConsoleError(403, "refused: the form's CSRF token is missing or not valid")
        try:
            record = await self.engine.cancel(task_id)
        except TaskNotFound:
            raise ConsoleError(404, f"no task with id {task_id!r}", title="No such task") from None
        except EngineError as err:
            raise ConsoleError(409, f"task {task_id} cannot be cancelled here: {err}") from None
        _log.info("console: cancel of task %s: now %s", task_id, record.state.name)
        raise web.HTTPSeeOther(f"/tasks/{task_id}")

    # -- live updates ----------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        task_id = request.query.get("task", "")
        query, errors = parse_query(_params(request))
        if errors:
            raise ConsoleError(400, "; ".join(errors.values()))
        if task_id:
            try:
                await self.engine.get(task_id)
            except TaskNotFound:
                raise ConsoleError(404, f"no task with id {task_id!r}") from None
        if self.hub is None:
            raise ConsoleError(503, "the console is not running")
        subscription = self.hub.subscribe()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        response.headers["Cache-Control"] = "no-store"
        if request.get(NEW_COOKIE) is not None:
            self._set_cookie(response, request[NEW_COOKIE])
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    batch = await asyncio.wait_for(subscription.next_batch(), _KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if batch is None:
                    break
                now = self.engine.clock.now()
                chunks: list[bytes] = []
                for record in batch:
                    if task_id:
                        if record.task_id == task_id:
                            chunks.append(sse_event("task", {"id": task_id, "now": now}))
                    elif query.matches(record):
                        html = self.renderer.render(
                            "row.html", row=task_row(record, now=now), now=now
                        )
                        data = {"id": record.task_id, "html": html, "now": now}
                        chunks.append(sse_event("row", data))
                    else:
                        chunks.append(sse_event("remove", {"id": record.task_id}))
                if chunks:
                    await response.write(b"".join(chunks))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(subscription)
        return response

    # -- login -----------------------------------------------------------------------------

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.security.login_required:
            raise web.HTTPSeeOther("/tasks")
        return self._page(
            request, "login.html", title="Log in", next=_safe_next(request.query.get("next"))
        )

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if not self.security.login_required:
            raise web.HTTPSeeOther("/tasks")
        form = await request.post()
        token = form.get("token")
        asked = form.get("next")
        next_path = _safe_next(asked if isinstance(asked, str) else None)
        address = request.remote or "-"
        wait_s = self.login_throttle.retry_after_s(address)
        if wait_s > 0:  # the token is not even checked: guessing stays at a few a minute
            retry_after = max(1, math.ceil(wait_s))
            _log.warning(
                "console: refused a login from %s: too many wrong tokens, retry in %d s",
                address,
                retry_after,
            )
            response = self._page(
                request,
                "login.html",
                status=429,
                title="Log in",
                next=next_path,
                error=f"too many wrong tokens from your address: try again in {retry_after} s",
            )
            response.headers["Retry-After"] = str(retry_after)
            return response
        if not isinstance(token, str) or not self.security.token_accepted(token):
            self.login_throttle.failed(address)
            _log.warning("console: refused a login from %s: a wrong token", address)
            return self._page(
                request,
                "login.html",
                status=401,
                title="Log in",
                next=next_path,
                error="that token is not accepted",
            )
        self.login_throttle.succeeded(address)
        cookie, _ = self.sessions.new()
        response = _redirect(next_path)
        self._set_cookie(response, cookie)
        _log.info("console: a login from %s", request.remote)
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        csrf = form.get("csrf")
        if not Sessions.csrf_valid(request.get(SESSION), csrf if isinstance(csrf, str) else None):
            raise ConsoleError(403, "refused: the form's CSRF token is missing or not valid")
        session: Session | None = request.get(SESSION)
        if session is not None:  # a kept copy of the cookie must not log in again
            self.sessions.revoke(session)
        response = _redirect("/login" if self.security.login_required else "/tasks")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # -- helpers ---------------------------------------------------------------------------

    def _csrf(self, request: web.Request) -> str:
        session: Session | None = request.get(SESSION)
        return session.csrf_token if session is not None else ""

    def _set_cookie(self, response: web.StreamResponse, cookie: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(self.security.session_ttl_s),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.security.tls,
        )

    def _html(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        text = self.renderer.render(template, **context)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def _page(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        context.setdefault("now", self.engine.clock.now())
        return self._html(
            template,
            status=status,
            csrf=self._csrf(request),
            logged_in=self.security.login_required and request.get(SESSION) is not None,
            **context,
        )

    def _error_page(self, request: web.Request, err: ConsoleError) -> web.Response:
        return self._page(
            request, "error.html", status=err.status, title=err.title, message=err.message
        )


CONSOLE_KEY: Final = web.AppKey("console", Console)


def build_app(
    engine: Engine,
    *,
    security: ConsoleSecurity | None = None,
    probes: PluginProbes | None = None,
    stats_window_s: float = 3600.0,
) -> web.Application:
    """The console's aiohttp application over a started `engine` (see `Console`)."""
    console = Console(engine, security=security, probes=probes, stats_window_s=stats_window_s)
    return console.app()


def _redirect(location: str, *, status: int = 303) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _params(request: web.Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query.items():
        params.setdefault(key, []).append(value)
    return params


def _same_origin(request: web.Request) -> bool:
    """False when a browser says the request comes from another origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


def _safe_next(value: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/tasks"
    return value


def _quote_path(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")
