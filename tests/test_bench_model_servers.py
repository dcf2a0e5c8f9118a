"""bench/model_servers.py: the GGUF copy with one more metadata string, and the Gemma 3
chat template it writes (the server's and the tokenizer's prompt for ``server-gemma-*``)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from chatmeter.llm.base import ChatMessage
from chatmeter.llm.local import bundled_model_path

ROOT = Path(__file__).parents[1]


def bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


servers = bench_module("model_servers")


def data_digest(path: Path, start: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.model
def test_a_copy_with_one_more_string_keeps_every_tensor_and_llama_cpp_reads_it(
    tmp_path: Path,
) -> None:
    from llama_cpp import Llama

    source = bundled_model_path()
    target = tmp_path / "copy.gguf"
    servers.with_metadata(source, target, "chatmeter.note", "a note, ünïcode")

    with source.open("rb") as f:
        before = servers._layout(f)
    with target.open("rb") as f:
        after = servers._layout(f)
    assert after.metadata == before.metadata | {"chatmeter.note": "a note, ünïcode"}
    assert after.data_start % after.alignment == 0
    assert data_digest(target, after.data_start) == data_digest(source, before.data_start)
    assert servers.chat_template(target) == servers.chat_template(source) is not None

    llama = Llama(model_path=str(target), vocab_only=True, verbose=False)
    original = Llama(model_path=str(source), vocab_only=True, verbose=False)
    try:
        assert llama.metadata["chatmeter.note"] == "a note, ünïcode"
        text = b"Tokens renew on the 1st of each month at 00:00 UTC."
        assert llama.tokenize(text) == original.tokenize(text)
    finally:
        llama.close()
        original.close()


def test_a_key_the_file_has_already_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tokenizer\.chat_template already"):
        servers.with_metadata(
            bundled_model_path(), tmp_path / "copy.gguf", "tokenizer.chat_template", "{{ x }}"
        )


def test_the_gemma_template_opens_the_first_user_turn_with_the_system_message() -> None:
    # llama.cpp's named format "gemma" drops the system message: the passages with it.
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        template=servers.GEMMA3_CHAT_TEMPLATE, eos_token="<eos>", bos_token="<bos>"
    )
    messages = [
        ChatMessage("system", "[1] Billing\nTokens renew on the 1st."),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Hi. "),
        ChatMessage("user", "When do tokens renew?"),
    ]
    prompt = formatter(messages=[m.as_dict() for m in messages]).prompt  # type: ignore[misc]
    assert prompt == (
        "<bos><start_of_turn>user\n[1] Billing\nTokens renew on the 1st.\n\nHello<end_of_turn>\n"
        "<start_of_turn>model\nHi.<end_of_turn>\n"
        "<start_of_turn>user\nWhen do tokens renew?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
