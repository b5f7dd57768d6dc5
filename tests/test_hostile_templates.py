"""Templates from a pull request are data: nothing in them runs code, reads a file outside the
templates folder or brings a rendered value (a secret, a PIN) into an error, output or artifact.

Every attack goes through the real CLI (``validate``, ``plan``-side ``preview --out`` and
``apply``): exit 1, a located one-line message, no traceback, the marker file never created, the
secret nowhere, and state and mail untouched.
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from jinja2 import Template

from reconciler.emails.context import sample_context
from reconciler.emails.template_calls import FILTERS, TEXT_METHODS
from reconciler.emails.templates import TemplateSet, check_templates
from reconciler.resources import default_templates
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

SECRET = "s3cr3t-token-Zq7vX"

# Each attack replaces the body of templates/en/enabled.txt; {marker} is a file path that must
# never appear. ``where`` is the line the located error must point at.
ATTACKS = {
    "globals-os-system": "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "environment-secret-in-error": "{{ {}[cycler.__init__.__globals__.os.environ.SECRET] }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}",
    "class-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "self-module": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "attr-filter": "{{ display_name|attr('__class__') }}",
    "format-string": "{{ '{0.__class__.__mro__}'.format(display_name) }}",
    "namespace-global": "{% set ns = namespace(x=1) %}{{ ns.x }}",
    "range-global": "{% for i in range(3) %}{{ i }}{% endfor %}",
    "pprint-repr": "{{ dial_in|pprint }}",
    "string-repeat-bomb": "{{ 'x' * 999999999 }}",
    "power-bomb": "{{ 9 ** 9 ** 9 }}",
    "pin-in-error": "{{ {}[pin] }}",
    "list-mutation": "{% set l = [] %}{{ l.append(1) }}",
}


@pytest.fixture
def acme(new_workspace: NewWorkspace) -> Workspace:
    """acme (2 users) not applied yet, and a secret in the commands' environment."""
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(2, domain="acme.com"))
    ws.env["SECRET"] = SECRET
    return ws


def hostile_templates(ws: Workspace, body: str) -> Path:
    templates = ws.root / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text(f"Hello\n{body}\n", encoding="utf-8")
    return templates


def files_under(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {os.fspath(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_hostile_template_is_refused_by_every_command_and_runs_nothing(
    acme: Workspace, attack: str
) -> None:
    marker = acme.root / "MARKER"
    templates = hostile_templates(acme, ATTACKS[attack].replace("{marker}", str(marker)))
    preview = acme.root / "preview"
    state = acme.root / "state"
    for command in (
        ["validate"],
        ["preview", "--out", str(preview)],
        ["apply", "--auto-approve"],
    ):
        result = acme.run(*command, "--templates", str(templates))
        assert result.code == 1, str(result)
        assert "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("templates/")]
        assert errors, str(result)
        assert all(line.startswith("templates/en/enabled.txt:2:1: ") for line in errors), errors
        assert SECRET not in result.output
        assert not marker.exists()
        assert files_under(state) == {} and files_under(acme.maildir) == {}
        assert not any(SECRET.encode() in data for data in files_under(preview).values())


def test_a_subject_with_an_encoded_word_is_refused_before_apply_sends_anything(
    acme: Workspace,
) -> None:
    """Mail programs would decode ``=?...?=`` into a line break and a header of its own:
    ``validate`` refuses the template at its place, and ``apply`` before anything is written."""
    templates = hostile_templates(acme, "")
    (templates / "en" / "enabled.subject.txt").write_text(
        "=?utf-8?q?Hello=0D=0ABcc:_x@example.com?=\n", encoding="utf-8"
    )
    state = acme.root / "state"
    for command in (["validate"], ["apply", "--auto-approve"]):
        result = acme.run(*command, "--templates", str(templates))
        assert result.code == 1, str(result)
        errors = [line for line in result.stderr.splitlines() if line.startswith("templates/")]
        assert errors == [
            "templates/en/enabled.subject.txt:1:1: an email subject must not contain an encoded "
            "word ('=?...?='), which mail programs would decode; write it as plain text"
        ], str(result)
        assert files_under(state) == {} and files_under(acme.maildir) == {}


def test_a_template_symlink_cannot_read_files_outside_the_templates_folder(
    acme: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = acme.root / "secret.txt"
    outside.write_text(f"{SECRET}\n", encoding="utf-8")
    templates = hostile_templates(acme, '{% include "leak.txt" %}')
    (templates / "en" / "leak.txt").symlink_to(outside)
    (templates / "en" / "disabled.txt").unlink()
    (templates / "en" / "disabled.txt").symlink_to("/proc/self/environ")
    preview = acme.root / "preview"
    for command in (["validate"], ["preview", "--out", str(preview)], ["apply", "--auto-approve"]):
        result = acme.run(*command, "--templates", str(templates))
        assert result.code == 1, str(result)
        assert "Traceback" not in result.output and SECRET not in result.output
        assert "resolves outside its templates folder" in result.stderr
        assert files_under(acme.maildir) == {}
        assert not any(SECRET.encode() in data for data in files_under(preview).values())
    outside_message = (
        "template file resolves outside its templates folder (a symlink?); templates must be "
        "files inside the folder"
    )
    monkeypatch.chdir(acme.root)
    assert [str(p) for p in check_templates(Path("templates"))] == [
        f"templates/en/disabled.txt:1:1: {outside_message}",
        f"templates/en/leak.txt:1:1: {outside_message}",
    ]


def test_a_symlink_inside_the_templates_folder_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    shared = templates / "en" / "enabled.txt"
    (templates / "en" / "pin-reset.txt").unlink()
    (templates / "en" / "pin-reset.txt").symlink_to(shared)
    monkeypatch.chdir(tmp_path)
    assert check_templates(Path("templates")) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"Hello \xff\xfe\n", "template file is not UTF-8 text"),
        (b"x" * (300 * 1024), "template file is larger than 256 KiB"),
    ],
    ids=["not-utf8", "too-large"],
)
def test_unusable_template_files_are_located_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, message: str
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_templates(Path("templates"))] == [
        f"templates/en/enabled.txt:1:1: {message}"
    ]


def test_a_render_error_never_quotes_the_value_but_names_a_written_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text(
        "{{ manager }}\n{{ dial_in.country }}\n{{ {}[display_name] }}\n", encoding="utf-8"
    )
    (templates / "en" / "pin-reset.txt").write_text("{{ {}[upn] }}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    problems = [str(p) for p in check_templates(Path("templates"))]
    documented = "templates may use only the documented variables (README, Email templates)"
    assert problems == [
        f"templates/en/enabled.txt:1:1: undefined name 'manager'; {documented}",
        f"templates/en/pin-reset.txt:1:1: undefined variable, attribute or key; {documented}",
    ]
    assert not any("alice" in p or "Alice" in p for p in problems)


def test_only_documented_filters_exist_and_the_shipped_templates_need_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    body = "".join(f"{{{{ upn|{name} }}}}\n" for name in ("upper", "title", "trim", "e"))
    (templates / "en" / "enabled.txt").write_text(body + "{{ upn|tojson }}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_templates(Path("templates"))] == [
        "templates/en/enabled.txt:5:1: No filter named 'tojson'."
    ]
    assert {"tojson", "attr", "pprint", "safe", "format", "map"}.isdisjoint(FILTERS)


# --- memory: what a template may build ----------------------------------------------------------

TOO_LARGE = (
    "builds or writes more than 1 MiB at once (text, a list, a number, a block or the email "
    "part); is a width, a count or a loop running away?"
)
OVER_BUDGET = (
    "builds and writes more than 8 MiB in all while rendering; are loops or many variables "
    "building large values?"
)
REFUSED = (
    "refused by the template sandbox: no private attributes, only the documented filters and "
    "methods, * and % only on numbers, no **"
)
PEAK_BOUND = 50_000_000
"""Bytes a template check may allocate at its peak: with the ~40 MB the process takes for itself,
``validate`` stays under 100 MB whatever the templates ask for."""


def doubled(seed: str, times: int) -> str:
    """Template code setting ``a`` to ``seed`` doubled ``times`` times with ``~``."""
    return f'{{% set a = "{seed}" %}}' + "{% set a = a ~ a %}" * times


A_16K = doubled("xxxxxxxx", 11)
"""``a``: 16 Ki characters, well under the limit."""
A_512K = doubled("xxxxxxxx", 16)
"""``a``: 512 Ki characters, the longest text ``a ~ a`` can still build."""
MANY = ", ".join(["a"] * 600)

# One payload per kind of asking, through `validate`, which peaked at 180-550 MB on each before
# the sandbox bounded what a template builds (about 40 MB since, the process's own).
MEMORY_BOMBS = {
    "filter-width": ('{{ ""|center(300000000)|length }}', TOO_LARGE),  # folded while compiling
    "method-width": ("{{ upn.rjust(300000000)|length }}", TOO_LARGE),
    "format-width": ('{{ "{:>300000000}".format(upn)|length }}', REFUSED),
    "percent-width": ('{{ ("%300000000s" % upn)|length }}', REFUSED),
    "concatenation": (
        "{% set a = upn %}" + "{% set a = a ~ a %}" * 24 + "{{ a|length }}",
        TOO_LARGE,
    ),
    "product": (A_16K + '{{ a.replace("x", a)|length }}', TOO_LARGE),
    "recursion": (
        A_16K + "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% else %}{{ a }}{% endif %}"
        "{% endmacro %}{{ f(14)|length }}",
        OVER_BUDGET,
    ),
    "loop-into-a-block": (
        doubled("xxxxxxxx", 9)
        + "{% set x %}{% for c in a %}{% for d in a %}{{ c }}{% endfor %}{% endfor %}{% endset %}"
        "{{ x|length }}",
        TOO_LARGE,
    ),
    "many-values": (
        A_512K + "".join(f"{{% set b{i} = a ~ {i} %}}" for i in range(600)) + "{{ b1|length }}",
        OVER_BUDGET,
    ),
    "text-of-a-list": (A_512K + f"{{{{ [{MANY}] }}}}", TOO_LARGE),
}

# More ways of asking, each through the same check `validate` runs.
MEMORY_VARIANTS = {
    "center-filter-at-run-time": ("{{ upn|center(300000000) }}", TOO_LARGE),
    "indent-width": ('{{ "a\\nb"|indent(300000000, true)|length }}', TOO_LARGE),
    "indent-by-a-text": (A_16K + '{{ a|replace("x", "x\\n")|indent(a)|length }}', TOO_LARGE),
    "wordwrap-wrapstring": (
        doubled("x x x x ", 11) + "{{ a|wordwrap(1, wrapstring=a)|length }}",
        TOO_LARGE,
    ),
    "join-filter": (A_16K + "{{ a|join(a)|length }}", TOO_LARGE),
    "join-filter-attribute": (
        A_512K + f"{{{{ [{', '.join(['{0: a}'] * 600)}]|join(attribute=0)|length }}}}",
        TOO_LARGE,
    ),
    "join-method": (A_16K + "{{ a.join(a)|length }}", TOO_LARGE),
    "replace-filter": (A_16K + '{{ a|replace("x", a)|length }}', TOO_LARGE),
    "center-method": ("{{ upn.center(300000000)|length }}", TOO_LARGE),
    "ljust-method": ("{{ upn.ljust(300000000)|length }}", TOO_LARGE),
    "zfill-method": ("{{ upn.zfill(300000000)|length }}", TOO_LARGE),
    "expandtabs-method": ('{{ "\\t".expandtabs(300000000)|length }}', TOO_LARGE),
    "split-into-many": (doubled("中,中,中,中,", 14) + '{{ a.split(",")|length }}', TOO_LARGE),
    "format-map-width": ('{{ "{x:>300000000}".format_map({"x": upn})|length }}', REFUSED),
    "format-nested-width": ('{{ "{:{}}".format(upn, 300000000)|length }}', REFUSED),
    "percent-star-width": ('{{ ("%*s" % (300000000, upn))|length }}', REFUSED),
    "percent-mapping": ('{{ ("%(x)300000000s" % {"x": upn})|length }}', REFUSED),
    "text-repetition": ("{{ (upn * 20000000)|length }}", REFUSED),
    "list-repetition": ("{{ ([upn] * 40000000)|length }}", REFUSED),
    "bytes": ("{{ (1).to_bytes(300000000, 'big')|length }}", REFUSED),
    "translate": (A_16K + "{{ a.translate({120: a})|length }}", REFUSED),
    "text-plus-doubling": ("{% set a = upn %}" + "{% set a = a + a %}" * 24, TOO_LARGE),
    "list-plus-doubling": ("{% set l = [upn] %}" + "{% set l = l + l %}" * 25, TOO_LARGE),
    "number-squaring": ("{% set n = 99999999999 %}" + "{% set n = n * n %}" * 20, TOO_LARGE),
    "many-slices": (
        A_512K + "".join(f"{{% set b{i} = a[{i}:] %}}" for i in range(600)),
        OVER_BUDGET,
    ),
    "loop-into-a-macro": (
        doubled("xxxxxxxx", 9)
        + "{% macro m() %}{% for c in a %}{% for d in a %}{{ '' }}{% endfor %}{% endfor %}"
        "{% endmacro %}{{ m()|length }}",
        TOO_LARGE,
    ),
    "loop-into-a-block-reference": (
        doubled("xxxxxxxx", 9)
        + "{% if false %}{% block b %}{% for c in a %}{% for d in a %}{{ c }}{% endfor %}"
        "{% endfor %}{% endblock %}{% endif %}{{ self.b()|length }}",
        TOO_LARGE,
    ),
    "loop-into-a-filter-block": (
        doubled("xxxxxxxx", 9)
        + "{% filter upper %}{% for c in a %}{% for d in a %}{{ c }}{% endfor %}{% endfor %}"
        "{% endfilter %}",
        TOO_LARGE,
    ),
    "loop-into-the-email": (
        doubled("中中中中中中中中", 9)
        + "{% for c in a %}{% for d in a %}{{ c }}{% endfor %}{% endfor %}",
        TOO_LARGE,
    ),
    "list-in-an-error": (A_512K + f"{{{{ {{}}[({MANY})] }}}}", TOO_LARGE),
    "list-of-template-names": (A_512K + f"{{% include [{MANY}] %}}", TOO_LARGE),
}


def enabled_problems(templates: Path) -> tuple[list[str], int]:
    """The problems of ``en/enabled`` as ``validate`` reports them, and the peak of what
    checking it allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        problems = TemplateSet(templates).check([("en", "enabled")])
        return [str(p) for p in problems], tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def enabled_txt_peak(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The peak of what a command allocates while it loads and renders ``en/enabled.txt``, from
    that file's load to the next (tracemalloc: only there, as tracing everything triples the time
    of a ``validate``)."""
    peaks: list[int] = []
    load = TemplateSet.load

    def traced(self: TemplateSet, locale: str, name: str) -> Template:
        if tracemalloc.is_tracing():
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        if (locale, name) == ("en", "enabled.txt"):
            tracemalloc.start()
        return load(self, locale, name)

    monkeypatch.setattr(TemplateSet, "load", traced)
    try:
        yield peaks
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bomb", MEMORY_BOMBS, ids=list(MEMORY_BOMBS))
def test_validate_refuses_a_template_that_asks_for_memory_and_allocates_little(
    acme: Workspace, enabled_txt_peak: list[int], bomb: str
) -> None:
    body, message = MEMORY_BOMBS[bomb]
    templates = hostile_templates(acme, body)
    result = acme.run("validate", "--templates", str(templates))
    assert result.code == 1, str(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("templates/")]
    assert errors == [f"templates/en/enabled.txt:2:1: {message}"], str(result)
    assert len(enabled_txt_peak) == 1 and enabled_txt_peak[0] < PEAK_BOUND, enabled_txt_peak


@pytest.mark.parametrize("variant", MEMORY_VARIANTS, ids=list(MEMORY_VARIANTS))
def test_every_way_of_asking_for_memory_is_refused_before_it_is_allocated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    body, message = MEMORY_VARIANTS[variant]
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text(f"Hello\n{body}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    problems, peak = enabled_problems(Path("templates"))
    assert problems == [f"templates/en/enabled.txt:2:1: {message}"]
    assert peak < PEAK_BOUND


def test_templates_may_call_the_methods_of_text_but_those_that_format_or_encode() -> None:
    public = {name for name in dir(str) if not name.startswith("_")}
    assert set(TEXT_METHODS) == public - {
        "format",
        "format_map",
        "encode",
        "translate",
        "maketrans",
    }


ORDINARY = {
    '{{ upn.split("@")[0]|upper }} {{ upn.upper() }}': "ALICE ALICE@CONTOSO.COM",
    '[{{ "-"|center(5) }}] {{ upn[:5] }}{{ upn[-4:] }}': "[  -  ] alice.com",
    '{{ [dial_in.display, upn]|join(", ") }}': "+1 425-555-0100, alice@contoso.com",
    '{{ "ab".replace("a", "xy") }} {{ "x".ljust(3, ".") }} {{ "7".zfill(3) }}': "xyb x.. 007",
    '{{ 6 * 7 }} {{ 7 % 4 }} {{ 10 // 2 }} {{ "a" ~ 1 ~ "b" }}': "42 3 5 a1b",
    "{{ ([1] + [2])|length }} {{ (upn + upn)|length }} {{ upn.count('o') }}": "2 34 4",
    '{% for g in dial_in.groups %}{{ loop.cycle("<", ">") }}{{ g|trim }}{% endfor %}.': (
        "<+1>425-<555->0100."
    ),
    "{% set s %}captured {{ upn }}{% endset %}{{ s|length }} {{ s|truncate(11, leeway=0) }}": (
        "26 captured..."
    ),
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(upn|length) }} {{ 'a\\nb'|indent(2) }}": (
        "<17> a\n  b"
    ),
    '{% for k, v in {"k": "v"}.items() %}{{ k }}={{ v }}{% endfor %} {{ {"k": 1}.get("k") }}': (
        "k=v 1"
    ),
}


def test_ordinary_template_code_still_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounds refuse sizes, not features: methods, slices, loops, captures and arithmetic
    work as in Jinja2."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text("\n".join(ORDINARY) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert check_templates(Path("templates")) == []
    _, text, _ = TemplateSet(Path("templates")).render("en", "enabled", sample_context("enabled"))
    assert text == "\n".join(ORDINARY.values()) + "\n"
