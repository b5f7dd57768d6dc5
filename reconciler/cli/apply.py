"""apply, and test-email: what sends."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler.apply import (
    DEFAULT_DELIVERY_TIMEOUT,
    DeliveryLimits,
    run_apply,
)
from reconciler.cli.base import (
    EXIT_ERROR,
    EXIT_LIMITED,
    RATE,
    ClickUI,
    common_options,
    lock_timeout_option,
    main,
    retry_backoff_option,
)
from reconciler.manager import Manager
from reconciler.outputs.escape import visible


@main.command()
@common_options("config", "state", "mail", "default_from", "templates", "tenants")
@lock_timeout_option
@retry_backoff_option
@click.argument("planfile", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option(
    "--allow-mass-disable",
    is_flag=True,
    help="Allow disabling more than 10% of a tenant's enabled users.",
)
@click.option(
    "--allow-mass-email",
    is_flag=True,
    envvar="RECONCILER_ALLOW_MASS_EMAIL",
    help="Allow emailing more than 10% of the users of a tenant that has applied state "
    "(otherwise refused: one edit must not email a whole tenant by surprise).",
)
@click.option(
    "--allow-new-state",
    is_flag=True,
    envvar="RECONCILER_ALLOW_NEW_STATE",
    help="Allow emailing more than 10 users of a tenant that has no applied state "
    "(otherwise refused: a wrong --state would re-onboard everyone; adopt "
    "existing users with `import`).",
)
@click.option(
    "--delivery-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=DEFAULT_DELIVERY_TIMEOUT,
    show_default=True,
    envvar="RECONCILER_DELIVERY_TIMEOUT",
    help="Stop delivering after this long; the rest stays queued for the next apply.",
)
@click.option(
    "--max-rate",
    type=RATE,
    metavar="N/min",
    envvar="RECONCILER_MAX_RATE",
    help="Send at most N messages a minute (Exchange Online SMTP submission: 30).",
)
@click.option(
    "--max-messages",
    type=click.IntRange(min=0),
    metavar="N",
    envvar="RECONCILER_MAX_MESSAGES",
    help="Send at most N messages in this apply; the rest stays queued for the next.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No plan, progress or summary: only errors and the paths of suppressed "
    "messages (the operator must act on those).",
)
def apply(
    manager: Manager,
    planfile: Path | None,
    auto_approve: bool,
    allow_mass_disable: bool,
    allow_mass_email: bool,
    allow_new_state: bool,
    delivery_timeout: float,
    max_rate: float | None,
    max_messages: int | None,
    quiet: bool,
    retry_backoff: float,
) -> None:
    """Send exactly the planned emails and record the new state.

    Exit codes: 0 everything delivered; 1 an error, a refusal, or mail still queued or failed;
    3 stopped only at a sending limit or throttling (nothing failed; the rest is queued and the
    next apply sends it first).
    """
    outcome = run_apply(
        manager,
        ClickUI(quiet=quiet),
        saved=planfile,
        auto_approve=auto_approve,
        allow_mass_disable=allow_mass_disable,
        allow_mass_email=allow_mass_email,
        allow_new_state=allow_new_state,
        limits=DeliveryLimits(retry_backoff, delivery_timeout, max_rate, max_messages),
    )
    for path in outcome.suppressed:
        click.echo(visible(f"suppressed: kept for the operator (inform the user yourself): {path}"))
    applied = ", ".join(f"{name} (serial {serial})" for name, serial in outcome.applied)
    if not quiet:
        click.echo(
            f"Applied: {applied or 'nothing to change'}. {outcome.delivered} email(s) "
            f"delivered, {len(outcome.suppressed)} suppressed, {outcome.queued_count} "
            f"queued, {len(outcome.failed)} failed."
        )
    for mid, reason in sorted(outcome.failed.items()):
        click.echo(
            visible(
                f"failed: {outcome.about.get(mid, '')} {mid}: {reason} (refused for "
                "good: not retried)"
            ),
            err=True,
        )
    for mid in outcome.queued:
        why = outcome.why_queued.get(mid, "not delivered")
        if why not in outcome.limits:
            click.echo(visible(f"queued: {outcome.about.get(mid, '')} {mid}: {why}"), err=True)
    for why, count in sorted(outcome.untried.items()):
        if why not in outcome.limits:
            click.echo(visible(f"queued: {count} more email(s) not attempted: {why}"), err=True)
    for limit, held in sorted(outcome.held_back().items()):
        click.echo(visible(f"held back: {held} email(s) by a sending limit: {limit}"), err=True)
    if outcome.queued_count:
        click.echo(
            f"{outcome.queued_count} email(s) still queued: the next apply delivers them first.",
            err=True,
        )
    if outcome.only_limited:
        sys.exit(EXIT_LIMITED)
    if not outcome.ok:
        sys.exit(EXIT_ERROR)


@main.command("test-email")
@common_options("config", "mail", "default_from", "templates", "tenants")
@retry_backoff_option
@click.option("--to", "to", required=True, help="Where to send the test message.")
def test_email(manager: Manager, to: str, retry_backoff: float) -> None:
    """Send one test message with the tenant's From settings and sample details (no PIN)."""
    from reconciler.sample import send_sample

    sent = send_sample(manager, to, retry_backoff)
    click.echo(
        visible(
            f"Sample sent to {to} from {sent.sender.display_name} <{sent.sender.address}> via "
            f"{sent.via}."
        )
    )
