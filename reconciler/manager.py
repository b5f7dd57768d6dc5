"""Orchestration of the pure core: load the config, read the state, build the plan.

The ``Manager`` owns the run's options and the state store; the CLI only parses arguments and
prints, and ``apply`` builds on the plan made here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.config import LoadedConfig, UsersCache, load_config, locate_findings
from reconciler.errors import ConfigError, Problem, UserError
from reconciler.locales import locale_folders
from reconciler.model import Applied, TenantConfig
from reconciler.plan import Plan, Scope, TenantPlan, plan_missing, plan_tenant
from reconciler.resources import default_templates
from reconciler.reuse import applied_and_scope, users_caches
from reconciler.state import (
    EmptyState,
    Forgotten,
    MailQueued,
    ReadOnlyState,
    StateLocked,
    StateStore,
    new_outbox_key,
    open_store,
)

if TYPE_CHECKING:
    from reconciler.emails import TemplateSet
    from reconciler.state.migrate import Migrated


@dataclass
class Options:
    config: Path = Path("tenants")
    state: str = ".reconciler/state.db"
    mail: str = "maildir:.reconciler/mail"
    default_from: str | None = None
    templates: Path | None = None
    tenants: tuple[str, ...] = ()
    lock_timeout: float = 0.0


@dataclass
class Manager:
    options: Options
    read_only: bool = False
    """Set by commands that only read the state: they take :attr:`reader`, where a missing
    SQLite file is then an empty state instead of being created."""
    _store: StateStore | EmptyState | None = field(default=None, repr=False)
    _templates: TemplateSet | None = field(default=None, repr=False)

    def locales(self) -> list[str]:
        """The locale folders emails can be written in (the configured templates folder and the
        packaged copy), found without loading Jinja2: plans name each email's language."""
        if self._templates is not None:
            return self._templates.locales()
        return locale_folders(self.options.templates, default_templates())

    @property
    def templates(self) -> TemplateSet:
        if self._templates is None:
            from reconciler.emails import TemplateSet  # Jinja2: only once emails are rendered

            self._templates = TemplateSet(self.options.templates)
        return self._templates

    @property
    def reader(self) -> ReadOnlyState:
        """The state as it is read: for a command that only reads (``read_only``), opened
        read-only, and an :class:`EmptyState` while its SQLite file does not exist yet."""
        return self._opened()

    @property
    def store(self) -> StateStore:
        """The state, for the flows that write it (created when missing); a command that only
        reads takes :attr:`reader`, which may be a state with nothing to write to."""
        store = self._opened()
        if isinstance(store, EmptyState):
            raise RuntimeError("a read-only command never writes the state (Manager.store)")
        return store

    def _opened(self) -> StateStore | EmptyState:
        if self._store is None:
            self._store = open_store(self.options.state, create=not self.read_only)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def known_tenants(self) -> set[str]:
        """The tenants the state has, found without creating or changing anything."""
        store = self._store or open_store(self.options.state, create=False, read_only=True)
        try:
            return set(store.tenants())
        finally:
            if store is not self._store:
                store.close()

    def load(self, reuse_state: bool = False) -> LoadedConfig:
        """The configuration, or ConfigError with every problem in it.

        ``reuse_state``: users files unchanged since the last apply are taken from the state
        instead of parsed (plan and apply; never ``validate``, which needs no state).
        """
        caches: dict[str, UsersCache] | None = None
        if reuse_state:
            store = self._store or open_store(
                self.options.state, create=False, read_only=self.read_only
            )
            if not isinstance(store, EmptyState):  # looking must not create a state
                self._store = store
                caches = users_caches(store, store.tenants())
        return load_config(self.options.config, self.options.tenants or None, caches)

    def validate(self) -> LoadedConfig:
        """The configuration, with every template checked too (no state needed): a ConfigError
        holds the problems of both at once."""
        from reconciler import emails  # Jinja2: only for the commands that render

        problems = emails.check_templates(self.options.templates)
        try:
            loaded = self.load()
        except ConfigError as exc:
            raise ConfigError([*exc.problems, *problems]) from None
        if problems:
            raise ConfigError(problems)
        if loaded.missing:
            raise UserError(
                f"no tenant folder {', '.join(loaded.missing)} under {self.options.config}"
            )
        return loaded

    def format(self, paths: Collection[Path], check: bool) -> tuple[list[Path], int, list[Problem]]:
        """Lay out the tenant and users files under ``paths`` (default: every tenant)
        canonically, or only say which would change (``check``): the files changed, how many
        were looked at, and the problems that stopped it (then nothing is written)."""
        from reconciler.config import fmt

        changes, looked_at, problems = fmt.changed_files(tuple(paths), self.options.config)
        if problems:
            return [], looked_at, problems
        written: list[str] = []
        for path, text in changes:
            if check:
                continue
            try:
                fmt.write(path, text)
            except OSError as exc:
                raise UserError(
                    f"{path}: cannot rewrite it ({exc.strerror or exc}); rewritten before it: "
                    f"{', '.join(written) or 'none'}; the others are unchanged"
                ) from None
            written.append(str(path))
        return [path for path, _ in changes], looked_at, []

    def forget(self, name: str, drop_queued: bool) -> Forgotten:
        """Drop tenant ``name``'s applied state (its history stays) under its lock."""
        try:
            with self.locked([name]):
                done = self.store.forget(name, drop_queued=drop_queued)
        except MailQueued as exc:
            raise UserError(
                f"{name}: {exc}; run apply to deliver them, or pass --drop-queued "
                "(they would never be sent); nothing was done"
            ) from None
        if done is None:
            raise UserError(f"{name} has no applied state any more; nothing to forget")
        return done

    @staticmethod
    def new_outbox_key() -> tuple[str, str]:
        """A fresh ``RECONCILER_OUTBOX_KEY`` and its fingerprint (``state new-key``)."""
        return new_outbox_key()

    def migrate(self, target: str, force: bool, drop_queued: bool) -> tuple[Migrated, str]:
        """Copy the state to ``target`` (``--to``); what was copied, and where (described)."""
        from reconciler.state.migrate import migrate

        destination = open_store(target, option="--to")
        try:
            done = migrate(
                self.store,
                destination,
                only=self.options.tenants,
                force=force,
                drop_queued=drop_queued,
                lock_timeout=self.options.lock_timeout,
            )
            return done, destination.description
        finally:
            destination.close()

    @contextlib.contextmanager
    def locked(self, names: Collection[str]) -> Iterator[None]:
        """Hold the state lock of every tenant in ``names`` (in name order, so two runs over
        overlapping tenants cannot each wait for the other); "locked by …" is a UserError, and
        so is a tenant migrated to another state: every writer (apply, import, forget) locks
        first, so none writes or sends from a state left behind."""
        with contextlib.ExitStack() as stack:
            for name in sorted(names):
                try:
                    stack.enter_context(self.store.lock(name, self.options.lock_timeout))
                except StateLocked as exc:
                    raise UserError(f"{name}: {exc}") from None
                if (to := self.store.migrated_to(name)) is not None:
                    raise UserError(
                        f"{name} was migrated from {self.store.description} to {to}: point "
                        "--state at the new state (this one is kept as a record only); "
                        "nothing was done"
                    )
            yield

    def history_counts(self, names: Collection[str]) -> dict[str, int]:
        """How many history rows each tenant has: a saved plan of a tenant without state
        records it, so one that had a state since (applied, then forgotten) is stale."""
        return {name: len(self.reader.history(name)) for name in names}

    def tenant_names(self, loaded: LoadedConfig) -> list[str]:
        """Tenants this run covers: the configured ones plus those only the state knows (found
        without creating a state)."""
        names = set(loaded.tenants)
        in_state = self.known_tenants()
        if self.options.tenants:
            unknown = [n for n in loaded.missing if n not in in_state]
            if unknown:
                raise UserError(
                    f"no tenant folder {', '.join(unknown)} under "
                    f"{self.options.config} and no applied state for it"
                )
            names |= set(self.options.tenants) & in_state
        else:
            names |= in_state
        return sorted(names)

    def plan(self, loaded: LoadedConfig, names: list[str]) -> Plan:
        """The plan for ``names`` against the current state; ConfigError for refused requests."""
        tenants: list[TenantPlan] = []
        findings = []
        locales = self.locales()
        for name in names:
            config = loaded.tenants.get(name)
            if config is None:
                applied = self.reader.load(name, users=False)
                assert applied is not None
                tenants.append(plan_missing(name, applied))
                continue
            config, applied, scope = self._against(loaded, config)
            tenant_plan, found = plan_tenant(config, applied, locales, scope)
            tenants.append(tenant_plan)
            findings.extend(found)
        if findings:
            raise ConfigError(locate_findings(loaded.root, findings))
        return Plan(tenants)

    def _against(
        self, loaded: LoadedConfig, config: TenantConfig
    ) -> tuple[TenantConfig, Applied | None, Scope | None]:
        """``config``, the state to plan it against and the users to compare: the changed
        files' users alone when the loader reused the others (so the state exists), every user
        when it did not, or when another apply moved the state since the files were matched
        (then the tenant is read in full)."""
        reused = loaded.reused.get(config.name)
        if reused is not None:
            against = applied_and_scope(self.store, config, reused)
            if against is not None:
                return config, *against
            config = load_config(loaded.root, [config.name]).tenants[config.name]
        return config, self.reader.load(config.name), None
