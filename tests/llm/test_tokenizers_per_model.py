"""A tokenizer per server model (``CHATMETER_OPENAI_TOKENIZERS``): each model is counted
in its own tokens, a name that is not listed is refused, and one vocabulary still never
counts two models.

Real tokenizers throughout: OpenAI's shipped encodings, and the bundled SmolLM2's GGUF.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from chatmeter.chat.counts import text_counter
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.llm.catalog import ModelCatalog
from chatmeter.llm.openai_compat import OpenAIProvider
from chatmeter.llm.tokenizers import TiktokenTokenizer

# Counted differently by the two encodings (asserted below, so the tests prove something).
TEXT = "Ünïcödé: 日本語のテキスト, Ελληνικά, Привет мир"
OWN = {"qwen": "tiktoken:cl100k_base", "gemma": "tiktoken:o200k_base"}


def catalog(*models: str) -> ModelCatalog:
    return ModelCatalog(["local", *models], default_openai_model="gpt-4o-mini")


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, env=Env.TEST, **values)  # type: ignore[arg-type]


@contextmanager
def serving(tmp_path: Path, **values: object) -> Iterator[Context]:
    """A process's context with these settings (its database is never opened)."""
    ctx = Context.from_settings(settings(data_dir=tmp_path, **values))
    try:
        yield ctx
    finally:
        ctx.close()


def test_the_two_encodings_count_the_text_differently() -> None:
    counts = {TiktokenTokenizer(name).count_text(TEXT) for name in ("cl100k_base", "o200k_base")}
    assert len(counts) == 2


def test_each_listed_model_is_loaded_with_its_own_tokenizer() -> None:
    loaded = catalog("openai:qwen", "openai:gemma", "openai:gpt-4").check_tokenizers(None, OWN)
    assert loaded == {
        "openai:qwen": "tiktoken:cl100k_base",
        "openai:gemma": "tiktoken:o200k_base",
        "openai:gpt-4": "tiktoken:cl100k_base",  # no entry: the default, tiktoken by name
    }


def test_each_server_model_is_counted_with_its_own_tokenizer(tmp_path: Path) -> None:
    with serving(tmp_path, models=["openai:qwen", "openai:gemma"], openai_tokenizers=OWN) as ctx:
        qwen, gemma = ctx.provider("openai", "qwen"), ctx.provider("openai", "gemma")
        assert isinstance(qwen, OpenAIProvider) and isinstance(gemma, OpenAIProvider)
        assert (qwen.tokenizer.name, gemma.tokenizer.name) == tuple(OWN.values())
        # The count cache is the provider's own: neither model reads the other's counts.
        assert text_counter(qwen)(TEXT) == TiktokenTokenizer("cl100k_base").count_text(TEXT)
        assert text_counter(gemma)(TEXT) == TiktokenTokenizer("o200k_base").count_text(TEXT)


def test_a_model_without_an_entry_keeps_the_default(tmp_path: Path, gguf_path: Path) -> None:
    vocabulary = f"gguf:{gguf_path.resolve()}"
    with serving(
        tmp_path,
        models=["openai:smollm2", "openai:gemma"],
        openai_tokenizer=vocabulary,
        openai_tokenizers={"gemma": "tiktoken:o200k_base"},
    ) as ctx:
        smollm2 = ctx.provider("openai", "smollm2")
        assert isinstance(smollm2, OpenAIProvider) and smollm2.tokenizer.name == vocabulary
        # One model left on the pinned default: nobody is charged in another's tokens.
        assert ctx.models.check_tokenizers(
            ctx.settings.openai_tokenizer, ctx.settings.openai_tokenizers
        ) == {"openai:smollm2": vocabulary, "openai:gemma": "tiktoken:o200k_base"}


def test_a_name_that_is_not_listed_is_refused() -> None:
    # "qwen2" meant "qwen": qwen would silently be counted with the default.
    with pytest.raises(ValueError, match="CHATMETER_OPENAI_TOKENIZERS names 'qwen2'") as refused:
        catalog("openai:qwen", "openai:gemma").check_tokenizers(
            "tiktoken:o200k_base", {"qwen2": "tiktoken:cl100k_base"}
        )
    assert "it lists: openai:qwen, openai:gemma" in str(refused.value)


def test_one_pinned_default_for_two_models_without_an_entry_is_still_refused() -> None:
    three = catalog("openai:qwen", "openai:gemma", "openai:phi")
    with pytest.raises(ValueError, match="one vocabulary") as refused:
        three.check_tokenizers("tiktoken:o200k_base", {"qwen": "tiktoken:cl100k_base"})
    assert "lists 2 without one of their own: openai:gemma, openai:phi" in str(refused.value)
    # Give one of them its own, and the default counts only the last one.
    assert three.check_tokenizers(
        "tiktoken:o200k_base", {"qwen": "tiktoken:cl100k_base", "phi": "tiktoken:cl100k_base"}
    )["openai:gemma"] == ("tiktoken:o200k_base")


def test_a_model_whose_own_tokenizer_fails_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gemma.gguf"
    with pytest.raises(ValueError, match="lists 'openai:gemma', whose tokens") as refused:
        catalog("openai:qwen", "openai:gemma").check_tokenizers(
            None, {"qwen": "tiktoken:cl100k_base", "gemma": f"gguf:{missing}"}
        )
    assert str(missing) in str(refused.value)
    assert "its entry in CHATMETER_OPENAI_TOKENIZERS" in str(refused.value)


def test_a_file_that_is_no_gguf_is_named_too(tmp_path: Path) -> None:
    broken = tmp_path / "gemma.gguf"
    broken.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="lists 'openai:gemma', whose tokens"):
        catalog("openai:gemma").check_tokenizers(None, {"gemma": f"gguf:{broken}"})


def test_the_setting_reads_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATMETER_OPENAI_TOKENIZERS", raising=False)
    assert settings().openai_tokenizers == {}
    monkeypatch.setenv("CHATMETER_OPENAI_TOKENIZERS", '{"qwen": "gguf:/models/qwen.gguf"}')
    assert settings().openai_tokenizers == {"qwen": "gguf:/models/qwen.gguf"}


@pytest.mark.parametrize(
    ("tokenizers", "message"),
    [
        ({"qwen": "sentencepiece"}, "the tokenizer of 'qwen': unknown tokenizer"),
        ({"qwen": "gguf:"}, "unknown tokenizer"),
        ({"qwen": "tiktoken:p50k_base"}, "no shipped file for encoding 'p50k_base'"),
        ({"": "tiktoken"}, "'' is not a server model's name"),
        ({"qwen ": "tiktoken"}, "'qwen ' is not a server model's name"),
        ({"q" * 101: "tiktoken"}, "is not a server model's name"),
    ],
)
def test_a_malformed_entry_is_refused_with_the_settings(
    tokenizers: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(openai_tokenizers=tokenizers)


def test_a_value_that_is_not_an_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATMETER_OPENAI_TOKENIZERS", '["gguf:/models/qwen.gguf"]')
    with pytest.raises(ValidationError, match="openai_tokenizers"):
        settings()
