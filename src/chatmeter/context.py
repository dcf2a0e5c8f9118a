"""What every entry point (web, worker, CLI) needs: settings, database, clock, gateway."""

from __future__ import annotations

from dataclasses import dataclass

from chatmeter.billing.gateways import ManualGateway, PaymentGateway
from chatmeter.clock import Clock, FixedClock, SystemClock
from chatmeter.config import Settings
from chatmeter.db import Database


@dataclass
class Context:
    settings: Settings
    db: Database
    clock: Clock
    gateway: PaymentGateway

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
            gateway = ManualGateway(auto_approve=settings.auto_approve_payments)
        return cls(settings=settings, db=Database(settings.database_url), clock=clock,
                   gateway=gateway)

    def close(self) -> None:
        self.db.dispose()
