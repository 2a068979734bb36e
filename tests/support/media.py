"""Test media made with PyAV: H.264 MP4s of face crops moving over a background."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def face_frames(crops: list[np.ndarray], n_frames: int, size=(640, 480), face_px: int = 200,
                faces_in=lambda i: True, seed: int = 0):
    """Frames with one face crop (scaled to `face_px`) drifting across a textured background."""
    width, height = size
    rng = np.random.default_rng(seed)
    background = rng.integers(30, 80, size=(height, width, 3), dtype=np.uint8)
    faces = [np.asarray(Image.fromarray(c).resize((face_px, face_px), Image.BILINEAR)) for c in crops]
    for i in range(n_frames):
        frame = background.copy()
        if faces_in(i):
            face = faces[(i // 8) % len(faces)]
            x = int((width - face_px) * (0.2 + 0.6 * (i % 50) / 50))
            y = (height - face_px) // 2
            frame[y:y + face_px, x:x + face_px] = face
        yield frame


def moving_bar(n: int, size=(320, 240)):
    """n frames of a bright bar sliding over a grey field: motion that any codec must encode, no face."""
    for i in range(n):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        frame[:, (i * 5) % size[0]:(i * 5) % size[0] + 30] = 220
        yield frame


def write_mp4(path: Path, frames, fps: int = 25, codec: str = "libx264") -> Path:
    return write_video(path, frames, fps, codec)


def write_video(path: Path, frames, fps: int, codec: str, container_format: str | None = None) -> Path:
    """RGB frames (HxWx3 uint8) encoded as 4:2:0 video; the container from the file name unless given."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"tune": "zerolatency", "bf": "0"} if codec == "libx264" else {}
        first = True
        for image in frames:
            image = np.ascontiguousarray(image)
            if first:
                stream.height, stream.width = image.shape[:2]
                first = False
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
