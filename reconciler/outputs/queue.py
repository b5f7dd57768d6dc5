"""The outbox's progress (``state queue``) as text or JSON: how a rollout sent in daily
portions is going, per tenant and per apply, without a message body, PIN or address."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from reconciler.messages import Wave
from reconciler.outputs.escape import json_text, visible

COUNTS = ("queued", "delivered", "failed", "suppressed")


def render(progress: Mapping[str, Sequence[Wave]], fmt: str) -> str:
    if fmt == "json":
        return json_text(to_dict(progress), indent=2) + "\n"
    return "".join(text(progress))


def totals(waves: Sequence[Wave]) -> dict[str, Any]:
    """A tenant's counts over every apply, since when mail has waited and the last delivery."""
    waiting = [w.written_at for w in waves if w.queued]
    delivered = [w.last_delivered for w in waves if w.last_delivered]
    return {
        **{count: sum(getattr(w, count) for w in waves) for count in COUNTS},
        "queued_since": min(waiting, default=None),
        "last_delivered": max(delivered, default=None),
    }


def to_dict(progress: Mapping[str, Sequence[Wave]]) -> dict[str, Any]:
    return {
        "tenants": [
            {"name": name, **totals(waves), "applies": [asdict(w) for w in waves]}
            for name, waves in progress.items()
        ]
    }


def text(progress: Mapping[str, Sequence[Wave]]) -> Iterator[str]:
    """One line per tenant, then one per apply that still has mail queued or failed."""
    if not progress:
        yield "No tenant in this state.\n"
    for name, waves in progress.items():
        t = totals(waves)
        since = f" since {t['queued_since']}" if t["queued"] else ""
        last = f" (last {t['last_delivered']})" if t["last_delivered"] else ""
        yield visible(
            f"{name}: {t['queued']} queued{since}, {t['delivered']} delivered{last}, "
            f"{t['failed']} failed, {t['suppressed']} suppressed\n"
        )
        for w in waves:
            if w.queued or w.failed:
                yield (
                    f"  serial {w.serial} (written {w.written_at}): {w.queued} queued, "
                    f"{w.delivered} delivered, {w.failed} failed\n"
                )
