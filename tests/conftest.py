import os
from pathlib import Path

import pytest

from tests.support import faces

# Tests never reach the hub: an offline download otherwise takes ~50 s to fail.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def face_paths() -> list[Path]:
    return faces.face_paths()


@pytest.fixture
def redis_server():
    from tests.support.servers import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()
