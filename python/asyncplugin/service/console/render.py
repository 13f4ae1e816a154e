"""The console's templates (Jinja2, autoescaped) and static files, both shipped in the package."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from .views import pretty_json, relative, timestamp

__all__ = ["STATIC_DIR", "Renderer"]

STATIC_DIR = Path(str(resources.files(__package__).joinpath("static")))
"""The console's CSS and JavaScript (served at /static/)."""


@cache
def _fingerprint(name: str) -> str:
    """A short hash of a static file, appended to its URL so a new version is never cached."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The URL of a static file, with its fingerprint."""
    return f"/static/{name}?v={_fingerprint(name)}"


class Renderer:
    """Renders the console's templates; every value is HTML-escaped unless marked safe."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader(__package__, "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["relative"] = relative
        self.env.filters["timestamp"] = timestamp
        self.env.filters["pretty_json"] = pretty_json
        self.env.filters["px"] = lambda value: f"{float(value):.1f}"
        self.env.globals["static"] = static_url

    def render(self, name: str, **context: Any) -> str:
        """The template `name` rendered with `context`."""
        return self.env.get_template(name).render(**context)
