"""Progress bars for long jobs: shown on a terminal (stderr), silent when output is piped or in CI."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def progress(items: Iterable, **kwargs) -> Iterable:
    return tqdm(items, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False, **kwargs)
