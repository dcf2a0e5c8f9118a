"""The real embedding model, loaded once for the whole run (it takes a few seconds)."""

from __future__ import annotations

import pytest

from chatmeter.knowledge.embeddings import MiniLMEmbedder


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()
