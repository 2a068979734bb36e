"""Is the daemon ready, is it healthy, and the systemd watchdog that says so.

Ready: the model is loaded and warmed up, Redis answered (or the spool is open), the HTTP server listens.
Healthy: the event loop turns and the worker is not stalled with work waiting. `WATCHDOG=1` is sent only
while healthy, so `WatchdogSec=` restarts a wedged daemon and only a wedged one.
"""

from __future__ import annotations

import asyncio

from .logs import get
from .notify import Notifier

log = get(__name__)
CHECKS = ("redis_or_spool", "model", "http")


class Health:
    def __init__(self, watchdog_s: float):
        self.watchdog_s = watchdog_s
        self.checks = {name: False for name in CHECKS}
        self.ready = False
        self.pools: list = []  # each model's inference pool, set as the daemon starts
        self.supervisor = None
        self.publisher = None
        self.pending_restart: list[str] = []  # config keys changed by a reload that need a restart
        self.listeners: list[dict] = []  # the HTTP listeners that are up

    def passed(self, check: str) -> None:
        self.checks[check] = True

    def healthy(self) -> tuple[bool, str]:
        for pool in self.pools:
            if pool.stalled(self.watchdog_s):
                return False, (f"worker of model {pool.name!r} made no progress for {self.watchdog_s:.0f} s with "
                               f"work waiting")
        return True, ""

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        statuses = self.supervisor.statuses() if self.supervisor is not None else []
        running = sum(1 for s in statuses if s.get("state") == "running")
        alerting = sum(1 for s in statuses if s.get("verdict") in ("suspicious", "manipulated"))
        spooled = len(self.publisher.spool) if self.publisher is not None else 0
        line = f"{running}/{len(statuses)} streams running, {alerting} alerting, {spooled} events spooled"
        if self.pending_restart:
            line += f"; restart needed for {', '.join(self.pending_restart)}"
        return line


class Watchdog:
    """Sends READY=1 once, then STATUS= and WATCHDOG=1 every half watchdog period while healthy."""

    def __init__(self, health: Health, notifier: Notifier):
        self.health, self.notifier = health, notifier
        self.interval = (notifier.watchdog_s or 10.0) / 2

    def ready(self) -> None:
        self.notifier.send("READY=1", f"STATUS={self.health.summary()}")

    def status(self) -> None:
        self.notifier.send(f"STATUS={self.health.summary()}")

    async def run(self) -> None:
        while True:
            healthy, reason = self.health.healthy()
            if healthy:
                self.notifier.send("WATCHDOG=1", f"STATUS={self.health.summary()}")
            else:
                log.error("watchdog: not healthy, withholding WATCHDOG=1", reason=reason)
                self.notifier.send(f"STATUS=unhealthy: {reason}")
            await asyncio.sleep(self.interval)
