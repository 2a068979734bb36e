"""`redis.start_local`: a redis-server for this process only (the demo), stopped with it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlparse

from .errors import ConfigError
from .logs import get
from .preflight import bindable

log = get(__name__)


class LocalRedis:
    def __init__(self, url: str):
        self.url = url
        self.process: subprocess.Popen | None = None
        self.folder: tempfile.TemporaryDirectory | None = None

    def start(self) -> None:
        url = urlparse(self.url)
        if shutil.which("redis-server") is None:
            raise ConfigError("redis.start_local: redis-server is not installed (apt-get install redis-server)")
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise ConfigError("redis.start_local: only for a redis URL on 127.0.0.1")
        port = url.port or 6379
        # Someone else's server on the port would answer our readiness probe below: refuse instead of using it.
        bindable("redis.start_local", "127.0.0.1", port, what="a local redis-server")
        # An empty folder of its own: a dump.rdb lying in the current folder would otherwise be loaded.
        self.folder = tempfile.TemporaryDirectory(prefix="monitor-redis-")
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", self.folder.name]
        if shutil.which("setpriv"):  # util-linux: the server dies with us even if we are killed outright
            command = ["setpriv", "--pdeathsig", "TERM", "--", *command]
        # Its own process group: a Ctrl-C in the terminal reaches the daemon only, which publishes its
        # `closed` events to this server before stopping it (it would otherwise die first, with them unsent).
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        process_group=0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                log.info("started a local redis-server for this run", port=port)
                return
            except OSError:
                if self.process.poll() is not None:
                    raise ConfigError(f"redis.start_local: redis-server could not start on port {port} "
                                      f"(already in use?)") from None
                time.sleep(0.05)
        raise ConfigError(f"redis.start_local: redis-server did not answer on port {port} within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
        if getattr(self, "folder", None) is not None:
            self.folder.cleanup()
            self.folder = None
