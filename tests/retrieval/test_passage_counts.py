"""Passages are counted in the generating model's tokens once per provider, not once per turn."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence

from chatmeter.chat.counts import text_counter
from chatmeter.llm.base import ChatMessage
from chatmeter.llm.mock import MockProvider


class Counting(MockProvider):
    def __init__(self) -> None:
        super().__init__()
        self.prompts = 0

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        self.prompts += 1
        return super().count_prompt_tokens(messages)


def test_a_text_is_counted_once_and_counts_what_it_adds_to_a_prompt() -> None:
    provider = Counting()
    count = text_counter(provider)
    assert count("Tokens renew monthly.") == 3  # the mock's words; the message's 3 cancel out
    assert text_counter(provider)("Tokens renew monthly.") == 3
    assert text_counter(provider) is count
    assert provider.prompts == 2  # the empty prompt, and the text once


def test_each_provider_counts_with_its_own_tokenizer() -> None:
    class Doubling(MockProvider):
        @staticmethod
        def count_text(text: str) -> int:
            return 2 * len(text.split())

    assert text_counter(MockProvider())("a b c") == 3
    assert text_counter(Doubling())("a b c") == 6


def test_remembered_counts_do_not_keep_a_provider_alive() -> None:
    provider = MockProvider()
    text_counter(provider)("a b")
    gone = weakref.ref(provider)
    del provider
    gc.collect()
    assert gone() is None
