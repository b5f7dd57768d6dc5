"""Plans reuse users files unchanged since the last apply; the result must be exactly the
full path's (issue 4). A randomized walk of edits, applies and errors compares both."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import LoadedConfig
from reconciler.errors import ConfigError
from reconciler.manager import Manager, Options
from reconciler.outputs.json import plan_to_dict
from reconciler.state.sql import SQLStore
from tests.helpers.schema import downgrade_to_version, forget_source_files
from tests.helpers.tenants import TOLL, TOLL_2, tenant_doc, user_doc, write_tenant
from tests.helpers.ui import SilentUI

FILES = 6


def write(config: Path, tenant: dict, layout: dict[str, dict[str, dict]]) -> None:
    write_tenant(config, "acme", tenant, user_files=layout)


def both_paths(options: Options) -> tuple[object, object]:
    """(loaded users, plan JSON) with reuse and without, or the problems each raised."""
    results = []
    for reuse in (True, False):
        manager = Manager(options, read_only=True)
        try:
            loaded = manager.load(reuse_state=reuse)
            plan = manager.plan(loaded, manager.tenant_names(loaded))
            # The mass-disable and mass-email rules' counts (a plan with nothing to do counts
            # nothing).
            counts = [
                (t.enabled_before, t.disabling, t.users, t.mailed)
                for t in plan.tenants
                if t.has_changes
            ]
            results.append((dict(loaded.tenants["acme"].users), plan_to_dict(plan), counts))
        except ConfigError as exc:
            results.append(("problems", [str(p) for p in exc.problems]))
        finally:
            manager.close()
    return results[0], results[1]


def unchanged_since(loaded: LoadedConfig) -> int | None:
    """The serial of the applied state the tenant is exactly, when no file changed since."""
    reused = loaded.reused.get("acme")
    return reused.version[1] if reused is not None and reused.whole else None


def apply(options: Options) -> None:
    from reconciler.apply import run_apply

    manager = Manager(options)
    try:
        run_apply(
            manager,
            SilentUI(),
            auto_approve=True,
            allow_mass_disable=True,
            allow_mass_email=True,
            allow_new_state=True,
        )
    finally:
        manager.close()


def applied_alice_and_bob(
    tmp_path: Path, state_location: str, alice: str = "alice@acme.com"
) -> tuple[Path, Options, dict[str, dict[str, dict]]]:
    """Alice (written ``alice``) in ``a.yaml`` and Bob in ``b.yaml``, applied: (config,
    options, layout)."""
    config = tmp_path / "tenants"
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    layout = {
        "a.yaml": {alice: user_doc("1000001")},
        "b.yaml": {"bob@acme.com": user_doc("1000002")},
    }
    write(config, tenant_doc(), layout)
    apply(options)
    return config, options, layout


@pytest.mark.parametrize("seed", range(4))
def test_reusing_unchanged_files_plans_exactly_like_reading_them(
    tmp_path: Path, state_location: str, seed: int
) -> None:
    rng = random.Random(seed)
    config = tmp_path / "tenants"
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    tenant = tenant_doc()
    layout = {
        f"part{f}.yaml": {
            f"u{f}{i}@acme.com": user_doc(f"{1000000 + f * 100 + i}") for i in range(8)
        }
        for f in range(FILES)
    }
    write(config, tenant, layout)
    apply(options)
    reused_some = reused_all = read_one = False
    for _step in range(25):
        file = rng.choice(sorted(layout))
        users = layout[file]
        action = rng.choice(
            [
                "edit",
                "move",
                "add",
                "remove",
                "request",
                "tenant",
                "error",
                "new file",
                "drop file",
                "apply",
                "apply",
            ]
        )
        if action == "edit" and users:
            upn = rng.choice(sorted(users))
            users[upn] = {**users[upn], "conference_id": f"{rng.randrange(2000000, 9999999)}"}
        elif action == "move" and users:
            upn = rng.choice(sorted(users))
            layout[rng.choice(sorted(layout))][upn] = users.pop(upn)
        elif action == "add":
            users[f"n{rng.randrange(10**6)}@acme.com"] = user_doc(
                f"{rng.randrange(2000000, 9999999)}", license=rng.random() < 0.8
            )
        elif action == "remove" and users:
            users.pop(rng.choice(sorted(users)))
        elif action == "request" and users:
            upn = rng.choice(sorted(users))
            users[upn] = {**users[upn], "pin_reset": f"r{rng.randrange(100)}"}
        elif action == "tenant":
            tenant = tenant_doc()
            tenant["bridge"]["default_number"] = rng.choice([TOLL, TOLL_2])
        elif action == "error" and users:  # a duplicate conference ID, for this step only
            upn = rng.choice(sorted(users))
            kept = users[upn]
            other = rng.choice([u for f in layout.values() for u in f.values() if u is not kept])
            users[upn] = {**kept, "conference_id": other["conference_id"]}
            write(config, tenant, layout)
            with_reuse, without = both_paths(options)
            assert with_reuse == without and with_reuse[0] == "problems", (seed, _step)
            users[upn] = kept
        elif action == "new file":  # every other file as applied: nothing may be skipped
            layout[f"extra{rng.randrange(10**6)}.yaml"] = {
                f"x{rng.randrange(10**6)}@acme.com": user_doc(f"{rng.randrange(2000000, 9999999)}")
            }
        elif action == "drop file" and len(layout) > 1:
            del layout[file]
        elif action == "apply":
            apply(options)
        write(config, tenant, layout)
        with_reuse, without = both_paths(options)
        assert with_reuse == without, (seed, _step, action)
        manager = Manager(options, read_only=True)
        reused = manager.load(reuse_state=True).reused.get("acme")
        reused_some |= reused is not None
        reused_all |= reused is not None and reused.whole
        read_one |= reused is not None and not reused.whole
        manager.close()
    assert reused_some, "the walk never reused a file: the test would prove nothing"
    assert reused_all, "the walk never planned an unchanged tenant: the shortcut is unproven"
    assert read_one, "the walk never planned from changed files alone: that path is unproven"


def test_a_problem_touching_a_reused_file_is_located_as_without_reuse(
    tmp_path: Path, state_location: str
) -> None:
    config, options, layout = applied_alice_and_bob(tmp_path, state_location, "Alice@acme.com")
    layout["b.yaml"]["carol@acme.com"] = user_doc("1000001")  # a.yaml unchanged: reused
    write(config, tenant_doc(), layout)
    with_reuse, without = both_paths(options)
    assert with_reuse == without
    assert with_reuse[0] == "problems"
    problems = with_reuse[1]
    assert any(p.startswith("acme/users/a.yaml:5:20: conference_id") for p in problems)
    assert any("(Alice@acme.com)" in p for p in problems)  # the key as written, re-read


def test_a_state_that_does_not_know_its_users_files_is_never_reused(
    tmp_path: Path, state_location: str
) -> None:
    _, options, _ = applied_alice_and_bob(tmp_path, state_location)
    forget_source_files(state_location)
    with_reuse, without = both_paths(options)
    assert with_reuse == without
    assert with_reuse[1]["summary"]["emails"] == 0  # not "every user disabled"
    manager = Manager(options, read_only=True)
    assert manager.load(reuse_state=True).reused == {}
    manager.close()


def test_a_plan_with_nothing_to_do_reads_no_user_record(
    tmp_path: Path, state_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file as last applied: the plan comes from the hashes and the serial alone."""
    config = tmp_path / "tenants"
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    layout = {
        f"part{f}.yaml": {
            f"u{f}{i}@acme.com": user_doc(f"{1000000 + f * 100 + i}") for i in range(5)
        }
        for f in range(3)
    }
    write(config, tenant_doc(), layout)
    apply(options)
    statements: list[str] = []
    real = SQLStore._run

    def traced(self: SQLStore, sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(SQLStore, "_run", traced)
    manager = Manager(options, read_only=True)
    try:
        loaded = manager.load(reuse_state=True)
        plan = manager.plan(loaded, manager.tenant_names(loaded))
    finally:
        manager.close()
    assert not plan.has_changes and plan.tenants[0].serial == 1
    assert unchanged_since(loaded) == 1
    assert statements, "the trace saw the state being read"
    assert [q for q in statements if "{users}" in q and "record" in q] == []


def planned_after(
    options: Options, meanwhile: Callable[[], None], restore: Callable[[], None]
) -> tuple[LoadedConfig, dict[str, Any]]:
    """The files loaded with reuse, then ``meanwhile`` changes the state, ``restore`` puts the
    files back as loaded, and the plan is made from what was loaded: (loaded, plan JSON)."""
    manager = Manager(options, read_only=True)
    try:
        loaded = manager.load(reuse_state=True)
        meanwhile()
        restore()
        return loaded, plan_to_dict(manager.plan(loaded, manager.tenant_names(loaded)))
    finally:
        manager.close()


def test_an_apply_between_reading_and_planning_makes_the_plan_read_the_files(
    tmp_path: Path, state_location: str
) -> None:
    """Files matched against serial 1, then another apply moves the state: the plan does not
    trust the match and reads the files, planning exactly what a fresh plan would."""
    config = tmp_path / "tenants"
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    layout = {"a.yaml": {"alice@acme.com": user_doc("1000001")}}
    write(config, tenant_doc(), layout)
    apply(options)

    def moved() -> None:
        write(config, tenant_doc(), {"a.yaml": {"alice@acme.com": user_doc("1000002")}})
        apply(options)  # serial 2: Alice's conference ID changed

    loaded, plan = planned_after(options, moved, lambda: write(config, tenant_doc(), layout))
    assert unchanged_since(loaded) == 1
    assert plan == both_paths(options)[1][1]
    assert plan["tenants"][0]["state"]["serial"] == 2
    assert [e["type"] for e in plan["tenants"][0]["emails"]] == ["details-changed"]


@pytest.mark.parametrize("bob", ["1000002", "1000003"], ids=["no-file-changed", "b-changed"])
def test_a_tenant_forgotten_and_applied_again_between_reading_and_planning_is_read_in_full(
    tmp_path: Path, state_location: str, bob: str
) -> None:
    """The files were matched against serial 1; the tenant is forgotten and applied again from
    other files, serial 1 of a new lineage: the plan does not take that state's users for the
    files' own, it reads the files and plans exactly what a fresh plan would."""
    config, options, layout = applied_alice_and_bob(tmp_path, state_location)
    layout["b.yaml"]["bob@acme.com"] = user_doc(bob)
    write(config, tenant_doc(), layout)

    def forgotten_and_applied_again() -> None:
        forgetting = Manager(options)
        try:
            forgetting.forget("acme", drop_queued=True)
        finally:
            forgetting.close()
        moved = {**layout, "a.yaml": {"alice@acme.com": user_doc("1000009")}}
        write(config, tenant_doc(), moved)
        apply(options)  # serial 1 again, another lineage: Alice's conference ID differs

    loaded, plan = planned_after(
        options, forgotten_and_applied_again, lambda: write(config, tenant_doc(), layout)
    )
    assert "acme" in loaded.reused
    assert plan == both_paths(options)[1][1]
    assert plan["tenants"][0]["state"]["serial"] == 1
    assert "alice@acme.com" in {e["user"] for e in plan["tenants"][0]["emails"]}


def test_a_saved_plan_of_an_unchanged_tenant_holds_every_user_and_applies_nothing(
    tmp_path: Path, state_location: str
) -> None:
    """The users a plan with nothing to do never read are read for a saved plan, which must
    carry the whole configuration."""
    from reconciler import planfile
    from reconciler.apply import run_apply

    config = tmp_path / "tenants"
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    layout = {
        "a.yaml": {"alice@acme.com": user_doc("1000001")},
        "b.yaml": {"bob@acme.com": user_doc("1000002"), "carol@acme.com": user_doc("1000003")},
    }
    write(config, tenant_doc(), layout)
    apply(options)
    saved = tmp_path / "plan.json"
    manager = Manager(options, read_only=True)
    try:
        loaded = manager.load(reuse_state=True)
        assert unchanged_since(loaded) == 1
        plan = manager.plan(loaded, manager.tenant_names(loaded))
        planfile.save(plan, saved, manager.history_counts(loaded.tenants), config)
    finally:
        manager.close()
    document = json.loads(saved.read_text(encoding="utf-8"))
    full = both_paths(options)[1][0]
    assert document["configs"]["acme"]["users"] == full and len(full) == 3
    manager = Manager(options)
    try:
        outcome = run_apply(manager, SilentUI(), saved=saved)
    finally:
        manager.close()
    assert outcome.applied == [] and outcome.delivered == 0


def test_a_new_or_removed_file_beside_unchanged_ones_is_never_an_unchanged_tenant(
    tmp_path: Path, state_location: str
) -> None:
    config, options, layout = applied_alice_and_bob(tmp_path, state_location)
    for changed in (
        {**layout, "c.yaml": {"carol@acme.com": user_doc("1000003")}},  # a new file
        {"a.yaml": layout["a.yaml"]},  # b.yaml removed
    ):
        write(config, tenant_doc(), changed)
        manager = Manager(options, read_only=True)
        try:
            assert unchanged_since(manager.load(reuse_state=True)) is None
        finally:
            manager.close()
        with_reuse, without = both_paths(options)
        assert with_reuse == without and with_reuse[1]["summary"]["emails"] == 1


def test_a_plan_of_one_changed_file_reads_only_that_files_users(
    tmp_path: Path, state_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the other files' users are neither parsed nor decoded; duplicates are asked of
    the state by index, the mass-disable rule counts their enabled users there."""
    config = tmp_path / "tenants"
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    layout = {
        f"part{f}.yaml": {
            f"u{f}{i}@acme.com": user_doc(f"{1000000 + f * 100 + i}", license=i != 0)
            for i in range(12)
        }
        for f in range(4)
    }
    write(config, tenant_doc(), layout)
    apply(options)
    changed = layout["part2.yaml"]
    for i in range(1, 4):  # 3 of 44 enabled users lose their license: not a mass disable
        changed[f"u2{i}@acme.com"] = user_doc(f"{1000200 + i}", license=False)
    write(config, tenant_doc(), layout)

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a reused file's users were read")

    compared: list[set[str]] = []
    users_except = SQLStore.users_except

    def spied(self: SQLStore, *args: Any) -> Any:
        rest = users_except(self, *args)
        compared.append(set(rest.users))
        return rest

    monkeypatch.setattr(SQLStore, "file_users", never)
    monkeypatch.setattr(SQLStore, "users_except", spied)
    manager = Manager(options, read_only=True)
    try:
        loaded = manager.load(reuse_state=True)
        reused = loaded.reused["acme"]
        plan = manager.plan(loaded, manager.tenant_names(loaded)).tenants[0]
    finally:
        manager.close()
    assert not reused.whole and set(reused.parsed) == {f"u2{i}@acme.com" for i in range(12)}
    assert reused.files == {f"acme/users/part{f}.yaml" for f in (0, 1, 3)}
    assert compared == [set(reused.parsed)]  # the applied users read: that file's alone
    assert (plan.enabled_before, plan.disabling) == (44, 3)
    assert [e.type for e in plan.emails] == ["disabled"] * 3
    monkeypatch.undo()
    with_reuse, without = both_paths(options)
    assert with_reuse == without


@pytest.mark.parametrize("duplicate", ["upn", "conference_id"])
def test_a_duplicate_of_a_reused_files_user_is_found_and_located_in_both_files(
    tmp_path: Path, state_location: str, duplicate: str
) -> None:
    config, options, layout = applied_alice_and_bob(tmp_path, state_location)
    if duplicate == "upn":
        layout["b.yaml"]["ALICE@acme.com"] = user_doc("1000003")
    else:
        layout["b.yaml"]["carol@acme.com"] = user_doc("1000001")
    write(config, tenant_doc(), layout)
    with_reuse, without = both_paths(options)
    assert with_reuse == without and with_reuse[0] == "problems"
    assert any(p.startswith("acme/users/a.yaml:") for p in with_reuse[1])
    assert any(p.startswith("acme/users/b.yaml:") for p in with_reuse[1])


def test_an_older_read_only_state_plans_a_changed_file_by_reading_every_file(
    tmp_path: Path, state_location: str
) -> None:
    """A schema 3 state opened read-only (SQLite plan) or by a role that may only read
    (PostgreSQL) cannot be asked by index: the plan reads the files, and is the same."""
    config, options, layout = applied_alice_and_bob(tmp_path, state_location)
    downgrade_to_version(state_location, 3)
    layout["b.yaml"]["carol@acme.com"] = user_doc("1000003")
    write(config, tenant_doc(), layout)
    if "://" not in state_location:  # PostgreSQL upgrades when it may: see test_state_postgres
        manager = Manager(options, read_only=True)
        try:
            assert manager.load(reuse_state=True).reused == {}
        finally:
            manager.close()
    with_reuse, without = both_paths(options)
    assert with_reuse == without and with_reuse[1]["summary"]["emails"] == 1


def test_a_state_applied_before_the_pin_setting_existed_is_planned_in_full(
    tmp_path: Path,
) -> None:
    """A tenant applied by a version without ``email.pin`` (its record lacks the new defaults,
    its files hash carries no records version) is never taken as unchanged: the plan reads it
    and shows the defaults as setting changes, once; apply records them and sends nothing."""
    import sqlite3

    from reconciler import __version__
    from reconciler.config import CACHE_KEY

    state = tmp_path / "state.db"
    _config, options, _layout = applied_alice_and_bob(tmp_path, str(state))
    with sqlite3.connect(state) as db:
        (record, files) = db.execute("SELECT config, files FROM tenants").fetchone()
        record, files = json.loads(record), json.loads(files)
        del record["email"]["pin"], record["email"]["pin_self_service_url"]
        files[CACHE_KEY] = __version__
        db.execute(
            "UPDATE tenants SET config = ?, files = ?", (json.dumps(record), json.dumps(files))
        )
    with_reuse, without = both_paths(options)
    assert with_reuse == without
    tenant = with_reuse[1]["tenants"][0]
    assert tenant["settings_changes"] == [
        {"path": "email.pin", "before": None, "after": "generated"},
        {
            "path": "email.pin_self_service_url",
            "before": None,
            "after": "https://dialin.teams.microsoft.com/usp",
        },
    ]
    assert (tenant["user_changes"], tenant["emails"]) == ([], [])
    apply(options)
    with_reuse, without = both_paths(options)
    assert with_reuse == without and with_reuse[1]["summary"]["settings_changes"] == 0


def test_switching_the_pin_mode_is_a_setting_change_that_sends_nothing(
    tmp_path: Path, state_location: str
) -> None:
    config, options, layout = applied_alice_and_bob(tmp_path, state_location)
    write(config, tenant_doc(pin="self_service"), layout)
    with_reuse, without = both_paths(options)
    assert with_reuse == without
    tenant = with_reuse[1]["tenants"][0]
    assert tenant["settings_changes"] == [
        {"path": "email.pin", "before": "generated", "after": "self_service"}
    ]
    assert (tenant["user_changes"], tenant["emails"]) == ([], [])
