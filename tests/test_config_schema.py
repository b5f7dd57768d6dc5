"""The JSON Schemas (the single source of the shape), the shipped example tenant, and the shape
errors an administrator sees: unknown keys with did-you-mean, missing keys at the entry that lacks
them, wrong types with what is allowed, files that are not YAML mappings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reconciler.config import load_config, schema
from reconciler.config.yamlload import load
from reconciler.model import (
    DEFAULT_MEETING_UPDATE_TOOL_URL,
    DEFAULT_PIN_SELF_SERVICE_URL,
    PIN_MODES,
    PROVIDERS,
    SETTINGS_DEFAULTS,
)
from reconciler.resources import schema_path
from tests.helpers.problems import assert_one, problems
from tests.helpers.tenants import TENANT, USERS, make_tenant, with_user

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"
EXAMPLE = REPO / "tenants" / "contoso"
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\s*$")
SCHEMA_NAMES = ["tenant.schema.json", "users.schema.json"]


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLE.rglob("*") if p.is_file())


def schema_for(path: Path) -> str:
    return "tenant.schema.json" if path.name == "tenant.yaml" else "users.schema.json"


def walk(node, where=""):
    """Every (json pointer, subschema) of a schema."""
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    yield from walk(sub, f"{where}/{key}/{name}")
            elif key in ("items", "additionalProperties", "propertyNames") and isinstance(
                value, dict
            ):
                yield from walk(value, f"{where}/{key}")


# --- the schemas themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [*SCHEMA_NAMES, "plan.schema.json"])
def test_schemas_are_valid_draft_2020_12(name):
    document = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"].endswith("/" + name)
    Draft202012Validator.check_schema(document)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_the_validator_uses_the_published_schema_files(name):
    assert schema_path(name).read_bytes() == (SCHEMAS / name).read_bytes()


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_property_is_described_for_editors(name):
    document = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    undescribed = [
        where
        for where, node in walk(document)
        if re.search(r"/properties/[^/]+$", where) and "description" not in node
    ]
    assert undescribed == []


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_pattern_compiles_and_has_an_administrator_message(name):
    document = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    patterns = [
        (where, node)
        for where, node in walk(document)
        if isinstance(node, dict) and "pattern" in node
    ]
    assert patterns
    for where, node in patterns:
        re.compile(node["pattern"])
        assert node.get("patternErrorMessage", "").startswith("must "), where


def test_settings_in_the_schema_are_the_models_with_the_same_defaults():
    settings = schema.load_schema("tenant.schema.json")["properties"]["settings"]["properties"]
    assert set(settings) == set(SETTINGS_DEFAULTS)
    for key, default in SETTINGS_DEFAULTS.items():
        if default is not None:
            assert settings[key]["default"] == default, key


def test_schema_vocabulary_matches_the_model():
    tenant = schema.load_schema("tenant.schema.json")["properties"]
    user = schema.load_schema("users.schema.json")["$defs"]["user"]["properties"]
    assert tuple(user["provider"]["enum"]) == PROVIDERS
    email = tenant["email"]["properties"]
    assert email["meeting_update_tool_url"]["default"] == DEFAULT_MEETING_UPDATE_TOOL_URL
    assert tuple(email["pin"]["enum"]) == PIN_MODES
    assert email["pin"]["default"] == "generated"
    assert email["pin_self_service_url"]["default"] == DEFAULT_PIN_SELF_SERVICE_URL


# --- the shipped example tenant -----------------------------------------------------------------


def test_example_tenant_validates():
    config = load_config(EXAMPLE.parent, only=["contoso"]).tenants["contoso"]
    assert config.users
    users_files = {file for file, _ in config.sources.values()}
    assert users_files == {
        p.relative_to(EXAMPLE.parent).as_posix() for p in example_files() if p.name != "tenant.yaml"
    }


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.relative_to(EXAMPLE).as_posix())
def test_example_files_point_editors_at_their_schema(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    declared = [m[1] for line in lines if (m := SCHEMA_LINE.match(line))]
    assert len(declared) == 1, "one `# yaml-language-server: $schema=` line"
    assert SCHEMA_LINE.match(lines[0]), "the schema line comes first"
    target = (path.parent / declared[0]).resolve()
    assert target.is_file()
    assert target == (SCHEMAS / schema_for(path)).resolve()


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.relative_to(EXAMPLE).as_posix())
def test_example_files_validate_with_plain_jsonschema(path):
    """With the project's loader (values as written) and plain jsonschema, the one difference
    from the project's validator is the documented one: a plain numeral where an integer is
    expected (``pin_length: 6`` is read as the text "6")."""
    data = load(path.read_bytes(), path.name, [])
    name = schema_for(path)
    plain = Draft202012Validator(json.loads((SCHEMAS / name).read_text(encoding="utf-8")))
    for error in plain.iter_errors(data):
        assert error.validator == "type" and error.validator_value == "integer", error.message
        assert isinstance(error.instance, str) and error.instance.isdigit()
        assert plain.evolve(schema=error.schema).is_valid(int(error.instance))
    assert list(schema.validator(name).iter_errors(data)) == []


def test_example_files_validate_as_editors_read_them():
    ruamel = pytest.importorskip("ruamel.yaml")  # YAML 1.2, as check-jsonschema reads it
    errors = []
    for path in example_files():
        data = ruamel.YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
        plain = Draft202012Validator(json.loads((SCHEMAS / schema_for(path)).read_text("utf-8")))
        errors += [f"{path.name}: {e.json_path}: {e.message}" for e in plain.iter_errors(data)]
    assert errors == []


# --- unknown keys, with a hint at the key ------------------------------------------------------

ALLOWED_USER_KEYS = (
    "allowed: conference_id, dial_in_number, display_name, email, license, "
    "locale, pin_reset, provider, send_conference_info, toll_free_number"
)


def test_unknown_user_key_has_a_hint_at_the_key(tmp_path):
    make_tenant(
        tmp_path,
        users=with_user('license: true\nconference_id: "1234567"\ndial_in_numbr: +14255550100\n'),
    )
    assert_one(
        tmp_path,
        "acme/users.yaml:5:5: unknown key 'dial_in_numbr' (did you mean "
        f"'dial_in_number'?); {ALLOWED_USER_KEYS}",
    )


def test_unknown_key_without_a_near_miss_has_no_hint(tmp_path):
    make_tenant(tmp_path, users=with_user("license: false\nfavourite_colour: blue\n"))
    assert_one(
        tmp_path, f"acme/users.yaml:4:5: unknown key 'favourite_colour'; {ALLOWED_USER_KEYS}"
    )


@pytest.mark.parametrize(
    ("edit", "where", "hint"),
    [
        (("pin_length: 5", "pin_lenght: 5"), "2:3", "pin_length"),
        (("settings:\n", "setings:\n"), "1:1", "settings"),
        (("  default_number", "  defualt_number"), "8:3", "default_number"),
        (("type: toll}", "typ: toll}"), "6:32", "type"),
        (("location:", "locaton:"), "5:44", "location"),
    ],
)
def test_unknown_tenant_keys_have_hints_at_the_key(tmp_path, edit, where, hint):
    make_tenant(tmp_path, tenant=TENANT.replace(*edit, 1))
    out = problems(tmp_path)
    unknown = [line for line in out if "unknown key" in line]
    assert len(unknown) == 1
    typo = edit[1].split(":")[0].strip()
    assert unknown[0].startswith(
        f"acme/tenant.yaml:{where}: unknown key {typo!r} (did you mean {hint!r}?); allowed: "
    )


def test_unknown_email_key(tmp_path):
    make_tenant(tmp_path, tenant=TENANT + "email:\n  local: fr\n")
    assert_one(
        tmp_path,
        "acme/tenant.yaml:10:3: unknown key 'local' (did you mean 'locale'?); "
        "allowed: locale, meeting_update_tool_url, pin, pin_self_service_url",
    )


def test_unknown_key_in_a_users_file_frame(tmp_path):
    make_tenant(tmp_path, users="user:\n  alice@acme.com: {license: false}\n")
    assert problems(tmp_path) == [
        "acme/users.yaml:1:1: missing required key 'users' in the file",
        "acme/users.yaml:1:1: unknown key 'user' (did you mean 'users'?); allowed: users",
    ]


def test_merge_keys_are_reported_not_merged(tmp_path):
    make_tenant(
        tmp_path,
        users=(
            "defaults: &d {license: true}\n"
            "users:\n  alice@acme.com:\n    <<: *d\n"
            '    conference_id: "1234567"\n'
        ),
    )
    out = problems(tmp_path)
    assert "acme/users.yaml:4:5: unknown key '<<'; " + ALLOWED_USER_KEYS in out
    assert any(line.startswith("acme/users.yaml:1:1: unknown key 'defaults'") for line in out)


# --- missing keys, at the entry that lacks them -------------------------------------------------


def test_missing_license_is_reported_at_the_users_key(tmp_path):
    make_tenant(
        tmp_path,
        users=(
            "users:\n  alice@acme.com:\n    display_name: Alice\n"
            "  bob@acme.com:\n    license: false\n"
        ),
    )
    assert_one(tmp_path, "acme/users.yaml:2:3: missing required key 'license' in this entry")


def test_user_with_nothing_under_its_key(tmp_path):
    make_tenant(tmp_path, users="users:\n  alice@acme.com:\n")
    assert_one(
        tmp_path,
        "acme/users.yaml:2:18: alice@acme.com: expected a mapping of keys to values, got nothing",
    )


@pytest.mark.parametrize(("missing", "kept"), [("settings", "bridge"), ("bridge", "settings")])
def test_missing_settings_or_bridge_is_reported(tmp_path, missing, kept):
    start = TENANT.index("bridge:")
    text = TENANT[start:] if kept == "bridge" else TENANT[:start]
    make_tenant(tmp_path, tenant="# tenant\n" + text)
    assert_one(tmp_path, f"acme/tenant.yaml:2:1: missing required key {missing!r} in the file")


def test_empty_tenant_yaml_misses_both(tmp_path):
    make_tenant(tmp_path, tenant="# nothing yet\n")
    assert problems(tmp_path) == [
        "acme/tenant.yaml:1:1: missing required key 'bridge' in the file",
        "acme/tenant.yaml:1:1: missing required key 'settings' in the file",
    ]


def test_bridge_without_numbers(tmp_path):
    make_tenant(tmp_path, tenant="settings: {}\nbridge:\n  default_number: '+14255550100'\n")
    assert_one(tmp_path, "acme/tenant.yaml:2:1: missing required key 'numbers' in this entry")


def test_bridge_number_entry_without_type_is_reported_at_the_entry(tmp_path):
    make_tenant(tmp_path, tenant=TENANT.replace(", type: toll}", "}", 1))
    assert_one(tmp_path, "acme/tenant.yaml:6:7: missing required key 'type' in this entry")


def test_empty_bridge_number_list(tmp_path):
    make_tenant(tmp_path, tenant="settings: {}\nbridge:\n  numbers: []\n")
    assert_one(tmp_path, "acme/tenant.yaml:3:12: needs at least 1 item(s)")


def test_missing_tenant_yaml(tmp_path):
    make_tenant(tmp_path, tenant=None)
    assert_one(
        tmp_path,
        "acme/tenant.yaml:1:1: missing tenant.yaml: every tenant folder needs "
        "one (settings and bridge)",
    )


def test_missing_tenant_yaml_does_not_hide_users_problems(tmp_path):
    make_tenant(tmp_path, tenant=None, users=with_user("license: yes\n"))
    assert [line.split(": ")[0] for line in problems(tmp_path)] == [
        "acme/tenant.yaml:1:1",
        "acme/users.yaml:3:14",
    ]


def test_no_tenant_folder_at_all_says_where_it_looked_and_how_to_point_it(tmp_path):
    [line] = problems(tmp_path)
    assert line.endswith(
        f":1:1: no tenant folders in {tmp_path} (a tenant is <config>/<tenant>/tenant.yaml); "
        "run reconciler in the folder that holds tenants/, or pass --config DIR "
        "(env RECONCILER_CONFIG)"
    )
    [line] = problems(tmp_path / "nowhere")
    assert f"no folder {tmp_path / 'nowhere'} (" in line and "--config DIR" in line


# --- files that are not mappings, wrong types ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "got"),
    [("- settings\n- bridge\n", '["settings", "bridge"]'), ("settings\n", "'settings'")],
)
def test_tenant_yaml_that_is_not_a_mapping(tmp_path, text, got):
    make_tenant(tmp_path, tenant=text)
    assert_one(tmp_path, f"acme/tenant.yaml:1:1: expected a mapping of keys to values, got {got}")


def test_users_file_that_is_a_list(tmp_path):
    make_tenant(tmp_path, users="# users\n- alice@acme.com\n")
    assert_one(
        tmp_path,
        'acme/users.yaml:2:1: expected a mapping of keys to values, got ["alice@acme.com"]',
    )


def test_users_that_is_a_list(tmp_path):
    make_tenant(tmp_path, users="users:\n  - alice@acme.com\n")
    assert_one(
        tmp_path,
        "acme/users.yaml:2:3: users: expected a mapping of keys to values or "
        'nothing, got ["alice@acme.com"]',
    )


def test_users_with_nothing_is_no_users(tmp_path):
    make_tenant(tmp_path, users="users:\n")
    assert load_config(tmp_path).tenants["acme"].users == {}


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "True", "1"])
def test_license_must_be_true_or_false(tmp_path, word):
    make_tenant(tmp_path, users=with_user(f"license: {word}\n"))
    assert_one(
        tmp_path,
        f"acme/users.yaml:3:14: license: expected true or false, got {word!r} "
        "(only true and false are booleans; yes/no/on/off are not)",
    )


@pytest.mark.parametrize(
    "key",
    ["send_email_from_override", "use_unique_conference_ids", "automatically_send_emails_to_users"],
)
def test_setting_booleans_reject_yes(tmp_path, key):
    make_tenant(tmp_path, tenant=TENANT.replace("pin_length: 5", f"{key}: on"))
    [line] = problems(tmp_path)
    assert line.startswith("acme/tenant.yaml:2:")
    assert line.endswith(
        "expected true or false, got 'on' (only true and false are booleans; yes/no/on/off are not)"
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            "provider: microsoft",
            "'microsoft' is not allowed (did you mean 'Microsoft'?); allowed: Microsoft, "
            "ThirdParty, None",
        ),
        ("provider: Teams", "'Teams' is not allowed; allowed: Microsoft, ThirdParty, None"),
        (
            "provider:",
            "nothing is not allowed (did you mean 'None'?); allowed: Microsoft, ThirdParty, None",
        ),
    ],
)
def test_provider_enum(tmp_path, edit, expected):
    make_tenant(tmp_path, users=with_user(f"license: false\n{edit}\n"))
    [line] = problems(tmp_path)
    assert line.startswith("acme/users.yaml:4:")
    assert line.endswith(": " + expected)


def test_bridge_number_type_enum_has_a_hint(tmp_path):
    make_tenant(tmp_path, tenant=TENANT.replace("type: toll_free", "type: toll-free"))
    assert_one(
        tmp_path,
        "acme/tenant.yaml:7:38: type: 'toll-free' is not allowed (did you mean "
        "'toll_free'?); allowed: toll, toll_free",
    )


def test_setting_enum_has_a_hint(tmp_path):
    make_tenant(
        tmp_path, tenant=TENANT.replace("pin_length: 5", "entry_exit_announcements_type: ToneOnyl")
    )
    assert_one(
        tmp_path,
        "acme/tenant.yaml:2:34: entry_exit_announcements_type: 'ToneOnyl' is not "
        "allowed (did you mean "
        "'ToneOnly'?); allowed: UseNames, ToneOnly",
    )


def test_text_values_as_written_reach_the_records(tmp_path):
    make_tenant(
        tmp_path,
        users=with_user(
            "license: true\nconference_id: 0123456\n"
            "dial_in_number: +12065550123\ndisplay_name: 12:30\n"
            "pin_reset: 2026-11-29\nsend_conference_info: yes\n"
        ),
    )
    user = load_config(tmp_path).tenants["acme"].users["alice@acme.com"]
    assert (user["conference_id"], user["dial_in_number"], user["display_name"]) == (
        "0123456",
        "+12065550123",
        "12:30",
    )
    assert (user["pin_reset"], user["send_conference_info"]) == ("2026-11-29", "yes")


def test_null_tilde_and_nothing_mean_absent(tmp_path):
    make_tenant(
        tmp_path,
        users=with_user(
            'license: true\nconference_id: "1234567"\n'
            "dial_in_number: ~\nemail:\ndisplay_name: null\n"
            "provider: Microsoft\nlocale:\n"
        ),
    )
    user = load_config(tmp_path).tenants["acme"].users["alice@acme.com"]
    assert (user["dial_in_number"], user["email"], user["display_name"], user["locale"]) == (
        "+14255550100",
        "alice@acme.com",
        None,
        "en",
    )


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("ftp://x", "ftp://x"),
        ("aka.ms/tool", "aka.ms/tool"),
        ("https://a b", "https://a b"),
        ("https://a\\u202eb", "https://a\u202eb"),
        ("https://a\\e[31m", "https://a\x1b[31m"),
        ("https://x\\n", "https://x\n"),
    ],
)
def test_meeting_update_tool_url_must_be_http(tmp_path, written, value):
    make_tenant(tmp_path, tenant=TENANT + f'email:\n  meeting_update_tool_url: "{written}"\n')
    assert_one(
        tmp_path,
        f"acme/tenant.yaml:10:28: meeting_update_tool_url: {value!r} must be "
        "an http(s) URL (printable ASCII, no spaces)",
    )


def test_pin_mode_defaults_to_generated_with_microsofts_self_service_page(tmp_path):
    make_tenant(tmp_path)
    email = load_config(tmp_path).tenants["acme"].tenant["email"]
    assert (email["pin"], email["pin_self_service_url"]) == (
        "generated",
        "https://dialin.teams.microsoft.com/usp",
    )
    make_tenant(
        tmp_path,
        tenant=TENANT
        + "email:\n  pin: self_service\n  pin_self_service_url: https://pin.contoso.com/reset\n",
    )
    email = load_config(tmp_path).tenants["acme"].tenant["email"]
    assert (email["pin"], email["pin_self_service_url"]) == (
        "self_service",
        "https://pin.contoso.com/reset",
    )


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("selfservice", "'selfservice' is not allowed (did you mean 'self_service'?)"),
        ("Self_Service", "'Self_Service' is not allowed (did you mean 'self_service'?)"),
        ("true", "true is not allowed"),
    ],
)
def test_pin_mode_is_one_of_two(tmp_path, written, shown):
    make_tenant(tmp_path, tenant=TENANT + f"email:\n  pin: {written}\n")
    assert_one(
        tmp_path,
        f"acme/tenant.yaml:10:8: pin: {shown}; allowed: generated, self_service",
    )


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("http://dialin.teams.microsoft.com/usp", "http://dialin.teams.microsoft.com/usp"),
        ("dialin.teams.microsoft.com/usp", "dialin.teams.microsoft.com/usp"),
        ("https://a b", "https://a b"),
        ("https://a\\u202eb", "https://a\u202eb"),
        ("https://x\\n", "https://x\n"),
        ("javascript:alert(1)", "javascript:alert(1)"),
    ],
)
def test_pin_self_service_url_must_be_https(tmp_path, written, value):
    make_tenant(
        tmp_path,
        tenant=TENANT + f'email:\n  pin: self_service\n  pin_self_service_url: "{written}"\n',
    )
    assert_one(
        tmp_path,
        f"acme/tenant.yaml:11:25: pin_self_service_url: {value!r} must be "
        "an https URL (printable ASCII, no spaces)",
    )


@pytest.mark.parametrize(
    ("where", "key", "limit"),
    [
        ("users", "display_name", 256),
        ("users", "pin_reset", 256),
        ("users", "email", 254),
        ("tenant", "send_email_from_display_name", 256),
        ("tenant", "send_email_from_address", 254),
    ],
)
def test_free_text_is_bounded(tmp_path, where, key, limit):
    long = "x" * (limit + 1)
    if where == "users":
        make_tenant(
            tmp_path, users=f"users:\n  alice@acme.com:\n    license: false\n    {key}: {long}\n"
        )
    else:
        make_tenant(tmp_path, tenant=TENANT.replace("settings:\n", f"settings:\n  {key}: {long}\n"))
    [problem] = problems(tmp_path)
    assert problem.endswith(f": {key}: is longer than {limit} characters")


# --- YAML problems inside a tenant folder -------------------------------------------------------


def test_duplicate_key_is_reported_and_the_rest_of_the_file_still_checked(tmp_path):
    make_tenant(
        tmp_path,
        users=(
            "users:\n"
            "  alice@acme.com:\n"
            "    license: true\n"
            '    conference_id: "1234567"\n'
            "    license: false\n"
            "  bob@acme.com:\n"
            "    license: maybe\n"
        ),
    )
    assert problems(tmp_path) == [
        "acme/users.yaml:5:5: duplicate key 'license' (first defined on line 3); each key may "
        "appear once",
        "acme/users.yaml:7:14: license: expected true or false, got 'maybe' (only true and false "
        "are booleans; yes/no/on/off are not)",
    ]


def test_duplicate_key_in_tenant_yaml(tmp_path):
    make_tenant(tmp_path, tenant=TENANT + "settings:\n  pin_length: 6\n")
    assert_one(
        tmp_path,
        "acme/tenant.yaml:9:1: duplicate key 'settings' (first defined on line "
        "1); each key may appear once",
    )


def test_syntax_error_in_one_file_does_not_hide_the_others(tmp_path):
    make_tenant(
        tmp_path,
        users=with_user("license: yes\n"),
        users__bad_yaml="users:\n  bob@acme.com:\n    license: true\n   oops: [\n",
    )
    out = problems(tmp_path)
    assert out[0].startswith("acme/users.yaml:3:14: license: expected true or false")
    assert out[1].startswith("acme/users/bad.yaml:4:")
    assert "invalid YAML" in out[1]
    assert len(out) == 2


def test_tags_are_rejected_with_their_place(tmp_path):
    make_tenant(tmp_path, users=with_user("license: !!bool true\n"))
    assert_one(
        tmp_path,
        "acme/users.yaml:3:14: YAML tags such as 'tag:yaml.org,2002:bool' are "
        "not allowed; write plain values",
    )


def test_python_object_tag_is_rejected_without_constructing_anything(tmp_path):
    marker = tmp_path / "pwned"
    make_tenant(
        tmp_path, users=with_user(f"license: !!python/object/apply:os.system ['touch {marker}']\n")
    )
    [line] = problems(tmp_path)
    assert line.startswith("acme/users.yaml:3:14: YAML tags such as")
    assert not marker.exists()


def test_second_document_in_a_users_file(tmp_path):
    make_tenant(tmp_path, users=USERS + "---\nusers: {}\n")
    assert_one(tmp_path, "acme/users.yaml:5:1: only one YAML document is allowed per file")
