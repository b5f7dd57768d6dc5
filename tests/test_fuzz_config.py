"""A structure-aware fuzzer over tenant and users YAML, through the real CLI.

Each example starts from a valid, already applied tenant, damages ``tenant.yaml`` or a users file
(values of other types, deep nesting, aliases, tags, Unicode and control characters, sizes,
duplicate keys, stray bytes, truncation...), then runs ``fmt --check``, ``validate``, ``plan
--format markdown`` and ``apply``. Whatever the input: exit 0 or 1, never a traceback, no code
run (a YAML tag that would create a marker file never does), and a failing command leaves state
and mail as they were.

Bounded: ``RECONCILER_FUZZ_EXAMPLES`` examples per kind of damage (default 10), derandomized so
a failure reproduces; ``RECONCILER_FUZZ_RANDOM=1`` explores new inputs instead.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import Workspace

EXAMPLES = int(os.environ.get("RECONCILER_FUZZ_EXAMPLES", "10"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("RECONCILER_FUZZ_RANDOM") != "1",
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)

# Text that has broken YAML tools before: controls, bidi, BOM, surrogates-in-spirit, long runs.
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "1234567\n",
            "\u0661\u0662\u0663\u0664\u0665\u0666\u0667",
            "+1425555010\u0660",
            "\x1b[31mred",
            "\u202eevil",
            "\ufeff",
            "=?utf-8?q?a=0D=0AB:_c?=",
            "`x`",
            "@org/team",
            "<img src=x>",
            "[a](https://evil.example)",
            "~",
            "null",
            "true",
            "0o17",
            "1_000",
            "0x1F",
            "1e9",
            ".inf",
            "x" * 5000,
            "é" * 300,
            "../../etc/passwd",
            "{{ 7*7 }}",
            "%s%n",
        ]
    ),
)
SCALARS = st.one_of(
    NASTY_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(NASTY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def base_tenant() -> dict[str, Any]:
    return tenant_doc()


def base_users() -> dict[str, Any]:
    return {"users": enabled_users(3, domain="acme.com")}


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in ``node`` (mapping keys and list indexes)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(paths(value, (*prefix, index)))
    return found


@st.composite
def mutated_document(draw: st.DrawFn, base: dict[str, Any]) -> str:
    """``base`` with a few values replaced, removed or added, as YAML text."""
    doc = yaml.safe_load(yaml.safe_dump(base))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths(doc)))
        if not path:
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(NASTY_TEXT)] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    return yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), sort_keys=False)


def alias_bomb(depth: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


@st.composite
def damaged_text(draw: st.DrawFn, kind: str, base: dict[str, Any]) -> bytes:
    """YAML text damaged in one way the parser must survive."""
    text = draw(mutated_document(base)) if kind == "values" else yaml.safe_dump(base)
    if kind == "alias-bomb":
        text = alias_bomb(draw(st.integers(5, 9))) + text
    elif kind == "deep":
        n = draw(st.sampled_from([65, 600, 5000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("- ", "")]))
        nested = opener * n + "1" + closer * n
        text = (
            f"users: {nested}\n"
            if opener != "- "
            else "users:\n" + "".join("  " * i + "- " for i in range(min(n, 2000))) + "x\n"
        )
    elif kind == "tag":
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object/apply:os.system ['touch MARKER']",
                    "!!python/name:os.system",
                    "!!binary aGVsbG8=",
                    "!custom x",
                    "!!set {a, b}",
                    "!!timestamp 2001-12-14",
                ]
            )
        )
        text = text.replace("license: true", f"license: {tag}", 1)
    elif kind == "duplicate":
        text = text + text.splitlines()[0] + "\n"
    elif kind == "anchor":
        text = (
            text.replace("license: true", "license: &a true", 1)
            .replace("license: true", "license: *a", 1)
            .replace("provider: Microsoft", "provider: *nope", 1)
        )
    data = text.encode("utf-8")
    if kind == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "bom":
        data = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])) + data
    return data


KINDS = ["values", "alias-bomb", "deep", "tag", "duplicate", "anchor", "bytes", "truncate", "bom"]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The base tenant, applied once for all the examples of the module (in-process)."""
    ws = Workspace.create(tmp_path_factory.mktemp("fuzz"))
    write_tenant(ws.config, "acme", base_tenant(), base_users()["users"])
    ws.apply()
    return ws


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["tenant.yaml", "users.yaml"])
def test_fuzzed_yaml_never_crashes_runs_code_or_changes_state_on_failure(
    applied: Workspace, kind: str, target: str, packaged_templates_checked_once: None
) -> None:
    base = base_tenant() if target == "tenant.yaml" else base_users()

    @FUZZ
    @given(data=damaged_text(kind, base))
    def check(data: bytes) -> None:
        path = applied.config / "acme" / target
        original = path.read_bytes()
        path.write_bytes(data)
        try:
            before = applied.snapshot()
            for command in (
                ["fmt", "--check"],
                ["validate"],
                ["plan", "--format", "markdown"],
                ["apply", "--auto-approve"],
            ):
                result = applied.run(*command, timeout=60)
                assert result.code in (0, 1), str(result)
                assert "Traceback" not in result.output, str(result)
                assert not (applied.root / "MARKER").exists()
                assert path.read_bytes() == data  # fmt --check writes nothing
                if result.code == 1:
                    assert applied.snapshot() == before, str(result)
                    assert all(
                        line.count(":") >= 3
                        for line in result.stderr.splitlines()[:-1]
                        if line.startswith("acme/")
                    ), str(result)
        finally:
            path.write_bytes(original)
            applied.apply(expect=None)  # back to the base state for the next example

    check()
