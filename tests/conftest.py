import os
from pathlib import Path

import pytest

# Tests never reach the hub: an offline download otherwise takes ~50 s to fail.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FACES_DIR = REPO.parent / "shared" / "fixtures" / "faces"


@pytest.fixture(scope="session")
def face_paths() -> list[Path]:
    paths = sorted(FACES_DIR.rglob("*.png"))
    if len(paths) != 32:
        pytest.fail(f"expected the 32 fixture crops under {FACES_DIR}, found {len(paths)}")
    return paths


@pytest.fixture
def redis_server():
    from servers import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()
