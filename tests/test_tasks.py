"""Supervised tasks never end silently: a failure is logged and the task restarts, or the daemon fails."""

import asyncio
import logging

from monitor import tasks as tasks_module
from monitor.tasks import TaskSupervisor


async def test_a_failing_task_is_logged_and_restarted(monkeypatch, caplog):
    monkeypatch.setattr(tasks_module, "FIRST_DELAY_S", 0.05)
    caplog.set_level(logging.INFO)
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")
        await asyncio.sleep(3600)

    supervisor = TaskSupervisor()
    supervisor.spawn("flaky", flaky, stream_id="cam7")
    for _ in range(100):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.02)
    assert len(runs) == 3 and supervisor.running() == ["flaky"]
    failures = [r for r in caplog.records if "task failed" in r.getMessage()]
    assert len(failures) == 2 and all("cam7" in r.getMessage() and "failure" in r.getMessage() for r in failures)
    await supervisor.close()
    assert supervisor.running() == []


async def test_a_critical_task_that_ends_makes_the_daemon_fail():
    fatal = []

    async def ends():
        raise ValueError("cannot go on")

    supervisor = TaskSupervisor(on_fatal=lambda name, error: fatal.append((name, str(error))))
    supervisor.spawn("core", ends, critical=True)
    await asyncio.sleep(0.05)
    assert fatal == [("core", "cannot go on")] and supervisor.running() == []


async def test_cancelled_tasks_are_not_restarted():
    async def forever():
        await asyncio.sleep(3600)

    supervisor = TaskSupervisor()
    supervisor.spawn("a", forever)
    await supervisor.cancel("a")
    await asyncio.sleep(0.05)
    assert supervisor.running() == []


def test_the_restart_policy_doubles_and_starts_again_after_a_healthy_run():
    backoff = tasks_module.Backoff()
    delays = [backoff.next_delay(ran_s=0.1) for _ in range(8)]
    assert delays == [min(tasks_module.FIRST_DELAY_S * 2 ** i, tasks_module.MAX_DELAY_S) for i in range(8)]
    assert delays[-1] == tasks_module.MAX_DELAY_S
    assert backoff.next_delay(ran_s=tasks_module.HEALTHY_AFTER_S + 1) == tasks_module.FIRST_DELAY_S


async def test_background_work_is_held_and_its_failure_logged(caplog):
    caplog.set_level(logging.INFO)
    finished = asyncio.Event()

    async def fails():
        await asyncio.sleep(0.01)
        finished.set()
        raise RuntimeError("lost work")

    task = tasks_module.background(fails(), "cleanup", stream_id="cam3")
    assert task in tasks_module._background  # referenced until it ends: never collected mid-flight
    await finished.wait()
    await asyncio.sleep(0.01)
    assert task not in tasks_module._background
    failed = [r.getMessage() for r in caplog.records if "background work failed" in r.getMessage()]
    assert len(failed) == 1 and "cleanup" in failed[0] and "lost work" in failed[0] and "cam3" in failed[0]
