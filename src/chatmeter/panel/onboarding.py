"""The welcome checklist: from sign-up to a first live answer, each step ticked from the
account's real state (nothing here stores a tick).

``checklist(state)`` is pure: the dashboard reads an ``AccountProgress`` from the
database (``pages.dashboard``) and shows what this returns. The steps, in order:
create an assistant → add files (one ready) → try it in the test chat → allow your
website and copy the snippet → get tokens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountProgress:
    """What the account has done so far, as the database says."""

    assistant_id: int | None  # the assistant the steps link to; None: no assistant yet
    file_ready: bool  # an assistant has a training file ready for answers
    tested: bool  # an assistant has a conversation in the panel's test chat
    website_allowed: bool  # an assistant has at least one allowed website
    had_tokens: bool  # the ledger holds a grant: a purchase, a renewal or a gift
    dismissed: bool  # someone of the account closed the checklist


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    help: str
    action: str  # the button's words
    href: str  # where the step is done
    done: bool


@dataclass(frozen=True)
class Checklist:
    steps: tuple[Step, ...]

    @property
    def done(self) -> int:
        return sum(step.done for step in self.steps)

    @property
    def live(self) -> bool:
        """Every step done: the "You're live" state."""
        return self.done == len(self.steps)

    @property
    def next_key(self) -> str | None:
        """The first step not done, the one the checklist puts forward."""
        return next((step.key for step in self.steps if not step.done), None)


NEW_ASSISTANT = "/panel/assistants/new"
# "Get more tokens" opens on any page whose address asks for it (panel.js).
BUY_TOKENS = "/panel/dashboard?buy=1"


def checklist(progress: AccountProgress) -> Checklist | None:
    """The steps with their ticks, or None once the checklist is dismissed."""
    if progress.dismissed:
        return None
    bot = progress.assistant_id

    def page(tab: str) -> str:
        # Before there is an assistant, every step's place is the new assistant's form.
        return f"/panel/assistants/{bot}{tab}" if bot is not None else NEW_ASSISTANT

    return Checklist(
        (
            Step(
                "assistant",
                "Create an assistant",
                "Give it a name and a welcome message.",
                "New assistant",
                NEW_ASSISTANT,
                bot is not None,
            ),
            Step(
                "files",
                "Add your files",
                "Upload what it should know: PDF, Word, text, Markdown, HTML or CSV.",
                "Add files",
                page("/training"),
                progress.file_ready,
            ),
            Step(
                "test",
                "Try it in the test chat",
                "Ask what your visitors would ask. Answers use tokens, as your visitors' do.",
                "Open the test chat",
                page("/test"),
                progress.tested,
            ),
            Step(
                "website",
                "Allow your website and copy the snippet",
                "Name the website it may run on, then paste one tag into your pages.",
                "Embed",
                page("/embed"),
                progress.website_allowed,
            ),
            Step(
                "tokens",
                "Get tokens",
                "Your assistant answers visitors while you have tokens.",
                "Get tokens",
                BUY_TOKENS,
                progress.had_tokens,
            ),
        )
    )
