"""Face detection with mediapipe's Tasks API (BlazeFace), offline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .models import default_model_path

# mediapipe/LiteRT log to stderr through glog; keep the daemon's output readable.
os.environ.setdefault("GLOG_minloglevel", "2")


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, width, height in pixels
    score: float
    keypoints: np.ndarray  # [6, 2] pixel-index coords: eyes (image-left, image-right), nose, mouth, ears

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector:
    """Not thread-safe: use one per thread. Close it (or use `with`)."""

    def __init__(self, model_path: str | Path | None = None, min_confidence: float = 0.5):
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"face detector model {path} is missing: run `python -m monitor.faces.models` "
                                    f"(part of .ci/setup) or set faces.detector_model")
        options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                             min_detection_confidence=min_confidence)
        self._detector = vision.FaceDetector.create_from_options(options)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in an RGB uint8 image, largest first."""
        import mediapipe as mp

        height, width = image.shape[:2]
        result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
        detections = []
        for d in result.detections:
            b = d.bounding_box
            # Normalised keypoints are continuous coordinates; pixel-index coordinates are half a pixel less.
            points = np.array([(k.x * width - 0.5, k.y * height - 0.5) for k in d.keypoints])
            detections.append(Detection((b.origin_x, b.origin_y, b.width, b.height), d.categories[0].score, points))
        return sorted(detections, key=lambda d: d.area, reverse=True)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
