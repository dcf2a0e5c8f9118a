from tests.chat.conftest import visitor

__all__ = ["visitor"]
