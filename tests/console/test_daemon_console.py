"""The web console served by the engine daemon: tasks submitted through EngineService (labels,
request ids) as the console shows them, and `asyncplugin engine serve --http-port` with TLS and
the daemon's bearer tokens as the login."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import ssl
from pathlib import Path

import aiohttp

from asyncplugin.engine import ChannelSecurity, Engine, FakeClock, MemoryStore
from asyncplugin.service import EngineClient, EngineServer
from asyncplugin.service.console import start_console
from asyncplugin.v1 import task_pb2
from tests.console.conftest import Browserless
from tests.engine.conftest import POLICY, SEED, Serve
from tests.engine.plugins import Job
from tests.security.conftest import Pki
from tests.service.daemon_proc import start_daemon_process

TOKEN = "console-daemon-token-" + "3b9d" * 6


async def test_label_filter_finds_a_task_submitted_through_the_daemon(serve: Serve) -> None:
    """A task submitted through SubmitTask with labels and a request id: the console's label
    filter finds it (and only it), its row shows the labels, its page the request id."""
    plugin = await serve(Job(forever=True))
    engine = Engine(store=MemoryStore(), clock=FakeClock(), policy=POLICY, rng=random.Random(SEED))
    server = EngineServer(engine)
    await server.start()
    web = await start_console(engine, host="127.0.0.1", port=0)
    try:
        async with EngineClient(server.address) as client, aiohttp.ClientSession() as http:
            console = Browserless(web, http)
            audio = await client.submit(
                plugin.target, labels={"team": "audio"}, request_id="upload-42"
            )
            ads = await client.submit(plugin.target, labels={"team": "ads"})
            plain = await client.submit(plugin.target)
            status, page = await console.get("/tasks?label=team=audio")
            assert status == 200
            assert audio.task_id in page
            assert ads.task_id not in page
            assert plain.task_id not in page
            row = page[page.index(f'id="task-{audio.task_id}"') :]
            assert '<span class="label">team=audio</span>' in row[: row.index("</tr>")]
            _, page = await console.get("/tasks?label=team")
            assert audio.task_id in page
            assert ads.task_id in page
            assert plain.task_id not in page
            _, page = await console.get(f"/tasks/{audio.task_id}")
            assert '<code id="request-id">upload-42</code>' in page
            assert '<span class="label">team=audio</span>' in page
    finally:
        await web.stop()
        await server.stop(0)


async def test_engine_serve_http_port_serves_the_console_with_tls_and_login(
    tmp_path: Path, pki: Pki, serve: Serve
) -> None:
    """`engine serve --tls-cert/--tls-key --token-file --http-port 0`: the console is HTTPS with
    the daemon's certificate and asks for the daemon's bearer token; after login it lists a task
    submitted over gRPC. SIGTERM with a live event stream open: the console stops first, the
    daemon exits 0."""
    plugin = await serve(Job(forever=True))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    daemon, address = await start_daemon_process(
        tmp_path / "tasks.sqlite3",
        tmp_path / "daemon.log",
        "--tls-cert", str(pki.server.cert),
        "--tls-key", str(pki.server.key),
        "--token-file", str(token_file),
        "--http-port", "0",
    )  # fmt: skip
    try:
        url = (await daemon.wait_for("console on ", timeout_s=10)).split()[2]
        assert url.startswith("https://127.0.0.1:")
        security = ChannelSecurity.from_files(ca_file=pki.ca.cert)
        async with EngineClient(address, security=security, token=TOKEN) as client:
            task = await client.submit(plugin.target, labels={"via": "grpc"})
            async for change in client.watch(task.task_id):
                if change.task.state == task_pb2.TASK_STATE_RUNNING:
                    break
        trusted = ssl.create_default_context(cafile=str(pki.ca.cert))
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=trusted)
        ) as http:
            async with http.get(f"{url}/tasks", allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["Location"].startswith("/login")
            form = {"token": "wrong-" + TOKEN, "next": "/tasks"}
            async with http.post(f"{url}/login", data=form, allow_redirects=False) as response:
                assert response.status == 401
            form = {"token": TOKEN, "next": "/tasks"}
            async with http.post(f"{url}/login", data=form, allow_redirects=False) as response:
                assert response.status == 303
            async with http.get(f"{url}/tasks?label=via=grpc") as response:
                assert response.status == 200
                page = await response.text()
            assert task.task_id in page
            assert TOKEN not in page
            async with http.get(f"{url}/events", timeout=aiohttp.ClientTimeout(total=30)) as live:
                assert live.status == 200
                await live.content.readline()  # the stream is open
                os.kill(daemon.pid, signal.SIGTERM)
                async with asyncio.timeout(15):
                    while await live.content.readline():
                        pass  # the console ends the stream as it stops
        assert await daemon.wait(timeout_s=30) == 0
        assert daemon.matching("engine stopped")
    finally:
        await daemon.kill()
    log = (tmp_path / "daemon.log").read_text()
    assert TOKEN not in log
    assert "3b9d3b9d" not in log
