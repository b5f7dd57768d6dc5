"""Locales are BCP 47 tags with a fallback chain (reconciler/locales.py): the tag, its shorter
forms, the tenant's locale, then English. Validation refuses only malformed tags, and the plan
says which locale each email is written in when the chain was walked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.emails import TemplateSet
from reconciler.locales import (
    BCP47_PATTERN,
    SHIPPED_LOCALES,
    canonical_case,
    chain,
    is_well_formed,
    locale_folders,
    resolve,
)
from reconciler.resources import data_dir, default_templates
from tests.helpers.tenants import tenant_doc, user_doc, write_tenant
from tests.helpers.workspace import NewWorkspace

TEN = ("en", "fr", "de", "es", "it", "nl", "pt-BR", "ja", "zh-CN", "pl")
"""Locale folders to resolve against (the shipped ten)."""
WELL_FORMED = [
    "en",
    "fr-CA",
    "zh-Hans-CN",
    "pt-BR",
    "PT-br",
    "es-419",
    "sr-Latn-RS",
    "de-CH-1996",
    "sl-rozaj-biske",
    "en-US-x-twain",
    "x-contoso",
    "zh-yue-HK",
    "de-DE-u-co-phonebk",
    "en-a-bbb-x-a-ccc",
    "ast",
    "yue-HK",
]
MALFORMED = [
    "",
    "French",
    "english",
    "en_US",
    "e",
    "en-",
    "-en",
    "en--US",
    "123",
    "en-US-",
    "en-x",
    "en-a",
    "fr-CA\n",
    " fr",
    "i-klingon",
    "en-GB-oed",
    "fr-CA-toolongvariant",
    "../fr",
    "fr/../../etc",
    "zh-Hans-CN-",
    "x",
]


@pytest.mark.parametrize("tag", WELL_FORMED)
def test_well_formed_tags_are_accepted(tag: str) -> None:
    assert is_well_formed(tag)


@pytest.mark.parametrize("tag", MALFORMED)
def test_malformed_tags_and_paths_are_refused(tag: str) -> None:
    assert not is_well_formed(tag)
    with pytest.raises(ValueError, match="BCP 47"):
        chain(tag)


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("EN", "en"),
        ("fr-ca", "fr-CA"),
        ("ZH-hans-cn", "zh-Hans-CN"),
        ("es-419", "es-419"),
        ("en-us-X-Twain", "en-US-x-twain"),
        ("de-de-U-CO-phonebk", "de-DE-u-co-phonebk"),
    ],
)
def test_canonical_case(tag: str, canonical: str) -> None:
    assert canonical_case(tag) == canonical


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("fr-CA", ("fr-CA", "fr")),
        ("fr-CA-x-qc", ("fr-CA-x-qc", "fr-CA", "fr")),
        ("de-CH-1996", ("de-CH-1996", "de-CH", "de")),
        ("en-Latn-US", ("en-Latn-US", "en-US", "en-Latn", "en")),
        ("zh-Hans-CN", ("zh-Hans-CN", "zh-CN", "zh-Hans", "zh")),
        ("zh", ("zh", "zh-CN")),
        ("zh-SG", ("zh-SG", "zh", "zh-CN")),
        ("zh-TW", ("zh-TW",)),
        ("zh-Hant", ("zh-Hant", "zh-TW")),
        ("zh-HK", ("zh-HK", "zh-TW")),
        ("pt-PT", ("pt-PT", "pt")),
        ("sr-Latn-RS", ("sr-Latn-RS", "sr-Latn")),
        ("x-contoso", ("x-contoso",)),
    ],
)
def test_the_chain_of_a_tag(tag: str, expected: tuple[str, ...]) -> None:
    assert chain(tag) == expected


@pytest.mark.parametrize(
    ("user", "tenant", "used"),
    [
        ("fr-CA", "en", "fr"),
        ("fr-ca", "de", "fr"),
        ("zh-Hans-CN", "en", "zh-CN"),
        ("zh-CN", "en", "zh-CN"),
        ("zh", "en", "zh-CN"),
        ("pt-br", "en", "pt-BR"),
        ("es-419", "en", "es"),
        ("ja-JP", "en", "ja"),
        ("de-AT", "fr", "de"),
        ("ko", "fr-CA", "fr"),  # the user's language has no templates: the tenant's chain
        ("ko", "ko-KR", "en"),  # neither has: English
        ("pt", "it", "it"),  # pt is not pt-BR: a language is never guessed from a neighbour
        ("pt-PT", "en", "en"),
        ("zh-TW", "en", "en"),  # traditional Chinese never gets simplified
        ("zh-Hant-HK", "ja", "ja"),
        (None, "nl-BE", "nl"),
        ("../fr", "..", "en"),
    ],
)
def test_resolve_walks_the_users_chain_then_the_tenants_then_english(
    user: str | None, tenant: str, used: str
) -> None:
    assert resolve((user, tenant), TEN) == used


def test_an_administrators_locale_folder_counts_as_shipped(tmp_path: Path) -> None:
    (tmp_path / "pt").mkdir()
    (tmp_path / "_shared").mkdir()
    (tmp_path / "GLOSSARY.md").write_text("not a locale\n", encoding="utf-8")
    templates = TemplateSet(tmp_path)
    assert "pt" in templates.locales() and "_shared" not in templates.locales()
    assert "GLOSSARY.md" not in templates.locales()
    assert templates.resolve_locale("pt-PT", "en") == "pt"
    assert templates.resolve_locale("PT", "en") == "pt"
    assert TemplateSet().resolve_locale("pt-PT", "en") == "en"


def test_the_shipped_locales_are_the_packaged_folders() -> None:
    assert locale_folders(default_templates()) == sorted(SHIPPED_LOCALES)


def test_the_schemas_publish_the_same_tag_pattern() -> None:
    def locale_patterns(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["locale"]["pattern"]] if isinstance(node.get("locale"), dict) else []
            return found + [p for value in node.values() for p in locale_patterns(value)]
        if isinstance(node, list):
            return [p for value in node for p in locale_patterns(value)]
        return []

    for name in ("tenant.schema.json", "users.schema.json"):
        schema = json.loads((data_dir("schemas") / name).read_text(encoding="utf-8"))
        assert locale_patterns(schema) == [BCP47_PATTERN], name


# --------------------------------------------------------------------- through the CLI


def test_validate_accepts_any_tag_and_the_plan_names_the_locale_used(
    new_workspace: NewWorkspace,
) -> None:
    ws = new_workspace()
    write_tenant(
        ws.config,
        "contoso",
        tenant_doc(locale="fr-CA"),
        {
            "a@contoso.com": user_doc("1000001", locale="fr-BE"),
            "b@contoso.com": user_doc("1000002", locale="ko"),
            "c@contoso.com": user_doc("1000003", locale="en"),
            "d@contoso.com": user_doc("1000004"),
        },
    )
    validated = ws.run("validate")
    assert validated.code == 0, str(validated)

    planned = ws.run("plan", "--format", "json")
    assert planned.code == 0, str(planned)
    emails = {
        e["user"]: (e["locale"], e["requested_locale"])
        for e in json.loads(planned.stdout)["tenants"][0]["emails"]
    }
    assert emails == {
        "a@contoso.com": ("fr", "fr-BE"),
        "b@contoso.com": ("fr", "ko"),
        "c@contoso.com": ("en", "en"),
        "d@contoso.com": ("fr", "fr-CA"),
    }

    text = ws.run("plan").stdout
    assert "a@contoso.com <a@contoso.com> enabled (in fr, for locale fr-BE)" in text
    assert "(in fr, for locale ko)" in text and "(in fr, for locale fr-CA)" in text
    assert "c@contoso.com <c@contoso.com> enabled:" in text, "no note when the tag is shipped"
    markdown = ws.run("plan", "--format", "markdown").stdout
    assert "`enabled` in `fr`, for locale `fr-BE`" in markdown

    ws.apply()
    languages = {mail.to: mail.message["Content-Language"] for mail in ws.mails()}
    assert languages == {
        "a@contoso.com": "fr",
        "b@contoso.com": "fr",
        "c@contoso.com": "en",
        "d@contoso.com": "fr",
    }


def test_a_malformed_tag_is_one_located_error(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    write_tenant(
        ws.config, "contoso", tenant_doc(), {"a@contoso.com": user_doc("1000001", locale="fr_CA")}
    )
    result = ws.run("validate")
    assert result.code == 1
    first, *rest = result.stderr.strip().splitlines()
    assert first == (
        "contoso/users.yaml:6:13: locale: 'fr_CA' must be a BCP 47 language tag "
        "such as en, fr-CA or zh-Hans-CN"
    )
    assert rest == ["1 problem(s) found; nothing was planned, applied or sent."]
