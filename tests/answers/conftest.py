"""The bundled model under a recorder, as the chat tests have it."""

from __future__ import annotations

import pytest

from chatmeter.context import Context
from tests.chat.shop import Recording, install


@pytest.fixture
def model(ctx: Context) -> Recording:
    """The bundled model as ``ctx`` runs it, recording every generation it is asked for."""
    return install(ctx)
