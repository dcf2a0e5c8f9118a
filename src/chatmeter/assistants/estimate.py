"""The launch estimate: what an assistant will cost a month at the conversations a day the
customer expects.

From the assistant's own conversations when it has any (its test chats count: they
are paid for like any other), else from its settings, with the assumption said:

- **measured**: tokens per conversation = its conversations' tokens ÷ their number
  (each turn's tokens as the ledger settled them); turns per conversation likewise.
- **from settings**: a turn reads at most its context budget of passages, the
  instructions (about 4 characters a token), the earlier conversation
  (``CHATMETER_CHAT_HISTORY_TOKENS``, from the second turn on) and the question and the
  prompt's own words (``QUESTION_TOKENS`` + ``PROMPT_TOKENS``), and answers up to the
  response cap, each weighted by the model's rate; a conversation is
  ``ASSUMED_TURNS`` turns. That is an upper bound: answers often stop before the cap.

Tokens a month = tokens per conversation × conversations a day × ``MONTH_DAYS``;
packages = that ÷ the package size, rounded up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.chat.models import Conversation
from chatmeter.llm.rates import DEFAULT_RATE, Rate

MONTH_DAYS = 30
ASSUMED_TURNS = 3
QUESTION_TOKENS = 30
PROMPT_TOKENS = 60
CHARS_PER_TOKEN = 4
MAX_CONVERSATIONS_PER_DAY = 1_000_000


@dataclass(frozen=True, slots=True)
class Estimate:
    assistant_id: int
    conversations_per_day: int
    basis: str  # "measured" or "settings"
    assumption: str
    measured_conversations: int
    turns_per_conversation: float
    tokens_per_turn: int
    tokens_per_conversation: int
    tokens_per_month: int
    packages: int
    package_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Measured:
    conversations: int
    turns: int
    tokens: int


def measured(session: Session, *, assistant: Assistant) -> Measured:
    """The assistant's answered conversations, their turns and their tokens."""
    count, messages, context, generation = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Conversation.messages), 0),
            func.coalesce(func.sum(Conversation.context_tokens), 0),
            func.coalesce(func.sum(Conversation.generation_tokens), 0),
        ).where(
            Conversation.account_id == assistant.account_id,
            Conversation.assistant_id == assistant.id,
            Conversation.messages > 0,
        )
    ).one()
    # A turn stores the visitor's message and the answer: two messages.
    return Measured(
        int(count), max(1, int(messages) // 2) if count else 0, int(context + generation)
    )


def estimate(
    *,
    assistant: Assistant,
    seen: Measured,
    conversations_per_day: int,
    package_tokens: int,
    history_tokens: int,
    rate: Rate = DEFAULT_RATE,
) -> Estimate:
    """The month's tokens and packages at ``conversations_per_day``."""
    if seen.conversations > 0:
        per_conversation = round(seen.tokens / seen.conversations)
        turns = seen.turns / seen.conversations
        per_turn = round(seen.tokens / seen.turns) if seen.turns else 0
        basis = "measured"
        assumption = (
            f"Measured on its {seen.conversations} conversation"
            f"{'' if seen.conversations == 1 else 's'} so far (test chats included): "
            f"{seen.tokens:,} tokens in {seen.turns:,} turns."
        )
    else:
        first, later = settings_turns(assistant, history_tokens=history_tokens, rate=rate)
        per_conversation = first + (ASSUMED_TURNS - 1) * later
        turns = float(ASSUMED_TURNS)
        per_turn = round(per_conversation / ASSUMED_TURNS)
        basis = "settings"
        assumption = (
            f"No conversations yet: estimated from its settings, assuming {ASSUMED_TURNS} "
            f"questions a conversation, each reading the whole context budget "
            f"({assistant.context_budget:,} tokens) and answering up to the response cap "
            f"({assistant.max_tokens:,} tokens). Answers often stop sooner, so this is an "
            f"upper bound; try it in the test chat to measure it."
        )
    month = per_conversation * conversations_per_day * MONTH_DAYS
    return Estimate(
        assistant_id=assistant.id,
        conversations_per_day=conversations_per_day,
        basis=basis,
        assumption=assumption,
        measured_conversations=seen.conversations,
        turns_per_conversation=round(turns, 2),
        tokens_per_turn=per_turn,
        tokens_per_conversation=per_conversation,
        tokens_per_month=month,
        packages=math.ceil(month / package_tokens) if month > 0 else 0,
        package_tokens=package_tokens,
    )


def settings_turns(assistant: Assistant, *, history_tokens: int, rate: Rate) -> tuple[int, int]:
    """Tokens of a first turn and of a later one (which also reads the conversation so
    far), from the assistant's settings, weighted by the model's rate."""
    instructions = math.ceil(len(assistant.instructions or "") / CHARS_PER_TOKEN)
    prompt = instructions + assistant.context_budget + QUESTION_TOKENS + PROMPT_TOKENS
    answer = math.ceil(assistant.max_tokens * rate.output)
    first = math.ceil(prompt * rate.input) + answer
    later = math.ceil((prompt + history_tokens) * rate.input) + answer
    return first, later
