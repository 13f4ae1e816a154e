"""What `asyncplugin serve` (and `as_plugin`) accepts: AsyncPlugins and any class with `run`."""

from __future__ import annotations

import abc
import sys
from pathlib import Path
from typing import Any

import pytest

from asyncplugin.cli import main
from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput, Transcript
from asyncplugin.plugin import AsyncPlugin, PluginLoadError, PluginServer, RunAdapter, as_plugin
from asyncplugin.protocol import Request, Response, decode_payload
from tests.plugin.conftest import StartServer


class PlainRun:
    """Not an AsyncPlugin: just a class with run."""

    def run(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {"seen": request.data, "check": request.is_status_check}


class TypedRun:
    """Payload types read from run's annotations."""

    rpc_method = "/asyncplugin.examples.v1.TranscriberService/Transcribe"

    async def run(self, request: Request[TranscribeInput]) -> Transcript | Response[Transcript]:
        return Transcript(text=request.data.audio_url, word_count=1)


class NoRun:
    """A Steamship-style class that forgot run (and has no handlers)."""

    def check_status(self, request: Any) -> Any:
        return None


class AbstractBase(abc.ABC):
    @abc.abstractmethod
    def transcribe(self, url: str) -> str: ...

    def run(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {"text": self.transcribe(request.data["url"])}


class PlainAbstract:
    """@abstractmethod without ABCMeta: Python would create it; serve must not."""

    @abc.abstractmethod
    def transcribe(self, url: str) -> str: ...

    def run(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {"text": self.transcribe(request.data["url"])}


class NeedsArgs:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def run(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {}


class TwoOutputs:
    def run(self, request: Request[Any]) -> Transcript | dict[str, Any]:
        return {}


async def test_class_with_run_is_wrapped_and_served(start_server: StartServer) -> None:
    """A class with run (no base class) is created, wrapped, and gets every call."""
    plugin = as_plugin(PlainRun)
    assert isinstance(plugin, RunAdapter)
    assert isinstance(plugin.wrapped, PlainRun)
    assert plugin.name == "plain_run"
    assert (plugin.input_type, plugin.output_type) == (dict, dict)
    served = await start_server(plugin)
    response = await served.invoke({"a": 1})
    assert decode_payload(response.data, dict) == {"seen": {"a": 1}, "check": False}


async def test_payload_types_and_method_come_from_the_class(start_server: StartServer) -> None:
    """run's annotations give the payload types; a class attribute rpc_method is kept."""
    plugin = as_plugin(TypedRun())
    assert (plugin.input_type, plugin.output_type) == (TranscribeInput, Transcript)
    assert plugin.rpc_method == TypedRun.rpc_method
    served = await start_server(plugin)
    assert served.server.service_name == "asyncplugin.examples.v1.TranscriberService"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (NoRun, "NoRun is not an AsyncPlugin and has no run method: define run(self, request)"),
        (NoRun(), "NoRun is not an AsyncPlugin and has no run method"),
        (AbstractBase, "AbstractBase cannot be served: method transcribe is abstract; implement"),
        (PlainAbstract, "PlainAbstract cannot be served: method transcribe is abstract"),
        (NeedsArgs, "cannot create NeedsArgs() without arguments"),
        (TwoOutputs, "names two output types"),
        (len, "len is a function, not an AsyncPlugin or a class with a run method"),
        (sys, "sys is a module, not an AsyncPlugin"),
    ],
)
def test_unservable_objects_are_refused_in_one_line(target: object, message: str) -> None:
    """Each is refused before anything is served, with one line naming what is missing."""
    with pytest.raises(PluginLoadError) as caught:
        as_plugin(target)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, TypeError)


def test_abstract_asyncplugin_is_refused_naming_the_method() -> None:
    """An AsyncPlugin with an abstract method is refused by name, also by PluginServer (which
    would otherwise fail only when the method is called)."""

    class Base(AsyncPlugin[dict[str, Any], dict[str, Any]], abc.ABC):
        @abc.abstractmethod
        def remote(self) -> str: ...

        async def initiate_work(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
            return {"remote": self.remote()}

    class Sneaky(AsyncPlugin[dict[str, Any], dict[str, Any]]):
        @abc.abstractmethod
        def remote(self) -> str: ...

        async def initiate_work(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
            return {}

    with pytest.raises(PluginLoadError, match="method remote is abstract"):
        as_plugin(Base)
    with pytest.raises(PluginLoadError, match="method remote is abstract"):
        PluginServer(Sneaky())  # type: ignore[abstract]


def test_cli_refuses_a_steamship_style_class_without_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`asyncplugin serve mod:Cls` for a class with neither run nor handlers exits 2 with one
    line naming the missing run; an abstract class likewise names the abstract method."""
    (tmp_path / "steamship_style_probe.py").write_text(
        "from abc import ABC, abstractmethod\n"
        "class NotAPlugin:\n"
        "    def initiate(self, request):\n"
        "        return None\n"
        "class Abstract(ABC):\n"
        "    @abstractmethod\n"
        "    def run(self, request): ...\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "steamship_style_probe", raising=False)
    try:
        assert main(["serve", "steamship_style_probe:NotAPlugin", "--port", "0"]) == 2
        first = capsys.readouterr().err
        assert main(["serve", "steamship_style_probe:Abstract", "--port", "0"]) == 2
        second = capsys.readouterr().err
    finally:
        sys.modules.pop("steamship_style_probe", None)
    assert first.count("\n") == 1
    assert "steamship_style_probe:NotAPlugin is not an AsyncPlugin and has no run method" in first
    assert second.count("\n") == 1
    assert "steamship_style_probe:Abstract cannot be served: method run is abstract" in second


def test_cli_loads_a_class_with_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The serve command's loader wraps a plain class with run."""
    from asyncplugin.cli.serve import load_plugin

    (tmp_path / "plain_run_probe.py").write_text(
        "class Probe:\n    def run(self, request):\n        return {}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "plain_run_probe", raising=False)
    try:
        plugin = load_plugin("plain_run_probe:Probe")
    finally:
        sys.modules.pop("plain_run_probe", None)
    assert isinstance(plugin, RunAdapter)
    assert plugin.name == "probe"
