"""Where the monitor keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path


def models_dir() -> Path:
    """Checkpoints and face-detector models: $MONITOR_MODELS_DIR, else ~/.local/share/deepfake-monitor/models."""
    base = os.environ.get("MONITOR_MODELS_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "deepfake-monitor" / "models"
