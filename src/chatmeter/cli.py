"""The operator's command line: ``chatmeter --help``.

Every command that prints data also takes ``--json``. Errors print a
readable message and exit with status 1 (2 for wrong usage).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.errors import ChatmeterError

app = typer.Typer(
    help="Chatmeter: AI assistants paid for with prepaid tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts_app = typer.Typer(help="Create and list accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="An account's tokens.", no_args_is_help=True)
billing_app = typer.Typer(help="Subscriptions and the monthly renewal.", no_args_is_help=True)
invoices_app = typer.Typer(help="Invoices.", no_args_is_help=True)
ledger_app = typer.Typer(help="The token ledger.", no_args_is_help=True)
jobs_app = typer.Typer(help="The named periodic jobs.", no_args_is_help=True)
outbox_app = typer.Typer(help="Queued and sent emails.", no_args_is_help=True)
assistants_app = typer.Typer(help="An account's assistants.", no_args_is_help=True)
for sub, name in (
    (accounts_app, "accounts"),
    (tokens_app, "tokens"),
    (billing_app, "billing"),
    (invoices_app, "invoices"),
    (ledger_app, "ledger"),
    (jobs_app, "jobs"),
    (outbox_app, "outbox"),
    (assistants_app, "assistants"),
):
    app.add_typer(sub, name=name)

AccountOpt = Annotated[int, typer.Option("--account", help="The account's id.", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def context() -> Iterator[Context]:
    """Settings from the environment; any Chatmeter error becomes a message and exit 1."""
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError: show what is wrong
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(1) from exc
    ctx = Context.from_settings(settings)
    try:
        yield ctx
    except ChatmeterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        ctx.close()


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(text(data))


# --- running -------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")
    ] = True,
) -> None:
    """Serve the web app (and, unless CHATMETER_WORKER=none, the in-process worker)."""
    import uvicorn

    from chatmeter.web.app import create_app

    with context() as ctx:
        if migrate_first:
            from chatmeter.migrate import upgrade

            upgrade(ctx.settings.database_url)
        if ctx.settings.create_demo:
            from chatmeter.demo import ensure_demo

            ensure_demo(ctx, echo=typer.echo)
        application = create_app(ctx, run_worker=ctx.settings.worker == "inprocess")
        uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run due jobs once and exit.")] = False,
) -> None:
    """Run the background worker: renewals, hold expiry, email delivery."""
    from chatmeter.jobs.worker import Worker

    with context() as ctx:
        runner = Worker(ctx)
        if once:
            typer.echo(json.dumps(runner.tick(), default=str))
            return
        try:
            runner.run_forever()
        except KeyboardInterrupt:
            runner.stop()


@app.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the latest."""
    from chatmeter.migrate import upgrade

    with context() as ctx:
        upgrade(ctx.settings.database_url)
        typer.echo("database is up to date")


# --- accounts ---------------------------------------------------------------------


@accounts_app.command("create")
def accounts_create(
    email: Annotated[str, typer.Option(help="Contact email (also the first user).")],
    timezone: Annotated[
        str, typer.Option(help="IANA time zone for the renewal on the 1st.")
    ] = "UTC",
    name: Annotated[str, typer.Option(help="Business name (default: the email's domain).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an account; prints its id and an API key (shown only once)."""
    from chatmeter.accounts import service as accounts
    from chatmeter.billing import service as billing

    with context() as ctx, ctx.db.uow() as uow:
        now = ctx.clock.now()
        account = accounts.create_account(
            uow.session, email=email, timezone=timezone, name=name, now=now
        )
        billing.open_subscription(
            uow.session, account_id=account.id, settings=ctx.settings, now=now
        )
        key = accounts.issue_api_key(uow.session, account_id=account.id, now=now)
        uow.commit()
        data = {
            "account_id": account.id,
            "email": account.contact_email,
            "timezone": account.timezone,
            "api_key": key,
        }
    emit(data, as_json, lambda d: f"account {d['account_id']} created\napi key: {d['api_key']}")


@accounts_app.command("list")
def accounts_list(as_json: JsonOpt = False) -> None:
    """Every account with its balance."""
    from sqlalchemy import select

    from chatmeter.accounts.models import Account
    from chatmeter.ledger.models import Balance

    with context() as ctx, ctx.db.read() as session:
        rows = session.execute(
            select(Account, Balance)
            .join(Balance, Balance.account_id == Account.id)
            .order_by(Account.id)
        ).all()
        data = [
            {
                "account_id": a.id,
                "name": a.name,
                "email": a.contact_email,
                "timezone": a.timezone,
                "balance": b.balance,
            }
            for a, b in rows
        ]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['account_id']:>6}  {r['email']:<32} {r['timezone']:<20} "
                f"{r['balance']:>12,} tokens"
                for r in rows
            )
            or "no accounts"
        ),
    )


# --- tokens --------------------------------------------------------------------------


@tokens_app.command("balance")
def tokens_balance(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """Balance, reserved, this month's limit and the renewal date."""
    from chatmeter.billing.summary import balance_summary

    with context() as ctx, ctx.db.read() as session:
        data = balance_summary(session, account_id=account, now=ctx.clock.now()).as_dict()
    emit(
        data,
        as_json,
        lambda d: (
            f"balance   {d['balance']:>12,} tokens\n"
            f"available {d['available']:>12,}\n"
            f"reserved  {d['reserved']:>12,}\n"
            f"limit     {d['limit']:>12,} ({d['period']})\n"
            f"used      {d['used_this_month']:>12,} this month\n"
            f"renews    {d['renews_at']:%Y-%m-%d %H:%M} UTC\n"
            f"status    {'active' if d['active'] else 'inactive (out of tokens)'}"
        ),
    )


@tokens_app.command("buy")
def tokens_buy(
    account: AccountOpt,
    packages: Annotated[int, typer.Option(help="Packages to buy (1-1000).")],
    key: Annotated[
        str | None, typer.Option(help="Idempotency key; a retry buys nothing more.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Buy packages now: the tokens arrive on payment and renew monthly."""
    from chatmeter.billing import service as billing
    from chatmeter.billing.summary import invoice_dict

    with context() as ctx:
        invoice = billing.purchase(ctx, account_id=account, packages=packages, key=key)
        data = invoice_dict(invoice)
    emit(
        data,
        as_json,
        lambda d: (
            f"invoice {d['number']}: {d['packages']} packages = {d['tokens']:,} tokens, "
            f"{d['amount']} {d['currency']} - {d['status']}"
        ),
    )


@tokens_app.command("adjust")
def tokens_adjust(
    account: AccountOpt,
    tokens: Annotated[int, typer.Option(help="Tokens to add (positive) or remove (negative).")],
    reason: Annotated[str, typer.Option(help="Why; kept in the ledger.")] = "manual adjustment",
    key: Annotated[str | None, typer.Option(help="Idempotency key for a grant.")] = None,
    expires: Annotated[
        bool, typer.Option("--expires/--no-expire", help="Added tokens expire at the next renewal.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Grant or remove tokens by hand (an operator's correction)."""
    import uuid

    from chatmeter.accounts import service as accounts
    from chatmeter.billing import periods
    from chatmeter.billing.summary import balance_summary
    from chatmeter.errors import InvalidInput
    from chatmeter.ledger import service as ledger
    from chatmeter.ledger.models import GrantSource

    with context() as ctx:
        if tokens == 0:
            raise typer.BadParameter("tokens must not be 0", param_hint="--tokens")
        with ctx.db.uow() as uow:
            now = ctx.clock.now()
            zone = accounts.get_account(uow.session, account_id=account).timezone
            period = periods.period_of(now, zone)
            if tokens > 0:
                ledger.grant(
                    uow.session,
                    account_id=account,
                    amount=tokens,
                    source=GrantSource.ADJUSTMENT,
                    key=key or f"adjust:{uuid.uuid4()}",
                    period=period,
                    now=now,
                    memo=reason,
                    expires_at=periods.ends_at(period, zone) if expires else None,
                )
            elif key is not None:
                raise InvalidInput("--key applies to grants only")
            else:
                ledger.debit(
                    uow.session,
                    account_id=account,
                    amount=-tokens,
                    period=period,
                    now=now,
                    memo=reason,
                )
            uow.commit()
        with ctx.db.read() as session:
            data = balance_summary(session, account_id=account, now=ctx.clock.now()).as_dict()
    emit(data, as_json, lambda d: f"balance is now {d['balance']:,} tokens")


# --- billing ---------------------------------------------------------------------------


@billing_app.command("renew")
def billing_renew(
    account: Annotated[
        int | None, typer.Option("--account", min=1, help="One account (default: every due one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the monthly renewal now (it renews only accounts whose month began)."""
    from chatmeter.billing import service as billing
    from chatmeter.billing.summary import invoice_dict

    with context() as ctx:
        if account is None:
            data: dict[str, Any] = billing.run_renewals(ctx)
        else:
            invoice = billing.renew(ctx, account_id=account)
            data = {"invoice": invoice_dict(invoice) if invoice else None}
    emit(data, as_json, lambda d: json.dumps(d, default=str))


@billing_app.command("cancel")
def billing_cancel(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """Cancel the subscription: no more renewals; tokens stay usable until the 1st."""
    from chatmeter.billing import service as billing
    from chatmeter.billing.summary import subscription_summary

    with context() as ctx:
        with ctx.db.uow() as uow:
            billing.cancel(uow.session, account_id=account, now=ctx.clock.now())
            uow.commit()
        with ctx.db.read() as session:
            data = subscription_summary(
                session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
            )
    emit(
        data,
        as_json,
        lambda d: (
            f"subscription cancelled; tokens stay usable until {d['renews_at']:%Y-%m-%d %H:%M} UTC"
        ),
    )


# --- invoices ------------------------------------------------------------------------------


@invoices_app.command("list")
def invoices_list(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """An account's invoices, newest first."""
    from chatmeter.billing.summary import invoice_dict, list_invoices

    with context() as ctx, ctx.db.read() as session:
        data = [invoice_dict(i) for i in list_invoices(session, account_id=account)]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['id']:>6}  {r['number']}  {r['kind']:<8} {r['period']}  "
                f"{r['packages']:>4} pkg  "
                f"{r['amount']:>10} {r['currency']}  {r['status']}"
                for r in rows
            )
            or "no invoices"
        ),
    )


@invoices_app.command("mark-paid")
def invoices_mark_paid(
    account: AccountOpt,
    invoice: Annotated[int, typer.Option("--invoice", min=1, help="The invoice's id.")],
    reference: Annotated[str | None, typer.Option(help="Payment reference to record.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that a pending invoice was paid; its tokens are granted at once."""
    from chatmeter.billing import service as billing
    from chatmeter.billing.summary import invoice_dict

    with context() as ctx, ctx.db.uow() as uow:
        paid = billing.confirm_payment(
            uow.session,
            account_id=account,
            invoice_id=invoice,
            now=ctx.clock.now(),
            reference=reference or "manual",
        )
        uow.commit()
        data = invoice_dict(paid)
    emit(data, as_json, lambda d: f"invoice {d['number']} is {d['status']}")


# --- ledger ----------------------------------------------------------------------------------


@ledger_app.command("verify")
def ledger_verify(
    account: Annotated[
        int | None, typer.Option("--account", min=1, help="One account (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute balances from the entries; exit 1 if anything differs."""
    from chatmeter.ledger.verify import verify

    with context() as ctx, ctx.db.read() as session:
        reports = verify(session, account_id=account)
    data = [
        {
            "account_id": r.account_id,
            "ok": r.ok,
            "available": r.available,
            "reserved": r.reserved,
            "problems": r.problems,
        }
        for r in reports
    ]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"account {r['account_id']}: " + ("ok" if r["ok"] else "; ".join(r["problems"]))
                for r in rows
            )
            or "no accounts"
        ),
    )
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


# --- jobs ---------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(as_json: JsonOpt = False) -> None:
    """The named jobs and how often the worker runs them."""
    from chatmeter.jobs.registry import JOBS

    data = [
        {"name": j.name, "every_seconds": j.every.total_seconds(), "help": j.help}
        for j in JOBS.values()
    ]
    emit(
        data,
        as_json,
        lambda rows: "\n".join(
            f"{r['name']:<12} every {r['every_seconds']:>5.0f}s  {r['help']}" for r in rows
        ),
    )


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="renewal, hold-expiry, outbox or training.")],
    as_json: JsonOpt = False,
) -> None:
    """Run one named job now, whatever its schedule."""
    from chatmeter.jobs.registry import JOBS

    if name not in JOBS:
        raise typer.BadParameter(f"unknown job {name!r}; choose from {', '.join(JOBS)}")
    with context() as ctx:
        data = JOBS[name].run(ctx)
    emit(data, as_json, lambda d: json.dumps(d, default=str))


# --- assistants and training -----------------------------------------------------------------


def _assistant_fields(**values: Any) -> Any:
    from pydantic import ValidationError

    from chatmeter.assistants.schemas import AssistantFields
    from chatmeter.errors import InvalidInput

    try:
        return AssistantFields(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(problems) from exc


def _assistant_text(d: dict[str, Any]) -> str:
    return (
        f"assistant {d['id']}: {d['name']}  (public key {d['public_key']})\n"
        f"  model {d['provider']} {d['model'] or '(default)'}, temperature {d['temperature']}, "
        f"response cap {d['max_tokens']}, {d['passages']} passages within "
        f"{d['context_budget']} tokens\n"
        f"  domains: {', '.join(d['allowed_domains']) or '(none yet)'}"
    )


AssistantOpt = Annotated[int, typer.Option("--assistant", min=1, help="The assistant's id.")]
NameOpt = Annotated[str | None, typer.Option(help="Name shown to visitors.")]
InstructionsOpt = Annotated[str | None, typer.Option(help="Instructions sent with every question.")]
ProviderOpt = Annotated[str | None, typer.Option(help="local or openai.")]
ModelOpt = Annotated[str | None, typer.Option(help="Model name (openai provider).")]
TemperatureOpt = Annotated[float | None, typer.Option(help="0 to 2.")]
MaxTokensOpt = Annotated[int | None, typer.Option(help="Response cap in tokens.")]
PassagesOpt = Annotated[int | None, typer.Option(help="Passages retrieved per answer.")]
BudgetOpt = Annotated[int | None, typer.Option(help="Tokens of training context per prompt.")]
WelcomeOpt = Annotated[str | None, typer.Option(help="The widget's first message.")]
DomainOpt = Annotated[
    list[str] | None, typer.Option("--domain", help="Allowed website domain (repeat).")
]
WidgetTitleOpt = Annotated[str | None, typer.Option(help="Title of the chat window.")]
WidgetColorOpt = Annotated[str | None, typer.Option(help="Widget colour, #rrggbb.")]
WidgetPositionOpt = Annotated[str | None, typer.Option(help="left or right.")]


@assistants_app.command("create")
def assistants_create(
    account: AccountOpt,
    name: Annotated[str, typer.Option(help="Name shown to visitors.")],
    instructions: InstructionsOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = None,
    passages: PassagesOpt = None,
    context_budget: BudgetOpt = None,
    welcome_message: WelcomeOpt = None,
    domain: DomainOpt = None,
    widget_title: WidgetTitleOpt = None,
    widget_color: WidgetColorOpt = None,
    widget_position: WidgetPositionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an assistant; prints its id and public key for the embed snippet."""
    from chatmeter.assistants import service as assistants

    with context() as ctx:
        fields = _assistant_fields(
            name=name,
            instructions=instructions,
            provider=provider,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            passages=passages,
            context_budget=context_budget,
            welcome_message=welcome_message,
            allowed_domains=domain,
            widget_title=widget_title,
            widget_color=widget_color,
            widget_position=widget_position,
        )
        with ctx.db.uow() as uow:
            created = assistants.create_assistant(
                uow.session, account_id=account, fields=fields, now=ctx.clock.now()
            )
            uow.commit()
            data = assistants.assistant_dict(created)
    emit(data, as_json, _assistant_text)


@assistants_app.command("list")
def assistants_list(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """An account's assistants."""
    from chatmeter.assistants import service as assistants

    with context() as ctx, ctx.db.read() as session:
        data = [
            assistants.assistant_dict(a)
            for a in assistants.list_assistants(session, account_id=account)
        ]
    emit(data, as_json, lambda rows: "\n".join(map(_assistant_text, rows)) or "no assistants")


@assistants_app.command("update")
def assistants_update(
    account: AccountOpt,
    assistant: AssistantOpt,
    name: NameOpt = None,
    instructions: InstructionsOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = None,
    passages: PassagesOpt = None,
    context_budget: BudgetOpt = None,
    welcome_message: WelcomeOpt = None,
    domain: DomainOpt = None,
    widget_title: WidgetTitleOpt = None,
    widget_color: WidgetColorOpt = None,
    widget_position: WidgetPositionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an assistant's settings (only the options given)."""
    from chatmeter.assistants import service as assistants

    with context() as ctx:
        fields = _assistant_fields(
            name=name,
            instructions=instructions,
            provider=provider,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            passages=passages,
            context_budget=context_budget,
            welcome_message=welcome_message,
            allowed_domains=domain,
            widget_title=widget_title,
            widget_color=widget_color,
            widget_position=widget_position,
        )
        with ctx.db.uow() as uow:
            changed = assistants.update_assistant(
                uow.session,
                account_id=account,
                assistant_id=assistant,
                fields=fields,
                now=ctx.clock.now(),
            )
            uow.commit()
            data = assistants.assistant_dict(changed)
    emit(data, as_json, _assistant_text)


@assistants_app.command("delete")
def assistants_delete(account: AccountOpt, assistant: AssistantOpt) -> None:
    """Delete an assistant and its training data; its widget disappears."""
    from chatmeter.assistants import service as assistants

    with context() as ctx, ctx.db.uow() as uow:
        assistants.delete_assistant(
            uow.session, account_id=account, assistant_id=assistant, now=ctx.clock.now()
        )
        uow.commit()
    typer.echo(f"assistant {assistant} deleted")


@assistants_app.command("rotate-key")
def assistants_rotate_key(
    account: AccountOpt, assistant: AssistantOpt, as_json: JsonOpt = False
) -> None:
    """Issue a new public key; pages with the old embed snippet stop showing the widget."""
    from chatmeter.assistants import service as assistants

    with context() as ctx, ctx.db.uow() as uow:
        rotated = assistants.rotate_public_key(
            uow.session, account_id=account, assistant_id=assistant, now=ctx.clock.now()
        )
        uow.commit()
        data = assistants.assistant_dict(rotated)
    emit(data, as_json, _assistant_text)


@app.command()
def train(
    assistant: Annotated[int, typer.Argument(help="The assistant's id.", min=1)],
    files: Annotated[
        list[Path], typer.Argument(help="Files to train on (PDF, DOCX, TXT, Markdown, HTML, CSV).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Train an assistant on files now, with a progress bar per file."""
    from chatmeter.assistants.models import Assistant
    from chatmeter.errors import ChatmeterError, NotFound
    from chatmeter.training import service as training

    with context() as ctx:
        results = []
        for path in files:
            if not path.is_file():
                raise typer.BadParameter(
                    f"cannot read {path.name}: there is no such file", param_hint="FILES"
                )
            with ctx.db.uow() as uow:
                target = uow.session.get(Assistant, assistant)
                if target is None or target.deleted_at is not None:
                    raise NotFound("no such assistant", assistant_id=assistant)
                try:
                    upload = training.upload(
                        uow.session,
                        assistant=target,
                        filename=path.name,
                        data=path.read_bytes(),
                        max_bytes=ctx.settings.max_upload_bytes,
                        now=ctx.clock.now(),
                    )
                except ChatmeterError as exc:
                    results.append(
                        {
                            "filename": path.name,
                            "status": "failed",
                            "error": {"code": exc.code, "message": exc.message},
                        }
                    )
                    typer.echo(f"{path.name}: {exc.message}", err=True)
                    continue
                uow.commit()
                file_id, duplicate = upload.file.id, upload.duplicate
            if not duplicate:
                with typer.progressbar(length=100, label=path.name, file=sys.stderr) as bar:
                    shown = [0]

                    def advance(percent: int, bar: Any = bar, shown: list[int] = shown) -> None:
                        bar.update(percent - shown[0])
                        shown[0] = percent

                    # A worker may have taken it first; then it is processed there.
                    if training.claim_file(ctx, file_id=file_id):
                        training.process_file(ctx, file_id=file_id, on_progress=advance)
            with ctx.db.read() as session:
                target = session.get(Assistant, assistant)
                data = training.file_dict(
                    training.get_file(session, assistant=target, file_id=file_id)
                )
            data["duplicate"] = duplicate
            results.append(data)
            if not as_json:
                typer.echo(_file_text(data))
    if as_json:
        typer.echo(json.dumps(results, indent=2, default=str))
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


def _file_text(d: dict[str, Any]) -> str:
    if d["status"] == "failed":
        return f"{d['filename']}: failed - {d['error']['message']}"
    note = " (already trained: same content)" if d.get("duplicate") else ""
    return (
        f"{d['filename']}: {d['status']}{note}, {d['pages']} pages, {d['chunks']} passages, "
        f"{d['tokens']:,} tokens"
    )


# --- outbox -------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(help="pending, sent or dead.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Emails in the outbox, newest first."""
    from sqlalchemy import select

    from chatmeter.notifications.models import OutboxMessage, OutboxStatus

    if status is not None and status not in set(OutboxStatus):
        raise typer.BadParameter("choose pending, sent or dead", param_hint="--status")
    with context() as ctx, ctx.db.read() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status:
            query = query.where(OutboxMessage.status == status)
        data = [
            {
                "id": m.id,
                "kind": m.kind,
                "to": m.to_address,
                "status": m.status,
                "attempts": m.attempts,
                "last_error": m.last_error,
                "created_at": m.created_at,
                "sent_at": m.sent_at,
            }
            for m in session.scalars(query)
        ]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['id']:>6}  {r['status']:<8} {r['kind']:<24} {r['to']:<32} "
                f"attempts {r['attempts']}"
                + (f"  ({r['last_error']})" if r["last_error"] and r["status"] != "sent" else "")
                for r in rows
            )
            or "no emails"
        ),
    )


@outbox_app.command("requeue-dead")
def outbox_requeue_dead(as_json: JsonOpt = False) -> None:
    """Give emails that ran out of retries (e.g. after a long SMTP outage) another round."""
    from chatmeter.notifications.delivery import requeue_dead

    with context() as ctx, ctx.db.uow() as uow:
        count = requeue_dead(uow.session, now=ctx.clock.now())
        uow.commit()
    emit({"requeued": count}, as_json, lambda d: f"{d['requeued']} emails queued again")


def main() -> None:
    app(prog_name="chatmeter")


if __name__ == "__main__":
    sys.exit(main())
