"""Real servers for tests, on 127.0.0.1 and free ports, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server run as a child process: stopped with SIGTERM (SIGKILL if it lingers), usable as a context
    manager (`with RedisServer() as redis_server:`)."""

    process: subprocess.Popen | None = None
    stop_timeout_s = 10.0

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed host's would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisServer(ServerProcess):
    """A real `redis-server` that a test can stop and start again on the same port."""

    def __init__(self, port: int | None = None, password: str | None = None, args: tuple[str, ...] = ()):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run .ci/setup")
        self.port = port or free_port()
        self.password = password
        self.args = args  # more server options, e.g. ("--replicaof", "127.0.0.1", "6379")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        # Its own empty folder: a replica's full sync writes dump.rdb, which a later server started in the same
        # folder would load.
        self.folder = self.folder if getattr(self, "folder", None) else tempfile.mkdtemp(prefix="redis-")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.folder]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self.process = subprocess.Popen([*args, *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


class SentinelSet:
    """A master, replicas, and `count` real Sentinels (`redis-server --sentinel`) watching it as `service`."""

    def __init__(self, folder: Path, replicas: int = 2, count: int = 3, service: str = "mymaster"):
        self.folder, self.service = folder, service
        self.master = RedisServer()
        self.replicas = [RedisServer(args=("--replicaof", "127.0.0.1", str(self.master.port))) for _ in range(replicas)]
        self.ports = [free_port() for _ in range(count)]
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> "SentinelSet":
        self.master.start()
        for replica in self.replicas:
            replica.start()
        for port in self.ports:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor {self.service} 127.0.0.1 "
                            f"{self.master.port} 2\nsentinel down-after-milliseconds {self.service} 1000\n"
                            f"sentinel failover-timeout {self.service} 5000\nsentinel parallel-syncs {self.service} 2\n")
            self.sentinels.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))
        import redis

        deadline = time.monotonic() + 30  # each Sentinel knows the master and has found its replicas
        for port in self.ports:
            sentinel = redis.Redis(port=port, socket_timeout=0.5, decode_responses=True)
            while True:
                try:
                    if len(sentinel.sentinel_slaves(self.service)) >= len(self.replicas):
                        break
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Sentinel on port {port} did not see {len(self.replicas)} replicas")
                time.sleep(0.1)
        return self

    def master_port(self) -> int:
        import redis

        sentinel = redis.Redis(port=self.ports[0], decode_responses=True)
        return int(sentinel.sentinel_get_master_addr_by_name(self.service)[1])

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(timeout=10)
        for server in (self.master, *self.replicas):
            server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")


class RtspServer(ServerProcess):
    """GStreamer's RTSP server (Debian's python3 with gi), restartable on the same port."""

    stop_timeout_s = 5.0

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



RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


class RtmpServer(ServerProcess):
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


def push_rtmp(path: str, url: str, stop, publishing=None) -> None:
    """Publish an H.264 MP4 to an RTMP URL in real time, looping, until `stop` (a threading.Event) is set;
    `publishing` (an Event), when given, is set once the first packet is out. Without re-encoding: the file's
    packets go out as FLV. Run it in a thread (PyAV releases the GIL)."""
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
                if publishing is not None:
                    publishing.set()
            lap += 1
    finally:
        out.close()
        source.close()
