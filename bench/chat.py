"""A chat turn's platform overhead, and what a typical conversation costs in tokens.

    .venv/bin/python bench/chat.py [--postgres URL] [--turns N] [--chunks N] [--skip-model]

1. Overhead: everything a turn does except the model's generation — rate
   limit, retrieval (with the real embedding model and the real llama.cpp
   tokenizer for counting), prompt building, reserve, settle, storing the
   messages — with a provider that answers at once, against an assistant of
   10,000 passages, on SQLite and PostgreSQL. p50/p99 per turn. Every
   question is new (random words), so no cache of question vectors or
   passage counts is hit more than by chance.
2. Tokens per typical conversation: the demo "Help Center" trained on
   docs/help with the default settings and the bundled model, four
   conversations of 3-4 questions; prints each turn's context and generation
   tokens and the average per conversation.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import retrieval as corpus
from chatmeter.billing import purchases
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStream,
    Meter,
    Provider,
    StreamEvent,
    TextDelta,
)

CONVERSATIONS = [
    [
        "How many tokens are in one package?",
        "How much does it cost per month?",
        "When do my tokens renew?",
    ],
    [
        "What happens when I run out of tokens?",
        "Will my visitors see an error?",
        "How do I get my assistant back?",
        "Do unused tokens carry over?",
    ],
    ["Which files can I upload?", "My PDF is scanned, what can I do?", "How big can a file be?"],
    [
        "Where do I put the chat widget?",
        "Can other sites use my widget?",
        "Can I change its colour?",
        "How do I stop it everywhere?",
    ],
]


class InstantProvider(Provider):
    """Counts with the real llama.cpp tokenizer, answers at once: the model's time removed."""

    name = "local"

    def __init__(self, real: Provider, answer: str) -> None:
        self._real = real
        self.model = real.model
        self._answer = answer

    @property
    def context_window(self) -> int:
        return self._real.context_window

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._real.count_prompt_tokens(messages)

    def stream(self, request: GenerationRequest) -> GenerationStream:
        meter = Meter(prompt_tokens=self.count_prompt_tokens(request.messages))
        return GenerationStream(self._events(meter), meter=meter)

    def _events(self, meter: Meter) -> Iterator[StreamEvent]:
        for word in self._answer.split():
            meter.completion_tokens += 1
            yield TextDelta(word + " ")
        meter.finish_reason = "stop"
        yield meter.usage()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def make_context(url: str) -> Context:
    settings = Settings(
        _env_file=None,
        env=Env.TEST,
        database_url=url,
        data_dir=pathlib.Path(tempfile.mkdtemp()),
        chat_visitor_rate="1000000/minute",
        chat_assistant_rate="1000000/minute",
    )
    return Context.from_settings(settings)


def overhead(url: str, turns: int, chunks: int) -> dict[str, float]:
    from chatmeter.assistants import service as assistants
    from chatmeter.billing import subscriptions
    from chatmeter.chat.admission import start_turn
    from chatmeter.llm.local import LocalProvider

    db = Database(url)
    db.create_all()
    assistant_id = corpus.fill(db, chunks, np.random.default_rng(7))
    db.dispose()
    ctx = make_context(url)
    with ctx.db.uow() as uow:
        assistant = uow.session.get(assistants.Assistant, assistant_id)
        account_id, public_key = assistant.account_id, assistant.public_key
        subscriptions.open_subscription(
            uow.session, account_id=account_id, settings=ctx.settings, now=ctx.clock.now()
        )
        uow.commit()
    purchases.purchase(ctx, account_id=account_id, packages=1000)
    ctx._providers["local:"] = InstantProvider(
        LocalProvider(), "Tokens are sold in packages of 5,000; ten packages give 50,000 tokens."
    )
    timings = []
    for n in range(turns + 5):
        question = " ".join(random.choice(corpus.VOCABULARY[:2000]) for _ in range(8))
        started = time.perf_counter()
        start_turn(
            ctx, public_key=public_key, message=question, conversation_id=None, visitor=f"v{n % 50}"
        ).run()
        if n >= 5:
            timings.append((time.perf_counter() - started) * 1000)
    ctx.close()
    return {
        "p50": percentile(timings, 50),
        "p99": percentile(timings, 99),
        "mean": sum(timings) / len(timings),
    }


def tokens_per_conversation() -> None:
    from chatmeter.chat.admission import start_turn
    from chatmeter.demo import ensure_demo
    from chatmeter.training import service as training

    folder = tempfile.mkdtemp()
    url = f"sqlite:///{folder}/demo.db"
    Database(url).create_all()
    ctx = make_context(url)
    account = ensure_demo(ctx, echo=lambda _line: None)
    training.process_queue(ctx)
    from chatmeter.assistants import service as assistants

    with ctx.db.read() as session:
        (helper,) = assistants.list_assistants(session, account_id=account)
    totals = []
    for questions in CONVERSATIONS:
        conversation_id, total = None, 0
        for question in questions:
            turn = start_turn(
                ctx,
                public_key=helper.public_key,
                message=question,
                conversation_id=conversation_id,
                visitor="bench",
            )
            answer = turn.run()
            conversation_id = answer["conversation_id"]
            usage = turn.usage
            assert usage is not None
            total += usage.prompt_tokens + usage.completion_tokens
            print(
                f"  {question:<48} context {usage.prompt_tokens:>4}  "
                f"generation {usage.completion_tokens:>4}",
                flush=True,
            )
        totals.append(total)
        print(f"  conversation of {len(questions)} turns: {total:,} tokens", flush=True)
    print(f"average per conversation (default settings): {sum(totals) / len(totals):,.0f} tokens")
    ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHATMETER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument(
        "--skip-model",
        action="store_true",
        help="only the overhead, not the conversation with the bundled model",
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"platform overhead per turn, {args.chunks:,} passages, provider answering at once:")
    for backend in ("sqlite", "postgresql"):
        if backend == "sqlite":
            url, drop = f"sqlite:///{tempfile.mkdtemp()}/bench.db", (lambda: None)
        else:
            url, drop = corpus.postgres_database(args.postgres)
        try:
            figures = overhead(url, args.turns, args.chunks)
        finally:
            drop()
        print(
            f"  {backend:<10} p50 {figures['p50']:6.2f} ms   p99 {figures['p99']:6.2f} ms   "
            f"mean {figures['mean']:6.2f} ms   (load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    if not args.skip_model:
        print("tokens per typical conversation (demo Help Center, bundled model):")
        tokens_per_conversation()


if __name__ == "__main__":
    main()
