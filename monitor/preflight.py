"""What can be checked on this host before anything starts, so that a bad setting is one line naming its key
(exit 2) within a second, before the model loads: the spool folder (writable, not held by another daemon), the
HTTP ports, the local redis-server's port, the checkpoint files, the TLS certificate, and last (it imports torch)
the devices. `monitor run` and `monitor demo` run it first; `monitor check-config` runs it too.

Light on purpose: nothing here imports torch, aiohttp or the daemon until the devices are checked.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from .config import DEFAULT_MODEL, MonitorConfig
from .errors import ConfigError


def preflight(config: MonitorConfig) -> list[str]:
    """Every host check, in order of cost; returns what was checked (one line each) or raises ConfigError."""
    from . import tls
    from .alerts.spool import SpoolBusy, check_free

    checked = []
    folder = Path(config.alerts.spool_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        check_free(folder)
    except SpoolBusy as e:
        raise ConfigError(f"alerts.spool_dir: {e}") from None
    except OSError as e:
        raise ConfigError(f"alerts.spool_dir: cannot use {folder}: {e.strerror or e}") from None
    checked.append(f"alerts.spool_dir: {folder} is writable and free")
    if config.http.port:
        bindable("http.port", config.http.host, config.http.port)
        checked.append(f"http.port: {config.http.host}:{config.http.port} is free")
    if config.http.plain_metrics:
        host, _, port = config.http.plain_metrics.rpartition(":")
        if int(port):
            bindable("http.plain_metrics", host.strip("[]"), int(port))
            checked.append(f"http.plain_metrics: {config.http.plain_metrics} is free")
    if config.redis.start_local:
        port = urlparse(config.redis.url).port or 6379
        bindable("redis.start_local", "127.0.0.1", port, what="a local redis-server")
        checked.append(f"redis.start_local: port {port} is free")
    if config.http.tls_cert:
        tls.load(config.http.tls_cert, config.http.tls_key)  # readable, PEM, matching, not expired
        checked.append("http.tls_cert: readable, matches its key, not expired")
    for name, model in config.model_table.items():
        key = "model" if name == DEFAULT_MODEL else f"models.{name}"
        if model.path is not None and not Path(model.path).is_file():
            raise ConfigError(f"{key}.path: {model.path}: no such checkpoint file")
    from .worker.loader import check_devices, config_key  # imports torch: last

    for name, model in config.model_table.items():
        key = config_key(name)
        check_devices(model.devices, key)
        checked.append(f"{key}: devices {', '.join(model.devices)} exist" +
                       (f"; checkpoint {model.path} exists" if model.path else ""))
    return checked


def bindable(key: str, host: str, port: int, what: str = "the HTTP server") -> None:
    """ConfigError naming `key` unless `host:port` can be listened on now (as the server will: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as e:
            raise ConfigError(f"{key}: {what} cannot listen on {host}:{port}: {e.strerror or e}"
                              + (" (another monitor running?)" if e.errno == 98 else "")) from None
