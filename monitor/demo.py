"""Built-in demo input, generated offline from a public-domain photo (scikit-image's astronaut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_demo_video(path: Path, seconds: int = 12, fps: int = 25, size=(640, 480)) -> Path:
    """The built-in demo stream: the astronaut's photo drifting over a background, as H.264 MP4."""
    import av
    from skimage import data

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    face = np.asarray(Image.fromarray(data.astronaut()).resize((280, 280), Image.BILINEAR))
    background = np.linspace(40, 90, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"tune": "zerolatency", "bf": "0", "g": str(fps)}
        for i in range(seconds * fps):
            frame = background.copy()
            x = int((width - 280) * (0.5 + 0.4 * np.sin(i / (fps * 2))))
            frame[100:380, x:x + 280] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path
