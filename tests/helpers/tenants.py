"""Tenant folders for tests, two ways:

- as data: :func:`tenant_doc`, :func:`user_doc`, :func:`enabled_users` and :func:`write_tenant`
  (YAML written for you: for tests about what the tool does with a configuration);
- as YAML text: :data:`TENANT`, :data:`USERS`, :func:`with_user`, :func:`with_settings`,
  :func:`make_tenant` and :func:`write_files` (text written as given, so line and column numbers
  can be asserted exactly: for tests about how a configuration is read and reported).
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tenants"
"""The shipped example configuration (one tenant, ``contoso``)."""

# --------------------------------------------------------------------------------------------
# As data
# --------------------------------------------------------------------------------------------

TOLL = "+14255550100"
TOLL_2 = "+12065550123"
TOLL_FREE = "+18005550199"
MEETING_UPDATE_TOOL_URL = "https://aka.ms/meetingupdatetool"


def tenant_doc(
    *,
    locale: str = "en",
    pin_length: int = 5,
    send: bool = True,
    override: tuple[str, str] | None = None,
    unique_ids: bool = False,
    pin: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """A ``tenant.yaml`` document: a bridge with two toll numbers and one toll-free number.

    ``override`` is ``(display name, address)`` for ``send_email_from_override: true``;
    ``pin`` is ``email.pin`` (left out, its default ``generated``, when None).
    """
    doc_settings: dict[str, Any] = {
        "automatically_send_emails_to_users": send,
        "pin_length": pin_length,
        "use_unique_conference_ids": unique_ids,
        **settings,
    }
    if override is not None:
        doc_settings.update(
            send_email_from_override=True,
            send_email_from_display_name=override[0],
            send_email_from_address=override[1],
        )
    return {
        "settings": doc_settings,
        "bridge": {
            "numbers": [
                {"number": TOLL, "type": "toll", "location": "Redmond, WA"},
                {"number": TOLL_2, "type": "toll", "location": "Seattle, WA"},
                {"number": TOLL_FREE, "type": "toll_free", "location": "United States"},
            ],
            "default_number": TOLL,
        },
        "email": {
            "locale": locale,
            "meeting_update_tool_url": MEETING_UPDATE_TOOL_URL,
            **({"pin": pin} if pin is not None else {}),
        },
    }


def user_doc(
    conference_id: str | None, *, license: bool = True, provider: str = "Microsoft", **fields: Any
) -> dict[str, Any]:
    """One user's mapping; ``None`` values are left out (the key is then absent)."""
    doc: dict[str, Any] = {
        "license": license,
        "provider": provider,
        "conference_id": conference_id,
        **fields,
    }
    return {key: value for key, value in doc.items() if value is not None}


def enabled_users(
    count: int, *, domain: str = "contoso.com", start: int = 0
) -> dict[str, dict[str, Any]]:
    """``count`` enabled users ``u000@domain``... with distinct conference IDs."""
    return {
        f"u{i:03d}@{domain}": user_doc(f"{7000000 + i}", display_name=f"User {i:03d}")
        for i in range(start, start + count)
    }


def _yaml_text(document: Mapping[str, Any] | str) -> str:
    if isinstance(document, str):
        return document
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


def write_tenant(
    config: Path,
    name: str,
    tenant: Mapping[str, Any] | str,
    users: Mapping[str, Any] | str | None = None,
    *,
    user_files: Mapping[str, Mapping[str, Any] | str] | None = None,
) -> Path:
    """(Re)write ``config/<name>/``: ``tenant.yaml``, ``users.yaml`` (``users`` is the mapping of
    users, or YAML text of the whole file) and ``users/<file>`` for each of ``user_files`` (a
    mapping of users, or YAML text). Files of an earlier call that are not given again are
    removed, so the folder holds exactly what this call describes."""
    folder = config / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "tenant.yaml").write_text(_yaml_text(tenant), encoding="utf-8")
    if users is not None:
        text = users if isinstance(users, str) else _yaml_text({"users": dict(users)})
        (folder / "users.yaml").write_text(text, encoding="utf-8")
    for relative, content in (user_files or {}).items():
        path = folder / "users" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else _yaml_text({"users": dict(content)})
        path.write_text(text, encoding="utf-8")
    return folder


def copy_example(config: Path, *names: str) -> Path:
    """``config`` holding the shipped example tenant under each of ``names`` (default: the
    example configuration as shipped)."""
    if not names:
        shutil.copytree(EXAMPLE, config, dirs_exist_ok=True)
    for name in names:
        shutil.copytree(EXAMPLE / "contoso", config / name)
    return config


# --------------------------------------------------------------------------------------------
# As YAML text
# --------------------------------------------------------------------------------------------

# Line numbers below are relied on by tests: keep this text as it is.
TENANT = """\
settings:
  pin_length: 5
bridge:
  numbers:
    - {number: "+14255550100", type: toll, location: "Redmond, WA"}
    - {number: "+12065550123", type: toll}
    - {number: "+18005550199", type: toll_free}
  default_number: "+14255550100"
"""

USERS = """\
users:
  alice@acme.com:
    license: true
    conference_id: "1234567"
"""


def write_files(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{relative path: YAML text}`` under ``root`` (text is dedented); return root."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text), encoding="utf-8", newline="\n")
    return root


def make_tenant(
    root: Path,
    name: str = "acme",
    tenant: str | None = TENANT,
    users: str | None = USERS,
    **files: str,
) -> Path:
    """A tenant folder ``root/name``: tenant.yaml, users.yaml and extra files given as
    keyword ``users__sales_yaml="..."`` (``__`` is ``/``, the last ``_`` before yaml is ``.``)."""
    contents: dict[str, str] = {}
    if tenant is not None:
        contents[f"{name}/tenant.yaml"] = tenant
    if users is not None:
        contents[f"{name}/users.yaml"] = users
    for key, text in files.items():
        rel = key.replace("__", "/")
        rel = rel[: rel.rfind("_")] + "." + rel[rel.rfind("_") + 1 :]
        contents[f"{name}/{rel}"] = text
    write_files(root, contents)
    return root


def with_user(body: str, key: str = "alice@acme.com") -> str:
    """A users.yaml holding one user whose mapping is ``body`` (indented by the helper)."""
    return f"users:\n  {key}:\n" + textwrap.indent(textwrap.dedent(body), "    ")


def with_settings(extra: str) -> str:
    """TENANT with lines added at the end of ``settings:`` (they start at line 3)."""
    return TENANT.replace(
        "  pin_length: 5\n", "  pin_length: 5\n" + textwrap.indent(textwrap.dedent(extra), "  ")
    )
