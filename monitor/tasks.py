"""Supervised long-lived tasks: none of them may end silently.

Like arq's worker, a finished task is removed and its result read, so its error surfaces. A task that raises
(or returns, though it should run forever) is logged with its name and started again after a delay that
doubles up to `MAX_DELAY_S`; a task marked `critical` instead makes the whole daemon fail loudly through
`on_fatal`. `Backoff` is that restart policy, the one every restart in the daemon follows (a stream's frame pump
too). Short work started from a callback goes through `background`, which keeps it referenced and logs its error:
nothing is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .logs import get

log = get(__name__)
FIRST_DELAY_S, MAX_DELAY_S, HEALTHY_AFTER_S = 1.0, 60.0, 60.0
_background: set[asyncio.Task] = set()


class Backoff:
    """Restart delays: FIRST_DELAY_S, doubling up to MAX_DELAY_S; work that ran HEALTHY_AFTER_S before it failed
    is a new failure, not a crash loop, and starts again from the first delay."""

    def __init__(self):
        self.failures = 0

    def next_delay(self, ran_s: float) -> float:
        self.failures = 1 if ran_s > HEALTHY_AFTER_S else self.failures + 1
        return min(FIRST_DELAY_S * 2 ** (self.failures - 1), MAX_DELAY_S)


def background(coro: Coroutine[Any, Any, None], name: str, **fields) -> asyncio.Task:
    """Run `coro` without waiting for it, held until it ends; its error is logged with `name` and `fields`."""
    task = asyncio.create_task(coro, name=name)
    _background.add(task)

    def done(task: asyncio.Task) -> None:
        _background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("background work failed", task=name, error=f"{type(error).__name__}: {error}", exc_info=error,
                      **fields)

    task.add_done_callback(done)
    return task


class TaskSupervisor:
    def __init__(self, on_fatal: Callable[[str, BaseException | None], None] | None = None):
        self.on_fatal = on_fatal
        self._tasks: dict[str, asyncio.Task] = {}
        self._closing = False

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]], critical: bool = False, **fields) -> None:
        """Run `factory()` as task `name` for as long as the supervisor lives. `fields` go on its log lines."""
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already running")
        self._start(name, factory, critical, fields, Backoff())

    def _start(self, name: str, factory, critical: bool, fields: dict, backoff: Backoff) -> None:
        started = time.monotonic()
        task = asyncio.create_task(factory(), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._finished(t, name, factory, critical, fields, backoff, started))

    def _finished(self, task: asyncio.Task, name: str, factory, critical: bool, fields: dict, backoff: Backoff,
                  started: float) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if task.cancelled() or self._closing:
            return
        error = task.exception()
        if error is not None:
            log.error("task failed", task=name, error=f"{type(error).__name__}: {error}", exc_info=error, **fields)
        else:
            log.error("task ended unexpectedly", task=name, **fields)
        if critical:
            if self.on_fatal is not None:
                self.on_fatal(name, error)
            return
        delay = backoff.next_delay(time.monotonic() - started)
        log.warning("restarting task", task=name, in_s=delay, **fields)
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._restart, name, factory, critical, fields, backoff)

    def _restart(self, name: str, factory, critical: bool, fields: dict, backoff: Backoff) -> None:
        if not self._closing and name not in self._tasks:
            self._start(name, factory, critical, fields, backoff)

    def running(self) -> list[str]:
        return sorted(self._tasks)

    async def cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait for them (bounded)."""
        self._closing = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
