"""Frame -> aligned face crops: detection, quality gates, alignment, tracking."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import FaceCrop, Frame
from .align import align
from .detect import FaceDetector
from .quality import FRONTAL_EYE_RATIO, QualitySettings, features, pose
from .quality import verdict as quality_verdict
from .tracker import FaceTracker


class FaceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    detector_model: str | None = Field(None, description="BlazeFace .tflite; default the installed full-range model")
    min_confidence: float = Field(0.6, ge=0, le=1, description="faces scored below this are skipped")
    min_interocular_px: float = Field(20.0, ge=0, description="smaller faces are out of the training distribution")
    max_residual_px: float = Field(12.0, gt=0, description="keypoint fit error (crop px) above which a face is skipped")
    max_faces: int = Field(4, ge=1, description="largest faces per frame that are cropped")
    track_max_absence_s: float = Field(2.0, gt=0, description="a track ends after this long unseen")
    track_max_speed: float = Field(2.0, ge=0, description="how far a face may move between two sightings, in face "
                                   "widths per second (sparse sampling: 0.5 fps sees a walking face jump)")


@dataclass
class CropResult:
    crops: list[FaceCrop]
    skipped: Counter  # reason -> count, for this frame
    skipped_tracks: list[tuple[int, str]]  # (track id, reason) for each skipped face


class FaceCropper:
    """One per stream (it holds that stream's tracker); not thread-safe."""

    def __init__(self, settings: FaceSettings, template: str = "deepfakebench", detector: FaceDetector | None = None,
                 tracker: FaceTracker | None = None, quality: QualitySettings | None = None,
                 shadow_template: str | None = None):
        """`shadow_template`: a second model's template; when it differs, each crop is also aligned with it."""
        self.settings, self.template = settings, template
        self.shadow_template = shadow_template if shadow_template != template else None
        self.quality = quality or QualitySettings()
        # The detector sees everything down to a low floor; the confidence gate below counts what it rejects.
        self.detector = detector or FaceDetector(settings.detector_model, min_confidence=min(0.3, settings.min_confidence))
        self.tracker = tracker or FaceTracker(settings.track_max_absence_s, max_speed=settings.track_max_speed)
        self.tracker.max_absence_s, self.tracker.max_speed = settings.track_max_absence_s, settings.track_max_speed

    def process(self, frame: Frame) -> CropResult:
        detections = self.detector.detect(frame.image)[: self.settings.max_faces]
        track_ids = self.tracker.update([d.box for d in detections], frame.captured_at)
        crops, skipped, skipped_tracks = [], Counter(), []
        for detection, track_id in zip(detections, track_ids):
            reason, measured = None, None
            yaw, _ = pose(detection.keypoints, detection.box)
            if detection.score < self.settings.min_confidence:
                reason = "low_confidence"
            elif detection.box[2] * FRONTAL_EYE_RATIO < self.settings.min_interocular_px:
                reason = "too_small"  # judged by the box: a turned face's eyes are close together, not far away
            elif abs(yaw) > self.quality.max_yaw_deg:
                reason = "profile"
            else:
                aligned = align(frame.image, detection.keypoints, self.template)
                if aligned.interocular_px < self.settings.min_interocular_px:
                    reason = "too_small"
                elif aligned.residual > self.settings.max_residual_px:
                    reason = "bad_alignment"
                else:
                    measured = features(frame.image, aligned.crop, detection.box, detection.keypoints,
                                        detection.score, aligned.interocular_px, aligned.residual)
                    reason = quality_verdict(measured, self.quality)
            if reason:
                skipped[reason] += 1
                skipped_tracks.append((track_id, reason))
                continue
            shadow = (align(frame.image, detection.keypoints, self.shadow_template).crop
                      if self.shadow_template else None)
            crops.append(FaceCrop(frame.stream_id, track_id, frame.seq, frame.captured_at, aligned.crop,
                                  detection.score, aligned.interocular_px, aligned.residual, detection.box, measured,
                                  shadow))
        return CropResult(crops, skipped, skipped_tracks)

    def close(self) -> None:
        self.detector.close()
