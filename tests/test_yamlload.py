"""Reading YAML as written (SPEC §3 "Reading YAML: no silent reinterpretation").

Every test runs against both loaders: libyaml's C loader (what ships) and PyYAML's pure-Python
fallback, which must behave the same.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from reconciler.config import yamlload
from reconciler.config.yamlload import YAMLProblem, load, locate
from reconciler.errors import Finding, Problem

LOADERS = ["libyaml", "python"] if hasattr(yaml, "CSafeLoader") else ["python"]


@pytest.fixture(autouse=True, params=LOADERS)
def loader(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(yamlload, "_Loader", yaml.SafeLoader)
        monkeypatch.setattr(yamlload, "_LIBYAML", False)
    return request.param


@pytest.mark.parametrize("loader", ["libyaml"], indirect=True)
def test_the_c_loader_is_used_when_present(loader):
    code = "from reconciler.config import yamlload; print(yamlload._Loader.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "CSafeLoader"


def read(text: str | bytes) -> object:
    duplicates: list[Problem] = []
    value = load(text, "f.yaml", duplicates)
    assert duplicates == []
    return value


def value_of(scalar: str) -> object:
    return read(f"key: {scalar}\n")["key"]


def failure(text: str | bytes) -> str:
    with pytest.raises(YAMLProblem) as caught:
        load(text, "f.yaml", [])
    return str(caught.value.problem)


# --- values as written --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("0123456", "0123456"),  # never octal
        ("0o17", "0o17"),
        ("0x1F", "0x1F"),
        ("+14255550100", "+14255550100"),  # E.164 keeps its +
        ("+33 1 44 55 66 77", "+33 1 44 55 66 77"),
        ("12:30", "12:30"),  # never sexagesimal
        ("1:30:00", "1:30:00"),
        ("5", "5"),  # numbers stay text; the schema types them
        ("-5", "-5"),
        ("1.5", "1.5"),
        ("1e3", "1e3"),
        ("1_000", "1_000"),
        (".inf", ".inf"),
        (".nan", ".nan"),
        ("2026-11-29", "2026-11-29"),  # never a date
        ("2026-11-29 #4411", "2026-11-29"),  # (a comment, as YAML says)
        ('"2026-11-29 #4411"', "2026-11-29 #4411"),
        ("None", "None"),  # the provider value, not null
        ("Microsoft", "Microsoft"),
    ],
)
def test_plain_scalars_are_taken_as_written(scalar, expected):
    value = value_of(scalar)
    assert value == expected and type(value) is str


@pytest.mark.parametrize(
    "word",
    [
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "Yes",
        "NO",
        "On",
        "OFF",
        "True",
        "TRUE",
        "False",
        "FALSE",
    ],
)
def test_only_lowercase_true_and_false_are_booleans(word):
    assert value_of(word) == word


def test_true_and_false_are_booleans():
    assert read("a: true\nb: false\n") == {"a": True, "b": False}
    assert type(value_of("true")) is bool


@pytest.mark.parametrize("scalar", ["null", "~", ""])
def test_null_tilde_and_nothing_are_null(scalar):
    assert value_of(scalar) is None


@pytest.mark.parametrize("scalar", ["Null", "NULL"])
def test_other_spellings_of_null_are_text(scalar):
    assert value_of(scalar) == scalar


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ('"true"', "true"),
        ("'false'", "false"),
        ('"null"', "null"),
        ("'~'", "~"),
        ('""', ""),
        ("'0123456'", "0123456"),
        ('"+14255550100"', "+14255550100"),
        ("! 5", "5"),
        ("!!str 5", "5"),
        ("!!str true", "true"),
    ],
)
def test_quoted_and_str_tagged_scalars_are_text(scalar, expected):
    assert value_of(scalar) == expected


def test_block_scalars_keep_their_text():
    assert read("a: |\n  line one\n  line two\nb: >\n  folded\n  text\n") == {
        "a": "line one\nline two\n",
        "b": "folded text\n",
    }


def test_nested_structures_and_flow_style():
    text = "users:\n  a@b.co:\n    license: true\nlist: [1, two, {x: no}]\n"
    assert read(text) == {"users": {"a@b.co": {"license": True}}, "list": ["1", "two", {"x": "no"}]}


def test_keys_are_text_too():
    assert read("1: a\ntrue: b\nnull: c\n0123: d\n") == {
        "1": "a",
        "true": "b",
        "null": "c",
        "0123": "d",
    }


# --- explicit tags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "tag"),
    [
        ("!!python/object:os.system x", "tag:yaml.org,2002:python/object:os.system"),
        (
            "!!python/object/apply:os.system ['echo hi']",
            "tag:yaml.org,2002:python/object/apply:os.system",
        ),
        ("!!python/name:os.system ''", "tag:yaml.org,2002:python/name:os.system"),
        ("!!binary aGVsbG8=", "tag:yaml.org,2002:binary"),
        ("!!int 5", "tag:yaml.org,2002:int"),
        ("!!float 5", "tag:yaml.org,2002:float"),
        ("!!bool yes", "tag:yaml.org,2002:bool"),
        ("!!null x", "tag:yaml.org,2002:null"),
        ("!!timestamp 2026-01-01", "tag:yaml.org,2002:timestamp"),
        ("!!map {a: 1}", "tag:yaml.org,2002:map"),
        ("!!seq [1]", "tag:yaml.org,2002:seq"),
        ("!!set {a, b}", "tag:yaml.org,2002:set"),
        ("!!omap [a: 1]", "tag:yaml.org,2002:omap"),
        ("!custom x", "!custom"),
    ],
)
def test_explicit_tags_are_rejected_where_they_stand(scalar, tag):
    message = failure(f"ok: 1\nkey: {scalar}\n")
    assert message.startswith(f"f.yaml:2:6: YAML tags such as {tag!r} are not allowed")


@pytest.mark.parametrize(
    "text", ["!!int 1: x\n", "? !!python/name:os.system\n: x\n", "!!binary aGk=: x\n"]
)
def test_explicit_tags_on_keys_are_rejected(text):
    assert "YAML tags such as" in failure(text)


def test_a_tagged_document_root_is_rejected():
    assert failure("--- !!python/object:collections.OrderedDict\na: 1\n").startswith(
        "f.yaml:1:5: YAML tags such as 'tag:yaml.org,2002:python/object:collections.OrderedDict'"
    )


def test_tagged_sequence_item_is_rejected():
    assert failure("a:\n  - ok\n  - !!int 3\n").startswith("f.yaml:3:5: YAML tags")


# --- anchors and aliases ------------------------------------------------------------------------


def test_aliases_repeat_scalars_mappings_and_sequences():
    text = (
        "number: &main +14255550100\n"
        "defaults: &d {license: true, provider: Microsoft}\n"
        "list: &l [a, b]\n"
        "a: *main\nb: *d\nc: *l\n"
    )
    data = read(text)
    assert data["a"] == "+14255550100"
    assert data["b"] == {"license": True, "provider": "Microsoft"}
    assert data["c"] == ["a", "b"]


def test_an_anchor_can_be_redefined_and_the_latest_wins():
    assert read("a: &x one\nb: &x two\nc: *x\n")["c"] == "two"


def test_unknown_alias_is_located():
    assert failure("a: 1\nb: *nope\n").startswith("f.yaml:2:4: ")


def test_merge_keys_are_not_merged_silently():
    # `<<` is YAML 1.1 only; it stays a plain key, so the schema reports it as unknown
    assert read("d: &d {x: 1}\ne:\n  <<: *d\n  y: 2\n")["e"] == {"<<": {"x": "1"}, "y": "2"}


def test_alias_as_a_key_is_rejected():
    assert failure("a: &k key\n*k : v\n").startswith("f.yaml:2:1: mapping keys must be plain text")


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "? {a: 1}\n: 1\n"])
def test_complex_keys_are_rejected(text):
    assert failure(text).startswith("f.yaml:1:3: mapping keys must be plain text")


# --- one document, any root ---------------------------------------------------------------------


def test_a_second_document_is_rejected_at_its_start():
    assert failure("a: 1\n---\nb: 2\n") == (
        "f.yaml:2:1: only one YAML document is allowed per file"
    )


def test_a_second_empty_document_is_rejected_too():
    assert failure("a: 1\n---\n").startswith("f.yaml:2:1: only one YAML document")


def test_explicit_document_markers_around_one_document_are_fine():
    assert read("%YAML 1.1\n---\na: 1\n...\n") == {"a": "1"}


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "---\n", "--- ~\n"])
def test_empty_documents_are_null(text):
    assert read(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- a\n- b\n", ["a", "b"]), ("just text\n", "just text"), ("0123\n", "0123")],
)
def test_roots_that_are_not_mappings_are_returned_for_the_schema_to_judge(text, expected):
    assert read(text) == expected


def test_bytes_with_a_utf8_bom_are_read():
    assert read("\ufeffa: é\n".encode()) == {"a": "é"}


# --- duplicate keys -----------------------------------------------------------------------------


def test_duplicate_keys_are_reported_at_the_second_naming_the_first_line():
    text = (
        "users:\n"  # 1
        "  alice@acme.com:\n"  # 2
        "    license: true\n"  # 3
        "    conference_id: '1234567'\n"  # 4
        "    license: false\n"  # 5
        "  bob@acme.com: {license: true}\n"  # 6
        "  alice@acme.com: {license: false}\n"  # 7
        "other: [{a: 1, a: 2}]\n"  # 8
        "users: {}\n"
    )  # 9
    duplicates: list[Problem] = []
    data = load(text, "t/users.yaml", duplicates)
    assert [str(p) for p in duplicates] == [
        "t/users.yaml:5:5: duplicate key 'license' (first defined on line 3); each key may "
        "appear once",
        "t/users.yaml:7:3: duplicate key 'alice@acme.com' (first defined on line 2); each key "
        "may appear once",
        "t/users.yaml:8:16: duplicate key 'a' (first defined on line 8); each key may appear once",
        "t/users.yaml:9:1: duplicate key 'users' (first defined on line 1); each key may "
        "appear once",
    ]
    # the first value stands, and the rest of the file was still read
    assert data["users"]["alice@acme.com"] == {"license": True, "conference_id": "1234567"}
    assert data["users"]["bob@acme.com"] == {"license": True}
    assert data["other"] == [{"a": "1"}]


def test_quoted_and_plain_spellings_of_a_key_are_the_same_key():
    duplicates: list[Problem] = []
    load("'a': 1\n\"a\": 2\na: 3\n", "f.yaml", duplicates)
    assert [(p.line, p.column) for p in duplicates] == [(2, 1), (3, 1)]


def test_keys_differing_only_in_case_are_not_yaml_duplicates():
    assert read("A: 1\na: 2\n") == {"A": "1", "a": "2"}


# --- syntax errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: 1\n b: 2\n", "f.yaml:2:3:"),  # bad indentation
        ("a: [1, 2\nb: 3\n", "f.yaml:2:2:"),  # unclosed flow sequence
        ("a: 'open\n", "f.yaml:2:1:"),  # unclosed quote
        ("a:\n\t- b\n", "f.yaml:2:1:"),  # tab indentation
        ("a: b: c\n", "f.yaml:1:5:"),
        ("- a\nb: c\n", "f.yaml:2:1:"),
        ("a: @x\n", "f.yaml:1:4:"),  # reserved indicator
    ],
)
def test_syntax_errors_name_line_and_column(text, where):
    message = failure(text)
    assert message.startswith(f"{where} invalid YAML: ")
    assert "\n" not in message


def test_invalid_utf8_is_located_on_one_line():
    assert failure(b"a: 1\nbb: caf\xe9\n") == (
        "f.yaml:2:8: invalid YAML: the file is not UTF-8 text (byte 0xe9: invalid continuation "
        "byte); save it as UTF-8"
    )
    assert failure("a: 1\nb: é".encode() + b"\xff\n").startswith(
        "f.yaml:2:5: invalid YAML: the file is not UTF-8 text (byte 0xff: "
    )


def test_utf16_with_a_bom_is_still_read():
    assert read("a: é\n".encode("utf-16")) == {"a": "é"}


def test_control_character_in_the_file_is_located_after_multibyte_text():
    message = failure("a: 1\néé: \x07\n".encode())
    assert message.startswith("f.yaml:2:5: invalid YAML: unacceptable character #x0007")
    assert "\n" not in message


# --- locate -------------------------------------------------------------------------------------

LOCATE_TEXT = (
    "# comment\n"  # 1
    "bridge:\n"  # 2
    "  numbers:\n"  # 3
    "    - {number: '+1', type: toll}\n"  # 4
    "    - number: '+2'\n"  # 5
    "users:\n"  # 6
    "  a@b.co:\n"  # 7
    "    license: yes\n"
)  # 8


@pytest.mark.parametrize(
    ("path", "at_key", "where"),
    [
        (("users", "a@b.co", "license"), False, (8, 14)),
        (("users", "a@b.co", "license"), True, (8, 5)),
        (("users", "a@b.co"), True, (7, 3)),
        (("bridge", "numbers", 0, "type"), False, (4, 28)),
        (("bridge", "numbers", 1), True, (5, 7)),
        (("bridge", "numbers", 1, "type"), False, (5, 7)),  # missing key: its entry
        (("bridge", "numbers", 7), False, (4, 5)),  # no such item: the list
        (("nothing", "here"), False, (2, 1)),  # the document
        ((), True, (2, 1)),
    ],
)
def test_locate_points_at_the_value_or_the_key(path, at_key, where):
    [problem] = locate(LOCATE_TEXT, [Finding("f.yaml", path, "msg", at_key)])
    assert (problem.line, problem.column) == where
    assert problem == Problem("f.yaml", *where, "msg")


def test_locate_in_an_empty_file_is_line_one():
    [problem] = locate(b"# only a comment\n", [Finding("f.yaml", ("settings",), "msg", True)])
    assert (problem.line, problem.column) == (1, 1)


def test_locate_with_a_duplicate_key_points_at_the_kept_first_one():
    text = "a:\n  x: 1\na:\n  x: 2\n"
    [problem] = locate(text, [Finding("f.yaml", ("a", "x"), "msg")])
    assert (problem.line, problem.column) == (2, 6)


def test_locate_follows_aliases_to_the_anchor():
    text = "d: &d {license: yes}\nusers:\n  a@b.co: *d\n"
    [problem] = locate(text, [Finding("f.yaml", ("users", "a@b.co", "license"), "msg")])
    assert (problem.line, problem.column) == (1, 17)


def test_locate_handles_many_findings_in_one_pass():
    findings = [Finding("f.yaml", ("users", "a@b.co"), f"m{i}", True) for i in range(50)]
    assert {(p.line, p.column) for p in locate(LOCATE_TEXT, findings)} == {(7, 3)}
