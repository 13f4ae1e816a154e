"""The console's pages over an engine on a fake clock: what each page shows, and bad input."""

from __future__ import annotations

import asyncio
import html
import logging
import re

import pytest

from asyncplugin.engine import CallKind, CheckOutcome, PollingPolicy, TaskOptions
from asyncplugin.plugin import PluginServer as SdkServer
from asyncplugin.protocol import TaskState, encode_payload
from asyncplugin.v1 import error_pb2, plugin_pb2
from server.fake_remote import FakeRemote
from server.transcriber import Transcriber, fake_transcribe
from tests.console.conftest import StartConsole, count_marks, manual_clock, reach, run_to_end
from tests.engine.conftest import POLICY, MakeEngine, Serve
from tests.engine.plugins import Answer, Behaviour, Job, done, failed, running

SECRET_REMOTE = "remote-job-7f3a-do-not-show"

FAST_TIMEOUT = PollingPolicy(
    initial_interval_s=1.0,
    multiplier=2.0,
    max_interval_s=60.0,
    min_interval_s=0.5,
    jitter=0.2,
    max_checks=100,
    deadline_s=3600.0,
    check_timeout_s=0.3,
)


def flaky_job() -> tuple[list[int], Behaviour]:
    """A job whose first call outlasts the check timeout (a transport retry), then RUNNING
    25% and 50%, then SUCCEEDED with a Struct result."""
    calls = [0]

    async def behave(request: plugin_pb2.InvokeRequest) -> Answer:
        calls[0] += 1
        if calls[0] == 1:
            await asyncio.sleep(1.0)  # beyond check_timeout_s: the engine retries
        number = request.context.check_number
        if request.is_status_check and number >= 2:
            return done(encode_payload({"words": 12}))
        return running(
            {"job": SECRET_REMOTE}, fraction=0.25 * (number + 1), message=f"step {number}"
        )

    return calls, behave


def no_traceback(page: str) -> None:
    assert "Traceback" not in page
    assert 'File "' not in page


async def test_tasks_page_lists_tasks_with_state_progress_and_message(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """A row per task: state, target, method, checks, next check, a progress bar, the status
    message; finished and running tasks side by side."""

    async def forever(request: plugin_pb2.InvokeRequest) -> Answer:
        return running({"job": "j"}, fraction=0.4, message="encoding frames")

    plugin = await serve({"/asyncplugin.v1.PluginService/Invoke": Job(checks=2), "/x.Y/Z": forever})
    clock = manual_clock()
    engine = await make_engine(clock=clock)
    console = await open_console(engine)
    finished = await engine.submit(plugin.target)
    await run_to_end(engine, clock, finished)
    clock.advance(5.0)
    running_id = await engine.submit(plugin.target, method="/x.Y/Z")
    await reach(engine, running_id, TaskState.RUNNING)

    status, page = await console.get("/tasks")
    assert status == 200
    done_row = _row(page, finished)
    assert "SUCCEEDED" in done_row
    assert plugin.target in done_row
    assert ">Invoke<" in done_row
    assert '<td class="checks num">2</td>' in done_row
    assert '<progress max="1" value="1.0000">' in done_row
    run_row = _row(page, running_id)
    assert "RUNNING" in run_row
    assert '<progress max="1" value="0.4000">' in run_row
    assert "encoding frames" in run_row
    assert re.search(r'<td class="next" data-due="[0-9.]+">(in |due now)', run_row)
    assert page.index(running_id) < page.index(finished), "newest first"


async def test_filters_by_state_target_and_id_prefix(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """Each filter narrows the rows; the label filter matches no task without labels."""
    first = await serve(Job(checks=1))
    second = await serve(Job(checks=1))
    engine = await make_engine()
    console = await open_console(engine)
    a = await engine.invoke(first.target)
    b = await engine.invoke(second.target)
    assert a.state is b.state is TaskState.SUCCEEDED

    _, page = await console.get(f"/tasks?target={first.target}")
    assert a.task_id in page
    assert b.task_id not in page
    _, page = await console.get(f"/tasks?q={b.task_id[:6]}")
    assert b.task_id in page
    assert a.task_id not in page
    _, page = await console.get("/tasks?state=FAILED")
    assert a.task_id not in page
    assert 'id="no-tasks"' in page
    _, page = await console.get("/tasks?state=succeeded")
    assert a.task_id in page
    assert b.task_id in page
    _, page = await console.get("/tasks?label=team=search")
    assert a.task_id not in page
    assert 'id="no-tasks"' in page


async def test_paging_walks_every_task_once(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """size=2 over 5 tasks: three pages by the 'next' links, each task exactly once."""
    plugin = await serve(Job(checks=0))
    engine = await make_engine()
    console = await open_console(engine)
    ids = [(await engine.invoke(plugin.target)).task_id for _ in range(5)]
    seen: list[str] = []
    path: str | None = "/tasks?size=2"
    pages = 0
    while path is not None:
        status, page = await console.get(path)
        assert status == 200
        seen += re.findall(r'data-task-id="([0-9a-f]{32})"', page)
        pages += 1
        link = re.search(r'id="next-page" href="([^"]+)"|href="([^"]+)" id="next-page"', page)
        path = html.unescape(link.group(1) or link.group(2)) if link else None
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 5


async def test_malformed_filters_are_shown_next_to_their_field(
    make_engine: MakeEngine, open_console: StartConsole
) -> None:
    """A bad state, target, label, id prefix, size or page token: 400, each error next to its
    field, no rows and no traceback."""
    engine = await make_engine()
    console = await open_console(engine)
    cases = {
        "state=DONE": ("error-state", "unknown state"),
        "target=a%20b:1": ("error-target", "host:port without spaces"),
        "label==x": ("error-label", "KEY or KEY=VALUE"),
        "q=xyz!": ("error-q", "hexadecimal"),
        "size=0": ("error-size", "must be 1 to"),
        "page=garbage": ("error-page", "not a page token from this console"),
        "page=c1.WyJ4IiwieiJd": ("error-page", "not a page token from this console"),
    }
    for query, (field, text) in cases.items():
        status, page = await console.get(f"/tasks?{query}")
        assert status == 400, query
        match = re.search(rf'<p class="field-error" id="{field}">([^<]*)</p>', page)
        assert match is not None, (query, page)
        assert text in html.unescape(match.group(1)), query
        assert 'id="filter-notice"' in page
        assert "data-task-id" not in page
        no_traceback(page)


async def test_unknown_task_is_a_404_page_that_says_so(
    make_engine: MakeEngine, open_console: StartConsole
) -> None:
    engine = await make_engine()
    console = await open_console(engine)
    for task_id in ("0" * 32, "nope", "<script>x"):
        status, page = await console.get(f"/tasks/{task_id}")
        assert status == 404
        assert "No such task" in page
        assert "no task with id" in page
        assert "<script>x" not in page
        no_traceback(page)
    status, _ = await console.get(f"/tasks/{'0' * 32}/remote-input")
    assert status == 404


async def test_task_page_timeline_has_one_mark_per_call_with_gap_reasons(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """Marks coloured by outcome (a transport retry, RUNNING, SUCCEEDED), every recorded
    interval and reason on its gap, progress over time, the result decoded."""
    _, behave = flaky_job()
    plugin = await serve(behave)
    engine = await make_engine(policy=FAST_TIMEOUT)
    console = await open_console(engine)
    record = await engine.invoke(plugin.target, payload={"audio": "a.wav"})
    assert record.state is TaskState.SUCCEEDED
    checks = await engine.checks(record.task_id)
    assert [c.outcome for c in checks] == [
        CheckOutcome.TRANSPORT_RETRY,
        CheckOutcome.RUNNING,
        CheckOutcome.RUNNING,
        CheckOutcome.SUCCEEDED,
    ]

    status, page = await console.get(f"/tasks/{record.task_id}")
    assert status == 200
    assert count_marks(page) == len(checks)
    categories = re.findall(r'<circle class="mark o-([a-z-]+)"', page)
    assert categories == ["retry", "running", "running", "succeeded"]
    text = html.unescape(page)
    for check in checks[:-1]:
        assert check.interval_s is not None
        assert check.reason
        assert check.reason in text, check.reason
    assert "transport retry 1/" in text
    points = re.findall(r'<circle class="progress-point"[^>]*><title>([^<]+)</title>', page)
    assert points == ["25%", "50%", "100%"]
    assert '"words": 12' in text  # the Struct result decoded
    assert '"audio": "a.wav"' in text  # the payload decoded
    assert 'id="cancel-button"' not in page  # finished: nothing to cancel


async def test_failed_task_shows_the_whole_error_chain(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    envelope = error_pb2.Error(
        message="The audio could not be transcribed.",
        suggestion="Check that the file plays.",
        code="REMOTE_JOB_FAILED",
        internal_message="job j-1 exited 3",
        metadata={"job": "j-1"},
        wrapped_error=error_pb2.Error(
            message="decoder error", code="CODEC", wrapped_message="ffmpeg: invalid data"
        ),
    )

    async def fail(request: plugin_pb2.InvokeRequest) -> Answer:
        return failed(envelope)

    plugin = await serve(fail)
    engine = await make_engine()
    console = await open_console(engine)
    record = await engine.invoke(plugin.target)
    assert record.state is TaskState.FAILED
    status, page = await console.get(f"/tasks/{record.task_id}")
    assert status == 200
    section = page[page.index('id="error-envelope"') :]
    text = html.unescape(section)
    for expected in (
        "REMOTE_JOB_FAILED",
        "The audio could not be transcribed.",
        "Check that the file plays.",
        "job j-1 exited 3",
        "CODEC",
        "decoder error",
        "ffmpeg: invalid data",
    ):
        assert expected in text, expected
    assert text.index("REMOTE_JOB_FAILED") < text.index("CODEC") < text.index("ffmpeg")
    assert re.findall(r'<circle class="mark o-([a-z-]+)"', page) == ["failed"]
    _, listing = await console.get("/tasks")
    assert "REMOTE_JOB_FAILED: The audio could not be transcribed." in html.unescape(listing)


async def test_undecodable_payload_is_shown_as_bytes_with_a_note(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    plugin = await serve(Job(checks=0, result=b"\xff\xfe not a struct"))
    engine = await make_engine()
    console = await open_console(engine)
    record = await engine.invoke(plugin.target, payload=b"\x0a\x05hello\xff")
    status, page = await console.get(f"/tasks/{record.task_id}")
    assert status == 200
    payload = html.unescape(page[page.index('id="payload"') :])
    assert "could not be decoded" in payload
    assert "google.protobuf.Struct" in payload
    assert "CgVoZWxsb/8=" in payload  # the bytes, base64
    result = html.unescape(page[page.index('id="result"') : page.index('id="payload"')])
    assert "could not be decoded" in result


async def test_typed_payload_and_result_decoded_through_reflection(
    make_engine: MakeEngine, clock: object, open_console: StartConsole
) -> None:
    """The Transcriber example (typed RPC, reflection on): payload and result as JSON of their
    message types."""
    from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput

    remote = FakeRemote(job_duration_s=2.0, now=clock.now, work=fake_transcribe)  # type: ignore[attr-defined]
    plugin = SdkServer(Transcriber(remote), port=0)
    await plugin.start()
    try:
        engine = await make_engine()
        console = await open_console(engine)
        record = await engine.invoke(
            f"127.0.0.1:{plugin.port}",
            method=Transcriber.rpc_method,
            payload=TranscribeInput(audio_url="https://example.invalid/a.wav", language="en"),
        )
        assert record.state is TaskState.SUCCEEDED
        status, page = await console.get(f"/tasks/{record.task_id}")
        assert status == 200
        text = html.unescape(page)
        assert "asyncplugin.examples.v1.TranscribeInput" in text
        assert '"audioUrl": "https://example.invalid/a.wav"' in text
        assert "asyncplugin.examples.v1.Transcript" in text
        assert '"wordCount":' in text
        _, plugins = await console.get("/plugins")
        assert "SERVING" in plugins
    finally:
        await plugin.stop(None)


async def test_remote_status_input_only_on_request(
    make_engine: MakeEngine,
    serve: Serve,
    open_console: StartConsole,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def forever(request: plugin_pb2.InvokeRequest) -> Answer:
        return running({"job": SECRET_REMOTE}, message="working")

    plugin = await serve(forever)
    engine = await make_engine(clock=manual_clock())
    console = await open_console(engine)
    task_id = await engine.submit(plugin.target)
    await reach(engine, task_id, TaskState.RUNNING)
    for path in (f"/tasks/{task_id}", f"/tasks/{task_id}?fragment=live", "/tasks", "/plugins"):
        status, page = await console.get(path)
        assert status == 200
        assert SECRET_REMOTE not in page, path
    _, page = await console.get(f"/tasks/{task_id}")
    assert f'href="/tasks/{task_id}/remote-input" id="show-remote-input"' in page
    status, value = await console.get(f"/tasks/{task_id}/remote-input")
    assert status == 200
    assert SECRET_REMOTE in value
    assert "remote-input" in caplog.text  # the access log saw the request ...
    assert SECRET_REMOTE not in caplog.text  # ... and logged no value


async def test_stop_ends_open_event_streams(
    make_engine: MakeEngine, open_console: StartConsole
) -> None:
    """Stopping the console with a browser still listening returns at once, not after the
    shutdown timeout."""
    engine = await make_engine()
    console = await open_console(engine)
    async with console.http.get(console.url + "/events") as stream:
        assert (await stream.content.readline()).startswith(b"retry:")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await console.server.stop()
        assert loop.time() - started < 2.0


async def test_cancel_with_csrf_token_cancels_the_task(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    plugin = await serve(Job(forever=True))
    engine = await make_engine(clock=manual_clock())
    console = await open_console(engine)
    task_id = await engine.submit(plugin.target)
    await reach(engine, task_id, TaskState.RUNNING)
    _, page = await console.get(f"/tasks/{task_id}")
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    assert 'id="cancel-button"' in page
    status, _ = await console.post(f"/tasks/{task_id}/cancel", {"csrf": token.group(1)})
    assert status == 303
    assert (await engine.get(task_id)).state is TaskState.CANCELLED
    kinds = [check.kind for check in await engine.checks(task_id)]
    assert kinds[-1] is CallKind.CANCEL
    _, page = await console.get(f"/tasks/{task_id}")
    assert "CANCELLED" in page
    assert 'id="cancel-button"' not in page


async def test_cancel_without_a_valid_csrf_token_is_refused_and_records_nothing(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    plugin = await serve(Job(forever=True))
    engine = await make_engine(clock=manual_clock())
    console = await open_console(engine)
    task_id = await engine.submit(plugin.target)
    await reach(engine, task_id, TaskState.RUNNING)
    await console.get(f"/tasks/{task_id}")  # the browser has a session
    before = await engine.checks(task_id)
    for form in ({}, {"csrf": ""}, {"csrf": "forged"}):
        status, page = await console.post(f"/tasks/{task_id}/cancel", form)
        assert status == 403, form
        assert "CSRF" in page
        no_traceback(page)
    # a cross-site form post (the browser sends the attacker's Origin)
    _, page = await console.get(f"/tasks/{task_id}")
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    status, _ = await console.post(
        f"/tasks/{task_id}/cancel",
        {"csrf": token.group(1)},
        headers={"Origin": "https://evil.test"},
    )
    assert status == 403
    record = await engine.get(task_id)
    assert record.state is TaskState.RUNNING
    assert (await engine.checks(task_id))[: len(before)] == before
    assert all(check.kind is not CallKind.CANCEL for check in await engine.checks(task_id))


async def test_pages_carry_a_csp_and_no_inline_script_or_style(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    plugin = await serve(Job(checks=1))
    engine = await make_engine()
    console = await open_console(engine)
    record = await engine.invoke(plugin.target)
    for path in ("/tasks", f"/tasks/{record.task_id}", "/plugins", "/tasks/none", "/tasks?q=!"):
        async with console.http.get(console.url + path) as response:
            page = await response.text()
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert not re.search(r"\son[a-z]+=", page), path
        assert " style=" not in page, path
        assert not re.search(r'(?:src|href|action)="(?:https?:)?//', page), path


async def test_static_assets_ship_in_the_package(
    make_engine: MakeEngine, open_console: StartConsole
) -> None:
    engine = await make_engine()
    console = await open_console(engine)
    _, page = await console.get("/tasks")
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
        status, body = await console.get(html.unescape(asset))
        assert status == 200, asset
        assert len(body) > 200, asset


async def test_events_stream_rows_as_tasks_change(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """The tasks page's event stream sends each changed task's row, last state SUCCEEDED."""
    plugin = await serve(Job(checks=2))
    engine = await make_engine()
    console = await open_console(engine)
    async with console.http.get(console.url + "/events") as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        task_id = await engine.submit(plugin.target)
        await engine.wait(task_id)
        states: list[str] = []
        while "SUCCEEDED" not in states:
            line = (await asyncio.wait_for(stream.content.readline(), 10)).decode()
            if line.startswith("data:") and task_id in line:
                found = re.search(r'data-state=\\"([A-Z]+)\\"', line)
                assert found is not None
                states.append(found.group(1))
    assert states[-1] == "SUCCEEDED"


async def test_events_for_an_unknown_task_or_a_bad_filter(
    make_engine: MakeEngine, open_console: StartConsole
) -> None:
    engine = await make_engine()
    console = await open_console(engine)
    status, page = await console.get("/events?task=" + "0" * 32)
    assert status == 404
    assert "no task with id" in page
    status, page = await console.get("/events?state=NOPE")
    assert status == 400
    assert "unknown state" in html.unescape(page)


async def test_plugins_page_counts_states_failures_and_latency(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    async def fail(request: plugin_pb2.InvokeRequest) -> Answer:
        return failed(error_pb2.Error(message="no", code="BAD_INPUT"))

    plugin = await serve({"/asyncplugin.v1.PluginService/Invoke": Job(checks=1), "/x.Y/F": fail})
    engine = await make_engine()
    console = await open_console(engine)
    for _ in range(3):
        await engine.invoke(plugin.target)
    await engine.invoke(plugin.target, method="/x.Y/F")
    status, page = await console.get("/plugins")
    assert status == 200
    row = page[page.index(f'data-target="{plugin.target}"') :]
    row = row[: row.index("</tr>")]
    assert "SUCCEEDED 3" in row
    assert "FAILED 1" in row
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells[0] == "7"  # 3 x (initiate + 1 check) + 1 failed initiation
    assert "<code>BAD_INPUT</code> 1 (14.3%)" in row
    assert cells[2] != "-"
    assert cells[3] != "-"
    assert "NO_HEALTH_SERVICE" in row  # the bare test server serves no health


async def test_labels_filter_when_tasks_carry_labels(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """Tasks submitted with labels (TaskOptions.labels) are found by key or key=value; the rows
    and the task page show the labels, and the task page the request id."""
    plugin = await serve(Job(checks=0))
    engine = await make_engine()
    console = await open_console(engine)
    tagged = await engine.invoke(
        plugin.target,
        options=TaskOptions(
            labels=(("team", "search"), ("tier", "gold")), request_id="upload-42", policy=POLICY
        ),
    )
    other = await engine.invoke(plugin.target, options=TaskOptions(labels=(("team", "ads"),)))
    plain = await engine.invoke(plugin.target)
    _, page = await console.get("/tasks?label=team=search")
    assert tagged.task_id in page
    assert other.task_id not in page
    assert '<span class="label">team=search</span>' in _row(page, tagged.task_id)
    assert '<span class="label">tier=gold</span>' in _row(page, tagged.task_id)
    _, page = await console.get("/tasks?label=tier")
    assert tagged.task_id in page
    assert other.task_id not in page
    assert plain.task_id not in page
    _, page = await console.get("/tasks?label=team")
    assert tagged.task_id in page
    assert other.task_id in page
    assert plain.task_id not in page  # a task without labels matches no label filter
    _, page = await console.get("/tasks?label=team=ads")
    assert tagged.task_id not in page
    assert other.task_id in page
    _, page = await console.get("/tasks?label=team=sales")
    assert 'id="no-tasks"' in page
    _, page = await console.get(f"/tasks/{tagged.task_id}")
    assert '<span class="label">team=search</span>' in page
    assert '<code id="request-id">upload-42</code>' in page
    _, page = await console.get(f"/tasks/{other.task_id}")
    assert 'id="request-id"' not in page  # none given, none shown


def _row(page: str, task_id: str) -> str:
    start = page.index(f'id="task-{task_id}"')
    return page[start : page.index("</tr>", start)]
