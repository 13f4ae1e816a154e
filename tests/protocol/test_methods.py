"""One method-path rule, applied alike by the engine, the plugin SDK and the command line."""

from __future__ import annotations

from typing import Any

import pytest

from asyncplugin.cli import main
from asyncplugin.engine import Engine, FakeClock
from asyncplugin.plugin import AsyncPlugin
from asyncplugin.plugin.dispatch import PluginDispatcher
from asyncplugin.protocol import GENERIC_METHOD, Request
from asyncplugin.protocol.methods import check_method, split_method

GOOD = [
    (GENERIC_METHOD, ("asyncplugin.v1.PluginService", "Invoke")),
    ("/asyncplugin.examples.v1.TranscriberService/Transcribe", None),
    ("/Service/Method", ("Service", "Method")),
    ("/_pkg.v2_beta.Svc1/Do_It2", ("_pkg.v2_beta.Svc1", "Do_It2")),
]

BAD = [
    "",
    "Invoke",
    "/",
    "/a.B/",
    "//Invoke",
    "/a..B/M",
    "/a.B./M",
    "/.a.B/M",
    "/1a.B/M",
    "/a.B/1M",
    "/a.B/M/extra",
    "/a.B/M/",
    "/a B/M",
    " /a.B/M",
    "/a.B/M ",
    "/a.B/Mé",
    "/a-b.C/M",
]


@pytest.mark.parametrize(("path", "parts"), GOOD)
def test_full_method_paths_are_accepted_and_split(path: str, parts: tuple[str, str] | None) -> None:
    """ "/package.Service/Method" (package optional, ASCII identifiers) splits at the slashes."""
    assert check_method(path) == path
    service, method = split_method(path)
    assert f"/{service}/{method}" == path
    if parts is not None:
        assert (service, method) == parts


@pytest.mark.parametrize("path", BAD)
def test_malformed_method_paths_are_refused_naming_the_path(path: str) -> None:
    """Anything else is a ValueError naming what was given and the expected form."""
    with pytest.raises(ValueError, match="must be a full method path like") as caught:
        check_method(path, what="--method")
    assert str(caught.value).startswith("--method must be")
    assert repr(path) in str(caught.value)


def test_a_path_without_its_leading_slash_is_refused_with_the_path_meant() -> None:
    """The rule does not guess: a path missing its leading slash is refused, and the message
    names the full path meant."""
    with pytest.raises(ValueError, match=r"did you mean '/a\.B/M'\?"):
        check_method("a.B/M")
    with pytest.raises(ValueError, match="must be a full method path") as caught:
        check_method("Invoke")
    assert "did you mean" not in str(caught.value)  # no full path to suggest


@pytest.mark.parametrize("path", BAD)
async def test_the_engine_refuses_what_the_rule_refuses(path: str) -> None:
    """Engine.submit applies the same rule before anything is recorded."""
    async with Engine(clock=FakeClock()) as engine:
        with pytest.raises(ValueError, match="method must be a full method path"):
            await engine.submit("127.0.0.1:1", method=path)
        assert await engine.list() == []


@pytest.mark.parametrize("path", BAD)
def test_the_plugin_sdk_refuses_what_the_rule_refuses(path: str) -> None:
    """A plugin class naming a malformed rpc_method cannot be served."""

    class Named(AsyncPlugin[dict[str, Any], dict[str, Any]]):
        rpc_method = path

        def initiate_work(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
            return {}

    with pytest.raises(ValueError, match=r"Named\.rpc_method must be a full method path"):
        PluginDispatcher(Named(), max_message_bytes=1024)


@pytest.mark.parametrize("path", ["/a.B/", "/a..B/M", "a..B/M"])
@pytest.mark.parametrize("command", ["invoke", "conformance plugin"])
def test_the_command_line_refuses_what_the_rule_refuses(
    command: str, path: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """`invoke` and `conformance plugin` refuse a bad --method in one line, before connecting
    (nothing listens at the target)."""
    extra = ["--store", str(tmp_path / "t.db")] if command == "invoke" else []
    code = main([*command.split(), "127.0.0.1:1", "--method", path, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert "--method must be a full method path" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["invoke", "conformance plugin"])
def test_the_command_line_accepts_a_method_without_its_leading_slash(
    command: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """`a.B/M` is taken as `/a.B/M`: the command goes on to connect (nothing listens)."""
    extra = ["--store", str(tmp_path / "t.db")] if command == "invoke" else []
    argv = [*command.split(), "127.0.0.1:1", "--method", "a.B/M", "--connect-timeout", "0.2"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a gRPC server at 127.0.0.1:1" in err
    assert "--method" not in err
