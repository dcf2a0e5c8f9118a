"""The generation queue's rules, on its own: bounds, fairness, leaving, Retry-After."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chatmeter.chat.queue import GenerationQueue, Ticket
from chatmeter.errors import Busy
from tests.support import aio


def queue(slots: int = 1, places: int = 4, per_account: int = 2) -> GenerationQueue:
    return GenerationQueue(name="test", slots=slots, places=places, per_account=per_account)


def test_a_free_slot_is_taken_at_once_and_the_rest_wait_up_to_the_places() -> None:
    q = queue(slots=2, places=3, per_account=3)
    running = [q.admit(account_id=1), q.admit(account_id=1)]
    assert all(t.running for t in running)
    waiting = [q.admit(account_id=1) for _ in range(3)]
    assert not any(t.running for t in waiting)
    with pytest.raises(Busy) as refused:
        q.admit(account_id=2)
    assert refused.value.status_code == 503 and refused.value.code == "busy"
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    figures = q.figures()
    assert (figures.running, figures.waiting, figures.admitted, figures.refused) == (2, 3, 5, 1)


def test_one_account_cannot_take_more_than_its_share_of_the_places() -> None:
    q = queue(slots=1, places=4, per_account=2)
    q.admit(account_id=1)  # running
    q.admit(account_id=1)
    q.admit(account_id=1)
    with pytest.raises(Busy):
        q.admit(account_id=1)
    assert not q.admit(account_id=2).running  # another customer still finds room


def test_freed_slots_go_to_the_waiting_accounts_in_turn() -> None:
    q = queue(slots=1, places=6, per_account=3)
    first = q.admit(account_id=1)
    crowd = [q.admit(account_id=1) for _ in range(3)]
    neighbour = q.admit(account_id=2)
    order: list[Ticket] = []
    current = first
    for _ in range(4):
        current.leave()
        (current,) = [t for t in [*crowd, neighbour] if t.running and t not in order]
        order.append(current)
    # The neighbour came after three of account 1's turns, but is served second.
    assert order == [crowd[0], neighbour, crowd[1], crowd[2]]


def test_leaving_is_idempotent_and_frees_the_place_or_the_slot() -> None:
    q = queue(slots=1, places=2, per_account=2)
    running = q.admit(account_id=1)
    waiting = q.admit(account_id=1)
    waiting.leave()
    waiting.leave()
    assert (q.figures().running, q.figures().waiting) == (1, 0)
    running.leave()
    running.leave()
    assert (q.figures().running, q.figures().waiting) == (0, 0)
    assert q.admit(account_id=1).running


def test_a_waiter_in_the_event_loop_wakes_when_a_slot_frees_and_leaves_when_cancelled() -> None:
    q = queue(slots=1, places=2, per_account=2)

    async def scenario() -> None:
        holder = q.admit(account_id=1)
        patient = q.admit(account_id=1)
        quitter = q.admit(account_id=1)
        waiting_patient = asyncio.ensure_future(patient.wait())
        waiting_quitter = asyncio.ensure_future(quitter.wait())
        await asyncio.sleep(0)
        quitter_gone = q.figures().waiting
        waiting_quitter.cancel()  # the visitor closed the tab
        with pytest.raises(asyncio.CancelledError):
            await waiting_quitter
        assert q.figures().waiting == quitter_gone - 1
        # A slot freed from another thread (a generation ending) wakes the waiter.
        threading.Thread(target=holder.leave).start()
        await asyncio.wait_for(waiting_patient, timeout=30)
        assert patient.running

    aio.run(scenario())


def test_a_job_runs_on_the_queues_own_thread_and_frees_its_slot_after() -> None:
    q = queue(slots=1, places=1, per_account=1)
    ticket = q.admit(account_id=1)
    seen: list[str] = []
    q.run(ticket, lambda: seen.append(threading.current_thread().name)).result(timeout=30)
    assert seen[0].startswith("gen-test")
    assert q.figures().running == 0
    with pytest.raises(RuntimeError, match="only a running ticket"):
        q.run(Ticket(q, 1), lambda: None)  # a turn still waiting may not generate
