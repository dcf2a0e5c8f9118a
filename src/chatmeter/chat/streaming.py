"""A queued turn served to the web: waits for the model in the event loop, never in a thread.

The web server's threads run the short steps (``start_turn``: retrieval,
reservation); the model runs on its queue's own threads (``chat.queue``). In
between, a turn waiting for the model is only a future in the event loop, so
however many visitors wait, the panel, the API and other assistants still
find threads to run on.

Each event the model produces crosses from the generation thread to the event
loop through an ``asyncio.Queue``; nothing the generation thread does can
block on a slow or vanished visitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import AsyncGenerator
from typing import Any

import anyio

from chatmeter.chat.turn import Turn

log = logging.getLogger("chatmeter.chat")

_END = object()


async def events(turn: Turn) -> AsyncGenerator[dict[str, Any], None]:
    """``start`` at once, then, when the model is free, the turn's deltas and ``done``.

    Closing the iterator (the visitor left) frees the turn's place in the queue, or
    stops its generation at the next token; either way the turn settles itself.
    """
    ticket = turn.ticket
    if ticket is None:
        raise ValueError("only a queued turn (start_turn(queue=True)) is served this way")
    generating = False
    try:
        yield turn.start_event
        await ticket.wait()
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[Any] = asyncio.Queue()

        def hand_over(item: Any) -> None:
            # RuntimeError: the event loop is closed (shutdown); nobody reads any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(arrived.put_nowait, item)

        def generate() -> None:
            try:
                turn.generate(hand_over)
            except Exception:
                log.exception("a chat turn of assistant %s failed", turn.assistant_id)
            finally:
                hand_over(_END)

        # The queue's thread runs it in this request's context: its logs carry the request id.
        ticket.queue.run(ticket, functools.partial(contextvars.copy_context().run, generate))
        generating = True
        while (item := await arrived.get()) is not _END:
            yield item
    finally:
        turn.stop.set()  # a generation still running stops at its next token and settles
        if not generating:
            ticket.leave()
            # Shielded: this runs while the response is being cancelled (visitor gone).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(turn.abandon)


async def answer(turn: Turn) -> dict[str, Any]:
    """The whole answer at once (the API's JSON form), after waiting for the model."""
    received = []
    async for event in events(turn):
        received.append(event)
    return turn.result(received)
