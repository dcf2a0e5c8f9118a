"""The bundled model in-process, loaded once for the whole run (see ``tests.support.llm``;
the OpenAI-compatible server is the root conftest's ``llama_server``)."""

from __future__ import annotations

import pytest

from chatmeter.llm.local import LocalProvider
from tests.support.llm import THREADS


@pytest.fixture(scope="session")
def local() -> LocalProvider:
    provider = LocalProvider(n_threads=THREADS)
    provider.load()
    return provider
