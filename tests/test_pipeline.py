"""StreamPipeline with a real tiny model, a real inference pool and a real Redis: frames in, alert events and
stream state out; new thresholds apply to open alerts; a publisher's session end closes its tracks."""

import asyncio
import json

import pytest
import redis

from monitor.faces.pipeline import FaceCropper
from monitor.metrics import DaemonMetrics
from monitor.pipeline import StreamPipeline
from tests.support.aio import wait_for
from tests.support.faces import load_crops
from tests.support.media import face_frames
from tests.support.runtime import frame_now, runtime_config, start_runtime, stop_runtime, tiny_checkpoint


@pytest.fixture
async def parts(tmp_path, redis_server):
    config = runtime_config(tiny_checkpoint(tmp_path), redis_server.url, tmp_path / "spool")
    model, publisher = await start_runtime(config)
    yield config, model, publisher, redis.Redis.from_url(redis_server.url, decode_responses=True)
    await stop_runtime(model, publisher)


def pipeline_for(config, model, publisher, stream_id="cam"):
    from prometheus_client import CollectorRegistry

    sampling, window, verdict = config.stream_settings(config.streams[0]) if config.streams else (
        None, config.window, config.verdict)
    return StreamPipeline(stream_id, FaceCropper(config.faces, template=model.face_template), model.pool, publisher,
                          window, verdict, model.tag, config.instance, config.alerts.update_interval_s,
                          DaemonMetrics(CollectorRegistry()))


async def feed(pipeline, images, fps=8.0):
    for seq, image in enumerate(images):
        await pipeline.handle(frame_now(pipeline.stream_id, seq, image))
        await asyncio.sleep(1 / fps)


def events(client):
    return [json.loads(fields["event"]) for _, fields in client.xrange("deepfake:events")]


async def test_faces_open_an_alert_and_new_thresholds_close_it_without_a_restart(parts, face_paths):
    config, model, publisher, client = parts
    pipeline = pipeline_for(config, model, publisher)
    images = list(face_frames(load_crops(face_paths[::8]), 200, size=(320, 240), face_px=120))
    feeder = asyncio.create_task(feed(pipeline, images))
    try:
        assert await wait_for(lambda: any(e["type"] == "opened" for e in events(client)), 20)
        opened = next(e for e in events(client) if e["type"] == "opened")
        assert opened["thresholds"]["suspicious"] == 0.01 and opened["stream_id"] == "cam"
        track = pipeline.tracks[opened["track_id"]]
        statistic = track.judge.statistic
        # The operator calibrated: the new bar is well above what this face scores.
        stricter = config.verdict.model_copy(update={"suspicious": 0.97, "manipulated": 0.98, "hysteresis": 0.02})
        pipeline.reconfigure(config.window, stricter, config.alerts.update_interval_s)
        assert pipeline.tracks[opened["track_id"]] is track  # the track and its open alert carry on
        assert await wait_for(lambda: any(e["type"] == "closed" for e in events(client)), 10)
    finally:
        feeder.cancel()
        await pipeline.shutdown("shutdown")
    closed = next(e for e in events(client) if e["type"] == "closed")
    print(f"statistic {statistic:.3f}: closed as {closed['close_reason']} under suspicious=0.97")
    assert statistic < 0.95
    assert closed["alert_id"] == opened["alert_id"] and closed["close_reason"] == "recovered"
    assert closed["thresholds"]["suspicious"] == 0.97  # the events say which thresholds decided
    assert closed["times"]["scored_at"] - opened["times"]["scored_at"] >= config.verdict.exit_seconds
    state = client.hgetall("deepfake:stream:cam")
    assert int(state["frames_in"]) > 0 and int(state["crops_scored"]) > 0


async def test_a_session_end_closes_its_alerts_and_a_new_session_starts_new_tracks(parts, face_paths):
    config, model, publisher, client = parts
    pipeline = pipeline_for(config, model, publisher)
    images = list(face_frames(load_crops(face_paths[:4]), 30, size=(320, 240), face_px=120))
    await feed(pipeline, images[:20])
    assert await wait_for(lambda: any(e["type"] == "opened" for e in events(client)), 20)
    first_tracks = set(pipeline.tracks)
    await pipeline.close("stream_ended")  # what the supervisor does on a SessionEnded marker
    assert not pipeline.tracks
    assert await publisher.flush(5)
    closed = [e for e in events(client) if e["type"] == "closed"]
    assert closed and all(e["close_reason"] == "stream_ended" for e in closed)
    await feed(pipeline, images[20:])
    assert pipeline.tracks and not set(pipeline.tracks) & first_tracks
    await pipeline.shutdown("shutdown")


async def test_a_stream_of_faces_too_small_to_judge_abstains_and_never_alerts(parts, face_paths):
    config, model, publisher, client = parts
    pipeline = pipeline_for(config, model, publisher)  # suspicious = 0.01: any scored face would alert
    images = list(face_frames(load_crops(face_paths[::8]), 24, size=(640, 480), face_px=36))
    await feed(pipeline, images)
    status = pipeline.status()
    pipeline._push_state(force=True)
    assert await publisher.flush(5)
    state = client.hgetall("deepfake:stream:cam")
    await pipeline.shutdown("shutdown")
    print(f"verdict {status['verdict']}, abstain_reason {status['abstain_reason']}, tracks {status['tracks']}")
    assert status["verdict"] == "insufficient_evidence" and status["abstain_reason"] == "too_small"
    assert state["verdict"] == "insufficient_evidence" and state["abstain_reason"] == "too_small"
    assert status["crops_scored"] == 0 and client.xlen("deepfake:events") == 0
