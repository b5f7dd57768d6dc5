"""A plan in the format asked for: each format's module gives the plan as chunks of text
(``chunks(plan) -> Iterable[str]``), so a large JSON plan is written as it is encoded."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reconciler.outputs import json as json_output
from reconciler.outputs import markdown, text
from reconciler.plan import Plan

RENDERERS: dict[str, Callable[..., Iterable[str]]] = {
    "text": text.chunks,
    "markdown": lambda plan, **options: (markdown.render(plan, **options),),
    "json": json_output.chunks,
}


def chunks(plan: Plan, fmt: str, **options: object) -> Iterable[str]:
    return RENDERERS[fmt](plan, **options)


def render(plan: Plan, fmt: str, **options: object) -> str:
    return "".join(chunks(plan, fmt, **options))
