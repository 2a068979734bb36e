"""Real servers for tests, on 127.0.0.1 and free ports, started and stopped by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from urllib.parse import quote


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real `redis-server` that a test can stop and start again on the same port."""

    def __init__(self, port: int | None = None, password: str | None = None):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run .ci/setup")
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


RTSP_SCRIPT = __import__("pathlib").Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    """GStreamer's RTSP server (Debian's python3 with gi), restartable on the same port."""

    def __init__(self, file: str | None = None, port: int | None = None, user: str | None = None,
                 password: str | None = None, size: str = "640x480"):
        self.file, self.port, self.user, self.password, self.size = file, port or free_port(), user, password, size
        self.process: subprocess.Popen | None = None

    def url(self, mount: str = "live", credentials: str | None = None) -> str:
        auth = f"{credentials}@" if credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{mount}"

    def start(self) -> "RtspServer":
        args = ["/usr/bin/python3", str(RTSP_SCRIPT), str(self.port), "--size", self.size]
        if self.file:
            args += ["--file", str(self.file)]
        if self.user:
            args += ["--user", self.user, "--password", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if "READY" not in line:
            self.stop()
            raise RuntimeError(f"RTSP server did not start on port {self.port}: {line!r}")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
