"""The BlazeFace model files for mediapipe's FaceDetector.

mediapipe's current wheels ship no model files; the Tasks API accepts the BlazeFace models inside the
`mediapipe==0.10.21` wheel on PyPI. `install()` (run by .ci/setup, or `python -m monitor.faces.models`)
fetches that wheel with pip at install time, extracts the two models and checks their sha256. Nothing is
downloaded at run time.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..paths import models_dir

WHEEL = "mediapipe==0.10.21"
FILES = {
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
}
FULL_RANGE, SHORT_RANGE = FILES


def mediapipe_dir() -> Path:
    return models_dir() / "mediapipe"


def default_model_path(name: str = FULL_RANGE) -> Path:
    return mediapipe_dir() / name


def installed(folder: Path | None = None) -> bool:
    folder = folder or mediapipe_dir()
    return all((folder / name).is_file() and _sha256(folder / name) == digest for name, digest in FILES.items())


def install(folder: Path | None = None) -> Path:
    folder = folder or mediapipe_dir()
    if installed(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", tmp, WHEEL],
                       check=True)
        wheel = next(Path(tmp).glob("mediapipe-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for name, digest in FILES.items():
                data = archive.read(f"mediapipe/modules/face_detection/{name}")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise RuntimeError(f"{name} from {wheel.name} has an unexpected sha256")
                (folder / name).write_bytes(data)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    print(f"face detector models in {install()}")
