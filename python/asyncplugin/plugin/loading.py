"""What may be served as a plugin: an AsyncPlugin, or any class with a `run(request)` method.

`as_plugin` checks a class before anything is created and says in one line what is missing: no
`run` (and not an AsyncPlugin), an AsyncPlugin implementing neither `run` nor `initiate_work`,
or methods still abstract (marked `@abstractmethod`, with or without ABCMeta: a plain base
class does not stop Python from creating an instance, so the check is done here).

A class that is not an AsyncPlugin is wrapped: every call goes to its `run(request)` (a plain
`def` runs in the thread pool, an `async def` on the loop, as for AsyncPlugin handlers). The
payload types come from class attributes `input_type` / `output_type` if it has them, else from
`run`'s annotations (`request: Request[In]` and a return of `Out`, `Response[Out]` or a Union of
them), else `dict`. If the request parameter is annotated with a subclass of `Request` that
has a `from_request(request)` classmethod, `run` receives the request converted by it (this is
how `asyncplugin.compat.steamship.PluginRequest` gives dict payloads attribute access).
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin, get_type_hints

from asyncplugin.protocol import AsyncPluginError, Request, Response
from asyncplugin.protocol.payload import PayloadType, payload_kind, payload_type_name

from .base import AsyncPlugin
from .handlers import call_handler

logger = logging.getLogger("asyncplugin.plugin")

RequestConverter = Callable[[Request[Any]], Request[Any]]


class PluginLoadError(AsyncPluginError, TypeError):
    """An object cannot be served as a plugin; the one-line message says what is missing."""


def as_plugin(obj: object, *, label: str | None = None) -> AsyncPlugin[Any, Any]:
    """The plugin to serve for `obj`: a class (created without arguments) or an instance.

    An AsyncPlugin is served as it is; any other object with a `run` method is wrapped.

    Args:
        obj: an AsyncPlugin subclass or instance, or any class or instance with `run(request)`.
        label: how to name `obj` in error messages (default: its qualified name).

    Raises:
        PluginLoadError: `obj` is not servable (no `run`, abstract methods, a constructor that
            needs arguments); the message is one line naming the problem.
    """
    if isinstance(obj, type):
        name = label or obj.__qualname__
        check_plugin_class(obj, label=name)
        try:
            instance = obj()
        except TypeError as err:
            raise PluginLoadError(f"cannot create {name}() without arguments: {err}") from err
    else:
        name = label or _name_of(obj)
        if not isinstance(obj, AsyncPlugin) and (
            inspect.isroutine(obj)
            or inspect.ismodule(obj)
            or not callable(getattr(obj, "run", None))
        ):
            raise PluginLoadError(_no_run(name, obj))
        check_plugin_class(type(obj), label=name)
        instance = obj
    if isinstance(instance, AsyncPlugin):
        return instance
    return wrap(instance)


def check_plugin_class(kind: type, *, label: str | None = None) -> None:
    """Raises PluginLoadError unless instances of `kind` can be served.

    Raises:
        PluginLoadError: no `run` (and not an AsyncPlugin), an AsyncPlugin that implements
            neither `run` nor `initiate_work`, or abstract methods left (named).
    """
    name = label or kind.__qualname__
    if issubclass(kind, AsyncPlugin):
        if kind.run is AsyncPlugin.run and kind.initiate_work is AsyncPlugin.initiate_work:
            raise PluginLoadError(f"{name} must implement run or initiate_work")
    elif not callable(getattr(kind, "run", None)):
        raise PluginLoadError(_no_run(name, kind))
    abstract = abstract_methods(kind)
    if abstract:
        methods = ", ".join(abstract)
        several = len(abstract) > 1
        raise PluginLoadError(
            f"{name} cannot be served: {'methods' if several else 'method'} {methods} "
            f"{'are' if several else 'is'} abstract; implement {'them' if several else 'it'} "
            f"in a subclass and serve that"
        )


def _name_of(obj: object) -> str:
    """A function's or module's own name; an instance's class name."""
    if inspect.isroutine(obj) or inspect.ismodule(obj):
        return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?"))
    return type(obj).__qualname__


def _no_run(name: str, obj: object) -> str:
    what = "a function" if inspect.isroutine(obj) else "a module" if inspect.ismodule(obj) else ""
    if what:
        return f"{name} is {what}, not an AsyncPlugin or a class with a run method"
    return f"{name} is not an AsyncPlugin and has no run method: define run(self, request)"


def abstract_methods(kind: type) -> list[str]:
    """The names of `kind`'s methods still marked abstract, sorted.

    Counts `__abstractmethods__` (ABCMeta classes) and any attribute whose
    `__isabstractmethod__` is true, so a plain class using `@abstractmethod` is caught too.
    """
    names = set(getattr(kind, "__abstractmethods__", ()))
    for name in dir(kind):
        try:
            attr = inspect.getattr_static(kind, name)
        except AttributeError:
            continue
        if getattr(attr, "__isabstractmethod__", False) is True:
            names.add(name)
    return sorted(names)


class RunAdapter(AsyncPlugin[Any, Any]):
    """Serves an object that is not an AsyncPlugin through its `run(request)` method.

    Attributes:
        wrapped: the object served.
    """

    def __init__(self, wrapped: Any, *, convert: RequestConverter | None = None) -> None:
        self.wrapped = wrapped
        self._convert = convert

    async def run(self, request: Request[Any]) -> Any:
        """Passes every call, cancel requests included, to the wrapped object's `run`."""
        if self._convert is not None:
            request = self._convert(request)
        return await call_handler(self.wrapped.run, request)


def wrap(target: Any) -> RunAdapter:
    """Wraps an object with a `run(request)` method as a plugin (see the module docstring).

    Raises:
        PluginLoadError: `run`'s return annotation names more than one payload type.
    """
    kind = type(target)
    request_annotation, return_annotation = _run_annotations(kind)
    origin = get_origin(request_annotation) or request_annotation
    convert: RequestConverter | None = None
    declared_input: PayloadType | None = None
    if isinstance(origin, type) and issubclass(origin, Request):
        args = get_args(request_annotation)
        declared_input = payload_kind(args[0]) if args else None
        converter = getattr(origin, "from_request", None)
        if origin is not Request and callable(converter):
            convert = converter
    attrs: dict[str, Any] = {
        "__module__": kind.__module__,
        "__qualname__": kind.__qualname__,
        "__doc__": kind.__doc__,
        "input_type": _declared(kind, "input_type") or declared_input or dict,
        "output_type": _declared(kind, "output_type")
        or _output_kind(return_annotation, kind)
        or dict,
    }
    for attr in ("name", "rpc_method"):
        value = getattr(kind, attr, None)
        if isinstance(value, str) and value:
            attrs[attr] = value
    adapter: type[RunAdapter] = type(kind.__name__, (RunAdapter,), attrs)
    return adapter(target, convert=convert)


def _declared(kind: type, attr: str) -> PayloadType | None:
    return payload_kind(getattr(kind, attr, None))


def _run_annotations(kind: type) -> tuple[Any, Any]:
    """The annotations of `run`'s request parameter and of its return (None where absent)."""
    run = kind.run  # type: ignore[attr-defined]
    try:
        hints = get_type_hints(run)
    except Exception as err:  # an unresolvable forward reference: fall back to dict payloads
        logger.warning(
            "cannot read the annotations of %s.run (%s: %s); payloads are dicts",
            kind.__qualname__,
            type(err).__name__,
            err,
        )
        return None, None
    try:
        parameters = list(inspect.signature(run).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    # `run` as found on the class is a plain function: its first parameter is `self`.
    raw = inspect.getattr_static(kind, "run", None)
    if parameters and not isinstance(raw, staticmethod | classmethod):
        parameters = parameters[1:]
    request = hints.get(parameters[0].name) if parameters else None
    return request, hints.get("return")


def _output_kind(annotation: Any, kind: type) -> PayloadType | None:
    """The payload type a return annotation names: `Out`, `Response[Out]` or a Union of them."""
    if annotation is None:
        return None
    members = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    found: list[PayloadType] = []
    for member in members:
        origin = get_origin(member) or member
        if isinstance(origin, type) and issubclass(origin, Response):
            args = get_args(member)
            member = args[0] if args else None
        found_kind = payload_kind(member)
        if found_kind is not None and found_kind not in found:
            found.append(found_kind)
    if len(found) > 1:
        names = " and ".join(payload_type_name(k) for k in found)
        raise PluginLoadError(
            f"{kind.__qualname__}.run's return annotation names two output types ({names}); "
            f"set output_type on the class"
        )
    return found[0] if found else None
