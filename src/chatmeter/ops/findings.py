"""What a doctor's check finds: ok, warn or fail, what it saw, and what to do about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but not as a production installation should
    FAIL = "fail"  # must be fixed before serving customers: ``chatmeter doctor`` exits 1


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status.value}


def ok(check: str, message: str) -> Finding:
    return Finding(check, Status.OK, message)


def warn(check: str, message: str, fix: str) -> Finding:
    return Finding(check, Status.WARN, message, fix)


def fail(check: str, message: str, fix: str) -> Finding:
    return Finding(check, Status.FAIL, message, fix)
