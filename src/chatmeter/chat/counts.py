"""The count cache: a provider's token counts of the texts that come back turn after turn."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable

from chatmeter.llm.base import ChatMessage, Provider

COUNTS_KEPT = 4096  # per provider: passages and history messages seen lately
_counters: weakref.WeakKeyDictionary[Provider, Callable[[str], int]] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def text_counter(provider: Provider) -> Callable[[str], int]:
    """Counts a text in the provider's tokens, remembering the counts of recent texts.

    The same passages and the same history come back turn after turn, and each
    count renders the chat template and tokenizes (0.13 ms a passage, several
    a turn); a provider's count of a text never changes.
    """
    with _counters_lock:
        counter = _counters.get(provider)
    if counter is None:
        counter = _new_counter(provider)
        with _counters_lock:
            counter = _counters.setdefault(provider, counter)
    return counter


def _new_counter(provider: Provider) -> Callable[[str], int]:
    # The exact count of a piece of text inside the prompt is the difference it makes.
    empty = provider.count_prompt_tokens([ChatMessage("user", "")])
    owner = weakref.ref(provider)  # the cache must not keep its provider alive

    @functools.lru_cache(maxsize=COUNTS_KEPT)
    def count(text: str) -> int:
        counting = owner()
        assert counting is not None, "a counter outlived its provider"
        return max(0, counting.count_prompt_tokens([ChatMessage("user", text)]) - empty)

    return count
