"""What a reload (SIGHUP) changes: a pure comparison of the running config with the new file.

Most keys apply at once. Those that need a new process (the models and their devices, the worker, the Redis
connection, the HTTP address, the spool folder, the instance id) keep their running values until a restart;
the plan names them, so the log and systemd's STATUS= can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import MonitorConfig, masked

NEEDS_RESTART = ("instance", "model", "models", "cluster", "worker", "redis", "sinks", "http.host", "http.port", "http.tls",
                 "http.tls_cert", "http.tls_key", "http.tls_dir", "http.plain_metrics", "alerts.spool_dir")


@dataclass(frozen=True)
class Change:
    key: str  # dotted; streams by id: streams.<id>.url
    old: Any  # masked: secrets never appear
    new: Any

    @property
    def needs_restart(self) -> bool:
        return any(self.key == k or self.key.startswith(k + ".") for k in NEEDS_RESTART)


@dataclass(frozen=True)
class ReloadPlan:
    changes: list[Change]
    running: MonitorConfig  # the new file, except keys that need a restart, which keep their running values

    @property
    def applied(self) -> list[Change]:
        return [c for c in self.changes if not c.needs_restart]

    @property
    def needs_restart(self) -> list[str]:
        return [c.key for c in self.changes if c.needs_restart]


def plan_reload(old: MonitorConfig, new: MonitorConfig) -> ReloadPlan:
    before, after = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    shown_before, shown_after = flatten(masked(old)), flatten(masked(new))  # compared raw, shown masked
    changes = [Change(key, shown_before.get(key), shown_after.get(key)) for key in sorted(set(before) | set(after))
               if before.get(key) != after.get(key) or (key in before) != (key in after)]
    running = new.model_copy(update={
        "instance": old.instance, "model": old.model, "models": old.models, "cluster": old.cluster,
        "worker": old.worker, "redis": old.redis,
        "sinks": old.sinks,
        "http": new.http.model_copy(update={k: getattr(old.http, k) for k in (
            "host", "port", "tls", "tls_cert", "tls_key", "tls_dir", "plain_metrics")}),
        "alerts": new.alerts.model_copy(update={"spool_dir": old.alerts.spool_dir}),
    })
    return ReloadPlan(changes, running)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; the stream list is keyed by stream id."""
    if prefix == "streams" and isinstance(value, list):
        value = {stream["id"]: stream for stream in value}
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}
