"""Cross-validation and the fold ensemble on the demo data, against the single model.

Trains the CPU demo (``experiment=demo``, the study's recipe, small) as a 5-fold
cross-validation (``cv=kfold``: one job per fold, the test split untouched) and once on the
split without folds; grades the 5 folds' ensemble on the test split (``python -m
scalp_ml.evaluate ckpt_path=<sweep dir>``), compares it with the single model (paired session
bootstrap of the difference, as ``python -m scalp_ml.compare``), exports both to ONNX and times
batch-1 latency with ONNX Runtime. Runs are kept under ``--out`` and reused.

Run: ``make bench-cv`` (about 20 minutes on 2 cores).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from bench_recipes import QUIET
from common import append_section, argument_parser, table, timings

from scalp_ml.compare import compare, load_predictions
from scalp_ml.data.synthetic import generate
from scalp_ml.inference.export import export, random_images
from scalp_ml.inference.predictors import OnnxPredictor

FOLDS = 5


def run(module: str, *overrides: str) -> None:
    """``python -m scalp_ml.<module> <overrides>`` (progress to the terminal)."""
    command = [sys.executable, "-m", f"scalp_ml.{module}", *overrides]
    print(" ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def latency_ms(onnx_file: Path, threads: int, seconds: float) -> float:
    """Median batch-1 latency of an exported file in ONNX Runtime."""
    predictor = OnnxPredictor(onnx_file, threads=threads)
    image = random_images(1, predictor.image_size, seed=1).numpy()
    return 1000 * statistics.median(timings(lambda: predictor(image), seconds))


def interval(metrics_file: Path, split: str = "test") -> str:
    """``estimate [low, high]`` of macro-F1 from an evaluation's ``metrics.json``."""
    found = json.loads(metrics_file.read_text())["intervals"][split]["macro_f1"]
    return f"{found['estimate']:.3f} [{found['low']:.3f}, {found['high']:.3f}]"


def main() -> None:
    """Runs the cross-validation, the single model and the ensemble; appends to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_cv"))
    args = parser.parse_args()
    generate(args.data, n_images=args.images, seed=0)
    common = ["experiment=demo", f"data.root={args.data}", f"seed={args.seed}", "overwrite=true"]
    common += QUIET  # runs are only started when none finished: a cut-off one starts again
    sweep, single = args.out / "cv", args.out / "single"
    if not (sweep / "cv_summary.csv").is_file():
        run("train", "cv=kfold", f"data.split.folds={FOLDS}", f"hydra.sweep.dir={sweep}", *common)
    if not (single / "metrics.json").is_file():
        run("train", f"hydra.run.dir={single}", *common)
    ensemble = args.out / "ensemble_test"
    if not (ensemble / "metrics.json").is_file():
        run("evaluate", f"ckpt_path={sweep}", f"out_dir={ensemble}")

    summary = pd.read_csv(sweep / "cv_summary.csv").set_index("metric")
    folds = summary.loc["val/macro_f1"]
    context = json.loads((ensemble / "metrics.json").read_text())["context"]
    members = context["members"]
    member_scores = [member["macro_f1"] for member in members]
    paired = compare(load_predictions(single, "test"), load_predictions(ensemble, "test"), 1000, 0)[
        "metrics"
    ]["macro_f1"]
    single_onnx = export(
        json.loads((single / "metrics.json").read_text())["context"]["checkpoint"],
        out=args.out / "single.onnx",
    )
    ensemble_onnx = export(str(sweep), out=args.out / "ensemble.onnx")
    latency = {
        name: latency_ms(path, args.threads, args.seconds)
        for name, path in (("single", single_onnx), ("ensemble", ensemble_onnx))
    }
    rows = [
        [
            "single model (split without folds)",
            json.loads((single / "metrics.json").read_text())["val"]["macro_f1"].__format__(".3f"),
            interval(single / "metrics.json"),
            "—",
            f"{latency['single']:.1f}",
        ],
        [
            f"{FOLDS}-fold ensemble (mean probabilities)",
            f"{folds['mean']:.3f} ± {folds['sd']:.3f} (CV, {FOLDS} folds)",
            interval(ensemble / "metrics.json"),
            f"{paired['difference']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}] "
            f"p={paired['p_value']:.3f}",
            f"{latency['ensemble']:.1f}",
        ],
    ]
    lines = [
        f"Demo data: {args.data} ({args.images} synthetic images), session split 70/15/15; the "
        f"{FOLDS} folds deal the train + validation sessions anew; the test split is the same "
        f"{context['images']['test']} images ({context['sessions']['test']} sessions) for "
        f"both. Seed {args.seed}. Δ: paired session bootstrap of the test macro-F1 "
        "difference to the single model (1000 resamples).",
        "",
        *table(
            [
                "model",
                "val macro-F1",
                "test macro-F1 [95 % CI]",
                "test Δ vs single [95 % CI]",
                f"ONNX batch-1 ms ({args.threads} threads)",
            ],
            rows,
        ),
        "",
        "Each fold model's own test macro-F1: "
        + ", ".join(f"{score:.3f}" for score in member_scores)
        + f" (mean {np.mean(member_scores):.3f}).",
        "Fold validation macro-F1: "
        + ", ".join(f"{folds[f'fold_{f}']:.3f}" for f in range(FOLDS))
        + ".",
    ]
    append_section(
        "Cross-validation and the fold ensemble, CPU demo",
        lines,
        note=(
            f"`python -m scalp_ml.train cv=kfold experiment=demo seed={args.seed}`, "
            f"`python -m scalp_ml.evaluate ckpt_path=<sweep dir>`, "
            "`python -m scalp_ml.export ckpt_path=<sweep dir>`"
        ),
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
