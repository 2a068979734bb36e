"""StreamSupervisor: the one owner of running streams, with real sources, a real tiny model and a real Redis."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from monitor import tasks as tasks_module
from monitor.config import StreamConfig
from monitor.metrics import DaemonMetrics
from monitor.supervisor import API, FILE, StreamExists, StreamSupervisor
from tests.support.aio import wait_for
from tests.support.faces import face_paths, load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.runtime import runtime_config, start_runtime, stop_runtime, tiny_checkpoint


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("supervisor")
    return str(write_mp4(folder / "faces.mp4", face_frames(load_crops(face_paths()[::8]), 50, size=(320, 240),
                                                          face_px=120)))


@pytest.fixture
async def supervisor(tmp_path, redis_server):
    config = runtime_config(tiny_checkpoint(tmp_path), redis_server.url, tmp_path / "spool",
                            sampling={"sample_fps": 4, "loop": True})
    model, publisher = await start_runtime(config)
    supervisor = StreamSupervisor(config, model, publisher, DaemonMetrics(CollectorRegistry()))
    yield supervisor
    await supervisor.stop_sources()
    await supervisor.close()
    await stop_runtime(model, publisher)


def stream(stream_id, url, **overrides):
    return StreamConfig(id=stream_id, url=url, **overrides)


async def test_apply_changes_streams_by_difference_and_never_touches_another_origins(supervisor, clip):
    outcome = await supervisor.apply({"a": stream("a", clip), "b": stream("b", clip), "w": stream("w", "whip")}, FILE)
    assert outcome == {"a": "added", "b": "added", "w": "added"}
    await supervisor.add(stream("api1", clip), API)
    with pytest.raises(StreamExists):
        await supervisor.add(stream("api1", clip), API)
    assert await wait_for(lambda: all(supervisor.status(s)["state"] == "running" for s in ("a", "b", "api1")), 10)
    assert supervisor.status("w")["state"] == "waiting_for_publisher" and supervisor.whip_source("w") is not None
    a, api1, w = supervisor.handles["a"], supervisor.handles["api1"], supervisor.handles["w"]
    a_pipeline, a_source, w_source = a.pipeline, a.source, w.source

    # The file now: a with new sampling and new thresholds, b gone, c new; w samples faster.
    outcome = await supervisor.apply({"a": stream("a", clip, sampling={"sample_fps": 2}, verdict={"suspicious": 0.5}),
                                      "c": stream("c", clip), "w": stream("w", "whip", sampling={"sample_fps": 6})},
                                     FILE)
    assert outcome == {"b": "removed", "a": "restarted_reader", "c": "added", "w": "updated"}
    assert supervisor.handles["a"].pipeline is a_pipeline and supervisor.handles["a"].source is not a_source
    assert a_pipeline.policy.suspicious == 0.5
    assert supervisor.handles["w"].source is w_source and w_source.sample_fps == 6  # a publisher would stay on
    assert supervisor.handles["api1"] is api1 and supervisor.status("api1")["origin"] == "api"
    assert sorted(supervisor.ids()) == ["a", "api1", "c", "w"]

    # Only thresholds: the same reader and pipeline. A new URL: the stream starts again.
    outcome = await supervisor.apply({"a": stream("a", clip, sampling={"sample_fps": 2}), "c": stream("c", clip + "#x"),
                                      "w": stream("w", "whip", sampling={"sample_fps": 6})}, FILE)
    assert outcome == {"a": "updated", "c": "restarted", "w": "unchanged"}
    assert supervisor.handles["a"].pipeline is a_pipeline and a_pipeline.policy.suspicious == 0.01
    assert await supervisor.remove("api1") and not await supervisor.remove("api1")


async def test_a_failing_frame_pump_shows_its_stream_in_error_while_the_others_score(supervisor, clip, monkeypatch):
    monkeypatch.setattr(tasks_module, "FIRST_DELAY_S", 0.5)
    await supervisor.apply({"good": stream("good", clip), "bad": stream("bad", clip)}, FILE)
    bad = supervisor.handles["bad"]

    def broken(frame):  # a bug in the bad stream's frame handling (injected): the pump raises
        raise RuntimeError("injected failure in frame handling")

    bad.pipeline._crop = broken
    assert await wait_for(lambda: supervisor.status("bad")["state"] == "error", 10)
    status = supervisor.status("bad")
    assert status["reason"] == "internal" and "injected failure" in status["detail"]
    scored = supervisor.status("good")["crops_scored"]
    await asyncio.sleep(2.0)
    assert supervisor.status("good")["crops_scored"] > scored  # the others run on
    # It starts again after its backoff, as a new pipeline (the broken one is gone).
    assert await wait_for(lambda: supervisor.handles["bad"] is not bad, 10)
    assert await wait_for(lambda: supervisor.status("bad")["state"] == "running", 10)
    assert await wait_for(lambda: supervisor.status("bad")["crops_scored"] > 0, 10)


async def test_a_whep_stream_gets_its_token_and_runs(supervisor, tmp_path):
    from monitor.sources.webrtc import restrict_host_addresses
    from tests.support.whep_server import WhepServer

    restrict_host_addresses(["127.0.0.1"])
    clip = write_mp4(tmp_path / "clip.mp4", face_frames(load_crops(face_paths()[:1]), 50, size=(320, 240)))
    server = await WhepServer({"cam": (str(clip), "H264")}, token="T0ken@whep").start()
    try:
        await supervisor.apply({"w": stream("w", server.url("cam"), token="T0ken@whep"),
                                "bad": stream("bad", server.url("cam"), token="wrong")}, FILE)
        assert await wait_for(lambda: supervisor.status("w")["state"] == "running", 20), supervisor.status("w")
        assert await wait_for(lambda: supervisor.status("bad")["reason"] == "auth", 10)
        assert await wait_for(lambda: supervisor.status("w")["crops_scored"] > 0, 20)
        assert "T0ken" not in str(supervisor.statuses())
    finally:
        await supervisor.stop_sources()
        await server.stop()


async def test_a_reload_turns_recording_and_the_drift_watch_on_and_off(supervisor, clip, redis_server):
    import redis

    from monitor.config import DriftSettings, RecordSettings

    await supervisor.apply({"a": stream("a", clip)}, FILE)
    pipeline = supervisor.handles["a"].pipeline
    assert not pipeline.record and pipeline.drift is None
    base = supervisor.config
    await supervisor.reconfigure(base.model_copy(update={
        "record": RecordSettings(enabled=True), "drift": DriftSettings(enabled=True, baseline=0.2, min_crops=10)}))
    assert pipeline.drift is not None and pipeline.drift.baseline == 0.2 and not pipeline.record  # not opted in
    outcome = await supervisor.apply({"a": stream("a", clip, record=True, drift_baseline=0.3)}, FILE)
    assert outcome == {"a": "updated"} and pipeline.record and pipeline.drift.baseline == 0.3
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert await wait_for(lambda: client.xlen("deepfake:scores") >= 3, 20)
    record = client.xrange("deepfake:scores", count=1)[0][1]
    assert record["stream_id"] == "a" and 0 <= float(record["p_fake"]) <= 1 and float(record["q_sharpness"]) > 0

    pipeline.drift.add(0.9, 1_790_000_000.0)  # counted hours survive a new baseline
    hours = {h: list(c) for h, c in pipeline.drift.hours.items()}
    await supervisor.apply({"a": stream("a", clip, record=True, drift_baseline=0.4)}, FILE)
    assert pipeline.drift.baseline == 0.4 and pipeline.drift.hours == hours
    await supervisor.reconfigure(base)
    assert not pipeline.record and pipeline.drift is None
