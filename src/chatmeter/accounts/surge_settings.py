"""An account's surge alert settings: the multiple of an assistant's typical day above
which it is told, and the minimum tokens today (``chatmeter.chat.surges`` applies them).

The multiple is kept in tenths (30 = 3×) so that 1.5× stays exact in an integer column.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from chatmeter.errors import InvalidInput

DEFAULT_MULTIPLE = Decimal("3")
MIN_MULTIPLE = Decimal("1.5")
MAX_MULTIPLE = Decimal("100")
DEFAULT_MIN_TOKENS = 2000
MAX_MIN_TOKENS = 1_000_000_000


def parse_multiple(value: object) -> int:
    """A multiple such as 3 or "2.5" → tenths (30, 25); within 1.5–100, one decimal."""
    try:
        number = Decimal(str(value).strip())
    except (ArithmeticError, InvalidOperation):
        number = Decimal("NaN")
    if isinstance(value, bool) or not number.is_finite():
        raise InvalidInput("the surge multiple must be a number such as 3", field="surge_multiple")
    if not MIN_MULTIPLE <= number <= MAX_MULTIPLE:
        raise InvalidInput(
            f"the surge multiple must be between {MIN_MULTIPLE} and {MAX_MULTIPLE}",
            field="surge_multiple",
        )
    tenths = number * 10
    if tenths != tenths.to_integral_value():
        raise InvalidInput(
            "the surge multiple has at most one decimal, such as 2.5", field="surge_multiple"
        )
    return int(tenths)


def multiple_text(tenths: int) -> str:
    """30 → "3", 25 → "2.5"."""
    return str(Decimal(tenths) / 10).removesuffix(".0")


def check_min_tokens(value: int) -> int:
    if isinstance(value, bool) or not 0 <= value <= MAX_MIN_TOKENS:
        raise InvalidInput(
            f"the surge minimum must be 0 to {MAX_MIN_TOKENS:,} tokens", field="surge_min_tokens"
        )
    return value
