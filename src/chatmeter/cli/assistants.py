"""Assistants and their training files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from chatmeter.cli.base import (
    AccountOpt,
    JsonOpt,
    app,
    assistants_app,
    context,
    emit,
)
from chatmeter.db import MAX_ID

# --- assistants and training -----------------------------------------------------------------


def _assistant_fields(**values: Any) -> Any:
    from pydantic import ValidationError

    from chatmeter.assistants.schemas import AssistantFields, field_messages
    from chatmeter.errors import InvalidInput
    from chatmeter.validation import summary

    try:
        return AssistantFields(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput(summary(field_messages(exc))) from exc


def _assistant_text(d: dict[str, Any]) -> str:
    return (
        f"assistant {d['id']}: {d['name']}  (public key {d['public_key']})\n"
        f"  model {d['provider']} {d['model'] or '(default)'}, temperature {d['temperature']}, "
        f"response cap {d['max_tokens']}, {d['passages']} passages within "
        f"{d['context_budget']} tokens\n"
        f"  domains: {', '.join(d['allowed_domains']) or '(none yet)'}\n"
        f"  daily cap {d['daily_token_cap'] or 'none'}, "
        f"monthly cap {d['monthly_token_cap'] or 'none'}, "
        f"{d['turns_per_conversation'] or 'unlimited'} questions per conversation, "
        f"sources shown: {d['show_sources']}"
    )


AssistantOpt = Annotated[
    int, typer.Option("--assistant", min=1, max=MAX_ID, help="The assistant's id.")
]
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
DailyCapOpt = Annotated[
    int | None, typer.Option(help="Tokens the assistant may use per day; 0: no cap.")
]
MonthlyCapOpt = Annotated[
    int | None,
    typer.Option(
        help="Tokens the assistant may use per calendar month of the shared balance; 0: no cap."
    ),
]
TurnsOpt = Annotated[int | None, typer.Option(help="Questions per conversation; 0: no cap.")]
SourcesOpt = Annotated[
    str | None, typer.Option(help="What visitors see of sources: none, names or passages.")
]
ThemeOpt = Annotated[
    str | None,
    typer.Option(help="auto (the visitor's light or dark preference), light or dark."),
]
WidgetTextOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--widget-text",
        help="KEY=TEXT: your own wording of one of the widget's texts (repeat); "
        "KEY= puts the visitor's language's default back.",
    ),
]


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
    daily_token_cap: DailyCapOpt = None,
    monthly_token_cap: MonthlyCapOpt = None,
    turns_per_conversation: TurnsOpt = None,
    show_sources: SourcesOpt = None,
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
            daily_token_cap=daily_token_cap,
            monthly_token_cap=monthly_token_cap,
            turns_per_conversation=turns_per_conversation,
            show_sources=show_sources,
        )
        with ctx.db.uow() as uow:
            created = assistants.create_assistant(
                uow.session,
                account_id=account,
                fields=fields,
                now=ctx.clock.now(),
                catalog=ctx.models,
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
    daily_token_cap: DailyCapOpt = None,
    monthly_token_cap: MonthlyCapOpt = None,
    turns_per_conversation: TurnsOpt = None,
    show_sources: SourcesOpt = None,
    widget_theme: ThemeOpt = None,
    widget_text: WidgetTextOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an assistant's settings (only the options given)."""
    from chatmeter.assistants import service as assistants

    with context() as ctx:
        texts = None
        if widget_text:
            with ctx.db.read() as session:
                texts = assistants.get_assistant(
                    session, account_id=account, assistant_id=assistant
                ).texts
            texts |= _widget_texts(widget_text)
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
            daily_token_cap=daily_token_cap,
            monthly_token_cap=monthly_token_cap,
            turns_per_conversation=turns_per_conversation,
            show_sources=show_sources,
            widget_theme=widget_theme,
            widget_texts=texts,
        )
        with ctx.db.uow() as uow:
            changed = assistants.update_assistant(
                uow.session,
                account_id=account,
                assistant_id=assistant,
                fields=fields,
                now=ctx.clock.now(),
                catalog=ctx.models,
            )
            uow.commit()
            data = assistants.assistant_dict(changed)
    emit(data, as_json, _assistant_text)


def _widget_texts(pairs: list[str]) -> dict[str, str]:
    from chatmeter.errors import InvalidInput

    texts = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals:
            raise InvalidInput(f"--widget-text takes KEY=TEXT, not {pair!r}")
        texts[key.strip()] = text
    return texts


@assistants_app.command("file-title")
def assistants_file_title(
    account: AccountOpt,
    assistant: AssistantOpt,
    file: Annotated[int, typer.Option(help="The training file's id.", min=1, max=MAX_ID)],
    title: Annotated[
        str, typer.Option(help='What visitors see as the source; "": the document\'s own title.')
    ],
    as_json: JsonOpt = False,
) -> None:
    """Name a training file as visitors see it among an answer's sources."""
    from chatmeter.assistants import service as assistants
    from chatmeter.training import service as training

    with context() as ctx, ctx.db.uow() as uow:
        bot = assistants.get_assistant(uow.session, account_id=account, assistant_id=assistant)
        changed = training.set_title(
            uow.session, assistant=bot, file_id=file, title=title, now=ctx.clock.now()
        )
        uow.commit()
        data = training.file_dict(changed)
    emit(data, as_json, lambda d: f"{d['filename']}: shown to visitors as {d['source_title']!r}")


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
    assistant: Annotated[int, typer.Argument(help="The assistant's id.", min=1, max=MAX_ID)],
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
                        quota=training.Quota.of(ctx.settings),
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
                assert target is not None  # the file was just uploaded to it
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
