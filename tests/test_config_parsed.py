"""Parsed users kept on disk (issue 15): a mapping like the dict it replaces, and the duplicate
queries the loader reports from."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.config.parsed import ParsedUsers
from reconciler.model import TenantConfig


def user(upn: str, conference_id: str | None = None, **values: Any) -> Any:
    return {"upn": upn, "conference_id": conference_id, "license": True, **values}


def parsed(*rows: tuple[str, str, Any]) -> ParsedUsers:
    users = ParsedUsers()
    users.add(((file, key), record) for file, key, record in rows)
    return users


def test_parsed_users_read_back_as_a_mapping_in_reading_order() -> None:
    alice, bob = user("alice@contoso.com", "1234567"), user("bob@contoso.com", display_name="B")
    users = parsed(("t/users/b.yaml", "Bob@Contoso.com", bob))
    users.add([(("t/users/a.yaml", "alice@contoso.com"), alice)])

    assert list(users) == ["bob@contoso.com", "alice@contoso.com"]
    assert users["alice@contoso.com"] == alice
    assert dict(users.items()) == {"bob@contoso.com": bob, "alice@contoso.com": alice}
    assert list(users.items()) == [("bob@contoso.com", bob), ("alice@contoso.com", alice)]
    assert len(users) == 2
    assert "bob@contoso.com" in users and "carol@contoso.com" not in users and 3 not in users
    assert users.get("carol@contoso.com") is None
    assert users == {"alice@contoso.com": alice, "bob@contoso.com": bob}


def test_sources_say_where_each_user_is_written_as_written() -> None:
    users = parsed(
        ("t/users/b.yaml", "Bob@Contoso.com", user("bob@contoso.com")),
        ("t/users.yaml", "alice@contoso.com", user("alice@contoso.com")),
    )

    assert users.sources["bob@contoso.com"] == ("t/users/b.yaml", "Bob@Contoso.com")
    assert dict(users.sources.items()) == {
        "bob@contoso.com": ("t/users/b.yaml", "Bob@Contoso.com"),
        "alice@contoso.com": ("t/users.yaml", "alice@contoso.com"),
    }
    assert len(users.sources) == 2 and "carol@contoso.com" not in users.sources
    with pytest.raises(KeyError):
        users.sources["carol@contoso.com"]


def test_source_files_name_each_users_file_without_copying_the_sources() -> None:
    users = parsed(
        ("t/users/b.yaml", "Bob@Contoso.com", user("bob@contoso.com")),
        ("t/users.yaml", "alice@contoso.com", user("alice@contoso.com")),
    )
    config = TenantConfig("t", {"settings": {}, "bridge": {}, "email": {}}, users, users.sources)

    files = config.source_files()

    assert list(files) == ["bob@contoso.com", "alice@contoso.com"] and len(files) == 2
    assert dict(files.items()) == {
        "bob@contoso.com": "t/users/b.yaml",
        "alice@contoso.com": "t/users.yaml",
    }
    assert (
        files.get("bob@contoso.com") == "t/users/b.yaml" and files.get("carol@contoso.com") is None
    )


def test_repeated_lists_only_values_written_twice_with_every_place_in_reading_order() -> None:
    users = parsed(
        ("t/a.yaml", "Dup@contoso.com", user("dup@contoso.com", "1111111")),
        ("t/a.yaml", "one@contoso.com", user("one@contoso.com", "2222222")),
        ("t/a.yaml", "none@contoso.com", user("none@contoso.com")),
        ("t/b.yaml", "other@contoso.com", user("other@contoso.com")),
        ("t/b.yaml", "dup@contoso.com", user("dup@contoso.com", "2222222")),
        ("t/c.yaml", "DUP@contoso.com", user("dup@contoso.com", "3333333")),
    )

    assert users.repeated("upn") == {
        "dup@contoso.com": [
            ("t/a.yaml", "Dup@contoso.com"),
            ("t/b.yaml", "dup@contoso.com"),
            ("t/c.yaml", "DUP@contoso.com"),
        ]
    }
    assert users.repeated("conference_id") == {  # users without an ID do not collide
        "2222222": [("t/a.yaml", "one@contoso.com"), ("t/b.yaml", "dup@contoso.com")]
    }
    assert sorted(users.conference_ids()) == ["1111111", "2222222", "3333333"]


def test_many_users_are_added_a_batch_at_a_time_and_read_back_exactly() -> None:
    users = ParsedUsers()
    for batch in range(3):
        users.add(
            ((f"t/{batch}.yaml", f"u{batch}-{i}@x.com"), user(f"u{batch}-{i}@x.com", f"{i:07}"))
            for i in range(2000)
        )

    assert len(users) == 6000
    assert users["u2-1999@x.com"] == user("u2-1999@x.com", "0001999")
    assert len(users.repeated("conference_id")) == 2000
    assert users.repeated("upn") == {}
