#!/usr/bin/env python3
"""Detector throughput and latency: crops/s and ms per batch for batch sizes 1..256 and each precision, for
each backbone of the family (CLIP ViT-L/14, GenD's Perception Encoder L/14 and DINOv3 ViT-L/16).

Runs the network on random pixels (preprocessing excluded: bench/worker.py covers the full path).
On CUDA it also measures CUDA-graph replay. PE and DINOv3 run at the L size on CUDA and at a tiny size
(width 256, 2 blocks) on the CPU. Last line: `RESULT device=... l14_crops_per_s_bs64=... l14_ms_bs1=...
pe_crops_per_s_bs64=... dinov3_crops_per_s_bs64=...` (bf16-autocast eager on CUDA, fp32 on CPU; nan when
that point was not measured).

  python bench/model.py --quick                 # < 1 min on the CPU
  python bench/model.py --device cuda           # full table on a GPU
  python bench/model.py --backbone pe --backbone dinov3
"""

from __future__ import annotations

import os
import sys

# Run as a file (`python bench/NAME.py`)? Re-run as `python -m bench.NAME` from the repository root, so that the
# helpers shared with the tests import as the package `tests.support`.
if __name__ == "__main__" and not __package__:
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execv(sys.executable, [sys.executable, "-m", "bench." + os.path.basename(__file__)[:-3], *sys.argv[1:]])

import argparse
import math
import time

import torch

from monitor.model import PRECISIONS, VIT_L14, Architecture, Detector, resolve_device
from monitor.model.architecture import DINOV3_L16, PE_L14

TINY = Architecture(width=128, layers=2, mlp_width=512)
FAMILY = {  # backbone -> (tiny, L)
    "pe": (Architecture(backbone="pe", width=256, layers=2, mlp_width=1024, native_image_size=336), PE_L14),
    "dinov3": (Architecture(backbone="dinov3", patch_size=16, width=256, layers=2, mlp_width=1024, registers=4),
               DINOV3_L16),
}
ALL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def time_point(detector: Detector, batch: int, min_seconds: float, min_iters: int) -> float:
    """Seconds per forward pass at this batch size (after warm-up)."""
    pixels = torch.randn(batch, 3, detector.image_size, detector.image_size, device=detector.device)
    sync = torch.cuda.synchronize if detector.device.type == "cuda" else (lambda: None)
    for _ in range(2 if detector.device.type == "cuda" else 1):
        detector.logits(pixels)
    sync()
    iters, start = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - start < min_seconds:
        detector.logits(pixels)
        iters += 1
        if detector.device.type == "cuda" and iters % 8 == 0:
            sync()
    sync()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "L14", "both"), default=None,
                        help="network size (default: both on CUDA; tiny sweep + L14 points on CPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: first GPU, else cpu)")
    parser.add_argument("--precision", action="append", choices=PRECISIONS,
                        help="repeatable (default: all on CUDA, fp32 on CPU)")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1..256 in powers of 2)")
    parser.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph measurements")
    parser.add_argument("--compile", default=None, metavar="MODE",
                        help="also measure torch.compile(mode=MODE), e.g. max-autotune (CUDA; compiles per batch size)")
    parser.add_argument("--compile-batch-sizes", default="1,64,256", help="batch sizes for --compile (default 1,64,256)")
    parser.add_argument("--backbone", action="append", choices=("clip", "pe", "dinov3"),
                        help="repeatable (default: all three)")
    parser.add_argument("--quick", action="store_true", help="fewer points, short timings (< 1 min on CPU)")
    args = parser.parse_args()
    backbones = args.backbone or ["clip", "pe", "dinov3"]

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    precisions = args.precision or (list(PRECISIONS) if cuda else ["fp32"])
    headline = "bf16-autocast" if cuda else "fp32"
    min_seconds = 0.3 if args.quick else (1.0 if cuda else 2.0)

    plans: list[tuple[str, Architecture, tuple[int, ...]]] = []
    requested = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    size = args.size or "both"
    if "clip" not in backbones:
        size = "none"
    if size in ("tiny", "both"):
        plans.append(("tiny", TINY, tuple(requested or ((1, 8, 64) if args.quick else ALL_BATCHES))))
    if size in ("L14", "both"):
        if cuda:
            l14_batches = requested or ((1, 64) if args.quick else ALL_BATCHES)
        else:  # ~2 s per crop on two cores: only the two headline points, and only batch 1 when quick
            l14_batches = requested or ((1,) if args.quick else (1, 64))
        plans.append(("L14", VIT_L14, tuple(l14_batches)))

    name = torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}")
    print(f"{'size':<9} {'precision':<14} {'mode':<7} {'batch':>5} {'ms/batch':>10} {'crops/s':>10}")
    results: dict[tuple, float] = {}
    for size_name, arch, batches in plans:
        for precision in precisions:
            detector = Detector.untrained(arch, device=str(device), precision=precision)
            modes = ["eager"] + (["graphs"] if cuda and not args.no_graphs else [])
            for mode in modes:
                if mode == "graphs":
                    detector.enable_cuda_graphs(batches)
                for batch in batches:
                    min_iters = 1 if (size_name == "L14" and not cuda) else 3
                    seconds = time_point(detector, batch, min_seconds, min_iters)
                    results[(size_name, precision, mode, batch)] = seconds
                    print(f"{size_name:<9} {precision:<14} {mode:<7} {batch:>5} {seconds * 1e3:>10.2f} "
                          f"{batch / seconds:>10.1f}", flush=True)
            if args.compile and size_name == "L14":
                detector = Detector.untrained(arch, device=str(device), precision=precision)
                detector.compile(args.compile)
                for batch in (int(b) for b in args.compile_batch_sizes.split(",")):
                    started = time.perf_counter()
                    seconds = time_point(detector, batch, min_seconds, 3)
                    results[(size_name, precision, "compiled", batch)] = seconds
                    print(f"{size_name:<9} {precision:<14} {'compiled':<7} {batch:>5} {seconds * 1e3:>10.2f} "
                          f"{batch / seconds:>10.1f}   (compile + timing {time.perf_counter() - started:.0f} s)",
                          flush=True)
            del detector
            if cuda:
                torch.cuda.empty_cache()

    for kind in (k for k in backbones if k != "clip"):  # GenD's other backbones: the headline point
        arch = FAMILY[kind][1 if cuda else 0]
        label = f"{kind}-{'L' if cuda else 'tiny'}"
        detector = Detector.untrained(arch, device=str(device), precision=headline)
        for batch in ((1, 64) if cuda or not args.quick else (64,)):
            seconds = time_point(detector, batch, min_seconds, 3)
            results[(kind, headline, "eager", batch)] = seconds
            print(f"{label:<9} {headline:<14} {'eager':<7} {batch:>5} {seconds * 1e3:>10.2f} {batch / seconds:>10.1f}",
                  flush=True)
        del detector

    def figure(precision, mode, batch, per_crop):
        seconds = results.get(("L14", precision, mode, batch))
        if seconds is None:
            return math.nan
        return batch / seconds if per_crop else seconds * 1e3

    fields = {
        "device": "cuda" if cuda else "cpu",
        "l14_crops_per_s_bs64": figure(headline, "eager", 64, True),
        "l14_ms_bs1": figure(headline, "eager", 1, False),
    }
    for kind in ("pe", "dinov3"):
        seconds = results.get((kind, headline, "eager", 64))
        fields[f"{kind}_crops_per_s_bs64"] = 64 / seconds if seconds else math.nan
    if cuda and not args.no_graphs:
        graph_points = {b: s for (sz, p, m, b), s in results.items() if sz == "L14" and p == headline and m == "graphs"}
        best = max((b / s for b, s in graph_points.items()), default=math.nan)
        fields["l14_graphs_crops_per_s_best"] = best
        fields["l14_graphs_ms_bs1"] = figure(headline, "graphs", 1, False)
    if args.compile:
        compiled = {b: s for (sz, p, m, b), s in results.items() if sz == "L14" and p == headline and m == "compiled"}
        fields["l14_compiled_crops_per_s_best"] = max((b / s for b, s in compiled.items()), default=math.nan)
        fields["l14_compiled_ms_bs1"] = figure(headline, "compiled", 1, False)
    print("RESULT " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
