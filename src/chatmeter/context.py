"""What every entry point (web, worker, CLI) needs: settings, database, clock, gateway,
and the per-process models and caches, loaded on first use."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatmeter.billing.gateways import ManualGateway, PaymentGateway
from chatmeter.clock import Clock, FixedClock, SystemClock
from chatmeter.config import Settings
from chatmeter.db import Database

if TYPE_CHECKING:
    from chatmeter.answers.modes import SentenceVectors
    from chatmeter.chat.keeper import HoldKeeper
    from chatmeter.chat.limits import ChatLimiter
    from chatmeter.chat.queue import GenerationQueue
    from chatmeter.knowledge.embeddings import Embedder
    from chatmeter.llm.base import Provider
    from chatmeter.llm.catalog import ModelCatalog
    from chatmeter.llm.rates import RateCard
    from chatmeter.retrieval.vectors import VectorCache

_lock = threading.Lock()


def payment_gateway(settings: Settings) -> PaymentGateway:
    """The gateway ``CHATMETER_PAYMENT_GATEWAY`` names."""
    if settings.payment_gateway == "stripe":
        from chatmeter.billing.stripe_gateway import StripeGateway

        return StripeGateway(settings)
    return ManualGateway(auto_approve=settings.auto_approve_payments)


@dataclass
class Context:
    settings: Settings
    db: Database
    clock: Clock
    gateway: PaymentGateway
    _embedder: Embedder | None = None
    _vectors: VectorCache | None = None
    _providers: dict[str, Provider] = field(default_factory=dict)
    _limiter: ChatLimiter | None = None
    _queues: dict[str, GenerationQueue] = field(default_factory=dict)
    _keeper: HoldKeeper | None = None
    _sentence_vectors: SentenceVectors | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        gateway: PaymentGateway | None = None,
    ) -> Context:
        if clock is None:
            clock = FixedClock(settings.now) if settings.now else SystemClock()
        if gateway is None:
            gateway = payment_gateway(settings)
        return cls(
            settings=settings, db=Database(settings.database_url), clock=clock, gateway=gateway
        )

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from chatmeter.knowledge.embeddings import MiniLMEmbedder

            with _lock:
                if self._embedder is None:
                    self._embedder = MiniLMEmbedder()
        return self._embedder

    @property
    def vectors(self) -> VectorCache:
        if self._vectors is None:
            from chatmeter.retrieval.vectors import VectorCache

            with _lock:
                if self._vectors is None:
                    self._vectors = VectorCache()
        return self._vectors

    def provider(self, name: str, model: str = "") -> Provider:
        """The language model an assistant uses; one instance per (provider, model) and process."""
        key = f"{name}:{model}"
        if key not in self._providers:
            from chatmeter.llm.registry import make_provider

            with _lock:
                if key not in self._providers:
                    self._providers[key] = make_provider(
                        name, **self._provider_options(name, model)
                    )
        return self._providers[key]

    def generation_queue(self, provider: Provider) -> GenerationQueue:
        """The queue in front of a model: one per model and process.

        The bundled model generates one answer at a time in a process; a model
        server, ``chat_concurrency`` at once from this process.
        """
        key = f"{provider.name}:{provider.model}"
        if key not in self._queues:
            from chatmeter.chat.queue import GenerationQueue

            settings = self.settings
            with _lock:
                if key not in self._queues:
                    self._queues[key] = GenerationQueue(
                        name=key,
                        slots=1 if provider.name == "local" else settings.chat_concurrency,
                        places=settings.chat_queue_size,
                        per_account=settings.queue_places_per_account,
                    )
        return self._queues[key]

    @property
    def hold_keeper(self) -> HoldKeeper:
        """Keeps the holds of this process's running chat turns from expiring."""
        if self._keeper is None:
            from chatmeter.chat.keeper import HoldKeeper

            with _lock:
                if self._keeper is None:
                    self._keeper = HoldKeeper(
                        db=self.db, clock=self.clock, ttl_seconds=self.settings.chat_hold_seconds
                    )
        return self._keeper

    def models_to_load(self) -> list[str]:
        """What a chat turn would still load in this process (``/readyz``); [] once warm.

        Looks without loading: ``chat.admission.warm_up`` loads them before serving.
        """
        missing = [] if self._embedder is not None else ["embedding model"]
        wants_local = any(choice.provider == "local" for choice in self.models.choices)
        if wants_local and not any(key.startswith("local:") for key in self._providers):
            missing.append("local model")
        return missing

    def _provider_options(self, name: str, model: str) -> dict[str, Any]:
        settings = self.settings
        if name == "local":
            return {
                "n_ctx": settings.llm_context_window,
                "n_threads": settings.llm_threads,
                "n_threads_batch": settings.llm_batch_threads,
            }
        model = model or settings.openai_model
        return {
            "base_url": settings.openai_base_url,
            "api_key": settings.openai_api_key,
            "model": model,
            "timeout": settings.openai_timeout,
            # Each server model counted in its own tokens (check_tokenizers).
            "tokenizer": settings.openai_tokenizers.get(model, settings.openai_tokenizer),
            "context_window": settings.openai_context_window,
        }

    @property
    def models(self) -> ModelCatalog:
        """The models assistants may use (``CHATMETER_MODELS``)."""
        from chatmeter.llm.catalog import ModelCatalog

        return ModelCatalog(self.settings.models, default_openai_model=self.settings.openai_model)

    @property
    def rate_card(self) -> RateCard:
        from chatmeter.llm.rates import Rate, RateCard

        return RateCard(
            {
                model: Rate.of(input=str(prompt), output=str(completion))
                for model, (prompt, completion) in self.settings.rate_card.items()
            }
        )

    @property
    def limiter(self) -> ChatLimiter:
        if self._limiter is None:
            from chatmeter.chat.limits import ChatLimiter

            with _lock:
                if self._limiter is None:
                    self._limiter = ChatLimiter(self.settings)
        return self._limiter

    @property
    def sentence_vectors(self) -> SentenceVectors:
        """The embeddings of passage sentences lately grounded against (answers.modes)."""
        if self._sentence_vectors is None:
            from chatmeter.answers.modes import SentenceVectors

            embed = self.embedder.embed  # before the lock: the embedder is made under it too
            with _lock:
                if self._sentence_vectors is None:
                    self._sentence_vectors = SentenceVectors(embed)
        return self._sentence_vectors

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
        for queue in self._queues.values():
            queue.close()
        for provider in self._providers.values():
            provider.close()
        self.db.dispose()
