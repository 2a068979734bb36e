"""A cluster daemon (in this process, the tiny model) through a Redis outage: its cluster tasks ride it out with
a warning that says why; none of them fails or ends (which the task supervisor would log as an error)."""

import asyncio
import logging

from monitor.config import load
from monitor.daemon import Daemon
from tests.support.cluster import node_config
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import RedisServer, free_port


async def test_a_redis_outage_is_a_warning_not_a_failed_task(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    checkpoint = tiny_checkpoint(tmp_path)
    with RedisServer() as redis_server:
        path = tmp_path / "node.toml"
        path.write_text(node_config(tmp_path, "node-a", checkpoint, redis_server.url, free_port(), ttl=3.0))
        daemon = Daemon(load(path))
        await daemon.start()
        try:
            await asyncio.sleep(1.5)
            redis_server.stop()
            await asyncio.sleep(4.0)  # longer than a step and a renewal period
            redis_server.start()
            await asyncio.sleep(4.0)
        finally:
            await daemon.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    failures = [m for level, m in messages if level >= logging.ERROR and "cluster" in m]
    assert not failures, failures
    assert not [m for _, m in messages if "task ended unexpectedly" in m or "task failed" in m]
    assert any(level == logging.WARNING and "Redis unreachable" in m and "unreachable: ConnectionError" in m
               for level, m in messages), messages
    assert any("Redis reachable again" in m for _, m in messages)
