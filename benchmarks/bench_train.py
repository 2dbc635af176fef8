"""Lightning overhead benchmark: ``Trainer.fit`` epoch time vs a plain PyTorch loop.

Both train the project's ``ScalpGrader`` (tiny backbone, focal loss, AdamW) on the same
in-memory batches, the same number of steps, on the CPU. The plain loop does what
``training_step`` does (forward, loss, finiteness check, backward, step) without logging.
Epoch times run from the first batch to the end of the last optimizer step of every epoch
after the first (warm-up); rounds alternate the two loops. Each epoch is timed twice: wall
clock, and CPU time of this process (one torch thread), which other jobs on a shared machine
barely disturb; Lightning's overhead is CPU work in this process, so the goal is judged on
CPU time, with the wall-clock figures beside it. Prints a Markdown table and appends it, with
date, machine and command, to ``benchmarks/RESULTS.md`` (not with ``--no-record``).

Run: ``make bench-train`` (or ``python benchmarks/bench_train.py``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning as L
import torch
from common import append_section, argument_parser, compose, table
from torch.utils.data import DataLoader, Dataset

from scalp_ml.module import ScalpGrader
from scalp_ml.training.job import build_module

GOAL = 0.03  # Lightning's share of the epoch time must not exceed this
# What the Lightning run switches off: none of it is training, all of it costs time per step.
TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "limit_val_batches": 0,
}


class Batches(Dataset):
    """Random uint8 images (what the loader gives the network) and grades, made once."""

    def __init__(self, count: int, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        shape = (count, 3, size, size)
        self.images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        self.grades = torch.randint(0, 4, (count, 6), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "grades": self.grades[index]}


def clocks() -> tuple[float, float]:
    """Wall-clock and process CPU time, in seconds."""
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float]) -> tuple[float, float]:
    """Wall-clock and CPU seconds since ``start``."""
    return tuple(now - then for now, then in zip(clocks(), start, strict=True))


class EpochTimer(L.Callback):
    """Wall-clock and CPU time of each training epoch, first batch to last step."""

    def __init__(self) -> None:
        self.seconds: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Starts the clocks."""
        self.start = clocks()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Records the epoch's times."""
        self.seconds.append(elapsed(self.start))


def grader() -> ScalpGrader:
    """The tiny demo model with the recipe's loss and optimizer, same initial weights."""
    torch.manual_seed(0)
    return build_module(compose("train", ["model=tiny", "optimizer=adamw", "loss=focal"]))


def plain_epochs(loader: DataLoader, epochs: int) -> list[tuple[float, float]]:
    """Epoch times of a hand-written loop doing what ``training_step`` does."""
    model = grader().train()
    optimizer = model.configure_optimizers()
    seconds = []
    for _ in range(epochs):
        start = clocks()
        for batch in loader:
            optimizer.zero_grad()
            loss = model.loss(model(batch["image"]), batch["grades"])
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite loss")
            loss.backward()
            optimizer.step()
        seconds.append(elapsed(start))
    return seconds


def lightning_epochs(loader: DataLoader, epochs: int) -> list[tuple[float, float]]:
    """Epoch times of ``Trainer.fit`` with the settings of ``TRAINER``."""
    timer = EpochTimer()
    trainer = L.Trainer(**TRAINER, max_epochs=epochs, callbacks=[timer])
    trainer.fit(grader(), train_dataloaders=loader)
    return timer.seconds


def main() -> None:
    """Measures both loops and appends the table to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="image side")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each loop")
    parser.add_argument("--threads", type=int, default=1, help="1: CPU time is compute time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loader = DataLoader(Batches(args.steps * args.batch, args.size), batch_size=args.batch)
    times: dict[str, list[tuple[float, float]]] = {"plain PyTorch loop": [], "Lightning": []}
    for _ in range(args.rounds):
        times["plain PyTorch loop"] += plain_epochs(loader, args.epochs)[1:]
        times["Lightning"] += lightning_epochs(loader, args.epochs)[1:]
    # index 0: wall clock, 1: CPU time; medians over the timed epochs
    medians = {
        name: [statistics.median(e[i] for e in v) for i in (0, 1)] for name, v in times.items()
    }
    (plain_wall, plain_cpu), (lightning_wall, lightning_cpu) = medians.values()
    overhead = 1 - plain_cpu / lightning_cpu
    wall_overhead = 1 - plain_wall / lightning_wall
    rows: list[Any] = [
        (
            name,
            f"{cpu:.3f}",
            f"{wall:.3f}",
            f"{min(e[0] for e in times[name]):.3f}",
            len(times[name]),
        )
        for name, (wall, cpu) in medians.items()
    ]
    header = ("loop", "median CPU s / epoch", "median wall s / epoch", "fastest wall s", "epochs")
    lines = table(header, rows)
    lines += [
        "",
        f"- test_efficientnet at {args.size} px, batch {args.batch}, {args.steps} steps per "
        f"epoch, {args.threads} torch threads, data in memory, no loader processes.",
        "- Lightning settings: no logger, no checkpointing, no progress bar, no model summary, "
        "no sanity or validation loop; `training_step` still logs `train/loss` per epoch "
        "and checks the loss is finite. Nothing else enabled.",
        f"- Lightning overhead: {100 * overhead:+.1f} % of the epoch's CPU time "
        f"({100 * wall_overhead:+.1f} % of its wall time on this shared machine). "
        f"Goal <= {100 * GOAL:.0f} %: **{'met' if overhead <= GOAL else 'NOT met'}** (CPU time).",
    ]
    append_section(
        "Lightning overhead, CPU",
        lines,
        "lightning",
        note="shared, noisy machine: rounds alternate the two loops",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
