"""Data pipeline benchmark: images/s per CPU core of the three ways to feed training.

(a) the obvious pipeline: JPEG decode, letterbox and the albumentations training augmentation
(flip, colour jitter, affine) in the loader; (b) the decoded-image cache + albumentations
augmentation; (c) the cache + device augmentation: the CPU only reads uint8 rows. All three give
uint8 images (the network normalises them itself). Each runs the project's own ``ScalpDataset``
in one process with one thread, so images/s is per core. Also times the cache build with every
core. Prints a Markdown table and appends it, with date, machine and command, to
``benchmarks/RESULTS.md`` (not with ``--no-record``).

Run: ``make bench-data`` (or ``python benchmarks/bench_data.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import torch
from common import append_section, argument_parser, compose, replicated_dataset, table

from scalp_ml.config import plain
from scalp_ml.data.aihub.index import load_manifest
from scalp_ml.data.cache import open_cache
from scalp_ml.data.dataset import ScalpDataset
from scalp_ml.data.transforms import augmentation

WORK_DIR = Path(tempfile.gettempdir()) / "scalp_bench"
GOAL = 4.0  # (c) must feed at least this many times (a)'s images/s per core


def images_per_second(dataset: ScalpDataset, passes: int) -> float:
    """Samples per second of reading ``dataset`` in full, ``passes`` times (after one warm-up)."""
    for index in range(min(len(dataset), 20)):
        dataset[index]
    start = time.perf_counter()
    for _ in range(passes):
        for index in range(len(dataset)):
            dataset[index]
    return passes * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    """Measures the three pipelines and appends the table to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--images", type=int, default=1000, help="synthetic 640x480 photographs")
    parser.add_argument("--size", type=int, default=448, help="letterboxed image side")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="data and cache")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    augment = plain(compose("train", []).data.augment)  # the recipe's augmentation
    size = (args.size, args.size)
    root = replicated_dataset(args.work_dir, args.images)
    manifest = load_manifest(root, show_progress=False)
    cores = len(os.sched_getaffinity(0))
    cache_dir = args.work_dir / f"cache-{args.images}"
    shutil.rmtree(cache_dir, ignore_errors=True)  # time a full build
    start = time.perf_counter()
    decoded = open_cache(root, manifest["image"].tolist(), size, cache_dir, cores)
    build_seconds = time.perf_counter() - start
    pipelines = {
        "(a) JPEG decode + letterbox + albumentations augmentation": ScalpDataset(
            root, manifest, size, augmentation(augment, seed=0)
        ),
        "(b) memmap cache + albumentations augmentation": ScalpDataset(
            root, manifest, size, augmentation(augment, seed=0), decoded=decoded
        ),
        "(c) memmap cache + device augmentation (CPU side only)": ScalpDataset(
            root, manifest, size, decoded=decoded
        ),
    }
    rates = {}
    for name, dataset in pipelines.items():
        passes = 1 if name.startswith("(a)") else 3
        rates[name] = images_per_second(dataset, passes)
        print(f"{name}: {rates[name]:.0f} images/s per core", flush=True)
    baseline = next(iter(rates.values()))
    rows = [(name, f"{rate:.0f}", f"{rate / baseline:.1f}x") for name, rate in rates.items()]
    ratio = list(rates.values())[-1] / baseline
    lines = table(("pipeline", "images/s per core", "vs (a)"), rows)
    lines += [
        "",
        f"- {args.images} synthetic 640x480 JPEGs at {args.size} px; cache build with "
        f"{cores} processes: {build_seconds:.1f} s ({args.images / build_seconds:.0f} images/s, "
        f"{args.images * args.size**2 * 3 / 1e9:.2f} GB).",
        f"- Goal (c) >= {GOAL:.0f}x (a) per core: **{'met' if ratio >= GOAL else 'NOT met'}** "
        f"({ratio:.1f}x in this run).",
    ]
    append_section(
        "Data pipeline, CPU",
        lines,
        "albumentations",
        note="one process, one thread per pipeline; shared machine, ratios from one run",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
