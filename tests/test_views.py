"""Every view the reconciler makes (``reconciler/views.py``) behaves exactly like the dict or the
tuple it stands for: equality both ways, hash, length, iteration in order, membership, ``get``,
``items``/``keys``/``values``, and the missing key or index."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from reconciler.config.parsed import ParsedUsers
from reconciler.model import TenantConfig
from reconciler.plan import Change, Created
from reconciler.state.base import StoredUsers, encode_record
from reconciler.views import KeyedView, OnDemand

USERS: dict[str, Any] = {
    "a@x.com": {"upn": "a@x.com", "license": True, "conference_id": "1000001"},
    "b@x.com": {"upn": "b@x.com", "license": False, "conference_id": None},
    "c@x.com": {"upn": "c@x.com", "license": True, "conference_id": "1000003"},
}


def _parsed_sources() -> tuple[Mapping[str, Any], dict[str, Any]]:
    parsed = ParsedUsers()
    parsed.add(((f"users/{n}.yaml", f"users[{n}]"), u) for n, u in enumerate(USERS.values()))
    expected = {upn: (f"users/{n}.yaml", f"users[{n}]") for n, upn in enumerate(USERS)}
    return parsed.sources, expected


def _source_files() -> tuple[Mapping[str, Any], dict[str, Any]]:
    sources = {upn: (f"users/{upn[0]}.yaml", "users[0]") for upn in USERS}
    config = TenantConfig(name="contoso", tenant={}, users=USERS, sources=sources)
    return config.source_files(), {upn: f"users/{upn[0]}.yaml" for upn in USERS}


def _stored_users() -> tuple[Mapping[str, Any], dict[str, Any]]:
    texts = {upn: encode_record(u) for upn, u in USERS.items()}
    return StoredUsers.from_rows(texts.items(), texts.__getitem__), USERS


def _upserts() -> tuple[Mapping[str, Any], dict[str, Any]]:
    names = {"a@x.com", "c@x.com"}
    return KeyedView(names, USERS.__getitem__), {k: USERS[k] for k in names}


def _on_demand() -> tuple[Mapping[str, Any], dict[str, Any]]:
    return OnDemand(lambda: dict(USERS)), USERS


MAPPINGS: dict[str, Callable[[], tuple[Mapping[str, Any], dict[str, Any]]]] = {
    "a users file's sources (ParsedUsers.sources)": _parsed_sources,
    "each user's file (TenantConfig.source_files)": _source_files,
    "applied users by digest (StoredUsers)": _stored_users,
    "the users a commit writes (apply)": _upserts,
    "the users of unchanged files (read on demand)": _on_demand,
}


@pytest.mark.parametrize("make", MAPPINGS.values(), ids=MAPPINGS.keys())
def test_a_mapping_view_is_the_dict_it_stands_for(
    make: Callable[[], tuple[Mapping[str, Any], dict[str, Any]]],
) -> None:
    view, expected = make()
    assert view == expected and expected == view
    assert view != {**expected, "z@x.com": 1} and view != {}
    assert len(view) == len(expected)
    assert sorted(view) == sorted(expected)
    assert sorted(view.keys()) == sorted(expected.keys())
    assert sorted(map(json.dumps, view.values())) == sorted(map(json.dumps, expected.values()))
    assert dict(view.items()) == expected and len(view.items()) == len(expected)
    assert all(upn in view for upn in expected) and "z@x.com" not in view and 3 not in view
    assert all(view[upn] == value for upn, value in expected.items())
    assert view.get("z@x.com") is None and view.get("z@x.com", 7) == 7
    with pytest.raises(KeyError):
        view["z@x.com"]
    with pytest.raises(TypeError):
        hash(view)  # unhashable, as a dict is


def test_a_mapping_view_keeps_the_order_of_its_keys() -> None:
    ordered = {"c": 3, "a": 1, "b": 2}
    assert list(KeyedView(ordered, ordered.__getitem__)) == ["c", "a", "b"]
    parsed, expected = _parsed_sources()
    assert list(parsed) == list(expected) and list(parsed.items()) == list(expected.items())


def _created() -> tuple[Sequence[Any], tuple[Any, ...]]:
    expected = (Change("license", None, True), Change("conference_id", None, "1000001"))
    return Created(USERS, "a@x.com"), expected


TUPLES: dict[str, Callable[[], tuple[Sequence[Any], tuple[Any, ...]]]] = {
    "a created user's changes (plan)": _created,
}


@pytest.mark.parametrize("make", TUPLES.values(), ids=TUPLES.keys())
def test_a_tuple_view_is_the_tuple_it_stands_for(
    make: Callable[[], tuple[Sequence[Any], tuple[Any, ...]]],
) -> None:
    view, expected = make()
    assert view == expected and expected == view and view == make()[0]
    assert view != expected[:1] and view != list(expected), "a tuple is not a list"
    assert hash(view) == hash(expected)
    assert len(view) == len(expected) and tuple(view) == expected
    assert view[0] == expected[0] and view[-1] == expected[-1] and view[:1] == expected[:1]
    assert expected[0] in view and Change("x", 1, 2) not in view
    assert view.index(expected[-1]) == len(expected) - 1 and view.count(expected[0]) == 1
    assert repr(view) == repr(expected)
    with pytest.raises(IndexError):
        view[len(expected)]


def test_a_users_source_is_one_query_and_a_created_users_changes_one_small_object() -> None:
    """The two views a first plan of 300,000 users makes per user: reading where a user is
    written (each commit does, for every user it writes) asks the parsed users once, and a
    created user's changes hold two references, nothing else."""
    parsed, _ = _parsed_sources()
    config = TenantConfig(name="contoso", tenant={}, users=USERS, sources=parsed)
    assert config.source_files().get("a@x.com") == "users/0.yaml"  # the indexes, built once
    statements: list[str] = []
    parsed_users: Any = parsed._keys  # type: ignore[attr-defined]
    parsed_users._db.set_trace_callback(statements.append)
    assert config.source_files().get("b@x.com") == "users/1.yaml"
    assert config.source_files().get("z@x.com") is None
    assert len(statements) == 2, statements
    changes = Created(USERS, "a@x.com")
    assert not hasattr(changes, "__dict__") and sys.getsizeof(changes) <= 64
