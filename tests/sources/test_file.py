"""File sources: pacing, looping, end of file, and bad files."""

import asyncio
import os
import time

import av
import numpy as np
import pytest

from monitor.sources import ENDED, ERROR, RUNNING, PyAVSource, SourceSettings
from tests.support.media import write_mp4


def pattern(n, size=(320, 240)):
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, (i * 4) % size[0]:(i * 4) % size[0] + 20] = 255
        frame[..., 1] = i % 256
        yield frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("clip") / "clip.mp4", pattern(50))  # 2 s at 25 fps


async def drain(source, timeout=20):
    frames = []

    async def read():
        async for frame in source.frames():
            frames.append(frame)

    await asyncio.wait_for(read(), timeout)
    return frames


async def test_realtime_file_plays_at_its_own_pace_and_ends(clip):
    source = PyAVSource("file", str(clip), SourceSettings(sample_fps=5))
    start = time.monotonic()
    source.start()
    frames = await drain(source)
    elapsed = time.monotonic() - start
    assert source.state == ENDED
    assert 1.6 <= elapsed <= 4.0, elapsed
    assert 7 <= len(frames) <= 12  # 5 fps for 2 s
    assert source.stats.frames_decoded == 50
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[0] == 0.0


async def test_fast_mode_samples_by_media_time(clip):
    source = PyAVSource("file", str(clip), SourceSettings(sample_fps=5, realtime=False))
    start = time.monotonic()
    source.start()
    # A slow consumer would miss frames (newest wins); this one keeps up by reading in a tight loop.
    frames = []
    async for frame in source.frames():
        frames.append(frame)
    assert time.monotonic() - start < 1.6
    assert source.stats.frames_emitted == 10  # media time 0, 0.2, ..., 1.8
    assert len(frames) + source.stats.dropped.get("stale", 0) == 10


async def test_loop_restarts_the_file(clip):
    source = PyAVSource("file", str(clip), SourceSettings(sample_fps=5, loop=True, backoff_initial_s=0.05))
    source.start()
    await asyncio.sleep(3.0)
    assert source.state == RUNNING and source.stats.frames_decoded > 50
    await source.stop()


async def test_corrupt_middle_keeps_playing_and_counts(clip, tmp_path):
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = os.urandom(3000)
    (tmp_path / "corrupt.mp4").write_bytes(bytes(data))
    source = PyAVSource("corrupt", str(tmp_path / "corrupt.mp4"), SourceSettings(sample_fps=25, realtime=False))
    source.start()
    await drain(source)
    print(f"corrupt middle: state {source.state}, decoded {source.stats.frames_decoded}, "
          f"dropped {dict(source.stats.dropped)}")
    assert source.state in (ENDED, ERROR)
    assert source.stats.frames_decoded > 10  # frames before and after the damage
    if source.state == ERROR:
        assert source.reason in ("codec", "protocol")


async def test_bad_files_get_classified_errors(tmp_path):
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(5000))
    with av.open(str(tmp_path / "audio.m4a"), "w") as container:  # no video stream at all
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cases = {"absent": (tmp_path / "absent.mp4", "not_found"), "garbage": (tmp_path / "garbage.mp4", "not_video"),
             "audio": (tmp_path / "audio.m4a", "codec")}
    sources = {name: PyAVSource(name, str(path), SourceSettings()) for name, (path, _) in cases.items()}
    for source in sources.values():
        source.start()
    for name, source in sources.items():
        await drain(source, timeout=10)
        assert (source.state, source.reason) == (ERROR, cases[name][1]), (name, source.detail)
    garbage = sources["garbage"].status()["detail"]
    assert f"{tmp_path / 'garbage.mp4'} is not a video" in garbage and "Errno" not in garbage


@pytest.mark.parametrize("url", ["rtsp://viewer:pa55@no-such-camera.invalid:554/stream1",
                                 "rtmp://no-such-relay.invalid/live/cam"])
async def test_a_host_that_does_not_resolve_is_named(url):
    """FFmpeg says only 'Input/output error'; the stream's reason says the name did not resolve."""
    source = PyAVSource("cam", url, SourceSettings(open_timeout_s=3))
    source.start()
    deadline = time.monotonic() + 20
    while source.state != ERROR and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    state, reason, detail = source.state, source.reason, source.status()["detail"]
    await source.stop()
    assert (state, reason) == (ERROR, "dns"), detail
    host = url.split("@")[-1].split("://")[-1].split(":")[0].split("/")[0]
    assert f"host name {host!r} does not resolve" in detail and "pa55" not in detail
