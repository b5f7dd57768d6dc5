"""The compiled fast path may only ever say "valid" when jsonschema agrees."""

from __future__ import annotations

import random

import pytest

from reconciler.config import schema

VALUES = [
    None,
    True,
    False,
    "",
    "x",
    "8412345",
    "0123456",
    "123",
    "+14255550100",
    "+1425",
    "Microsoft",
    "ThirdParty",
    "None",
    "microsoft",
    "fr",
    "en",
    "de-DE",
    "EN",
    "5",
    "4",
    "12",
    "13",
    "3",
    "yes",
    "true",
    [],
    ["a"],
    {},
    {"a": 1},
    "https://x.example/a",
    "ftp://x",
    "toll",
    "toll_free",
]


def random_record(rng: random.Random, keys: list[str]) -> dict:
    chosen = rng.sample([*keys, "unknown", "licence"], rng.randint(0, len(keys)))
    return {k: rng.choice(VALUES) for k in chosen}


def test_fast_path_never_accepts_what_jsonschema_rejects():
    fast = schema.fast_check("users.schema.json", "user")
    assert fast is not None
    full = schema.validator("users.schema.json", "user")
    keys = list(schema.load_schema("users.schema.json")["$defs"]["user"]["properties"])
    rng = random.Random(1234)
    accepted = 0
    for _ in range(4000):
        record = random_record(rng, keys)
        if fast(record):
            accepted += 1
            assert full.is_valid(record), record
        elif full.is_valid(record):
            pytest.fail(
                f"fast path rejected a valid record (only costs time, but says the "
                f"compiler is wrong): {record}"
            )
    assert accepted > 0


def test_schemas_the_compiler_does_not_know_fall_back_to_jsonschema():
    assert schema.fast_check("tenant.schema.json") is None  # minItems, items


def test_fast_path_agrees_on_realistic_users():
    fast = schema.fast_check("users.schema.json", "user")
    assert fast({"license": True, "conference_id": "8412345", "provider": "Microsoft"})
    assert fast({"license": False})
    assert not fast({"license": "yes"})
    assert not fast({"license": True, "conference_id": "841234"})
    assert not fast({"licence": True})
    assert not fast({"conference_id": "8412345"})
