"""The records that flow between stages. Defined once here; stages import them, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    stream_id: str
    seq: int
    captured_at: float  # wall-clock seconds (time.time()) when the frame was decoded/received
    pts: float | None  # presentation time in seconds; the first RTSP frame may have none
    image: np.ndarray  # RGB uint8 [H, W, 3]
    keyframe: bool = False


@dataclass(frozen=True)
class SessionEnded:
    """A source's marker between frames: the publisher's session ended (e.g. a WHIP publisher left), so the
    tracks seen so far end with it; frames of a later session start new tracks."""

    stream_id: str
    reason: str  # closed | media_timeout | replaced | ...


@dataclass(frozen=True, eq=False)
class FaceCrop:
    stream_id: str
    track_id: int
    frame_seq: int
    frame_time: float  # the frame's captured_at
    crop: np.ndarray  # aligned RGB uint8 [256, 256, 3]
    confidence: float = 1.0  # face detector score
    interocular_px: float = 0.0  # eye distance in the source frame
    alignment_residual: float = 0.0  # RMS landmark error of the similarity fit, in crop pixels
    box: tuple[float, float, float, float] | None = None  # the face in the source frame: x, y, width, height
    features: dict | None = None  # quality features (monitor.faces.quality), measured when cropped
    shadow_crop: np.ndarray | None = None  # the face aligned with a shadow model's template, when it differs

    def quality(self) -> dict:
        """What the evidence and the score records keep about the crop's quality."""
        if self.features is not None:
            return self.features
        return {"confidence": round(self.confidence, 4), "interocular_px": round(self.interocular_px, 1),
                "residual_px": round(self.alignment_residual, 2)}


@dataclass(frozen=True)
class Score:
    """The worker's answer for one crop: a p_fake, or the reason it was not scored."""

    stream_id: str
    track_id: int
    frame_seq: int
    frame_time: float
    p_fake: float | None
    model_id: str
    queued_at: float  # wall clock
    scored_at: float  # wall clock (when the result was known, for drops too)
    dropped: str | None = None  # stale | queue_full | shutdown | error
    detail: str = field(default="", compare=False)

    @property
    def ok(self) -> bool:
        return self.dropped is None


DEFAULT_MODEL = "default"  # the name of the model configured under [model]


@dataclass(frozen=True)
class ModelTag:
    """What every alert, record and report says about the model that scored it."""

    model_id: str
    precision: str
    untrained: bool = False
    sha256: str | None = None  # the published checkpoint's, for evidence and reports
    name: str = DEFAULT_MODEL  # the config's name for it ([models.<name>])
    backbone: str = "clip"
