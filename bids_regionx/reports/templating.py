"""Jinja2 environments: HTML (autoescaped, strict) for reports, text for the methods template.

Every report page is rendered by :func:`html_environment`: autoescaping is always on, undefined
variables are errors, and no template uses ``|safe``; HTML built in Python is a
:class:`markupsafe.Markup` assembled with :func:`markupsafe.escape` (see ``boilerplate.py``).
Pages carry a Content-Security-Policy that forbids scripts and any network fetch, so even a
markup-injection bug could not run code or reach the network.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jinja2

__all__ = ["CSP", "TEMPLATES_DIR", "html_environment", "num", "text_environment"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: No script, no plugin, no network: images from the report's folder (or data: URIs) only.
CSP = (
    "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)


def num(value, digits: int = 6) -> str:
    """A number in its shortest readable form: ``6.0`` -> ``6``, ``0.5`` -> ``0.5``.

    None and NaN become ``n/a``; strings pass through.
    """
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    number = float(value)
    if math.isnan(number):
        return "n/a"
    return f"{number:.{digits}g}"


@functools.lru_cache(maxsize=1)
def html_environment() -> jinja2.Environment:
    """The environment of the report templates (``bids_regionx/reports/templates``)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = num
    env.globals["csp"] = CSP
    return env


@functools.lru_cache(maxsize=4)
def text_environment(directory: str) -> jinja2.Environment:
    """An environment for plain-text templates (the methods boilerplate): no escaping."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    return env
