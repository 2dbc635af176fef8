"""Real-time inference benchmark: eager PyTorch vs ONNX Runtime on this machine's CPU.

Batch-1 latency (median, p95) and batched throughput for each backbone at its configured
image size, on letterboxed uint8 images (normalisation is inside the model); ONNX files come from
the same exporter as ``python -m scalp_ml.export``. Prints a Markdown table and appends it, with
date, machine and command, to ``benchmarks/RESULTS.md`` (not with ``--no-record``).

Run: ``make bench-infer`` (or ``python benchmarks/bench_infer.py --threads 2``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np
import torch
from common import append_section, argument_parser, timings

from scalp_ml.inference.export import onnx_bytes, random_images
from scalp_ml.models.network import GradeProbabilities, GradingNetwork

# (config name, timm backbone, image size): the demo model, the recipe's backbones, and
# effnet_b0 at half the recipe's size.
MODELS = (
    ("tiny", "test_efficientnet", 160),
    ("effnet_b0", "efficientnet_b0", 224),
    ("effnet_b0", "efficientnet_b0", 448),
    ("effnet_b4", "efficientnet_b4", 448),
)


TARGET_SPEEDUP = 2.0
TARGET_IMAGES_PER_SECOND = 100.0


def measure(backbone: str, size: int, batch: int, threads: int, seconds: float) -> dict[str, float]:
    """Latency and throughput of one backbone, eager and ONNX Runtime."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = GradeProbabilities(GradingNetwork(backbone)).eval()
    example = random_images(2, (size, size), seed=0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        onnx_bytes(model, example, {}), options, providers=["CPUExecutionProvider"]
    )
    one, many = random_images(1, (size, size), 1), random_images(batch, (size, size), 2)

    def eager(images: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(images)

        return run

    def onnx(images: torch.Tensor) -> Callable[[], object]:
        return lambda: session.run(None, {"images": images.numpy()})

    results: dict[str, float] = {}
    for runtime, runner in (("eager", eager), ("onnx", onnx)):
        latency = timings(runner(one), seconds)
        results[f"{runtime}_p50_ms"] = 1000 * statistics.median(latency)
        results[f"{runtime}_p95_ms"] = 1000 * float(np.percentile(latency, 95))
        results[f"{runtime}_b1_img_s"] = 1 / statistics.median(latency)
        batched = timings(runner(many), seconds, warmup=1, min_runs=3)
        results[f"{runtime}_batch_img_s"] = batch / statistics.median(batched)
    with torch.inference_mode():
        expected = model(one).numpy()
    results["max_abs_diff"] = float(
        np.abs(session.run(None, {"images": one.numpy()})[0] - expected).max()
    )
    return results


def verdict(name: str, size: int, r: dict[str, float], speedup: float, batch: int) -> str:
    """Whether a model meets the real-time targets (ONNX >= 2x eager for effnet_b4; 100 img/s)."""
    parts = [f"- {name} at {size} px:"]
    if name == "effnet_b4":
        met = "met" if speedup >= TARGET_SPEEDUP else "not met"
        parts.append(f"ONNX Runtime {speedup:.2f}x eager at batch 1 (target >= 2x: {met});")
    single = max(r["onnx_b1_img_s"], r["eager_b1_img_s"])
    batched = max(r["onnx_batch_img_s"], r["eager_batch_img_s"])
    reached = [
        label
        for label, rate in (("at batch 1", single), (f"at batch {batch}", batched))
        if rate >= TARGET_IMAGES_PER_SECOND
    ]
    parts.append(
        f"{single:.0f} img/s at batch 1, {batched:.0f} img/s at batch {batch}: "
        f"{TARGET_IMAGES_PER_SECOND:.0f} img/s "
        + (f"reached {' and '.join(reached)}." if reached else "not reached.")
    )
    return " ".join(parts)


def main() -> None:
    """Measures every model and appends the table to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both runtimes")
    parser.add_argument("--batch", type=int, default=16, help="batch size of the throughput runs")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    parser.add_argument("--models", nargs="*", default=[name for name, *_ in MODELS])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = (
        "| model | size | eager b1 p50 / p95 ms | ONNX RT b1 p50 / p95 ms | b1 speed-up | "
        f"eager b{args.batch} img/s | ONNX RT b{args.batch} img/s | max prob diff |"
    )
    lines = [header, "|---" * 8 + "|"]
    verdicts = []
    for name, backbone, size in MODELS:
        if name not in args.models:
            continue
        r = measure(backbone, size, args.batch, args.threads, args.seconds)
        speedup = r["eager_p50_ms"] / r["onnx_p50_ms"]
        cells = [
            f"{name} ({backbone})",
            str(size),
            f"{r['eager_p50_ms']:.1f} / {r['eager_p95_ms']:.1f}",
            f"{r['onnx_p50_ms']:.1f} / {r['onnx_p95_ms']:.1f}",
            f"{speedup:.2f}x",
            f"{r['eager_batch_img_s']:.1f}",
            f"{r['onnx_batch_img_s']:.1f}",
            f"{r['max_abs_diff']:.1e}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
        verdicts.append(verdict(name, size, r, speedup, args.batch))
    append_section(
        "Inference, CPU",
        [*lines, "", *verdicts],
        "onnxruntime",
        note="random weights; latency is independent of training",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
