"""Speed against accuracy: which demo configuration grades >= 100 images/s on 2 cores, at what cost.

Trains the CPU demo recipe (``experiment=demo``) at several image sizes on the synthetic data,
evaluates each best checkpoint on the synthetic test split, exports it with
``scalp_ml.export`` and times the ONNX Runtime file at batch 1 and batched on letterboxed uint8
images. Prints a Markdown table and appends it, with date, machine and command, to
``benchmarks/RESULTS.md`` (not with ``--no-record``).

Run: ``make bench-tradeoff`` (or ``python benchmarks/bench_tradeoff.py --sizes 160 128 96``).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from common import append_section, argument_parser, compose, table, timings

from scalp_ml.data.synthetic import generate
from scalp_ml.inference.export import export, random_images
from scalp_ml.inference.predictors import OnnxPredictor
from scalp_ml.train import train

TARGET_IMAGES_PER_SECOND = 100.0


def train_demo(data: Path, size: int, run_dir: Path, limits: list[str]) -> tuple[float, Path]:
    """Trains the demo recipe at ``size``; its test macro-F1 and best checkpoint."""
    overrides = [
        "experiment=demo",
        f"data.root={data}",
        f"data.image_size={size}",
        f"run_dir={run_dir}",
        "overwrite=true",  # every invocation trains afresh
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        *limits,
    ]
    metrics = train(compose("train", overrides))
    return metrics["test/macro_f1"], run_dir / "checkpoints" / "best.ckpt"


def onnx_speed(checkpoint: Path, size: int, batch: int, threads: int) -> tuple[float, float]:
    """Images/s of the exported file at batch 1 and at ``batch`` (medians)."""
    predictor = OnnxPredictor(export(checkpoint, "onnx"), threads=threads)
    one, many = (random_images(n, (size, size), n).numpy() for n in (1, batch))
    single = statistics.median(timings(lambda: predictor(one), seconds=4.0))
    batched = statistics.median(timings(lambda: predictor(many), seconds=4.0, min_runs=3))
    return 1 / single, batch / batched


def main() -> None:
    """Trains, evaluates and times each size; appends the table and verdict to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--images", type=int, default=2000, help="synthetic set size if absent")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 128, 96])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_tradeoff"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--epochs", type=int, default=None, help="trainer.max_epochs (default: the recipe's)"
    )
    args = parser.parse_args()
    limits = [] if args.epochs is None else [f"trainer.max_epochs={args.epochs}"]
    torch.set_num_threads(args.threads)
    generate(args.data, n_images=args.images, seed=0)
    rows = []
    for size in args.sizes:
        macro_f1, checkpoint = train_demo(args.data, size, args.out / f"size{size}", limits)
        single, batched = onnx_speed(checkpoint, size, args.batch, args.threads)
        rows.append((size, macro_f1, single, batched))
        print(f"size {size}: test macro-F1 {macro_f1:.3f}, {single:.0f} / {batched:.0f} img/s")
    reference = max(rows, key=lambda row: row[1])
    lines = table(
        [
            "image size",
            "test macro-F1",
            "macro-F1 vs best",
            "ONNX RT b1 img/s",
            f"ONNX RT b{args.batch} img/s",
            f">= {TARGET_IMAGES_PER_SECOND:.0f} img/s at b1",
        ],
        [
            (
                size,
                f"{macro_f1:.3f}",
                f"{macro_f1 - reference[1]:+.3f}",
                f"{single:.0f}",
                f"{batched:.0f}",
                "yes" if single >= TARGET_IMAGES_PER_SECOND else "no",
            )
            for size, macro_f1, single, batched in rows
        ],
    )
    fast = [row for row in rows if row[2] >= TARGET_IMAGES_PER_SECOND]
    if fast:
        size, macro_f1, single, _ = max(fast, key=lambda row: row[1])
        verdict = (
            f"Most accurate configuration at >= {TARGET_IMAGES_PER_SECOND:.0f} img/s (batch 1, "
            f"ONNX Runtime, {args.threads} threads): test_efficientnet at {size} px, "
            f"{single:.0f} img/s, test macro-F1 {macro_f1:.3f} (cost "
            f"{reference[1] - macro_f1:.3f} against the best measured, {reference[0]} px)."
        )
    else:
        verdict = f"No configuration reached {TARGET_IMAGES_PER_SECOND:.0f} img/s at batch 1."
    append_section(
        "Speed against accuracy, CPU demo recipe",
        [*lines, "", verdict],
        "onnxruntime",
        note=f"synthetic data, {args.images} images; the demo recipe trained from scratch at "
        f"each size{'' if args.epochs is None else f' (max_epochs={args.epochs})'}; macro-F1 on "
        "the synthetic test split",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
