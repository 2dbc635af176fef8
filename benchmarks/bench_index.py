"""Indexing benchmark: 20,000 label + image pairs of a zip-archive download, no image decoded.

Builds (once, cached under ``data/bench_index/``) a synthetic download in the real shape:
zip archives per condition folder with CP949 member names, 640x480 JPEGs, about 5 % of the
images filed under two folders. The indexer only reads labels and image headers, never
pixels, so the JPEGs are drawn from a pool of 32 rendered scalp images (same sizes and
headers as the rest) instead of rendering 20,000. Times a cold index (scan, parse, pair,
check headers, write the manifest), a warm re-run (fingerprint match) and, apart, the one-off
verification pass that decodes every image (``data.verify_images=true``), then appends the
figures, machine and command to ``benchmarks/RESULTS.md``.

Run: ``make bench-index`` (or ``python benchmarks/bench_index.py --pairs 20000``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from scalp_ml.data.aihub.index import load_or_build_index
from scalp_ml.data.synthetic import (
    Person,
    pack_archives,
    plan_sessions,
    render_scalp,
    sample_person,
    write_session,
)

RESULTS = Path(__file__).with_name("RESULTS.md")
POOL_SIZE = 32
GOAL_SECONDS = 60.0


@functools.cache
def image_pool() -> tuple[np.ndarray, ...]:
    """Rendered scalp images with mixed grades, made once per process."""
    rng = np.random.default_rng(0)
    person = sample_person(rng)
    return tuple(render_scalp(rng.integers(0, 4, 6), person, rng) for _ in range(POOL_SIZE))


def pooled_render(grades: np.ndarray, person: Person, rng: np.random.Generator) -> np.ndarray:
    """One of the pooled images (the indexer never decodes pixels)."""
    return image_pool()[int(rng.integers(POOL_SIZE))]


def build_download(root: Path, pairs: int, seed: int) -> Path:
    """Writes the zip download, or reuses a complete one with the same parameters."""
    marker = root / ".bench.json"
    params = {"pairs": pairs, "seed": seed, "pool": POOL_SIZE}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    plans = plan_sessions(pairs, seed, validation_fraction=0.1)
    write = functools.partial(
        write_session, out_dir=root, duplicate_fraction=0.05, quality=92, render=pooled_render
    )
    with ProcessPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        files = sum(pool.map(write, plans, chunksize=64))
    pack_archives(root)
    marker.write_text(json.dumps(params))
    print(f"wrote {pairs} images ({files} label + image pairs with duplicates) to {root}")
    return root


def main() -> None:
    """Builds the download if needed, times the indexer and appends the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path("data/bench_index"))
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    root = build_download(args.data, args.pairs, args.seed)
    archives = list(root.rglob("*.zip"))
    size_gb = sum(path.stat().st_size for path in archives) / 1e9
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "manifest.csv"
        start = time.perf_counter()
        index = load_or_build_index(root, manifest, show_progress=False)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        load_or_build_index(root, manifest, show_progress=False)
        warm = time.perf_counter() - start
        start = time.perf_counter()
        load_or_build_index(root, manifest, verify_images=True, show_progress=False)
        verify = time.perf_counter() - start
    pairs = index.report.label_files
    verdict = "meets" if cold < GOAL_SECONDS else "MISSES"
    table = [
        "| label + image pairs | archives (GB) | distinct images | cold index s | pairs/s "
        "| re-run (unchanged) s | decode all once (verify) s |",
        "|---|---|---|---|---|---|---|",
        f"| {pairs} | {len(archives)} ({size_gb:.2f}) | {len(index.manifest)} | {cold:.1f} "
        f"| {pairs / cold:.0f} | {warm:.2f} | {verify:.1f} |",
    ]
    print("\n".join(table))
    print(f"{verdict} the goal of {GOAL_SECONDS:.0f} s")
    if args.no_record:
        return
    section = [
        "",
        f"### Indexing a zip download, CPU — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} usable cores; Python {platform.python_version()}",
        f"- command: `{' '.join(['python', *sys.argv])}` (page cache warm: archives just read "
        "or written; indexing in one process, no image decoded, headers only; verification "
        "in one process per core)",
        f"- goal: < {GOAL_SECONDS:.0f} s for 20,000 pairs: {verdict}",
        "",
        *table,
    ]
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write("\n".join(section) + "\n")


if __name__ == "__main__":
    main()
