"""The command line: each command parses its options, calls one flow and prints its result.

``base`` holds the ``reconciler`` group and what commands share; importing the modules beside
it registers their commands.
"""

from reconciler.cli import apply, plan, state, tenants, tools
from reconciler.cli.base import main

__all__ = ["apply", "main", "plan", "state", "tenants", "tools"]
