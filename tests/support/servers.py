"""Real servers for tests, on 127.0.0.1 and free ports, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
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


RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")


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


RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


class RtmpServer:
    """nginx with its RTMP module (Debian's libnginx-mod-rtmp): a real RTMP server that publishers push to
    (`rtmp://127.0.0.1:PORT/live/NAME`) and players pull from."""

    def __init__(self, folder, port: int | None = None):
        if shutil.which("nginx") is None or not os.path.exists(RTMP_MODULE):
            raise RuntimeError("nginx with the RTMP module is not installed: run .ci/setup")
        self.folder, self.port = Path(folder), port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, name: str = "cam") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def start(self) -> "RtmpServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "nginx.conf").write_text(f"""
load_module {RTMP_MODULE};
daemon off;
master_process off;
worker_processes 1;
error_log {self.folder}/error.log warn;
pid {self.folder}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{self.port}; application live {{ live on; }} }} }}
""")
        self.process = subprocess.Popen(["nginx", "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx-rtmp did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def push_rtmp(path: str, url: str, stop) -> None:
    """Publish an H.264 MP4 to an RTMP URL in real time, looping, until `stop` (a threading.Event) is set.
    Without re-encoding: the file's packets go out as FLV. Run it in a thread (PyAV releases the GIL)."""
    import av

    source = av.open(path)
    video = source.streams.video[0]
    out = av.open(url, "w", format="flv")
    stream = out.add_stream_from_template(video)
    duration = float(video.duration * video.time_base) if video.duration else 1.0
    started, lap = time.monotonic(), 0
    try:
        while not stop.is_set():
            source.seek(0)
            for packet in source.demux(video):
                if packet.dts is None or stop.is_set():
                    continue
                at = lap * duration + float(packet.pts * video.time_base)
                if at > time.monotonic() - started:
                    stop.wait(at - (time.monotonic() - started))
                shift = int(lap * duration / video.time_base)
                packet.pts, packet.dts, packet.stream = packet.pts + shift, packet.dts + shift, stream
                out.mux(packet)
            lap += 1
    finally:
        out.close()
        source.close()
