"""The welcome checklist's rules (``panel.onboarding``), over every combination of state."""

from __future__ import annotations

import itertools

import pytest

from chatmeter.panel.onboarding import BUY_TOKENS, NEW_ASSISTANT, AccountProgress, checklist

KEYS = ["assistant", "files", "test", "website", "tokens"]
FLAGS = ("file_ready", "tested", "website_allowed", "had_tokens")


def every_state() -> list[AccountProgress]:
    return [
        AccountProgress(assistant, *flags, dismissed=False)
        for assistant in (None, 7)
        for flags in itertools.product((False, True), repeat=len(FLAGS))
    ]


@pytest.mark.parametrize("progress", every_state(), ids=repr)
def test_each_step_is_ticked_by_its_own_fact_only(progress: AccountProgress) -> None:
    steps = checklist(progress)
    assert steps is not None
    assert [step.key for step in steps.steps] == KEYS
    ticks = {step.key: step.done for step in steps.steps}
    assert ticks == {
        "assistant": progress.assistant_id is not None,
        "files": progress.file_ready,
        "test": progress.tested,
        "website": progress.website_allowed,
        "tokens": progress.had_tokens,
    }
    assert steps.done == sum(ticks.values())
    assert steps.live == all(ticks.values())
    assert steps.next_key == next((key for key in KEYS if not ticks[key]), None)


@pytest.mark.parametrize("progress", every_state(), ids=repr)
def test_each_step_links_to_where_it_is_done(progress: AccountProgress) -> None:
    steps = checklist(progress)
    assert steps is not None
    links = {step.key: step.href for step in steps.steps}
    bot = progress.assistant_id
    assert links["assistant"] == NEW_ASSISTANT
    assert links["tokens"] == BUY_TOKENS
    for key, tab in (("files", "training"), ("test", "test"), ("website", "embed")):
        # Without an assistant there is no page of its own yet: create one first.
        assert links[key] == (f"/panel/assistants/{bot}/{tab}" if bot else NEW_ASSISTANT)


@pytest.mark.parametrize("progress", every_state(), ids=repr)
def test_a_dismissed_checklist_shows_nothing_whatever_the_state(progress: AccountProgress) -> None:
    dismissed = AccountProgress(**(progress.__dict__ | {"dismissed": True}))
    assert checklist(dismissed) is None


def test_a_new_account_starts_at_the_first_step_with_nothing_done() -> None:
    steps = checklist(AccountProgress(None, False, False, False, False, dismissed=False))
    assert steps is not None
    assert (steps.done, steps.live, steps.next_key) == (0, False, "assistant")
    assert [step.title for step in steps.steps] == [
        "Create an assistant",
        "Add your files",
        "Try it in the test chat",
        "Allow your website and copy the snippet",
        "Get tokens",
    ]
