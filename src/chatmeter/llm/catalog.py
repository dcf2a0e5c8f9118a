"""The models assistants may use: the list the operator set in ``CHATMETER_MODELS``.

A customer picks a model from this list; anything else is refused when the
assistant is saved. So a typed model name can neither make the server build a
provider (and its caches) per name nor save an assistant whose every answer
fails because no tokenizer can count its tokens: each listed model's tokenizer
is loaded when the app starts (``check_tokenizers``), and a bad list stops it.

Entries: ``local`` (the bundled model) and ``openai:<model>`` (a model of the
OpenAI-compatible server at ``CHATMETER_OPENAI_BASE_URL``).
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def check_tokenizers(self, tokenizer: str | None) -> None:
        """Load each listed server model's tokenizer: ``ValueError`` names one that fails.

        A tokenizer that names one vocabulary (``gguf:PATH``, ``tiktoken:ENCODING``)
        would count every server model with it: with two listed, one of them would be
        charged in another model's tokens, so that is refused too.
        """
        from chatmeter.llm.tokenizers import TokenizerUnavailable, resolve_tokenizer

        served = list(dict.fromkeys(c.value for c in self.choices if c.provider == "openai"))
        if tokenizer and ":" in tokenizer and len(served) > 1:
            raise ValueError(
                f"CHATMETER_OPENAI_TOKENIZER={tokenizer} counts every server model's tokens "
                f"with one vocabulary, but CHATMETER_MODELS lists {len(served)}: "
                f"{', '.join(served)}; list one of them, or serve them from one Chatmeter each"
            )
        for choice in self.choices:
            if choice.provider != "openai":
                continue
            try:
                resolve_tokenizer(tokenizer, model=choice.model)
            except TokenizerUnavailable as exc:
                raise ValueError(
                    f"CHATMETER_MODELS lists {choice.value!r}, whose tokens cannot be counted: "
                    f"{exc} (set CHATMETER_OPENAI_TOKENIZER)"
                ) from exc
