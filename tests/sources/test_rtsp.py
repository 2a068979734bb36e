"""RTSP ingest against GStreamer's real RTSP server (and raw TCP servers that misbehave on purpose)."""

import asyncio
import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from monitor.sources import ERROR, RECONNECTING, RUNNING, PyAVSource, SourceSettings
from tests.support.aio import collect, wait_for
from tests.support.servers import RtspServer

FAST = dict(backoff_initial_s=0.2, backoff_max_s=1.0, backoff_fatal_s=3.0, open_timeout_s=3.0, stall_timeout_s=2.0)


@pytest.fixture
def rtsp():
    server = RtspServer().start()
    yield server
    server.stop()


async def test_live_stream_is_sampled_at_the_configured_rate(rtsp):
    source = PyAVSource("cam", rtsp.url(), SourceSettings(sample_fps=5, **FAST))
    source.start()
    assert await wait_for(lambda: source.state == RUNNING, 10)
    frames = await collect(source, 3.0)
    await source.stop()
    rate = len(frames) / 3.0
    print(f"emitted {rate:.1f} frames/s at sample_fps=5; decoded {source.stats.frames_decoded} frames")
    assert 3.5 <= rate <= 6.5
    assert source.stats.frames_decoded >= 25 * 3 * 0.6  # every frame is decoded, not only sampled ones
    assert [f.seq for f in frames] == sorted(f.seq for f in frames)
    assert all(b.captured_at > a.captured_at for a, b in zip(frames, frames[1:]))
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8
    pts = [f.pts for f in frames if f.pts is not None]
    assert pts == sorted(pts)


def open_sockets() -> int:
    """Sockets this process holds (Linux)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile (the listing's own descriptor, among others)
            pass
    return count


async def test_five_server_restarts_reconnect_five_times_without_leaks(rtsp):
    threads_before = threading.active_count()
    sockets_before = open_sockets()
    source = PyAVSource("cam", rtsp.url(), SourceSettings(sample_fps=10, **FAST))
    source.start()
    assert await wait_for(lambda: source.stats.frames_emitted > 3, 10)
    for restart in range(5):
        rtsp.stop()
        assert await wait_for(lambda: source.state == RECONNECTING, 10), source.state
        await asyncio.sleep(0.3)
        rtsp.start()
        emitted = source.stats.frames_emitted
        assert await wait_for(lambda: source.stats.frames_emitted > emitted + 3, 15), f"no frames after restart {restart}"
    assert source.stats.reconnects == 5
    await source.stop()
    assert open_sockets() <= sockets_before  # every session's connection was closed
    # The reader thread is gone and no FFmpeg/PyAV thread piled up across the restarts.
    assert not any(t.name.startswith("reader-") for t in threading.enumerate())
    assert threading.active_count() <= threads_before + 1  # + the loop's executor thread that joined the reader


async def test_silent_server_times_out_without_blocking_the_loop():
    async def silent(reader, writer):
        await asyncio.sleep(60)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lags = []

    async def ticker():
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - t - 0.05)

    tick = asyncio.create_task(ticker())
    source = PyAVSource("silent", f"rtsp://127.0.0.1:{port}/x", SourceSettings(**{**FAST, "open_timeout_s": 2.0}))
    start = time.monotonic()
    source.start()
    assert await wait_for(lambda: source.reason is not None, 8)
    elapsed = time.monotonic() - start
    await source.stop()
    tick.cancel()
    server.close()
    print(f"silent server: classified {source.reason!r} after {elapsed:.2f} s; max loop lag {max(lags) * 1e3:.1f} ms")
    assert source.reason == "timeout"
    assert elapsed < 2.0 + 1.5
    assert max(lags) < 0.25


async def test_stall_mid_stream_restarts_within_bound(rtsp):
    """A proxy that stops forwarding after a while but keeps the connection open."""
    forward = {"on": True}

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                while not forward["on"]:
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer):
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", rtsp.port)
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    source = PyAVSource("cam", f"rtsp://127.0.0.1:{port}/live", SourceSettings(sample_fps=5, **FAST))
    source.start()
    assert await wait_for(lambda: source.stats.frames_emitted > 3, 10)
    forward["on"] = False
    stalled_at = time.monotonic()
    assert await wait_for(lambda: source.stats.stalls >= 1, 10)
    detected = time.monotonic() - stalled_at
    forward["on"] = True
    emitted = source.stats.frames_emitted
    assert await wait_for(lambda: source.stats.frames_emitted > emitted + 3, 15)
    await source.stop()
    proxy.close()
    print(f"stall detected after {detected:.2f} s (stall_timeout_s=2.0)")
    # The read timeout fires stall_timeout_s after the last byte; frames already in flight add a little.
    assert detected < 2.0 + 1.0


async def test_a_frozen_server_is_a_stall_within_the_timeout_and_no_stale_frame_follows(rtsp):
    """SIGSTOP the server with the session open: at its read timeout FFmpeg hands over one last buffered packet;
    that packet must not come out as a fresh frame, and the stall must not wait for a second timeout."""
    source = PyAVSource("cam", rtsp.url(), SourceSettings(sample_fps=5, **{**FAST, "stall_timeout_s": 3.0}))
    source.start()
    assert await wait_for(lambda: source.state == RUNNING, 10)
    received = []

    async def read():
        async for frame in source.frames():
            received.append((time.monotonic(), frame))

    reader = asyncio.create_task(read())
    await asyncio.sleep(2.0)
    os.kill(rtsp.process.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        assert await wait_for(lambda: source.status()["reason"] == "stall", 10)
        detected = time.monotonic() - frozen
        await asyncio.sleep(1.5)  # frozen a while longer: nothing may come out meanwhile
        late = [(round(t - frozen, 2), f.pts) for t, f in received if t > frozen + 0.5]
    finally:
        os.kill(rtsp.process.pid, signal.SIGCONT)
    print(f"frozen server: stall reported after {detected:.2f} s (stall_timeout_s=3.0); frames after the freeze: "
          f"{late}")
    assert detected <= 3.0 + 1.0
    assert source.stats.stalls >= 1
    assert not late, "a frame decoded from data sent before the freeze was emitted as new"
    frames_before = len(received)
    assert await wait_for(lambda: len(received) > frames_before + 3, 20)  # and it recovers once the server resumes
    await source.stop()
    reader.cancel()


async def test_failures_are_classified_while_other_streams_run(rtsp):
    async def garbage(reader, writer):
        writer.write(b"\x00\xffHELLO this is not RTSP\r\n\r\n" * 50)
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    junk = await asyncio.start_server(garbage, "127.0.0.1", 0)
    junk_port = junk.sockets[0].getsockname()[1]
    frames = {}

    async def pump(source):
        async for frame in source.frames():
            frames[frame.stream_id] = frames.get(frame.stream_id, 0) + 1

    sources = {"healthy": PyAVSource("healthy", rtsp.url(), SourceSettings(sample_fps=5, **FAST)),
               "missing": PyAVSource("missing", rtsp.url("nope"), SourceSettings(**FAST)),
               "garbage": PyAVSource("garbage", f"rtsp://127.0.0.1:{junk_port}/x", SourceSettings(**FAST)),
               "refused": PyAVSource("refused", "rtsp://127.0.0.1:9/x", SourceSettings(**FAST))}
    pumps = []
    for source in sources.values():
        source.start()
        pumps.append(asyncio.create_task(pump(source)))
    assert await wait_for(lambda: sources["missing"].reason == "not_found" and sources["refused"].reason == "refused"
                          and sources["garbage"].reason is not None and frames.get("healthy", 0) > 0, 15)
    assert sources["refused"].state == RECONNECTING  # transient failures keep retrying with backoff
    assert sources["missing"].state == ERROR  # not-found backs off for minutes, shown as its own state
    assert sources["garbage"].reason in ("protocol", "timeout")
    before = frames.get("healthy", 0)
    await asyncio.sleep(1.0)
    assert frames.get("healthy", 0) > before  # the others never disturbed it
    listed = {s["id"]: s for s in (source.status() for source in sources.values())}
    assert listed["missing"]["state"] == "error" and listed["healthy"]["state"] == "running"
    assert listed["missing"]["reason"] == "not_found" and listed["healthy"]["connection_quality"] != "down"
    await asyncio.gather(*(source.stop() for source in sources.values()))
    await asyncio.wait_for(asyncio.gather(*pumps), 5)  # every pump ends once its source stops
    junk.close()


async def test_credentials_never_appear_in_logs_state_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    with RtspServer(user="admin", password="pa55word") as server:
        good = PyAVSource("good", server.url(credentials="admin:pa55word"), SourceSettings(**FAST))
        wrong = PyAVSource("wrong", server.url(credentials="admin:s3cr3t-xyz"), SourceSettings(**FAST))
        refused = PyAVSource("refused", "rtsp://admin:s3cr3t-xyz@127.0.0.1:9/x", SourceSettings(**FAST))
        for s in (good, wrong, refused):
            s.start()
        assert await wait_for(lambda: good.state == RUNNING and wrong.reason == "auth" and refused.reason, 15)
        statuses = [s.status() for s in (good, wrong, refused)]
        assert wrong.state == ERROR  # auth failures back off for minutes, shown as their own state
        for s in (good, wrong, refused):
            await s.stop()
    text = caplog.text + repr(statuses)
    assert "s3cr3t-xyz" not in text and "pa55word" not in text
    assert "admin:***@" in repr(statuses)


async def test_keyframe_mode_decodes_only_keyframes(rtsp):
    source = PyAVSource("cam", rtsp.url(), SourceSettings(sample_fps=25, mode="keyframes", **FAST))
    source.start()
    assert await wait_for(lambda: source.state == RUNNING, 10)
    decoded_at_start = source.stats.frames_decoded
    frames = await collect(source, 4.0)
    await source.stop()
    decoded = source.stats.frames_decoded - decoded_at_start
    print(f"keyframe mode: {decoded} frames decoded in 4 s (key-int 25 at 25 fps), {len(frames)} emitted")
    assert 2 <= decoded <= 7  # about one keyframe a second, not 100 frames
    assert len(frames) <= source.stats.frames_decoded
    assert all(f.keyframe for f in frames)
