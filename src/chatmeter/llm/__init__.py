"""Language-model providers with exact token counts.

``make_provider("local")`` runs the bundled SmolLM2 model in-process;
``make_provider("openai", base_url=..., model=..., api_key=...)`` talks to any
OpenAI-compatible server. Both implement ``Provider`` (see ``base``), and
``rates.charge`` turns their ``Usage`` into platform tokens.
"""

from chatmeter.llm.base import (
    ChatMessage,
    Completion,
    ContextWindowExceeded,
    GenerationRequest,
    GenerationStream,
    PartialGeneration,
    Provider,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailable,
    StreamEvent,
    TextDelta,
    Usage,
)
from chatmeter.llm.mock import MockProvider
from chatmeter.llm.rates import DEFAULT_RATE, Rate, RateCard, charge
from chatmeter.llm.registry import PROVIDER_NAMES, make_provider

__all__ = [
    "DEFAULT_RATE",
    "PROVIDER_NAMES",
    "ChatMessage",
    "Completion",
    "ContextWindowExceeded",
    "GenerationRequest",
    "GenerationStream",
    "MockProvider",
    "PartialGeneration",
    "Provider",
    "ProviderError",
    "ProviderResponseError",
    "ProviderUnavailable",
    "Rate",
    "RateCard",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "charge",
    "make_provider",
]
