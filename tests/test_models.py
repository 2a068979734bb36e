"""Several models in one daemon (a real subprocess, RTSP in, Redis out): a stream scored by each, and a stream
with a shadow model whose verdict is published beside the model's and which never opens an alert."""

import json
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from monitor.contracts import Frame
from monitor.faces.pipeline import FaceCropper, FaceSettings
from tests.support.daemon import DaemonProcess, events, http, ready, value, wait_until
from tests.support.gend_backbones import make_gend_backbone
from tests.support.media import face_frames, write_mp4
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer, free_port

SUSPICIOUS = 0.3  # the tiny CLIP model scores the fixture faces 0.55-0.93, the tiny PE one about 0.06


@pytest.fixture(scope="module")
def assets(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("models")
    crops = [np.asarray(Image.open(p).convert("RGB")) for p in face_paths[::4]]
    clip = write_mp4(folder / "faces.mp4", face_frames(crops, 25 * 30, size=(480, 360), face_px=170))
    pe = folder / "pe" / "model.safetensors"
    make_gend_backbone(pe, "pe")
    return folder, clip, tiny_checkpoint(folder), pe


def test_shadow_crops_are_aligned_with_the_shadows_template(face_paths):
    crop = np.asarray(Image.open(face_paths[0]).convert("RGB").resize((170, 170)))
    frame = np.full((360, 480, 3), 60, np.uint8)
    frame[95:265, 155:325] = crop

    def faces(template, shadow_template=None):
        cropper = FaceCropper(FaceSettings(), template=template, shadow_template=shadow_template)
        try:
            return cropper.process(Frame("s", 0, 0.0, None, frame)).crops, cropper.shadow_template
        finally:
            cropper.close()

    (face,), _ = faces("deepfakebench", "gend")
    (gend_face,), same_template = faces("gend", "gend")
    assert face.shadow_crop is not None and face.shadow_crop.shape == face.crop.shape == (256, 256, 3)
    np.testing.assert_array_equal(face.shadow_crop, gend_face.crop)  # what a GenD model on its own would see
    assert np.abs(face.shadow_crop.astype(int) - face.crop.astype(int)).mean() > 0.5  # the templates differ
    assert same_template is None and gend_face.shadow_crop is None  # one template: one alignment


def config_text(folder: Path, clip_model: Path, pe_model: Path, http_port: int, redis_port: int, rtsp_port: int):
    url = f"rtsp://127.0.0.1:{rtsp_port}/file"
    return f"""
instance = "two-models"
[models.clip]
path = "{clip_model}"
devices = ["cpu"]
[models.pe]
path = "{pe_model}"
devices = ["cpu"]
[worker]
max_batch = 4
buckets = [1, 4]
[sampling]
sample_fps = 2
[window]
seconds = 10
min_crops = 2
[verdict]
suspicious = {SUSPICIOUS}
manipulated = 0.99
enter_crops = 2
enter_seconds = 0
[alerts]
spool_dir = "{folder / 'spool'}"
update_interval_s = 0
[redis]
url = "redis://127.0.0.1:{redis_port}/0"
[http]
port = {http_port}
[[streams]]
id = "on-clip"
url = "{url}"
[[streams]]
id = "on-pe"
url = "{url}"
model = "pe"
[[streams]]
id = "shadowed"
url = "{url}"
model = "clip"
shadow = "pe"
"""


async def test_two_models_and_a_shadow(assets, tmp_path):
    folder, clip, clip_model, pe_model = assets
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = tmp_path / "monitor.toml"
        config.write_text(config_text(folder, clip_model, pe_model, port, redis_server.port, rtsp.port))
        daemon = DaemonProcess(config, tmp_path / "daemon.log")
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await wait_until(lambda: ready(base), 120), daemon.tail()

            def state(stream):
                return client.hgetall(f"deepfake:stream:{stream}")

            assert await wait_until(lambda: value(
                any(e["stream_id"] == "shadowed" and e["type"] == "opened" for e in events(client))
                and float(state("on-pe").get("crops_scored") or 0) >= 4
                and state("shadowed").get("shadow_verdict") == "authentic"), 90), daemon.tail()
            _, streams = await http("GET", base + "/streams")
            _, metrics = await http("GET", base + "/metrics")
            on_pe, shadowed = state("on-pe"), state("shadowed")  # while running (a stop clears the verdicts)
        finally:
            assert daemon.stop() == 0, daemon.tail()
        log = events(client)

    listed = {s["id"]: s for s in json.loads(streams)["streams"]}
    assert listed["on-clip"]["model"] == "clip" and listed["on-pe"]["model"] == "pe"
    assert listed["shadowed"]["model"] == "clip" and listed["shadowed"]["shadow"] == "pe"
    assert on_pe["model_id"].startswith("yermandy/GenD_PE_L@")
    # The model alerts (CLIP scores the faces above 0.3); the PE shadow calls them authentic: they disagree.
    assert shadowed["verdict"] in ("suspicious", "manipulated") and shadowed["shadow_model"] == "pe"
    assert shadowed["shadow_agrees"] in ("False", "false", "0")

    by_stream = {s: [e for e in log if e["stream_id"] == s] for s in ("on-clip", "on-pe", "shadowed")}
    assert by_stream["on-pe"] == []  # PE's scores stay below the threshold
    assert all(e["model"]["name"] == "clip" and e["model"]["backbone"] == "clip" for e in by_stream["shadowed"])
    # The shadow opened nothing: every alert on the stream is the model's, one per track at a time.
    opened = [e for e in by_stream["shadowed"] if e["type"] == "opened"]
    assert len({e["alert_id"] for e in opened}) == len(opened) and len({e["track_id"] for e in opened}) == len(opened)
    shadows = [e["shadow"] for e in by_stream["shadowed"] if e["shadow"] is not None]
    assert shadows and all(s["model"] == "pe" and s["model_id"].startswith("yermandy/GenD_PE_L@") for s in shadows)
    assert any(s["verdict"] == "authentic" and s["agrees"] is False for s in shadows)
    assert all(e["shadow"] is None for e in by_stream["on-clip"])
    # Each model has its own pool: its crops are counted under its name.
    scored = {s.labels["model"]: s.value for f in text_string_to_metric_families(metrics)
              if f.name == "deepfake_worker_crops_scored" for s in f.samples if s.name.endswith("_total")}
    assert scored.get("clip", 0) > 0 and scored.get("pe", 0) > 0, scored
