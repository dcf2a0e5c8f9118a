"""Providers by name, as configuration and assistants refer to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatmeter.llm.base import Provider


def _local(**options: Any) -> Provider:
    from chatmeter.llm.local import LocalProvider

    return LocalProvider(**options)


def _openai(**options: Any) -> Provider:
    from chatmeter.llm.openai_compat import OpenAIProvider

    return OpenAIProvider(**options)


# Imported on demand: the web process need not load llama.cpp to talk to OpenAI.
_FACTORIES: dict[str, Callable[..., Provider]] = {"local": _local, "openai": _openai}
PROVIDER_NAMES = tuple(_FACTORIES)


def make_provider(name: str, **options: Any) -> Provider:
    """A provider by name ("local" or "openai") with its keyword options.

    ``local``: ``model_path``, ``n_ctx``, ``n_threads``, ``n_threads_batch``.
    ``openai``: ``base_url``, ``model``, ``api_key``, ``tokenizer``,
    ``context_window``, ``timeout``, ``max_retries`` and the rest of
    ``OpenAIProvider``'s keywords.
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown provider {name!r}; use one of {', '.join(PROVIDER_NAMES)}"
        ) from None
    return factory(**options)
