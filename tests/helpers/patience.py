"""Wall-clock limits in tests are safety nets, never measurements.

A test that waits (for a command to end, a message to arrive, a process to be seen inside its
commit) or checks that something happened "at once" writes its limit as at least five times
what that takes on an idle 2-core machine, and passes it through :func:`patience`. Under load a
machine can be several times slower; ``RECONCILER_TEST_PATIENCE`` (default 1) multiplies every
limit at once, so a slow or busy machine raises one number instead of editing tests::

    RECONCILER_TEST_PATIENCE=4 python -m pytest

Lower bounds ("Retry-After was honoured: at least 1 s") are not limits and are not scaled: a
busy machine only makes them longer.
"""

from __future__ import annotations

import os

ENV = "RECONCILER_TEST_PATIENCE"


def patience(seconds: float) -> float:
    """``seconds`` of safety net, times ``RECONCILER_TEST_PATIENCE``."""
    return seconds * factor()


def factor() -> float:
    value = os.environ.get(ENV, "")
    try:
        scale = float(value) if value else 1.0
    except ValueError:
        raise ValueError(f"{ENV} must be a number, not {value!r}") from None
    if not scale > 0:
        raise ValueError(f"{ENV} must be a positive number, not {value!r}")
    return scale
