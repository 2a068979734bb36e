"""Tracking over sparse samples: the demo's one face, sampled every 2 s as the demo does, is one track."""

import av

from monitor.contracts import Frame
from monitor.demo import make_demo_video
from monitor.faces.pipeline import FaceCropper, FaceSettings


def test_the_demo_clips_one_face_is_one_track_at_the_demos_sampling(tmp_path):
    clip = make_demo_video(tmp_path / "demo.mp4")
    # As config/demo.toml samples it: 0.5 fps, tracks kept 10 s. The face drifts up to 2.2 face widths between
    # samples; BlazeFace finds exactly one face in every frame (measured: 300 of 300, confidence 0.73-0.95).
    cropper = FaceCropper(FaceSettings(track_max_absence_s=10))
    tracks, detections = set(), 0
    try:
        with av.open(str(clip)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % 50:
                    continue
                result = cropper.process(Frame("demo", i, i / 25, None, frame.to_ndarray(format="rgb24")))
                ids = [c.track_id for c in result.crops] + [t for t, _ in result.skipped_tracks]
                detections += len(ids)
                tracks.update(ids)
    finally:
        cropper.close()
    print(f"{detections} faces in {detections} samples, tracks {sorted(tracks)}")
    assert detections == 6 and tracks == {1}


def test_two_faces_far_apart_stay_two_tracks_when_sampled_sparsely():
    from monitor.faces.tracker import FaceTracker

    tracker = FaceTracker(max_absence_s=10, max_speed=2.0)
    a, b = tracker.update([(50, 100, 60, 60), (500, 100, 60, 60)], now=0.0)
    moved = tracker.update([(120, 110, 60, 60), (430, 90, 60, 60)], now=2.0)  # each moved ~70 px in 2 s
    assert moved == [a, b]
    assert tracker.update([(700, 400, 60, 60)], now=2.1) not in ([a], [b])  # too far for 0.1 s: a new face
