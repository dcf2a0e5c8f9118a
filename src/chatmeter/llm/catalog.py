"""The models assistants may use: the list the operator set in ``CHATMETER_MODELS``.

A customer picks a model from this list; anything else is refused when the
assistant is saved. So a typed model name can neither make the server build a
provider (and its caches) per name nor save an assistant whose every answer
fails because no tokenizer can count its tokens: each listed model's tokenizer
is loaded when the app starts (``check_tokenizers``), and a bad list stops it.

Entries: ``local`` (the bundled model) and ``openai:<model>`` (a model of the
OpenAI-compatible server at ``CHATMETER_OPENAI_BASE_URL``, counted with its own
tokenizer from ``CHATMETER_OPENAI_TOKENIZERS``, else ``CHATMETER_OPENAI_TOKENIZER``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chatmeter.errors import InvalidInput

BUNDLED = "local"
OPENAI_PREFIX = "openai:"


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str  # "" for the bundled model

    @property
    def value(self) -> str:
        """How the choice is written in CHATMETER_MODELS and in the panel's form."""
        return BUNDLED if self.provider == "local" else f"{OPENAI_PREFIX}{self.model}"

    @property
    def label(self) -> str:
        if self.provider == "local":
            return "Bundled model (SmolLM2-135M, runs on this server)"
        return f"{self.model} (model server)"


def parse_entry(entry: str) -> ModelChoice:
    """One entry of CHATMETER_MODELS, or ``ValueError``."""
    text = entry.strip()
    if text == BUNDLED:
        return ModelChoice("local", "")
    if text.startswith(OPENAI_PREFIX) and 0 < len(text) - len(OPENAI_PREFIX) <= 100:
        return ModelChoice("openai", text.removeprefix(OPENAI_PREFIX))
    raise ValueError(f"{entry!r} is not a model: write 'local' or 'openai:<model name>'")


class ModelCatalog:
    """The operator's list of models, in the order the panel offers them."""

    def __init__(self, entries: Sequence[str], *, default_openai_model: str) -> None:
        self.choices = [parse_entry(entry) for entry in entries]
        self._default_openai_model = default_openai_model

    @classmethod
    def bundled_only(cls) -> ModelCatalog:
        return cls([BUNDLED], default_openai_model="")

    def resolve(self, provider: str, model: str) -> ModelChoice:
        """The listed model an assistant's ``provider`` and ``model`` name, or ``InvalidInput``."""
        if provider == "local":
            wanted = ModelChoice("local", "")  # the bundled model, whatever name was given
        else:
            wanted = ModelChoice(provider, model or self._default_openai_model)
        if wanted not in self.choices:
            offered = ", ".join(choice.value for choice in self.choices) or "none"
            raise InvalidInput(
                f"the model {wanted.value!r} is not offered on this server; choose one of: "
                f"{offered}",
                field="model",
            )
        return wanted

    def check_tokenizers(
        self, tokenizer: str | None, per_model: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Load each listed server model's tokenizer: ``ValueError`` names one that fails.

        ``per_model`` (CHATMETER_OPENAI_TOKENIZERS) gives a server model its own;
        the others are counted with ``tokenizer`` (CHATMETER_OPENAI_TOKENIZER).
        Returns what counts each one (``{"openai:qwen": "gguf:/models/qwen.gguf"}``).
        """
        from chatmeter.llm.tokenizers import resolve_tokenizer

        own = dict(per_model or {})
        served = list(dict.fromkeys(c.model for c in self.choices if c.provider == "openai"))
        _refuse_unlisted(own, served)
        _refuse_one_vocabulary(tokenizer, [model for model in served if model not in own])
        counted_with: dict[str, str] = {}
        for model in served:
            spec = own.get(model, tokenizer)
            try:
                counted_with[OPENAI_PREFIX + model] = resolve_tokenizer(spec, model=model).name
            except ValueError as exc:  # what llama.cpp raises for a file it cannot read, too
                where = (
                    "its entry in CHATMETER_OPENAI_TOKENIZERS"
                    if model in own
                    else "set CHATMETER_OPENAI_TOKENIZER or give it an entry in "
                    "CHATMETER_OPENAI_TOKENIZERS"
                )
                raise ValueError(
                    f"CHATMETER_MODELS lists {OPENAI_PREFIX + model!r}, whose tokens cannot be "
                    f"counted: {exc} ({where})"
                ) from exc
        return counted_with


def _refuse_unlisted(own: Mapping[str, str], served: Sequence[str]) -> None:
    """A tokenizer for a model that is not listed: most likely a typo, which would leave
    the model it meant counted with the default, silently."""
    unlisted = [model for model in own if model not in served]
    if unlisted:
        listed = ", ".join(OPENAI_PREFIX + model for model in served) or "none"
        raise ValueError(
            f"CHATMETER_OPENAI_TOKENIZERS names {', '.join(map(repr, unlisted))}, which "
            f"CHATMETER_MODELS does not list as a server model (it lists: {listed}); "
            "write each name as it follows 'openai:' there"
        )


def _refuse_one_vocabulary(tokenizer: str | None, shared: Sequence[str]) -> None:
    """A default that names one vocabulary (``gguf:PATH``, ``tiktoken:ENCODING``) counts
    every model ``shared`` (without a tokenizer of its own) with it: with two of them, one
    would be charged in another model's tokens."""
    if tokenizer and ":" in tokenizer and len(shared) > 1:
        raise ValueError(
            f"CHATMETER_OPENAI_TOKENIZER={tokenizer} counts every server model's tokens "
            f"with one vocabulary, but CHATMETER_MODELS lists {len(shared)} without one "
            f"of their own: {', '.join(OPENAI_PREFIX + model for model in shared)}; give "
            "each its own in CHATMETER_OPENAI_TOKENIZERS (a JSON object: model name to "
            "tokenizer), or list one of them"
        )
