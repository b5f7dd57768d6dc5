"""Which language an email is written in: BCP 47 tags and their fallback chain.

A user's or tenant's ``locale`` may be any well-formed BCP 47 tag (RFC 5646): ``fr``, ``fr-CA``,
``zh-Hans-CN``, ``es-419``, ``de-CH-1996``, ``en-US-x-twain``. The emails use the first locale of
this chain that has templates (a folder of the templates; the ones shipped, or one an
administrator adds with ``--templates``):

1. the user's tag, then the tag with its last subtags removed one at a time (RFC 4647 "lookup":
   ``fr-CA-x-qc`` → ``fr-CA`` → ``fr``). A script that is the usual one for the language and
   region is also tried without it (``zh-Hans-CN`` → ``zh-CN``, ``en-Latn-US`` → ``en-US``), and
   an unusual script is never dropped: ``zh-Hant`` (traditional Chinese) or ``zh-TW`` never falls
   to ``zh``, and so never to simplified Chinese; Chinese without a region goes to the shipped
   folder of its script (``zh`` and ``zh-Hans`` → ``zh-CN``);
2. the same for the tenant's ``email.locale``;
3. ``en``, which always ships.

A language is never guessed from another one: ``pt`` and ``pt-PT`` do not reach ``pt-BR`` (add a
``pt`` or ``pt-PT`` folder, or write ``pt-BR``), and folders match tags case-insensitively
(``PT-br`` is ``pt-BR``).

Because the chain ends at ``en``, every well-formed tag reaches a shipped locale: ``validate``
refuses only malformed tags. One deliberate narrowing of RFC 5646: the primary language subtag
is 2 or 3 letters (ISO 639). Longer ones are reserved and none is registered, so ``French`` or
``english`` is refused as the mistake it is rather than quietly sent in English; the irregular
grandfathered tags (``i-klingon``, ``en-GB-oed``…) are refused too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator
from pathlib import Path

FALLBACK_LOCALE = "en"
SHIPPED_LOCALES = ("en", "fr", "de", "es", "it", "nl", "pt-BR", "ja", "zh-CN", "pl")
"""The locale folders packaged with the reconciler (``templates/``)."""

BCP47_PATTERN = (
    r"^(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?|[Xx](?:-[A-Za-z0-9]{1,8})+)$"
)
"""A well-formed BCP 47 language tag (RFC 5646 §2.1: language[-extlang][-script][-region]
[-variant…][-extension…][-x-private], or a private-use tag), spelled for ECMA-262 and Python
alike. ``schemas/tenant.schema.json`` and ``schemas/users.schema.json`` publish the same pattern
(a test keeps them equal) so editors flag a bad tag as it is typed."""
BCP47_HINT = "must be a BCP 47 language tag such as en, fr-CA or zh-Hans-CN"

_WELL_FORMED = re.compile(BCP47_PATTERN.removesuffix("$") + r"\Z")
_PARTS = re.compile(
    r"(?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3})(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?(?=-|\Z)"
)
_USUAL_SCRIPT = {
    "en": "Latn",
    "fr": "Latn",
    "de": "Latn",
    "es": "Latn",
    "it": "Latn",
    "nl": "Latn",
    "pt": "Latn",
    "pl": "Latn",
    "ja": "Jpan",
    "zh": "Hans",
}
"""The script a language is written in when a tag does not say (CLDR likely subtags) — for
the languages this table knows; another language's script is never assumed."""
_TRADITIONAL_CHINESE_REGIONS = frozenset({"TW", "HK", "MO"})
_SCRIPT_HOME = {("zh", "Hans"): "zh-CN", ("zh", "Hant"): "zh-TW"}
"""Where Chinese in one script is found when the tag names no region."""


def is_well_formed(tag: str) -> bool:
    """Whether ``tag`` is a language tag this product accepts (see the module docstring)."""
    return bool(_WELL_FORMED.match(tag))


def canonical_case(tag: str) -> str:
    """RFC 5646 §2.1.1 case: language lower, script title, region upper, the rest lower; after
    a singleton (``-u-``, ``-x-``) everything is lower."""
    out, extended = [], False
    for index, subtag in enumerate(tag.split("-")):
        extended = extended or (index > 0 and len(subtag) == 1) or subtag.lower() == "x"
        if index == 0 or extended:
            out.append(subtag.lower())
        elif len(subtag) == 2:
            out.append(subtag.upper())
        elif len(subtag) == 4 and subtag.isalpha():
            out.append(subtag.title())
        else:
            out.append(subtag.lower())
    return "-".join(out)


@functools.lru_cache(maxsize=4096)
def chain(tag: str) -> tuple[str, ...]:
    """The locales ``tag`` alone may use, most specific first, in canonical case (step 1 of the
    module docstring). Raises ValueError for a tag that is not well-formed."""
    if not is_well_formed(tag):
        raise ValueError(f"locale {tag!r} {BCP47_HINT}")
    tag = canonical_case(tag)
    found = _PARTS.match(tag.lower())
    if found is None:  # a private-use tag (x-…): only a folder of exactly that name
        return (tag,)
    language = found["language"].split("-")[0]
    region = found["region"].upper() if found["region"] else None
    script = found["script"].title() if found["script"] else _usual_script(language, region)
    return tuple(dict.fromkeys(_candidates(tag, language, script)))


def _candidates(tag: str, language: str, script: str | None) -> Iterator[str]:
    subtags = tag.split("-")
    while subtags:
        candidate = "-".join(subtags)
        parts = _PARTS.match(candidate.lower())
        assert parts is not None
        region = parts["region"].upper() if parts["region"] else None
        if parts["script"]:
            yield candidate
            if script == _usual_script(language, region):
                yield "-".join(s for s in subtags if s != parts["script"].title())
        elif script == _usual_script(language, region):
            yield candidate
        subtags.pop()
        if subtags and len(subtags[-1]) == 1:  # never end on a singleton (RFC 4647 §3.4)
            subtags.pop()
    if (home := _SCRIPT_HOME.get((language, script or ""))) is not None:
        yield home


def _usual_script(language: str, region: str | None) -> str | None:
    if language == "zh" and region in _TRADITIONAL_CHINESE_REGIONS:
        return "Hant"
    return _USUAL_SCRIPT.get(language)


def resolve(tags: tuple[str | None, ...], available: Collection[str]) -> str:
    """The locale folder emails use: the first of ``available`` along the chains of ``tags``
    (the user's tag, then the tenant's), else ``en``. A tag that is not well-formed contributes
    nothing (validation refuses it before), so a locale string can never name a path."""
    folders = _folders(frozenset(available))
    for tag in tags:
        if tag and is_well_formed(tag):
            for candidate in chain(tag):
                if candidate.lower() in folders:
                    return folders[candidate.lower()]
    return FALLBACK_LOCALE


@functools.cache
def _folders(available: frozenset[str]) -> dict[str, str]:
    return {name.lower(): name for name in available}


def locale_folders(*roots: Path | None) -> list[str]:
    """The locale folders of templates folders (an administrator's, the packaged copy): folder
    names not starting with ``_`` or ``.``; files such as a ``GLOSSARY.md`` beside them are not
    locales."""
    return sorted(
        {
            child.name
            for root in roots
            if root is not None and root.is_dir()
            for child in root.iterdir()
            if child.is_dir() and not child.name.startswith(("_", "."))
        }
    )


def differs(tag: str, locale: str) -> bool:
    """Whether the locale used is not the tag as written (case aside): worth telling reviewers."""
    return tag.lower() != locale.lower()
