"""Peak memory of training runs on this machine: the CPU demo, and one on a 20,000-image cache.

Each run is ``python -m scalp_ml.train experiment=demo ...`` in a subprocess; a sampler adds up
the proportional set size (PSS: shared pages split between the processes that map them, so
loader workers are not counted twice) of the run and its loader processes every 0.2 s. Also
reports the largest single process's peak RSS (``getrusage``). Prints a Markdown table and
appends it, with date, machine and command, to ``benchmarks/RESULTS.md`` (not with
``--no-record``).

Run: ``make bench-memory`` (or ``python benchmarks/bench_memory.py``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import append_section, argument_parser, replicated_dataset, table

WORK_DIR = Path(tempfile.gettempdir()) / "scalp_bench"
# Short runs: memory peaks within the first batches of each loop.
LIMITS = [
    "+trainer.limit_train_batches=30",
    "+trainer.limit_val_batches=10",
    "+trainer.limit_test_batches=10",
]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (0 once it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def peak_memory(command: list[str]) -> tuple[float, float, float]:
    """Runs ``command``: peak total PSS (GB), largest process's peak RSS (GB), seconds."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, sum(pss_bytes(pid) for pid in descendants(process.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, errors = process.communicate()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{errors.decode()[-3000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return peak / 1e9, rss / 1e9, time.perf_counter() - start


def main() -> None:
    """Measures both runs and appends the table to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--demo-images", type=int, default=2000)
    parser.add_argument("--cache-images", type=int, default=20000)
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="data, cache and runs")
    args = parser.parse_args()
    train = [sys.executable, "-m", "scalp_ml.train", "experiment=demo", "logger=none", *LIMITS]
    runs = {
        f"demo: {args.demo_images} images, JPEG decoding": [
            f"data.root={replicated_dataset(args.work_dir, args.demo_images)}",
        ],
        f"demo on the memmap cache of {args.cache_images} images (built in the run)": [
            f"data.root={replicated_dataset(args.work_dir, args.cache_images)}",
            "data.cache=memmap",
            f"data.cache_dir={args.work_dir / 'memory-cache'}",
        ],
    }
    rows = []
    for name, overrides in runs.items():
        run_dir = args.work_dir / f"memory-run-{time.time_ns()}"
        command = [*train, *overrides, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1"]
        pss, rss, seconds = peak_memory(command)
        rows.append((name, f"{pss:.2f}", f"{rss:.2f}", f"{seconds:.0f}"))
        print(rows[-1], flush=True)
    cores = len(os.sched_getaffinity(0))
    lines = table(
        ("run", "peak PSS, all processes (GB)", "peak RSS, largest process (GB)", "wall s"), rows
    )
    lines += [
        "",
        f"- `experiment=demo` (test_efficientnet, 160 px, batch 32), {cores} loader processes, "
        "one epoch of at most 30 training batches, 10 validation and 10 test batches; "
        f"synthetic photographs (hard links to 50 generated ones). The cache file is "
        f"{args.cache_images * 160 * 160 * 3 / 1e9:.2f} GB; rows are read with `preadv`, so "
        "the page cache holds them, not the processes.",
    ]
    append_section(
        "Peak memory of training, CPU",
        lines,
        note="PSS sampled every 0.2 s",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
