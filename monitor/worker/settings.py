"""The inference worker's settings: the config's [worker] table, and what the pool runs with (one class for both)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..model import COMPILE_MODES

CROP_SIZE = 256  # the aligned crop's side: the detector's input before its own resize


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch: int = Field(32, ge=1, le=1024, description="most crops in one batch")
    max_wait_ms: float = Field(20.0, ge=0, description="how long a batch waits to fill once it has a crop")
    staleness_ms: float = Field(3000.0, gt=0, description="a crop whose frame is older than this when its batch "
                                "forms is answered `stale`, not scored")
    queue_capacity: int = Field(512, ge=1, description="crops queued across all streams (fair share per stream)")
    buckets: list[int] = Field(default_factory=lambda: [1, 8, 32, 64, 128], min_length=1,
                               description="batch sizes a batch is padded up to (one CUDA graph or compiled shape each)")
    cuda_graphs: bool = Field(True, description="capture one CUDA graph per bucket on CUDA devices")
    compile: Literal[COMPILE_MODES] | None = Field(
        None, description="torch.compile mode, one compiled shape per bucket (replaces cuda_graphs)")
    cpu_threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU devices (default: torch's)")
    watchdog_s: float = Field(30.0, gt=0, description="work waiting and no batch done this long: not healthy")
    drain_s: float = Field(2.0, ge=0, description="at a stop, queued crops are scored for at most this long: each "
                           "device takes only the crops its measured time per crop lets it finish; the rest are "
                           "answered `shutdown` at once")

    @field_validator("buckets")
    @classmethod
    def _positive(cls, buckets: list[int]) -> list[int]:
        if min(buckets) < 1:
            raise ValueError("every bucket must be at least 1")
        return buckets
