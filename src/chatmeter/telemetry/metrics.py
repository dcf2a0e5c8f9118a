"""The product's Prometheus metrics, defined once (``prometheus-client``).

Everything a chat turn reports is a counter or a histogram: an in-memory add,
no I/O and no query on the turn's path. With ``PROMETHEUS_MULTIPROC_DIR`` set in
the environment before the process starts, prometheus-client keeps each
process's figures in a memory-mapped file of that folder and ``/metrics``
adds up every process's (``chatmeter.ops.exposition``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# A turn served from a known answer takes milliseconds; the bundled model, seconds.
TURN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CHAT_TURNS = Counter(
    "chatmeter_chat_turns",
    "Chat turns by outcome: complete, partial, failed, interrupted (admitted turns), "
    "busy, rate_limited, unavailable, conversation_full, invalid (refused before any "
    "reservation).",
    ["outcome"],
)
TOKENS_CHARGED = Counter(
    "chatmeter_tokens_charged",
    "Tokens settled by chat turns, by kind: context (training context and prompt) "
    "and generation (the answer).",
    ["kind"],
)
TURN_SECONDS = Histogram(
    "chatmeter_chat_turn_seconds",
    "A chat turn from its request to its settled answer.",
    buckets=TURN_BUCKETS,
)
FIRST_TOKEN_SECONDS = Histogram(
    "chatmeter_chat_first_token_seconds",
    "A chat turn from its request to the first piece of its answer.",
    buckets=FIRST_TOKEN_BUCKETS,
)
LEDGER_ERRORS = Counter(
    "chatmeter_ledger_errors",
    "Ledger anomalies met by chat turns: lost_hold (the hold ended before its turn "
    "settled), overrun (a model used more than was held), settle_failed (the settlement "
    "raised).",
    ["kind"],
)
# Set by each queue when its figures change; summed over the live processes.
QUEUE_WAITING = Gauge(
    "chatmeter_generation_queue_waiting",
    "Chat turns waiting for a model, by model.",
    ["model"],
    multiprocess_mode="livesum",
)
QUEUE_RUNNING = Gauge(
    "chatmeter_generation_queue_running",
    "Chat turns generating now, by model.",
    ["model"],
    multiprocess_mode="livesum",
)

TURN_OUTCOMES = ("complete", "partial", "failed", "interrupted")
REFUSALS = ("busy", "rate_limited", "unavailable", "conversation_full", "invalid")
TOKEN_KINDS = ("context", "generation")
LEDGER_ERROR_KINDS = ("lost_hold", "overrun", "settle_failed")


def _declare() -> None:
    """Every label value exists from the start: a rate over a series that appears late
    misses its first increase."""
    for outcome in (*TURN_OUTCOMES, *REFUSALS):
        CHAT_TURNS.labels(outcome)
    for kind in TOKEN_KINDS:
        TOKENS_CHARGED.labels(kind)
    for kind in LEDGER_ERROR_KINDS:
        LEDGER_ERRORS.labels(kind)


_declare()


def turn_settled(*, outcome: str, context: int, generation: int) -> None:
    """A turn settled (or released, with nothing charged)."""
    CHAT_TURNS.labels(outcome).inc()
    if context:
        TOKENS_CHARGED.labels("context").inc(context)
    if generation:
        TOKENS_CHARGED.labels("generation").inc(generation)


def turn_refused(outcome: str) -> None:
    CHAT_TURNS.labels(outcome).inc()


def ledger_error(kind: str) -> None:
    LEDGER_ERRORS.labels(kind).inc()
