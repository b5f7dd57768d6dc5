"""The core is the rules alone: ``errors``, ``model``, ``transitions`` and ``plan`` import only the
standard library and each other, never the edges (config files, state, emails, delivery,
outputs, the command line) nor their libraries, so the rules read, test and change without them
(docs/ARCHITECTURE.md draws the layers)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = (
    "reconciler.errors",
    "reconciler.model",
    "reconciler.locales",
    "reconciler.transitions",
    "reconciler.plan",
    "reconciler.drift",
    "reconciler.views",
    "reconciler.messages",
)
EDGES = (
    "reconciler.config",
    "reconciler.state",
    "reconciler.emails",
    "reconciler.delivery",
    "reconciler.outputs",
    "reconciler.cli",
    "reconciler.manager",
    "reconciler.apply",
    "reconciler.preview",
)
LIBRARIES = ("yaml", "jsonschema", "phonenumbers", "jinja2", "click", "psycopg", "deepdiff")
LAZY = {("reconciler.plan", "deepdiff"), ("reconciler.plan", "deepdiff.helper")}
"""The one exception: a pure diffing library, imported inside the function that describes a
changed tenant record (only once one differs), never when the core is imported."""


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def test_importing_the_core_loads_no_edge_and_no_library() -> None:
    script = f"import json, sys\nimport {', '.join(CORE)}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = json.loads(result.stdout)
    assert [m for m in loaded if _within(m, EDGES + LIBRARIES)] == []
    assert {m for m in loaded if _within(m, ("reconciler",))} == {"reconciler", *CORE}


class _Imports(ast.NodeVisitor):
    """Every module a source file imports, and whether it is imported inside a function."""

    def __init__(self, package: str):
        self.package = package
        self.found: list[tuple[str, bool]] = []
        self._depth = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, self._depth > 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = importlib.util.resolve_name("." * node.level + (node.module or ""), self.package)
        names = [f"{base}.{alias.name}" for alias in node.names] if node.module is None else [base]
        self.found += [(name, self._depth > 0) for name in names]


def _imports(module: str) -> list[tuple[str, bool]]:
    visitor = _Imports(module.rpartition(".")[0])
    path = ROOT / f"{module.replace('.', '/')}.py"
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return visitor.found


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_only_the_standard_library_and_itself(module: str) -> None:
    """Read from the source, so an import under ``TYPE_CHECKING`` or inside a function counts."""
    outside = [
        name
        for name, lazy in _imports(module)
        if name.partition(".")[0] not in sys.stdlib_module_names
        and not _within(name, CORE)
        and not (lazy and (module, name) in LAZY)
    ]
    assert outside == []


CLI_MAY_IMPORT = (
    "reconciler.cli",
    "reconciler.outputs",  # the renderers and the escaping of what is printed
    "reconciler.apply",
    "reconciler.adopt",
    "reconciler.manager",
    "reconciler.planfile",
    "reconciler.preview",
    "reconciler.sample",
    "reconciler.drift_run",
    "reconciler.drift_issue",
    "reconciler.pr_comment",
    "reconciler.azure_devops",
    "reconciler.schema_export",
)
"""Besides the core: the flows a command calls, and output. Never the configuration files, the
state, emails or delivery themselves: a command parses its options, calls one flow and prints."""


@pytest.mark.parametrize(
    "module",
    sorted(f"reconciler.cli.{p.stem}" for p in (ROOT / "reconciler" / "cli").glob("*.py")),
)
def test_the_cli_only_dispatches_to_flows(module: str) -> None:
    path = ROOT / f"{module.replace('.', '/')}.py"
    visitor = _Imports("reconciler.cli")
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    from_package = {  # `from reconciler import x`: what x is
        f"reconciler.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "reconciler" and not node.level
        for alias in node.names
    }
    ours = {name for name, _ in visitor.found if _within(name, ("reconciler",))}
    ours = (ours - {"reconciler"}) | from_package
    outside = [
        name
        for name in sorted(ours)
        if name != "reconciler.__version__" and not _within(name, CORE + CLI_MAY_IMPORT)
    ]
    assert ours and outside == []


def test_the_cli_rule_sees_a_forbidden_import() -> None:
    visitor = _Imports("reconciler.cli")
    visitor.visit(ast.parse("from reconciler.state import open_store\nfrom . import base"))
    names = [name for name, _ in visitor.found]
    assert names == ["reconciler.state", "reconciler.cli.base"]
    assert not _within(names[0], CORE + CLI_MAY_IMPORT) and _within(names[1], CLI_MAY_IMPORT)


PACKAGE_INIT_MAX_LINES = 60


def _init_problems(source: str) -> list[str]:
    """What makes a package's ``__init__.py`` more than a door: any statement besides its
    docstring, imports, ``__all__`` and ``__version__``; more than 60 lines of code."""
    tree = ast.parse(source)
    problems = []
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Assign) and [
            t.id for t in node.targets if isinstance(t, ast.Name)
        ] in (["__all__"], ["__version__"]):
            continue
        problems.append(f"line {node.lineno}: {type(node).__name__}")
    code = [
        line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    if len(code) > PACKAGE_INIT_MAX_LINES:
        problems.append(f"{len(code)} lines of code")
    return problems


@pytest.mark.parametrize(
    "init", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "reconciler").rglob("__init__.py"))
)
def test_a_package_init_only_names_what_its_modules_hold(init: str) -> None:
    """The loader, the ``--mail`` URL and ``open_store`` live in modules named after them; a
    package's ``__init__.py`` re-exports."""
    assert _init_problems((ROOT / init).read_text(encoding="utf-8")) == []


def test_the_package_rule_sees_logic_in_an_init() -> None:
    source = '"""Doc."""\nfrom a import b\n__all__ = ["b"]\nX = 1\n\ndef f():\n    pass\n'
    assert _init_problems(source) == ["line 4: Assign", "line 6: FunctionDef"]
    assert _init_problems("import a\n" * 61) == ["61 lines of code"]


APART = {
    "reconciler.emails": ("reconciler.state", "reconciler.delivery"),
    "reconciler.delivery": ("reconciler.state", "reconciler.emails"),
    "reconciler.state": ("reconciler.emails", "reconciler.delivery"),
}
"""Edges that never import one another: what a message is lives in ``messages.py`` (the core),
and the flows (``apply``, ``sending``, ``sample``) bring them together."""


@pytest.mark.parametrize(
    "module",
    sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for package in APART
        for p in (ROOT / package.replace(".", "/")).glob("*.py")
    ),
)
def test_the_edges_that_make_keep_and_send_messages_stay_apart(module: str) -> None:
    package = next(p for p in APART if _within(module, (p,)))
    found = [name for name, _ in _imports(module) if _within(name, APART[package])]
    assert found == []


def test_no_function_is_more_complex_than_rank_c() -> None:
    """radon's cyclomatic complexity: rank C (at most 20 paths) at worst, so every function
    can be read, and tested, branch by branch."""
    from radon.complexity import cc_rank, cc_visit

    def functions(source: str) -> list[Any]:
        """Functions and methods (radon lists each method beside its class, whose own figure
        is an average; a closure counts in its function)."""
        return [block for block in cc_visit(source) if not hasattr(block, "methods")]

    too_complex = [
        f"{path.relative_to(ROOT)}:{f.lineno} {f.fullname} {cc_rank(f.complexity)} ({f.complexity})"
        for path in sorted((ROOT / "reconciler").rglob("*.py"))
        for f in functions(path.read_text(encoding="utf-8"))
        if f.complexity > 20
    ]
    assert too_complex == []
    assert [f.fullname for f in functions("class A:\n    def m(self):\n        pass\n")] == ["A.m"]


MODULE_MAX_LINES = 500


def test_no_module_is_longer_than_500_lines() -> None:
    """A module longer than that holds more than one job: split it along its seams."""
    too_long = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in sorted((ROOT / "reconciler").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_MAX_LINES
    ]
    assert too_long == []
