"""What ``load_config`` reports: every problem, each printed as ``path:line:column: message``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import load_config
from reconciler.errors import ConfigError

PROBLEM_LINE = re.compile(
    r"^(?P<file>[^:\s][^:]*):(?P<line>[1-9]\d*):(?P<col>[1-9]\d*): (?P<msg>\S.*)$"
)


def problems(root: Path, **kwargs: Any) -> list[str]:
    """Every problem ``load_config`` reports, as printed; fails if it reports none."""
    with pytest.raises(ConfigError) as caught:
        load_config(root, **kwargs)
    lines = [str(p) for p in caught.value.problems]
    assert lines, "ConfigError without problems"
    return lines


def assert_one(root: Path, expected: str, **kwargs: Any) -> None:
    """The run reports exactly one problem, this one."""
    assert problems(root, **kwargs) == [expected]
