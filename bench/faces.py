#!/usr/bin/env python3
"""Face detection + alignment cost, and its share of a full decode + detect + align + score loop.

Measures ms per frame for detection + alignment at 640x480 and 1280x720 with one and three faces, the
share of detect + align in a loop that also decodes (PyAV, H.264) and scores the crops (tiny model), and
the re-alignment error on the sample crops (median point error in px at 256), the cost of the per-crop
quality features (monitor.faces.quality: sharpness, blockiness, exposure, pose) and the speed of the
calibration replay (authentic tracks through the daemon's window, verdict and alert code). Last line:
`RESULT detect_align_ms_480p=... detect_align_ms_720p=... realign_median_px=... quality_ms_per_crop=...
calibrate_tracks_per_s=...` (one face).

  python bench/faces.py --quick
"""

from __future__ import annotations

import os
import sys

# Run as a file (`python bench/NAME.py`)? Re-run as `python -m bench.NAME` from the repository root, so that the
# helpers shared with the tests import as the package `tests.support`.
if __name__ == "__main__" and not __package__:
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execv(sys.executable, [sys.executable, "-m", "bench." + os.path.basename(__file__)[:-3], *sys.argv[1:]])

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from monitor.contracts import Frame
from monitor.faces.align import align
from monitor.faces.pipeline import FaceCropper, FaceSettings
from monitor.faces.quality import features
from monitor.model import Architecture, Detector
from monitor.scoring import VerdictPolicy, WindowPolicy
from monitor.scoring.budget import read_recording
from monitor.scoring.replay import count
from tests.support.faces import face_paths, load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.realign import realign_errors
from tests.support.traces import TraceSpec
from tests.support.traces import write as write_traces


def quality_ms(cropper: FaceCropper, frames: list[np.ndarray]) -> float:
    """Per crop: the quality features alone, on detections and alignments made beforehand."""
    inputs = []
    for image in frames:
        for d in cropper.detector.detect(image):
            aligned = align(image, d.keypoints, cropper.template)
            inputs.append((image, aligned.crop, d.box, d.keypoints, d.score, aligned.interocular_px, aligned.residual))
    start = time.perf_counter()
    for args in inputs:
        features(*args)
    return (time.perf_counter() - start) / len(inputs) * 1e3


def calibrate_tracks_per_s(hours: float) -> tuple[float, int]:
    """Authentic tracks replayed per second at one threshold (a calibration replays them at ~20)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.csv"
        write_traces(path, TraceSpec(hours=hours, track_s=120))
        tracks = read_recording(path).real
    start = time.perf_counter()
    count(tracks, WindowPolicy(), VerdictPolicy(suspicious=0.3, manipulated=0.9))
    return len(tracks) / (time.perf_counter() - start), len(tracks)


def frames_with_faces(crops, size, faces, n):
    frames = []
    for i, base in enumerate(face_frames(crops, n, size=size, face_px=size[1] // 3)):
        frame = base.copy()
        for k in range(1, faces):  # extra faces side by side
            face = np.asarray(Image.fromarray(crops[k % len(crops)]).resize((size[1] // 4,) * 2))
            x = (k * size[0] // faces) % (size[0] - face.shape[1])
            frame[10:10 + face.shape[0], x:x + face.shape[1]] = face
        frames.append(frame)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 40 if args.quick else 200
    crops = load_crops(face_paths())
    cropper = FaceCropper(FaceSettings(max_faces=4))
    results = {}
    print(f"{'size':>9} {'faces':>5} {'ms/frame':>9} {'crops/frame':>11}")
    for size in ((640, 480), (1280, 720)):
        for faces in (1, 3):
            frames = frames_with_faces(crops, size, faces, n)
            cropper.process(Frame("b", 0, 0.0, None, frames[0]))
            start, total = time.perf_counter(), 0
            for i, image in enumerate(frames):
                total += len(cropper.process(Frame("b", i, i / 25, None, image)).crops)
            ms = (time.perf_counter() - start) / len(frames) * 1e3
            results[(size[1], faces)] = ms
            print(f"{size[0]}x{size[1]:<4} {faces:>5} {ms:>9.2f} {total / len(frames):>11.2f}", flush=True)

    # The whole loop on a 720p H.264 file: decode, detect + align, score (tiny model, CPU).
    detector = Detector.untrained(Architecture(width=128, layers=2, mlp_width=512), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        video = write_mp4(Path(tmp) / "bench.mp4", frames_with_faces(crops, (1280, 720), 1, n))
        decode_s = faces_s = score_s = 0.0
        with av.open(str(video)) as container:
            t = time.perf_counter()
            for i, frame in enumerate(container.decode(video=0)):
                image = frame.to_ndarray(format="rgb24")
                t1 = time.perf_counter()
                result = cropper.process(Frame("b", i, i / 25, None, image))
                t2 = time.perf_counter()
                if result.crops:
                    detector.score_uint8(np.stack([c.crop for c in result.crops]))
                t3 = time.perf_counter()
                decode_s += t1 - t
                faces_s += t2 - t1
                score_s += t3 - t2
                t = time.perf_counter()
    total = decode_s + faces_s + score_s
    print(f"720p loop per frame: decode {decode_s / n * 1e3:.1f} ms, detect+align {faces_s / n * 1e3:.1f} ms, "
          f"score (tiny, CPU) {score_s / n * 1e3:.1f} ms; detect+align share {faces_s / total:.0%}")
    errors = np.array(realign_errors(cropper.detector, crops, trials=16 if args.quick else 64))
    quality = quality_ms(cropper, frames_with_faces(crops, (1280, 720), 3, 10 if args.quick else 40))
    print(f"quality features: {quality:.3f} ms per crop (720p frames)")
    cropper.close()
    median = float(np.nanmedian(errors))
    print(f"re-alignment on all sample crops: median point error {median:.2f} px")
    replay_rate, tracks = calibrate_tracks_per_s(5 if args.quick else 50)
    print(f"calibration replay: {replay_rate:.0f} tracks/s ({tracks} tracks of 120 s at 2 fps, "
          f"{replay_rate * 240:.0f} crops/s)")
    print(f"RESULT detect_align_ms_480p={results[(480, 1)]:.2f} detect_align_ms_720p={results[(720, 1)]:.2f} "
          f"realign_median_px={median:.2f} detect_align_ms_720p_3faces={results[(720, 3)]:.2f} "
          f"detect_align_share_720p={faces_s / total:.3f} quality_ms_per_crop={quality:.3f} "
          f"calibrate_tracks_per_s={replay_rate:.0f}")


if __name__ == "__main__":
    main()
