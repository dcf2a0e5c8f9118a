"""The prompt of one chat turn: instructions, passages, recent history, the question.

Pure: token counts come in as a function, so the rules can be tested without
a model. The history is trimmed from the oldest exchange, whole exchanges at a
time, to the history budget; passages were already cut to the context budget
by retrieval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatmeter.llm.base import ChatMessage


@dataclass(frozen=True)
class PassageText:
    label: int
    heading: str
    filename: str
    text: str


def system_message(instructions: str, passages: Sequence[PassageText]) -> str:
    parts = [instructions.strip()]
    if passages:
        parts.append(
            "Answer using these passages from the business's documents. "
            "If they do not contain the answer, say so."
        )
        for passage in passages:
            title = passage.heading or passage.filename
            parts.append(f"[{passage.label}] {title}\n{passage.text.strip()}")
    return "\n\n".join(p for p in parts if p)


def trim_history(
    history: Sequence[tuple[str, str]], *, budget: int, count_tokens: Callable[[str], int]
) -> list[tuple[str, str]]:
    """The newest messages within ``budget`` tokens, oldest first, opening on a user message."""
    kept: list[tuple[str, str]] = []
    spent = 0
    for role, content in reversed(history):
        cost = count_tokens(content) + 4  # role markers of the chat template
        if spent + cost > budget:
            break
        kept.append((role, content))
        spent += cost
    kept.reverse()
    while kept and kept[0][0] != "user":  # never open on a dangling answer
        kept.pop(0)
    return kept


def build(
    *,
    instructions: str,
    passages: Sequence[PassageText],
    history: Sequence[tuple[str, str]],
    question: str,
) -> list[ChatMessage]:
    messages = [ChatMessage("system", system_message(instructions, passages))]
    messages += [
        ChatMessage("user" if role == "user" else "assistant", content) for role, content in history
    ]
    messages.append(ChatMessage("user", question))
    return messages
