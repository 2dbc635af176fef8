"""Real-time inference benchmark: eager PyTorch vs ONNX Runtime on this machine's CPU.

Batch-1 latency (median, p95) and batched throughput for each backbone at its configured
image size; ONNX files come from the same exporter as ``python -m scalp_ml.export``. Prints a
Markdown table and appends it, with date, machine and command, to ``benchmarks/RESULTS.md``.

Run: ``make bench-infer`` (or ``python benchmarks/bench_infer.py --threads 2``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from scalp_ml.export import onnx_bytes
from scalp_ml.inference import Probabilities
from scalp_ml.models.multihead import MultiHeadClassifier

RESULTS = Path(__file__).with_name("RESULTS.md")
# (config name, timm backbone, image size): the demo model and the recipe's backbones.
MODELS = (
    ("tiny", "test_efficientnet", 160),
    ("effnet_b0", "efficientnet_b0", 448),
    ("effnet_b4", "efficientnet_b4", 448),
)


def timings(
    run: Callable[[], object], seconds: float, warmup: int = 3, min_runs: int = 5
) -> list[float]:
    """Wall times of ``run`` after ``warmup`` calls, for ``seconds`` and ``min_runs`` or more."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return times


def measure(backbone: str, size: int, batch: int, threads: int, seconds: float) -> dict[str, float]:
    """Latency and throughput of one backbone, eager and ONNX Runtime."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = Probabilities(MultiHeadClassifier(backbone)).eval()
    example = torch.randn(2, 3, size, size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        onnx_bytes(model, example, {}), options, providers=["CPUExecutionProvider"]
    )
    one, many = torch.randn(1, 3, size, size), torch.randn(batch, 3, size, size)

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


def machine() -> str:
    """CPU model, usable cores and library versions."""
    import onnxruntime

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} usable cores; Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def main() -> None:
    """Measures every model and appends the table to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    command = "python benchmarks/bench_infer.py " + " ".join(sys.argv[1:])
    section = [
        f"### Inference, CPU — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- command: `{command.strip()}` (random weights; latency is independent of training)",
        "",
        *lines,
    ]
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write("\n" + "\n".join(section) + "\n")
    print("\n".join(section))


if __name__ == "__main__":
    main()
