"""Plan renderers, one module per format; each is ``render(plan) -> str``."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.outputs import json as json_output
from reconciler.outputs import markdown, text
from reconciler.plan import Plan

RENDERERS: dict[str, Callable[..., str]] = {
    "text": text.render,
    "markdown": markdown.render,
    "json": json_output.render,
}


def render(plan: Plan, fmt: str, **options: object) -> str:
    return RENDERERS[fmt](plan, **options)
