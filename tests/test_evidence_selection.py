"""Which crops an alert's evidence keeps (TrackEvidence, pure logic, on real face crops as JPEG)."""

import numpy as np
from PIL import Image

from monitor.contracts import FaceCrop
from monitor.evidence import EvidenceSettings, TrackEvidence, jpeg


def crops(face_paths, n):
    images = [np.asarray(Image.open(p).convert("RGB")) for p in face_paths]
    return [images[i % len(images)] for i in range(n)]


def event(kind, alert="a1"):
    return {"alert_id": alert, "stream_id": "cam", "track_id": 1, "type": kind, "model": {"id": "m"},
            "thresholds": {}, "window": {}}


def add(evidence, image, t, p):
    crop = FaceCrop("cam", 1, int(t * 10), t, image)
    evidence.add(crop, p, jpeg(image, 90), None)


def test_a_recovered_alert_keeps_the_faces_that_raised_it(face_paths):
    """The window slides past the high scores while the alert recovers; the record at `closed` still holds the
    highest-scoring crops of the alert's life (it used to choose again from the recovery window: 0.78 and 0.16
    kept while the timeline reached 0.98)."""
    evidence = TrackEvidence(EvidenceSettings(crops=3), window_seconds=4.0, max_crops=8)
    images = crops(face_paths, 40)
    rising = [0.5, 0.7, 0.9, 0.98, 0.95]
    for i, p in enumerate(rising):
        add(evidence, images[i], 100.0 + i, p)
    evidence.record(event("opened"), "k", None, b"")
    falling = [0.92, 0.97, 0.6, 0.3, 0.2, 0.16, 0.1, 0.12, 0.15, 0.11]
    for i, p in enumerate(falling):
        add(evidence, images[10 + i], 105.0 + i, p)
    record, index = evidence.record(event("closed"), "k", None, b"")
    kept = [c["p_fake"] for c in record["meta"]["crops"]]
    assert kept == [0.98, 0.97, 0.95], kept
    assert max(point["p_fake"] for point in record["meta"]["timeline"]) == 0.98
    assert len(record["files"]) == 3


def test_the_budget_count_belongs_to_each_record(face_paths):
    """Two alerts on one track, each with crops over the byte budget: each record counts its own (the second
    said the sum of both)."""
    images = crops(face_paths, 20)
    size = len(jpeg(images[0], 90))
    evidence = TrackEvidence(EvidenceSettings(crops=8, max_bytes=50_000), 10.0, 8)
    counts = []
    for alert, start in (("a1", 100.0), ("a2", 200.0)):
        for i in range(8):  # 8 crops of ~12 kB each over a 50 kB budget
            add(evidence, images[i], start + i, 0.9 + i / 100)
        record, _ = evidence.record(event("opened", alert), "k", None, b"")
        counts.append(record["meta"]["dropped_for_budget"])
        evidence.record(event("closed", alert), "k", None, b"")
    print(f"crop ~{size} bytes, budget {evidence.settings.max_bytes}: dropped {counts}")
    assert counts[0] == counts[1] >= 1
