"""What a reviewer must check about a new user, the same in every plan format: the values its
first email carries (or, for ``locale``, is written in)."""

from __future__ import annotations

from typing import Any

from reconciler.plan import UserChange

CHECKED = ("conference_id", "dial_in_number", "toll_free_number", "locale")


def to_check(change: UserChange) -> list[tuple[str, Any]]:
    """``(field, value)`` of a created user's :data:`CHECKED` values that are set."""
    values = {c.path: c.after for c in change.changes}
    return [(name, values[name]) for name in CHECKED if values.get(name) is not None]
