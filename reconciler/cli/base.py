"""What every command shares: the ``reconciler`` group, the common options of SPEC §5 and
their errors, exit codes, and apply's terminal. Commands live in the modules beside it, one
per group of commands; none holds logic of its own."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from reconciler import __version__
from reconciler.apply import (
    DEFAULT_RETRY_BACKOFF,
)
from reconciler.errors import ConfigError, UserError
from reconciler.manager import Manager, Options
from reconciler.model import tenant_name_problem
from reconciler.outputs import chunks
from reconciler.outputs.escape import visible
from reconciler.plan import Plan

EXIT_ERROR, EXIT_CHANGES, EXIT_LIMITED = 1, 2, 3
"""``apply`` exits 3 when it only stopped at a sending limit or throttling: nothing failed, the
rest is queued and the next apply sends it first."""


class _Rate(click.ParamType):
    """``N/min`` (or plain ``N``): messages per minute."""

    name = "rate"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower().removesuffix("/min").strip()
        try:
            rate = float(text)
        except ValueError:
            rate = 0.0
        if not 0 < rate < float("inf"):
            self.fail(f"{value!r} is not a rate such as 30/min", param, ctx)
        return rate


RATE = _Rate()


_COMMON_OPTIONS = {
    "config": click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path),
        default="tenants",
        envvar="RECONCILER_CONFIG",
        show_default=True,
        help="Folder holding one folder per tenant.",
    ),
    "state": click.option(
        "--state",
        default=".reconciler/state.db",
        envvar="RECONCILER_STATE",
        show_default=True,
        help="State: an SQLite path or a postgresql:// URL (docs/STATE.md).",
    ),
    "mail": click.option(
        "--mail",
        default="maildir:.reconciler/mail",
        envvar="RECONCILER_MAIL_URL",
        show_default=True,
        help="maildir:PATH, graph://SENDER (Exchange Online), smtp://, "
        "smtp+starttls:// or smtps:// URL (?auth=xoauth2 for OAuth).",
    ),
    "default_from": click.option(
        "--default-from",
        envvar="RECONCILER_DEFAULT_FROM",
        help="Default sender ('Name <address>' or address); required for SMTP.",
    ),
    "templates": click.option(
        "--templates",
        type=click.Path(path_type=Path),
        envvar="RECONCILER_TEMPLATES",
        help="Email templates folder (default ./templates, else the packaged copy).",
    ),
    "tenants": click.option(
        "--tenant", "tenants", multiple=True, help="Only this tenant (repeatable; default all)."
    ),
}
_DEFAULTS = Options()


def common_options(*offered: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of SPEC §5 that a command uses, accepted after its name. An option the
    command would ignore is not offered, so `init foo --tenant bar` or `fmt --mail …` is refused
    instead of silently doing something else than the administrator meant; their environment
    variables stay harmless, as pipelines set them for every step."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {
                name: kwargs.pop(name) if name in offered else getattr(_DEFAULTS, name)
                for name in _COMMON_OPTIONS
            }
            for name in values["tenants"]:
                if why := tenant_name_problem(name):
                    click.echo(
                        f"error: --tenant {name!r} {why}; a tenant is named by its folder",
                        err=True,
                    )
                    sys.exit(EXIT_ERROR)
            if values["templates"] is None and Path("templates").is_dir():
                values["templates"] = Path("templates")
            options = Options(**values, lock_timeout=kwargs.pop("lock_timeout", 0.0))
            manager = Manager(options)
            try:
                return command(manager, **kwargs)
            except ConfigError as exc:
                for problem in exc.problems:
                    click.echo(visible(str(problem)), err=True)
                click.echo(
                    f"{len(exc.problems)} problem(s) found; nothing was planned, applied or sent.",
                    err=True,
                )
                sys.exit(EXIT_ERROR)
            except UserError as exc:
                click.echo(f"error: {visible(str(exc))}", err=True)
                sys.exit(EXIT_ERROR)
            finally:
                manager.close()

        for name in reversed(list(_COMMON_OPTIONS)):
            if name in offered:
                wrapper = _COMMON_OPTIONS[name](wrapper)
        return wrapper

    unknown = set(offered) - set(_COMMON_OPTIONS)
    assert not unknown, f"no common option {unknown}"
    return decorate


def export_option(*names: str, help: str, required: bool = False) -> Callable[..., Any]:
    """An exported file of the live tenant (``init``, ``drift``): it must exist."""
    return click.option(
        *names,
        required=required,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help=help,
    )


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
)
"""The report formats of ``plan`` and ``drift``."""


def lock_timeout_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--lock-timeout",
        type=float,
        default=0.0,
        show_default=True,
        help="Seconds to wait for another apply's lock.",
    )(command)


def retry_backoff_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--retry-backoff",
        type=click.FloatRange(min=0),
        default=DEFAULT_RETRY_BACKOFF,
        envvar="RECONCILER_RETRY_BACKOFF",
        show_default=True,
        metavar="SECONDS",
        help="Pause before retrying a temporary delivery failure (SMTP 4xx, server "
        "unreachable), doubled at each retry (env RECONCILER_RETRY_BACKOFF).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """Reconcile Microsoft 365 Audio Conferencing users with their YAML configuration."""
    if why := platform_problem():
        click.echo(f"error: {why}", err=True)
        sys.exit(EXIT_ERROR)
    _silence_sdk_logs()


def platform_problem() -> str | None:
    """Why the reconciler cannot run here, or None: its state locks are POSIX file locks, and a
    command that half-works on Windows would fail mid-way with a traceback."""
    if sys.platform == "win32":
        return (
            "the reconciler runs on Linux or macOS (on Windows: in WSL or a Linux container); "
            "its state locks are POSIX file locks. See the README's section Windows"
        )
    return None


SDK_LOGGERS = ("azure", "msal")
"""azure-identity, azure-core and MSAL: their warnings quote the identity platform's reply,
which may echo a secret, and their lower levels request headers and bodies."""


def _silence_sdk_logs() -> None:
    """Keep the SDKs' log records off the terminal: with no handler, Python's last resort
    would print their warnings to stderr. Our own error line says what failed, scrubbed."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [logging.NullHandler()]
        logger.propagate = False


def config_again(config: Path) -> list[str]:
    """``--config DIR`` when this command was given one: to repeat in a command we suggest."""
    given = click.get_current_context().get_parameter_source("config")
    return ["--config", str(config)] if given is ParameterSource.COMMANDLINE else []


class ClickUI:
    """apply's terminal: the plan, the prompt, and a progress bar only on a TTY (none of them
    but the prompt when ``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def show_plan(self, plan: Plan) -> None:
        if self.quiet:
            return
        for chunk in chunks(plan, "text", color=color()):
            click.echo(chunk, nl=False, color=color())

    def confirm(self, plan: Plan) -> bool:
        if not sys.stdin.isatty():
            raise UserError(
                "no terminal to confirm on: review with `plan` and pass --auto-approve, "
                "or apply a saved plan file; nothing was done"
            )
        answer = click.prompt(
            "Apply this plan and send these emails? Only 'yes' is accepted",
            default="",
            show_default=False,
        )
        return answer.strip() == "yes"

    def echo(self, message: str, err: bool = False) -> None:
        click.echo(message, err=err)

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[object], None]]:
        if self.quiet or total < 20 or not sys.stderr.isatty():
            yield lambda _message: None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield lambda _message: bar.update(1)


def color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ
