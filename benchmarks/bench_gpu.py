"""GPU feeding benchmark (CUDA only): training images/s fed by the real loader vs no loader.

For EfficientNet-B4 and -B0 at 448 px, bf16-mixed, channels_last, batch 16 (the recipe) and
64, with 8 loader processes (a typical per-GPU core budget): ``Trainer.fit`` throughput with
the project's ``ScalpDataModule`` in each pipeline mode, against the same model trained on one
pre-made uint8 batch already on the GPU (the loader-free upper bound). Prints a Markdown table
and appends it, with date, machine and command, to ``benchmarks/RESULTS.md`` (not with
``--no-record``). Without CUDA it says so and exits; ``--accelerator cpu`` runs a small smoke
check instead and records nothing.

Run: ``make bench-gpu`` (or ``python benchmarks/bench_gpu.py``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from common import append_section, argument_parser, compose, replicated_dataset, table

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.module import ScalpGrader
from scalp_ml.training.job import build_module, data_settings

WORK_DIR = Path(tempfile.gettempdir()) / "scalp_bench"
GOAL = 0.95  # loader-fed throughput in the best mode, as a share of the loader-free one
MODES = {
    "JPEG + CPU augmentation": {"cache": "none", "augment_on": "cpu"},
    "memmap + CPU augmentation": {"cache": "memmap", "augment_on": "cpu"},
    "memmap + GPU augmentation": {"cache": "memmap", "augment_on": "gpu"},
    "GPU JPEG decode + GPU augmentation": {"decode_on": "gpu", "augment_on": "gpu"},
}


class Throughput(L.Callback):
    """Images/s over the training steps after ``warmup`` (CUDA-synchronised clock)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.images = 0
        self.start = 0.0
        self.end = 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        """Starts the clock after the warm-up steps, then counts images."""
        step = trainer.global_step
        if step < self.warmup:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if step == self.warmup:
            self.start = time.perf_counter()
        else:
            self.images += len(batch["grades"])
        self.end = time.perf_counter()

    @property
    def images_per_second(self) -> float:
        """Throughput of the timed steps."""
        return self.images / (self.end - self.start)


class Repeated:
    """One pre-made batch, ``times`` times: the loader-free upper bound."""

    def __init__(self, batch: dict[str, torch.Tensor], times: int) -> None:
        self.batch, self.times = batch, times

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return itertools.repeat(self.batch, self.times)

    def __len__(self) -> int:
        return self.times


def grader(backbone: str) -> ScalpGrader:
    """The recipe's model (random weights: speed does not depend on them), channels_last."""
    module = build_module(compose("train", [f"model={backbone}"]))
    return module.to(memory_format=torch.channels_last)


def fit_throughput(module: ScalpGrader, args: argparse.Namespace, steps: int, **data: Any) -> float:
    """Training images/s of ``Trainer.fit`` on ``data`` (a datamodule's or a loader's)."""
    timer = Throughput(args.warmup)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=args.precision,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, **data)
    del trainer  # and with it the loader's persistent processes, before the next measurement
    gc.collect()
    return timer.images_per_second


def main() -> None:
    """Measures every backbone, batch size and mode; appends the table to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--backbones", nargs="*", default=["effnet_b4", "effnet_b0"])
    parser.add_argument("--batches", nargs="*", type=int, default=[16, 64])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--images", type=int, default=10000, help="synthetic photographs")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="data and cache")
    args = parser.parse_args()
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("bench-gpu: CUDA is not available on this machine; skipped.")
        return
    torch.backends.cudnn.benchmark = True
    root = replicated_dataset(args.work_dir, args.images)
    data = data_settings(
        compose(
            "train",
            [
                f"data.root={root}",
                f"data.image_size={args.size}",
                f"data.num_workers={args.workers}",
                f"data.cache_dir={args.work_dir / 'gpu-cache'}",
            ],
        ).data
    )
    steps = args.warmup + args.steps + 1
    rows, best = [], {}
    for backbone in args.backbones:
        for batch_size in args.batches:
            device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
            premade = {
                "image": torch.randint(
                    0, 256, (batch_size, 3, args.size, args.size), dtype=torch.uint8, device=device
                ),
                "grades": torch.randint(0, 4, (batch_size, 6), device=device),
            }
            loader_free = fit_throughput(
                grader(backbone), args, steps, train_dataloaders=Repeated(premade, steps)
            )
            rows.append((backbone, batch_size, "loader-free (pre-made batch)", loader_free, 1.0))
            for mode, options in MODES.items():
                datamodule = ScalpDataModule(**(data | {"batch_size": batch_size} | options))
                rate = fit_throughput(grader(backbone), args, steps, datamodule=datamodule)
                share = rate / loader_free
                rows.append((backbone, batch_size, mode, rate, share))
                best[backbone] = max(best.get(backbone, 0.0), share)
                print(rows[-1], flush=True)
    lines = table(
        ("backbone", "batch", "feeding", "train images/s", "vs loader-free"),
        [(b, n, mode, f"{rate:.0f}", f"{share:.0%}") for b, n, mode, rate, share in rows],
    )
    verdicts = [
        f"{backbone} {share:.0%} ({'met' if share >= GOAL else 'NOT met'})"
        for backbone, share in best.items()
    ]
    lines += [
        "",
        f"- {args.size} px, {args.precision}, channels_last model, {args.workers} loader "
        f"processes, {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"{args.images} synthetic photographs.",
        f"- Goal: loader-fed >= {GOAL:.0%} of loader-free in the best mode: " + "; ".join(verdicts),
    ]
    append_section(
        "GPU feeding",
        lines,
        "lightning",
        "timm",
        note="random weights",
        record=args.accelerator == "gpu" and not args.no_record,  # a CPU run is a smoke check
    )


if __name__ == "__main__":
    main()
