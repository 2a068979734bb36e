"""Evidence behind an alert: the aligned crops the model scored, the frame they came from, the score timeline.

While a track lives it keeps its window's crops as JPEG (encoded off the event loop when scored). When its alert
opens, is updated or closes, `TrackEvidence.record` makes the evidence record: the K highest-scoring crops of
the alert's whole life so far (the window that opened it and every crop since: a recovered alert keeps the
faces that raised it, not those of its recovery), the latest frame (downscaled) with the face box drawn, and the timeline (frame time, p_fake, crop
quality) from the alert's first evidence. The record goes through the spool like the events (an outage delays
it, never loses it) and the Redis sink stores it as the hash `<prefix>:evidence:<alert_id>` with a TTL. Faces
are personal data: `[evidence] enabled = false` keeps none.
"""

from __future__ import annotations

import base64
import io
import json
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

from .contracts import FaceCrop

RECORD_KIND = "evidence"


class EvidenceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="keep crops, the frame and the score timeline of every alert")
    crops: int = Field(6, ge=1, le=32, description="the highest-scoring crops of the window kept per alert")
    ttl_s: float = Field(7 * 86400.0, gt=0, description="how long Redis keeps an alert's evidence")
    max_bytes: int = Field(2_000_000, ge=50_000, description="budget per alert; the oldest crops go first")
    jpeg_quality: int = Field(95, ge=50, le=100, description="JPEG quality of crops and frames")
    frame_width: int = Field(640, ge=160, description="the stored frame is downscaled to at most this width")
    max_timeline: int = Field(3600, ge=10, description="timeline points kept per alert (the newest)")


def jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    return buffer.getvalue()


@dataclass(frozen=True)
class ScoredCrop:
    frame_time: float
    p_fake: float
    jpeg: bytes
    quality: dict


def frame_jpeg(image: np.ndarray, box, width: int, quality: int) -> bytes:
    """The frame with the face box drawn, downscaled to at most `width`."""
    picture = Image.fromarray(image)
    if box is not None:
        x, y, w, h = box
        stroke = max(2, picture.width // 240)
        ImageDraw.Draw(picture).rectangle([x, y, x + w, y + h], outline=(255, 48, 48), width=stroke)
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=min(quality, 90))
    return buffer.getvalue()


class TrackEvidence:
    """One track's evidence (event loop only; JPEG encoding happens before `add`, off the loop)."""

    def __init__(self, settings: EvidenceSettings, window_seconds: float, max_crops: int):
        self.settings, self.window_seconds = settings, window_seconds
        self.window: deque[ScoredCrop] = deque(maxlen=max_crops)  # the crops of the track's window
        self.timeline: deque[tuple[float, float, dict]] = deque(maxlen=settings.max_timeline)
        self.latest_frame: tuple[np.ndarray, tuple | None] | None = None
        self.alert_id: str | None = None
        self.best: list[ScoredCrop] = []  # the K highest-scoring crops of the open alert's life, best first

    def add(self, crop: FaceCrop, p_fake: float, encoded: bytes, frame: np.ndarray | None) -> None:
        sample = ScoredCrop(crop.frame_time, p_fake, encoded, crop.quality())
        self.window.append(sample)
        if self.alert_id is not None:
            self.timeline.append((sample.frame_time, p_fake, sample.quality))
            self._keep_best([sample])
        if frame is not None:
            self.latest_frame = (frame, crop.box)

    def latest(self) -> tuple[np.ndarray, tuple | None] | None:
        return self.latest_frame

    def record(self, event: dict, key: str, model_sha256: str | None, frame: bytes) -> tuple[dict, dict]:
        """The evidence record for an event of this track's alert, and what the event's `evidence` gains.
        `frame`: the latest frame as JPEG (`frame_jpeg`, made off the event loop), or b""."""
        newest = max((c.frame_time for c in self.window), default=0.0)
        in_window = [c for c in self.window if newest - c.frame_time <= self.window_seconds]
        if event["alert_id"] != self.alert_id:  # a new alert: its timeline starts with the window that opened it
            self.alert_id = event["alert_id"]
            self.timeline.clear()
            self.timeline.extend((c.frame_time, c.p_fake, c.quality) for c in in_window)
            self.best = []
            self._keep_best(in_window)
        chosen = list(self.best)
        # The byte budget: the frame stays; the oldest crops go first.
        budget = self.settings.max_bytes - len(frame)
        kept = sorted(chosen, key=lambda c: c.frame_time, reverse=True)
        dropped = 0  # in this record
        while kept and sum(len(c.jpeg) for c in kept) > budget:
            kept.pop()
            dropped += 1
        chosen = [c for c in chosen if c in kept]
        crops = [{"index": i, "p_fake": round(c.p_fake, 6), "frame_time": c.frame_time, "bytes": len(c.jpeg),
                  "quality": c.quality} for i, c in enumerate(chosen)]
        meta = {"alert_id": event["alert_id"], "stream_id": event["stream_id"], "track_id": event["track_id"],
                "event_type": event["type"], "model": {**event["model"], "sha256": model_sha256},
                "thresholds": event["thresholds"], "window": event["window"], "crops": crops,
                "frame": {"bytes": len(frame)} if frame else None,
                "timeline": [{"frame_time": t, "p_fake": round(p, 6), "quality": q} for t, p, q in self.timeline],
                "dropped_for_budget": dropped}
        files = {f"crop-{i}.jpg": c.jpeg for i, c in enumerate(chosen)}
        if frame:
            files["frame.jpg"] = frame
        record = {"kind": RECORD_KIND, "alert_id": event["alert_id"], "stream_id": event["stream_id"], "key": key,
                  "ttl_s": self.settings.ttl_s, "meta": meta,
                  "files": {name: base64.b64encode(data).decode() for name, data in files.items()}}
        index = {"key": key, "crops": [{k: c[k] for k in ("index", "p_fake", "frame_time", "bytes")} for c in crops],
                 "frame": bool(frame), "timeline_points": len(self.timeline)}
        if event["type"] == "closed":
            self.alert_id = None  # the next alert of this track starts its own timeline and its own best crops
            self.best = []
        return record, index

    def _keep_best(self, crops) -> None:
        self.best = sorted([*self.best, *crops], key=lambda c: c.p_fake, reverse=True)[:self.settings.crops]


def is_evidence(record: dict) -> bool:
    return record.get("kind") == RECORD_KIND


def decode_files(record: dict) -> dict[str, bytes]:
    return {name: base64.b64decode(data) for name, data in record["files"].items()}


def meta_json(record: dict) -> str:
    return json.dumps(record["meta"], separators=(",", ":"))
