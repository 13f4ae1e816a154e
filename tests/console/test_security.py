"""The console's security: the bind rule, TLS, bearer-token login, sessions, CSRF, and no
secret in any page or log line."""

from __future__ import annotations

import logging
import re
import ssl
from pathlib import Path
from urllib.parse import unquote

import pytest

from asyncplugin.protocol import TaskState
from asyncplugin.service.console import (
    ConsoleConfigError,
    ConsoleSecurity,
    LoginThrottle,
    start_console,
)
from asyncplugin.service.console.security import SESSION_COOKIE, Sessions, check_bind
from tests.console.conftest import StartConsole, csrf_of, manual_clock, reach
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Job
from tests.security.conftest import Pki


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "console.example"])
def test_non_loopback_host_without_tls_is_refused(host: str) -> None:
    with pytest.raises(ConsoleConfigError, match="without TLS") as raised:
        check_bind(host, ConsoleSecurity())
    assert "\n" not in str(raised.value)


def test_non_loopback_host_with_tls_but_no_tokens_is_refused(pki: Pki) -> None:
    security = ConsoleSecurity(tls_cert_file=pki.server.cert, tls_key_file=pki.server.key)
    with pytest.raises(ConsoleConfigError, match="without bearer tokens"):
        check_bind("0.0.0.0", security)
    check_bind("0.0.0.0", _tls(pki, "t0k"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, ConsoleSecurity())


async def test_start_console_refuses_before_binding(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    with pytest.raises(ConsoleConfigError, match=r"refusing to serve the console on 0\.0\.0\.0"):
        await start_console(engine, host="0.0.0.0", port=0)


def test_security_settings_are_checked() -> None:
    with pytest.raises(ConsoleConfigError, match="both a certificate and a key"):
        ConsoleSecurity(tls_cert_file=Path("x.pem"))
    with pytest.raises(ConsoleConfigError, match="printable ASCII"):
        ConsoleSecurity(tokens=("has space",))
    with pytest.raises(ConsoleConfigError, match="cannot read token file"):
        ConsoleSecurity.from_files(token_file="/nonexistent/tokens")
    unreadable = ConsoleSecurity(
        tls_cert_file=Path("/nonexistent/c.pem"),
        tls_key_file=Path("/nonexistent/k.pem"),
    )
    with pytest.raises(ConsoleConfigError, match="cannot load the console's TLS certificate"):
        unreadable.ssl_context()
    assert "tokens" not in repr(ConsoleSecurity(tokens=("secret-token",)))
    assert "secret-token" not in repr(ConsoleSecurity(tokens=("secret-token",)))


def test_sessions_refuse_forged_tampered_and_expired_cookies() -> None:
    now = [1000.0]
    sessions = Sessions(ttl_s=60.0, now=lambda: now[0])
    cookie, session = sessions.new()
    assert sessions.verify(cookie) == session
    version, session_id, expires, mac = cookie.split(".")
    for forged in (
        "",
        "garbage",
        f"{version}.{session_id}.{int(expires) + 3600}.{mac}",  # a longer life, same MAC
        f"{version}.other{session_id}.{expires}.{mac}",
        f"v0.{session_id}.{expires}.{mac}",
        Sessions(ttl_s=60.0, now=lambda: now[0]).new()[0],  # another process's key
    ):
        assert sessions.verify(forged) is None, forged
    assert Sessions.csrf_valid(session, session.csrf_token)
    assert not Sessions.csrf_valid(session, session.csrf_token + "x")
    assert not Sessions.csrf_valid(None, session.csrf_token)
    now[0] += 61
    assert sessions.verify(cookie) is None
    assert "key" in repr(sessions)
    assert session.session_id not in repr(session)


def _tls(pki: Pki, *tokens: str) -> ConsoleSecurity:
    return ConsoleSecurity(
        tls_cert_file=pki.server.cert, tls_key_file=pki.server.key, tokens=tokens
    )


def _client_ssl(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca.cert))


async def test_tls_login_sets_a_strict_httponly_secure_cookie_and_logs_no_token(
    pki: Pki,
    make_engine: MakeEngine,
    serve: Serve,
    open_console: StartConsole,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "console-token-Zq81xPq0"
    plugin = await serve(Job(forever=True))
    engine = await make_engine(clock=manual_clock())
    task_id = await engine.submit(plugin.target)
    await reach(engine, task_id, TaskState.RUNNING)
    console = await open_console(
        engine,
        security=_tls(pki, "old-token-1", token),
        client_ssl=_client_ssl(pki),
    )
    assert console.url.startswith("https://127.0.0.1:")

    # Not logged in: pages redirect to the login form; a POST and the event stream are refused.
    status, _ = await console.get("/tasks")
    assert status == 303
    async with console.http.get(console.url + "/tasks", allow_redirects=False) as response:
        assert unquote(response.headers["Location"]) == "/login?next=/tasks"
    status, _ = await console.get("/events")
    assert status == 403
    status, page = await console.post(f"/tasks/{task_id}/cancel", {"csrf": "x"})
    assert status == 403
    assert "log in first" in page
    assert (await engine.get(task_id)).state is TaskState.RUNNING

    # A wrong token: 401, no cookie.
    status, page = await console.post("/login", {"token": "wrong", "next": "/tasks"})
    assert status == 401
    assert "not accepted" in page
    assert not any(cookie.key == SESSION_COOKIE for cookie in console.http.cookie_jar)

    # The right token: a strict, HttpOnly, Secure cookie that does not hold the token.
    async with console.http.post(
        console.url + "/login",
        data={"token": token, "next": "//evil.test/x"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/tasks"  # never another site
        set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie
    assert "Secure" in set_cookie
    assert token not in set_cookie

    pages = []
    for path in ("/tasks", f"/tasks/{task_id}", "/plugins"):
        status, page = await console.get(path)
        assert status == 200, path
        pages.append(page)
        assert "Log out" in page
    # Cancel still needs the CSRF token of this session.
    status, _ = await console.post(f"/tasks/{task_id}/cancel", {"csrf": "forged"})
    assert status == 403
    assert (await engine.get(task_id)).state is TaskState.RUNNING
    status, _ = await console.post(f"/tasks/{task_id}/cancel", {"csrf": csrf_of(pages[1])})
    assert status == 303
    assert (await engine.get(task_id)).state is TaskState.CANCELLED

    # Log out: the cookie goes, pages ask for a login again.
    _, page = await console.get("/tasks")
    status, _ = await console.post("/logout", {"csrf": csrf_of(page)})
    assert status == 303
    status, _ = await console.get("/tasks")
    assert status == 303

    everything = "".join(pages) + caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert token not in everything
    assert "old-token-1" not in everything
    assert "refused a login" in caplog.text


async def test_forged_session_cookie_is_not_a_login(
    pki: Pki, make_engine: MakeEngine, open_console: StartConsole
) -> None:
    engine = await make_engine()
    console = await open_console(
        engine,
        security=_tls(pki, "t0ken"),
        client_ssl=_client_ssl(pki),
    )
    forged = Sessions(ttl_s=3600).new()[0]
    status, _ = await console.get("/tasks", headers={"Cookie": f"{SESSION_COOKIE}={forged}"})
    assert status == 303


async def test_without_tokens_pages_open_on_loopback_and_cookie_is_strict(
    make_engine: MakeEngine, open_console: StartConsole
) -> None:
    engine = await make_engine()
    console = await open_console(engine)
    async with console.http.get(console.url + "/tasks") as response:
        assert response.status == 200
        set_cookie = response.headers["Set-Cookie"]
        page = await response.text()
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP on loopback
    status, _ = await console.get("/login")
    assert status == 303  # no login without tokens
    assert "Log out" not in page
    assert re.search(r'<script src="/static/console\.js\?v=[0-9a-f]+" defer>', page)


def test_a_revoked_session_no_longer_verifies_until_its_cookie_would_have_expired() -> None:
    now = [1000.0]
    sessions = Sessions(ttl_s=60.0, now=lambda: now[0])
    cookie, session = sessions.new()
    other_cookie, other = sessions.new()
    sessions.revoke(session)
    assert sessions.verify(cookie) is None  # a copy kept from before the logout
    assert sessions.verify(other_cookie) == other  # only that session ended
    assert sessions.revoked_count == 1
    now[0] += 61  # both cookies expired: the revoked id is forgotten at the next revoke
    sessions.revoke(other)
    assert sessions.revoked_count == 0
    assert sessions.verify(cookie) is None


def test_too_many_live_revocations_replace_the_key_and_end_every_session() -> None:
    now = [1000.0]
    sessions = Sessions(ttl_s=60.0, now=lambda: now[0], max_revoked=2)
    made = [sessions.new() for _ in range(4)]
    sessions.revoke(made[0][1])
    sessions.revoke(made[1][1])
    assert sessions.verify(made[3][0]) == made[3][1]
    sessions.revoke(made[2][1])  # a third live revocation: the memory bound is reached
    assert sessions.revoked_count == 0
    assert all(sessions.verify(cookie) is None for cookie, _ in made)
    fresh_cookie, fresh = sessions.new()
    assert sessions.verify(fresh_cookie) == fresh
    with pytest.raises(ValueError, match="max_revoked must be >= 1, got 0"):
        Sessions(ttl_s=60.0, max_revoked=0)


def test_login_throttle_refuses_an_address_for_the_rest_of_its_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=3, window_s=60.0, now=lambda: now[0])
    for second in (0.0, 10.0, 20.0):
        now[0] = second
        assert throttle.retry_after_s("198.51.100.7") == 0.0
        throttle.failed("198.51.100.7")
    assert throttle.retry_after_s("198.51.100.7") == pytest.approx(40.0)  # 0 + 60 - 20
    assert throttle.retry_after_s("198.51.100.8") == 0.0  # other addresses are not held
    now[0] = 60.0  # the first failure left the window: one more try
    assert throttle.retry_after_s("198.51.100.7") == 0.0
    throttle.failed("198.51.100.7")
    assert throttle.retry_after_s("198.51.100.7") == pytest.approx(10.0)  # 10 + 60 - 60
    throttle.succeeded("198.51.100.7")
    assert throttle.retry_after_s("198.51.100.7") == 0.0
    now[0] = 500.0
    throttle.failed("198.51.100.9")
    now[0] = 600.0
    assert throttle.retry_after_s("198.51.100.9") == 0.0
    assert throttle.addresses == 0  # an address whose failures all aged out is forgotten


def test_login_throttle_remembers_a_bounded_number_of_addresses() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=1, max_addresses=2, now=lambda: now[0])
    throttle.failed("a")
    throttle.failed("b")
    throttle.failed("a")  # "a" is now the most recent: "b" is the stalest
    throttle.failed("c")
    assert throttle.addresses == 2
    assert throttle.retry_after_s("b") == 0.0
    assert throttle.retry_after_s("a") > 0
    assert throttle.retry_after_s("c") > 0
    for wrong, message in (
        ({"max_failures": 0}, "max_failures must be >= 1, got 0"),
        ({"window_s": 0.0}, "window_s must be > 0, got 0.0"),
        ({"max_addresses": 0}, "max_addresses must be >= 1, got 0"),
    ):
        with pytest.raises(ValueError, match=message):
            LoginThrottle(**wrong)


async def test_wrong_tokens_are_throttled_and_a_logout_revokes_the_cookie(
    pki: Pki,
    make_engine: MakeEngine,
    open_console: StartConsole,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    token = "console-token-Zq81xPq0"
    now = [0.0]
    engine = await make_engine()
    console = await open_console(
        engine,
        security=_tls(pki, token),
        client_ssl=_client_ssl(pki),
        login_throttle=LoginThrottle(max_failures=3, window_s=60.0, now=lambda: now[0]),
    )
    for _ in range(3):
        status, page = await console.post("/login", {"token": "guess", "next": "/tasks"})
        assert status == 401
    # The fourth try is refused before its token is looked at, even the right one.
    async with console.http.post(
        console.url + "/login", data={"token": token}, allow_redirects=False
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "60"
        assert "try again in 60 s" in await response.text()
    assert not any(cookie.key == SESSION_COOKIE for cookie in console.http.cookie_jar)
    assert "too many wrong tokens" in caplog.text

    now[0] = 60.0  # the window has passed
    async with console.http.post(
        console.url + "/login", data={"token": token}, allow_redirects=False
    ) as response:
        assert response.status == 303
    kept = next(c.value for c in console.http.cookie_jar if c.key == SESSION_COOKIE)
    status, page = await console.get("/tasks")
    assert status == 200

    status, _ = await console.post("/logout", {"csrf": csrf_of(page)})
    assert status == 303
    # A copy of the cookie kept from before the logout opens nothing.
    status, _ = await console.get("/tasks", headers={"Cookie": f"{SESSION_COOKIE}={kept}"})
    assert status == 303
    assert token not in caplog.text
