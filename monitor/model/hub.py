"""`monitor model pull`: download a published checkpoint from the Hugging Face hub, then convert it."""

from __future__ import annotations

import concurrent.futures
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, hf_hub_download

from ..paths import models_dir
from .errors import HubUnavailable

# repo -> (checkpoint file, files that must sit beside it)
PUBLISHED = {
    "yermandy/deepfake-detection": ("model.ckpt", ()),
    "yermandy/GenD_CLIP_L_14": ("model.safetensors", ("config.json",)),
    "yermandy/GenD_PE_L": ("model.safetensors", ("config.json",)),  # Perception Encoder L/14
    "yermandy/GenD_DINOv3_L": ("model.safetensors", ("config.json",)),  # DINOv3 ViT-L/16
}
DEFAULT_REPO = "yermandy/deepfake-detection"
PROBE_SECONDS = 4.0


def native_name(repo: str) -> str:
    return repo.split("/")[-1] + ".safetensors"


def manual_instructions(repo: str, dest: Path) -> str:
    filename, extras = PUBLISHED[repo]
    files = " and ".join(f"{constants.ENDPOINT}/{repo}/resolve/main/{f}" for f in (filename, *extras))
    return (f"To install it by hand: on a machine with internet access download {files}; copy "
            f"{' and '.join((filename, *extras))} into one folder here, then run:\n"
            f"  monitor model convert FOLDER/{filename} {dest / native_name(repo)}")


def _probe(endpoint: str) -> None:
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    socket.create_connection((host, port), timeout=PROBE_SECONDS).close()


def check_reachable(endpoint: str = constants.ENDPOINT) -> None:
    """Fail in seconds, not after the hub client's retries: DNS and TCP are probed under one bound."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(_probe, endpoint).result(timeout=PROBE_SECONDS + 1)
    except concurrent.futures.TimeoutError:
        raise HubUnavailable(f"{endpoint} did not answer within {PROBE_SECONDS + 1:.0f} s") from None
    except OSError as e:
        raise HubUnavailable(f"cannot reach {endpoint} ({e.__class__.__name__}: {e})") from None
    finally:
        pool.shutdown(wait=False)


def pull(repo: str = DEFAULT_REPO, dest: Path | None = None, revision: str | None = None) -> Path:
    """Download `repo`'s checkpoint (through the hub cache), convert it to the native format in `dest`."""
    if repo not in PUBLISHED:
        raise ValueError(f"unknown repository {repo!r}; known: {', '.join(PUBLISHED)}")
    dest = Path(dest) if dest else models_dir()
    filename, extras = PUBLISHED[repo]
    try:
        if not constants.HF_HUB_OFFLINE:
            check_reachable()
        # Extras first: GenD's loader reads config.json from beside the checkpoint in the cache snapshot.
        for extra in extras:
            hf_hub_download(repo, extra, revision=revision)
        local = hf_hub_download(repo, filename, revision=revision)
    except HubUnavailable as e:
        raise HubUnavailable(f"{e}.\n{manual_instructions(repo, dest)}") from None
    except Exception as e:  # the hub client's errors: offline mode, HTTP errors, gated repos, timeouts
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HubUnavailable(f"downloading {repo}/{filename} failed ({type(e).__name__}: {reason}).\n"
                             f"{manual_instructions(repo, dest)}") from None
    from .checkpoint import read_checkpoint, write_native  # torch: imported only once there is a file

    return write_native(read_checkpoint(local), dest / native_name(repo))
